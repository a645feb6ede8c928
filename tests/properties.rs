//! Property tests: every forward op against the naive f64 reference in `tests/naive`, on random
//! small shapes and valid parameters, in every float dtype, both memory layouts, 3-D and 4-D
//! input, on the CPU and on the emulated device (the real CUDA kernels run on the host).
//!
//! Case counts are modest (64 on the CPU, 16 emulated) so the suite stays fast;
//! `PROPTEST_CASES=N` runs N per property instead.

mod naive;

use cupool::Gap;
use naive::harness::*;
use proptest::prelude::*;

const CPU_CASES: u32 = 64;
const EMULATED_CASES: u32 = 16;

fn check_avg_pool2d(dev: Dev, case: &WindowCase) -> CaseResult {
    let x = case.input();
    let want = naive::avg_pool2d(&x, &case.window).into_dyn();
    let want_abs = naive::avg_pool2d(&x.mapv(f64::abs), &case.window).into_dyn();
    let terms = case.window.kernel[0] * case.window.kernel[1];
    let spec = case.avg_spec();
    let shape = case.upload_shape();
    let mut results = Vec::new();
    for (layout, input) in in_layouts(dev, case.dtype, &shape, &case.values)? {
        let y = ok("avg_pool2d", input.avg_pool2d(&spec))?;
        let what = format!("avg_pool2d {layout}");
        check_layout(&what, &input, &y)?;
        prop_assert_eq!(y.dtype(), case.dtype);
        let got = download(&y)?;
        prop_assert_eq!(got.ndim(), shape.len(), "{}: rank", what);
        assert_close(&what, &as4(&got).into_dyn(), &want, &want_abs, case.dtype, terms)?;
        results.push(got);
    }
    if case.three_d {
        let x4 = as_batch_of_one(dev, case.dtype, &shape, &case.values)?;
        let y4 = download(&ok("avg_pool2d 4-D", x4.avg_pool2d(&spec))?)?;
        assert_same_bits("avg_pool2d 3-D vs 4-D", &as4(&results[0]).into_dyn(), &y4)?;
    }
    Ok(())
}

fn check_max_pool2d(dev: Dev, case: &WindowCase) -> CaseResult {
    let x = case.input();
    let (want, want_idx) = naive::max_pool2d(&x, &case.window);
    let (want, want_idx) = (want.into_dyn(), want_idx.into_dyn());
    let spec = case.max_spec();
    let shape = case.upload_shape();
    let mut results = Vec::new();
    for (layout, input) in in_layouts(dev, case.dtype, &shape, &case.values)? {
        let (y, idx) = ok("max_pool2d_with_indices", input.max_pool2d_with_indices(&spec))?;
        let what = format!("max_pool2d_with_indices {layout}");
        check_layout(&what, &input, &y)?;
        check_layout(&format!("{what} indices"), &input, &idx)?;
        prop_assert_eq!(y.dtype(), case.dtype);
        let got = download(&y)?;
        let got_idx = download_indices(&idx)?;
        assert_same_bits(&what, &as4(&got).into_dyn(), &want)?;
        prop_assert_eq!(&as4(&got_idx).into_dyn(), &want_idx, "{}: indices", what);
        // max_pool2d without indices gives the same values.
        let plain = download(&ok("max_pool2d", input.max_pool2d(&spec))?)?;
        assert_same_bits(&format!("max_pool2d {layout}"), &plain, &got)?;
        results.push(got);
    }
    if case.three_d {
        let x4 = as_batch_of_one(dev, case.dtype, &shape, &case.values)?;
        let (y4, _) = ok("max_pool2d_with_indices 4-D", x4.max_pool2d_with_indices(&spec))?;
        assert_same_bits("max_pool2d 3-D vs 4-D", &as4(&results[0]).into_dyn(), &download(&y4)?)?;
    }
    Ok(())
}

fn check_adaptive_avg_pool2d(dev: Dev, case: &AdaptiveCase) -> CaseResult {
    let x = case.input();
    let want = naive::adaptive_avg_pool2d(&x, case.output).into_dyn();
    let want_abs = naive::adaptive_avg_pool2d(&x.mapv(f64::abs), case.output).into_dyn();
    let [_, _, h, w] = case.shape;
    // The largest adaptive window: ceil(I/O) + 1 along each axis bounds it.
    let terms = (h.div_ceil(case.output[0]) + 1) * (w.div_ceil(case.output[1]) + 1);
    let shape = case.upload_shape();
    let mut results = Vec::new();
    for (layout, input) in in_layouts(dev, case.dtype, &shape, &case.values)? {
        let y = ok("adaptive_avg_pool2d", input.adaptive_avg_pool2d(case.output))?;
        let what = format!("adaptive_avg_pool2d {layout}");
        check_layout(&what, &input, &y)?;
        let got = download(&y)?;
        assert_close(&what, &as4(&got).into_dyn(), &want, &want_abs, case.dtype, terms)?;
        results.push(got);
    }
    if case.three_d {
        let x4 = as_batch_of_one(dev, case.dtype, &shape, &case.values)?;
        let y4 = download(&ok("adaptive_avg_pool2d 4-D", x4.adaptive_avg_pool2d(case.output))?)?;
        assert_same_bits("adaptive_avg_pool2d 3-D vs 4-D", &as4(&results[0]).into_dyn(), &y4)?;
    }
    Ok(())
}

fn check_adaptive_max_pool2d(dev: Dev, case: &AdaptiveCase) -> CaseResult {
    let x = case.input();
    let (want, want_idx) = naive::adaptive_max_pool2d(&x, case.output);
    let (want, want_idx) = (want.into_dyn(), want_idx.into_dyn());
    let shape = case.upload_shape();
    let mut results = Vec::new();
    for (layout, input) in in_layouts(dev, case.dtype, &shape, &case.values)? {
        let (y, idx) =
            ok("adaptive_max_pool2d_with_indices", input.adaptive_max_pool2d_with_indices(case.output))?;
        let what = format!("adaptive_max_pool2d_with_indices {layout}");
        check_layout(&what, &input, &y)?;
        check_layout(&format!("{what} indices"), &input, &idx)?;
        let got = download(&y)?;
        assert_same_bits(&what, &as4(&got).into_dyn(), &want)?;
        prop_assert_eq!(&as4(&download_indices(&idx)?).into_dyn(), &want_idx, "{}: indices", what);
        let plain = download(&ok("adaptive_max_pool2d", input.adaptive_max_pool2d(case.output))?)?;
        assert_same_bits(&format!("adaptive_max_pool2d {layout}"), &plain, &got)?;
        results.push(got);
    }
    if case.three_d {
        let x4 = as_batch_of_one(dev, case.dtype, &shape, &case.values)?;
        let (y4, _) = ok("adaptive_max_pool2d 4-D", x4.adaptive_max_pool2d_with_indices(case.output))?;
        assert_same_bits("adaptive_max_pool2d 3-D vs 4-D", &as4(&results[0]).into_dyn(), &download(&y4)?)?;
    }
    Ok(())
}

fn check_mean_and_sum(dev: Dev, case: &ReduceCase) -> CaseResult {
    let x = case.input();
    let terms = naive::reduced_count(&case.shape, &case.dims);
    let want_mean = naive::mean(&x, &case.dims, case.keepdim);
    let want_mean_abs = naive::mean(&x.mapv(f64::abs), &case.dims, case.keepdim);
    let want_sum = naive::sum(&x, &case.dims, case.keepdim);
    let want_sum_abs = naive::sum(&x.mapv(f64::abs), &case.dims, case.keepdim);
    for (layout, input) in in_layouts(dev, case.dtype, &case.shape, &case.values)? {
        let what = format!("mean({:?}, keepdim={}) {layout}", case.dims, case.keepdim);
        let m = ok(&what, input.mean(&case.dims, case.keepdim))?;
        prop_assert_eq!(m.dtype(), case.dtype);
        assert_close(&what, &download(&m)?, &want_mean, &want_mean_abs, case.dtype, terms)?;
        let what = format!("sum({:?}, keepdim={}) {layout}", case.dims, case.keepdim);
        let s = ok(&what, input.sum(&case.dims, case.keepdim))?;
        assert_close(&what, &download(&s)?, &want_sum, &want_sum_abs, case.dtype, terms)?;
    }
    Ok(())
}

/// The three GAP formulations (and `global_avg_pool` with each) agree with the reference and
/// with each other.
fn check_gap(dev: Dev, case: &AdaptiveCase) -> CaseResult {
    let x = case.input();
    let [n, c, h, w] = case.shape;
    let want = naive::mean(&x.clone().into_dyn(), &[2, 3], false);
    let want_abs = naive::mean(&x.mapv(f64::abs).into_dyn(), &[2, 3], false);
    let terms = h * w;
    let flat = [n as isize, c as isize];
    for (layout, input) in in_layouts(dev, case.dtype, &case.shape, &case.values)? {
        let by_window = ok("avg_pool2d(whole plane)", input.avg_pool2d(&cupool::AvgPool2d::new([h, w])))?;
        prop_assert_eq!(by_window.shape(), &[n, c, 1, 1][..]);
        let by_adaptive = ok("adaptive_avg_pool2d([1, 1])", input.adaptive_avg_pool2d([1, 1]))?;
        prop_assert_eq!(by_adaptive.shape(), &[n, c, 1, 1][..]);
        // PyTorch's `view` fails on channels-last memory; `reshape` copies there.
        let flattened = if input.is_contiguous() {
            ok("view(n, c, -1)", input.view(&[flat[0], flat[1], -1]))?
        } else {
            ok("reshape(n, c, -1)", input.reshape(&[flat[0], flat[1], -1]))?
        };
        let by_mean = ok("mean(2)", flattened.mean(&[2], false))?;
        let formulations = [
            ("avg_pool2d", download(&by_window)?.into_shape_with_order(vec![n, c]).expect("(N, C)")),
            (
                "adaptive_avg_pool2d",
                download(&by_adaptive)?.into_shape_with_order(vec![n, c]).expect("(N, C)"),
            ),
            ("view+mean", download(&by_mean)?),
            ("Gap::AvgPool2d", download(&ok("Gap::AvgPool2d", input.global_avg_pool(Gap::AvgPool2d))?)?),
            (
                "Gap::AdaptiveAvgPool2d",
                download(&ok("Gap::AdaptiveAvgPool2d", input.global_avg_pool(Gap::AdaptiveAvgPool2d))?)?,
            ),
            ("Gap::Mean", download(&ok("Gap::Mean", input.global_avg_pool(Gap::Mean))?)?),
        ];
        for (name, got) in &formulations {
            assert_close(&format!("GAP {name} {layout}"), got, &want, &want_abs, case.dtype, terms)?;
            // Each pair is two roundings of the same exact value apart at most.
            let other = &formulations[0].1;
            assert_close(
                &format!("GAP {name} vs avg_pool2d {layout}"),
                got,
                other,
                &want_abs,
                case.dtype,
                2 * terms,
            )?;
        }
    }
    Ok(())
}

const AVG_VALUES: &[Values] = &[Values::Grid, Values::Continuous];
const MAX_VALUES: &[Values] = &[Values::Ties, Values::Continuous, Values::Specials];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(CPU_CASES)))]

    #[test]
    fn avg_pool2d_matches_reference_on_cpu(case in window_case(false, AVG_VALUES)) {
        check_avg_pool2d(Dev::Cpu, &case)?;
    }

    #[test]
    fn max_pool2d_matches_reference_on_cpu(case in window_case(true, MAX_VALUES)) {
        check_max_pool2d(Dev::Cpu, &case)?;
    }

    #[test]
    fn adaptive_avg_pool2d_matches_reference_on_cpu(case in adaptive_case(AVG_VALUES)) {
        check_adaptive_avg_pool2d(Dev::Cpu, &case)?;
    }

    #[test]
    fn adaptive_max_pool2d_matches_reference_on_cpu(case in adaptive_case(MAX_VALUES)) {
        check_adaptive_max_pool2d(Dev::Cpu, &case)?;
    }

    #[test]
    fn mean_and_sum_match_reference_on_cpu(case in reduce_case()) {
        check_mean_and_sum(Dev::Cpu, &case)?;
    }

    #[test]
    fn gap_formulations_agree_on_cpu(case in adaptive_case(AVG_VALUES)) {
        check_gap(Dev::Cpu, &case)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(EMULATED_CASES)))]

    #[test]
    fn avg_pool2d_matches_reference_emulated(case in window_case(false, AVG_VALUES)) {
        check_avg_pool2d(Dev::Emulated, &case)?;
    }

    #[test]
    fn max_pool2d_matches_reference_emulated(case in window_case(true, MAX_VALUES)) {
        check_max_pool2d(Dev::Emulated, &case)?;
    }

    #[test]
    fn adaptive_avg_pool2d_matches_reference_emulated(case in adaptive_case(AVG_VALUES)) {
        check_adaptive_avg_pool2d(Dev::Emulated, &case)?;
    }

    #[test]
    fn adaptive_max_pool2d_matches_reference_emulated(case in adaptive_case(MAX_VALUES)) {
        check_adaptive_max_pool2d(Dev::Emulated, &case)?;
    }

    #[test]
    fn mean_and_sum_match_reference_emulated(case in reduce_case()) {
        check_mean_and_sum(Dev::Emulated, &case)?;
    }

    #[test]
    fn gap_formulations_agree_emulated(case in adaptive_case(AVG_VALUES)) {
        check_gap(Dev::Emulated, &case)?;
    }
}

/// The reference itself, on PyTorch's worked examples (pytorch-semantics.md §1, §3), so a wrong
/// reference cannot pass silently.
#[test]
fn reference_reproduces_pytorch_worked_examples() {
    use naive::{pooling_output_size, Window};
    assert_eq!(pooling_output_size(5, 2, 0, 2, 1, true), Some(3));
    assert_eq!(pooling_output_size(6, 3, 1, 2, 1, true), Some(4));
    assert_eq!(pooling_output_size(4, 2, 1, 2, 1, true), Some(3));
    assert_eq!(pooling_output_size(5, 2, 0, 2, 1, false), Some(2));
    // I=6, k=3, s=2, p=1, ceil, count_include_pad: divisors 9 inside, 6 on edges, 4 in the corner.
    let window = Window {
        kernel: [3, 3],
        stride: Some([2, 2]),
        padding: [1, 1],
        dilation: [1, 1],
        ceil_mode: true,
        count_include_pad: true,
        divisor_override: None,
    };
    let ones = ndarray::Array4::<f64>::ones((1, 1, 6, 6));
    let y = naive::avg_pool2d(&ones, &window);
    assert_eq!(y.dim(), (1, 1, 4, 4));
    // Window (3, 3) covers row and column 5 only, but its pool counts the padding: 2 x 2.
    assert_eq!(y[[0, 0, 3, 3]], 1.0 / 4.0);
    assert_eq!(y[[0, 0, 3, 1]], 3.0 / 6.0);
    assert_eq!(y[[0, 0, 1, 1]], 1.0);
    assert_eq!(y[[0, 0, 0, 0]], 4.0 / 9.0);
    let ranges: Vec<_> = (0..5).map(|o| naive::adaptive_range(o, 5, 3)).collect();
    assert_eq!(ranges, vec![0..1, 0..2, 1..2, 1..3, 2..3]);
    // Max: the last NaN wins, ties keep the first, an all -inf window reports its first tap.
    let x = ndarray::Array4::from_shape_vec((1, 1, 1, 4), vec![1.0, f64::NAN, 2.0, f64::NAN]).expect("shape");
    let max_all = Window { kernel: [1, 4], stride: None, padding: [0, 0], ..window };
    let (v, i) = naive::max_pool2d(&x, &max_all);
    assert!(v[[0, 0, 0, 0]].is_nan());
    assert_eq!(i[[0, 0, 0, 0]], 3);
    let ties =
        ndarray::Array4::from_shape_vec((1, 1, 1, 4), vec![f64::NEG_INFINITY, 2.0, 2.0, 1.0]).expect("shape");
    assert_eq!(naive::max_pool2d(&ties, &max_all).1[[0, 0, 0, 0]], 1);
    let ninf = ndarray::Array4::from_elem((1, 1, 1, 4), f64::NEG_INFINITY);
    let padded = Window { kernel: [1, 3], stride: Some([1, 2]), padding: [0, 1], ..window };
    let (v, i) = naive::max_pool2d(&ninf, &padded);
    assert_eq!(v[[0, 0, 0, 0]], f64::NEG_INFINITY);
    assert_eq!(i[[0, 0, 0, 0]], 0);
    assert_eq!(i[[0, 0, 0, 1]], 1);
}
