//! Windowed pooling semantics (`avg_pool2d`, `max_pool2d`): the option structs, PyTorch's
//! argument checks and output-size rule, and the per-window bounds every backend uses.
//! Sources: `aten/src/ATen/native/Pool.h`, `AveragePool2d.cpp`, `DilatedMaxPool2d.cpp`.

use crate::error::{invalid_arg, shape_err, Error, Result};

/// Options of `torch.nn.functional.avg_pool2d`, with PyTorch's defaults (`stride` = kernel,
/// padding 0, `ceil_mode` false, `count_include_pad` true, no `divisor_override`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvgPool2d {
    pub kernel: [usize; 2],
    /// `None` means stride = kernel, as PyTorch's `stride=None`.
    pub stride: Option<[usize; 2]>,
    pub padding: [usize; 2],
    pub ceil_mode: bool,
    pub count_include_pad: bool,
    /// Divides every window by this instead of its size; 0 is rejected, negatives are allowed.
    pub divisor_override: Option<i64>,
}

impl AvgPool2d {
    pub fn new(kernel: [usize; 2]) -> Self {
        AvgPool2d {
            kernel,
            stride: None,
            padding: [0, 0],
            ceil_mode: false,
            count_include_pad: true,
            divisor_override: None,
        }
    }
    pub fn stride(mut self, stride: [usize; 2]) -> Self {
        self.stride = Some(stride);
        self
    }
    pub fn padding(mut self, padding: [usize; 2]) -> Self {
        self.padding = padding;
        self
    }
    pub fn ceil_mode(mut self, ceil_mode: bool) -> Self {
        self.ceil_mode = ceil_mode;
        self
    }
    pub fn count_include_pad(mut self, count_include_pad: bool) -> Self {
        self.count_include_pad = count_include_pad;
        self
    }
    pub fn divisor_override(mut self, divisor: Option<i64>) -> Self {
        self.divisor_override = divisor;
        self
    }
    /// The divisor rule of this spec.
    pub fn rule(&self) -> AvgRule {
        AvgRule { count_include_pad: self.count_include_pad, divisor_override: self.divisor_override }
    }
}

/// Options of `torch.nn.functional.max_pool2d`, with PyTorch's defaults (`stride` = kernel,
/// padding 0, dilation 1, `ceil_mode` false).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaxPool2d {
    pub kernel: [usize; 2],
    pub stride: Option<[usize; 2]>,
    pub padding: [usize; 2],
    pub dilation: [usize; 2],
    pub ceil_mode: bool,
}

impl MaxPool2d {
    pub fn new(kernel: [usize; 2]) -> Self {
        MaxPool2d { kernel, stride: None, padding: [0, 0], dilation: [1, 1], ceil_mode: false }
    }
    pub fn stride(mut self, stride: [usize; 2]) -> Self {
        self.stride = Some(stride);
        self
    }
    pub fn padding(mut self, padding: [usize; 2]) -> Self {
        self.padding = padding;
        self
    }
    pub fn dilation(mut self, dilation: [usize; 2]) -> Self {
        self.dilation = dilation;
        self
    }
    pub fn ceil_mode(mut self, ceil_mode: bool) -> Self {
        self.ceil_mode = ceil_mode;
        self
    }
}

/// How `avg_pool2d` divides a window's sum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AvgRule {
    pub count_include_pad: bool,
    pub divisor_override: Option<i64>,
}

/// A validated pooling problem: input (N, C, H, W), output (N, C, out_h, out_w), and the window.
/// 3-D input is N = 1. Every backend computes from this and nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowGeometry {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub out_h: usize,
    pub out_w: usize,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub dilation: [usize; 2],
}

/// The clipped window of one average-pooling output and its divisor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AvgWindow {
    pub h0: usize,
    pub h1: usize,
    pub w0: usize,
    pub w1: usize,
    /// Never 0 for a valid geometry; may be negative through `divisor_override`.
    pub divisor: i64,
}

/// One output's average window along one axis ([`WindowGeometry::avg_axis_windows`]):
/// clipped taps `start..end` and this axis's factor of the divisor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AvgAxisWindow {
    pub start: usize,
    pub end: usize,
    pub factor: i64,
}

impl WindowGeometry {
    /// PyTorch's average window: `pool_size` counts padding (but not ceil-mode overhang past
    /// H + pad), then the window is clipped to the input.
    #[inline]
    pub fn avg_window(&self, oh: usize, ow: usize, rule: AvgRule) -> AvgWindow {
        let (h0, h1, ph) = avg_axis(oh, self.stride[0], self.padding[0], self.kernel[0], self.h);
        let (w0, w1, pw) = avg_axis(ow, self.stride[1], self.padding[1], self.kernel[1], self.w);
        let divisor = match rule.divisor_override {
            Some(d) => d,
            None if rule.count_include_pad => ph * pw,
            None => ((h1 - h0) * (w1 - w0)) as i64,
        };
        AvgWindow { h0, h1, w0, w1, divisor }
    }

    /// [`Self::avg_window`]'s divisor of every output of a plane, row-major (`oh * out_w + ow`),
    /// for the price of one window per row and per column: each of PyTorch's three rules is a
    /// product of one extent per axis, or a constant.
    pub fn avg_divisors(&self, rule: AvgRule) -> Vec<i64> {
        let [rows, cols] = self.avg_axis_windows(rule);
        rows.iter().flat_map(|r| cols.iter().map(move |c| r.factor * c.factor)).collect()
    }

    /// [`Self::avg_window`] one axis at a time: `[rows, cols]`, where output `(oh, ow)` sums
    /// rows `rows[oh].start..rows[oh].end` of columns `cols[ow].start..cols[ow].end` and
    /// divides by `rows[oh].factor * cols[ow].factor` (an override is `(d, 1)`).
    pub fn avg_axis_windows(&self, rule: AvgRule) -> [Vec<AvgAxisWindow>; 2] {
        let axis = |outs: usize, a: usize| -> Vec<AvgAxisWindow> {
            let size = [self.h, self.w][a];
            (0..outs)
                .map(|o| {
                    let (start, end, pool) =
                        avg_axis(o, self.stride[a], self.padding[a], self.kernel[a], size);
                    let factor = match rule.divisor_override {
                        Some(d) if a == 0 => d,
                        Some(_) => 1,
                        None if rule.count_include_pad => pool,
                        None => (end - start) as i64,
                    };
                    AvgAxisWindow { start, end, factor }
                })
                .collect()
        };
        [axis(self.out_h, 0), axis(self.out_w, 1)]
    }

    /// The taps of a max window along H: `(first, end)` with step `dilation[0]`; padded taps are
    /// skipped. The first tap is in bounds for every valid geometry.
    #[inline]
    pub fn max_taps_h(&self, oh: usize) -> (usize, usize) {
        max_axis(oh, self.stride[0], self.padding[0], self.kernel[0], self.dilation[0], self.h)
    }
    /// As [`Self::max_taps_h`], along W.
    #[inline]
    pub fn max_taps_w(&self, ow: usize) -> (usize, usize) {
        max_axis(ow, self.stride[1], self.padding[1], self.kernel[1], self.dilation[1], self.w)
    }

    /// Elements of the input and of the output.
    pub fn input_len(&self) -> usize {
        self.n * self.c * self.h * self.w
    }
    pub fn output_len(&self) -> usize {
        self.n * self.c * self.out_h * self.out_w
    }

    /// The window covers the whole plane with no padding: the op is a global reduction
    /// (the first GAP formulation), and dispatches to the row/column reduction.
    pub fn is_global(&self) -> bool {
        self.out_h == 1
            && self.out_w == 1
            && self.padding == [0, 0]
            && self.dilation == [1, 1]
            && self.kernel == [self.h, self.w]
    }
}

/// (clipped start, clipped end, unclipped pool extent) along one axis, as in PyTorch.
#[inline]
fn avg_axis(o: usize, stride: usize, pad: usize, kernel: usize, size: usize) -> (usize, usize, i64) {
    let start = (o * stride) as i64 - pad as i64;
    let end = (start + kernel as i64).min((size + pad) as i64);
    let pool = end - start;
    let start = start.max(0) as usize;
    let end = (end.min(size as i64)).max(0) as usize;
    (start, end.max(start), pool)
}

#[inline]
fn max_axis(o: usize, stride: usize, pad: usize, kernel: usize, dil: usize, size: usize) -> (usize, usize) {
    let mut start = (o * stride) as i64 - pad as i64;
    let end = (start + ((kernel - 1) * dil) as i64 + 1).min(size as i64);
    while start < 0 {
        start += dil as i64;
    }
    (start as usize, end.max(start) as usize)
}

/// PyTorch's `pooling_output_shape`, with its checks, for one axis. PyTorch computes in
/// int64 and lets sizes near its limit wrap; here every intermediate is checked, and a call
/// whose arithmetic would leave int64 is an error. Past this check, the window arithmetic of
/// the kernels (`o * stride - pad + (kernel - 1) * dilation`) stays within int64.
pub fn pooling_output_size(
    input: usize,
    kernel: usize,
    pad: usize,
    stride: usize,
    dilation: usize,
    ceil_mode: bool,
) -> Result<i64> {
    if stride == 0 {
        invalid_arg!("stride should not be zero");
    }
    let overflow = || {
        Error::InvalidArgument(format!(
            "pooling sizes overflow int64: input size {input}, kernel_size={kernel}, padding={pad}, stride={stride}, dilation={dilation}"
        ))
    };
    let as_i64 = |v: usize| i64::try_from(v).map_err(|_| overflow());
    let (i, k, p, s, d) = (as_i64(input)?, as_i64(kernel)?, as_i64(pad)?, as_i64(stride)?, as_i64(dilation)?);
    let effective = (k - 1).checked_mul(d).and_then(|e| e.checked_add(1)).ok_or_else(overflow)?;
    if p > effective / 2 {
        invalid_arg!(
            "pad should be at most half of effective kernel size, but got pad={pad}, kernel_size={kernel} and dilation={dilation}"
        );
    }
    // `p <= effective / 2`, so `2 * p` fits; `i + 2p + s` is the largest sum below.
    let padded = i.checked_add(2 * p).ok_or_else(overflow)?;
    padded.checked_add(s).ok_or_else(overflow)?;
    let numerator = padded - effective + if ceil_mode { s - 1 } else { 0 };
    let mut out = numerator.div_euclid(s) + 1;
    if ceil_mode && (out - 1) * s >= i + p {
        out -= 1;
    }
    Ok(out)
}

/// Validates a pooling call the way PyTorch does and returns its geometry. `shape` is the
/// logical input shape (3-D or 4-D). `op` names the op in messages.
#[allow(clippy::too_many_arguments)]
pub fn plan_window_pool(
    op: &str,
    shape: &[usize],
    kernel: [usize; 2],
    stride: Option<[usize; 2]>,
    padding: [usize; 2],
    dilation: [usize; 2],
    ceil_mode: bool,
) -> Result<WindowGeometry> {
    if kernel[0] == 0 || kernel[1] == 0 {
        invalid_arg!(
            "{op}: kernel size should be greater than zero, but got kH: {} kW: {}",
            kernel[0],
            kernel[1]
        );
    }
    let stride = stride.unwrap_or(kernel);
    if stride[0] == 0 || stride[1] == 0 {
        invalid_arg!("{op}: stride should not be zero (got dH: {} dW: {})", stride[0], stride[1]);
    }
    if dilation[0] == 0 || dilation[1] == 0 {
        invalid_arg!(
            "{op}: dilation should be greater than zero, but got dilationH: {} dilationW: {}",
            dilation[0],
            dilation[1]
        );
    }
    // PyTorch checks the raw kernel as well as the dilated one (DilatedMaxPool2d.cpp).
    if padding[0] > kernel[0] / 2 || padding[1] > kernel[1] / 2 {
        invalid_arg!(
            "{op}: pad should be smaller than or equal to half of kernel size, but got padW = {}, padH = {}, kW = {}, kH = {}",
            padding[1],
            padding[0],
            kernel[1],
            kernel[0]
        );
    }
    let (n, c, h, w) = match *shape {
        [c, h, w] => (1, c, h, w),
        [n, c, h, w] => (n, c, h, w),
        _ => shape_err!(
            "{op}: Expected 3D or 4D (batch mode) tensor with optional 0 dim batch size for input, but got: {shape:?}"
        ),
    };
    if c == 0 || h == 0 || w == 0 {
        shape_err!(
            "{op}: Expected 3D or 4D (batch mode) tensor with optional 0 dim batch size for input, but got: {shape:?} (only the batch dimension may be 0)"
        );
    }
    let out_h = pooling_output_size(h, kernel[0], padding[0], stride[0], dilation[0], ceil_mode)?;
    let out_w = pooling_output_size(w, kernel[1], padding[1], stride[1], dilation[1], ceil_mode)?;
    if out_h < 1 || out_w < 1 {
        invalid_arg!(
            "{op}: Given input size: ({c}x{h}x{w}). Calculated output size: ({c}x{out_h}x{out_w}). Output size is too small"
        );
    }
    // Only an empty batch can hold an input whose output (at most about four times its
    // plane) has strides past isize::MAX.
    if crate::tensor::checked_extent(&[n, c, out_h as usize, out_w as usize]).is_none() {
        shape_err!("{op}: output of {c}x{out_h}x{out_w} planes for input {shape:?} is too large: its strides overflow");
    }
    Ok(WindowGeometry {
        n,
        c,
        h,
        w,
        out_h: out_h as usize,
        out_w: out_w as usize,
        kernel,
        stride,
        padding,
        dilation,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceil_mode_drops_a_window_that_starts_in_the_right_padding() {
        assert_eq!(pooling_output_size(5, 2, 0, 2, 1, true).unwrap(), 3);
        assert_eq!(pooling_output_size(6, 3, 1, 2, 1, true).unwrap(), 4);
        assert_eq!(pooling_output_size(4, 2, 1, 2, 1, true).unwrap(), 3);
        assert_eq!(pooling_output_size(5, 2, 0, 2, 1, false).unwrap(), 2);
    }

    #[test]
    fn avg_divisor_counts_padding_but_not_ceil_overhang() {
        let g = plan_window_pool("avg_pool2d", &[1, 1, 6, 6], [3, 3], Some([2, 2]), [1, 1], [1, 1], true)
            .unwrap();
        assert_eq!((g.out_h, g.out_w), (4, 4));
        let rule = AvgRule { count_include_pad: true, divisor_override: None };
        assert_eq!(g.avg_window(3, 3, rule).divisor, 4);
        assert_eq!(g.avg_window(3, 1, rule).divisor, 6);
        assert_eq!(g.avg_window(0, 0, rule).divisor, 9);
        let exclude = AvgRule { count_include_pad: false, divisor_override: None };
        assert_eq!(g.avg_window(0, 0, exclude).divisor, 4);
    }

    #[test]
    fn divisor_table_and_axis_windows_match_each_window() {
        let shapes =
            [([1, 1, 6, 6], [3, 3], [2, 2], [1, 1], true), ([1, 1, 7, 9], [3, 2], [1, 3], [1, 1], false)];
        for (shape, kernel, stride, padding, ceil) in shapes {
            let g =
                plan_window_pool("avg_pool2d", &shape, kernel, Some(stride), padding, [1, 1], ceil).unwrap();
            for (count_include_pad, divisor_override) in
                [(true, None), (false, None), (true, Some(-3)), (false, Some(5))]
            {
                let rule = AvgRule { count_include_pad, divisor_override };
                let divisors = g.avg_divisors(rule);
                assert_eq!(divisors.len(), g.out_h * g.out_w);
                let [rows, cols] = g.avg_axis_windows(rule);
                for (k, &d) in divisors.iter().enumerate() {
                    let (oh, ow) = (k / g.out_w, k % g.out_w);
                    let win = g.avg_window(oh, ow, rule);
                    assert_eq!(d, win.divisor, "{shape:?} {rule:?}");
                    assert_eq!(
                        (rows[oh].start, rows[oh].end, cols[ow].start, cols[ow].end),
                        (win.h0, win.h1, win.w0, win.w1)
                    );
                }
            }
        }
    }

    #[test]
    fn rejects_what_pytorch_rejects() {
        let s = [1, 1, 4, 4];
        assert!(plan_window_pool("p", &s, [0, 2], None, [0, 0], [1, 1], false).is_err());
        assert!(plan_window_pool("p", &s, [2, 2], Some([0, 1]), [0, 0], [1, 1], false).is_err());
        assert!(plan_window_pool("p", &s, [2, 2], None, [2, 0], [1, 1], false).is_err());
        assert!(plan_window_pool("p", &s, [2, 2], None, [0, 0], [0, 1], false).is_err());
        assert!(plan_window_pool("p", &s, [5, 5], None, [0, 0], [1, 1], false).is_err());
        assert!(plan_window_pool("p", &[1, 0, 4, 4], [2, 2], None, [0, 0], [1, 1], false).is_err());
        assert!(plan_window_pool("p", &[4, 4], [2, 2], None, [0, 0], [1, 1], false).is_err());
        assert!(plan_window_pool("p", &[0, 1, 4, 4], [2, 2], None, [0, 0], [1, 1], false).is_ok());
    }
}
