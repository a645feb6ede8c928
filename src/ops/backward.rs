//! Backward passes: the gradient of each pooling op with respect to its input `x`, with `x`'s
//! shape, dtype and layout. Every backend computes them as a gather (each input element sums
//! the outputs whose windows cover it, in a fixed order), so results repeat bit for bit; no
//! atomics touch data.

use crate::cpu;
use crate::cuda;
use crate::dtype::DType;
use crate::error::{invalid_arg, shape_err, Error, Result};
use crate::ops::adaptive::{plan_adaptive_pool, AdaptiveKind};
use crate::ops::dispatch::{cpu_float_call, run_op};
use crate::ops::pool::pooled_shape;
use crate::ops::reduce_geometry::normalize_dims;
use crate::ops::window::{plan_window_pool, AvgPool2d, MaxPool2d};
use crate::ops::Layout;
use crate::storage::Storage;
use crate::tensor::{host_slice, layout_strides, CudaTensor};

/// Checks a gradient (and indices) against `x` and the forward output shape.
fn check_grad(x: &CudaTensor, op: &str, grad_out: &CudaTensor, expected: &[usize]) -> Result<()> {
    x.device().check_same(grad_out.device(), &format!("{op}: grad_output"))?;
    if grad_out.dtype() != x.dtype() {
        return Err(Error::DType(format!(
            "{op}: grad_output has dtype {} but the input has dtype {}",
            grad_out.dtype(),
            x.dtype()
        )));
    }
    if grad_out.shape() != expected {
        shape_err!(
            "{op}: expected grad_output of shape {expected:?} (the forward output's), got {:?}",
            grad_out.shape()
        );
    }
    Ok(())
}

fn check_indices(x: &CudaTensor, op: &str, indices: &CudaTensor, expected: &[usize]) -> Result<()> {
    x.device().check_same(indices.device(), &format!("{op}: indices"))?;
    if indices.dtype() != DType::I64 {
        return Err(Error::DType(format!("{op}: indices must be I64, got {}", indices.dtype())));
    }
    if indices.shape() != expected {
        shape_err!("{op}: expected indices of shape {expected:?}, got {:?}", indices.shape());
    }
    Ok(())
}

/// Reads the error flag a max backward raises for an index outside its plane (one i64; the
/// CPU kernel's return value, or the GPU kernel's flag read back).
fn check_index_flag(x: &CudaTensor, flag: Option<Storage>, op: &str, plane: usize) -> Result<()> {
    let Some(flag) = flag else { return Ok(()) };
    let raised = match x.device().executor() {
        Some(exec) => std::borrow::Cow::Owned(exec.download(&flag)?),
        None => std::borrow::Cow::Borrowed(
            flag.host().ok_or_else(|| Error::Unsupported("GPU storage on the CPU device".into()))?,
        ),
    };
    if <i64 as crate::dtype::Element>::host_slice(&raised).and_then(|f| f.first()).is_some_and(|&f| f != 0) {
        invalid_arg!("{op}: found an invalid max index (outside the input plane of {plane} elements)");
    }
    Ok(())
}

/// The output plane (oh, ow) an adaptive backward's `grad_out` implies; its full shape is
/// checked against the forward output by `check_grad`.
///
/// PyTorch's adaptive backward rejects a `grad_out` with an empty non-batch dimension (the
/// forward accepts an empty output size, so such a gradient can arise).
fn adaptive_grad_plane(x: &CudaTensor, op: &str, grad_out: &CudaTensor) -> Result<[usize; 2]> {
    let shape = grad_out.shape();
    if let Some(i) = (1..shape.len()).find(|&i| shape[i] == 0) {
        shape_err!(
            "{op}(): Expected grad_output to have non-zero size for non-batch dimensions, but grad_output has sizes {shape:?} with dimension {i} being empty"
        );
    }
    match shape {
        [.., oh, ow] if grad_out.rank() == x.rank() => Ok([*oh, *ow]),
        _ => shape_err!(
            "{op}: grad_output of shape {shape:?} does not match the input of shape {:?}",
            x.shape()
        ),
    }
}

impl CudaTensor {
    /// Gradient of [`CudaTensor::avg_pool2d`] with respect to `self` (the forward input).
    pub fn avg_pool2d_backward(&self, grad_out: &CudaTensor, spec: &AvgPool2d) -> Result<CudaTensor> {
        const OP: &str = "avg_pool2d_backward";
        self.check_float(OP)?;
        if spec.divisor_override == Some(0) {
            invalid_arg!("{OP}: divisor must be not zero");
        }
        let g = plan_window_pool(
            OP,
            self.shape(),
            spec.kernel,
            spec.stride,
            spec.padding,
            [1, 1],
            spec.ceil_mode,
        )?;
        check_grad(self, OP, grad_out, &pooled_shape(self.shape(), g.out_h, g.out_w))?;
        let layout = self.pool_layout();
        let go = grad_out.dense_in(layout)?;
        let rule = spec.rule();
        let dtype = self.dtype();
        let out = run_op(
            &[&go],
            dtype,
            g.input_len(),
            None,
            |inputs, gi, _| {
                cpu_float_call!(dtype, inputs[0], gi, |T, gos, gis| cpu::backward::avg_pool2d_backward::<T>(
                    &g, rule, layout, gos, gis
                ))
            },
            |limits| cuda::backward::plan_avg_pool2d_backward(&g, rule, layout, dtype, limits),
        )?;
        Ok(self.gradient(out.values, layout))
    }

    /// Gradient of [`CudaTensor::max_pool2d`]: each output's gradient goes to the input element
    /// its index names. An index outside its plane is an error, never an out-of-bounds write.
    pub fn max_pool2d_backward(
        &self,
        grad_out: &CudaTensor,
        indices: &CudaTensor,
        spec: &MaxPool2d,
    ) -> Result<CudaTensor> {
        const OP: &str = "max_pool2d_backward";
        self.check_float(OP)?;
        let g = plan_window_pool(
            OP,
            self.shape(),
            spec.kernel,
            spec.stride,
            spec.padding,
            spec.dilation,
            spec.ceil_mode,
        )?;
        let out_shape = pooled_shape(self.shape(), g.out_h, g.out_w);
        check_grad(self, OP, grad_out, &out_shape)?;
        check_indices(self, OP, indices, &out_shape)?;
        let layout = self.pool_layout();
        let (go, idx) = (grad_out.dense_in(layout)?, indices.dense_in(layout)?);
        let dtype = self.dtype();
        let out = run_op(
            &[&go, &idx],
            dtype,
            g.input_len(),
            Some(1),
            |inputs, gi, flag| {
                let idx = host_slice::<i64>(inputs[1])?;
                let flag = flag.expect("flag requested");
                cpu_float_call!(dtype, inputs[0], gi, |T, gos, gis| flag[0] =
                    cpu::backward::max_pool2d_backward::<T>(&g, layout, gos, idx, gis) as i64)
            },
            |limits| cuda::backward::plan_max_pool2d_backward(&g, layout, dtype, limits),
        )?;
        check_index_flag(self, out.indices, OP, g.h * g.w)?;
        Ok(self.gradient(out.values, layout))
    }

    /// Gradient of [`CudaTensor::adaptive_avg_pool2d`].
    pub fn adaptive_avg_pool2d_backward(&self, grad_out: &CudaTensor) -> Result<CudaTensor> {
        const OP: &str = "adaptive_avg_pool2d_backward";
        self.check_float(OP)?;
        let [oh, ow] = adaptive_grad_plane(self, OP, grad_out)?;
        let g = plan_adaptive_pool(AdaptiveKind::Avg, self.shape(), [oh, ow])?;
        check_grad(self, OP, grad_out, &pooled_shape(self.shape(), oh, ow))?;
        let layout = self.pool_layout();
        let go = grad_out.dense_in(layout)?;
        let dtype = self.dtype();
        let out = run_op(
            &[&go],
            dtype,
            g.input_len(),
            None,
            |inputs, gi, _| {
                cpu_float_call!(dtype, inputs[0], gi, |T, gos, gis| {
                    cpu::backward::adaptive_avg_pool2d_backward::<T>(&g, layout, gos, gis)
                })
            },
            |limits| cuda::backward::plan_adaptive_avg_pool2d_backward(&g, layout, dtype, limits),
        )?;
        Ok(self.gradient(out.values, layout))
    }

    /// Gradient of [`CudaTensor::adaptive_max_pool2d`], routed through `indices`.
    pub fn adaptive_max_pool2d_backward(
        &self,
        grad_out: &CudaTensor,
        indices: &CudaTensor,
    ) -> Result<CudaTensor> {
        const OP: &str = "adaptive_max_pool2d_backward";
        self.check_float(OP)?;
        let [oh, ow] = adaptive_grad_plane(self, OP, grad_out)?;
        let g = plan_adaptive_pool(AdaptiveKind::Max, self.shape(), [oh, ow])?;
        let out_shape = pooled_shape(self.shape(), oh, ow);
        check_grad(self, OP, grad_out, &out_shape)?;
        check_indices(self, OP, indices, &out_shape)?;
        let layout = self.pool_layout();
        let (go, idx) = (grad_out.dense_in(layout)?, indices.dense_in(layout)?);
        let dtype = self.dtype();
        let out = run_op(
            &[&go, &idx],
            dtype,
            g.input_len(),
            Some(1),
            |inputs, gi, flag| {
                let idx = host_slice::<i64>(inputs[1])?;
                let flag = flag.expect("flag requested");
                cpu_float_call!(dtype, inputs[0], gi, |T, gos, gis| flag[0] =
                    cpu::backward::adaptive_max_pool2d_backward::<T>(&g, layout, gos, idx, gis) as i64)
            },
            |limits| cuda::backward::plan_adaptive_max_pool2d_backward(&g, layout, dtype, limits),
        )?;
        check_index_flag(self, out.indices, OP, g.h * g.w)?;
        Ok(self.gradient(out.values, layout))
    }

    /// Gradient of [`CudaTensor::mean`] over `dims`: `grad_out` broadcast back to `self`'s shape,
    /// divided by the number of elements each mean averaged. Covers the third GAP formulation.
    pub fn mean_backward(&self, grad_out: &CudaTensor, dims: &[isize], keepdim: bool) -> Result<CudaTensor> {
        const OP: &str = "mean_backward";
        self.check_float(OP)?;
        let rank = self.rank();
        let reduced = normalize_dims(dims, rank)?;
        let expected: Vec<usize> = (0..rank)
            .filter_map(|d| if reduced.contains(&d) { keepdim.then_some(1) } else { Some(self.shape()[d]) })
            .collect();
        check_grad(self, OP, grad_out, &expected)?;
        let count: usize = reduced.iter().map(|&d| self.shape()[d]).product();

        // The gradient takes x's layout; walking x's dims in that memory order, a reduced dim
        // reads grad_out with stride 0 (a broadcast).
        let layout = if rank == 4 { self.pool_layout() } else { Layout::Nchw };
        let order: Vec<usize> = match layout {
            Layout::Nhwc => vec![0, 2, 3, 1],
            Layout::Nchw => (0..rank).collect(),
        };
        let go = grad_out.contiguous()?;
        let mut go_strides_full = vec![0usize; rank];
        let mut go_dim = 0;
        for (d, full) in go_strides_full.iter_mut().enumerate() {
            if !reduced.contains(&d) {
                *full = go.strides()[go_dim];
                go_dim += 1;
            } else if keepdim {
                go_dim += 1;
            }
        }
        let shape: Vec<usize> = order.iter().map(|&d| self.shape()[d]).collect();
        let strides: Vec<usize> = order.iter().map(|&d| go_strides_full[d]).collect();
        let divisor = count as f64;
        let dtype = self.dtype();
        let out = run_op(
            &[&go],
            dtype,
            self.numel(),
            None,
            |inputs, gi, _| {
                cpu_float_call!(dtype, inputs[0], gi, |T, gos, gis| cpu::backward::broadcast_divide::<T>(
                    &shape, &strides, divisor, gos, gis
                ))
            },
            |limits| cuda::backward::plan_broadcast_divide(&shape, &strides, divisor, dtype, limits),
        )?;
        let strides = if rank == 4 {
            layout_strides(self.shape(), layout)
        } else {
            crate::tensor::contiguous_strides(self.shape())
        };
        Ok(CudaTensor::from_parts(self.device().clone(), out.values, self.shape().to_vec(), strides))
    }

    /// Wraps a gradient buffer with `self`'s shape in `layout`.
    fn gradient(&self, storage: Storage, layout: Layout) -> CudaTensor {
        let strides = layout_strides(self.shape(), layout);
        CudaTensor::from_parts(self.device().clone(), storage, self.shape().to_vec(), strides)
    }
}
