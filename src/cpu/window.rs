//! Windowed pooling (`avg_pool2d`, `max_pool2d`) on the CPU, exactly as PyTorch computes it.
//!
//! NCHW planes small enough for the lane path (`lanes.rs`: f32, bf16 and f16 with AVX2, up to 2048
//! padded cells) are pooled eight planes at a time in AVX2 lanes, in PyTorch's tap order.
//!
//! Other NCHW planes: rayon over runs of planes; within a plane, one output row at a time, every
//! output of the row at once. Each input row the window touches is copied (converted to
//! `T::Acc`) into a padded row buffer whose pads hold the identity of the op (+0 for sums, -inf
//! for max); then
//! for each kernel tap `j` the whole output row is updated with a strided, vectorisable loop.
//! Per output this visits the taps in exactly PyTorch's order (h ascending, then w ascending);
//! the extra pad taps are exact no-ops: adding +0.0 to a running sum that started at +0.0 never
//! changes it (such a sum is never -0.0), and a -inf tap never satisfies `v > max || isnan(v)`.
//!
//! Small NCHW average windows (at most 9 taps, see `avg_nchw_is_separable`) are summed
//! separably instead: each input row's horizontal sums once, then the rows of a window. That
//! reorders the additions (within the parity tolerance), in exchange for reading and converting
//! each input row once rather than once per output row that covers it.
//!
//! NHWC: rayon over (image, output row); per output, the channels swept over the window's taps
//! in PyTorch's order, in registers (explicit AVX2 blocks of 32 and 8 channels for f32, bf16 and f16,
//! max indices as i32 lanes selected on the value's mask and widened at the store; portable
//! register tiles otherwise), so the inner loop runs along contiguous channels.

use super::lanes::{self, LanePlane, LaneWindow, PlanePooling};
use super::{acc_from_f64, items_per_task, simd, AccScratch};
use crate::dtype::FloatElement;
use crate::ops::window::{AvgRule, WindowGeometry};
use crate::ops::Layout;
use num_traits::{Float, Zero};
use rayon::prelude::*;

/// Average pooling: per output, the sum of its clipped window in `T::Acc` (h then w), divided
/// once by `g.avg_window(..).divisor`, rounded once.
pub fn avg_pool2d<T: FloatElement>(g: &WindowGeometry, rule: AvgRule, layout: Layout, x: &[T], y: &mut [T]) {
    if g.output_len() == 0 {
        return;
    }
    let (x, y) = (&x[..g.input_len()], &mut y[..g.output_len()]);
    match layout {
        Layout::Nchw => avg_nchw(g, rule, x, y),
        Layout::Nhwc => avg_nhwc(g, rule, x, y),
    }
}

/// Max pooling with PyTorch's rule: -inf start, first tap's index, update on `v > max || isnan(v)`.
/// `indices` (output shape and layout) receive `h * W + w` within the plane.
pub fn max_pool2d<T: FloatElement>(
    g: &WindowGeometry,
    layout: Layout,
    x: &[T],
    y: &mut [T],
    indices: Option<&mut [i64]>,
) {
    let out_len = g.output_len();
    if out_len == 0 {
        return;
    }
    let (x, y) = (&x[..g.input_len()], &mut y[..out_len]);
    let indices = indices.map(|i| &mut i[..out_len]);
    match layout {
        Layout::Nchw => max_nchw(g, x, y, indices),
        Layout::Nhwc => max_nhwc(g, x, y, indices),
    }
}

/// Length of the padded row buffer: every tap of every output of a row must land inside it.
fn padded_row_len(g: &WindowGeometry) -> usize {
    let last_tap = (g.out_w - 1) * g.stride[1] + (g.kernel[1] - 1) * g.dilation[1] + 1;
    last_tap.max(g.padding[1] + g.w)
}

/// One input row laid out for unit-stride tap loops: the row converted to `T::Acc` inside a
/// padded buffer (pads hold the op's identity), then split into `stride` phases,
/// `phase r = padded[r], padded[r + s], ...`. The tap at padded position `ow * s + t` of output
/// `ow` is then `phase(t % s)[ow + t / s]`: every tap of a whole output row is one contiguous
/// slice, so the tap loops vectorise without strided loads.
struct PhasedRow<A> {
    stride: usize,
    pad_left: usize,
    phase_len: usize,
    padded: Vec<A>,
    phases: Vec<A>,
}

impl<A: Float> PhasedRow<A> {
    fn new(g: &WindowGeometry, identity: A) -> Self {
        let stride = g.stride[1];
        let phase_len = padded_row_len(g).div_ceil(stride);
        let phases = if stride > 1 { vec![identity; phase_len * stride] } else { Vec::new() };
        PhasedRow {
            stride,
            pad_left: g.padding[1],
            phase_len,
            padded: vec![identity; phase_len * stride],
            phases,
        }
    }

    /// Loads input row `row` (W elements).
    #[inline(always)]
    fn load<T: FloatElement<Acc = A>>(&mut self, row: &[T]) {
        if self.stride == 2 && simd::converts_inline::<T>() {
            // Straight into the two phases, converting on the way (no pass through `padded`,
            // whose copy was a quarter of a large plane's pooling); the pad slots of the
            // phases are never written, so they keep the identity.
            let (even, odd) = self.phases.split_at_mut(self.phase_len);
            let first = self.pad_left;
            // Padded position p = first + i goes to phase p % 2, slot p / 2.
            let (to_first, to_second) = if first.is_multiple_of(2) { (even, odd) } else { (odd, even) };
            let (a, b) = (&mut to_first[first / 2..], &mut to_second[first.div_ceil(2)..]);
            let pairs = row.chunks_exact(2);
            let last = pairs.remainder().first().copied();
            for ((a, b), pair) in a.iter_mut().zip(b.iter_mut()).zip(pairs) {
                *a = simd::load(pair[0]);
                *b = simd::load(pair[1]);
            }
            if let Some(v) = last {
                a[row.len() / 2] = simd::load(v);
            }
            return;
        }
        simd::block_to_acc(row, &mut self.padded[self.pad_left..self.pad_left + row.len()]);
        match self.stride {
            1 => {}
            2 => {
                let (even, odd) = self.phases.split_at_mut(self.phase_len);
                for ((e, o), pair) in even.iter_mut().zip(odd.iter_mut()).zip(self.padded.chunks_exact(2)) {
                    *e = pair[0];
                    *o = pair[1];
                }
            }
            s => {
                for (m, group) in self.padded.chunks_exact(s).enumerate() {
                    for (r, &v) in group.iter().enumerate() {
                        self.phases[r * self.phase_len + m] = v;
                    }
                }
            }
        }
    }

    /// The taps at padded offset `t` of outputs `0..len`.
    #[inline(always)]
    fn taps(&self, t: usize, len: usize) -> &[A] {
        let buf = if self.stride == 1 { &self.padded } else { &self.phases };
        let start = (t % self.stride) * self.phase_len + t / self.stride;
        &buf[start..start + len]
    }
}

/// `acc[i] = acc[i] + taps[0][i] + taps[1][i] + ...`, left to right (PyTorch's tap order).
#[inline(always)]
fn add_taps<A: Float, const K: usize>(acc: &mut [A], taps: [&[A]; K]) {
    let n = acc.len();
    let taps = taps.map(|t| &t[..n]);
    for i in 0..n {
        let mut a = acc[i];
        for t in &taps {
            a = a + t[i];
        }
        acc[i] = a;
    }
}

/// The sum taps of one padded input row: all `kw` taps of every output, in tap order.
#[inline(always)]
fn add_row_taps<A: Float>(acc: &mut [A], row: &PhasedRow<A>, kw: usize) {
    let n = acc.len();
    match kw {
        1 => add_taps(acc, [row.taps(0, n)]),
        2 => add_taps(acc, [row.taps(0, n), row.taps(1, n)]),
        3 => add_taps(acc, [row.taps(0, n), row.taps(1, n), row.taps(2, n)]),
        _ => (0..kw).for_each(|j| add_taps(acc, [row.taps(j, n)])),
    }
}

/// Whether NCHW average pooling sums its windows separably: each input row's horizontal tap sums
/// once (`((0 + t0) + t1) + t2`, reused by every output row whose window covers the row), then
/// the window's row sums top to bottom (`(r0 + r1) + r2`). That reorders PyTorch's single
/// h-then-w running sum, so it is limited to small windows (at most 9 taps, f32 accumulation
/// of 9 terms) where the reordering stays far inside the parity tolerance (f32 rel 1e-5,
/// abs 1e-6); larger windows keep PyTorch's exact order.
/// Small planes take the lane path instead ([`lanes`], PyTorch's order exactly).
pub(crate) fn avg_nchw_is_separable<T: FloatElement>(g: &WindowGeometry) -> bool {
    let buffer = lane_plane(g, 0.0);
    g.kernel[0] > 1 && g.kernel[0] * g.kernel[1] <= 9 && !lanes::applies::<T>(buffer.rows * buffer.cols)
}

/// NCHW planes per rayon task. On the lane path, a multiple of its eight-plane group, and its
/// work counts four times its taps (it transposes every input and output twice), so that small
/// ops still run on two cores there.
fn nchw_planes_per_task(g: &WindowGeometry, lane_path: bool) -> usize {
    let (in_plane, out_plane) = (g.h * g.w, g.out_h * g.out_w);
    let work = in_plane.max(out_plane * g.kernel[0] * g.kernel[1]);
    if lane_path {
        items_per_task(4 * work, g.n * g.c).next_multiple_of(8)
    } else {
        items_per_task(work, g.n * g.c)
    }
}

/// The lane path's buffer for one plane: padded so that every window's every tap is inside
/// (the padding, and past it as far as ceil mode's last windows reach), pads at `identity`.
fn lane_plane(g: &WindowGeometry, identity: f32) -> LanePlane {
    let extent = |out: usize, s: usize, k: usize, d: usize, pad: usize, n: usize| {
        ((out.max(1) - 1) * s + (k - 1) * d + 1).max(pad + n)
    };
    LanePlane {
        height: g.h,
        width: g.w,
        pad: (g.padding[0], g.padding[1]),
        rows: extent(g.out_h, g.stride[0], g.kernel[0], g.dilation[0], g.padding[0], g.h),
        cols: extent(g.out_w, g.stride[1], g.kernel[1], g.dilation[1], g.padding[1], g.w),
        identity,
    }
}

/// The lane path's windows: every output's whole kernel in buffer coordinates; `first` is
/// max pooling's first in-plane tap; `divisor` gives an average's divisor.
fn lane_windows(g: &WindowGeometry, divisor: impl Fn(usize, usize) -> f32) -> Vec<LaneWindow> {
    (0..g.out_h * g.out_w)
        .map(|k| {
            let (oh, ow) = (k / g.out_w, k % g.out_w);
            let (h0, w0) = (oh * g.stride[0], ow * g.stride[1]);
            let first = g.max_taps_h(oh).0 * g.w + g.max_taps_w(ow).0;
            LaneWindow {
                h: (h0, h0 + (g.kernel[0] - 1) * g.dilation[0] + 1, g.dilation[0]),
                w: (w0, w0 + (g.kernel[1] - 1) * g.dilation[1] + 1, g.dilation[1]),
                first: first as i32,
                div: (divisor(oh, ow), 1.0),
            }
        })
        .collect()
}

fn avg_nchw<T: FloatElement>(g: &WindowGeometry, rule: AvgRule, x: &[T], y: &mut [T]) {
    let (in_plane, out_plane) = (g.h * g.w, g.out_h * g.out_w);
    let layout = lane_plane(g, 0.0);
    if lanes::applies::<T>(layout.rows * layout.cols) {
        let planes_per_task = nchw_planes_per_task(g, true);
        let windows = lane_windows(g, |oh, ow| g.avg_window(oh, ow, rule).divisor as f64 as f32);
        let pooling = PlanePooling::new(layout, windows);
        let done = y
            .par_chunks_mut(out_plane * planes_per_task)
            .zip(x.par_chunks(in_plane * planes_per_task))
            .all(|(ys, xs)| lanes::pool_planes::<T, T, false, false>(&pooling, xs, ys, &mut []));
        if done {
            return;
        }
    }
    let planes_per_task = nchw_planes_per_task(g, false);
    // Divisors depend on the output position only: computed once, shared by every plane (from
    // per-axis factors: one window per output here cost a fifth of a 512x512 plane's pooling).
    let divisors: Vec<T::Acc> = g.avg_divisors(rule).into_iter().map(|d| acc_from_f64(d as f64)).collect();
    let row_windows: Vec<(usize, usize)> = (0..g.out_h)
        .map(|oh| {
            let w = g.avg_window(oh, 0, rule);
            (w.h0, w.h1)
        })
        .collect();
    let separable = avg_nchw_is_separable::<T>(g);
    let prefetch = std::mem::size_of_val(x) >= PREFETCH_MIN_BYTES;
    y.par_chunks_mut(out_plane * planes_per_task).zip(x.par_chunks(in_plane * planes_per_task)).for_each(
        |(ys, xs)| {
            let mut row = PhasedRow::new(g, T::Acc::zero());
            let mut acc = vec![T::Acc::zero(); g.out_w];
            // Separable: the horizontal sums of the last `kernel[0]` input rows of one plane.
            let mut row_sums = vec![T::Acc::zero(); if separable { g.kernel[0] * g.out_w } else { 0 }];
            simd::dispatch(
                #[inline(always)]
                || {
                    for (yp, xp) in ys.chunks_exact_mut(out_plane).zip(xs.chunks_exact(in_plane)) {
                        if separable {
                            avg_plane_separable(
                                g,
                                xp,
                                yp,
                                &mut row,
                                &mut row_sums,
                                &row_windows,
                                &divisors,
                                prefetch,
                            );
                            continue;
                        }
                        for (oh, yrow) in yp.chunks_exact_mut(g.out_w).enumerate() {
                            acc.iter_mut().for_each(|a| *a = T::Acc::zero());
                            let (h0, h1) = row_windows[oh];
                            for h in h0..h1 {
                                row.load(&xp[h * g.w..(h + 1) * g.w]);
                                add_row_taps(&mut acc, &row, g.kernel[1]);
                            }
                            let div = &divisors[oh * g.out_w..(oh + 1) * g.out_w];
                            for ((o, &a), &d) in yrow.iter_mut().zip(acc.iter()).zip(div) {
                                *o = simd::store::<T>(a / d);
                            }
                        }
                    }
                },
            );
        },
    );
}

/// How far ahead [`avg_plane_separable`] prefetches input rows, on inputs of at least
/// [`PREFETCH_MIN_BYTES`]: streaming from memory, the hardware prefetchers alone left the seed
/// shape's 3x3 averages at half the read bandwidth (1.07x with stride 2, 1.13x with stride 1,
/// best of 9 interleaved runs); on inputs that stay in cache the hints cost 5% to 9%.
const PREFETCH_ROWS: usize = 4;
const PREFETCH_MIN_BYTES: usize = super::STREAMING_INPUT_BYTES;

/// One NCHW plane summed separably (see [`avg_nchw_is_separable`]): every input row's
/// horizontal sums once into the ring `row_sums`, then per output row the sum of its window's rows,
/// divided once.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn avg_plane_separable<T: FloatElement>(
    g: &WindowGeometry,
    xp: &[T],
    yp: &mut [T],
    row: &mut PhasedRow<T::Acc>,
    row_sums: &mut [T::Acc],
    row_windows: &[(usize, usize)],
    divisors: &[T::Acc],
    prefetch: bool,
) {
    let n = g.out_w;
    // A ring of the last `kernel[0]` rows' sums: windows move down monotonically, so each input
    // row is summed once, just before the first window that needs it, and its sums are still in
    // L1 when the window rows are added (a whole plane's row sums would stream through L2).
    let ring = g.kernel[0];
    let mut next = 0;
    for (oh, yrow) in yp.chunks_exact_mut(n).enumerate() {
        let (h0, h1) = row_windows[oh];
        while next < h1 {
            let sums = &mut row_sums[(next % ring) * n..(next % ring + 1) * n];
            if prefetch {
                if let Some(ahead) = xp.get((next + PREFETCH_ROWS) * g.w..(next + PREFETCH_ROWS + 1) * g.w) {
                    simd::prefetch(ahead);
                }
            }
            row.load(&xp[next * g.w..(next + 1) * g.w]);
            sums.iter_mut().for_each(|a| *a = T::Acc::zero());
            add_row_taps(sums, row, g.kernel[1]);
            next += 1;
        }
        let div = &divisors[oh * n..(oh + 1) * n];
        let sums = |h: usize| &row_sums[(h % ring) * n..(h % ring + 1) * n];
        match h1 - h0 {
            1 => divide_row_sums::<T, 1>(yrow, [sums(h0)], div),
            2 => divide_row_sums::<T, 2>(yrow, [sums(h0), sums(h0 + 1)], div),
            3 => divide_row_sums::<T, 3>(yrow, [sums(h0), sums(h0 + 1), sums(h0 + 2)], div),
            _ => {
                // More than 3 rows: only reachable with a 1-column kernel of up to 9 rows.
                let mut acc: Vec<T::Acc> = sums(h0).to_vec();
                for h in h0 + 1..h1 {
                    for (a, &s) in acc.iter_mut().zip(sums(h)) {
                        *a += s;
                    }
                }
                for ((o, &a), &d) in yrow.iter_mut().zip(&acc).zip(div) {
                    *o = simd::store::<T>(a / d);
                }
            }
        }
    }
}

/// `y[i] = (rows[0][i] + rows[1][i] + ...) / div[i]`, left to right, rounded once.
#[inline(always)]
fn divide_row_sums<T: FloatElement, const K: usize>(y: &mut [T], rows: [&[T::Acc]; K], div: &[T::Acc]) {
    let n = y.len();
    let (rows, div) = (rows.map(|r| &r[..n]), &div[..n]);
    for i in 0..n {
        let mut a = rows[0][i];
        for r in &rows[1..] {
            a += r[i];
        }
        y[i] = simd::store::<T>(a / div[i]);
    }
}

fn avg_nhwc<T: FloatElement>(g: &WindowGeometry, rule: AvgRule, x: &[T], y: &mut [T]) {
    let c = g.c;
    let row_out = g.out_w * c;
    let rows_per_task = items_per_task(row_out * g.kernel[0] * g.kernel[1], g.n * g.out_h);
    #[cfg(target_arch = "x86_64")]
    if let Some(kind) = simd::avx2_tile_kind::<T>() {
        if avg_nhwc_is_separable::<T>(g) {
            return avg_nhwc_separable(kind, g, rule, x, y);
        }
        let [row_windows, col_windows] = g.avg_axis_windows(rule);
        let vector_end = c - c % 8;
        let stream = simd::streams_window_output(y, c);
        let prefetch = simd::prefetches_window_input(std::mem::size_of_val(x), c, g.kernel[0], g.stride[0]);
        y.par_chunks_mut(row_out).enumerate().with_min_len(rows_per_task).for_each_init(
            || Vec::with_capacity(g.out_w),
            |windows, (k, yrow)| {
                let (n, oh) = (k / g.out_h, k % g.out_h);
                let image = &x[n * g.h * g.w * c..(n + 1) * g.h * g.w * c];
                let row = row_windows[oh];
                windows.clear();
                windows.extend(col_windows.iter().map(|col| simd::OutputWindow {
                    h: (row.start, row.end, 1),
                    w: (col.start, col.end, 1),
                    divisors: (acc_from_f64::<f32>((row.factor * col.factor) as f64), 1.0),
                }));
                // SAFETY: `kind` comes from `avx2_tile_kind::<T>()`, so AVX2 is present and `T`
                // is its element type; `image` is the whole image, and every window is clipped
                // to it with at least one tap (PyTorch's padding <= kernel / 2); `yrow` holds
                // `out_w * c` elements, one output of `c >= vector_end` per window; with
                // `stream`, `y` is 16-byte aligned and `c` a multiple of 8, so `yrow` (`k *
                // out_w * c` elements on) is aligned too.
                unsafe {
                    simd::pool_windows(
                        kind,
                        simd::WindowOp::Avg,
                        (image.as_ptr().cast(), prefetch),
                        (g.w, c),
                        windows,
                        vector_end,
                        (yrow.as_mut_ptr().cast(), stream),
                        std::ptr::null_mut(),
                    );
                }
                if vector_end < c {
                    for (ow, yo) in yrow.chunks_exact_mut(c).enumerate() {
                        let win = g.avg_window(oh, ow, rule);
                        let divisor = acc_from_f64::<T::Acc>(win.divisor as f64);
                        for c0 in vector_end..c {
                            avg_tile::<T, 1>(image, g, &win, c0, yo, divisor);
                        }
                    }
                }
            },
        );
        return;
    }
    y.par_chunks_mut(row_out).enumerate().with_min_len(rows_per_task).for_each_init(
        || (AccScratch::<T>::new(), vec![T::Acc::zero(); c]),
        |(scratch, acc), (k, yrow)| {
            let (n, oh) = (k / g.out_h, k % g.out_h);
            let image = &x[n * g.h * g.w * c..(n + 1) * g.h * g.w * c];
            simd::dispatch(
                #[inline(always)]
                || {
                    for (ow, yo) in yrow.chunks_exact_mut(c).enumerate() {
                        let win = g.avg_window(oh, ow, rule);
                        if simd::converts_inline::<T>() {
                            let divisor = acc_from_f64::<T::Acc>(win.divisor as f64);
                            let full = c - c % CHANNEL_TILE;
                            for c0 in (0..full).step_by(CHANNEL_TILE) {
                                avg_tile::<T, CHANNEL_TILE>(image, g, &win, c0, yo, divisor);
                            }
                            // A half tile for 8..15 leftover channels (C = 8 would otherwise run one
                            // channel at a time).
                            let mut full = full;
                            if c - full >= 8 {
                                avg_tile::<T, 8>(image, g, &win, full, yo, divisor);
                                full += 8;
                            }
                            for c0 in full..c {
                                avg_tile::<T, 1>(image, g, &win, c0, yo, divisor);
                            }
                            continue;
                        }
                        acc.iter_mut().for_each(|a| *a = T::Acc::zero());
                        for h in win.h0..win.h1 {
                            for w in win.w0..win.w1 {
                                let v = scratch.view(&image[(h * g.w + w) * c..(h * g.w + w + 1) * c]);
                                for (a, &v) in acc.iter_mut().zip(v) {
                                    *a += v;
                                }
                            }
                        }
                        let divisor = acc_from_f64::<T::Acc>(win.divisor as f64);
                        for (o, &a) in yo.iter_mut().zip(acc.iter()) {
                            *o = simd::store::<T>(a / divisor);
                        }
                    }
                },
            );
        },
    );
}

/// Whether a channels-last average is summed separably, in the NCHW separable order (see
/// [`avg_nchw_is_separable`]: row sums from +0, then the window's row sums top to bottom; at
/// most 9 taps): windows whose rows are each shared by at least two output rows (`kh >= 2 *
/// stride`), element types with AVX2 kernels, channel counts a multiple of 8. A 3x3 stride-1
/// window then costs 4 additions per output instead of 9, and each input is loaded 3 times
/// instead of 9. With stride 2 the row sums save little and cost a pass through the ring
/// (measured 0.87x to 0.93x on the 7x7 tails), so those stay on the direct path.
pub(crate) fn avg_nhwc_is_separable<T: FloatElement>(g: &WindowGeometry) -> bool {
    let [kh, kw] = g.kernel;
    simd::avx2_tile_kind::<T>().is_some() && kh >= 2 * g.stride[0] && kh * kw <= 9 && g.c.is_multiple_of(8)
}

/// The row sums one separable channels-last task keeps: those of input rows
/// `first.max(next - kernel[0])..next` of image `image`, row `h` in slot `h % kernel[0]`.
/// Windows move down monotonically within a task, so each input row is summed once per task.
#[cfg(target_arch = "x86_64")]
struct RowSumRing {
    image: usize,
    first: usize,
    next: usize,
    sums: Vec<f32>,
}

#[cfg(target_arch = "x86_64")]
std::thread_local! {
    /// The last [`RowSumRing`]'s buffer on this thread, for the next one: a ring is often large
    /// enough to be mmapped, and faulting it in and zeroing it again on every call cost more
    /// than the row sums on the ResNet tail.
    static ROW_SUMS: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
}

#[cfg(target_arch = "x86_64")]
impl RowSumRing {
    /// An empty ring of `len` f32 (its contents are stale until rows are summed into it).
    fn new(len: usize) -> Self {
        let mut sums = ROW_SUMS.take();
        sums.resize(len, 0.0);
        RowSumRing { image: usize::MAX, first: 0, next: 0, sums }
    }
}

#[cfg(target_arch = "x86_64")]
impl Drop for RowSumRing {
    fn drop(&mut self) {
        ROW_SUMS.set(std::mem::take(&mut self.sums));
    }
}

/// [`avg_nhwc_is_separable`] averages: rayon over (image, output row) as the direct path; each
/// task sums the input rows its windows need once into its [`RowSumRing`] (f32, L2-sized:
/// `kernel[0]` rows of `out_w * C`), then each output row adds its window's row sums and
/// divides.
#[cfg(target_arch = "x86_64")]
fn avg_nhwc_separable<T: FloatElement>(
    kind: simd::TileKind,
    g: &WindowGeometry,
    rule: AvgRule,
    x: &[T],
    y: &mut [T],
) {
    let (c, kh) = (g.c, g.kernel[0]);
    let row_out = g.out_w * c;
    let image_len = g.h * g.w * c;
    let [rows, cols] = g.avg_axis_windows(rule);
    let col_taps: Vec<(usize, usize)> = cols.iter().map(|col| (col.start, col.end)).collect();
    // A task sums up to `kh - stride` rows its neighbour sums too: at least `kh` output rows
    // per task keeps that under half of its row sums.
    let rows_per_task = items_per_task(row_out * (g.kernel[0] + g.kernel[1]), g.n * g.out_h).max(kh);
    // `c % 8 == 0` here (`avg_nhwc_is_separable`), so every output row of an aligned `y` is.
    let stream = simd::streams_output(y);
    // Decided once: the wide row sums are only readable by the wide division.
    let blocks = (kind, simd::wide_blocks(kind) && !stream);
    y.par_chunks_mut(row_out).enumerate().with_min_len(rows_per_task).for_each_init(
        || (RowSumRing::new(kh * row_out), vec![0f32; g.out_w]),
        |(ring, divisors), (k, yrow)| {
            let (n, oh) = (k / g.out_h, k % g.out_h);
            let row = rows[oh];
            assert!(row.start < row.end && row.end - row.start <= kh && row.end <= g.h);
            if ring.image != n
                || row.start < ring.first.max(ring.next.saturating_sub(kh))
                || row.start > ring.next
            {
                (ring.image, ring.first, ring.next) = (n, row.start, row.start);
            }
            let image = &x[n * image_len..(n + 1) * image_len];
            while ring.next < row.end {
                let h = ring.next;
                // SAFETY: `kind` comes from `avx2_tile_kind::<T>()` (AVX2 present, `T` its
                // element type); row `h < row.end <= H` of `image` is `W * c` elements from
                // `h * W * c`, and every column window is clipped inside it with a tap
                // (`avg_axis_windows`); slot `h % kh` of the ring holds `row_out = out_w * c`
                // f32, one per window and channel; `c % 8 == 0` (`avg_nhwc_is_separable`).
                unsafe {
                    let src = image.as_ptr().add(h * g.w * c).cast::<u8>();
                    let slot = ring.sums.as_mut_ptr().add((h % kh) * row_out);
                    simd::row_window_sums(blocks, src, c, &col_taps, slot);
                }
                ring.next += 1;
            }
            for (d, col) in divisors.iter_mut().zip(&cols) {
                *d = acc_from_f64::<f32>((row.factor * col.factor) as f64);
            }
            // The window's rows, at most `kh <= 9` (checked above), are all in the ring: it
            // was reset or holds `first.max(next - kh)..next`, which contains them.
            let mut sums = [std::ptr::null::<f32>(); 9];
            for (p, h) in sums.iter_mut().zip(row.start..row.end) {
                *p = ring.sums[(h % kh) * row_out..][..row_out].as_ptr();
            }
            // SAFETY: as above for `kind` and `c`; each of the `row.end - row.start >= 1`
            // pointers is a ring slot of `row_out = divisors.len() * c` f32 written by
            // `row_window_sums` for this image; `yrow` holds `row_out` elements, 16-byte
            // aligned with `stream` (above).
            unsafe {
                simd::divide_row_sums(
                    blocks,
                    &sums[..row.end - row.start],
                    c,
                    divisors,
                    (yrow.as_mut_ptr().cast(), stream),
                );
            }
        },
    );
}

/// Channels-last kernels keep this many channels of one output in registers across all of its
/// taps (two AVX2 registers of f32), instead of a C-wide accumulator in memory.
pub(crate) const CHANNEL_TILE: usize = 16;

/// Channels `c0..c0 + N` of one channels-last average window: taps in PyTorch's order (h, then
/// w) summed in registers, divided once.
#[inline(always)]
fn avg_tile<T: FloatElement, const N: usize>(
    image: &[T],
    g: &WindowGeometry,
    win: &crate::ops::window::AvgWindow,
    c0: usize,
    yo: &mut [T],
    divisor: T::Acc,
) {
    let c = g.c;
    let mut acc = [T::Acc::zero(); N];
    for h in win.h0..win.h1 {
        for w in win.w0..win.w1 {
            let px = &image[(h * g.w + w) * c + c0..][..N];
            for k in 0..N {
                acc[k] += simd::load(px[k]);
            }
        }
    }
    for (o, &a) in yo[c0..c0 + N].iter_mut().zip(&acc) {
        *o = simd::store(a / divisor);
    }
}

/// Channels `c0..c0 + N` of one channels-last max window (taps `h0..h1` step `dh`, `w0..w1`
/// step `dw`), max and index in registers across the taps; PyTorch's update rule and order.
/// The plane (`H * W`) must fit in i32.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn max_tile<T: FloatElement, const N: usize, const WITH_INDEX: bool>(
    image: &[T],
    (width, c): (usize, usize),
    (h0, h1, dh): (usize, usize, usize),
    (w0, w1, dw): (usize, usize, usize),
    c0: usize,
    yo: &mut [T],
    io: &mut [i64],
) {
    // Indices are tracked as i32 (the caller guarantees the plane fits), the same width as the
    // f32 compare masks, so the select vectorises; widened to i64 once at the store.
    let mut m = [T::neg_infinity().to_acc(); N];
    let mut ix = [(h0 * width + w0) as i32; N];
    let mut h = h0;
    while h < h1 {
        let mut w = w0;
        while w < w1 {
            let at = h * width + w;
            let px = &image[at * c + c0..][..N];
            for k in 0..N {
                let v = simd::load(px[k]);
                let take = v > m[k] || v.is_nan();
                m[k] = if take { v } else { m[k] };
                if WITH_INDEX {
                    ix[k] = if take { at as i32 } else { ix[k] };
                }
            }
            w += dw;
        }
        h += dh;
    }
    for (o, &v) in yo[c0..c0 + N].iter_mut().zip(&m) {
        *o = simd::store(v);
    }
    if WITH_INDEX {
        for (o, &i) in io[c0..c0 + N].iter_mut().zip(&ix) {
            *o = i64::from(i);
        }
    }
}

/// All `c` channels of one channels-last max window (taps `h0..h1` step `dh`, `w0..w1` step
/// `dw`, at least one, inside the `height x width` image) into `yo` (and `io` when
/// `WITH_INDEX`), with the values and indices in registers: explicit AVX2 blocks of 8 channels
/// for f32, bf16 and f16, portable register tiles for the rest (and for f64). Returns `false`,
/// having written nothing, for a plane that does not fit in i32; the caller then runs its
/// portable per-tap loop.
#[inline(always)]
pub(crate) fn max_channels<T: FloatElement, const WITH_INDEX: bool>(
    image: &[T],
    (height, width, c): (usize, usize, usize),
    hs: (usize, usize, usize),
    ws: (usize, usize, usize),
    yo: &mut [T],
    io: &mut [i64],
) -> bool {
    if height * width > i32::MAX as usize {
        return false;
    }
    let (yo, image) = (&mut yo[..c], &image[..height * width * c]);
    let io = if WITH_INDEX { &mut io[..c] } else { &mut io[..0] };
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if let Some(kind) = simd::avx2_tile_kind::<T>() {
        let win = simd::ChannelWindow { width, c, h: hs, w: ws };
        done = c - c % 8;
        // SAFETY: `kind` comes from `avx2_tile_kind::<T>()` (AVX2 present, `T` is its element
        // type); `image` is the whole image (sliced above) and the caller's taps lie inside
        // it; `yo` and, when `WITH_INDEX`, `io` hold `c >= done` elements (sliced above); the
        // plane fits in i32 (checked above).
        unsafe {
            simd::max_window::<WITH_INDEX>(
                kind,
                image.as_ptr().cast(),
                win,
                done,
                yo.as_mut_ptr().cast(),
                io.as_mut_ptr(),
            );
        }
    }
    let tiled = done + (c - done) / CHANNEL_TILE * CHANNEL_TILE;
    for c0 in (done..tiled).step_by(CHANNEL_TILE) {
        max_tile::<T, CHANNEL_TILE, WITH_INDEX>(image, (width, c), hs, ws, c0, yo, io);
    }
    // A half tile for 8..15 leftover channels (C = 8 would otherwise run one channel at a time).
    let mut done = tiled;
    if c - done >= 8 {
        max_tile::<T, 8, WITH_INDEX>(image, (width, c), hs, ws, done, yo, io);
        done += 8;
    }
    for c0 in done..c {
        max_tile::<T, 1, WITH_INDEX>(image, (width, c), hs, ws, c0, yo, io);
    }
    true
}

/// The max update of one tap over a vector of channels, branch-free so it vectorises:
/// `take = v > max || isnan(v)`; a taken channel's index becomes `at`.
#[inline(always)]
fn max_update<A: Float, const WITH_INDEX: bool>(max: &mut [A], index: &mut [i64], values: &[A], at: i64) {
    let n = max.len();
    let values = &values[..n];
    let index = if WITH_INDEX { &mut index[..n] } else { &mut index[..0] };
    for i in 0..n {
        let (v, m) = (values[i], max[i]);
        let take = v > m || v.is_nan();
        max[i] = if take { v } else { m };
        if WITH_INDEX {
            index[i] = if take { at } else { index[i] };
        }
    }
}

fn max_nchw<T: FloatElement>(g: &WindowGeometry, x: &[T], y: &mut [T], mut indices: Option<&mut [i64]>) {
    let (in_plane, out_plane) = (g.h * g.w, g.out_h * g.out_w);
    if max_nchw_lanes(g, x, y, indices.as_deref_mut(), nchw_planes_per_task(g, true)) {
        return;
    }
    let planes_per_task = nchw_planes_per_task(g, false);
    let (ys, xs) = (y.par_chunks_mut(out_plane * planes_per_task), x.par_chunks(in_plane * planes_per_task));
    match indices {
        Some(ind) => {
            ys.zip(xs).zip(ind.par_chunks_mut(out_plane * planes_per_task)).for_each(|((ys, xs), is)| {
                max_nchw_planes::<T, true>(g, xs, ys, is);
            })
        }
        None => ys.zip(xs).for_each(|(ys, xs)| max_nchw_planes::<T, false>(g, xs, ys, &mut [])),
    }
}

/// Small NCHW planes through the lane path; `false` (nothing written) where it does not apply.
fn max_nchw_lanes<T: FloatElement>(
    g: &WindowGeometry,
    x: &[T],
    y: &mut [T],
    indices: Option<&mut [i64]>,
    planes_per_task: usize,
) -> bool {
    let (in_plane, out_plane) = (g.h * g.w, g.out_h * g.out_w);
    let layout = lane_plane(g, f32::NEG_INFINITY);
    if !lanes::applies::<T>(layout.rows * layout.cols) {
        return false;
    }
    let pooling = PlanePooling::new(layout, lane_windows(g, |_, _| 1.0));
    let (ys, xs) = (y.par_chunks_mut(out_plane * planes_per_task), x.par_chunks(in_plane * planes_per_task));
    match indices {
        Some(ind) => ys
            .zip(xs)
            .zip(ind.par_chunks_mut(out_plane * planes_per_task))
            .all(|((ys, xs), is)| lanes::pool_planes::<T, T, true, true>(&pooling, xs, ys, is)),
        None => ys.zip(xs).all(|(ys, xs)| lanes::pool_planes::<T, T, true, false>(&pooling, xs, ys, &mut [])),
    }
}

/// The max update of taps `taps` (in order) over a row of outputs: `take = v > max ||
/// isnan(v)`, branch-free so it vectorises. Tap `k` of output `i` has index `base[k] + i * step`.
#[inline(always)]
fn max_taps<A: Float, const K: usize, const WITH_INDEX: bool>(
    max: &mut [A],
    index: &mut [i64],
    taps: [&[A]; K],
    base: [i64; K],
    step: i64,
) {
    let n = max.len();
    let taps = taps.map(|t| &t[..n]);
    let index = if WITH_INDEX { &mut index[..n] } else { &mut index[..0] };
    for i in 0..n {
        let mut m = max[i];
        let mut at = if WITH_INDEX { index[i] } else { 0 };
        for k in 0..K {
            let v = taps[k][i];
            let take = v > m || v.is_nan();
            m = if take { v } else { m };
            if WITH_INDEX {
                at = if take { base[k] + i as i64 * step } else { at };
            }
        }
        max[i] = m;
        if WITH_INDEX {
            index[i] = at;
        }
    }
}

/// Max pooling of whole planes `xs` into `ys` (and `is` when `WITH_INDEX`).
fn max_nchw_planes<T: FloatElement, const WITH_INDEX: bool>(
    g: &WindowGeometry,
    xs: &[T],
    ys: &mut [T],
    is: &mut [i64],
) {
    let (in_plane, out_plane) = (g.h * g.w, g.out_h * g.out_w);
    let (pw, sw, kw, dw, dh) = (g.padding[1], g.stride[1], g.kernel[1], g.dilation[1], g.dilation[0]);
    let neg_inf = T::neg_infinity().to_acc();
    let mut row = PhasedRow::new(g, neg_inf);
    let mut max = vec![neg_inf; g.out_w];
    let mut index = vec![0i64; if WITH_INDEX { g.out_w } else { 0 }];
    // The first in-bounds column tap of every output column: the index of an all -inf window.
    let first_w: Vec<usize> = (0..g.out_w).map(|ow| g.max_taps_w(ow).0).collect();
    let n = g.out_w;
    simd::dispatch(
        #[inline(always)]
        || {
            for (p, (yp, xp)) in ys.chunks_exact_mut(out_plane).zip(xs.chunks_exact(in_plane)).enumerate() {
                for oh in 0..g.out_h {
                    let (h0, h1) = g.max_taps_h(oh);
                    max.iter_mut().for_each(|m| *m = neg_inf);
                    if WITH_INDEX {
                        for (i, &w0) in index.iter_mut().zip(&first_w) {
                            *i = (h0 * g.w + w0) as i64;
                        }
                    }
                    for h in (h0..h1).step_by(dh) {
                        row.load(&xp[h * g.w..(h + 1) * g.w]);
                        // Index of tap j of output column ow: h*W + ow*sw + j*dw - pw.
                        let base = |j: usize| (h * g.w + j * dw) as i64 - pw as i64;
                        let (m, ix, step) = (&mut max[..], &mut index[..], sw as i64);
                        match kw {
                            2 => max_taps::<_, 2, WITH_INDEX>(
                                m,
                                ix,
                                [row.taps(0, n), row.taps(dw, n)],
                                [base(0), base(1)],
                                step,
                            ),
                            3 => max_taps::<_, 3, WITH_INDEX>(
                                m,
                                ix,
                                [row.taps(0, n), row.taps(dw, n), row.taps(2 * dw, n)],
                                [base(0), base(1), base(2)],
                                step,
                            ),
                            _ => {
                                for j in 0..kw {
                                    max_taps::<_, 1, WITH_INDEX>(
                                        m,
                                        ix,
                                        [row.taps(j * dw, n)],
                                        [base(j)],
                                        step,
                                    );
                                }
                            }
                        }
                    }
                    let out = oh * g.out_w..(oh + 1) * g.out_w;
                    for (o, &m) in yp[out.clone()].iter_mut().zip(max.iter()) {
                        *o = simd::store::<T>(m);
                    }
                    if WITH_INDEX {
                        is[p * out_plane..][out].copy_from_slice(&index);
                    }
                }
            }
        },
    );
}

fn max_nhwc<T: FloatElement>(g: &WindowGeometry, x: &[T], y: &mut [T], indices: Option<&mut [i64]>) {
    let row_out = g.out_w * g.c;
    let rows_per_task = items_per_task(row_out * g.kernel[0] * g.kernel[1], g.n * g.out_h);
    #[cfg(target_arch = "x86_64")]
    let stream = simd::streams_window_output(y, g.c);
    let ys = y.par_chunks_mut(row_out).enumerate().with_min_len(rows_per_task);
    #[cfg(target_arch = "x86_64")]
    if let Some(kind) = simd::avx2_tile_kind::<T>().filter(|_| g.h * g.w <= i32::MAX as usize) {
        let cols: Vec<(usize, usize)> = (0..g.out_w).map(|ow| g.max_taps_w(ow)).collect();
        let cols = &cols[..];
        let window_rows = (g.kernel[0] - 1) * g.dilation[0] + 1;
        let prefetch = simd::prefetches_window_input(std::mem::size_of_val(x), g.c, window_rows, g.stride[0]);
        let x = (x, prefetch);
        match indices {
            Some(ind) => {
                let wide = simd::wide_indexed_max(kind, g.c, std::mem::size_of_val(x.0));
                let op = simd::WindowOp::MaxWithIndex { wide };
                ys.zip(ind.par_chunks_mut(row_out)).for_each_init(Vec::new, |windows, ((k, yrow), irow)| {
                    max_nhwc_row_avx2::<T>((kind, op), g, x, cols, k, (yrow, stream), irow, windows)
                })
            }
            None => ys.for_each_init(Vec::new, |windows, (k, yrow)| {
                let op = simd::WindowOp::Max;
                max_nhwc_row_avx2::<T>((kind, op), g, x, cols, k, (yrow, stream), &mut [], windows)
            }),
        }
        return;
    }
    match indices {
        Some(ind) => ys.zip(ind.par_chunks_mut(row_out)).for_each_init(
            || MaxScratch::<T>::new(g.c),
            |s, ((k, yrow), irow)| {
                simd::dispatch(
                    #[inline(always)]
                    || max_nhwc_row::<T, true>(g, x, k, yrow, irow, s),
                )
            },
        ),
        None => ys.for_each_init(
            || MaxScratch::<T>::new(g.c),
            |s, (k, yrow)| {
                simd::dispatch(
                    #[inline(always)]
                    || max_nhwc_row::<T, false>(g, x, k, yrow, &mut [], s),
                )
            },
        ),
    }
}

/// One (image, output row) of channels-last max pooling through [`simd::pool_windows`]
/// (`k = n * out_h + oh`; `op` is `Max` or `MaxWithIndex`, `irow` empty without indices),
/// then the `c % 8` leftover channels in portable tiles. `cols` are the rows' column taps,
/// `windows` a reused buffer; `stream` ([`simd::streams_window_output`]) writes `yrow` with
/// non-temporal stores where [`simd::pool_windows`] streams (not with indices); `prefetch`
/// ([`simd::prefetches_window_input`], decided once per call) asks for `x` ahead.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
fn max_nhwc_row_avx2<T: FloatElement>(
    (kind, op): (simd::TileKind, simd::WindowOp),
    g: &WindowGeometry,
    (x, prefetch): (&[T], bool),
    cols: &[(usize, usize)],
    k: usize,
    (yrow, stream): (&mut [T], bool),
    irow: &mut [i64],
    windows: &mut Vec<simd::OutputWindow>,
) {
    let c = g.c;
    let (n, oh) = (k / g.out_h, k % g.out_h);
    let image = &x[n * g.h * g.w * c..(n + 1) * g.h * g.w * c];
    let (h0, h1) = g.max_taps_h(oh);
    let (dh, dw) = (g.dilation[0], g.dilation[1]);
    windows.clear();
    windows.extend(cols.iter().map(|&(w0, w1)| simd::OutputWindow {
        h: (h0, h1, dh),
        w: (w0, w1, dw),
        divisors: (1.0, 1.0),
    }));
    let with_index = matches!(op, simd::WindowOp::MaxWithIndex { .. });
    assert!(yrow.len() == g.out_w * c && irow.len() == if with_index { yrow.len() } else { 0 });
    let vector_end = c - c % 8;
    // SAFETY: `kind` comes from `avx2_tile_kind::<T>()`, so AVX2 is present and `T` is its
    // element type; `image` is the whole image and every tap of every window is inside it
    // (`max_taps_h`/`max_taps_w` clip to the input); `yrow` (and `irow` with indices) holds
    // `out_w * c` elements, one output of `c >= vector_end` per window (asserted above); the
    // plane fits in i32 (checked by the caller); `stream` comes from `streams_window_output`
    // over the whole output, whose rows start `k * out_w * c` elements on, so stay aligned;
    // `op` is `Max` or, from `max_nhwc`, an indexed max whose `wide` comes from
    // `wide_indexed_max`, which checks for AVX-512 F and BW.
    unsafe {
        simd::pool_windows(
            kind,
            op,
            (image.as_ptr().cast(), prefetch),
            (g.w, c),
            windows,
            vector_end,
            (yrow.as_mut_ptr().cast(), stream),
            irow.as_mut_ptr(),
        );
    }
    if vector_end == c {
        return;
    }
    for (ow, &(w0, w1)) in cols.iter().enumerate() {
        let yo = &mut yrow[ow * c..(ow + 1) * c];
        let hs = (h0, h1, dh);
        let ws = (w0, w1, dw);
        for c0 in vector_end..c {
            if with_index {
                let io = &mut irow[ow * c..(ow + 1) * c];
                max_tile::<T, 1, true>(image, (g.w, c), hs, ws, c0, yo, io);
            } else {
                max_tile::<T, 1, false>(image, (g.w, c), hs, ws, c0, yo, &mut []);
            }
        }
    }
}

/// Per-task buffers of the channels-last max kernels (shared with adaptive max).
pub(crate) struct MaxScratch<T: FloatElement> {
    pub(crate) convert: AccScratch<T>,
    pub(crate) max: Vec<T::Acc>,
    pub(crate) index: Vec<i64>,
}

impl<T: FloatElement> MaxScratch<T> {
    pub(crate) fn new(c: usize) -> Self {
        MaxScratch { convert: AccScratch::new(), max: vec![T::Acc::zero(); c], index: vec![0; c] }
    }

    /// Starts a window: -inf everywhere, the first tap's index `first`.
    #[inline(always)]
    pub(crate) fn start(&mut self, first: i64) {
        let neg_inf = T::neg_infinity().to_acc();
        self.max.iter_mut().for_each(|m| *m = neg_inf);
        self.index.iter_mut().for_each(|i| *i = first);
    }

    /// One tap: the C channels `v` at plane index `at`.
    #[inline(always)]
    pub(crate) fn tap<const WITH_INDEX: bool>(&mut self, v: &[T], at: i64) {
        let v = self.convert.view(v);
        max_update::<T::Acc, WITH_INDEX>(&mut self.max, &mut self.index, v, at);
    }

    /// Stores the window's result.
    #[inline(always)]
    pub(crate) fn store<const WITH_INDEX: bool>(&self, y: &mut [T], ind: &mut [i64]) {
        for (o, &m) in y.iter_mut().zip(self.max.iter()) {
            *o = simd::store::<T>(m);
        }
        if WITH_INDEX {
            ind.copy_from_slice(&self.index);
        }
    }
}

/// One (image, output row) of channels-last max pooling; `k = n * out_h + oh`.
#[inline(always)]
fn max_nhwc_row<T: FloatElement, const WITH_INDEX: bool>(
    g: &WindowGeometry,
    x: &[T],
    k: usize,
    yrow: &mut [T],
    irow: &mut [i64],
    s: &mut MaxScratch<T>,
) {
    let c = g.c;
    let (n, oh) = (k / g.out_h, k % g.out_h);
    let image = &x[n * g.h * g.w * c..(n + 1) * g.h * g.w * c];
    let (h0, h1) = g.max_taps_h(oh);
    for (ow, yo) in yrow.chunks_exact_mut(c).enumerate() {
        let (w0, w1) = g.max_taps_w(ow);
        let io = if WITH_INDEX { &mut irow[ow * c..(ow + 1) * c] } else { &mut [][..] };
        let (hs, ws) = ((h0, h1, g.dilation[0]), (w0, w1, g.dilation[1]));
        if max_channels::<T, WITH_INDEX>(image, (g.h, g.w, c), hs, ws, yo, io) {
            continue;
        }
        s.start((h0 * g.w + w0) as i64);
        for h in (h0..h1).step_by(g.dilation[0]) {
            for w in (w0..w1).step_by(g.dilation[1]) {
                let at = h * g.w + w;
                s.tap::<WITH_INDEX>(&image[at * c..(at + 1) * c], at as i64);
            }
        }
        let ind = if WITH_INDEX { &mut irow[ow * c..(ow + 1) * c] } else { &mut [][..] };
        s.store::<WITH_INDEX>(yo, ind);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::test_util::{for_all_floats, offset, random, rare_nan, same, special, zeros_at_most};
    use crate::ops::window::plan_window_pool;

    struct Case {
        shape: [usize; 4],
        kernel: [usize; 2],
        stride: Option<[usize; 2]>,
        padding: [usize; 2],
        dilation: [usize; 2],
        ceil: bool,
    }

    fn case(
        shape: [usize; 4],
        kernel: [usize; 2],
        stride: Option<[usize; 2]>,
        padding: [usize; 2],
        dilation: [usize; 2],
        ceil: bool,
    ) -> Case {
        Case { shape, kernel, stride, padding, dilation, ceil }
    }

    fn cases(with_dilation: bool) -> Vec<Case> {
        let d = if with_dilation { [2, 3] } else { [1, 1] };
        let mut cases = vec![
            case([2, 3, 6, 6], [3, 3], Some([2, 2]), [1, 1], [1, 1], true),
            case([2, 3, 5, 5], [2, 2], None, [0, 0], [1, 1], true),
            case([1, 4, 7, 9], [3, 2], Some([1, 2]), [1, 1], [1, 1], false),
            case([2, 2, 8, 7], [3, 3], Some([1, 1]), [1, 1], [1, 1], false),
            case([1, 2, 9, 11], [3, 3], Some([2, 1]), [1, 1], d, true),
            case([1, 2, 10, 10], [2, 3], Some([3, 2]), [1, 1], d, false),
            case([1, 1, 1, 4099], [1, 3], Some([1, 2]), [0, 1], [1, 1], false),
            case([1, 2, 300, 1], [3, 1], Some([2, 1]), [1, 0], [1, 1], true),
            case([3, 1, 4, 4], [4, 4], None, [0, 0], [1, 1], false),
            case([0, 2, 4, 4], [2, 2], None, [0, 0], [1, 1], false),
            // Channels-last register tiles (16 channels) plus a remainder channel.
            case([2, 17, 6, 5], [3, 3], Some([2, 2]), [1, 1], d, true),
            case([1, 32, 4, 4], [2, 2], None, [0, 0], [1, 1], false),
            // A half tile (8 channels) alone, and after a full tile with a remainder.
            case([2, 8, 7, 6], [3, 3], Some([2, 2]), [1, 1], d, false),
            case([1, 27, 5, 6], [3, 2], Some([2, 1]), [1, 0], [1, 1], true),
            // Channels-last windows side by side on narrow pixels (`simd.rs`, `narrow_group`:
            // 8, 16 and 24 channels, and 24 plus 3 scalar ones) along rows long enough for
            // several groups, which the clipped windows at either end break.
            case([2, 8, 5, 41], [3, 3], Some([2, 2]), [1, 1], d, true),
            case([1, 16, 4, 38], [2, 3], Some([1, 2]), [1, 1], d, false),
            case([1, 24, 3, 29], [2, 2], None, [0, 0], [1, 1], true),
            case([1, 27, 4, 36], [3, 3], Some([2, 1]), [1, 1], d, false),
            // The separable stride-1 average's row sums and divisions eight windows at a time
            // on narrow pixels (the 16-channel case above takes it too).
            case([2, 8, 6, 35], [3, 3], Some([1, 1]), [1, 1], d, true),
            // NCHW separable sums over more than 3 rows (a 5x1 kernel).
            case([1, 2, 12, 5], [5, 1], Some([1, 1]), [2, 0], [1, 1], false),
            // AVX2 channel blocks: one of 32 channels, one of 8, then 5 scalar channels.
            case([1, 45, 5, 7], [3, 3], Some([2, 2]), [1, 1], d, true),
            // Many 32-channel blocks, so that rare NaNs leave most of them on the fast path.
            case([2, 136, 6, 6], [3, 3], Some([2, 2]), [1, 1], d, false),
            // NCHW row path (planes past the lane path's limit) with stride 2, loaded straight
            // into the phases: even and odd left padding, even and odd widths.
            case([1, 2, 40, 64], [2, 2], None, [0, 0], [1, 1], false),
            case([2, 1, 45, 61], [3, 3], Some([2, 2]), [1, 1], [1, 1], true),
            // A 4 KiB pixel stride (1024 f32 channels) and windows of more than 9 taps: the
            // channels-last average runs in row passes (first, middle and last).
            case([1, 1024, 5, 12], [3, 10], Some([1, 1]), [1, 0], [1, 1], false),
            // f32 averages in chunks of 512 channels: two full chunks and a short one.
            case([2, 1288, 5, 6], [3, 3], Some([2, 2]), [1, 1], [1, 1], true),
            // NCHW: a stride-3 phase split and a kernel wider than the fused 2- and 3-tap loops.
            case([1, 3, 7, 11], [3, 4], Some([1, 3]), [1, 2], d, false),
            // NCHW small planes in lanes: many rayon tasks of eight-plane groups plus a partial
            // group (1043 planes), outputs both transposed back eight at a time and one by one.
            case([7, 149, 11, 10], [3, 3], Some([2, 2]), [1, 1], d, true),
            // Channels-last separable averages: stride 1 over 32 + 8 channels; a 9-row,
            // 1-column kernel; strides past the kernel (rows no window reads) in ceil mode;
            // and enough work for rayon tasks that start mid-image.
            case([2, 40, 9, 8], [3, 3], Some([1, 1]), [1, 1], [1, 1], false),
            case([1, 16, 20, 3], [9, 1], Some([1, 1]), [4, 0], [1, 1], false),
            case([2, 24, 11, 7], [2, 2], Some([3, 3]), [1, 1], [1, 1], true),
            case([2, 64, 40, 40], [3, 3], Some([1, 1]), [1, 1], [1, 1], false),
        ];
        if with_dilation {
            // Windows with no input element: along H every window starts in the padding and
            // its first dilated tap lands past the single row. PyTorch reports -inf there and
            // the index of that first tap (outside the plane); 40 channels take the 32- and
            // 8-channel blocks, and no kernel may read the tap.
            cases.push(case([2, 40, 1, 6], [2, 2], Some([1, 2]), [1, 1], [2, 2], false));
        }
        cases
    }

    fn geometry(c: &Case) -> WindowGeometry {
        plan_window_pool("test", &c.shape, c.kernel, c.stride, c.padding, c.dilation, c.ceil).unwrap()
    }

    fn avg_reference<T: FloatElement>(g: &WindowGeometry, rule: AvgRule, layout: Layout, x: &[T]) -> Vec<T> {
        let mut y = vec![T::default(); g.output_len()];
        for (n, c, oh, ow) in outputs(g) {
            let win = g.avg_window(oh, ow, rule);
            let mut sum = T::Acc::zero();
            let separable = match layout {
                Layout::Nchw => avg_nchw_is_separable::<T>(g),
                Layout::Nhwc => avg_nhwc_is_separable::<T>(g),
            };
            for h in win.h0..win.h1 {
                // Separable: each row's sum from +0, then the row sums in order.
                let mut row_sum = T::Acc::zero();
                for w in win.w0..win.w1 {
                    let v = x[offset(layout, [n, c, h, w], [g.c, g.h, g.w])].to_acc();
                    if separable {
                        row_sum += v;
                    } else {
                        sum += v;
                    }
                }
                if separable {
                    sum += row_sum;
                }
            }
            let at = offset(layout, [n, c, oh, ow], [g.c, g.out_h, g.out_w]);
            y[at] = T::from_acc(sum / acc_from_f64::<T::Acc>(win.divisor as f64));
        }
        y
    }

    fn max_reference<T: FloatElement>(g: &WindowGeometry, layout: Layout, x: &[T]) -> (Vec<T>, Vec<i64>) {
        let mut y = vec![T::default(); g.output_len()];
        let mut ind = vec![-1i64; g.output_len()];
        for (n, c, oh, ow) in outputs(g) {
            let ((h0, h1), (w0, w1)) = (g.max_taps_h(oh), g.max_taps_w(ow));
            let (mut m, mut mi) = (T::neg_infinity().to_acc(), (h0 * g.w + w0) as i64);
            for h in (h0..h1).step_by(g.dilation[0]) {
                for w in (w0..w1).step_by(g.dilation[1]) {
                    let v = x[offset(layout, [n, c, h, w], [g.c, g.h, g.w])].to_acc();
                    if v > m || v.is_nan() {
                        m = v;
                        mi = (h * g.w + w) as i64;
                    }
                }
            }
            let at = offset(layout, [n, c, oh, ow], [g.c, g.out_h, g.out_w]);
            y[at] = T::from_acc(m);
            ind[at] = mi;
        }
        (y, ind)
    }

    fn outputs(g: &WindowGeometry) -> impl Iterator<Item = (usize, usize, usize, usize)> + '_ {
        (0..g.n).flat_map(move |n| {
            (0..g.c).flat_map(move |c| {
                (0..g.out_h).flat_map(move |oh| (0..g.out_w).map(move |ow| (n, c, oh, ow)))
            })
        })
    }

    fn assert_same<T: FloatElement>(got: &[T], want: &[T], what: &str) {
        assert_eq!(got.len(), want.len());
        for (i, (a, b)) in got.iter().zip(want).enumerate() {
            assert!(same(*a, *b), "{what} {:?} at {i}: got {a:?}, want {b:?}", T::DTYPE);
        }
    }

    fn avg_all<T: FloatElement>() {
        let rules = [
            AvgRule { count_include_pad: true, divisor_override: None },
            AvgRule { count_include_pad: false, divisor_override: None },
            AvgRule { count_include_pad: true, divisor_override: Some(-3) },
            AvgRule { count_include_pad: false, divisor_override: Some(5) },
        ];
        for c in cases(false) {
            let g = geometry(&c);
            let seed = g.input_len() as u64;
            // Random values, and NaN, infinities of both signs (whose sums are NaN) and ties.
            for (data, x) in
                [("random", random::<T>(g.input_len(), seed)), ("special", special(g.input_len(), seed))]
            {
                for layout in [Layout::Nchw, Layout::Nhwc] {
                    for rule in rules {
                        let mut y = vec![T::from_f64(9.0); g.output_len()];
                        avg_pool2d(&g, rule, layout, &x, &mut y);
                        let what = format!("avg {data} {:?} {layout:?} {rule:?}", c.shape);
                        assert_same(&y, &avg_reference(&g, rule, layout, &x), &what);
                    }
                }
            }
        }
    }

    /// bf16 averages round their f32 sums without a NaN test on channels-last tiles
    /// (`simd::sum_bf16_in_high_half`): with NaN inputs of several payloads, signalling and
    /// negative ones included, and infinities of both signs (whose sum is the default NaN),
    /// every output is NaN where the reference's is, a quiet one, and the reference's bits
    /// elsewhere, on the direct 3x3 stride-2 path and the separable stride-1 one, in 64-, 32-
    /// and 8-channel blocks. (Which NaN payload a sum keeps is the compiler's choice, since
    /// it may swap an addition's operands, so payloads are not compared.)
    #[test]
    fn bf16_averages_of_nan_stay_quiet_nan() {
        use crate::cpu::test_util::Lcg;
        let rule = AvgRule { count_include_pad: false, divisor_override: None };
        let picks: [u16; 8] = [0x7f81, 0xff81, 0x7fc1, 0xffff, 0x7f80, 0xff80, 0x3f80, 0xc0a0];
        for shape in [[2, 104, 7, 7], [1, 64, 9, 8]] {
            for stride in [[2, 2], [1, 1]] {
                let g = geometry(&case(shape, [3, 3], Some(stride), [1, 1], [1, 1], false));
                let mut r = Lcg::new(7);
                // About one input in 24 is special, so some windows stay finite.
                let x: Vec<half::bf16> = (0..g.input_len())
                    .map(|_| match r.next_u32() % 24 {
                        k @ 0..8 => half::bf16::from_bits(picks[k as usize]),
                        k => half::bf16::from_f64(f64::from(k) * 0.37 - 4.0),
                    })
                    .collect();
                for avx2_only in [false, true] {
                    simd::AVX2_ONLY.store(avx2_only, std::sync::atomic::Ordering::Relaxed);
                    let mut y = vec![half::bf16::from_f64(9.0); g.output_len()];
                    avg_pool2d(&g, rule, Layout::Nhwc, &x, &mut y);
                    let want = avg_reference(&g, rule, Layout::Nhwc, &x);
                    assert!(want.iter().any(|v| v.is_nan()) && want.iter().any(|v| v.is_finite()));
                    for (i, (a, b)) in y.iter().zip(&want).enumerate() {
                        let what = format!("{shape:?} stride {stride:?} at {i}: {:#x}", a.to_bits());
                        assert!(same(*a, *b), "{what}, want {:#x}", b.to_bits());
                        assert!(!a.is_nan() || a.to_bits() & 0x7fc0 == 0x7fc0, "{what}: not a quiet NaN");
                    }
                }
            }
        }
        simd::AVX2_ONLY.store(false, std::sync::atomic::Ordering::Relaxed);
    }

    /// Outputs large enough for non-temporal stores (`simd::streams_output`,
    /// `simd::streams_window_output`), 16-byte aligned and not, through every channels-last
    /// path: the same bits as the direct loops.
    fn large_outputs<T: FloatElement>() {
        let rule = AvgRule { count_include_pad: false, divisor_override: None };
        for (stride, padding) in [([1, 1], [1, 1]), ([2, 2], [1, 1])] {
            // 4.7 MB (bf16) and 9.4 MB (f32) outputs.
            let shape = if stride[0] == 1 { [4, 64, 96, 96] } else { [4, 64, 192, 192] };
            let c = case(shape, [3, 3], Some(stride), padding, [1, 1], false);
            let g = geometry(&c);
            let x: Vec<T> = random(g.input_len(), 17);
            let want_avg = avg_reference(&g, rule, Layout::Nhwc, &x);
            let (want_max, want_ind) = max_reference(&g, Layout::Nhwc, &x);
            for offset in [0, 1] {
                let mut buffer = vec![T::from_f64(9.0); g.output_len() + 1];
                let y = &mut buffer[offset..offset + g.output_len()];
                // A fresh allocation this large is 16-byte aligned; one element in, it is not.
                // The stride-1 average's separable path streams f32 outputs only; the direct
                // windows (stride-2 average, max without indices) stream both types.
                assert_eq!(simd::streams_output(y), offset == 0 && T::DTYPE == crate::DType::F32);
                #[cfg(target_arch = "x86_64")]
                assert_eq!(simd::streams_window_output(y, g.c), offset == 0);
                let what = format!("{:?} stride {stride:?} offset {offset}", T::DTYPE);
                avg_pool2d(&g, rule, Layout::Nhwc, &x, y);
                assert_same(y, &want_avg, &format!("avg {what}"));
                y.fill(T::from_f64(9.0));
                let mut ind = vec![-1i64; g.output_len()];
                max_pool2d(&g, Layout::Nhwc, &x, y, Some(&mut ind));
                assert_same(y, &want_max, &format!("max with indices {what}"));
                assert_eq!(ind, want_ind, "indices {what}");
                y.fill(T::from_f64(9.0));
                max_pool2d(&g, Layout::Nhwc, &x, y, None);
                assert_same(y, &want_max, &format!("max {what}"));
            }
        }
    }

    /// Channels-last inputs starting at every element of a 64-byte line, so that
    /// `simd::pool_windows` splits the channels at the first line boundary every way it can
    /// (a lead of 1 to 15 f32 or 1 to 31 bf16 channels, a body, a last block that overlaps
    /// it, scalar channels past the last block of 8, pixel strides of 64 bytes and not; too
    /// few channels to split): the same bits as the direct loops.
    fn misaligned_inputs<T: FloatElement>() {
        let rule = AvgRule { count_include_pad: false, divisor_override: None };
        for shape in [[1, 256, 3, 4], [1, 264, 5, 4], [1, 301, 4, 5], [1, 72, 5, 5]] {
            // 3x3 stride 1: the separable average on 8k channels, direct otherwise.
            for (kernel, stride) in [([3, 3], [2, 2]), ([2, 2], [2, 2]), ([3, 3], [1, 1])] {
                let g = geometry(&case(
                    shape,
                    kernel,
                    Some(stride),
                    [kernel[0] / 2, kernel[1] / 2],
                    [1, 1],
                    false,
                ));
                let x: Vec<T> = random(g.input_len(), 5);
                let want_avg = avg_reference(&g, rule, Layout::Nhwc, &x);
                let (want_max, want_ind) = max_reference(&g, Layout::Nhwc, &x);
                let mut buffer = vec![T::from_f64(0.0); g.input_len() + 64];
                let line = (64 - buffer.as_ptr() as usize % 64) % 64 / std::mem::size_of::<T>();
                for offset in 0..64 / std::mem::size_of::<T>() {
                    let (start, bytes) = (line + offset, offset * std::mem::size_of::<T>());
                    let xs = &mut buffer[start..start + g.input_len()];
                    xs.copy_from_slice(&x);
                    let xs = &*xs;
                    let what = format!("{:?} {shape:?} k{kernel:?} at {bytes} bytes past a line", T::DTYPE);
                    let mut y = vec![T::from_f64(9.0); g.output_len()];
                    avg_pool2d(&g, rule, Layout::Nhwc, xs, &mut y);
                    assert_same(&y, &want_avg, &format!("avg {what}"));
                    let mut ind = vec![-1i64; g.output_len()];
                    max_pool2d(&g, Layout::Nhwc, xs, &mut y, Some(&mut ind));
                    assert_same(&y, &want_max, &format!("max with indices {what}"));
                    assert_eq!(ind, want_ind, "indices {what}");
                    max_pool2d(&g, Layout::Nhwc, xs, &mut y, None);
                    assert_same(&y, &want_max, &format!("max {what}"));
                }
            }
        }
    }

    #[test]
    fn channels_last_inputs_at_every_line_offset_match_the_direct_loop() {
        for avx2_only in [false, true] {
            simd::AVX2_ONLY.store(avx2_only, std::sync::atomic::Ordering::Relaxed);
            misaligned_inputs::<f32>();
            misaligned_inputs::<half::bf16>();
        }
        simd::AVX2_ONLY.store(false, std::sync::atomic::Ordering::Relaxed);
    }

    #[test]
    fn large_channels_last_outputs_streamed_or_not_match_the_direct_loop() {
        large_outputs::<f32>();
        large_outputs::<half::bf16>();
    }

    #[test]
    fn avg_pool_matches_the_direct_loop_bit_for_bit() {
        // bf16 channels-last blocks run in AVX-512 registers where the CPU has them: both ways.
        for avx2_only in [false, true] {
            simd::AVX2_ONLY.store(avx2_only, std::sync::atomic::Ordering::Relaxed);
            for_all_floats!(avg_all);
        }
        simd::AVX2_ONLY.store(false, std::sync::atomic::Ordering::Relaxed);
    }

    fn max_all<T: FloatElement>() {
        for c in cases(false).into_iter().chain(cases(true)) {
            let g = geometry(&c);
            let seed = g.input_len() as u64;
            for x in [
                random::<T>(g.input_len(), 3),
                special::<T>(g.input_len(), seed),
                rare_nan::<T>(g.input_len(), seed),
                zeros_at_most::<T>(g.input_len(), seed),
            ] {
                for layout in [Layout::Nchw, Layout::Nhwc] {
                    let what = format!("max {:?} d{:?} {layout:?}", c.shape, c.dilation);
                    let (want, want_ind) = max_reference(&g, layout, &x);
                    let mut y = vec![T::from_f64(9.0); g.output_len()];
                    let mut ind = vec![-7i64; g.output_len()];
                    max_pool2d(&g, layout, &x, &mut y, Some(&mut ind));
                    assert_same(&y, &want, &what);
                    assert_eq!(ind, want_ind, "{what} indices");
                    let mut y2 = vec![T::from_f64(9.0); g.output_len()];
                    max_pool2d(&g, layout, &x, &mut y2, None);
                    assert_same(&y2, &want, &what);
                }
            }
        }
    }

    #[test]
    fn max_pool_matches_the_direct_loop_with_nan_inf_and_ties() {
        // bf16 channels-last blocks, and f32 ones with indices, run in AVX-512
        // registers where the CPU has them: both ways.
        for avx2_only in [false, true] {
            simd::AVX2_ONLY.store(avx2_only, std::sync::atomic::Ordering::Relaxed);
            for_all_floats!(max_all);
        }
        simd::AVX2_ONLY.store(false, std::sync::atomic::Ordering::Relaxed);
    }

    /// bf16 and f16 channels-last max with indices compare the bits as integer keys
    /// (`simd.rs`, `max_block_keys16`): random bit patterns of every exponent, both signs and
    /// subnormals; ties of signed zeros, the smallest subnormals and infinities; rare NaNs of
    /// both signs (their blocks fall back to the f32 rule); and a plane of 66,000 pixels,
    /// where the windows past index 65535 take the f32 rule too.
    fn max_by_integer_keys<T: FloatElement>(from_bits: fn(u16) -> T, infinity: u16, one: u16) {
        use crate::cpu::test_util::Lcg;
        let is_nan = |bits: u16| bits & 0x7fff > infinity;
        let bits = |len: usize, seed: u64, pick: &dyn Fn(u32) -> u16| -> Vec<T> {
            let mut r = Lcg::new(seed);
            (0..len).map(|_| from_bits(pick(r.next_u32()))).collect()
        };
        let any_but_nan = |u: u32| {
            let b = (u >> 7) as u16;
            if is_nan(b) {
                b & !infinity
            } else {
                b
            }
        };
        let ties = |u: u32| {
            [0x0000, 0x8000, 0x0001, 0x8001, infinity, infinity | 0x8000, one, one | 0x8000]
                [(u >> 8) as usize % 8]
        };
        // NaNs of both signs.
        let rare_nans = |u: u32| match u % 509 {
            0 => infinity | 0x0041,
            1 => infinity | 0x8000 | (infinity >> 1 & !infinity),
            _ => any_but_nan(u),
        };
        let cases = [
            case([2, 64, 7, 7], [3, 3], Some([2, 2]), [1, 1], [1, 1], false),
            case([3, 104, 6, 5], [2, 3], Some([1, 2]), [1, 1], [2, 1], true),
            case([1, 32, 2, 33_000], [2, 3], Some([1, 2]), [0, 1], [1, 1], false),
        ];
        for avx2_only in [false, true] {
            simd::AVX2_ONLY.store(avx2_only, std::sync::atomic::Ordering::Relaxed);
            for c in &cases {
                let g = geometry(c);
                let len = g.input_len();
                for (kind, x) in [
                    ("bits", bits(len, 1, &any_but_nan)),
                    ("ties", bits(len, 2, &ties)),
                    ("rare NaN", bits(len, 3, &rare_nans)),
                ] {
                    assert_eq!(x.iter().any(|v| v.is_nan()), kind == "rare NaN", "{kind}");
                    let what = format!("{:?} {kind} {:?} avx2_only {avx2_only}", T::DTYPE, c.shape);
                    let (want, want_ind) = max_reference(&g, Layout::Nhwc, &x);
                    let mut y = vec![T::from_f64(9.0); g.output_len()];
                    let mut ind = vec![-7i64; g.output_len()];
                    max_pool2d(&g, Layout::Nhwc, &x, &mut y, Some(&mut ind));
                    assert_same(&y, &want, &what);
                    assert_eq!(ind, want_ind, "{what} indices");
                }
            }
        }
        simd::AVX2_ONLY.store(false, std::sync::atomic::Ordering::Relaxed);
    }

    #[test]
    fn channels_last_16_bit_max_by_integer_keys_matches_the_direct_loop() {
        max_by_integer_keys(half::bf16::from_bits, 0x7f80, 0x3f80);
        max_by_integer_keys(half::f16::from_bits, 0x7c00, 0x3c00);
    }

    #[test]
    fn max_pool_special_windows() {
        // One plane 2x4, kernel 2x2, stride 2: windows {0,1,4,5} and {2,3,6,7}.
        let n = f32::NAN;
        let ninf = f32::NEG_INFINITY;
        let g = plan_window_pool("t", &[1, 1, 2, 4], [2, 2], None, [0, 0], [1, 1], false).unwrap();
        let cases: [([f32; 8], [f32; 2], [i64; 2]); 3] = [
            // Ties keep the first maximum; an all -inf window reports its first tap.
            ([1.0, 3.0, 3.0, ninf, 3.0, 0.0, ninf, ninf], [3.0, 3.0], [1, 2]),
            // NaN wins, and the last NaN in scan order is reported.
            ([n, 5.0, ninf, ninf, n, 1.0, ninf, ninf], [n, ninf], [4, 2]),
            ([ninf, ninf, 1.0, n, ninf, ninf, 2.0, 7.0], [ninf, n], [0, 3]),
        ];
        for (x, want, want_ind) in cases {
            for layout in [Layout::Nchw, Layout::Nhwc] {
                let (mut y, mut ind) = ([0.0f32; 2], [0i64; 2]);
                max_pool2d(&g, layout, &x, &mut y, Some(&mut ind));
                assert!(y.iter().zip(&want).all(|(a, b)| same(*a, *b)), "{x:?}: {y:?}");
                assert_eq!(ind, want_ind, "{x:?}");
            }
        }
    }
}
