//! Property tests of the backward passes: each against the naive f64 reference in `tests/naive`
//! (same dtypes, layouts and devices as the forward properties), each run twice to check that
//! results repeat bit for bit, and each checked in f64 against finite differences of the
//! forward op (linear ops exactly; max pooling where no ties or NaN can move the maximum).
//!
//! Kept apart from `tests/properties.rs` so the forward properties pass on their own.

mod naive;

use cupool::{CudaTensor, DType};
use naive::harness::*;
use naive::Window;
use ndarray::{ArrayD, IxDyn};
use proptest::prelude::*;

const CPU_CASES: u32 = 64;
const EMULATED_CASES: u32 = 16;

const GRAD_VALUES: &[Values] = &[Values::Grid, Values::Continuous];
const AVG_VALUES: &[Values] = &[Values::Grid, Values::Continuous];
const MAX_VALUES: &[Values] = &[Values::Ties, Values::Continuous, Values::Specials];

/// A forward case plus the gradient of its output, logical (N, C, out_h, out_w) order.
#[derive(Debug, Clone)]
struct GradCase<C> {
    forward: C,
    grad: Vec<f64>,
}

/// The logical shape an op's output has for an input uploaded as `upload_shape` (3-D or 4-D).
fn output_shape(upload_shape: &[usize], out: [usize; 2]) -> Vec<usize> {
    let mut shape = upload_shape[..upload_shape.len() - 2].to_vec();
    shape.extend_from_slice(&out);
    shape
}

fn window_out(case: &WindowCase) -> [usize; 2] {
    case.window.output_size(case.shape[2], case.shape[3]).expect("valid window")
}

fn window_grad_case(max: bool, kinds: &'static [Values]) -> impl Strategy<Value = GradCase<WindowCase>> {
    window_case(max, kinds).prop_flat_map(|forward| {
        let [oh, ow] = window_out(&forward);
        let len = forward.shape[0] * forward.shape[1] * oh * ow;
        let grad = values_strategy(GRAD_VALUES, forward.dtype, len);
        (Just(forward), grad).prop_map(|(forward, grad)| GradCase { forward, grad })
    })
}

fn adaptive_grad_case(kinds: &'static [Values]) -> impl Strategy<Value = GradCase<AdaptiveCase>> {
    adaptive_case(kinds).prop_flat_map(|forward| {
        let len = forward.shape[0] * forward.shape[1] * forward.output[0] * forward.output[1];
        let grad = values_strategy(GRAD_VALUES, forward.dtype, len);
        (Just(forward), grad).prop_map(|(forward, grad)| GradCase { forward, grad })
    })
}

fn reduce_grad_case() -> impl Strategy<Value = GradCase<ReduceCase>> {
    reduce_case().prop_flat_map(|forward| {
        let len = naive::mean(&forward.input(), &forward.dims, forward.keepdim).len();
        let grad = values_strategy(GRAD_VALUES, forward.dtype, len);
        (Just(forward), grad).prop_map(|(forward, grad)| GradCase { forward, grad })
    })
}

/// The gradient as an (N, C, out_h, out_w) array.
fn grad4(grad: &[f64], shape: [usize; 4], out: [usize; 2]) -> ndarray::Array4<f64> {
    ndarray::Array4::from_shape_vec((shape[0], shape[1], out[0], out[1]), grad.to_vec()).expect("grad shape")
}

/// Checks a gradient w.r.t. x: x's shape, dtype and layout, the reference's values, and that a
/// second run (`again`) gives the same bits.
#[allow(clippy::too_many_arguments)]
fn check_grad_input(
    what: &str,
    input: &CudaTensor,
    got: &CudaTensor,
    again: &CudaTensor,
    want: &ArrayD<f64>,
    want_abs: &ArrayD<f64>,
    terms: usize,
) -> CaseResult {
    prop_assert_eq!(got.shape(), input.shape(), "{}: gradient has x's shape", what);
    prop_assert_eq!(got.dtype(), input.dtype(), "{}: gradient has x's dtype", what);
    check_layout(what, input, got)?;
    let values = download(got)?;
    let shape4 = as4(&values).into_dyn();
    assert_close(what, &shape4, want, want_abs, input.dtype(), terms)?;
    assert_same_bits(&format!("{what}: second run"), &download(again)?, &values)
}

fn check_avg_pool2d_backward(dev: Dev, case: &GradCase<WindowCase>) -> CaseResult {
    let f = &case.forward;
    let x = f.input();
    let out = window_out(f);
    let g = grad4(&case.grad, f.shape, out);
    let want = naive::avg_pool2d_backward(x.dim(), &g, &f.window).into_dyn();
    let want_abs = naive::avg_pool2d_backward(x.dim(), &g.mapv(f64::abs), &f.window).into_dyn();
    let terms = f.window.kernel[0] * f.window.kernel[1];
    let spec = f.avg_spec();
    let g_shape = output_shape(&f.upload_shape(), out);
    let g = g.into_shape_with_order(IxDyn(&g_shape)).expect("grad shape");
    for (layout, input) in in_layouts(dev, f.dtype, &f.upload_shape(), &f.values)? {
        let go = upload_like(&input, f.dtype, &g)?;
        let got = ok("avg_pool2d_backward", input.avg_pool2d_backward(&go, &spec))?;
        let again = ok("avg_pool2d_backward", input.avg_pool2d_backward(&go, &spec))?;
        check_grad_input(
            &format!("avg_pool2d_backward {layout}"),
            &input,
            &got,
            &again,
            &want,
            &want_abs,
            terms,
        )?;
    }
    Ok(())
}

fn check_max_pool2d_backward(dev: Dev, case: &GradCase<WindowCase>) -> CaseResult {
    let f = &case.forward;
    let x = f.input();
    let out = window_out(f);
    let g = grad4(&case.grad, f.shape, out);
    let spec = f.max_spec();
    let g_shape = output_shape(&f.upload_shape(), out);
    let g_dyn = g.clone().into_shape_with_order(IxDyn(&g_shape)).expect("grad shape");
    // Window taps can overlap, so one input can collect several gradients.
    let terms = f.window.kernel[0] * f.window.kernel[1];
    for (layout, input) in in_layouts(dev, f.dtype, &f.upload_shape(), &f.values)? {
        // The crate's own indices (the forward properties check them against the reference):
        // this property is about the backward pass alone.
        let (_, indices) = ok("max_pool2d_with_indices", input.max_pool2d_with_indices(&spec))?;
        let idx = as4(&download_indices(&indices)?);
        let want = naive::max_backward(x.dim(), &g, &idx).into_dyn();
        let want_abs = naive::max_backward(x.dim(), &g.mapv(f64::abs), &idx).into_dyn();
        let go = upload_like(&input, f.dtype, &g_dyn)?;
        let got = ok("max_pool2d_backward", input.max_pool2d_backward(&go, &indices, &spec))?;
        let again = ok("max_pool2d_backward", input.max_pool2d_backward(&go, &indices, &spec))?;
        check_grad_input(
            &format!("max_pool2d_backward {layout}"),
            &input,
            &got,
            &again,
            &want,
            &want_abs,
            terms,
        )?;
        let what = format!("max_pool2d_backward {layout}");
        check_stray_indices(&what, &input, &g, &g_shape, |i| input.max_pool2d_backward(&go, i, &spec))?;
    }
    Ok(())
}

/// Max backward is a scatter (`grad_in[indices[o]] += g[o]`, PyTorch's CPU rule), whatever the
/// indices: with indices spread over the whole plane, most outside their output's window, each
/// gradient must still land where its index says, on every device (a gather over each
/// element's windows would miss them; kernels/backward.cu audits the indices for that).
fn check_stray_indices(
    what: &str,
    input: &CudaTensor,
    g: &ndarray::Array4<f64>,
    out_shape: &[usize],
    backward: impl Fn(&CudaTensor) -> cupool::Result<CudaTensor>,
) -> CaseResult {
    let (n, c, plane_out) = (g.shape()[0], g.shape()[1], g.shape()[2] * g.shape()[3]);
    let dims = input.shape();
    let plane = dims[dims.len() - 2] * dims[dims.len() - 1];
    let x_dim = (n, c, dims[dims.len() - 2], dims[dims.len() - 1]);
    let values: Vec<i64> =
        (0..out_shape.iter().product::<usize>()).map(|o| ((o * 7919 + 13) % plane) as i64).collect();
    let idx = ArrayD::from_shape_vec(IxDyn(out_shape), values).expect("indices shape");
    let stray = ok("from_array", CudaTensor::from_array(input.device(), &idx))?;
    let stray = if input.rank() == 4 && input.is_channels_last() && !input.is_contiguous() {
        ok("to_channels_last", stray.to_channels_last())?
    } else {
        stray
    };
    let idx = as4(&idx);
    let want = naive::max_backward(x_dim, g, &idx).into_dyn();
    let want_abs = naive::max_backward(x_dim, &g.mapv(f64::abs), &idx).into_dyn();
    let got = ok(what, backward(&stray))?;
    let again = ok(what, backward(&stray))?;
    check_grad_input(&format!("{what}, stray indices"), input, &got, &again, &want, &want_abs, plane_out)
}

/// The most adaptive windows that can cover one input along an axis of `input` pooled to
/// `output`, times the same along the other axis: a bound on the terms each gradient sums.
fn adaptive_overlap(h: usize, w: usize, out: [usize; 2]) -> usize {
    (out[0].div_ceil(h) + 1) * (out[1].div_ceil(w) + 1)
}

fn check_adaptive_avg_pool2d_backward(dev: Dev, case: &GradCase<AdaptiveCase>) -> CaseResult {
    let f = &case.forward;
    let x = f.input();
    let g = grad4(&case.grad, f.shape, f.output);
    let want = naive::adaptive_avg_pool2d_backward(x.dim(), &g).into_dyn();
    let want_abs = naive::adaptive_avg_pool2d_backward(x.dim(), &g.mapv(f64::abs)).into_dyn();
    let terms = adaptive_overlap(f.shape[2], f.shape[3], f.output);
    let g = g.into_shape_with_order(IxDyn(&output_shape(&f.upload_shape(), f.output))).expect("grad shape");
    for (layout, input) in in_layouts(dev, f.dtype, &f.upload_shape(), &f.values)? {
        let go = upload_like(&input, f.dtype, &g)?;
        let got = ok("adaptive_avg_pool2d_backward", input.adaptive_avg_pool2d_backward(&go))?;
        let again = ok("adaptive_avg_pool2d_backward", input.adaptive_avg_pool2d_backward(&go))?;
        let what = format!("adaptive_avg_pool2d_backward {layout}");
        check_grad_input(&what, &input, &got, &again, &want, &want_abs, terms)?;
    }
    Ok(())
}

fn check_adaptive_max_pool2d_backward(dev: Dev, case: &GradCase<AdaptiveCase>) -> CaseResult {
    let f = &case.forward;
    let x = f.input();
    let g = grad4(&case.grad, f.shape, f.output);
    let terms = adaptive_overlap(f.shape[2], f.shape[3], f.output);
    let g_dyn =
        g.clone().into_shape_with_order(IxDyn(&output_shape(&f.upload_shape(), f.output))).expect("grad");
    for (layout, input) in in_layouts(dev, f.dtype, &f.upload_shape(), &f.values)? {
        let (_, indices) =
            ok("adaptive_max_pool2d_with_indices", input.adaptive_max_pool2d_with_indices(f.output))?;
        let idx = as4(&download_indices(&indices)?);
        let want = naive::max_backward(x.dim(), &g, &idx).into_dyn();
        let want_abs = naive::max_backward(x.dim(), &g.mapv(f64::abs), &idx).into_dyn();
        let go = upload_like(&input, f.dtype, &g_dyn)?;
        let got = ok("adaptive_max_pool2d_backward", input.adaptive_max_pool2d_backward(&go, &indices))?;
        let again = ok("adaptive_max_pool2d_backward", input.adaptive_max_pool2d_backward(&go, &indices))?;
        let what = format!("adaptive_max_pool2d_backward {layout}");
        check_grad_input(&what, &input, &got, &again, &want, &want_abs, terms)?;
        let g_shape = output_shape(&f.upload_shape(), f.output);
        check_stray_indices(&what, &input, &g, &g_shape, |i| input.adaptive_max_pool2d_backward(&go, i))?;
    }
    Ok(())
}

fn check_mean_backward(dev: Dev, case: &GradCase<ReduceCase>) -> CaseResult {
    let f = &case.forward;
    let out_shape = naive::mean(&f.input(), &f.dims, f.keepdim).shape().to_vec();
    let g = ArrayD::from_shape_vec(IxDyn(&out_shape), case.grad.clone()).expect("grad shape");
    let want = naive::mean_backward(&f.shape, &g, &f.dims, f.keepdim);
    let want_abs = naive::mean_backward(&f.shape, &g.mapv(f64::abs), &f.dims, f.keepdim);
    for (layout, input) in in_layouts(dev, f.dtype, &f.shape, &f.values)? {
        // The gradient of a reduction has no channels-last form unless it kept 4 dims.
        let go = if out_shape.len() == 4 {
            upload_like(&input, f.dtype, &g)?
        } else {
            upload(input.device(), f.dtype, &g)?
        };
        let got = ok("mean_backward", input.mean_backward(&go, &f.dims, f.keepdim))?;
        let again = ok("mean_backward", input.mean_backward(&go, &f.dims, f.keepdim))?;
        let what = format!("mean_backward({:?}, keepdim={}) {layout}", f.dims, f.keepdim);
        prop_assert_eq!(got.shape(), input.shape(), "{}: gradient has x's shape", what);
        prop_assert_eq!(got.dtype(), input.dtype(), "{}: gradient has x's dtype", what);
        check_layout(&what, &input, &got)?;
        let values = download(&got)?;
        assert_close(&what, &values, &want, &want_abs, f.dtype, 1)?;
        assert_same_bits(&format!("{what}: second run"), &download(&again)?, &values)?;
    }
    Ok(())
}

/// A finite-difference case in f64: a forward case, an output gradient `g` and a direction `v`.
#[derive(Debug, Clone)]
struct FdCase<C> {
    forward: C,
    grad: Vec<f64>,
    direction: Vec<f64>,
}

/// Distinct inputs (a shuffled 0..len), so no tie or NaN can let a perturbation of at most 1/4
/// per element move a maximum: max pooling is then linear around x, and its finite difference
/// along any direction is exact.
fn distinct_values(len: usize) -> impl Strategy<Value = Vec<f64>> {
    Just((0..len).map(|i| i as f64).collect::<Vec<_>>()).prop_shuffle()
}

fn direction(len: usize) -> impl Strategy<Value = Vec<f64>> {
    prop::collection::vec((-8i32..=8).prop_map(|k| k as f64 / 32.0), len)
}

fn window_fd_case(max: bool) -> impl Strategy<Value = FdCase<WindowCase>> {
    window_case(max, AVG_VALUES).prop_flat_map(|mut forward| {
        forward.dtype = DType::F64;
        let len = forward.values.len();
        let [oh, ow] = window_out(&forward);
        let out_len = forward.shape[0] * forward.shape[1] * oh * ow;
        (
            Just(forward),
            distinct_values(len),
            values_strategy(GRAD_VALUES, DType::F64, out_len),
            direction(len),
        )
            .prop_map(|(mut forward, values, grad, direction)| {
                forward.values = values;
                FdCase { forward, grad, direction }
            })
    })
}

fn adaptive_fd_case() -> impl Strategy<Value = FdCase<AdaptiveCase>> {
    adaptive_case(AVG_VALUES).prop_flat_map(|mut forward| {
        forward.dtype = DType::F64;
        let len = forward.values.len();
        let out_len = forward.shape[0] * forward.shape[1] * forward.output[0] * forward.output[1];
        (
            Just(forward),
            distinct_values(len),
            values_strategy(GRAD_VALUES, DType::F64, out_len),
            direction(len),
        )
            .prop_map(|(mut forward, values, grad, direction)| {
                forward.values = values;
                FdCase { forward, grad, direction }
            })
    })
}

fn reduce_fd_case() -> impl Strategy<Value = FdCase<ReduceCase>> {
    reduce_case().prop_flat_map(|mut forward| {
        forward.dtype = DType::F64;
        let len = forward.values.len();
        let out_len = naive::mean(&forward.input(), &forward.dims, forward.keepdim).len();
        (Just(forward), values_strategy(GRAD_VALUES, DType::F64, out_len), direction(len))
            .prop_map(|(forward, grad, direction)| FdCase { forward, grad, direction })
    })
}

/// `<backward(g), v>` equals the central difference of `<g, forward(x + t v)>` at t = 0 (step 1:
/// exact for ops that are linear around x), up to f64 rounding of the sums.
fn check_directional(
    what: &str,
    forward: impl Fn(&ArrayD<f64>) -> Result<ArrayD<f64>, TestCaseError>,
    backward_dot_v: f64,
    x: &ArrayD<f64>,
    v: &ArrayD<f64>,
    g: &ArrayD<f64>,
) -> CaseResult {
    let plus = forward(&(x + v))?;
    let minus = forward(&(x - v))?;
    let fd = (naive::dot(&plus, g) - naive::dot(&minus, g)) / 2.0;
    let scale: f64 =
        plus.iter().chain(minus.iter()).zip(g.iter().chain(g.iter())).map(|(a, b)| (a * b).abs()).sum();
    prop_assert!(
        (fd - backward_dot_v).abs() <= 1e-12 * (1.0 + scale),
        "{}: finite difference {} vs <backward(g), v> {}",
        what,
        fd,
        backward_dot_v
    );
    Ok(())
}

/// A forward op of the crate, boxed so the max and average variants share one check.
type ForwardOp<'a> = Box<dyn Fn(&CudaTensor) -> cupool::Result<CudaTensor> + 'a>;
/// A forward op of the reference.
type ReferenceOp = Box<dyn Fn(&ArrayD<f64>) -> ArrayD<f64>>;

/// Runs a forward op of the crate on f64 values, in `like`'s layout.
fn run_forward(
    like: &CudaTensor,
    x: &ArrayD<f64>,
    op: &dyn Fn(&CudaTensor) -> cupool::Result<CudaTensor>,
) -> Result<ArrayD<f64>, TestCaseError> {
    let t = upload_like(like, DType::F64, x)?;
    download(&ok("forward", op(&t))?)
}

fn check_window_fd(dev: Dev, case: &FdCase<WindowCase>, max: bool) -> CaseResult {
    let f = &case.forward;
    let shape = f.upload_shape();
    let x = ArrayD::from_shape_vec(IxDyn(&shape), f.values.clone()).expect("x");
    let v = ArrayD::from_shape_vec(IxDyn(&shape), case.direction.clone()).expect("v");
    let g =
        ArrayD::from_shape_vec(IxDyn(&output_shape(&shape, window_out(f))), case.grad.clone()).expect("g");
    let (avg, maxs) = (f.avg_spec(), f.max_spec());
    for (layout, input) in in_layouts(dev, DType::F64, &shape, &f.values)? {
        let go = upload_like(&input, DType::F64, &g)?;
        let (what, grad, forward): (_, _, ForwardOp) = if max {
            let (_, indices) = ok("max_pool2d_with_indices", input.max_pool2d_with_indices(&maxs))?;
            let grad = ok("max_pool2d_backward", input.max_pool2d_backward(&go, &indices, &maxs))?;
            ("max_pool2d", grad, Box::new(|t: &CudaTensor| t.max_pool2d(&maxs)))
        } else {
            let grad = ok("avg_pool2d_backward", input.avg_pool2d_backward(&go, &avg))?;
            ("avg_pool2d", grad, Box::new(|t: &CudaTensor| t.avg_pool2d(&avg)))
        };
        let dot = naive::dot(&download(&grad)?, &v);
        check_directional(
            &format!("{what} {layout}"),
            |y| run_forward(&input, y, &*forward),
            dot,
            &x,
            &v,
            &g,
        )?;
    }
    Ok(())
}

fn check_adaptive_fd(dev: Dev, case: &FdCase<AdaptiveCase>, max: bool) -> CaseResult {
    let f = &case.forward;
    let shape = f.upload_shape();
    let x = ArrayD::from_shape_vec(IxDyn(&shape), f.values.clone()).expect("x");
    let v = ArrayD::from_shape_vec(IxDyn(&shape), case.direction.clone()).expect("v");
    let g = ArrayD::from_shape_vec(IxDyn(&output_shape(&shape, f.output)), case.grad.clone()).expect("g");
    let out = f.output;
    for (layout, input) in in_layouts(dev, DType::F64, &shape, &f.values)? {
        let go = upload_like(&input, DType::F64, &g)?;
        let (what, grad, forward): (_, _, ForwardOp) = if max {
            let (_, indices) =
                ok("adaptive_max_pool2d_with_indices", input.adaptive_max_pool2d_with_indices(out))?;
            let grad = ok("adaptive_max_pool2d_backward", input.adaptive_max_pool2d_backward(&go, &indices))?;
            ("adaptive_max_pool2d", grad, Box::new(move |t: &CudaTensor| t.adaptive_max_pool2d(out)))
        } else {
            let grad = ok("adaptive_avg_pool2d_backward", input.adaptive_avg_pool2d_backward(&go))?;
            ("adaptive_avg_pool2d", grad, Box::new(move |t: &CudaTensor| t.adaptive_avg_pool2d(out)))
        };
        let dot = naive::dot(&download(&grad)?, &v);
        check_directional(
            &format!("{what} {layout}"),
            |y| run_forward(&input, y, &*forward),
            dot,
            &x,
            &v,
            &g,
        )?;
    }
    Ok(())
}

fn check_mean_fd(dev: Dev, case: &FdCase<ReduceCase>) -> CaseResult {
    let f = &case.forward;
    let x = f.input();
    let v = ArrayD::from_shape_vec(IxDyn(&f.shape), case.direction.clone()).expect("v");
    let out_shape = naive::mean(&x, &f.dims, f.keepdim).shape().to_vec();
    let g = ArrayD::from_shape_vec(IxDyn(&out_shape), case.grad.clone()).expect("g");
    for (layout, input) in in_layouts(dev, DType::F64, &f.shape, &f.values)? {
        let go = upload(input.device(), DType::F64, &g)?;
        let grad = ok("mean_backward", input.mean_backward(&go, &f.dims, f.keepdim))?;
        let dot = naive::dot(&download(&grad)?, &v);
        let forward = |t: &CudaTensor| t.mean(&f.dims, f.keepdim);
        check_directional(&format!("mean {layout}"), |y| run_forward(&input, y, &forward), dot, &x, &v, &g)?;
    }
    Ok(())
}

/// The reference's own backward passes agree with finite differences of its forward passes.
fn check_reference_fd(window: &FdCase<WindowCase>, max: bool) -> CaseResult {
    let f = &window.forward;
    let x = f.input().into_dyn();
    let v = ArrayD::from_shape_vec(IxDyn(&f.shape), window.direction.clone()).expect("v");
    let out = window_out(f);
    let g = grad4(&window.grad, f.shape, out);
    let p: Window = f.window;
    let (forward, grad): (ReferenceOp, _) = if max {
        let (_, idx) = naive::max_pool2d(&to4(x.clone()), &p);
        (
            Box::new(move |y: &ArrayD<f64>| naive::max_pool2d(&to4(y.clone()), &p).0.into_dyn()),
            naive::max_backward(to4(x.clone()).dim(), &g, &idx),
        )
    } else {
        (
            Box::new(move |y: &ArrayD<f64>| naive::avg_pool2d(&to4(y.clone()), &p).into_dyn()),
            naive::avg_pool2d_backward(to4(x.clone()).dim(), &g, &p),
        )
    };
    let fd = naive::directional_derivative(&*forward, &x, &v, &g.into_dyn(), 1.0);
    let dot = naive::dot(&grad.into_dyn(), &v);
    prop_assert!(
        (fd - dot).abs() <= 1e-9 * (1.0 + dot.abs()),
        "reference: finite difference {} vs {}",
        fd,
        dot
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(CPU_CASES)))]

    #[test]
    fn avg_pool2d_backward_matches_reference_on_cpu(case in window_grad_case(false, AVG_VALUES)) {
        check_avg_pool2d_backward(Dev::Cpu, &case)?;
    }

    #[test]
    fn max_pool2d_backward_matches_reference_on_cpu(case in window_grad_case(true, MAX_VALUES)) {
        check_max_pool2d_backward(Dev::Cpu, &case)?;
    }

    #[test]
    fn adaptive_avg_pool2d_backward_matches_reference_on_cpu(case in adaptive_grad_case(AVG_VALUES)) {
        check_adaptive_avg_pool2d_backward(Dev::Cpu, &case)?;
    }

    #[test]
    fn adaptive_max_pool2d_backward_matches_reference_on_cpu(case in adaptive_grad_case(MAX_VALUES)) {
        check_adaptive_max_pool2d_backward(Dev::Cpu, &case)?;
    }

    #[test]
    fn mean_backward_matches_reference_on_cpu(case in reduce_grad_case()) {
        check_mean_backward(Dev::Cpu, &case)?;
    }

    #[test]
    fn window_backward_matches_finite_differences_on_cpu(case in window_fd_case(false), max in any::<bool>()) {
        check_window_fd(Dev::Cpu, &case, max)?;
    }

    #[test]
    fn adaptive_backward_matches_finite_differences_on_cpu(case in adaptive_fd_case(), max in any::<bool>()) {
        check_adaptive_fd(Dev::Cpu, &case, max)?;
    }

    #[test]
    fn mean_backward_matches_finite_differences_on_cpu(case in reduce_fd_case()) {
        check_mean_fd(Dev::Cpu, &case)?;
    }

    #[test]
    fn reference_backward_matches_finite_differences(avg in window_fd_case(false), max in window_fd_case(true)) {
        check_reference_fd(&avg, false)?;
        check_reference_fd(&max, true)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(EMULATED_CASES)))]

    #[test]
    fn avg_pool2d_backward_matches_reference_emulated(case in window_grad_case(false, AVG_VALUES)) {
        check_avg_pool2d_backward(Dev::Emulated, &case)?;
    }

    #[test]
    fn max_pool2d_backward_matches_reference_emulated(case in window_grad_case(true, MAX_VALUES)) {
        check_max_pool2d_backward(Dev::Emulated, &case)?;
    }

    #[test]
    fn adaptive_avg_pool2d_backward_matches_reference_emulated(case in adaptive_grad_case(AVG_VALUES)) {
        check_adaptive_avg_pool2d_backward(Dev::Emulated, &case)?;
    }

    #[test]
    fn adaptive_max_pool2d_backward_matches_reference_emulated(case in adaptive_grad_case(MAX_VALUES)) {
        check_adaptive_max_pool2d_backward(Dev::Emulated, &case)?;
    }

    #[test]
    fn mean_backward_matches_reference_emulated(case in reduce_grad_case()) {
        check_mean_backward(Dev::Emulated, &case)?;
    }

    #[test]
    fn window_backward_matches_finite_differences_emulated(case in window_fd_case(false), max in any::<bool>()) {
        check_window_fd(Dev::Emulated, &case, max)?;
    }

    #[test]
    fn adaptive_backward_matches_finite_differences_emulated(case in adaptive_fd_case(), max in any::<bool>()) {
        check_adaptive_fd(Dev::Emulated, &case, max)?;
    }

    #[test]
    fn mean_backward_matches_finite_differences_emulated(case in reduce_fd_case()) {
        check_mean_fd(Dev::Emulated, &case)?;
    }
}
