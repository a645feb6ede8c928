//! Launch planning for kernels/adaptive.cu. A `[1, 1]` adaptive average is a global mean and
//! goes to the reduction (src/cuda/reduce.rs), as PyTorch does, so GAP runs at one speed in
//! every formulation.

use super::plan::{BufferId, KernelArg, OpPlan};
use super::reduce::{blocks_for, check_float, launch, plan_reduce, to_i64};
use super::DeviceLimits;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::ops::adaptive::AdaptiveGeometry;
use crate::ops::reduce_geometry::{ReduceFinish, ReduceGeometry};
use crate::ops::Layout;

const BLOCK: u32 = 256;

/// Mirrors `AdaptiveParams` in kernels/adaptive.cu.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct AdaptiveParams {
    pub n: i64,
    pub c: i64,
    pub h: i64,
    pub w: i64,
    pub out_h: i64,
    pub out_w: i64,
    pub vec: i32,
    pub pad_: i32,
}

fn plan_adaptive(
    op: &str,
    g: &AdaptiveGeometry,
    layout: Layout,
    dtype: DType,
    with_indices: bool,
    limits: &DeviceLimits,
) -> Result<OpPlan> {
    check_float(dtype, op)?;
    if g.output_len() == 0 {
        return Ok(OpPlan::default());
    }
    // (o + 1) * I must not overflow in the kernel's 64-bit bound formulas.
    let biggest = g.input_len().max(g.output_len());
    if biggest > i64::MAX as usize / 8
        || g.out_h.checked_mul(g.h.max(1)).is_none()
        || g.out_w.checked_mul(g.w.max(1)).is_none()
    {
        return Err(Error::InvalidArgument(format!("{op}: tensor too large for 64-bit indexing")));
    }
    let mut p = AdaptiveParams {
        n: to_i64(g.n, "N")?,
        c: to_i64(g.c, "C")?,
        h: to_i64(g.h, "H")?,
        w: to_i64(g.w, "W")?,
        out_h: to_i64(g.out_h, "out_h")?,
        out_w: to_i64(g.out_w, "out_w")?,
        vec: 1,
        pad_: 0,
    };
    let sfx = dtype.kernel_suffix();
    let idx = if with_indices { "_idx" } else { "" };
    let (kernel, threads) = match layout {
        Layout::Nchw => (format!("{op}_nchw{idx}_{sfx}"), g.output_len()),
        Layout::Nhwc => {
            p.vec = if g.c.is_multiple_of(4) { 4 } else { 1 };
            (format!("{op}_nhwc{idx}_{sfx}"), g.output_len() / p.vec as usize)
        }
    };
    let mut args = vec![
        KernelArg::params(&p),
        KernelArg::Buffer(BufferId::Input(0)),
        KernelArg::Buffer(BufferId::Output(0)),
    ];
    if with_indices {
        args.push(KernelArg::Buffer(BufferId::Output(1)));
    }
    Ok(OpPlan {
        launches: vec![launch(kernel, [blocks_for(threads, BLOCK), 1, 1], BLOCK, 0, args, limits)?],
        ..OpPlan::default()
    })
}

/// Plans `adaptive_avg_pool2d`. Input(0) = x, Output(0) = y, both contiguous in `layout`.
pub fn plan_adaptive_avg_pool2d(
    g: &AdaptiveGeometry,
    layout: Layout,
    dtype: DType,
    limits: &DeviceLimits,
) -> Result<OpPlan> {
    if g.out_h == 1 && g.out_w == 1 && g.h > 0 && g.w > 0 {
        let hw = g.h * g.w;
        let geometry = match layout {
            Layout::Nchw => ReduceGeometry { outer: g.n * g.c, reduce: hw, inner: 1 },
            Layout::Nhwc => ReduceGeometry { outer: g.n, reduce: hw, inner: g.c },
        };
        return plan_reduce(&geometry, ReduceFinish::DivideBy(hw as f64), dtype, limits);
    }
    plan_adaptive("adaptive_avg_pool2d", g, layout, dtype, false, limits)
}

/// Plans `adaptive_max_pool2d`. Output(0) = values; Output(1) = i64 indices only when
/// `with_indices`.
pub fn plan_adaptive_max_pool2d(
    g: &AdaptiveGeometry,
    layout: Layout,
    dtype: DType,
    with_indices: bool,
    limits: &DeviceLimits,
) -> Result<OpPlan> {
    plan_adaptive("adaptive_max_pool2d", g, layout, dtype, with_indices, limits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn global_average_goes_to_the_reduction() {
        let g = AdaptiveGeometry { n: 2, c: 8, h: 7, w: 7, out_h: 1, out_w: 1 };
        let plan = plan_adaptive_avg_pool2d(&g, Layout::Nchw, DType::F32, &DeviceLimits::HOPPER).unwrap();
        assert_eq!(plan.launches[0].kernel, "reduce_rows_short_f32");
        assert_eq!(std::mem::size_of::<AdaptiveParams>(), 56);
    }
}
