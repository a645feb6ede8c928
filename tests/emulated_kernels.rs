//! Every CUDA kernel, through its real launch planner, on the host emulator, against a plain
//! scalar reference written here. Covers each dtype, both layouts and every dispatch path; the
//! last check fails if a kernel the emulator registered was never launched by these cases.

use cupool::cuda::adaptive::{plan_adaptive_avg_pool2d, plan_adaptive_max_pool2d};
use cupool::cuda::copy::plan_strided_copy;
use cupool::cuda::plan::{BufferId, KernelArg, OpPlan};
use cupool::cuda::reduce::plan_reduce;
use cupool::cuda::window::{plan_avg_pool2d, plan_max_pool2d};
use cupool::cuda::DeviceLimits;
use cupool::dtype::HostData;
use cupool::emulator::{launch_counts, launch_raw, registered_kernels};
use cupool::ops::adaptive::AdaptiveGeometry;
use cupool::ops::reduce_geometry::{ReduceFinish, ReduceGeometry};
use cupool::ops::window::{plan_window_pool, AvgRule, WindowGeometry};
use cupool::{DType, Layout};
use half::{bf16, f16};

const DTYPES: [DType; 4] = [DType::F32, DType::F64, DType::F16, DType::BF16];
const HOPPER: DeviceLimits = DeviceLimits::HOPPER;

/// A device with few SMs: the planners then choose the unsplit paths on small shapes.
fn few_sms(sm_count: u32) -> DeviceLimits {
    DeviceLimits { sm_count, ..DeviceLimits::HOPPER }
}

/// `vals` rounded to `dtype`.
fn host(dtype: DType, vals: &[f64]) -> HostData {
    match dtype {
        DType::F32 => HostData::F32(vals.iter().map(|&v| v as f32).collect()),
        DType::F64 => HostData::F64(vals.to_vec()),
        DType::F16 => HostData::F16(vals.iter().map(|&v| f16::from_f64(v)).collect()),
        DType::BF16 => HostData::BF16(vals.iter().map(|&v| bf16::from_f64(v)).collect()),
        DType::I64 => HostData::I64(vals.iter().map(|&v| v as i64).collect()),
    }
}

fn values(h: &HostData) -> Vec<f64> {
    match h {
        HostData::F32(v) => v.iter().map(|&x| x as f64).collect(),
        HostData::F64(v) => v.clone(),
        HostData::F16(v) => v.iter().map(|x| x.to_f64()).collect(),
        HostData::BF16(v) => v.iter().map(|x| x.to_f64()).collect(),
        HostData::I64(v) => v.iter().map(|&x| x as f64).collect(),
    }
}

fn indices(h: &HostData) -> Vec<i64> {
    match h {
        HostData::I64(v) => v.clone(),
        other => panic!("indices are i64, got {:?}", other.dtype()),
    }
}

/// Deterministic test data in [-4, 4): a hash of the index, on a 1/64 grid (so many ties).
fn data(len: usize, seed: u64) -> Vec<f64> {
    (0..len as u64)
        .map(|i| {
            let mut x =
                (i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seed.wrapping_mul(0xD1B5_4A32_D192_ED03);
            x ^= x >> 29;
            x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
            x ^= x >> 32;
            ((x % 512) as f64 - 256.0) / 64.0
        })
        .collect()
}

/// Data with NaN, -inf and repeated values sprinkled in: for the max rules.
fn max_data(len: usize, seed: u64) -> Vec<f64> {
    let mut v = data(len, seed);
    for (i, x) in v.iter_mut().enumerate() {
        match (i as u64 * 7 + seed) % 23 {
            0 => *x = f64::NAN,
            1 | 2 => *x = f64::NEG_INFINITY,
            3..=5 => *x = 3.5, // ties with each other
            _ => {}
        }
    }
    v
}

/// Runs every launch of `plan` through `launch_raw`; scratch buffers become extra outputs.
fn run(plan: &OpPlan, dtype: DType, input: &HostData, outputs: &mut [HostData]) {
    let acc = if dtype == DType::F64 { DType::F64 } else { DType::F32 };
    let mut scratch: Vec<HostData> =
        plan.scratch_bytes.iter().map(|&b| HostData::zeros(acc, b / acc.size_in_bytes())).collect();
    let n_out = outputs.len();
    for launch in &plan.launches {
        let mut launch = launch.clone();
        for arg in &mut launch.args {
            if let KernelArg::Buffer(BufferId::Scratch(i)) = *arg {
                *arg = KernelArg::Buffer(BufferId::Output(n_out + i));
            }
        }
        let mut outs: Vec<&mut HostData> = outputs.iter_mut().chain(scratch.iter_mut()).collect();
        launch_raw(&launch, &[input], &mut outs).unwrap_or_else(|e| panic!("{} failed: {e}", launch.kernel));
    }
}

fn tolerance(dtype: DType) -> (f64, f64) {
    match dtype {
        DType::F32 => (1e-5, 1e-6),
        DType::F64 => (1e-12, 1e-12),
        DType::F16 => (1e-3, 1e-3),
        DType::BF16 => (8e-3, 8e-3),
        DType::I64 => (0.0, 0.0),
    }
}

fn assert_close(what: &str, dtype: DType, got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let (rel, abs) = tolerance(dtype);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let ok = (g.is_nan() && w.is_nan()) || g == w || (g - w).abs() <= abs + rel * w.abs();
        assert!(ok, "{what} [{dtype}]: element {i}: got {g}, want {w}");
    }
}

fn assert_exact(what: &str, dtype: DType, got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!((g.is_nan() && w.is_nan()) || g == w, "{what} [{dtype}]: element {i}: got {g}, want {w}");
    }
}

// ------------------------------------------------------------------------------------------
// Reductions
// ------------------------------------------------------------------------------------------

fn check_reduce(
    outer: usize,
    reduce: usize,
    inner: usize,
    finish: ReduceFinish,
    limits: &DeviceLimits,
    expect: &str,
) {
    for dtype in DTYPES {
        let g = ReduceGeometry { outer, reduce, inner };
        let plan = plan_reduce(&g, finish, dtype, limits).unwrap();
        assert!(plan.launches[0].kernel.starts_with(expect), "{:?}: planned {}", g, plan.launches[0].kernel);
        let input = host(dtype, &data(g.input_len(), (outer * 31 + reduce) as u64));
        let x = values(&input);
        let mut out = [HostData::zeros(dtype, g.output_len())];
        run(&plan, dtype, &input, &mut out);
        let want: Vec<f64> = (0..outer * inner)
            .map(|oi| {
                let (o, i) = (oi / inner, oi % inner);
                let s: f64 = (0..reduce).map(|r| x[(o * reduce + r) * inner + i]).sum();
                match finish {
                    ReduceFinish::Sum => s,
                    ReduceFinish::DivideBy(d) => s / d,
                }
            })
            .collect();
        assert_close(&format!("reduce {g:?} {finish:?}"), dtype, &values(&out[0]), &want);
    }
}

fn reduce_cases() {
    let mean = |n: usize| ReduceFinish::DivideBy(n as f64);
    // Short rows: flat tiles of many rows; group sizes 32 (49), 4 (5), 32 (256); odd lengths
    // put row starts off 16-byte boundaries.
    check_reduce(37, 49, 1, mean(49), &HOPPER, "reduce_rows_short");
    check_reduce(300, 5, 1, ReduceFinish::Sum, &HOPPER, "reduce_rows_short");
    check_reduce(9, 256, 1, mean(256), &few_sms(1), "reduce_rows_short");
    check_reduce(1, 1, 1, ReduceFinish::Sum, &HOPPER, "reduce_rows_short");
    // Medium rows, one block per row: unaligned (301) and aligned (1024) row starts.
    check_reduce(5, 301, 1, mean(301), &few_sms(1), "reduce_rows_");
    check_reduce(4, 1024, 1, ReduceFinish::Sum, &few_sms(1), "reduce_rows_");
    // Few long rows: split across blocks into scratch, then the combine kernel.
    let split =
        plan_reduce(&ReduceGeometry { outer: 3, reduce: 20_001, inner: 1 }, mean(1), DType::F32, &few_sms(4))
            .unwrap();
    assert_eq!(split.launches.len(), 2, "long rows split");
    check_reduce(3, 20_001, 1, mean(20_001), &few_sms(4), "reduce_rows_");
    // Strided: vectorised (inner % 4 == 0) and scalar, with and without the split.
    check_reduce(3, 50, 8, mean(50), &HOPPER, "reduce_cols");
    check_reduce(2, 33, 7, ReduceFinish::Sum, &HOPPER, "reduce_cols");
    check_reduce(9, 20, 7, mean(20), &few_sms(1), "reduce_cols");
    check_reduce(2, 6, 300, mean(6), &few_sms(1), "reduce_cols");
    check_reduce(2, 40, 260, mean(40), &HOPPER, "reduce_cols");
    // Few blocks: narrow blocks of 32 columns and 8 thread rows (49 and 30 rows: uneven shares),
    // in one launch; vectorised and scalar.
    let narrow =
        plan_reduce(&ReduceGeometry { outer: 2, reduce: 49, inner: 1024 }, mean(49), DType::F32, &HOPPER)
            .unwrap();
    assert_eq!((narrow.launches.len(), narrow.launches[0].grid[0]), (1, 16), "narrow column blocks");
    check_reduce(2, 49, 1024, mean(49), &HOPPER, "reduce_cols");
    check_reduce(1, 30, 1003, ReduceFinish::Sum, &HOPPER, "reduce_cols");
    // An empty reduction: a mean of nothing is NaN, a sum is 0.
    check_reduce(3, 0, 1, mean(0), &HOPPER, "reduce_combine");
    check_reduce(2, 0, 5, ReduceFinish::Sum, &HOPPER, "reduce_combine");
}

// ------------------------------------------------------------------------------------------
// Windowed pooling
// ------------------------------------------------------------------------------------------

/// Memory offset of (n, c, h, w) in `layout`.
fn offset(layout: Layout, [_, cs, hs, ws]: [usize; 4], [n, c, h, w]: [usize; 4]) -> usize {
    match layout {
        Layout::Nchw => ((n * cs + c) * hs + h) * ws + w,
        Layout::Nhwc => ((n * hs + h) * ws + w) * cs + c,
    }
}

struct Pool {
    shape: [usize; 4],
    kernel: [usize; 2],
    stride: Option<[usize; 2]>,
    padding: [usize; 2],
    dilation: [usize; 2],
    ceil: bool,
}

fn geometry(p: &Pool) -> WindowGeometry {
    plan_window_pool("test", &p.shape, p.kernel, p.stride, p.padding, p.dilation, p.ceil).unwrap()
}

fn check_avg(p: &Pool, rule: AvgRule, layout: Layout, limits: &DeviceLimits, expect: &str) {
    let g = geometry(p);
    for dtype in DTYPES {
        let plan = plan_avg_pool2d(&g, rule, layout, dtype, limits).unwrap();
        assert_eq!(plan.launches[0].kernel, format!("{expect}_{dtype}"));
        let input = host(dtype, &data(g.input_len(), g.h as u64 * 7 + g.w as u64));
        let x = values(&input);
        let mut out = [HostData::zeros(dtype, g.output_len())];
        run(&plan, dtype, &input, &mut out);
        let (ins, outs) = ([g.n, g.c, g.h, g.w], [g.n, g.c, g.out_h, g.out_w]);
        let mut want = vec![0.0; g.output_len()];
        for n in 0..g.n {
            for c in 0..g.c {
                for oh in 0..g.out_h {
                    for ow in 0..g.out_w {
                        let win = g.avg_window(oh, ow, rule);
                        let mut s = 0.0;
                        for h in win.h0..win.h1 {
                            for w in win.w0..win.w1 {
                                s += x[offset(layout, ins, [n, c, h, w])];
                            }
                        }
                        want[offset(layout, outs, [n, c, oh, ow])] = s / win.divisor as f64;
                    }
                }
            }
        }
        assert_close(&format!("avg_pool2d {layout:?} {g:?} {rule:?}"), dtype, &values(&out[0]), &want);
    }
}

fn check_max(p: &Pool, layout: Layout, with_indices: bool, limits: &DeviceLimits, expect: &str) {
    let g = geometry(p);
    for dtype in DTYPES {
        let plan = plan_max_pool2d(&g, layout, dtype, with_indices, limits).unwrap();
        assert_eq!(plan.launches[0].kernel, format!("{expect}_{dtype}"));
        let input = host(dtype, &max_data(g.input_len(), g.h as u64 * 5 + g.w as u64));
        let x = values(&input);
        let mut out = vec![HostData::zeros(dtype, g.output_len())];
        if with_indices {
            out.push(HostData::zeros(DType::I64, g.output_len()));
        }
        run(&plan, dtype, &input, &mut out);
        let (ins, outs) = ([g.n, g.c, g.h, g.w], [g.n, g.c, g.out_h, g.out_w]);
        let mut want = vec![0.0; g.output_len()];
        let mut want_idx = vec![0i64; g.output_len()];
        for n in 0..g.n {
            for c in 0..g.c {
                for oh in 0..g.out_h {
                    for ow in 0..g.out_w {
                        let (h0, h1) = g.max_taps_h(oh);
                        let (w0, w1) = g.max_taps_w(ow);
                        let (mut m, mut mi) = (f64::NEG_INFINITY, (h0 * g.w + w0) as i64);
                        for h in (h0..h1).step_by(g.dilation[0]) {
                            for w in (w0..w1).step_by(g.dilation[1]) {
                                let v = x[offset(layout, ins, [n, c, h, w])];
                                if v > m || v.is_nan() {
                                    m = v;
                                    mi = (h * g.w + w) as i64;
                                }
                            }
                        }
                        let o = offset(layout, outs, [n, c, oh, ow]);
                        want[o] = m;
                        want_idx[o] = mi;
                    }
                }
            }
        }
        let what = format!("max_pool2d {layout:?} {g:?}");
        assert_exact(&what, dtype, &values(&out[0]), &want);
        if with_indices {
            assert_eq!(indices(&out[1]), want_idx, "{what} [{dtype}]: indices");
        }
    }
}

fn window_cases() {
    let include = AvgRule { count_include_pad: true, divisor_override: None };
    let exclude = AvgRule { count_include_pad: false, divisor_override: None };
    let override_neg = AvgRule { count_include_pad: true, divisor_override: Some(-3) };
    let base = |shape, kernel, stride, padding, ceil| Pool {
        shape,
        kernel,
        stride,
        padding,
        dilation: [1, 1],
        ceil,
    };
    // Tiled NCHW: several row tiles per plane (HOPPER wants many blocks), so halos are shared
    // between tiles; padding, ceil-mode overhang and each divisor rule.
    let p = base([2, 3, 11, 9], [3, 3], Some([2, 2]), [1, 1], true);
    for rule in [include, exclude, override_neg] {
        check_avg(&p, rule, Layout::Nchw, &HOPPER, "avg_pool2d_nchw");
        check_avg(&p, rule, Layout::Nhwc, &HOPPER, "avg_pool2d_nhwc");
    }
    // One tile per plane, stride 1, rectangular kernel; NHWC with C % 4 == 0 (vectorised).
    let p = base([1, 8, 7, 10], [2, 3], Some([1, 2]), [1, 0], false);
    check_avg(&p, exclude, Layout::Nchw, &few_sms(1), "avg_pool2d_nchw");
    check_avg(&p, include, Layout::Nhwc, &few_sms(1), "avg_pool2d_nhwc");
    // Small planes, several whole planes per block, the last block short (21 planes, 6 a
    // block): PyTorch's 3x3 stride-2 pad-1 pooling of 7x7 maps, and a 2x2 kernel.
    let small = base([3, 7, 7, 7], [3, 3], Some([2, 2]), [1, 1], false);
    for rule in [include, exclude] {
        check_avg(&small, rule, Layout::Nchw, &few_sms(2), "avg_pool2d_nchw");
    }
    let small_ceil = base([3, 7, 5, 7], [2, 2], None, [0, 0], true);
    check_avg(&small_ceil, exclude, Layout::Nchw, &few_sms(2), "avg_pool2d_nchw");
    // Planes too wide for shared memory: the direct kernel.
    let wide = base([1, 1, 9, 2100], [9, 2], None, [0, 1], true);
    check_avg(&wide, exclude, Layout::Nchw, &HOPPER, "avg_pool2d_nchw_direct");

    let dil = Pool {
        shape: [2, 4, 10, 9],
        kernel: [3, 2],
        stride: Some([2, 1]),
        padding: [1, 1],
        dilation: [2, 3],
        ceil: true,
    };
    let plain = base([1, 3, 8, 8], [2, 2], None, [0, 0], false);
    for with_indices in [false, true] {
        let idx = if with_indices { "_idx" } else { "" };
        for p in [&dil, &plain] {
            check_max(p, Layout::Nchw, with_indices, &HOPPER, &format!("max_pool2d_nchw{idx}"));
            check_max(p, Layout::Nhwc, with_indices, &HOPPER, &format!("max_pool2d_nhwc{idx}"));
        }
        check_max(&wide, Layout::Nchw, with_indices, &HOPPER, &format!("max_pool2d_nchw_direct{idx}"));
        for p in [&small, &small_ceil, &dil] {
            check_max(p, Layout::Nchw, with_indices, &few_sms(2), &format!("max_pool2d_nchw{idx}"));
        }
    }
}

// ------------------------------------------------------------------------------------------
// Adaptive pooling
// ------------------------------------------------------------------------------------------

fn check_adaptive(g: AdaptiveGeometry, layout: Layout, is_max: bool, with_indices: bool, expect: &str) {
    for dtype in DTYPES {
        let plan = if is_max {
            plan_adaptive_max_pool2d(&g, layout, dtype, with_indices, &HOPPER).unwrap()
        } else {
            plan_adaptive_avg_pool2d(&g, layout, dtype, &HOPPER).unwrap()
        };
        assert!(plan.launches[0].kernel.starts_with(expect), "{g:?}: planned {}", plan.launches[0].kernel);
        let raw = if is_max { max_data(g.input_len(), 3) } else { data(g.input_len(), 5) };
        let input = host(dtype, &raw);
        let x = values(&input);
        let mut out = vec![HostData::zeros(dtype, g.output_len())];
        if with_indices {
            out.push(HostData::zeros(DType::I64, g.output_len()));
        }
        run(&plan, dtype, &input, &mut out);
        let (ins, outs) = ([g.n, g.c, g.h, g.w], [g.n, g.c, g.out_h, g.out_w]);
        let mut want = vec![0.0; g.output_len()];
        let mut want_idx = vec![0i64; g.output_len()];
        for n in 0..g.n {
            for c in 0..g.c {
                for oh in 0..g.out_h {
                    for ow in 0..g.out_w {
                        let (h0, h1) = g.rows(oh);
                        let (w0, w1) = g.cols(ow);
                        let (mut s, mut m, mut mi) = (0.0, f64::NEG_INFINITY, (h0 * g.w + w0) as i64);
                        for h in h0..h1 {
                            for w in w0..w1 {
                                let v = x[offset(layout, ins, [n, c, h, w])];
                                s += v;
                                if v > m || v.is_nan() {
                                    m = v;
                                    mi = (h * g.w + w) as i64;
                                }
                            }
                        }
                        let o = offset(layout, outs, [n, c, oh, ow]);
                        want[o] = if is_max { m } else { s / ((h1 - h0) * (w1 - w0)) as f64 };
                        want_idx[o] = mi;
                    }
                }
            }
        }
        let what = format!("adaptive {layout:?} {g:?} max={is_max}");
        if is_max {
            assert_exact(&what, dtype, &values(&out[0]), &want);
            if with_indices {
                assert_eq!(indices(&out[1]), want_idx, "{what} [{dtype}]: indices");
            }
        } else {
            assert_close(&what, dtype, &values(&out[0]), &want);
        }
    }
}

fn adaptive_cases() {
    let down = AdaptiveGeometry { n: 2, c: 8, h: 7, w: 9, out_h: 3, out_w: 4 };
    let up = AdaptiveGeometry { n: 1, c: 3, h: 3, w: 5, out_h: 5, out_w: 7 };
    let global = AdaptiveGeometry { n: 2, c: 4, h: 5, w: 6, out_h: 1, out_w: 1 };
    for g in [down, up] {
        check_adaptive(g, Layout::Nchw, false, false, "adaptive_avg_pool2d_nchw");
        check_adaptive(g, Layout::Nhwc, false, false, "adaptive_avg_pool2d_nhwc");
        check_adaptive(g, Layout::Nchw, true, false, "adaptive_max_pool2d_nchw");
        check_adaptive(g, Layout::Nhwc, true, false, "adaptive_max_pool2d_nhwc");
        check_adaptive(g, Layout::Nchw, true, true, "adaptive_max_pool2d_nchw_idx");
        check_adaptive(g, Layout::Nhwc, true, true, "adaptive_max_pool2d_nhwc_idx");
    }
    check_adaptive(global, Layout::Nchw, false, false, "reduce_rows_short");
    check_adaptive(global, Layout::Nhwc, false, false, "reduce_cols");
    check_adaptive(global, Layout::Nhwc, true, true, "adaptive_max_pool2d_nhwc_idx");
}

// ------------------------------------------------------------------------------------------
// Strided copy
// ------------------------------------------------------------------------------------------

fn check_copy(shape: &[usize], strides: &[usize], offset: usize, source_len: usize) {
    // Indices (i64) are copied too, for a channels-last max-pool backward.
    for dtype in DTYPES.into_iter().chain([DType::I64]) {
        let plan = plan_strided_copy(shape, strides, offset, dtype, &HOPPER).unwrap();
        let input = host(dtype, &data(source_len, 9));
        let x = values(&input);
        let total: usize = shape.iter().product();
        let mut out = [HostData::zeros(dtype, total)];
        run(&plan, dtype, &input, &mut out);
        let want: Vec<f64> = (0..total)
            .map(|mut i| {
                let mut src = offset;
                for d in (0..shape.len()).rev() {
                    src += (i % shape[d]) * strides[d];
                    i /= shape[d];
                }
                x[src]
            })
            .collect();
        assert_exact(
            &format!("strided_copy {shape:?} {strides:?} +{offset}"),
            dtype,
            &values(&out[0]),
            &want,
        );
    }
}

fn copy_cases() {
    // NCHW (2, 3, 4, 5) viewed as NHWC memory order: to_channels_last.
    check_copy(&[2, 4, 5, 3], &[60, 5, 1, 20], 0, 120);
    // A transposed, offset, rank-3 view; a broadcast (stride 0) dim; rank 8; a scalar.
    check_copy(&[3, 4, 2], &[1, 12, 50], 3, 200);
    check_copy(&[4, 3], &[0, 2], 1, 10);
    check_copy(&[2, 1, 2, 1, 2, 1, 2, 3], &[48, 7, 24, 5, 12, 3, 6, 1], 0, 100);
    check_copy(&[], &[], 4, 5);
}

// The backward kernels' cases live beside the forward ones so that one test can check that
// every registered kernel ran (launch counts are per process).
#[path = "emulated/backward.rs"]
mod backward;

#[test]
fn every_kernel_matches_the_reference_and_every_kernel_runs() {
    reduce_cases();
    window_cases();
    adaptive_cases();
    copy_cases();
    backward::avg_pool2d_backward_matches_cpu_every_dtype_and_layout();
    backward::max_pool2d_backward_matches_cpu_exactly();
    backward::adaptive_avg_pool2d_backward_matches_cpu();
    backward::adaptive_max_pool2d_backward_matches_cpu();
    backward::mean_backward_matches_cpu();
    backward::out_of_plane_index_is_an_error_on_both_devices();
    backward::large_input_takes_the_grid_stride_loop();
    backward::empty_batch_and_empty_output();
    let counts = launch_counts();
    let never: Vec<String> = registered_kernels()
        .into_iter()
        .filter(|k| {
            !k.starts_with("test_") && !k.starts_with("emu_test_") && counts.get(k).copied().unwrap_or(0) == 0
        })
        .collect();
    assert!(never.is_empty(), "kernels never launched by these tests: {never:?}");
}

#[test]
fn planners_refuse_what_does_not_fit() {
    let tiny = DeviceLimits { sm_count: 1, max_threads_per_block: 128, max_shared_per_block: 1024 };
    let g = ReduceGeometry { outer: 4, reduce: 49, inner: 1 };
    assert!(plan_reduce(&g, ReduceFinish::Sum, DType::F32, &tiny).is_err());
    assert!(plan_reduce(&g, ReduceFinish::Sum, DType::I64, &HOPPER).is_err());
    assert!(plan_strided_copy(&[2; 9], &[1; 9], 0, DType::F32, &HOPPER).is_err());
    assert!(plan_strided_copy(&[2, 2], &[1], 0, DType::F32, &HOPPER).is_err());
    let empty = ReduceGeometry { outer: 0, reduce: 49, inner: 1 };
    assert!(plan_reduce(&empty, ReduceFinish::Sum, DType::F32, &HOPPER).unwrap().launches.is_empty());
}
