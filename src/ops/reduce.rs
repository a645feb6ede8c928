//! `mean`, `sum` and the GAP entry points. Every reduction is brought to one shape,
//! `[outer, reduce, inner]` in memory order, so one row kernel (inner == 1) and one strided
//! kernel (inner > 1) serve NCHW GAP, NHWC GAP and `mean` over any dims.

use crate::cpu;
use crate::cuda;
use crate::error::{shape_err, Result};
use crate::ops::dispatch::{cpu_float_call, run_op};
use crate::ops::reduce_geometry::{normalize_dims, ReduceFinish, ReduceGeometry};
use crate::ops::Layout;
use crate::storage::Storage;
use crate::tensor::{layout_strides, CudaTensor};

/// The three ways PyTorch users write global average pooling; all give (N, C).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gap {
    /// `F.avg_pool2d(x, x.size()[2:])`
    AvgPool2d,
    /// `F.adaptive_avg_pool2d(x, (1, 1))`
    AdaptiveAvgPool2d,
    /// `torch.mean(x.view(N, C, -1), dim=2)` (computed as `mean` over H and W, the same
    /// reduction without the view)
    Mean,
}

/// Runs `geometry` on `x` (dense in memory, offset 0) and wraps the `[outer, inner]` result
/// with the given logical shape and strides.
fn run_reduce(
    x: &CudaTensor,
    geometry: ReduceGeometry,
    finish: ReduceFinish,
    out_shape: Vec<usize>,
    out_strides: Vec<usize>,
) -> Result<CudaTensor> {
    let dtype = x.dtype();
    let out = run_op(
        &[x],
        dtype,
        geometry.output_len(),
        None,
        |inputs, y, _| {
            cpu_float_call!(dtype, inputs[0], y, |T, xs, ys| cpu::reduce::reduce::<T>(
                &geometry, finish, xs, ys
            ))
        },
        |limits| cuda::reduce::plan_reduce(&geometry, finish, dtype, limits),
    )?;
    Ok(CudaTensor::from_parts(x.device().clone(), out.values, out_shape, out_strides))
}

/// Reduces each (n, c) plane of a pooling input: `nc_hw` = [N, C, H*W]. The result has
/// `out_shape` ((N, C, 1, 1), or (C, 1, 1) for 3-D input) in `layout`.
pub(crate) fn global_reduce(
    x: &CudaTensor,
    layout: Layout,
    nc_hw: [usize; 3],
    finish: ReduceFinish,
    out_shape: Vec<usize>,
) -> Result<CudaTensor> {
    let x = x.dense_in(layout)?;
    let [n, c, hw] = nc_hw;
    let geometry = match layout {
        Layout::Nchw => ReduceGeometry { outer: n * c, reduce: hw, inner: 1 },
        Layout::Nhwc => ReduceGeometry { outer: n, reduce: hw, inner: c },
    };
    let strides = layout_strides(&out_shape, layout);
    run_reduce(&x, geometry, finish, out_shape, strides)
}

impl CudaTensor {
    /// `torch.mean(x, dims, keepdim)`; an empty `dims` reduces every dim. Accumulates in f32
    /// (f64 for f64) and divides once.
    pub fn mean(&self, dims: &[isize], keepdim: bool) -> Result<CudaTensor> {
        self.reduce_dims("mean", dims, keepdim, true)
    }

    /// `torch.sum(x, dims, keepdim)`; an empty `dims` reduces every dim.
    pub fn sum(&self, dims: &[isize], keepdim: bool) -> Result<CudaTensor> {
        self.reduce_dims("sum", dims, keepdim, false)
    }

    /// Global average pooling of an (N, C, H, W) tensor to (N, C) (or (C, H, W) to (C)),
    /// through any of the three PyTorch formulations.
    pub fn global_avg_pool(&self, how: Gap) -> Result<CudaTensor> {
        let (nc, plane): (Vec<isize>, [usize; 2]) = match *self.shape() {
            [n, c, h, w] => (vec![n as isize, c as isize], [h, w]),
            [c, h, w] => (vec![c as isize], [h, w]),
            _ => shape_err!("global_avg_pool: expected a 3-D or 4-D tensor, got shape {:?}", self.shape()),
        };
        let pooled = match how {
            Gap::AvgPool2d => self.avg_pool2d(&crate::ops::window::AvgPool2d::new(plane))?,
            Gap::AdaptiveAvgPool2d => self.adaptive_avg_pool2d([1, 1])?,
            Gap::Mean => return self.mean(&[-2, -1], false),
        };
        pooled.view(&nc)
    }

    fn reduce_dims(&self, op: &str, dims: &[isize], keepdim: bool, mean: bool) -> Result<CudaTensor> {
        self.check_float(op)?;
        let rank = self.rank();
        let reduced = normalize_dims(dims, rank)?;
        let is_reduced = |d: usize| reduced.contains(&d);
        let count: usize = reduced.iter().map(|&d| self.shape()[d]).product();
        let finish = if mean { ReduceFinish::DivideBy(count as f64) } else { ReduceFinish::Sum };

        // Memory order of the dims (innermost last): any dense permutation (row-major,
        // channels-last, or a view of one such as channels-last `view(N, C, -1)`) is reduced
        // in place; other strides get a row-major copy first.
        let (x, order): (CudaTensor, Vec<usize>) = match self.dense_order() {
            Some(order) if self.offset() == 0 => (self.clone(), order),
            _ => (self.contiguous()?, (0..rank).collect()),
        };
        let kept_in_memory_order: Vec<usize> = order.iter().copied().filter(|&d| !is_reduced(d)).collect();

        // The kernels write the kept dims in memory order; PyTorch returns reductions
        // row-major, so a permuted result is reordered at the end (outputs are small).
        let out_shape: Vec<usize> = (0..rank)
            .filter_map(|d| if is_reduced(d) { keepdim.then_some(1) } else { Some(self.shape()[d]) })
            .collect();
        let out_strides = {
            let mut full = vec![0usize; rank];
            let mut acc = 1;
            for &d in kept_in_memory_order.iter().rev() {
                full[d] = acc;
                acc *= self.shape()[d].max(1);
            }
            for &d in &reduced {
                full[d] = acc;
            }
            (0..rank).filter(|&d| keepdim || !is_reduced(d)).map(|d| full[d]).collect::<Vec<_>>()
        };
        let out_len: usize = kept_in_memory_order.iter().map(|&d| self.shape()[d]).product();

        if count == 0 || x.numel() == 0 {
            let geometry = ReduceGeometry { outer: out_len, reduce: 0, inner: 1 };
            return run_reduce(&x, geometry, finish, out_shape, out_strides)?.contiguous();
        }

        // Group the memory-order dims (size-1 dims dropped) into runs of kept / reduced.
        let mut groups: Vec<(bool, usize)> = Vec::new();
        for &d in &order {
            let size = self.shape()[d];
            if size == 1 {
                continue;
            }
            match groups.last_mut() {
                Some((r, s)) if *r == is_reduced(d) => *s *= size,
                _ => groups.push((is_reduced(d), size)),
            }
        }
        let reduced_runs = groups.iter().filter(|(r, _)| *r).count();
        let geometry = if reduced_runs <= 1 {
            let at = groups.iter().position(|(r, _)| *r);
            let (outer, reduce, inner) = match at {
                None => (out_len, 1, 1),
                Some(i) => (
                    groups[..i].iter().map(|g| g.1).product(),
                    groups[i].1,
                    groups[i + 1..].iter().map(|g| g.1).product(),
                ),
            };
            ReduceGeometry { outer, reduce, inner }
        } else {
            // Reduced dims in several runs: one copy puts them innermost, then a row reduction.
            let reduced_in_memory_order: Vec<usize> =
                order.iter().copied().filter(|&d| is_reduced(d)).collect();
            let perm: Vec<usize> =
                kept_in_memory_order.iter().chain(&reduced_in_memory_order).copied().collect();
            let storage: Storage = x.copy_permuted(&perm)?;
            let permuted_shape: Vec<usize> = perm.iter().map(|&d| self.shape()[d]).collect();
            let strides = crate::tensor::contiguous_strides(&permuted_shape);
            let permuted = CudaTensor::from_parts(x.device().clone(), storage, permuted_shape, strides);
            let geometry = ReduceGeometry { outer: out_len, reduce: count, inner: 1 };
            return run_reduce(&permuted, geometry, finish, out_shape, out_strides)?.contiguous();
        };
        run_reduce(&x, geometry, finish, out_shape, out_strides)?.contiguous()
    }
}
