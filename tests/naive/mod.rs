//! A naive, obviously-correct reference for every cupool op, written straight from PyTorch's
//! formulas (shared/reference/pytorch-semantics.md §1-4 and §6) as plain f64 loops over logical
//! (N, C, H, W) arrays.
//!
//! It deliberately shares no code with cupool's own semantics (`cupool::ops`): windows are
//! enumerated tap by tap in padded coordinates rather than clipped with min/max, so a property
//! test that compares the two can catch a bug in either formulation.
//!
//! The `harness` module below (device upload/download, tolerances, strategies) is test plumbing
//! shared by `tests/properties.rs` and `tests/backward_properties.rs`.

// Each test binary that includes this module uses a different subset of it.
#![allow(dead_code)]

use ndarray::{Array4, ArrayD, Dimension, IxDyn};

/// The options of `avg_pool2d` / `max_pool2d`, in PyTorch's terms. Average pooling ignores
/// `dilation` (it is always 1 there); max pooling ignores the divisor options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub kernel: [usize; 2],
    /// `None` means stride = kernel.
    pub stride: Option<[usize; 2]>,
    pub padding: [usize; 2],
    pub dilation: [usize; 2],
    pub ceil_mode: bool,
    pub count_include_pad: bool,
    pub divisor_override: Option<i64>,
}

impl Window {
    pub fn stride(&self) -> [usize; 2] {
        self.stride.unwrap_or(self.kernel)
    }

    /// Output (out_h, out_w) for an (h, w) plane; `None` where PyTorch would reject the call.
    pub fn output_size(&self, h: usize, w: usize) -> Option<[usize; 2]> {
        let s = self.stride();
        let oh =
            pooling_output_size(h, self.kernel[0], self.padding[0], s[0], self.dilation[0], self.ceil_mode)?;
        let ow =
            pooling_output_size(w, self.kernel[1], self.padding[1], s[1], self.dilation[1], self.ceil_mode)?;
        Some([oh, ow])
    }
}

/// Floor division for any signs (ATen's `div_rtn`).
fn floor_div(a: i64, b: i64) -> i64 {
    let q = a / b;
    if a % b != 0 && ((a < 0) != (b < 0)) {
        q - 1
    } else {
        q
    }
}

/// PyTorch's `pooling_output_shape` for one axis (Pool.h), with its checks; `None` where PyTorch
/// raises or the output would be empty.
pub fn pooling_output_size(
    input: usize,
    kernel: usize,
    pad: usize,
    stride: usize,
    dilation: usize,
    ceil_mode: bool,
) -> Option<usize> {
    let (i, k, p, s, d) = (input as i64, kernel as i64, pad as i64, stride as i64, dilation as i64);
    if k < 1 || s < 1 || d < 1 || p > ((k - 1) * d + 1) / 2 {
        return None;
    }
    let mut o = floor_div(i + 2 * p - d * (k - 1) - 1 + if ceil_mode { s - 1 } else { 0 }, s) + 1;
    // ceil mode: the last window must start inside the input or the left padding.
    if ceil_mode && (o - 1) * s >= i + p {
        o -= 1;
    }
    (o >= 1).then_some(o as usize)
}

/// The taps of one average window along an axis, in padded coordinates: every position
/// `o*s - pad + t` for `t in 0..k`. Returns (in-bounds positions, pool size), where the pool size
/// counts every tap that lies inside `[-pad, size + pad)`: padding counts, ceil-mode overhang
/// past the right padding does not.
fn avg_axis_taps(o: usize, stride: usize, pad: usize, kernel: usize, size: usize) -> (Vec<usize>, i64) {
    let mut inside = Vec::new();
    let mut pool = 0;
    for t in 0..kernel as i64 {
        let pos = (o * stride) as i64 - pad as i64 + t;
        if pos < (size + pad) as i64 {
            pool += 1;
        }
        if pos >= 0 && pos < size as i64 {
            inside.push(pos as usize);
        }
    }
    (inside, pool)
}

/// The in-bounds taps of one max window along an axis, in scan order: `o*s - pad + t*d`.
fn max_axis_taps(
    o: usize,
    stride: usize,
    pad: usize,
    kernel: usize,
    dilation: usize,
    size: usize,
) -> Vec<usize> {
    (0..kernel as i64)
        .map(|t| (o * stride) as i64 - pad as i64 + t * dilation as i64)
        .filter(|&pos| pos >= 0 && pos < size as i64)
        .map(|pos| pos as usize)
        .collect()
}

/// One average window: its in-bounds taps along H and W and its divisor.
struct AvgTaps {
    rows: Vec<usize>,
    cols: Vec<usize>,
    divisor: f64,
}

fn avg_taps(p: &Window, oh: usize, ow: usize, h: usize, w: usize) -> AvgTaps {
    let s = p.stride();
    let (rows, pool_h) = avg_axis_taps(oh, s[0], p.padding[0], p.kernel[0], h);
    let (cols, pool_w) = avg_axis_taps(ow, s[1], p.padding[1], p.kernel[1], w);
    let divisor = match p.divisor_override {
        Some(d) => d as f64,
        None if p.count_include_pad => (pool_h * pool_w) as f64,
        None => (rows.len() * cols.len()) as f64,
    };
    AvgTaps { rows, cols, divisor }
}

/// `avg_pool2d` (§1). Panics on arguments PyTorch rejects: the properties only generate valid ones.
pub fn avg_pool2d(x: &Array4<f64>, p: &Window) -> Array4<f64> {
    let (n, c, h, w) = x.dim();
    let [out_h, out_w] = p.output_size(h, w).expect("valid avg_pool2d arguments");
    Array4::from_shape_fn((n, c, out_h, out_w), |(b, ch, oh, ow)| {
        let taps = avg_taps(p, oh, ow, h, w);
        if taps.rows.is_empty() || taps.cols.is_empty() {
            return 0.0; // PyTorch's guard for a window with no input (PR #41368).
        }
        let mut sum = 0.0;
        for &ih in &taps.rows {
            for &iw in &taps.cols {
                sum += x[[b, ch, ih, iw]];
            }
        }
        sum / taps.divisor
    })
}

/// `max_pool2d_with_indices` (§2): values and `h*W + w` indices within the plane.
pub fn max_pool2d(x: &Array4<f64>, p: &Window) -> (Array4<f64>, Array4<i64>) {
    let (n, c, h, w) = x.dim();
    let [out_h, out_w] = p.output_size(h, w).expect("valid max_pool2d arguments");
    let s = p.stride();
    let mut values = Array4::zeros((n, c, out_h, out_w));
    let mut indices = Array4::zeros((n, c, out_h, out_w));
    for b in 0..n {
        for ch in 0..c {
            for oh in 0..out_h {
                let rows = max_axis_taps(oh, s[0], p.padding[0], p.kernel[0], p.dilation[0], h);
                for ow in 0..out_w {
                    let cols = max_axis_taps(ow, s[1], p.padding[1], p.kernel[1], p.dilation[1], w);
                    let (v, i) = scan_max(x, b, ch, &rows, &cols, w);
                    values[[b, ch, oh, ow]] = v;
                    indices[[b, ch, oh, ow]] = i;
                }
            }
        }
    }
    (values, indices)
}

/// PyTorch's max scan: start at -inf with the first in-bounds tap's index; take a value when
/// `v > max || isnan(v)` (so ties keep the first maximum, and the last NaN wins).
fn scan_max(x: &Array4<f64>, b: usize, ch: usize, rows: &[usize], cols: &[usize], w: usize) -> (f64, i64) {
    let mut max = f64::NEG_INFINITY;
    let mut index = (rows[0] * w + cols[0]) as i64;
    for &ih in rows {
        for &iw in cols {
            let v = x[[b, ch, ih, iw]];
            if v > max || v.is_nan() {
                max = v;
                index = (ih * w + iw) as i64;
            }
        }
    }
    (max, index)
}

/// Adaptive window `[floor(o*I/O), ceil((o+1)*I/O))` (§3), in plain integer arithmetic.
pub fn adaptive_range(o: usize, output: usize, input: usize) -> std::ops::Range<usize> {
    let start = (o * input) / output;
    let end = ((o + 1) * input).div_ceil(output);
    start..end
}

/// `adaptive_avg_pool2d` (§3).
pub fn adaptive_avg_pool2d(x: &Array4<f64>, out: [usize; 2]) -> Array4<f64> {
    let (n, c, h, w) = x.dim();
    Array4::from_shape_fn((n, c, out[0], out[1]), |(b, ch, oh, ow)| {
        let rows = adaptive_range(oh, out[0], h);
        let cols = adaptive_range(ow, out[1], w);
        let count = (rows.len() * cols.len()) as f64;
        let mut sum = 0.0;
        for ih in rows {
            for iw in cols.clone() {
                sum += x[[b, ch, ih, iw]];
            }
        }
        sum / count
    })
}

/// `adaptive_max_pool2d` with indices (§3).
pub fn adaptive_max_pool2d(x: &Array4<f64>, out: [usize; 2]) -> (Array4<f64>, Array4<i64>) {
    let (n, c, h, w) = x.dim();
    let mut values = Array4::zeros((n, c, out[0], out[1]));
    let mut indices = Array4::zeros((n, c, out[0], out[1]));
    for b in 0..n {
        for ch in 0..c {
            for oh in 0..out[0] {
                let rows: Vec<usize> = adaptive_range(oh, out[0], h).collect();
                for ow in 0..out[1] {
                    let cols: Vec<usize> = adaptive_range(ow, out[1], w).collect();
                    let (v, i) = scan_max(x, b, ch, &rows, &cols, w);
                    values[[b, ch, oh, ow]] = v;
                    indices[[b, ch, oh, ow]] = i;
                }
            }
        }
    }
    (values, indices)
}

/// PyTorch's dim list: negative dims count from the end; an empty list means every dim.
/// Returns a mask over the input's dims. Panics on bad dims (the properties only make valid ones).
pub fn reduced_mask(dims: &[isize], rank: usize) -> Vec<bool> {
    if dims.is_empty() {
        return vec![true; rank];
    }
    let mut mask = vec![false; rank];
    for &d in dims {
        let i = if d < 0 { d + rank as isize } else { d };
        assert!((0..rank as isize).contains(&i), "dim {d} out of range for rank {rank}");
        assert!(!mask[i as usize], "dim {d} repeated");
        mask[i as usize] = true;
    }
    mask
}

/// The output shape of a reduction, and the output index of every input index.
fn reduced_shape(shape: &[usize], mask: &[bool], keepdim: bool) -> Vec<usize> {
    shape
        .iter()
        .zip(mask)
        .filter_map(|(&s, &r)| match (r, keepdim) {
            (false, _) => Some(s),
            (true, true) => Some(1),
            (true, false) => None,
        })
        .collect()
}

fn project(index: &[usize], mask: &[bool], keepdim: bool) -> Vec<usize> {
    index
        .iter()
        .zip(mask)
        .filter_map(|(&i, &r)| match (r, keepdim) {
            (false, _) => Some(i),
            (true, true) => Some(0),
            (true, false) => None,
        })
        .collect()
}

/// `torch.sum(x, dims, keepdim)` (§4).
pub fn sum(x: &ArrayD<f64>, dims: &[isize], keepdim: bool) -> ArrayD<f64> {
    let mask = reduced_mask(dims, x.ndim());
    let mut out = ArrayD::zeros(IxDyn(&reduced_shape(x.shape(), &mask, keepdim)));
    for (index, &v) in x.indexed_iter() {
        out[IxDyn(&project(index.slice(), &mask, keepdim))] += v;
    }
    out
}

/// The number of elements each output of a reduction over `dims` sums.
pub fn reduced_count(shape: &[usize], dims: &[isize]) -> usize {
    let mask = reduced_mask(dims, shape.len());
    shape.iter().zip(&mask).filter(|(_, &r)| r).map(|(&s, _)| s).product()
}

/// `torch.mean(x, dims, keepdim)` (§4): the sum divided by the reduced count.
pub fn mean(x: &ArrayD<f64>, dims: &[isize], keepdim: bool) -> ArrayD<f64> {
    let count = reduced_count(x.shape(), dims) as f64;
    sum(x, dims, keepdim).mapv(|s| s / count)
}

/// `avg_pool2d_backward` (§6): every output scatters `g / divisor` over its in-bounds taps.
pub fn avg_pool2d_backward(x_dim: (usize, usize, usize, usize), g: &Array4<f64>, p: &Window) -> Array4<f64> {
    let (_, _, h, w) = x_dim;
    let mut grad = Array4::zeros(x_dim);
    for ((b, ch, oh, ow), &go) in g.indexed_iter() {
        let taps = avg_taps(p, oh, ow, h, w);
        for &ih in &taps.rows {
            for &iw in &taps.cols {
                grad[[b, ch, ih, iw]] += go / taps.divisor;
            }
        }
    }
    grad
}

/// `max_pool2d_backward` and `adaptive_max_pool2d_backward` (§6): each output adds its gradient
/// at its index `h*W + w` in the plane.
pub fn max_backward(
    x_dim: (usize, usize, usize, usize),
    g: &Array4<f64>,
    indices: &Array4<i64>,
) -> Array4<f64> {
    let (_, _, _, w) = x_dim;
    let mut grad = Array4::zeros(x_dim);
    for ((b, ch, oh, ow), &go) in g.indexed_iter() {
        let i = indices[[b, ch, oh, ow]] as usize;
        grad[[b, ch, i / w, i % w]] += go;
    }
    grad
}

/// `adaptive_avg_pool2d_backward` (§6): every output scatters `g / (kh*kw)` over its window.
pub fn adaptive_avg_pool2d_backward(x_dim: (usize, usize, usize, usize), g: &Array4<f64>) -> Array4<f64> {
    let (_, _, h, w) = x_dim;
    let (_, _, out_h, out_w) = g.dim();
    let mut grad = Array4::zeros(x_dim);
    for ((b, ch, oh, ow), &go) in g.indexed_iter() {
        let rows = adaptive_range(oh, out_h, h);
        let cols = adaptive_range(ow, out_w, w);
        let count = (rows.len() * cols.len()) as f64;
        for ih in rows {
            for iw in cols.clone() {
                grad[[b, ch, ih, iw]] += go / count;
            }
        }
    }
    grad
}

/// `mean_backward`: every input gets its output's gradient divided by the reduced count.
pub fn mean_backward(x_shape: &[usize], g: &ArrayD<f64>, dims: &[isize], keepdim: bool) -> ArrayD<f64> {
    let mask = reduced_mask(dims, x_shape.len());
    let count = reduced_count(x_shape, dims) as f64;
    ArrayD::from_shape_fn(IxDyn(x_shape), |index| g[IxDyn(&project(index.slice(), &mask, keepdim))] / count)
}

/// `d/dt <g, f(x + t v)>` at t = 0 by central differences: for the linear ops (avg, adaptive avg,
/// mean) it equals `<backward(g), v>` up to rounding, for any step.
pub fn directional_derivative(
    f: impl Fn(&ArrayD<f64>) -> ArrayD<f64>,
    x: &ArrayD<f64>,
    v: &ArrayD<f64>,
    g: &ArrayD<f64>,
    step: f64,
) -> f64 {
    let plus = f(&(x + &(v * step)));
    let minus = f(&(x - &(v * step)));
    let dot = |y: &ArrayD<f64>| y.iter().zip(g.iter()).map(|(a, b)| a * b).sum::<f64>();
    (dot(&plus) - dot(&minus)) / (2.0 * step)
}

/// `<a, b>` over all elements.
pub fn dot(a: &ArrayD<f64>, b: &ArrayD<f64>) -> f64 {
    assert_eq!(a.shape(), b.shape());
    a.iter().zip(b.iter()).map(|(x, y)| x * y).sum()
}

/// Test plumbing: dtypes, device round trips, tolerances and case generators.
pub mod harness {
    use cupool::{CudaTensor, DType, Device};
    use half::{bf16, f16};
    use ndarray::{Array4, ArrayD, Dimension, Ix4, IxDyn};
    use proptest::prelude::*;
    use proptest::test_runner::TestCaseError;

    use super::Window;

    pub type CaseResult = Result<(), TestCaseError>;

    /// Turns a cupool error into a failed case that says which call failed.
    pub fn ok<T>(what: &str, r: cupool::Result<T>) -> Result<T, TestCaseError> {
        r.map_err(|e| TestCaseError::fail(format!("{what}: {e}")))
    }

    /// The number of cases per property: `default`, or `PROPTEST_CASES` where it is set (an
    /// explicit `with_cases` would otherwise ignore the variable).
    pub fn cases(default: u32) -> u32 {
        std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(default)
    }

    /// The devices the properties run on.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Dev {
        Cpu,
        Emulated,
    }

    pub fn device(dev: Dev) -> Device {
        match dev {
            Dev::Cpu => Device::cpu(),
            Dev::Emulated => {
                Device::emulated().expect("the emulator is built for tests (feature `emulator`)")
            }
        }
    }

    pub const FLOAT_DTYPES: [DType; 4] = [DType::F32, DType::F64, DType::F16, DType::BF16];

    pub fn dtype_strategy() -> impl Strategy<Value = DType> {
        prop::sample::select(FLOAT_DTYPES.to_vec())
    }

    /// `v` rounded (to nearest even) to `dtype`, back in f64.
    pub fn round_to(dtype: DType, v: f64) -> f64 {
        match dtype {
            DType::F32 => v as f32 as f64,
            DType::F64 => v,
            DType::F16 => f16::from_f64(v).to_f64(),
            DType::BF16 => bf16::from_f64(v).to_f64(),
            DType::I64 => v.round(),
        }
    }

    /// (rtol, atol) of DESIGN.md "Numerics".
    pub fn tolerance(dtype: DType) -> (f64, f64) {
        match dtype {
            DType::F64 => (1e-12, 1e-12),
            DType::F32 => (1e-5, 1e-6),
            DType::F16 => (1e-3, 1e-3),
            DType::BF16 => (8e-3, 8e-3),
            DType::I64 => (0.0, 0.0),
        }
    }

    /// Unit roundoff of the accumulator: f32 for f16/bf16/f32, f64 for f64.
    pub fn acc_unit_roundoff(dtype: DType) -> f64 {
        match dtype {
            DType::F64 => f64::EPSILON / 2.0,
            _ => f32::EPSILON as f64 / 2.0,
        }
    }

    /// Uploads logical values (already representable in `dtype`) as a tensor of `dtype`.
    pub fn upload(dev: &Device, dtype: DType, x: &ArrayD<f64>) -> Result<CudaTensor, TestCaseError> {
        let t = match dtype {
            DType::F32 => CudaTensor::from_array(dev, &x.mapv(|v| v as f32)),
            DType::F64 => CudaTensor::from_array(dev, x),
            DType::F16 => CudaTensor::from_array(dev, &x.mapv(f16::from_f64)),
            DType::BF16 => CudaTensor::from_array(dev, &x.mapv(bf16::from_f64)),
            DType::I64 => return Err(TestCaseError::fail("upload: i64 is not a data dtype")),
        };
        ok("from_array", t)
    }

    /// Reads a float tensor back as logical f64 values.
    pub fn download(t: &CudaTensor) -> Result<ArrayD<f64>, TestCaseError> {
        Ok(match t.dtype() {
            DType::F32 => ok("to_array", t.to_array::<f32>())?.mapv(|v| v as f64),
            DType::F64 => ok("to_array", t.to_array::<f64>())?,
            DType::F16 => ok("to_array", t.to_array::<f16>())?.mapv(|v| v.to_f64()),
            DType::BF16 => ok("to_array", t.to_array::<bf16>())?.mapv(|v| v.to_f64()),
            DType::I64 => return Err(TestCaseError::fail("download: expected a float tensor, got i64")),
        })
    }

    /// Reads an index tensor back.
    pub fn download_indices(t: &CudaTensor) -> Result<ArrayD<i64>, TestCaseError> {
        prop_assert_eq!(t.dtype(), DType::I64, "indices dtype");
        ok("to_array::<i64>", t.to_array::<i64>())
    }

    pub fn to4<T: Clone>(a: ArrayD<T>) -> Array4<T> {
        a.into_dimensionality::<Ix4>().expect("a 4-D array")
    }

    /// The (N, C, H, W) view of a 3-D (C, H, W) or 4-D result.
    pub fn as4<T: Clone>(a: &ArrayD<T>) -> Array4<T> {
        let s = a.shape();
        let shape4 = if s.len() == 3 { vec![1, s[0], s[1], s[2]] } else { s.to_vec() };
        to4(a.to_shape(IxDyn(&shape4)).expect("reshape to 4-D").to_owned())
    }

    /// `case`'s input uploaded in every layout the case allows, each with its name: NCHW always,
    /// and channels-last for 4-D input.
    pub fn in_layouts(
        dev: Dev,
        dtype: DType,
        shape: &[usize],
        values: &[f64],
    ) -> Result<Vec<(&'static str, CudaTensor)>, TestCaseError> {
        let device = device(dev);
        let x = ArrayD::from_shape_vec(shape.to_vec(), values.to_vec()).expect("shape matches values");
        let nchw = upload(&device, dtype, &x)?;
        let mut inputs = Vec::new();
        if shape.len() == 4 {
            let nhwc = ok("to_channels_last", nchw.to_channels_last())?;
            prop_assert!(nhwc.is_channels_last(), "to_channels_last gives a channels-last tensor");
            inputs.push(("nhwc", nhwc));
        }
        inputs.insert(0, ("nchw", nchw));
        Ok(inputs)
    }

    /// Uploads `values` (logical shape `shape`) in the same memory layout as `like`.
    pub fn upload_like(
        like: &CudaTensor,
        dtype: DType,
        x: &ArrayD<f64>,
    ) -> Result<CudaTensor, TestCaseError> {
        let t = upload(like.device(), dtype, x)?;
        if like.rank() == 4 && like.is_channels_last() && !like.is_contiguous() {
            ok("to_channels_last", t.to_channels_last())
        } else {
            Ok(t)
        }
    }

    /// An op's output keeps its input's layout (PyTorch's `suggest_memory_format`).
    pub fn check_layout(what: &str, input: &CudaTensor, output: &CudaTensor) -> CaseResult {
        // Where the input's memory is both (C = 1, or H = W = 1), either layout is right.
        match (input.is_contiguous(), input.rank() == 4 && input.is_channels_last()) {
            (true, false) => prop_assert!(output.is_contiguous(), "{}: contiguous in, contiguous out", what),
            (false, true) => {
                prop_assert!(output.is_channels_last(), "{}: channels-last in, channels-last out", what)
            }
            _ => {}
        }
        Ok(())
    }

    /// The 4-D tensor with N = 1 holding a 3-D (C, H, W) case's input.
    pub fn as_batch_of_one(
        dev: Dev,
        dtype: DType,
        shape: &[usize],
        values: &[f64],
    ) -> Result<CudaTensor, TestCaseError> {
        let mut shape4 = vec![1];
        shape4.extend_from_slice(shape);
        let x = ArrayD::from_shape_vec(shape4, values.to_vec()).expect("shape matches values");
        upload(&device(dev), dtype, &x)
    }

    /// Checks `got` against the f64 reference `want`, rounded to `dtype`:
    /// `|got - round(want)| <= atol + rtol*|want| + terms*u_acc*want_abs`, where `want_abs` is the
    /// same op applied to |x| (the standard bound on summing `terms` values in the accumulator,
    /// which only matters where the result cancels). NaN and infinities must match exactly.
    pub fn assert_close(
        what: &str,
        got: &ArrayD<f64>,
        want: &ArrayD<f64>,
        want_abs: &ArrayD<f64>,
        dtype: DType,
        terms: usize,
    ) -> CaseResult {
        prop_assert_eq!(got.shape(), want.shape(), "{}: shape", what);
        let (rtol, atol) = tolerance(dtype);
        let gamma = terms as f64 * acc_unit_roundoff(dtype);
        for (((index, &g), &w), &wa) in got.indexed_iter().zip(want.iter()).zip(want_abs.iter()) {
            let rounded = round_to(dtype, w);
            if rounded.is_nan() || !rounded.is_finite() {
                prop_assert!(
                    g.to_bits() == rounded.to_bits() || (g.is_nan() && rounded.is_nan()),
                    "{}: at {:?} got {} want {}",
                    what,
                    index.slice(),
                    g,
                    rounded
                );
                continue;
            }
            let allowed = atol + rtol * w.abs() + gamma * wa.abs();
            prop_assert!(
                (g - rounded).abs() <= allowed,
                "{}: at {:?} got {} want {} (exact {}), |diff| {:e} > {:e}",
                what,
                index.slice(),
                g,
                rounded,
                w,
                (g - rounded).abs(),
                allowed
            );
        }
        Ok(())
    }

    /// Bit-for-bit equality of values (any NaN equals any NaN).
    pub fn assert_same_bits(what: &str, got: &ArrayD<f64>, want: &ArrayD<f64>) -> CaseResult {
        prop_assert_eq!(got.shape(), want.shape(), "{}: shape", what);
        for ((index, &g), &w) in got.indexed_iter().zip(want.iter()) {
            prop_assert!(
                g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()),
                "{}: at {:?} got {} want {}",
                what,
                index.slice(),
                g,
                w
            );
        }
        Ok(())
    }

    /// How a case's values are drawn.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Values {
        /// Multiples of 1/8 in [-8, 8]: exact in every dtype, sums exact in f32, so only the final
        /// division rounds; half of the average cases.
        Grid,
        /// Uniform in [-4, 4] (then rounded to the dtype).
        Continuous,
        /// Small integers in [-3, 3]: many ties, for max pooling.
        Ties,
        /// Small integers with occasional NaN, -inf and +inf, for max pooling.
        Specials,
    }

    pub fn value_strategy(kind: Values) -> BoxedStrategy<f64> {
        match kind {
            Values::Grid => (-64i32..=64).prop_map(|k| k as f64 / 8.0).boxed(),
            Values::Continuous => (-4.0f64..4.0).boxed(),
            Values::Ties => (-3i32..=3).prop_map(f64::from).boxed(),
            Values::Specials => prop_oneof![
                24 => (-3i32..=3).prop_map(f64::from),
                2 => Just(f64::NAN),
                2 => Just(f64::NEG_INFINITY),
                1 => Just(f64::INFINITY),
            ]
            .boxed(),
        }
    }

    /// `len` values of a randomly chosen kind among `kinds`, rounded to `dtype`.
    pub fn values_strategy(kinds: &[Values], dtype: DType, len: usize) -> BoxedStrategy<Vec<f64>> {
        prop::sample::select(kinds.to_vec())
            .prop_flat_map(move |kind| prop::collection::vec(value_strategy(kind), len))
            .prop_map(move |v| v.into_iter().map(|x| round_to(dtype, x)).collect())
            .boxed()
    }

    /// A windowed-pooling case: shape, options, dtype and input values.
    #[derive(Debug, Clone)]
    pub struct WindowCase {
        /// (N, C, H, W); `three_d` cases have N = 1 and are passed as (C, H, W).
        pub shape: [usize; 4],
        pub three_d: bool,
        pub window: Window,
        pub dtype: DType,
        pub values: Vec<f64>,
    }

    impl WindowCase {
        pub fn input(&self) -> Array4<f64> {
            Array4::from_shape_vec(self.shape, self.values.clone()).expect("shape matches values")
        }
        /// The shape the input is uploaded with.
        pub fn upload_shape(&self) -> Vec<usize> {
            let [n, c, h, w] = self.shape;
            if self.three_d {
                vec![c, h, w]
            } else {
                vec![n, c, h, w]
            }
        }
        pub fn avg_spec(&self) -> cupool::AvgPool2d {
            let p = &self.window;
            let mut spec = cupool::AvgPool2d::new(p.kernel)
                .padding(p.padding)
                .ceil_mode(p.ceil_mode)
                .count_include_pad(p.count_include_pad)
                .divisor_override(p.divisor_override);
            if let Some(s) = p.stride {
                spec = spec.stride(s);
            }
            spec
        }
        pub fn max_spec(&self) -> cupool::MaxPool2d {
            let p = &self.window;
            let mut spec = cupool::MaxPool2d::new(p.kernel)
                .padding(p.padding)
                .dilation(p.dilation)
                .ceil_mode(p.ceil_mode);
            if let Some(s) = p.stride {
                spec = spec.stride(s);
            }
            spec
        }
    }

    /// (kernel, dilation, padding) along an axis of `size`, always valid: the effective kernel
    /// `(k-1)*d + 1` fits in the input and the padding is at most half of the kernel. The whole axis as
    /// kernel is drawn often, so global windows (the GAP dispatch) are covered.
    fn axis_strategy(size: usize, max_dilation: usize) -> BoxedStrategy<(usize, usize, usize)> {
        (1..=max_dilation)
            .prop_flat_map(move |d| {
                let kmax = (size - 1) / d + 1;
                (Just(d), prop_oneof![3 => 1..=kmax, 1 => Just(kmax)])
            })
            // PyTorch's max_pool2d checks `pad <= kernel / 2` on the kernel itself (before the
            // effective-kernel check of `pooling_output_shape`), so that is the valid range.
            .prop_flat_map(|(d, k)| (Just(k), Just(d), prop_oneof![1 => Just(0), 1 => 0..=k / 2]))
            .boxed()
    }

    /// Valid windowed-pooling cases on small shapes. `max` draws dilation 1..=2; average pooling
    /// keeps dilation 1 and draws the divisor options.
    pub fn window_case(max: bool, kinds: &'static [Values]) -> impl Strategy<Value = WindowCase> {
        let max_dilation = if max { 2 } else { 1 };
        (1..=2usize, 1..=5usize, 1..=12usize, 1..=12usize, any::<bool>(), dtype_strategy())
            .prop_flat_map(move |(n, c, h, w, three_d, dtype)| {
                let stride = prop_oneof![1 => Just(None), 3 => [1..=3usize, 1..=3usize].prop_map(Some)];
                let divisor = prop_oneof![
                    4 => Just(None),
                    2 => (1i64..=9).prop_map(Some),
                    1 => (-3i64..=-1).prop_map(Some),
                ];
                (
                    Just(([n, c, h, w], three_d, dtype)),
                    axis_strategy(h, max_dilation),
                    axis_strategy(w, max_dilation),
                    stride,
                    any::<bool>(),
                    any::<bool>(),
                    divisor,
                    values_strategy(kinds, dtype, n * c * h * w),
                )
            })
            .prop_map(
                move |(
                    (shape, three_d, dtype),
                    ah,
                    aw,
                    stride,
                    ceil_mode,
                    count_include_pad,
                    divisor,
                    values,
                )| {
                    let three_d = three_d && shape[0] == 1;
                    let window = Window {
                        kernel: [ah.0, aw.0],
                        stride,
                        padding: [ah.2, aw.2],
                        dilation: [ah.1, aw.1],
                        ceil_mode,
                        count_include_pad,
                        divisor_override: if max { None } else { divisor },
                    };
                    WindowCase { shape, three_d, window, dtype, values }
                },
            )
    }

    /// An adaptive-pooling case; the output may be larger than the input, and is (1, 1) often.
    #[derive(Debug, Clone)]
    pub struct AdaptiveCase {
        pub shape: [usize; 4],
        pub three_d: bool,
        pub output: [usize; 2],
        pub dtype: DType,
        pub values: Vec<f64>,
    }

    impl AdaptiveCase {
        pub fn input(&self) -> Array4<f64> {
            Array4::from_shape_vec(self.shape, self.values.clone()).expect("shape matches values")
        }
        pub fn upload_shape(&self) -> Vec<usize> {
            let [n, c, h, w] = self.shape;
            if self.three_d {
                vec![c, h, w]
            } else {
                vec![n, c, h, w]
            }
        }
    }

    pub fn adaptive_case(kinds: &'static [Values]) -> impl Strategy<Value = AdaptiveCase> {
        (1..=2usize, 1..=5usize, 1..=12usize, 1..=12usize, any::<bool>(), dtype_strategy())
            .prop_flat_map(move |(n, c, h, w, three_d, dtype)| {
                let output = prop_oneof![
                    1 => Just([1usize, 1usize]),
                    4 => [1..=h + 3, 1..=w + 3],
                ];
                (
                    Just(([n, c, h, w], three_d && n == 1, dtype)),
                    output,
                    values_strategy(kinds, dtype, n * c * h * w),
                )
            })
            .prop_map(|((shape, three_d, dtype), output, values)| AdaptiveCase {
                shape,
                three_d,
                output,
                dtype,
                values,
            })
    }

    /// A reduction case: a rank 1..=4 tensor, a random subset of its dims (each maybe negative,
    /// in random order; empty means all dims), keepdim.
    #[derive(Debug, Clone)]
    pub struct ReduceCase {
        pub shape: Vec<usize>,
        pub dims: Vec<isize>,
        pub keepdim: bool,
        pub dtype: DType,
        pub values: Vec<f64>,
    }

    impl ReduceCase {
        pub fn input(&self) -> ArrayD<f64> {
            ArrayD::from_shape_vec(IxDyn(&self.shape), self.values.clone()).expect("shape matches values")
        }
    }

    pub fn reduce_case() -> impl Strategy<Value = ReduceCase> {
        (prop::collection::vec(1..=6usize, 1..=4), dtype_strategy())
            .prop_flat_map(|(shape, dtype)| {
                let rank = shape.len();
                let len = shape.iter().product();
                (
                    Just(shape),
                    prop::collection::vec((any::<bool>(), any::<bool>()), rank),
                    any::<bool>(),
                    Just(dtype),
                    values_strategy(&[Values::Grid, Values::Continuous], dtype, len),
                )
            })
            .prop_flat_map(|(shape, picks, keepdim, dtype, values)| {
                let rank = shape.len() as isize;
                let dims: Vec<isize> = picks
                    .iter()
                    .enumerate()
                    .filter(|(_, (take, _))| *take)
                    .map(|(i, (_, negative))| if *negative { i as isize - rank } else { i as isize })
                    .collect();
                // Dim order must not matter.
                (Just(shape), Just(dims).prop_shuffle(), Just(keepdim), Just(dtype), Just(values))
            })
            .prop_map(|(shape, dims, keepdim, dtype, values)| ReduceCase {
                shape,
                dims,
                keepdim,
                dtype,
                values,
            })
    }
}
