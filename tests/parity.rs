//! Parity with PyTorch: every case of tests/golden/*.json (written by generate.py from torch on
//! the CPU) on every device: the CPU, the emulator, and a CUDA GPU when one is present. Each test
//! fn runs one op family and reports all its failures together, by case name and device.

mod common;

use common::{
    avg_spec, compare, compare_as, compare_indices, indices_tensor, isizes, max_spec, pair, run_family,
    tensor, usizes, Match,
};
use cupool::{CudaTensor, Device, Gap};
use serde_json::Value;

fn err(e: cupool::Error) -> String {
    format!("returned Err: {e}")
}

/// A forward case: runs the op and compares values (and indices) with torch's.
fn check_forward(dev: &Device, case: &Value) -> Result<(), String> {
    let x = tensor(dev, &case["input"])?;
    let p = &case["params"];
    let expected = &case["expected"];
    match case["op"].as_str().unwrap_or("") {
        "avg_pool2d" => compare(&x.avg_pool2d(&avg_spec(p)).map_err(err)?, expected, Match::Tolerance),
        "max_pool2d" => compare(&x.max_pool2d(&max_spec(p)).map_err(err)?, expected, Match::Exact),
        "max_pool2d_with_indices" => {
            let (values, indices) = x.max_pool2d_with_indices(&max_spec(p)).map_err(err)?;
            compare(&values, expected, Match::Exact)?;
            compare_indices(&indices, &case["indices"])
        }
        "adaptive_avg_pool2d" => {
            compare(&x.adaptive_avg_pool2d(pair(&p["output_size"])).map_err(err)?, expected, Match::Tolerance)
        }
        "adaptive_max_pool2d" => {
            compare(&x.adaptive_max_pool2d(pair(&p["output_size"])).map_err(err)?, expected, Match::Exact)
        }
        "adaptive_max_pool2d_with_indices" => {
            let (values, indices) =
                x.adaptive_max_pool2d_with_indices(pair(&p["output_size"])).map_err(err)?;
            compare(&values, expected, Match::Exact)?;
            compare_indices(&indices, &case["indices"])
        }
        "mean" => {
            let y = x.mean(&isizes(&p["dims"]), p["keepdim"].as_bool().unwrap_or(false)).map_err(err)?;
            compare(&y, expected, Match::Tolerance)
        }
        "sum" => {
            let y = x.sum(&isizes(&p["dims"]), p["keepdim"].as_bool().unwrap_or(false)).map_err(err)?;
            compare(&y, expected, Match::Tolerance)
        }
        "gap" => check_gap(&x, p, expected),
        other => Err(format!("unknown op {other:?}")),
    }
}

/// A GAP case: the PyTorch formulation itself, then `global_avg_pool` with the matching `Gap`,
/// whose (N, C) result must hold the same values.
fn check_gap(x: &CudaTensor, p: &Value, expected: &Value) -> Result<(), String> {
    let shape = x.shape().to_vec();
    let (n, c) = (shape[0], shape[1]);
    let (direct, how) = match p["formulation"].as_str().unwrap_or("") {
        "avg_pool2d" => (x.avg_pool2d(&cupool::AvgPool2d::new([shape[2], shape[3]])), Gap::AvgPool2d),
        "adaptive_avg_pool2d" => (x.adaptive_avg_pool2d([1, 1]), Gap::AdaptiveAvgPool2d),
        "mean" => (x.view(&[n as isize, c as isize, -1]).and_then(|v| v.mean(&[2], false)), Gap::Mean),
        other => return Err(format!("unknown formulation {other:?}")),
    };
    compare(&direct.map_err(|e| format!("formulation: {}", err(e)))?, expected, Match::Tolerance)
        .map_err(|e| format!("formulation: {e}"))?;
    let gap = x.global_avg_pool(how).map_err(|e| format!("global_avg_pool({how:?}): {}", err(e)))?;
    compare_as(&gap, expected, Match::Tolerance, Some(&[n, c]))
        .map_err(|e| format!("global_avg_pool({how:?}): {e}"))
}

/// A backward case: the gradient w.r.t. the input, against torch.autograd's.
fn check_backward(dev: &Device, case: &Value) -> Result<(), String> {
    let x = tensor(dev, &case["input"])?;
    let grad_out = tensor(dev, &case["grad_out"])?;
    let grad_cl = case["grad_out"]["channels_last"].as_bool().unwrap_or(false);
    let p = &case["params"];
    let grad_in = match case["op"].as_str().unwrap_or("") {
        "avg_pool2d_backward" => x.avg_pool2d_backward(&grad_out, &avg_spec(p)),
        "max_pool2d_backward" => {
            let indices = indices_tensor(dev, &case["indices"], grad_cl)?;
            x.max_pool2d_backward(&grad_out, &indices, &max_spec(p))
        }
        "adaptive_avg_pool2d_backward" => x.adaptive_avg_pool2d_backward(&grad_out),
        "adaptive_max_pool2d_backward" => {
            let indices = indices_tensor(dev, &case["indices"], grad_cl)?;
            x.adaptive_max_pool2d_backward(&grad_out, &indices)
        }
        "mean_backward" => {
            x.mean_backward(&grad_out, &isizes(&p["dims"]), p["keepdim"].as_bool().unwrap_or(false))
        }
        other => return Err(format!("unknown op {other:?}")),
    }
    .map_err(err)?;
    if grad_in.shape() != usizes(&case["input"]["shape"]).as_slice() {
        return Err(format!("grad_input shape {:?} is not the input's", grad_in.shape()));
    }
    compare(&grad_in, &case["expected"], Match::Tolerance)
}

fn forward_family(family: &str) {
    run_family(family, |_| true, check_forward);
}

#[test]
fn parity_avg_pool2d() {
    forward_family("avg_pool2d");
}

#[test]
fn parity_max_pool2d() {
    forward_family("max_pool2d");
}

#[test]
fn parity_adaptive() {
    forward_family("adaptive");
}

#[test]
fn parity_reduce() {
    forward_family("reduce");
}

#[test]
fn parity_gap() {
    forward_family("gap");
}

/// The CPU's bf16 NCHW averages to four outputs sum in whatever order is fastest where every
/// partial sum is exact (`src/cpu/exact_sums.rs`), and in PyTorch's order elsewhere: either
/// way PyTorch's bits, which these cases (planes that pass and fail that check) hold it to.
/// They are in the committed files only, so they are read from there even where
/// `CUPOOL_GOLDEN_DIR` points the other tests at random cases.
#[test]
fn cpu_adaptive_averages_to_four_outputs_are_pytorchs_bits() {
    let cases = common::load_committed_cases("adaptive");
    let exact: Vec<&Value> = cases
        .iter()
        .filter(|c| c["name"].as_str().is_some_and(|n| n.starts_with("adaptive_avg_pool2d_exact_sums")))
        .collect();
    assert_eq!(exact.len(), 4);
    for case in exact {
        let x = tensor(&Device::cpu(), &case["input"]).unwrap();
        let y = x.adaptive_avg_pool2d(pair(&case["params"]["output_size"])).unwrap();
        compare(&y, &case["expected"], Match::Exact).unwrap_or_else(|e| panic!("{}: {e}", case["name"]));
    }
}

fn backward_of(op: &'static str) -> impl Fn(&Value) -> bool {
    move |case| case["op"].as_str() == Some(op)
}

#[test]
fn parity_backward_avg_pool2d() {
    run_family("backward", backward_of("avg_pool2d_backward"), check_backward);
}

#[test]
fn parity_backward_max_pool2d() {
    run_family("backward", backward_of("max_pool2d_backward"), check_backward);
}

#[test]
fn parity_backward_adaptive_avg_pool2d() {
    run_family("backward", backward_of("adaptive_avg_pool2d_backward"), check_backward);
}

#[test]
fn parity_backward_adaptive_max_pool2d() {
    run_family("backward", backward_of("adaptive_max_pool2d_backward"), check_backward);
}

#[test]
fn parity_backward_mean() {
    run_family("backward", backward_of("mean_backward"), check_backward);
}

/// The golden files are what the tests think they are: every op named is one the checks know,
/// and every committed family has cases (a truncated or regenerated-wrong file fails here
/// first). Random cases (`CUPOOL_GOLDEN_DIR`) may leave a family empty: fuzz.py's `large` sets
/// draw few error cases, and sometimes none.
#[test]
fn golden_files_are_well_formed() {
    let random = std::env::var("CUPOOL_GOLDEN_DIR").is_ok();
    for family in ["avg_pool2d", "max_pool2d", "adaptive", "reduce", "gap", "backward", "errors"] {
        let cases = common::load_cases(family);
        assert!(random || !cases.is_empty(), "{family}.json has no cases");
        for case in &cases {
            assert!(
                case["name"].is_string() && case["op"].is_string() && case["params"].is_object(),
                "{family}: {case}"
            );
            if family != "errors" {
                let shape = usizes(&case["expected"]["shape"]);
                let n: usize = shape.iter().product();
                let bytes = case["expected"]["data"].as_str().map_or(0, str::len) / 2;
                let dtype = common::dtype_of(case["expected"]["dtype"].as_str().unwrap_or("")).unwrap();
                assert_eq!(bytes, n * dtype.size_in_bytes(), "{family}/{}", common::case_name(case));
            }
        }
    }
}
