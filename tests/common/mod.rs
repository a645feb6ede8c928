//! Shared helpers of the parity tests: the golden-file loader, hex decoding into ndarray arrays,
//! building tensors on each device, and comparison with DESIGN.md's tolerances.
#![allow(dead_code)] // each test binary uses a different subset

use std::panic::{catch_unwind, AssertUnwindSafe};

use cupool::{AvgPool2d, CudaTensor, DType, Device, Element, MaxPool2d};
use half::{bf16, f16};
use ndarray::{ArrayD, IxDyn};
use serde_json::Value;

/// The cases of `tests/golden/{family}.json`, or of `$CUPOOL_GOLDEN_DIR/{family}.json` where
/// that is set (tests/golden/fuzz.py writes random cases there).
pub fn load_cases(family: &str) -> Vec<Value> {
    match std::env::var("CUPOOL_GOLDEN_DIR") {
        Ok(dir) => load_cases_from(&dir, family),
        Err(_) => load_committed_cases(family),
    }
}

/// The cases of the committed `tests/golden/{family}.json`, for tests of named cases that only
/// the committed files hold.
pub fn load_committed_cases(family: &str) -> Vec<Value> {
    load_cases_from(&format!("{}/tests/golden", env!("CARGO_MANIFEST_DIR")), family)
}

fn load_cases_from(dir: &str, family: &str) -> Vec<Value> {
    let path = format!("{dir}/{family}.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    let mut doc: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {path}: {e}"));
    match doc.get_mut("cases").map(Value::take) {
        Some(Value::Array(cases)) => cases,
        _ => panic!("{path}: no \"cases\" array"),
    }
}

/// The devices to test on: the CPU always, the emulator when it starts, a CUDA GPU when one is
/// present. Prints a skip line for each absent device; with `CUPOOL_REQUIRE_GPU=1` a missing GPU
/// is a failure.
pub fn devices() -> Vec<(String, Device)> {
    let mut out = vec![("cpu".to_string(), Device::cpu())];
    match Device::emulated() {
        Ok(d) => out.push(("emulated".to_string(), d)),
        Err(e) => println!("skip: emulated device unavailable: {e}"),
    }
    match Device::cuda(0) {
        Ok(d) => out.push(("cuda:0".to_string(), d)),
        Err(e) => {
            if std::env::var("CUPOOL_REQUIRE_GPU").as_deref() == Ok("1") {
                panic!("CUPOOL_REQUIRE_GPU=1 but no CUDA device: {e}");
            }
            println!("skip: no CUDA device ({e})");
        }
    }
    out
}

/// Only the CPU and the emulator (error tests, formulation agreement).
pub fn host_devices() -> Vec<(String, Device)> {
    devices().into_iter().filter(|(name, _)| !name.starts_with("cuda")).collect()
}

/// Runs `check` on every case of `family` on every device, catching panics, and fails once with
/// every failure listed (case name and device).
pub fn run_family(
    family: &str,
    filter: impl Fn(&Value) -> bool,
    check: impl Fn(&Device, &Value) -> Result<(), String>,
) {
    let cases = load_cases(family);
    let mut failures = Vec::new();
    let mut ran = 0usize;
    for (dev_name, dev) in devices() {
        for case in cases.iter().filter(|c| filter(c)) {
            ran += 1;
            let outcome = catch_unwind(AssertUnwindSafe(|| check(&dev, case)));
            let msg = match outcome {
                Ok(Ok(())) => continue,
                Ok(Err(m)) => m,
                Err(panic) => format!("PANIC: {}", panic_message(&panic)),
            };
            failures.push(format!("[{family}] {} on {dev_name}: {msg}", case_name(case)));
        }
    }
    println!("{family}: {ran} case runs, {} failures", failures.len());
    if !failures.is_empty() {
        let shown: Vec<&str> = failures.iter().take(60).map(String::as_str).collect();
        panic!(
            "{} of {ran} case runs failed:\n{}{}",
            failures.len(),
            shown.join("\n"),
            if failures.len() > 60 { "\n..." } else { "" }
        );
    }
}

pub fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "non-string panic".into())
}

pub fn case_name(case: &Value) -> &str {
    case["name"].as_str().unwrap_or("<unnamed>")
}

// ---------------------------------------------------------------------------------------------
// JSON fields

pub fn usizes(v: &Value) -> Vec<usize> {
    v.as_array().map(|a| a.iter().filter_map(Value::as_u64).map(|x| x as usize).collect()).unwrap_or_default()
}

pub fn isizes(v: &Value) -> Vec<isize> {
    v.as_array().map(|a| a.iter().filter_map(Value::as_i64).map(|x| x as isize).collect()).unwrap_or_default()
}

pub fn pair(v: &Value) -> [usize; 2] {
    let u = usizes(v);
    [u.first().copied().unwrap_or(0), u.get(1).copied().unwrap_or(0)]
}

pub fn avg_spec(p: &Value) -> AvgPool2d {
    let mut spec = AvgPool2d::new(pair(&p["kernel"]))
        .padding(pair(&p["padding"]))
        .ceil_mode(p["ceil_mode"].as_bool().unwrap_or(false))
        .count_include_pad(p["count_include_pad"].as_bool().unwrap_or(true))
        .divisor_override(p["divisor_override"].as_i64());
    if !p["stride"].is_null() {
        spec = spec.stride(pair(&p["stride"]));
    }
    spec
}

pub fn max_spec(p: &Value) -> MaxPool2d {
    let mut spec = MaxPool2d::new(pair(&p["kernel"]))
        .padding(pair(&p["padding"]))
        .dilation(pair(&p["dilation"]))
        .ceil_mode(p["ceil_mode"].as_bool().unwrap_or(false));
    if !p["stride"].is_null() {
        spec = spec.stride(pair(&p["stride"]));
    }
    spec
}

pub fn dtype_of(name: &str) -> Result<DType, String> {
    Ok(match name {
        "f32" => DType::F32,
        "f64" => DType::F64,
        "f16" => DType::F16,
        "bf16" => DType::BF16,
        "i64" => DType::I64,
        other => return Err(format!("unknown dtype {other:?}")),
    })
}

// ---------------------------------------------------------------------------------------------
// decoding

/// An element type the golden files hold.
pub trait GoldenElement: Element {
    const SIZE: usize;
    /// (rtol, atol) for averages, means and gradients (DESIGN.md, "Numerics").
    const TOL: (f64, f64);
    fn from_le(bytes: &[u8]) -> Self;
    fn bits(self) -> u64;
    fn as_f64(self) -> f64;
}

macro_rules! golden_float {
    ($t:ty, $size:expr, $tol:expr, $bits:ty, |$b:ident| $from:expr, |$v:ident| $to:expr) => {
        impl GoldenElement for $t {
            const SIZE: usize = $size;
            const TOL: (f64, f64) = $tol;
            fn from_le($b: &[u8]) -> Self {
                $from
            }
            fn bits(self) -> u64 {
                let $v = self;
                $to as u64
            }
            fn as_f64(self) -> f64 {
                self.to_f64()
            }
        }
    };
}

golden_float!(f32, 4, (1e-5, 1e-6), u32, |b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]), |v| v.to_bits());
golden_float!(f64, 8, (1e-12, 1e-12), u64, |b| f64::from_le_bytes(b.try_into().unwrap_or([0; 8])), |v| v
    .to_bits());
golden_float!(f16, 2, (1e-3, 1e-3), u16, |b| f16::from_bits(u16::from_le_bytes([b[0], b[1]])), |v| v
    .to_bits());
golden_float!(bf16, 2, (8e-3, 8e-3), u16, |b| bf16::from_bits(u16::from_le_bytes([b[0], b[1]])), |v| v
    .to_bits());
golden_float!(i64, 8, (0.0, 0.0), u64, |b| i64::from_le_bytes(b.try_into().unwrap_or([0; 8])), |v| v);

fn hex_bytes(hex: &str) -> Result<Vec<u8>, String> {
    if !hex.len().is_multiple_of(2) {
        return Err("odd hex length".into());
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).map_err(|e| format!("bad hex: {e}")))
        .collect()
}

/// Decodes `data` (hex of little-endian elements, row-major) into an array of `shape`.
pub fn decode<T: GoldenElement>(shape: &[usize], hex: &str) -> Result<ArrayD<T>, String> {
    let bytes = hex_bytes(hex)?;
    let n: usize = shape.iter().product();
    if bytes.len() != n * T::SIZE {
        return Err(format!("golden data has {} bytes, shape {shape:?} needs {}", bytes.len(), n * T::SIZE));
    }
    let data: Vec<T> = bytes.chunks_exact(T::SIZE).map(T::from_le).collect();
    ArrayD::from_shape_vec(IxDyn(shape), data).map_err(|e| e.to_string())
}

/// A tensor record (`input`, `grad_out`) on `dev`, channels-last when the record says so.
pub fn tensor(dev: &Device, rec: &Value) -> Result<CudaTensor, String> {
    let shape = usizes(&rec["shape"]);
    let hex = rec["data"].as_str().ok_or("record has no data")?;
    let t = match rec["dtype"].as_str().unwrap_or("") {
        "f32" => CudaTensor::from_array(dev, &decode::<f32>(&shape, hex)?),
        "f64" => CudaTensor::from_array(dev, &decode::<f64>(&shape, hex)?),
        "f16" => CudaTensor::from_array(dev, &decode::<f16>(&shape, hex)?),
        "bf16" => CudaTensor::from_array(dev, &decode::<bf16>(&shape, hex)?),
        "i64" => CudaTensor::from_array(dev, &decode::<i64>(&shape, hex)?),
        other => return Err(format!("unknown dtype {other:?}")),
    }
    .map_err(|e| format!("from_array: {e}"))?;
    layout(t, rec["channels_last"].as_bool().unwrap_or(false))
}

/// The torch indices of a case as an I64 tensor, laid out like `like_channels_last` says.
pub fn indices_tensor(dev: &Device, rec: &Value, channels_last: bool) -> Result<CudaTensor, String> {
    let shape = usizes(&rec["shape"]);
    let hex = rec["data"].as_str().ok_or("indices have no data")?;
    let t = CudaTensor::from_array(dev, &decode::<i64>(&shape, hex)?)
        .map_err(|e| format!("from_array(i64): {e}"))?;
    layout(t, channels_last && shape.len() == 4)
}

/// A zero-filled tensor of `shape` and `dtype` (error cases need shapes, not values).
pub fn zeros(dev: &Device, shape: &[usize], dtype: &str, channels_last: bool) -> Result<CudaTensor, String> {
    let sh = IxDyn(shape);
    let t = match dtype {
        "f32" => CudaTensor::from_array(dev, &ArrayD::<f32>::zeros(sh)),
        "f64" => CudaTensor::from_array(dev, &ArrayD::<f64>::zeros(sh)),
        "f16" => CudaTensor::from_array(dev, &ArrayD::<f16>::from_elem(sh, f16::ZERO)),
        "bf16" => CudaTensor::from_array(dev, &ArrayD::<bf16>::from_elem(sh, bf16::ZERO)),
        "i64" => CudaTensor::from_array(dev, &ArrayD::<i64>::zeros(sh)),
        other => return Err(format!("unknown dtype {other:?}")),
    }
    .map_err(|e| format!("from_array: {e}"))?;
    layout(t, channels_last && shape.len() == 4)
}

fn layout(t: CudaTensor, channels_last: bool) -> Result<CudaTensor, String> {
    if channels_last {
        t.to_channels_last().map_err(|e| format!("to_channels_last: {e}"))
    } else {
        Ok(t)
    }
}

// ---------------------------------------------------------------------------------------------
// comparison

/// How a result is compared with torch's.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Match {
    /// Bit for bit (max pooling values, indices); NaN only needs to be NaN.
    Exact,
    /// |ours - torch| <= atol + rtol*|torch| with the dtype's tolerance; NaN where torch has NaN.
    Tolerance,
}

/// Compares `ours` with the expected record: shape, dtype, layout (4-D), then every element.
pub fn compare(ours: &CudaTensor, expected: &Value, how: Match) -> Result<(), String> {
    compare_as(ours, expected, how, None)
}

/// As [`compare`], with the expected data read under another shape of the same size (the
/// (N, C, 1, 1) results of a GAP formulation against `global_avg_pool`'s (N, C)).
pub fn compare_as(
    ours: &CudaTensor,
    expected: &Value,
    how: Match,
    shape: Option<&[usize]>,
) -> Result<(), String> {
    let exp_shape = usizes(&expected["shape"]);
    let want_shape: Vec<usize> = shape.map(<[usize]>::to_vec).unwrap_or_else(|| exp_shape.clone());
    if ours.shape() != want_shape.as_slice() {
        return Err(format!("shape {:?}, torch {:?}", ours.shape(), want_shape));
    }
    let dtype = expected["dtype"].as_str().unwrap_or("i64");
    let want_dtype = dtype_of(dtype)?;
    if ours.dtype() != want_dtype {
        return Err(format!("dtype {:?}, torch {:?}", ours.dtype(), want_dtype));
    }
    if shape.is_none() && want_shape.len() == 4 {
        if let Some(cl) = expected["channels_last"].as_bool() {
            if ours.is_channels_last() != cl {
                return Err(format!(
                    "is_channels_last() = {}, torch {cl} (strides {:?})",
                    ours.is_channels_last(),
                    ours.strides()
                ));
            }
        }
    }
    let hex = expected["data"].as_str().ok_or("expected has no data")?;
    match want_dtype {
        DType::F32 => compare_values::<f32>(ours, &exp_shape, &want_shape, hex, how),
        DType::F64 => compare_values::<f64>(ours, &exp_shape, &want_shape, hex, how),
        DType::F16 => compare_values::<f16>(ours, &exp_shape, &want_shape, hex, how),
        DType::BF16 => compare_values::<bf16>(ours, &exp_shape, &want_shape, hex, how),
        DType::I64 => compare_values::<i64>(ours, &exp_shape, &want_shape, hex, Match::Exact),
    }
}

/// Compares `ours` with the torch indices of a case (shape, layout, every index).
pub fn compare_indices(ours: &CudaTensor, rec: &Value) -> Result<(), String> {
    let mut expected = rec.clone();
    expected["dtype"] = Value::from("i64");
    compare(ours, &expected, Match::Exact).map_err(|e| format!("indices: {e}"))
}

fn compare_values<T: GoldenElement>(
    ours: &CudaTensor,
    exp_shape: &[usize],
    shape: &[usize],
    hex: &str,
    how: Match,
) -> Result<(), String> {
    let want = decode::<T>(exp_shape, hex)?;
    let got = ours.to_array::<T>().map_err(|e| format!("to_array: {e}"))?;
    let (rtol, atol) = T::TOL;
    let mut bad = Vec::new();
    let mut n_bad = 0usize;
    for (i, (g, w)) in got.iter().zip(want.iter()).enumerate() {
        let (gf, wf) = (g.as_f64(), w.as_f64());
        let ok = if wf.is_nan() || gf.is_nan() {
            wf.is_nan() && gf.is_nan()
        } else {
            match how {
                Match::Exact => g.bits() == w.bits(),
                Match::Tolerance => gf == wf || (gf - wf).abs() <= atol + rtol * wf.abs(),
            }
        };
        if !ok {
            n_bad += 1;
            if bad.len() < 5 {
                bad.push(format!("[{}] ours {gf:?} torch {wf:?}", flat_to_index(i, shape)));
            }
        }
    }
    if n_bad > 0 {
        return Err(format!("{n_bad} of {} elements differ ({how:?}): {}", want.len(), bad.join(", ")));
    }
    Ok(())
}

fn flat_to_index(mut i: usize, shape: &[usize]) -> String {
    let mut idx = vec![0; shape.len()];
    for (d, &s) in shape.iter().enumerate().rev() {
        if s > 0 {
            idx[d] = i % s;
            i /= s;
        }
    }
    format!("{idx:?}")
}
