//! `CudaTensor`: an n-dimensional tensor on a device, with PyTorch's shape, stride and view rules.
//! Tensors are immutable; views share storage and every op writes a fresh buffer.

use crate::device::Device;
use crate::dtype::{DType, Element, HostData};
use crate::error::{invalid_arg, shape_err, Error, Result};
use crate::ops::Layout;
use crate::storage::Storage;
use ndarray::{ArrayBase, ArrayD, Data, Dimension, IxDyn};
use rayon::prelude::*;
use std::sync::Arc;

/// A tensor on a [`Device`]: a shape, strides (in elements) and an offset into shared storage.
#[derive(Clone)]
pub struct CudaTensor {
    device: Device,
    dtype: DType,
    shape: Vec<usize>,
    strides: Vec<usize>,
    offset: usize,
    storage: Arc<Storage>,
}

/// The span of a dense tensor of `shape`: the product of its dims, each counted as at least
/// 1 as strides count them, or `None` past `isize::MAX` (ndarray's limit, and within PyTorch's
/// int64 sizes). Every tensor's shape passes this, so strides and element counts computed
/// from it never overflow.
pub(crate) fn checked_extent(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d.max(1))).filter(|&e| e <= isize::MAX as usize)
}

/// Row-major strides of `shape`.
pub(crate) fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![0; shape.len()];
    let mut acc = 1;
    for (s, &d) in strides.iter_mut().zip(shape).rev() {
        *s = acc;
        acc *= d.max(1);
    }
    strides
}

/// Strides of a 4-D (N, C, H, W) tensor stored as (N, H, W, C).
pub(crate) fn channels_last_strides(shape: &[usize]) -> Vec<usize> {
    let (c, h, w) = (shape[1].max(1), shape[2].max(1), shape[3].max(1));
    vec![h * w * c, 1, w * c, c]
}

/// Strides for a pooling tensor of `shape` (3-D or 4-D) in `layout`.
pub(crate) fn layout_strides(shape: &[usize], layout: Layout) -> Vec<usize> {
    match layout {
        Layout::Nhwc if shape.len() == 4 => channels_last_strides(shape),
        _ => contiguous_strides(shape),
    }
}

/// Dense with these strides for this order of dims (innermost last), ignoring size-1 dims as
/// PyTorch's contiguity checks do.
fn is_dense_in_order(shape: &[usize], strides: &[usize], order: &[usize]) -> bool {
    let mut expected = 1;
    for &d in order.iter().rev() {
        if shape[d] != 1 {
            if strides[d] != expected {
                return false;
            }
            expected *= shape[d];
        }
    }
    true
}

/// PyTorch's `computeStride` (ATen/TensorUtils.cpp): the strides that let `new_shape` view
/// memory laid out as (`shape`, `strides`), or `None` when a copy is needed.
fn view_strides(shape: &[usize], strides: &[usize], new_shape: &[usize]) -> Option<Vec<usize>> {
    let numel: usize = shape.iter().product();
    if numel == 0 {
        return Some(contiguous_strides(new_shape));
    }
    let mut new_strides = vec![0usize; new_shape.len()];
    let mut view_d = new_shape.len() as isize - 1;
    let mut chunk_base_stride = *strides.last().unwrap_or(&1);
    let mut tensor_numel = 1usize;
    let mut view_numel = 1usize;
    for tensor_d in (0..shape.len()).rev() {
        tensor_numel *= shape[tensor_d];
        if tensor_d == 0
            || (shape[tensor_d - 1] != 1 && strides[tensor_d - 1] != tensor_numel * chunk_base_stride)
        {
            while view_d >= 0 && (view_numel < tensor_numel || new_shape[view_d as usize] == 1) {
                new_strides[view_d as usize] = view_numel * chunk_base_stride;
                view_numel *= new_shape[view_d as usize];
                view_d -= 1;
            }
            if view_numel != tensor_numel {
                return None;
            }
            if tensor_d > 0 {
                chunk_base_stride = strides[tensor_d - 1];
                tensor_numel = 1;
                view_numel = 1;
            }
        }
    }
    if view_d != -1 {
        return None;
    }
    Some(new_strides)
}

/// Resolves one `-1` in a requested shape, with PyTorch's messages.
fn infer_shape(requested: &[isize], numel: usize) -> Result<Vec<usize>> {
    let mut infer_at = None;
    let mut known = 1usize;
    for (i, &d) in requested.iter().enumerate() {
        if d == -1 {
            if infer_at.is_some() {
                invalid_arg!("only one dimension can be inferred");
            }
            infer_at = Some(i);
        } else if d < 0 {
            invalid_arg!("invalid shape dimension {d}");
        } else {
            // Saturating: a product past usize::MAX cannot equal `numel` unless a later 0
            // brings it back to 0, which saturation keeps.
            known = known.saturating_mul(d as usize);
        }
    }
    let mut shape: Vec<usize> = requested.iter().map(|&d| d.max(0) as usize).collect();
    match infer_at {
        Some(i) if known != 0 && numel.is_multiple_of(known) => shape[i] = numel / known,
        None if known == numel => {}
        _ => shape_err!("shape '{requested:?}' is invalid for input of size {numel}"),
    }
    if checked_extent(&shape).is_none() {
        shape_err!("shape '{requested:?}' is too large: its strides overflow");
    }
    Ok(shape)
}

/// Copies the strided view (`shape`, `strides`, `offset`) of `src` into row-major `dst`.
/// Parallel over rows of the innermost dim; the inner loop is a plain copy when contiguous.
fn gather_strided<T: Copy + Send + Sync>(
    src: &[T],
    shape: &[usize],
    strides: &[usize],
    offset: usize,
    dst: &mut [T],
) {
    if dst.is_empty() {
        return;
    }
    if shape.is_empty() {
        dst[0] = src[offset];
        return;
    }
    let rank = shape.len();
    let row = shape[rank - 1];
    let inner_stride = strides[rank - 1];
    let outer_shape = &shape[..rank - 1];
    let outer_strides = &strides[..rank - 1];
    dst.par_chunks_mut(row.max(1)).enumerate().with_min_len(64).for_each(|(r, out)| {
        // Decode the row index into the outer dims (row-major) to find its start.
        let mut rem = r;
        let mut start = offset;
        for d in (0..outer_shape.len()).rev() {
            start += (rem % outer_shape[d]) * outer_strides[d];
            rem /= outer_shape[d];
        }
        if inner_stride == 1 {
            out.copy_from_slice(&src[start..start + row]);
        } else {
            for (i, o) in out.iter_mut().enumerate() {
                *o = src[start + i * inner_stride];
            }
        }
    });
}

impl CudaTensor {
    /// A tensor on `device` holding `storage`, laid out with `strides`.
    pub(crate) fn from_parts(
        device: Device,
        storage: Storage,
        shape: Vec<usize>,
        strides: Vec<usize>,
    ) -> CudaTensor {
        CudaTensor { device, dtype: storage.dtype(), shape, strides, offset: 0, storage: Arc::new(storage) }
    }

    /// Copies any `ndarray` array (any dimension, any memory order) onto `device`.
    pub fn from_array<T: Element, S: Data<Elem = T>, D: Dimension>(
        device: &Device,
        array: &ArrayBase<S, D>,
    ) -> Result<CudaTensor> {
        let shape = array.shape().to_vec();
        let data: Vec<T> = match array.as_slice() {
            Some(s) => s.to_vec(),
            None => array.iter().copied().collect(),
        };
        let storage = Self::host_to_device(device, T::into_host(data))?;
        let strides = contiguous_strides(&shape);
        Ok(CudaTensor::from_parts(device.clone(), storage, shape, strides))
    }

    /// Moves row-major `data` of `shape` onto `device`: no copy on the CPU (a large input is
    /// never held twice), one upload on a GPU.
    pub fn from_vec<T: Element>(device: &Device, shape: &[usize], data: Vec<T>) -> Result<CudaTensor> {
        if checked_extent(shape).is_none() {
            shape_err!("from_vec: shape {shape:?} is too large: its strides overflow");
        }
        let numel: usize = shape.iter().product();
        if data.len() != numel {
            shape_err!("from_vec: shape {shape:?} holds {numel} elements but the data has {}", data.len());
        }
        let storage = Self::host_to_device(device, T::into_host(data))?;
        Ok(CudaTensor::from_parts(device.clone(), storage, shape.to_vec(), contiguous_strides(shape)))
    }

    pub(crate) fn host_to_device(device: &Device, data: HostData) -> Result<Storage> {
        match device.executor() {
            None => Ok(Storage::Host(data)),
            Some(exec) => exec.upload(data),
        }
    }

    /// Copies the tensor to the host, in its logical shape whatever its memory layout; waits
    /// for queued work. `T` must be the tensor's dtype.
    pub fn to_array<T: Element>(&self) -> Result<ArrayD<T>> {
        if T::DTYPE != self.dtype {
            return Err(Error::DType(format!(
                "to_array::<{}>() on a tensor of dtype {}",
                T::DTYPE,
                self.dtype
            )));
        }
        let host = self.host_data()?;
        let src = T::host_slice(&host).ok_or_else(|| Error::DType("storage dtype mismatch".into()))?;
        let data = if self.is_contiguous() && self.offset == 0 && src.len() == self.numel() {
            src.to_vec()
        } else {
            let mut dst = vec![T::default(); self.numel()];
            gather_strided(src, &self.shape, &self.strides, self.offset, &mut dst);
            dst
        };
        ArrayD::from_shape_vec(IxDyn(&self.shape), data).map_err(|e| Error::Shape(e.to_string()))
    }

    /// The whole storage on the host (a copy for GPU storage).
    fn host_data(&self) -> Result<std::borrow::Cow<'_, HostData>> {
        if let Some(h) = self.storage.host() {
            return Ok(std::borrow::Cow::Borrowed(h));
        }
        let exec = self
            .device
            .executor()
            .ok_or_else(|| Error::Unsupported("GPU storage on a host device".into()))?;
        Ok(std::borrow::Cow::Owned(exec.download(&self.storage)?))
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    /// Strides in elements, as PyTorch's `stride()`.
    pub fn strides(&self) -> &[usize] {
        &self.strides
    }
    pub fn dtype(&self) -> DType {
        self.dtype
    }
    pub fn device(&self) -> &Device {
        &self.device
    }
    pub fn rank(&self) -> usize {
        self.shape.len()
    }
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
    pub(crate) fn storage(&self) -> &Storage {
        &self.storage
    }
    pub(crate) fn offset(&self) -> usize {
        self.offset
    }

    /// Row-major contiguous (PyTorch's `is_contiguous()`; size-1 dims are ignored).
    pub fn is_contiguous(&self) -> bool {
        // As PyTorch: an empty tensor is contiguous whatever its strides.
        if self.numel() == 0 {
            return true;
        }
        let order: Vec<usize> = (0..self.rank()).collect();
        is_dense_in_order(&self.shape, &self.strides, &order)
    }

    /// 4-D and dense in (N, H, W, C) order (PyTorch's `is_contiguous(memory_format=torch.channels_last)`).
    pub fn is_channels_last(&self) -> bool {
        self.rank() == 4 && is_dense_in_order(&self.shape, &self.strides, &[0, 2, 3, 1])
    }

    /// The dims in memory order (outermost first) when the tensor is dense in some order of its
    /// dims, as a permuted view of a contiguous buffer is; `None` when it has gaps or overlaps.
    pub(crate) fn dense_order(&self) -> Option<Vec<usize>> {
        let mut order: Vec<usize> = (0..self.rank()).collect();
        // Larger strides are outer; ties (size-1 dims) keep their logical order.
        order.sort_by(|&a, &b| self.strides[b].cmp(&self.strides[a]).then(a.cmp(&b)));
        is_dense_in_order(&self.shape, &self.strides, &order).then_some(order)
    }

    /// The memory layout pooling ops use for this tensor, as PyTorch's `suggest_memory_format`:
    /// channels-last when the tensor is channels-last and not also row-major.
    pub(crate) fn pool_layout(&self) -> Layout {
        if self.rank() == 4 && !self.is_contiguous() && self.is_channels_last() {
            Layout::Nhwc
        } else {
            Layout::Nchw
        }
    }

    /// This tensor dense in `layout` at offset 0 (itself when it already is; else a copy).
    pub(crate) fn dense_in(&self, layout: Layout) -> Result<CudaTensor> {
        let dense = match layout {
            Layout::Nhwc if self.rank() == 4 => self.is_channels_last(),
            _ => self.is_contiguous(),
        };
        if dense && self.offset == 0 {
            return Ok(self.clone());
        }
        match layout {
            Layout::Nhwc if self.rank() == 4 => self.to_channels_last(),
            _ => self.contiguous(),
        }
    }

    /// A row-major copy (or this tensor, when it already is one).
    pub fn contiguous(&self) -> Result<CudaTensor> {
        if self.is_contiguous() && self.offset == 0 {
            return Ok(self.clone());
        }
        let storage = self.copy_permuted(&(0..self.rank()).collect::<Vec<_>>())?;
        Ok(CudaTensor::from_parts(
            self.device.clone(),
            storage,
            self.shape.clone(),
            contiguous_strides(&self.shape),
        ))
    }

    /// A channels-last copy of a 4-D tensor (or itself, when it already is one).
    pub fn to_channels_last(&self) -> Result<CudaTensor> {
        if self.rank() != 4 {
            shape_err!("required rank 4 tensor to use channels_last format, but got shape {:?}", self.shape);
        }
        if self.is_channels_last() && self.offset == 0 {
            return Ok(self.clone());
        }
        let storage = self.copy_permuted(&[0, 2, 3, 1])?;
        Ok(CudaTensor::from_parts(
            self.device.clone(),
            storage,
            self.shape.clone(),
            channels_last_strides(&self.shape),
        ))
    }

    /// Writes the elements in the order of the dims `order` (innermost last) into a new
    /// dense buffer on the same device.
    pub(crate) fn copy_permuted(&self, order: &[usize]) -> Result<Storage> {
        let shape: Vec<usize> = order.iter().map(|&d| self.shape[d]).collect();
        let strides: Vec<usize> = order.iter().map(|&d| self.strides[d]).collect();
        match self.device.executor() {
            None => {
                let Some(src) = self.storage.host() else {
                    return Err(Error::Unsupported("GPU storage on the CPU device".into()));
                };
                let mut out = crate::host_cache::output(self.dtype, self.numel())?;
                crate::cpu::threads::join_calling_thread();
                macro_rules! go {
                    ($v:ident) => {{
                        let (HostData::$v(s), HostData::$v(d)) = (src, &mut out) else { unreachable!() };
                        gather_strided(s, &shape, &strides, self.offset, d);
                    }};
                }
                match self.dtype {
                    DType::F32 => go!(F32),
                    DType::F64 => go!(F64),
                    DType::F16 => go!(F16),
                    DType::BF16 => go!(BF16),
                    DType::I64 => go!(I64),
                }
                Ok(Storage::Host(out))
            }
            Some(exec) => {
                let plan = crate::cuda::copy::plan_strided_copy(
                    &shape,
                    &strides,
                    self.offset,
                    self.dtype,
                    &exec.limits(),
                )?;
                let mut out = exec.alloc_output(&plan, 0, self.dtype, self.numel())?;
                exec.execute(&plan, &[self.storage()], &mut [&mut out])?;
                Ok(out)
            }
        }
    }

    /// This tensor on `device` (a copy through the host between different devices).
    pub fn to_device(&self, device: &Device) -> Result<CudaTensor> {
        if &self.device == device {
            return Ok(self.clone());
        }
        let dense = self.contiguous()?;
        let host = dense.host_data()?.into_owned();
        let storage = Self::host_to_device(device, host)?;
        Ok(CudaTensor::from_parts(
            device.clone(),
            storage,
            self.shape.clone(),
            contiguous_strides(&self.shape),
        ))
    }

    /// This tensor converted to `dtype` (rounding to nearest even; floats to I64 truncate),
    /// keeping its layout. The conversion runs on the host.
    pub fn to_dtype(&self, dtype: DType) -> Result<CudaTensor> {
        if dtype == self.dtype {
            return Ok(self.clone());
        }
        let layout = self.pool_layout();
        let dense = self.dense_in(layout)?;
        let host = dense.host_data()?;
        let values: Vec<f64> = match host.as_ref() {
            HostData::F32(v) => v.iter().map(|x| *x as f64).collect(),
            HostData::F64(v) => v.clone(),
            HostData::F16(v) => v.iter().map(|x| x.to_f64()).collect(),
            HostData::BF16(v) => v.iter().map(|x| x.to_f64()).collect(),
            HostData::I64(v) => v.iter().map(|x| *x as f64).collect(),
        };
        let converted = match dtype {
            // i64 -> f32 through f64 could round twice; convert integers directly.
            DType::F32 => match host.as_ref() {
                HostData::I64(v) => HostData::F32(v.iter().map(|x| *x as f32).collect()),
                _ => HostData::F32(values.iter().map(|x| *x as f32).collect()),
            },
            DType::F64 => HostData::F64(values),
            DType::F16 => HostData::F16(values.iter().map(|x| half::f16::from_f64(*x)).collect()),
            DType::BF16 => HostData::BF16(values.iter().map(|x| half::bf16::from_f64(*x)).collect()),
            DType::I64 => HostData::I64(values.iter().map(|x| *x as i64).collect()),
        };
        let storage = Self::host_to_device(&self.device, converted)?;
        Ok(CudaTensor::from_parts(self.device.clone(), storage, self.shape.clone(), dense.strides.clone()))
    }

    /// A view with a new shape and no copy; one dim may be -1. Fails where PyTorch's `view`
    /// fails (when the strides cannot express the new shape).
    pub fn view(&self, shape: &[isize]) -> Result<CudaTensor> {
        let new_shape = infer_shape(shape, self.numel())?;
        let Some(strides) = view_strides(&self.shape, &self.strides, &new_shape) else {
            invalid_arg!(
                "view size is not compatible with input tensor's size and stride (at least one dimension spans across two contiguous subspaces). Use .reshape(...) instead. (shape {:?}, strides {:?}, requested {shape:?})",
                self.shape,
                self.strides
            );
        };
        Ok(CudaTensor { shape: new_shape, strides, ..self.clone() })
    }

    /// As [`Self::view`] where possible, else a row-major copy with the new shape.
    pub fn reshape(&self, shape: &[isize]) -> Result<CudaTensor> {
        let new_shape = infer_shape(shape, self.numel())?;
        if let Some(strides) = view_strides(&self.shape, &self.strides, &new_shape) {
            return Ok(CudaTensor { shape: new_shape, strides, ..self.clone() });
        }
        let dense = self.contiguous()?;
        Ok(CudaTensor { strides: contiguous_strides(&new_shape), shape: new_shape, ..dense })
    }

    /// `Err(DType)` unless this tensor holds floats (pooling and reductions).
    pub(crate) fn check_float(&self, op: &str) -> Result<()> {
        if self.dtype.is_float() {
            Ok(())
        } else {
            Err(Error::DType(format!(
                "{op}: expected a float tensor (f32, f64, f16, bf16), got {}",
                self.dtype
            )))
        }
    }
}

impl std::fmt::Debug for CudaTensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CudaTensor(shape={:?}, strides={:?}, dtype={}, device={})",
            self.shape,
            self.strides,
            self.dtype,
            self.device.name()
        )
    }
}

/// Host slices of a float tensor's storage, typed; used by the CPU backend's dispatch.
pub(crate) fn host_slice<T: Element>(storage: &Storage) -> Result<&[T]> {
    let host = storage.host().ok_or_else(|| Error::Unsupported("GPU storage on the CPU device".into()))?;
    T::host_slice(host).ok_or_else(|| Error::DType("storage dtype mismatch".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn view_follows_pytorch_compute_stride() {
        // (2, 3, 4, 5) channels-last: H and W merge (the third GAP formulation's view works),
        // C and H do not, as in PyTorch.
        let shape = [2, 3, 4, 5];
        let cl = channels_last_strides(&shape);
        assert_eq!(view_strides(&shape, &cl, &[2, 3, 20]).unwrap(), vec![60, 1, 3]);
        assert!(view_strides(&shape, &cl, &[6, 20]).is_none());
        assert!(view_strides(&shape, &cl, &[120]).is_none());
        assert_eq!(view_strides(&shape, &cl, &[2, 3, 4, 5]).unwrap(), cl);
        let c = contiguous_strides(&shape);
        assert_eq!(view_strides(&shape, &c, &[2, 3, 20]).unwrap(), vec![60, 20, 1]);
        // (N, C, 1, 1) channels-last views as (N, C).
        let s = [4, 6, 1, 1];
        assert_eq!(view_strides(&s, &channels_last_strides(&s), &[4, 6]).unwrap(), vec![6, 1]);
    }

    #[test]
    fn from_vec_checks_the_element_count_and_keeps_the_data() {
        let dev = Device::cpu();
        assert!(CudaTensor::from_vec(&dev, &[2, 3], vec![0f32; 5]).is_err());
        let t = CudaTensor::from_vec(&dev, &[2, 3], (0..6).map(|i| i as f32).collect()).unwrap();
        assert_eq!(
            t.to_array::<f32>().unwrap().iter().copied().collect::<Vec<_>>(),
            vec![0., 1., 2., 3., 4., 5.]
        );
        assert!(t.is_contiguous());
    }

    #[test]
    fn infer_shape_rules() {
        assert_eq!(infer_shape(&[2, -1], 6).unwrap(), vec![2, 3]);
        assert!(infer_shape(&[-1, -1], 6).is_err());
        assert!(infer_shape(&[4, -1], 6).is_err());
        assert!(infer_shape(&[7], 6).is_err());
        assert!(infer_shape(&[0, -1], 0).is_err());
    }
}
