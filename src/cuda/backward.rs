//! Launch planning for kernels/backward.cu: the backward passes of every pooling op, as gathers
//! (one thread per run of four input elements of a row, or per NHWC position and group of four
//! channels), so results repeat bit for bit with no atomics on data.
//!
//! Buffers: `Input(0)` = grad_out, `Input(1)` = indices (max variants), `Output(0)` = grad_in,
//! `Output(1)` = a one-element i64 error flag (max variants; zero-initialised, set to 1 by the
//! kernel when an index lies outside its plane).

use super::plan::{BufferId, KernelArg, LaunchPlan, OpPlan};
use super::DeviceLimits;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::ops::adaptive::AdaptiveGeometry;
use crate::ops::window::{AvgRule, WindowGeometry};
use crate::ops::Layout;

const BLOCK: u32 = 256;
/// Blocks per SM a grid-stride launch aims for: enough to hide latency, few enough that huge
/// tensors loop instead of launching millions of blocks.
const BLOCKS_PER_SM: usize = 32;
/// Input elements of one row per NCHW work item (mirrors CUPOOL_BWD_RUN).
const NCHW_RUN: usize = 4;
/// The most dims `broadcast_divide` takes after merging (mirrors CUPOOL_MAX_BCAST_RANK).
const MAX_BCAST_RANK: usize = 8;

/// Mirrors `BackwardParams` in kernels/backward.cu (8-byte fields first, no padding).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct BackwardParams {
    pub n: i64,
    pub c: i64,
    pub h: i64,
    pub w: i64,
    pub out_h: i64,
    pub out_w: i64,
    pub kh: i64,
    pub kw: i64,
    pub sh: i64,
    pub sw: i64,
    pub ph: i64,
    pub pw: i64,
    pub dh: i64,
    pub dw: i64,
    pub divisor_override: i64,
    pub total: i64,
    pub count_include_pad: i32,
    pub has_override: i32,
    pub vec: i32,
    pub pad_: i32,
}

/// Mirrors `BroadcastParams` in kernels/backward.cu (no padding: 8-byte fields, then two i32).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct BroadcastParams {
    pub shape: [i64; MAX_BCAST_RANK],
    pub strides: [i64; MAX_BCAST_RANK],
    pub total: i64,
    pub divisor: f64,
    pub rank: i32,
    pub pad_: i32,
}

fn to_i64(v: usize, what: &str) -> Result<i64> {
    i64::try_from(v).map_err(|_| {
        Error::InvalidArgument(format!("backward: {what} ({v}) does not fit in 64-bit indexing"))
    })
}

fn check_float(dtype: DType, op: &str) -> Result<()> {
    if dtype.is_float() {
        Ok(())
    } else {
        Err(Error::DType(format!("{op}: expected a float dtype, got {dtype}")))
    }
}

/// Every offset the kernels form is below the larger of the input and output lengths (times 8
/// bytes for i64 indices); both must fit in i64.
fn check_sizes(input_len: usize, output_len: usize) -> Result<()> {
    if input_len.max(output_len) > i64::MAX as usize / 8 {
        return Err(Error::InvalidArgument("pooling backward: tensor too large for 64-bit indexing".into()));
    }
    Ok(())
}

/// A grid-stride launch of `kernel` over `items` work items.
fn grid_stride_launch(
    kernel: String,
    items: usize,
    args: Vec<KernelArg>,
    limits: &DeviceLimits,
) -> LaunchPlan {
    let block = BLOCK.min(limits.max_threads_per_block.max(32));
    let wanted = items.div_ceil(block as usize);
    let cap = (limits.sm_count.max(1) as usize) * BLOCKS_PER_SM;
    let blocks = wanted.clamp(1, cap.min(i32::MAX as usize));
    LaunchPlan { kernel, grid: [blocks as u32, 1, 1], block: [block, 1, 1], shared_mem_bytes: 0, args }
}

struct Problem {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    out_h: usize,
    out_w: usize,
}

fn base_params(pb: &Problem) -> Result<BackwardParams> {
    Ok(BackwardParams {
        n: to_i64(pb.n, "N")?,
        c: to_i64(pb.c, "C")?,
        h: to_i64(pb.h, "H")?,
        w: to_i64(pb.w, "W")?,
        out_h: to_i64(pb.out_h, "out_h")?,
        out_w: to_i64(pb.out_w, "out_w")?,
        kh: 1,
        kw: 1,
        sh: 1,
        sw: 1,
        ph: 0,
        pw: 0,
        dh: 1,
        dw: 1,
        divisor_override: 0,
        total: 0,
        count_include_pad: 1,
        has_override: 0,
        vec: 1,
        pad_: 0,
    })
}

fn window_params(g: &WindowGeometry) -> Result<BackwardParams> {
    let pb = Problem { n: g.n, c: g.c, h: g.h, w: g.w, out_h: g.out_h, out_w: g.out_w };
    let mut p = base_params(&pb)?;
    p.kh = to_i64(g.kernel[0], "kernel")?;
    p.kw = to_i64(g.kernel[1], "kernel")?;
    p.sh = to_i64(g.stride[0], "stride")?;
    p.sw = to_i64(g.stride[1], "stride")?;
    p.ph = to_i64(g.padding[0], "padding")?;
    p.pw = to_i64(g.padding[1], "padding")?;
    p.dh = to_i64(g.dilation[0], "dilation")?;
    p.dw = to_i64(g.dilation[1], "dilation")?;
    Ok(p)
}

/// Plans one gather kernel `{op}_{layout}_{dtype}` over the input; with indices, after the
/// audit `{op}_audit_{layout}` over them (kernels/backward.cu).
fn plan_gather(
    op: &str,
    pb: Problem,
    mut p: BackwardParams,
    layout: Layout,
    dtype: DType,
    with_indices: bool,
    limits: &DeviceLimits,
) -> Result<OpPlan> {
    check_float(dtype, op)?;
    let input_len = pb.n * pb.c * pb.h * pb.w;
    let output_len = pb.n * pb.c * pb.out_h * pb.out_w;
    check_sizes(input_len, output_len)?;
    // The max kinds' error flag (Output(1)) is only ever set, so it starts at zero; grad_in is
    // written in full by the gather.
    let zeroed_outputs = if with_indices { vec![1] } else { vec![] };
    // Nothing to write (an empty batch).
    if input_len == 0 {
        return Ok(OpPlan { zeroed_outputs, ..OpPlan::default() });
    }
    let (tag, items) = match layout {
        // A run of NCHW_RUN elements of one row per work item (kernels/backward.cu).
        Layout::Nchw => ("nchw", pb.n * pb.c * pb.h * pb.w.div_ceil(NCHW_RUN)),
        Layout::Nhwc => {
            // Four channels per thread: one vector load of grad_out (and indices) per output.
            p.vec = if pb.c.is_multiple_of(4) { 4 } else { 1 };
            ("nhwc", input_len / p.vec as usize)
        }
    };
    let mut launches = Vec::with_capacity(2);
    let mut scratch_bytes = Vec::new();
    let mut args = vec![
        KernelArg::params(&BackwardParams { total: to_i64(items, "work items")?, ..p }),
        KernelArg::Buffer(BufferId::Input(0)),
    ];
    if with_indices {
        // The audit (kernels/backward.cu): every index checked against its plane (the error
        // flag, Output(1)) and its window (a zeroed per-plane scratch the gather reads).
        if output_len > 0 {
            let audit = vec![
                KernelArg::params(&BackwardParams { total: to_i64(output_len, "outputs")?, ..p }),
                KernelArg::Buffer(BufferId::Input(1)),
                KernelArg::Buffer(BufferId::Output(1)),
                KernelArg::Buffer(BufferId::Scratch(0)),
            ];
            launches.push(grid_stride_launch(format!("{op}_audit_{tag}"), output_len, audit, limits));
        }
        scratch_bytes.push(pb.n * pb.c * std::mem::size_of::<i64>());
        args.push(KernelArg::Buffer(BufferId::Input(1)));
        args.push(KernelArg::Buffer(BufferId::Scratch(0)));
    }
    args.push(KernelArg::Buffer(BufferId::Output(0)));
    let kernel = format!("{op}_{tag}_{}", dtype.kernel_suffix());
    launches.push(grid_stride_launch(kernel, items, args, limits));
    Ok(OpPlan { launches, scratch_bytes, zeroed_outputs })
}

/// Plans the gradient of `avg_pool2d`.
pub fn plan_avg_pool2d_backward(
    g: &WindowGeometry,
    rule: AvgRule,
    layout: Layout,
    dtype: DType,
    limits: &DeviceLimits,
) -> Result<OpPlan> {
    let mut p = window_params(g)?;
    p.count_include_pad = i32::from(rule.count_include_pad);
    if let Some(d) = rule.divisor_override {
        p.has_override = 1;
        p.divisor_override = d;
    }
    let pb = Problem { n: g.n, c: g.c, h: g.h, w: g.w, out_h: g.out_h, out_w: g.out_w };
    plan_gather("avg_pool2d_backward", pb, p, layout, dtype, false, limits)
}

/// Plans the gradient of `max_pool2d` (indices audited, then routed).
pub fn plan_max_pool2d_backward(
    g: &WindowGeometry,
    layout: Layout,
    dtype: DType,
    limits: &DeviceLimits,
) -> Result<OpPlan> {
    let p = window_params(g)?;
    let pb = Problem { n: g.n, c: g.c, h: g.h, w: g.w, out_h: g.out_h, out_w: g.out_w };
    plan_gather("max_pool2d_backward", pb, p, layout, dtype, true, limits)
}

/// Plans the gradient of `adaptive_avg_pool2d`.
pub fn plan_adaptive_avg_pool2d_backward(
    g: &AdaptiveGeometry,
    layout: Layout,
    dtype: DType,
    limits: &DeviceLimits,
) -> Result<OpPlan> {
    let pb = Problem { n: g.n, c: g.c, h: g.h, w: g.w, out_h: g.out_h, out_w: g.out_w };
    let p = base_params(&pb)?;
    // An empty output (output_size 0) has no gradient to spread: grad_in is zero, and no
    // kernel runs.
    if g.output_len() == 0 {
        check_float(dtype, "adaptive_avg_pool2d_backward")?;
        return Ok(OpPlan { zeroed_outputs: vec![0], ..OpPlan::default() });
    }
    plan_gather("adaptive_avg_pool2d_backward", pb, p, layout, dtype, false, limits)
}

/// Plans the gradient of `adaptive_max_pool2d`.
pub fn plan_adaptive_max_pool2d_backward(
    g: &AdaptiveGeometry,
    layout: Layout,
    dtype: DType,
    limits: &DeviceLimits,
) -> Result<OpPlan> {
    let pb = Problem { n: g.n, c: g.c, h: g.h, w: g.w, out_h: g.out_h, out_w: g.out_w };
    let p = base_params(&pb)?;
    // As the average's: a zero gradient, and a zero (unset) error flag.
    if g.output_len() == 0 {
        check_float(dtype, "adaptive_max_pool2d_backward")?;
        return Ok(OpPlan { zeroed_outputs: vec![0, 1], ..OpPlan::default() });
    }
    plan_gather("adaptive_max_pool2d_backward", pb, p, layout, dtype, true, limits)
}

/// Plans `grad_in[i] = grad_out[strided(i)] / divisor` over row-major `shape`. Adjacent dims
/// that walk grad_out contiguously are merged and size-1 dims dropped, so the kernel's index
/// decomposition stays short; more than eight dims after that is unsupported.
pub fn plan_broadcast_divide(
    shape: &[usize],
    strides: &[usize],
    divisor: f64,
    dtype: DType,
    limits: &DeviceLimits,
) -> Result<OpPlan> {
    const OP: &str = "broadcast_divide";
    check_float(dtype, OP)?;
    if shape.len() != strides.len() {
        return Err(Error::InvalidArgument(format!(
            "{OP}: {} dims but {} strides",
            shape.len(),
            strides.len()
        )));
    }
    let total: usize = shape.iter().product();
    if total == 0 {
        return Ok(OpPlan::default());
    }
    check_sizes(total, total)?;
    // Merge, outermost first: (size, stride) pairs.
    let mut dims: Vec<(usize, usize)> = Vec::with_capacity(shape.len());
    for (&size, &stride) in shape.iter().zip(strides) {
        if size == 1 {
            continue;
        }
        match dims.last_mut() {
            Some(last) if last.1 == stride * size => *last = (last.0 * size, stride),
            _ => dims.push((size, stride)),
        }
    }
    if dims.is_empty() {
        dims.push((1, 0));
    }
    if dims.len() > MAX_BCAST_RANK {
        return Err(Error::Unsupported(format!(
            "{OP}: {} non-mergeable dims (at most {MAX_BCAST_RANK} on CUDA)",
            dims.len()
        )));
    }
    let mut p = BroadcastParams {
        shape: [1; MAX_BCAST_RANK],
        strides: [0; MAX_BCAST_RANK],
        total: to_i64(total, "elements")?,
        divisor,
        rank: dims.len() as i32,
        pad_: 0,
    };
    for (d, &(size, stride)) in dims.iter().enumerate() {
        p.shape[d] = to_i64(size, "dim")?;
        p.strides[d] = to_i64(stride, "stride")?;
    }
    let args = vec![
        KernelArg::params(&p),
        KernelArg::Buffer(BufferId::Input(0)),
        KernelArg::Buffer(BufferId::Output(0)),
    ];
    let kernel = format!("{OP}_{}", dtype.kernel_suffix());
    // Each thread writes a run of four elements (CUPOOL_BCAST_RUN).
    let threads = total.div_ceil(4);
    Ok(OpPlan { launches: vec![grid_stride_launch(kernel, threads, args, limits)], ..OpPlan::default() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::window::plan_window_pool;

    #[test]
    fn params_structs_have_the_kernel_layout() {
        assert_eq!(std::mem::size_of::<BackwardParams>(), 16 * 8 + 4 * 4);
        assert_eq!(std::mem::size_of::<BroadcastParams>(), 18 * 8 + 2 * 4);
    }

    #[test]
    fn nhwc_vectorises_over_four_channels() {
        let g = plan_window_pool("t", &[2, 8, 5, 5], [2, 2], None, [0, 0], [1, 1], false).unwrap();
        let plan = plan_max_pool2d_backward(&g, Layout::Nhwc, DType::F16, &DeviceLimits::HOPPER).unwrap();
        assert_eq!(plan.launches[0].kernel, "max_pool2d_backward_audit_nhwc");
        assert_eq!(plan.scratch_bytes, vec![2 * 8 * 8]);
        let l = &plan.launches[1];
        assert_eq!(l.kernel, "max_pool2d_backward_nhwc_f16");
        assert_eq!(l.args.len(), 5);
        let rule = AvgRule { count_include_pad: true, divisor_override: None };
        let plan =
            plan_avg_pool2d_backward(&g, rule, Layout::Nchw, DType::F32, &DeviceLimits::HOPPER).unwrap();
        assert_eq!(plan.launches[0].kernel, "avg_pool2d_backward_nchw_f32");
        assert!(plan_avg_pool2d_backward(&g, rule, Layout::Nchw, DType::I64, &DeviceLimits::HOPPER).is_err());
    }

    #[test]
    fn broadcast_merges_contiguous_dims() {
        let plan =
            plan_broadcast_divide(&[2, 3, 4, 5], &[0, 20, 5, 1], 2.0, DType::F32, &DeviceLimits::HOPPER)
                .unwrap();
        let KernelArg::Params(bytes) = &plan.launches[0].args[0] else { panic!("params first") };
        // rank sits after 16 i64 + total + divisor.
        let rank = i32::from_ne_bytes(bytes[144..148].try_into().unwrap());
        assert_eq!(rank, 2);
        let empty = plan_broadcast_divide(&[2, 0], &[1, 1], 2.0, DType::F32, &DeviceLimits::HOPPER).unwrap();
        assert!(empty.launches.is_empty());
    }
}
