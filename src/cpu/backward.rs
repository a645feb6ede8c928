//! CPU backward passes of the pooling ops, deterministic and bit-for-bit repeatable.
//!
//! Average pooling (windowed and adaptive) is a gather: every output's share `g / divisor` is
//! computed once in `T::Acc` (one division, rounded once in `Acc`), then each input element sums
//! the shares of the outputs whose windows cover it, in ascending `(oh, ow)` order, starting from
//! zero, and rounds once to `T`. That is exactly the order the CUDA kernels in
//! kernels/backward.cu add in, so both devices agree bit for bit. Work is split over input rows
//! (rayon), so even one image keeps every core busy. NCHW gathers over small planes of shares
//! (the 7x7 tails) run eight planes at a time in the lane path (`lanes.rs`): the covering
//! outputs of each input element are a window over the plane of shares, summed in the same
//! order.
//!
//! Max pooling (windowed and adaptive) scatters each plane (NCHW) or image (NHWC) serially in
//! ascending output order into zeroed accumulators (channels-last images fewer than the
//! threads gather the same terms in the same order instead: `gather_max_nhwc`, or, with few
//! channels, scatter in bands of output rows: `scatter_max_nhwc_bands`, so that one image
//! still splits over the cores); each rayon task first checks its own indices
//! (any index outside `[0, H*W)` makes the function return `true`; a task holding one writes
//! nothing, so nothing outside `grad_in` is ever written).
//! A per-plane serial scatter is deterministic too and on one core no slower than a gather, and it
//! adds the same terms in the same order as the CUDA gather. Indices that lie in the plane but
//! outside their output's window are honoured, as by PyTorch's CPU kernel (the CUDA gather
//! honours them too, through its audit; PyTorch's CUDA kernel drops them).

use super::lanes::{self, LanePlane, LaneWindow, PlanePooling};
use super::{items_per_task, simd, AccScratch};
use crate::dtype::FloatElement;
use crate::ops::adaptive::{adaptive_end, adaptive_start, AdaptiveGeometry};
use crate::ops::window::{AvgRule, WindowGeometry};
use crate::ops::Layout;
use num_traits::{Float, NumCast, Zero};
use rayon::prelude::*;
use std::any::TypeId;
use std::ops::Range;

/// Converts a small integer or a divisor to the accumulator type (exact for every divisor a
/// valid geometry produces; rounds to nearest otherwise, as a C cast does).
#[inline]
fn acc_from<A: NumCast + Zero, V: num_traits::ToPrimitive>(v: V) -> A {
    A::from(v).unwrap_or_else(A::zero)
}

/// For each input coordinate along one axis of a windowed pool, the outputs whose windows
/// (extent `reach` from `o * stride - pad`) contain it: `[lo, hi)`, clipped to `[0, out)`.
fn window_ranges(size: usize, out: usize, stride: usize, pad: usize, reach: usize) -> Vec<Range<usize>> {
    (0..size)
        .map(|i| {
            let ip = i + pad;
            let lo = if ip < reach { 0 } else { (ip - reach) / stride + 1 };
            let hi = (ip / stride + 1).min(out);
            lo..hi.max(lo)
        })
        .collect()
}

/// For each input coordinate along one axis of an adaptive pool, the outputs whose windows
/// `[start(o), end(o))` contain it. The set is contiguous because starts and ends are monotonic.
fn adaptive_ranges(size: usize, out: usize) -> Vec<Range<usize>> {
    (0..size)
        .map(|i| {
            let lo = (i * out) / size;
            let hi = ((i + 1) * out).div_ceil(size).min(out);
            let mut first = hi;
            let mut last = lo;
            for o in lo..hi {
                if adaptive_start(o, out, size) <= i && i < adaptive_end(o, out, size) {
                    first = first.min(o);
                    last = o + 1;
                }
            }
            if first >= last {
                0..0
            } else {
                first..last
            }
        })
        .collect()
}

/// The gather shared by both average-pooling backwards: `shares` holds each output's `g/div` in
/// `Acc` (pooled shape, `layout`); `rows`/`cols` give the covering outputs of each input row and
/// column. Parallel over input rows: (n, c, h) for NCHW, (n, h) for NHWC.
fn gather_shares<T: FloatElement>(
    c: usize,
    (h, w, out_h, out_w): (usize, usize, usize, usize),
    layout: Layout,
    rows: &[Range<usize>],
    cols: &[Range<usize>],
    shares: &[T::Acc],
    grad_in: &mut [T],
) {
    if grad_in.is_empty() {
        return;
    }
    match layout {
        Layout::Nchw if gather_shares_in_lanes::<T>((h, w, out_h, out_w), rows, cols, shares, grad_in) => {}
        Layout::Nchw => gather_share_rows::<T>(1, (h, w, out_h, out_w), rows, cols, shares, grad_in),
        Layout::Nhwc if c < NHWC_ROWS_MAX_CHANNELS => {
            gather_share_rows::<T>(c, (h, w, out_h, out_w), rows, cols, shares, grad_in)
        }
        Layout::Nhwc => {
            let row_len = w * c;
            let rows_per_task = (16 * 1024 / row_len).max(longest_repeat::<T>(rows));
            grad_in.par_chunks_mut(row_len * rows_per_task).enumerate().for_each_init(
                || vec![T::Acc::zero(); c],
                |acc, (task, out_rows)| {
                    for k in 0..out_rows.len() / row_len {
                        let row = task * rows_per_task + k;
                        let (img, ih) = (row / h, row % h);
                        if k > 0 && repeats_previous::<T>(rows, ih) {
                            copy_previous_row(out_rows, k, row_len);
                            continue;
                        }
                        let out_row = &mut out_rows[k * row_len..(k + 1) * row_len];
                        let img_shares = &shares[img * out_h * out_w * c..(img + 1) * out_h * out_w * c];
                        simd::dispatch(
                            #[inline(always)]
                            || {
                                for (iw, dst) in out_row.chunks_exact_mut(c).enumerate() {
                                    let terms = rows[ih].len() * cols[iw].len();
                                    let mut k = 0;
                                    for oh in rows[ih].clone() {
                                        for ow in cols[iw].clone() {
                                            let src =
                                                &img_shares[(oh * out_w + ow) * c..(oh * out_w + ow + 1) * c];
                                            k += 1;
                                            add_term((k, terms), src, acc, dst);
                                        }
                                    }
                                    if terms == 0 {
                                        dst.fill(simd::store::<T>(T::Acc::zero()));
                                    }
                                }
                            },
                        );
                    }
                },
            );
        }
    }
}

/// Whether a 16-bit gradient's input row `ih` (of a plane or image) has the same covering
/// output rows as row `ih - 1`, and so the same values (a row depends only on its plane and
/// those output rows). Rows of one window repeat where windows do not overlap (adaptive
/// pooling to a smaller map, a stride equal to the kernel); the gathers then copy the row
/// instead of gathering and rounding it again. Adaptive average backward to 7x7, bf16, Zen 4,
/// scratch loops alternating the builds: from 112x112 (the early map) NCHW 2.3x to 2.6x
/// faster and channels-last 4.3x to 4.8x, from 56x56 channels-last 2.9x. f32 has no rounding
/// to save and measured mixed (channels-last 1.4x from 112x112 but 0.87x from 56x56, whose
/// 57 KB rows copy from L2; NCHW 0.96x), so it gathers every row.
#[inline(always)]
fn repeats_previous<T: FloatElement>(rows: &[Range<usize>], ih: usize) -> bool {
    !super::AccScratch::<T>::is_identity() && ih > 0 && rows[ih] == rows[ih - 1]
}

/// The rows a gather's task takes at least: for 16-bit gradients the longest run of input
/// rows with the same covering output rows, so that a task copies all but the first of each
/// run ([`repeats_previous`]); otherwise 1.
fn longest_repeat<T: FloatElement>(rows: &[Range<usize>]) -> usize {
    if super::AccScratch::<T>::is_identity() {
        return 1;
    }
    rows.chunk_by(|a, b| a == b).map(<[_]>::len).max().unwrap_or(1)
}

/// Copies row `k - 1` of `out_rows` (rows of `row_len` elements) into row `k`.
#[inline(always)]
fn copy_previous_row<T: Copy>(out_rows: &mut [T], k: usize, row_len: usize) {
    let (done, rest) = out_rows.split_at_mut(k * row_len);
    rest[..row_len].copy_from_slice(&done[(k - 1) * row_len..]);
}

/// Adds the `k`-th (from 1) of a gradient element run's `terms` rows of terms: the first
/// initialises `acc` as `+0.0 + term` (the same bits as adding it to zeroed accumulators, one
/// pass fewer), the last is added on the way to `out`, rounded once. A run of one term is a
/// single pass.
#[inline(always)]
fn add_term<T: FloatElement>((k, terms): (usize, usize), term: &[T::Acc], acc: &mut [T::Acc], out: &mut [T]) {
    let zero = T::Acc::zero();
    match (k == 1, k == terms) {
        (true, true) => {
            for (d, &v) in out.iter_mut().zip(term) {
                *d = simd::store::<T>(zero + v);
            }
        }
        (true, false) => {
            for (a, &v) in acc.iter_mut().zip(term) {
                *a = zero + v;
            }
        }
        (false, true) => {
            for ((d, &a), &v) in out.iter_mut().zip(acc.iter()).zip(term) {
                *d = simd::store::<T>(a + v);
            }
        }
        (false, false) => {
            for (a, &v) in acc.iter_mut().zip(term) {
                *a += v;
            }
        }
    }
}

/// Channels-last gathers with fewer channels than this run by rows ([`gather_share_rows`]):
/// the per-pixel gather's loops around a few channels cost more than its adds (a 3x3 stride-2
/// average's backward on 1x8x512x512 ran about 2x faster by rows).
const NHWC_ROWS_MAX_CHANNELS: usize = 32;

/// The gather by input rows: NCHW (`elem == 1`, a row is `w` elements) or NHWC with `elem ==
/// c` channels (a row is `w * c`). Parallel over input rows (n, c, h) or (n, h).
fn gather_share_rows<T: FloatElement>(
    elem: usize,
    (h, w, out_h, out_w): (usize, usize, usize, usize),
    rows: &[Range<usize>],
    cols: &[Range<usize>],
    shares: &[T::Acc],
    grad_in: &mut [T],
) {
    // Column j of input column iw's covering outputs, as an index into a share row padded
    // with one trailing +0.0 pixel (index out_w) where iw has fewer than j + 1 outputs.
    // Adding +0.0 is exact here (the accumulator starts at +0.0 and so is never -0.0), so the
    // padded, branch-free loop adds exactly the terms of the gather, in the same (oh, ow)
    // order: oh outer, then ow ascending.
    let taps = cols.iter().map(|r| r.len()).max().unwrap_or(0);
    let col_index: Vec<Vec<usize>> = (0..taps)
        .map(|j| cols.iter().map(|r| if j < r.len() { r.start + j } else { out_w }).collect())
        .collect();
    let (row_len, share_row, share_plane) = (w * elem, out_w * elem, out_h * out_w * elem);
    // Many short rows per rayon task: a task per 7-wide row would cost more than it does.
    let rows_per_task = (16 * 1024 / row_len).max(longest_repeat::<T>(rows));
    // Each share row is expanded once per task into `taps` rows of input width
    // (`expanded[j][iw] = share[col_index[j][iw]]`, `elem` values each) and kept while the
    // input rows that it covers go by: the indexed gather then runs once per (plane, oh)
    // instead of once per input row, and the per-row adds are contiguous, so they vectorise.
    // A ring of `max rows per input row + 1` slots keyed by (plane, oh) suffices because the
    // covering ranges of ascending input rows ascend. Same terms, same order.
    let slots = rows.iter().map(|r| r.len()).max().unwrap_or(0) + 1;
    grad_in.par_chunks_mut(row_len * rows_per_task).enumerate().for_each_init(
        || {
            (
                vec![T::Acc::zero(); row_len],
                vec![T::Acc::zero(); share_row + elem],
                ExpandedRows::<T::Acc>::new(slots, taps * row_len),
            )
        },
        |(acc, srow, expanded), (task, out_rows)| {
            simd::dispatch(
                #[inline(always)]
                || {
                    let first_row = task * rows_per_task;
                    let (mut plane, mut ih) = (first_row / h, first_row % h);
                    for k in 0..out_rows.len() / row_len {
                        if k > 0 && repeats_previous::<T>(rows, ih) {
                            copy_previous_row(out_rows, k, row_len);
                            ih += 1;
                            if ih == h {
                                (plane, ih) = (plane + 1, 0);
                            }
                            continue;
                        }
                        let out_row = &mut out_rows[k * row_len..(k + 1) * row_len];
                        let plane_shares = &shares[plane * share_plane..(plane + 1) * share_plane];
                        // The row's terms in order (adaptive pooling's disjoint windows give
                        // one term per row: a single pass).
                        let terms = rows[ih].len() * taps;
                        let mut k = 0;
                        for oh in rows[ih].clone() {
                            let e = expanded.get((plane, oh), |e| {
                                srow[..share_row]
                                    .copy_from_slice(&plane_shares[oh * share_row..(oh + 1) * share_row]);
                                for (ej, index) in e.chunks_exact_mut(row_len).zip(&col_index) {
                                    if elem == 1 {
                                        for (d, &i) in ej.iter_mut().zip(index) {
                                            *d = srow[i];
                                        }
                                    } else {
                                        for (d, &i) in ej.chunks_exact_mut(elem).zip(index) {
                                            d.copy_from_slice(&srow[i * elem..(i + 1) * elem]);
                                        }
                                    }
                                }
                            });
                            for ej in e.chunks_exact(row_len) {
                                k += 1;
                                add_term((k, terms), ej, acc, out_row);
                            }
                        }
                        if terms == 0 {
                            out_row.fill(simd::store::<T>(T::Acc::zero()));
                        }
                        ih += 1;
                        if ih == h {
                            (plane, ih) = (plane + 1, 0);
                        }
                    }
                },
            );
        },
    );
}

/// Gradient planes larger than this, with at least [`ROWS_MIN_INPUTS_PER_SHARE`] gradient
/// elements per share (large windows: adaptive pooling to a small map), gather by rows, not in
/// lanes. The lanes pay a reduction, a division and a transpose back per gradient element and
/// eight planes; by rows each expanded share row serves every input row of its window, so on
/// large windows the rows win: adaptive backward by rows 2.5x to 3x faster from 112x112 to
/// 7x7, 14x14 and 28x28 (f32; bf16 1.3x to 2.2x), 1.4x to 3x from 80x80 to 7x7 and 96x96 to
/// 24x24 (Zen 4). The lanes stay faster there on smaller planes (56x56 -> 7x7: 1.0x to 1.5x;
/// not so without AVX-512, see [`AVX2_ROWS_MIN_INPUTS_PER_SHARE`]) and on small
/// windows (a 3x3 stride-2 average's backward on 80x80 planes, 4 gradient elements per
/// share: 1.0x to 1.5x).
const LANE_GATHER_MAX_PLANE: usize = 4096;
/// See [`LANE_GATHER_MAX_PLANE`].
const ROWS_MIN_INPUTS_PER_SHARE: usize = 16;

/// On CPUs without AVX-512, whose lanes transpose with AVX2 shuffles only, f32 gradient
/// planes at least [`AVX2_ROWS_MIN_WIDTH`] wide with at least this many elements per share
/// gather by rows whatever their size. Measured on the Zen 3 VM (f32, NCHW adaptive backward,
/// both paths alternating in one process), rows against lanes: to 7x7 from 56x56 1.14x to
/// 1.58x, 49x49 1.48x, 63x63 1.29x, 64x64 1.14x, 42x42 (36 per share) 1.26x, but 35x35 (25)
/// 0.86x and 28x28 (16) 0.67x to 1.04x; to 1x1, 2x2 and 4x4 from 32x32 and 40x40 1.06x to
/// 1.24x, but from 28x28 0.77x to 0.89x, 14x14 0.57x and 7x7 0.42x (rows of a few elements
/// cost more per element than the lanes). bf16 measured even (0.95x to 1.15x on 42x42 to
/// 64x64), so it keeps the lanes; so do CPUs with AVX-512, where the lanes measured faster on
/// 56x56 (see [`LANE_GATHER_MAX_PLANE`]).
const AVX2_ROWS_MIN_INPUTS_PER_SHARE: usize = 36;
/// See [`AVX2_ROWS_MIN_INPUTS_PER_SHARE`].
const AVX2_ROWS_MIN_WIDTH: usize = 32;

/// Whether the NCHW gather of `h x w` gradient planes from `out_h x out_w` share planes runs
/// by rows rather than in the lanes: large planes of large windows
/// ([`LANE_GATHER_MAX_PLANE`]), and without AVX-512 wide f32 planes of large windows
/// ([`AVX2_ROWS_MIN_INPUTS_PER_SHARE`]).
fn rows_beat_lanes<T: 'static>((h, w): (usize, usize), (out_h, out_w): (usize, usize)) -> bool {
    let (plane, shares) = (h * w, out_h * out_w);
    if plane > LANE_GATHER_MAX_PLANE && plane >= ROWS_MIN_INPUTS_PER_SHARE * shares {
        return true;
    }
    #[cfg(target_arch = "x86_64")]
    let avx512 = simd::has_avx512();
    #[cfg(not(target_arch = "x86_64"))]
    let avx512 = false;
    TypeId::of::<T>() == TypeId::of::<f32>()
        && !avx512
        && w >= AVX2_ROWS_MIN_WIDTH
        && plane >= AVX2_ROWS_MIN_INPUTS_PER_SHARE * shares
}

/// The NCHW gather on small planes of shares, eight planes at a time in AVX2 lanes
/// ([`lanes`]): the outputs covering input element (ih, iw) are the window `rows[ih] x
/// cols[iw]` of the plane of shares, summed from +0 in ascending (oh, ow) order and rounded
/// once, exactly the gather's terms in the gather's order, so the same bits. Returns `false`,
/// having written nothing, where the lane path does not apply (an f64 accumulator, f16, share
/// planes larger than [`lanes::SMALL_PLANE`], planes the rows gather faster (see
/// [`rows_beat_lanes`]), no AVX2) or some input element has no covering output (an
/// empty window).
fn gather_shares_in_lanes<T: FloatElement>(
    (h, w, out_h, out_w): (usize, usize, usize, usize),
    rows: &[Range<usize>],
    cols: &[Range<usize>],
    shares: &[T::Acc],
    grad_in: &mut [T],
) -> bool {
    if TypeId::of::<T::Acc>() != TypeId::of::<f32>()
        || rows.iter().chain(cols).any(|r| r.is_empty())
        || rows_beat_lanes::<T>((h, w), (out_h, out_w))
    {
        return false;
    }
    let layout = LanePlane::unpadded(out_h, out_w);
    // Checked before the windows are built: one per gradient element, they cost a third of
    // a 512x512 plane's backward when the share plane then turned out too large for the lanes.
    if !lanes::applies::<f32>(layout.buffer_len()) || !lanes::applies::<T>(layout.buffer_len()) {
        return false;
    }
    let windows: Vec<LaneWindow> = (0..h * w)
        .map(|k| {
            let (r, c) = (&rows[k / w], &cols[k % w]);
            LaneWindow { h: (r.start, r.end, 1), w: (c.start, c.end, 1), first: 0, div: (1.0, 1.0) }
        })
        .collect();
    // SAFETY: `T::Acc` is f32 (checked above), so this views the same f32 values.
    let shares: &[f32] = unsafe { std::slice::from_raw_parts(shares.as_ptr().cast(), shares.len()) };
    let (share_plane, grad_plane) = (out_h * out_w, h * w);
    let taps = windows.iter().map(|win| (win.h.1 - win.h.0) * (win.w.1 - win.w.0)).sum::<usize>();
    let planes_per_task =
        items_per_task(taps.max(grad_plane), grad_in.len() / grad_plane).next_multiple_of(8);
    let pooling = PlanePooling::new(layout, windows);
    grad_in
        .par_chunks_mut(grad_plane * planes_per_task)
        .zip(shares.par_chunks(share_plane * planes_per_task))
        .all(|(g, s)| lanes::pool_planes::<f32, T, false, false>(&pooling, s, g, &mut []))
}

/// A small ring of expanded share rows keyed by (plane, oh) (see the NCHW gather). A row's
/// contents depend on its key only, so a slot stays valid from one rayon task to the next.
struct ExpandedRows<A> {
    keys: Vec<Option<(usize, usize)>>,
    data: Vec<A>,
    len: usize,
}

impl<A: Zero + Copy> ExpandedRows<A> {
    fn new(slots: usize, len: usize) -> Self {
        ExpandedRows { keys: vec![None; slots], data: vec![A::zero(); slots * len], len }
    }

    /// The expanded row of `key`, filled by `fill` unless its slot already holds it.
    #[inline(always)]
    fn get(&mut self, key: (usize, usize), fill: impl FnOnce(&mut [A])) -> &[A] {
        let slot = key.1 % self.keys.len();
        let data = &mut self.data[slot * self.len..(slot + 1) * self.len];
        if self.keys[slot] != Some(key) {
            fill(data);
            self.keys[slot] = Some(key);
        }
        data
    }
}

/// Every output's share `g / divisor` in `T::Acc` (pooled shape, `layout`), one division
/// each; `divisors` holds one divisor per output position (`oh * out_w + ow`), shared by
/// every plane (NCHW) or channel (NHWC), so the loops are plain zips that vectorise.
fn shares<T: FloatElement>(
    grad_out: &[T],
    (out_h, out_w, c): (usize, usize, usize),
    layout: Layout,
    divisors: &[T::Acc],
) -> Vec<T::Acc> {
    let len = grad_out.len();
    let out_plane = out_h * out_w;
    if len == 0 {
        return Vec::new();
    }
    // The SAFETY argument below relies on these.
    assert!(divisors.len() == out_plane && len.is_multiple_of(out_plane * c), "shares: bad shapes");
    // Written in place without zeroing first: a zeroing pass (single-threaded, in the
    // allocator) took a fifth of the whole backward on the EfficientNet tail.
    let mut out = Vec::with_capacity(len);
    // Chunks of whole planes (NCHW) or whole images (NHWC), about 16 K elements each.
    let chunk = match layout {
        Layout::Nchw => out_plane,
        Layout::Nhwc => out_plane * c,
    };
    let per_task = (16 * 1024 / chunk).max(1);
    out.spare_capacity_mut()[..len]
        .par_chunks_mut(chunk)
        .zip(grad_out.par_chunks(chunk))
        .with_min_len(per_task)
        .for_each(|(dst, src)| {
            simd::dispatch(
                #[inline(always)]
                || match layout {
                    Layout::Nchw => {
                        for ((d, &g), &div) in dst.iter_mut().zip(src).zip(divisors) {
                            d.write(simd::load(g) / div);
                        }
                    }
                    Layout::Nhwc => {
                        for ((dst, src), &div) in
                            dst.chunks_exact_mut(c).zip(src.chunks_exact(c)).zip(divisors)
                        {
                            for (d, &g) in dst.iter_mut().zip(src) {
                                d.write(simd::load(g) / div);
                            }
                        }
                    }
                },
            )
        });
    // SAFETY: the first `len` spare elements were split into chunks of `chunk` elements (`len`
    // is a multiple of it, asserted above), each zipped with a chunk of `grad_out` of
    // the same length and with `divisors` (one per output position, `out_plane` of them), so
    // every element was written above; `len <= capacity`.
    unsafe { out.set_len(len) };
    out
}

/// The gradient where there is no output: no output's gradient reaches any input element.
fn fill_zero<T: FloatElement>(grad_in: &mut [T]) {
    let zero = simd::store::<T>(T::Acc::zero());
    grad_in.par_iter_mut().for_each(|v| *v = zero);
}

/// Gradient of `avg_pool2d`: each input element sums `g / divisor` over the outputs whose
/// clipped window contains it (PyTorch's divisor rule, as in the forward pass).
pub fn avg_pool2d_backward<T: FloatElement>(
    g: &WindowGeometry,
    rule: AvgRule,
    layout: Layout,
    grad_out: &[T],
    grad_in: &mut [T],
) {
    if g.output_len() == 0 {
        fill_zero(grad_in);
        return;
    }
    let divisors: Vec<T::Acc> = g.avg_divisors(rule).into_iter().map(acc_from::<T::Acc, i64>).collect();
    let shares = shares::<T>(grad_out, (g.out_h, g.out_w, g.c), layout, &divisors);
    // An input row lies in an output's clipped window exactly when it lies in the unclipped
    // one (clipping only removes rows outside [0, H)), so the ranges need no further test.
    let rows = window_ranges(g.h, g.out_h, g.stride[0], g.padding[0], g.kernel[0]);
    let cols = window_ranges(g.w, g.out_w, g.stride[1], g.padding[1], g.kernel[1]);
    gather_shares::<T>(g.c, (g.h, g.w, g.out_h, g.out_w), layout, &rows, &cols, &shares, grad_in);
}

/// Gradient of `adaptive_avg_pool2d`: each input element sums `g / (kh * kw)` over the outputs
/// whose window contains it.
pub fn adaptive_avg_pool2d_backward<T: FloatElement>(
    g: &AdaptiveGeometry,
    layout: Layout,
    grad_out: &[T],
    grad_in: &mut [T],
) {
    if g.output_len() == 0 {
        fill_zero(grad_in);
        return;
    }
    let divisors: Vec<T::Acc> = (0..g.out_h * g.out_w)
        .map(|k| {
            let ((h0, h1), (w0, w1)) = (g.rows(k / g.out_w), g.cols(k % g.out_w));
            acc_from::<T::Acc, usize>((h1 - h0) * (w1 - w0))
        })
        .collect();
    let shares = shares::<T>(grad_out, (g.out_h, g.out_w, g.c), layout, &divisors);
    let rows = adaptive_ranges(g.h, g.out_h);
    let cols = adaptive_ranges(g.w, g.out_w);
    gather_shares::<T>(g.c, (g.h, g.w, g.out_h, g.out_w), layout, &rows, &cols, &shares, grad_in);
}

/// Whether any index lies outside `[0, plane)` (a negative index wraps to a huge `u64`, so one
/// unsigned compare covers both ends; the fold has no early exit, so it vectorises).
#[inline(always)]
fn any_index_outside(indices: &[i64], plane: usize) -> bool {
    indices.iter().fold(false, |bad, &i| bad | (i as u64 >= plane as u64))
}

/// The channels-last max scatter's adds: for each output pixel's `c` channels in `grad_out`
/// and `indices`, in order, `acc[(i - pixels.start) * c + ch] += grad`, where `acc` holds the
/// accumulators of the pixels from `pixels.start` on. Each index is checked against `pixels`
/// (and `acc`'s length) as it is added: `false`, having added the terms before it, at the
/// first index outside. Every caller used to check all its indices in a pass of its own
/// first, which on the 7x7 tails read them (8 bytes an output, 4 MB on the ResNet tail) once
/// more from L3. Checking each output pixel's indices in one vectorised pass just before its
/// adds measured 0.79x to 0.87x this form on the tails and 0.94x to 1.03x on the early map
/// and the long rows (one scratch binary switching the two, alternating in one process).
#[inline(always)]
fn add_channel_terms<T: FloatElement>(
    c: usize,
    pixels: Range<usize>,
    grad_out: &[T],
    indices: &[i64],
    acc: &mut [T::Acc],
) -> bool {
    // A negative index, or one below `start`, wraps to a huge value: one unsigned compare.
    let (start, span) = (pixels.start as u64, pixels.len().min(acc.len() / c.max(1)) as u64);
    for (go, idx) in grad_out.chunks_exact(c).zip(indices.chunks_exact(c)) {
        for (ch, (&g, &i)) in go.iter().zip(idx).enumerate() {
            let at = (i as u64).wrapping_sub(start);
            if at >= span {
                return false;
            }
            // SAFETY: `at < span <= acc.len() / c` (checked just above) and `ch < c`, so the
            // element lies below `acc.len()`.
            unsafe { *acc.get_unchecked_mut(at as usize * c + ch) += simd::load(g) };
        }
    }
    true
}

/// `x` as accumulator values when `T` is its own accumulator (f32, f64); `None` otherwise.
#[inline(always)]
fn acc_view_mut<T: FloatElement>(x: &mut [T]) -> Option<&mut [T::Acc]> {
    if super::AccScratch::<T>::is_identity() {
        // SAFETY: `T` and `T::Acc` are the same type (equal `TypeId`s), so pointer, length,
        // alignment and validity are unchanged, and the borrow of `x` is moved into the result.
        Some(unsafe { std::slice::from_raw_parts_mut(x.as_mut_ptr().cast::<T::Acc>(), x.len()) })
    } else {
        None
    }
}

/// Elements one block of the max scatter covers (whole planes or images, at least one): for
/// 16-bit types small enough that the f32 accumulators stay in L1 between zeroing, adding and
/// rounding; on small planes also the runs of four planes that NCHW scatters in step.
const SCATTER_BLOCK: usize = 4096;

/// Scatters whole planes (NCHW) or images (NHWC), each `item` input elements long with `outs`
/// outputs, into `dst`, a block of whole items at a time: `add_block` zeroes a block's
/// accumulators and adds every output's gradient at its index, each item in ascending output
/// order. f32/f64 accumulate straight into `dst`; 16-bit types accumulate into `acc` and are
/// rounded once per block, so small planes (7x7) share one vectorised conversion instead of
/// each ending in a scalar tail.
#[inline(always)]
fn scatter_items<T: FloatElement>(
    (item, outs): (usize, usize),
    add_block: impl Fn(&mut [T::Acc], &[T], &[i64]),
    grad_out: &[T],
    indices: &[i64],
    dst: &mut [T],
    acc: &mut Vec<T::Acc>,
) {
    let per_block = (SCATTER_BLOCK / item).max(1);
    let blocks = dst
        .chunks_mut(per_block * item)
        .zip(grad_out.chunks(per_block * outs).zip(indices.chunks(per_block * outs)));
    for (dst, (go, idx)) in blocks {
        if let Some(dst) = acc_view_mut(dst) {
            add_block(dst, go, idx);
            continue;
        }
        acc.resize(acc.len().max(dst.len()), T::Acc::zero());
        let acc = &mut acc[..dst.len()];
        add_block(acc, go, idx);
        simd::store_slice(dst, acc);
    }
}

/// Scatters `P` NCHW planes (`plane` input elements and `outs` outputs each) into `a` in step:
/// output `o` of every plane, then output `o + 1`. Their adds are independent, so a plane whose
/// outputs share a maximum (a dependency through memory) does not stall the others; each
/// plane's own order, ascending outputs, is unchanged. Every index must be validated
/// (`0 <= i < plane`).
#[inline(always)]
fn scatter_planes_in_step<T: FloatElement, const P: usize>(
    (plane, outs): (usize, usize),
    grad_out: &[T],
    indices: &[i64],
    a: &mut [T::Acc],
) {
    assert!(a.len() == P * plane && grad_out.len() == P * outs && indices.len() == P * outs);
    for o in 0..outs {
        for p in 0..P {
            let (g, i) = (grad_out[p * outs + o], indices[p * outs + o]);
            // SAFETY: `0 <= i < plane` (validated by the caller) and `p < P`, so the element
            // lies below `P * plane == a.len()` (asserted above).
            unsafe { *a.get_unchecked_mut(p * plane + i as usize) += simd::load(g) };
        }
    }
}

/// The scatter shared by both max-pooling backwards: scatters each task's planes (NCHW, whose
/// indices it validates first) or images (NHWC, whose indices are checked as they are added).
/// Returns `true` when some index lies outside `[0, h*w)`; the gradient is then partly
/// written, and the caller discards it. The 16-bit accumulators are this thread's last
/// ([`Reused`]): on the 7x7 tails, a fresh image of them in every task cost as much as the
/// adds. Those two changes together, on the 2-vCPU Xeon (Emerald Rapids) VM with one scratch
/// binary switching both, alternating in one process, channels-last 3x3 stride 2: bf16 the
/// ResNet tail (16x2048x7x7) 1.15x to 1.26x, the EfficientNet tail (8x1280x7x7) 1.5x to
/// 1.6x, batch 1 1.44x to 1.47x, 4x64x112x112 1.43x; f32 batch 1 1.22x, the tails 0.97x to
/// 1.32x; NCHW unchanged. With `extents` (NHWC images of [`ROW_SCATTER_MIN_ITEM`] elements and
/// more, decided by the caller: [`window_row_extents`]), each image scatters row by row
/// ([`scatter_max_nhwc_rows`]) where it can.
fn scatter_max<T: FloatElement>(
    (c, h, w, out_len_plane): (usize, usize, usize, usize),
    layout: Layout,
    extents: Option<&[Range<usize>]>,
    grad_out: &[T],
    indices: &[i64],
    grad_in: &mut [T],
) -> bool {
    let plane = h * w;
    let (item, outs) = match layout {
        Layout::Nchw => (plane, out_len_plane),
        Layout::Nhwc => (plane * c, out_len_plane * c),
    };
    if item == 0 {
        return false;
    }
    if outs == 0 {
        fill_zero(grad_in);
        return false;
    }
    let per_task = items_per_task(item + outs, grad_in.len() / item);
    grad_in
        .par_chunks_mut(item * per_task)
        .zip(grad_out.par_chunks(outs * per_task).zip(indices.par_chunks(outs * per_task)))
        .map_init(Reused::<Vec<T::Acc>>::take, |acc, (dst, (go, idx))| {
            let acc: &mut Vec<T::Acc> = acc;
            simd::dispatch(
                #[inline(always)]
                || {
                    // Channels-last scatters check each index as they add it (the row scatter
                    // against its window's rows); NCHW planes are checked here first.
                    if layout == Layout::Nchw && any_index_outside(idx, plane) {
                        return true;
                    }
                    match layout {
                        Layout::Nchw => {
                            let add = |a: &mut [T::Acc], go: &[T], idx: &[i64]| {
                                a.fill(T::Acc::zero());
                                let mut quads = a.chunks_exact_mut(4 * item);
                                let mut go_quads = go.chunks_exact(4 * outs);
                                let mut idx_quads = idx.chunks_exact(4 * outs);
                                for (a, (go, idx)) in
                                    quads.by_ref().zip(go_quads.by_ref().zip(idx_quads.by_ref()))
                                {
                                    scatter_planes_in_step::<T, 4>((item, outs), go, idx, a);
                                }
                                let rest = quads.into_remainder().chunks_exact_mut(item).zip(
                                    go_quads
                                        .remainder()
                                        .chunks_exact(outs)
                                        .zip(idx_quads.remainder().chunks_exact(outs)),
                                );
                                for (a, (go, idx)) in rest {
                                    scatter_planes_in_step::<T, 1>((item, outs), go, idx, a);
                                }
                            };
                            scatter_items((item, outs), add, go, idx, dst, acc);
                            false
                        }
                        Layout::Nhwc => {
                            let outside = std::cell::Cell::new(false);
                            let add = |a: &mut [T::Acc], go: &[T], idx: &[i64]| {
                                a.fill(T::Acc::zero());
                                let images = a
                                    .chunks_exact_mut(item)
                                    .zip(go.chunks_exact(outs).zip(idx.chunks_exact(outs)));
                                for (a, (go, idx)) in images {
                                    if !add_channel_terms(c, 0..plane, go, idx, a) {
                                        outside.set(true);
                                    }
                                }
                            };
                            let Some(extents) = extents else {
                                scatter_items((item, outs), add, go, idx, dst, acc);
                                return outside.get();
                            };
                            // An image the row scatter declines is scattered whole.
                            let images = dst
                                .chunks_exact_mut(item)
                                .zip(go.chunks_exact(outs).zip(idx.chunks_exact(outs)));
                            for (dst, (go, idx)) in images {
                                if !scatter_max_nhwc_rows(
                                    (c, w),
                                    extents,
                                    ROW_SCATTER_ACC_BYTES,
                                    go,
                                    idx,
                                    dst,
                                    acc,
                                ) {
                                    scatter_items((item, outs), add, go, idx, dst, acc);
                                }
                            }
                            outside.get()
                        }
                    }
                },
            )
        })
        .reduce(|| false, |a, b| a | b)
}

/// Channels-last images of at least this many elements scatter through
/// [`scatter_max_nhwc_rows`]: their whole-image accumulators (1 MiB of f32) would not stay in
/// L2.
const ROW_SCATTER_MIN_ITEM: usize = 1 << 18;

/// Bytes of accumulators (whole input rows, at least one) [`scatter_max_nhwc_rows`] holds.
const ROW_SCATTER_ACC_BYTES: usize = 256 << 10;

/// One channels-last image's max backward, scattered output row by output row into
/// accumulators that hold only the input rows still open. Output row `oh`'s windows read
/// input rows `extents[oh]`; these ranges move down the image (starts and ends
/// non-decreasing), so once row `oh` is reached, every input row above `extents[oh].start`
/// has all its terms and is rounded and written. Each element sums from zero in ascending
/// output order, as the whole-image scatter does, so the bits are the same; but its
/// accumulators stay in L2 instead of spanning the image (3.2 MB of f32 on the early map),
/// and each gradient element is written once, with no zeroing pass over the output. f32 and
/// f64, whose accumulators are the gradient itself, scatter in place instead
/// ([`scatter_max_nhwc_rows_in_place`]), zeroing each input row as the windows reach it.
///
/// Returns `false`, having written part of `grad_in`, when an index lies outside its output
/// row's window rows (PyTorch's never do), when the extents do not move down the image, or
/// when one window is taller than the accumulators; the caller scatters the image whole then.
/// `extents` holds `out_h` ranges ([`window_row_extents`]); the image is `grad_in.len() / (w *
/// c)` rows of `w` pixels of `c` channels, `grad_out` and `indices` its `out_h` rows of
/// outputs; `acc_bytes`: [`ROW_SCATTER_ACC_BYTES`] (tests pass less). Inlined into the
/// caller's AVX2 code ([`simd::dispatch`]).
#[inline(always)]
fn scatter_max_nhwc_rows<T: FloatElement>(
    (c, w): (usize, usize),
    extents: &[Range<usize>],
    acc_bytes: usize,
    grad_out: &[T],
    indices: &[i64],
    grad_in: &mut [T],
    acc: &mut Vec<T::Acc>,
) -> bool {
    let row_in = w * c;
    let out_h = extents.len();
    if row_in == 0 || out_h == 0 || !grad_out.len().is_multiple_of(out_h) {
        return false;
    }
    let (h, row_out) = (grad_in.len() / row_in, grad_out.len() / out_h);
    let monotonic = extents.windows(2).all(|e| e[0].start <= e[1].start && e[0].end <= e[1].end);
    if !monotonic || extents.iter().any(|e| e.end > h) {
        return false;
    }
    if AccScratch::<T>::is_identity() {
        // f32/f64 add straight into the gradient; `acc_view_mut` is `Some` for them.
        return acc_view_mut(grad_in).is_some_and(|grad_in| {
            scatter_max_nhwc_rows_in_place::<T>((c, w), extents, (grad_out, indices), grad_in)
        });
    }
    let capacity = (acc_bytes / (row_in * std::mem::size_of::<T::Acc>())).max(1);
    if extents.iter().any(|e| e.len() > capacity) {
        return false;
    }
    acc.resize(acc.len().max(capacity * row_in), T::Acc::zero());
    // Input rows `base..base + held` are open, in `acc`'s first `held` rows.
    let (mut base, mut held) = (0, 0);
    for (oh, rows) in extents.iter().enumerate() {
        // Rows above this window have all their terms; they are closed only when the window
        // would not fit otherwise, so that the rows kept open are moved rarely.
        if rows.end - base > capacity {
            close_rows(row_in, rows.start, (&mut base, &mut held), acc, grad_in);
        }
        while base + held < rows.end {
            acc[held * row_in..(held + 1) * row_in].fill(T::Acc::zero());
            held += 1;
        }
        let (go, idx) =
            (&grad_out[oh * row_out..(oh + 1) * row_out], &indices[oh * row_out..(oh + 1) * row_out]);
        // `base <= rows.start` and `rows.end <= base + held`: the window's rows are open, at
        // `acc` row `rows.start - base` on.
        let open = &mut acc[(rows.start - base) * row_in..(rows.end - base) * row_in];
        if !add_channel_terms(c, rows.start * w..rows.end * w, go, idx, open) {
            return false;
        }
    }
    close_rows(row_in, h, (&mut base, &mut held), acc, grad_in);
    true
}

/// [`scatter_max_nhwc_rows`] for types that are their own accumulators (f32, f64): the terms go
/// straight into `grad_in`, and each input row is zeroed just before the first output row
/// whose windows read it, rather than the whole image first. So each row is zeroed, added to
/// and left while it is in cache; zeroed up front, an image larger than L2 (3.2 MB on the
/// early map) had every row read back from L3 for its adds. The bits are the whole-image
/// scatter's: each element sums its terms from +0 in ascending output order.
///
/// Returns `false`, having written part of `grad_in`, when an index lies outside its output
/// row's window rows (PyTorch's never do); the caller then zeroes and scatters the image
/// whole. `extents` must move down the image and end inside it (checked by the caller).
#[inline(always)]
fn scatter_max_nhwc_rows_in_place<T: FloatElement>(
    (c, w): (usize, usize),
    extents: &[Range<usize>],
    (grad_out, indices): (&[T], &[i64]),
    grad_in: &mut [T::Acc],
) -> bool {
    let row_in = w * c;
    let row_out = grad_out.len() / extents.len();
    let mut zeroed = 0;
    for (oh, rows) in extents.iter().enumerate() {
        if rows.end > zeroed {
            grad_in[zeroed * row_in..rows.end * row_in].fill(T::Acc::zero());
            zeroed = rows.end;
        }
        let (go, idx) =
            (&grad_out[oh * row_out..(oh + 1) * row_out], &indices[oh * row_out..(oh + 1) * row_out]);
        let window_rows = &mut grad_in[rows.start * row_in..rows.end * row_in];
        if !add_channel_terms(c, rows.start * w..rows.end * w, go, idx, window_rows) {
            return false;
        }
    }
    grad_in[zeroed * row_in..].fill(T::Acc::zero());
    true
}

/// The input rows each of `out_h` output rows' windows read, from `rows`, the covering output
/// rows of each input row (empty where none covers it).
fn window_row_extents(rows: &[Range<usize>], out_h: usize) -> Vec<Range<usize>> {
    // (first, end) of each output row's input rows; (usize::MAX, 0) while none is seen.
    let mut extents = vec![(usize::MAX, 0); out_h];
    for (ih, outputs) in rows.iter().enumerate() {
        for (first, end) in &mut extents[outputs.start.min(out_h)..outputs.end.min(out_h)] {
            (*first, *end) = ((*first).min(ih), (*end).max(ih + 1));
        }
    }
    extents.into_iter().map(|(first, end)| if first > end { 0..0 } else { first..end }).collect()
}

/// [`scatter_max_nhwc_rows`]'s input rows `base..end` rounded out of `acc`, whose first `held`
/// rows of `row_in` elements are rows `base..base + held` (rows past them had no terms: zero);
/// the rows still open move to the front.
#[inline(always)]
fn close_rows<T: FloatElement>(
    row_in: usize,
    end: usize,
    (base, held): (&mut usize, &mut usize),
    acc: &mut [T::Acc],
    grad_in: &mut [T],
) {
    let done = (end - *base).min(*held);
    simd::store_slice(&mut grad_in[*base * row_in..(*base + done) * row_in], &acc[..done * row_in]);
    grad_in[(*base + done) * row_in..end * row_in].fill(simd::store::<T>(T::Acc::zero()));
    acc.copy_within(done * row_in..*held * row_in, 0);
    *held -= done;
    *base = end;
}

/// Outputs (pixels times channels) per task of [`scatter_max_nhwc_bands`]: a band's indices,
/// gradients and accumulators stay in L2.
const BAND_OUTPUTS: usize = 1 << 14;

/// One band's result in [`scatter_max_nhwc_bands`]: the terms it left for earlier bands (input
/// element, gradient, in its output order) and, for 16-bit types, the f32 sums of its open
/// tail (owned rows that later bands may still add to), rounded after those adds.
struct BandScatter<A> {
    deferred: Vec<(usize, A)>,
    tail: Vec<A>,
}

/// Channels-last max backward of images fewer than the threads, as a scatter split over bands
/// of output rows, so that one image keeps every core busy. Bit for bit the serial scatter:
/// each input element adds its terms from zero in ascending output order.
///
/// Input row `ih` belongs to the band of its first covering output row (`rows[ih].start`,
/// non-decreasing). A band zeroes its rows and adds its outputs' gradients there; a term that
/// lands in an earlier band's row is deferred, and after every band is done the deferred
/// terms are added after the earlier band's own, band by band in order (or every band at
/// once, where each band's terms all land in the band just before it, as they do for
/// windows no taller than a band), so each element still sees its terms in ascending output
/// order (an earlier band's outputs all come before). 16-bit types keep the rows a later
/// band can reach (`rows[ih].end` past the band) in f32 until then, and round every element
/// once. Returns `false`, leaving `grad_in` unspecified, when an index leaves its plane or
/// lands in a later band's rows, or in an earlier band's rows from an output row whose window
/// does not reach them, or a deferred term lands on a rounded row (each only where an index
/// lies outside its window, which PyTorch's never do), or the rows are not monotonic; the
/// caller scatters serially then.
///
/// Against the gather (see [`BAND_MAX_CHANNELS`] for where each runs): each term is one
/// read-modify-write in L2 instead of a compare against every covering output, and the
/// indices are read as they are, with no conversion pass; that wins with few channels, where
/// the gather's per-pixel loops cost more than its adds. `band_outputs`: outputs per band
/// ([`BAND_OUTPUTS`]; tests pass fewer, for many bands).
fn scatter_max_nhwc_bands<T: FloatElement>(
    (c, h, w): (usize, usize, usize),
    out_w: usize,
    rows: &[Range<usize>],
    band_outputs: usize,
    grad_out: &[T],
    indices: &[i64],
    grad_in: &mut [T],
) -> bool {
    let (plane, row_in, row_out) = (h * w, w * c, out_w * c);
    if plane == 0 || row_out == 0 || rows.len() != h || rows.windows(2).any(|p| p[0].start > p[1].start) {
        return false;
    }
    let out_h = grad_out.len() / (grad_in.len() / (plane * c) * row_out);
    let band = (band_outputs / row_out).max(1);
    let bands = out_h.div_ceil(band);
    // Band `u` owns input rows [own[u], own[u + 1]); its open tail starts at `tail[u]`.
    let own: Vec<usize> = (0..=bands)
        .map(|u| {
            if u == bands {
                h
            } else if u == 0 {
                0
            } else {
                rows.partition_point(|r| r.start < u * band)
            }
        })
        .collect();
    let tail: Vec<usize> = (0..bands)
        .map(|u| {
            let end = ((u + 1) * band).min(out_h);
            own[u] + rows[own[u]..own[u + 1]].partition_point(|r| r.end <= end)
        })
        .collect();
    let identity = AccScratch::<T>::is_identity();
    let images = grad_in
        .chunks_exact_mut(plane * c)
        .zip(grad_out.chunks_exact(out_h * row_out).zip(indices.chunks_exact(out_h * row_out)));
    for (image, (grad_out, indices)) in images {
        let mut parts = Vec::with_capacity(bands);
        let mut rest = &mut image[..];
        for u in 0..bands {
            let (part, after) = rest.split_at_mut((own[u + 1] - own[u]) * row_in);
            parts.push(part);
            rest = after;
        }
        let results: Vec<Option<BandScatter<T::Acc>>> = parts
            .into_par_iter()
            .enumerate()
            .map_init(Vec::new, |owned_acc, (u, dst)| {
                simd::dispatch(
                    #[inline(always)]
                    || {
                        let outs = (u * band * row_out)..((u + 1) * band).min(out_h) * row_out;
                        let (lo, hi) = (own[u] * w, own[u + 1] * w);
                        let acc: &mut [T::Acc] = match acc_view_mut(dst) {
                            Some(a) => a,
                            None => {
                                owned_acc.resize((hi - lo) * c, T::Acc::zero());
                                &mut owned_acc[..]
                            }
                        };
                        acc.fill(T::Acc::zero());
                        // The band's first output rows reach back into earlier bands' rows:
                        // each of their terms is added here or deferred. The rest land in the
                        // band's rows, checked as they are added.
                        let reach_back =
                            if u == 0 { 0 } else { rows[own[u] - 1].end.saturating_sub(u * band) * row_out };
                        let body = (outs.start + reach_back).min(outs.end);
                        let deferred = split_reach_back(
                            (c, lo, hi),
                            &grad_out[outs.start..body],
                            &indices[outs.start..body],
                            acc,
                        )?;
                        let (go, idx) = (&grad_out[body..outs.end], &indices[body..outs.end]);
                        // Past the reach-back rows an index outside the band's rows lies
                        // outside its window too. `acc` holds the accumulators of pixels
                        // `lo..hi`.
                        if !add_channel_terms(c, lo..hi, go, idx, acc) {
                            return None;
                        }
                        let mut tail_acc = Vec::new();
                        if !identity {
                            let split = (tail[u] - own[u]) * row_in;
                            simd::store_slice(&mut dst[..split], &owned_acc[..split]);
                            tail_acc = owned_acc[split..].to_vec();
                        }
                        Some(BandScatter { deferred, tail: tail_acc })
                    },
                )
            })
            .collect();
        let Some(mut results) = results.into_iter().collect::<Option<Vec<_>>>() else {
            return false;
        };
        // The deferred terms. A band's terms usually all land in the band just before it, in
        // the rows it holds: f32/f64 rows (all its rows) or the f32 tail of 16-bit types. Then
        // each band adds the next band's terms after its own and finishes its rows, the bands
        // in parallel. (Done serially, finding each term's band by a search and a division,
        // this was 13% of the long rows' `perf` samples, all on one core.)
        let first_held = |v: usize| if identity { own[v] } else { tail[v] };
        let next_only =
            (1..bands).all(|u| results[u].deferred.iter().all(|&(at, _)| at >= first_held(u - 1) * row_in));
        if next_only {
            let mut held = Vec::with_capacity(bands);
            let (mut rest, mut at) = (&mut image[..], 0);
            for v in 0..bands {
                let (start, end) = (first_held(v) * row_in, own[v + 1] * row_in);
                let (_, after) = rest.split_at_mut(start - at);
                let (rows, after) = after.split_at_mut(end - start);
                held.push(rows);
                (rest, at) = (after, end);
            }
            let deferred: Vec<_> = results.iter_mut().map(|r| std::mem::take(&mut r.deferred)).collect();
            held.into_par_iter().zip(results.par_iter_mut()).enumerate().for_each(|(v, (dst, r))| {
                let offset = first_held(v) * row_in;
                let terms = deferred.get(v + 1).map_or(&[][..], |d| &d[..]);
                match acc_view_mut(dst) {
                    Some(dst) => terms.iter().for_each(|&(at, g)| dst[at - offset] += g),
                    None => {
                        terms.iter().for_each(|&(at, g)| r.tail[at - offset] += g);
                        simd::store_slice(dst, &r.tail);
                    }
                }
            });
            continue;
        }
        // Otherwise band by band in order: f32/f64 straight into the image...
        if let Some(image) = acc_view_mut(image) {
            for r in &results[1..] {
                for &(at, g) in &r.deferred {
                    image[at] += g;
                }
            }
            continue;
        }
        // ...16-bit types into the f32 tail of the band owning the row, which must still hold
        // it; then every tail is rounded.
        for u in 1..bands {
            for (at, g) in std::mem::take(&mut results[u].deferred) {
                let row = at / row_in;
                let v = own.partition_point(|&r| r <= row) - 1;
                if row < tail[v] {
                    return false;
                }
                results[v].tail[at - tail[v] * row_in] += g;
            }
        }
        for (u, r) in results.iter().enumerate() {
            simd::store_slice(&mut image[tail[u] * row_in..own[u + 1] * row_in], &r.tail);
        }
    }
    true
}

/// The terms of a band's first output rows ([`scatter_max_nhwc_bands`]), whose windows reach
/// back into earlier bands' rows: a term at pixel `lo <= p < hi` is added to `acc` (pixels
/// `lo..hi` of `c` channels), one below `lo` is returned, as (input element, gradient) in
/// output order, for the earlier band. `None` where an index lies at or past `hi` (negative
/// ones wrap past it).
///
/// Branch-free: about a third of these terms are deferred, in no pattern a predictor learns.
/// Branching on each, these rows (one output row in eight on the long rows) took 31% of the
/// band scatter's `perf` samples; branch-free, 8%. Every term is written to the deferred
/// list, and kept there only when deferred; a deferred term's add goes to its own slot of
/// that list (overwritten just after), so that the deferred adds form no chain through one
/// scratch value. `None` too, declining, if `acc` is shorter than `lo..hi` (never, from the
/// bands).
#[inline(always)]
fn split_reach_back<T: FloatElement>(
    (c, lo, hi): (usize, usize, usize),
    grad_out: &[T],
    indices: &[i64],
    acc: &mut [T::Acc],
) -> Option<Vec<(usize, T::Acc)>> {
    if lo > hi || acc.len() < (hi - lo) * c || any_index_outside(indices, hi) {
        return None;
    }
    let mut deferred = vec![(0, T::Acc::zero()); indices.len()];
    let (base, list) = (acc.as_mut_ptr(), deferred.as_mut_ptr());
    let mut kept = 0;
    for (go, idx) in grad_out.chunks_exact(c).zip(indices.chunks_exact(c)) {
        for (ch, (&g, &i)) in go.iter().zip(idx).enumerate() {
            let (p, g) = (i as usize, simd::load(g));
            let earlier = p < lo;
            // SAFETY: `kept` counts the deferred terms before this one, so it is below
            // `indices.len() == deferred.len()`: `slot` is an element of `deferred`.
            let slot = unsafe { list.add(kept) };
            // `wrapping_add`: for a deferred term the offset is meaningless and never used.
            let target = std::hint::select_unpredictable(
                earlier,
                // SAFETY: `slot` points at an element of `deferred` (above).
                unsafe { &raw mut (*slot).1 },
                base.wrapping_add(p.wrapping_sub(lo).wrapping_mul(c).wrapping_add(ch)),
            );
            // SAFETY: a kept term has `lo <= p < hi` (checked above) and `ch < c`, so `target`
            // is element `(p - lo) * c + ch < (hi - lo) * c <= acc.len()` of `acc`; a deferred
            // one points into `slot`. Nothing else accesses either meanwhile.
            unsafe {
                *target += g;
                *slot = (p * c + ch, g);
            }
            kept += earlier as usize;
        }
    }
    deferred.truncate(kept);
    Some(deferred)
}

/// Channels-last max backwards of images fewer than the threads, with at most this many
/// channels, scatter in bands rather than gather. Alternating runs on the 2-core Zen 3 VM,
/// f32 / bf16, bands against the gather: C = 8 (1x8x512x512) 1.25x / 1.34x, C = 16
/// (1x16x256x256) 1.38x / 1.26x; C = 32 0.83x / 0.78x, C = 96 to 256 0.47x to 0.6x.
const BAND_MAX_CHANNELS: usize = 16;

/// Whether a channels-last max backward that would gather scatters in bands instead: few
/// channels, where the gather's loops around each pixel's compares cost more than its adds,
/// and at least two bands of output rows to share.
fn max_backward_in_bands(c: usize, out_h: usize, out_w: usize) -> bool {
    c <= BAND_MAX_CHANNELS && out_h >= 2 * (BAND_OUTPUTS / (out_w * c).max(1)).max(1)
}

/// Covering outputs per input element above which the channels-last max backward scatters
/// instead of gathering (3x3 stride-1 windows have 9).
const MAX_GATHER_COVERING: usize = 9;

/// The fewest input rows a task of the channels-last max gather takes.
const GATHER_MIN_ROWS: usize = 8;

/// Whether a channels-last max backward gathers ([`gather_max_nhwc`]) rather than scatters:
/// where the scatter, one image per task, would leave cores idle (fewer images than threads)
/// and the images are tall enough to split. On one core the gather is no faster (0.65x to
/// 1.13x the scatter's speed on the long rows, the early map and batch 1), so elsewhere the
/// scatter stays.
fn max_backward_gathers(images: usize, h: usize) -> bool {
    images < rayon::current_num_threads() && h >= 2 * GATHER_MIN_ROWS
}

/// Channels-last max backward as a gather: each input element sums, from zero and in ascending
/// output order, the gradients of the outputs whose window covers it and whose index is that
/// element. Those are the scatter's terms in the scatter's order, so the bits are the same,
/// provided every output was seen by the element its index names, that is, every index lies
/// inside its output's window; PyTorch's always do. Each matched output is counted, and
/// when the count falls short of the outputs (an index outside its window or its plane, which
/// is narrowed to -1 so that it matches nothing) this returns `false`, leaving `grad_in`
/// unspecified, and the caller scatters instead.
///
/// Against the scatter: work splits over input rows, so one image keeps every core busy (the
/// scatter runs an image serially), and each gradient element is written once, with no
/// zeroing pass before and no rounding pass after; but each input element tests every
/// covering output, so on one core it is no faster.
///
/// `rows`/`cols`: the covering outputs of each input row and column, as for the average
/// gathers. Each task converts the output rows it needs once (indices to i32, gradients to
/// `Acc`), kept in a small ring since tasks walk their input rows downwards.
fn gather_max_nhwc<T: FloatElement>(
    (c, h, w): (usize, usize, usize),
    out_w: usize,
    (rows, cols): (&[Range<usize>], &[Range<usize>]),
    grad_out: &[T],
    indices: &[i64],
    grad_in: &mut [T],
) -> bool {
    let plane = h * w;
    let ring = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    let covering = ring * cols.iter().map(|r| r.len()).max().unwrap_or(0);
    if plane == 0 || c == 0 || plane > i32::MAX as usize || covering == 0 || covering > MAX_GATHER_COVERING {
        return false;
    }
    let (row_in, row_out) = (w * c, out_w * c);
    if row_in > i32::MAX as usize {
        return false;
    }
    let out_h = grad_out.len() / (grad_in.len() / (plane * c) * row_out);
    #[cfg(target_arch = "x86_64")]
    let kind = simd::avx2_tile_kind::<T>().filter(|_| c.is_multiple_of(8));
    // A task converts the output rows it needs once, so short ones would convert most output
    // rows twice.
    let rows_per_task = items_per_task(row_in * covering, grad_in.len() / row_in).max(GATHER_MIN_ROWS);
    let matched = std::sync::atomic::AtomicU64::new(0);
    grad_in.par_chunks_mut(row_in).enumerate().with_min_len(rows_per_task).for_each_init(
        || MaxGatherScratch::<T::Acc>::reused(ring, c, row_in, row_out),
        |s, (k, gi)| {
            let (image, ih) = (k / h, k % h);
            for oh in rows[ih].clone() {
                let slot = oh % ring;
                if s.keys[slot] != Some((image, oh)) {
                    let at = (image * out_h + oh) * row_out;
                    let (index, grad) = (&indices[at..at + row_out], &grad_out[at..at + row_out]);
                    #[cfg(target_arch = "x86_64")]
                    // SAFETY: as for `max_gather_row` below, `kind` is `T`'s AVX2 kind and
                    // `T::Acc` is f32; `row_out = out_w * c` is a multiple of 8, and the four
                    // slices all hold `row_out` elements; `plane <= i32::MAX`.
                    let converted = kind.map(|kind| unsafe {
                        simd::max_gather_convert(
                            kind,
                            plane,
                            (index.as_ptr(), grad.as_ptr().cast()),
                            row_out,
                            (s.index[slot].as_mut_ptr(), s.grad[slot].as_mut_ptr().cast()),
                        )
                    });
                    #[cfg(not(target_arch = "x86_64"))]
                    let converted = None::<()>;
                    if converted.is_none() {
                        s.convert(slot, plane, index, grad);
                    }
                    s.keys[slot] = Some((image, oh));
                }
            }
            #[cfg(target_arch = "x86_64")]
            if let Some(kind) = kind {
                let mut converted = [(std::ptr::null(), std::ptr::null()); MAX_GATHER_COVERING];
                for (p, oh) in converted.iter_mut().zip(rows[ih].clone()) {
                    let slot = oh % ring;
                    *p = (s.index[slot].as_ptr(), s.grad[slot].as_ptr().cast::<f32>());
                }
                // SAFETY: `kind` comes from `avx2_tile_kind::<T>()` (AVX2 present, `T` its
                // element type, so `T::Acc` is f32) and `c % 8 == 0`; the first
                // `rows[ih].len() <= ring <= MAX_GATHER_COVERING` entries are this input row's
                // covering output rows in ascending order, converted above, each `out_w * c`
                // long, and every `cols` range ends at or below `out_w`; `gi` is one input
                // row of `w * c` elements; pixel numbers are below `plane <= i32::MAX`.
                let found = unsafe {
                    simd::max_gather_row(
                        kind,
                        c,
                        ih,
                        &converted[..rows[ih].len()],
                        cols,
                        gi.as_mut_ptr().cast(),
                    )
                };
                matched.fetch_add(found, std::sync::atomic::Ordering::Relaxed);
                return;
            }
            let found = simd::dispatch(
                #[inline(always)]
                || s.gather_row(c, (ih, w), rows[ih].clone(), cols, gi),
            );
            matched.fetch_add(found, std::sync::atomic::Ordering::Relaxed);
        },
    );
    matched.into_inner() == grad_out.len() as u64
}

/// Per-task buffers of [`gather_max_nhwc`]: `ring` converted output rows (`keys[slot]` names
/// the (image, output row) in the slot), one input row's accumulators, and per-channel counts
/// of matched outputs.
struct MaxGatherScratch<A> {
    keys: Vec<Option<(usize, usize)>>,
    index: Vec<Vec<i32>>,
    grad: Vec<Vec<A>>,
    acc: Vec<A>,
    hits: Vec<u64>,
}

impl<A> Default for MaxGatherScratch<A> {
    fn default() -> Self {
        MaxGatherScratch {
            keys: Vec::new(),
            index: Vec::new(),
            grad: Vec::new(),
            acc: Vec::new(),
            hits: Vec::new(),
        }
    }
}

std::thread_local! {
    /// Buffers of this thread's last backward calls, one of each type, for the next: the max
    /// gather's [`MaxGatherScratch`] (a few hundred KiB on the 7x7 tails) and the max
    /// scatter's 16-bit accumulators (an image of f32, 400 KB on the ResNet tail) would
    /// otherwise be fresh pages, faulted in and zeroed on every call. Each stays as large as
    /// its largest use on this thread (the scatter's, one image below 1 MiB of f32 unless the
    /// row scatter declines an image) until the thread ends.
    static REUSED_BUFFERS: std::cell::RefCell<Vec<Box<dyn std::any::Any>>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// A `V` taken from this thread's [`REUSED_BUFFERS`] (or a default one), given back on drop.
struct Reused<V: Default + 'static>(Option<Box<V>>);

impl<V: Default + 'static> Reused<V> {
    fn take() -> Self {
        let last = REUSED_BUFFERS.with_borrow_mut(|buffers| {
            let at = buffers.iter().position(|b| b.is::<V>())?;
            buffers.swap_remove(at).downcast::<V>().ok()
        });
        Reused(Some(last.unwrap_or_default()))
    }
}

impl<V: Default + 'static> Drop for Reused<V> {
    fn drop(&mut self) {
        if let Some(v) = self.0.take() {
            REUSED_BUFFERS.with_borrow_mut(|buffers| {
                // One of each type: when two were out at once (a task stolen while another
                // ran on this thread), the first given back stays.
                if !buffers.iter().any(|b| b.is::<V>()) {
                    buffers.push(v);
                }
            });
        }
    }
}

impl<V: Default + 'static> std::ops::Deref for Reused<V> {
    type Target = V;
    fn deref(&self) -> &V {
        self.0.as_ref().expect("present until dropped")
    }
}

impl<V: Default + 'static> std::ops::DerefMut for Reused<V> {
    fn deref_mut(&mut self) -> &mut V {
        self.0.as_mut().expect("present until dropped")
    }
}

impl<A: Float + 'static> MaxGatherScratch<A> {
    /// This thread's last scratch (or a new one), sized for these rows, every slot empty.
    fn reused(ring: usize, c: usize, row_in: usize, row_out: usize) -> Reused<Self> {
        let mut s = Reused::<Self>::take();
        s.keys.clear();
        s.keys.resize(ring, None);
        s.index.resize_with(ring, Vec::new);
        s.index.iter_mut().for_each(|v| v.resize(row_out, 0));
        s.grad.resize_with(ring, Vec::new);
        s.grad.iter_mut().for_each(|v| v.resize(row_out, A::zero()));
        s.acc.resize(row_in, A::zero());
        s.hits.resize(c, 0);
        s
    }

    /// Converts one output row into `slot`: indices to i32 (those outside `[0, plane)` to -1,
    /// which matches no element), gradients to `A`.
    #[inline(always)]
    fn convert<T: FloatElement<Acc = A>>(&mut self, slot: usize, plane: usize, indices: &[i64], grad: &[T]) {
        for (d, &i) in self.index[slot].iter_mut().zip(indices) {
            *d = if (i as u64) < plane as u64 { i as i32 } else { -1 };
        }
        for (d, &g) in self.grad[slot].iter_mut().zip(grad) {
            *d = simd::load(g);
        }
    }

    /// The portable form of `simd::max_gather_row`, over the converted output rows `oh` of
    /// `rows` (in their slots): input row `ih` of width `w` into `gi`; returns the matches.
    #[inline(always)]
    fn gather_row<T: FloatElement<Acc = A>>(
        &mut self,
        c: usize,
        (ih, w): (usize, usize),
        rows: Range<usize>,
        cols: &[Range<usize>],
        gi: &mut [T],
    ) -> u64 {
        let ring = self.keys.len();
        self.acc.fill(A::zero());
        self.hits.fill(0);
        for oh in rows {
            let (index, grad) = (&self.index[oh % ring], &self.grad[oh % ring]);
            for (iw, acc) in self.acc.chunks_exact_mut(c).enumerate() {
                let here = (ih * w + iw) as i32;
                for ow in cols[iw].clone() {
                    let (index, grad) = (&index[ow * c..][..c], &grad[ow * c..][..c]);
                    let terms = acc.iter_mut().zip(self.hits.iter_mut()).zip(index.iter().zip(grad));
                    for ((a, hit), (&i, &g)) in terms {
                        let take = i == here;
                        // Adding +0 leaves every sum that can arise here unchanged (one that
                        // starts from +0 never becomes -0).
                        *a = *a + if take { g } else { A::zero() };
                        *hit += take as u64;
                    }
                }
            }
        }
        simd::store_slice(gi, &self.acc);
        self.hits.iter().sum()
    }
}

/// The covering outputs of each input row and column of a (possibly dilated) max pool: the
/// outputs whose window extent, `(kernel - 1) * dilation + 1` from `o * stride - pad`,
/// contains it.
fn max_window_ranges(g: &WindowGeometry) -> (Vec<Range<usize>>, Vec<Range<usize>>) {
    let reach = |axis: usize| (g.kernel[axis] - 1) * g.dilation[axis] + 1;
    let rows = window_ranges(g.h, g.out_h, g.stride[0], g.padding[0], reach(0));
    let cols = window_ranges(g.w, g.out_w, g.stride[1], g.padding[1], reach(1));
    (rows, cols)
}

/// The routing shared by both max-pooling backwards. Channels-last images fewer than the
/// threads are split so that one image keeps every core busy: in bands with few channels
/// ([`BAND_MAX_CHANNELS`]), else, or where the bands decline, by the gather; everything else,
/// and whatever both decline, is scattered serially. `ranges` gives the covering outputs of
/// each input row and column (only computed when needed). Returns `true` when some index lies
/// outside `[0, h*w)`.
fn max_backward<T: FloatElement>(
    (n, c, h, w): (usize, usize, usize, usize),
    (out_h, out_w): (usize, usize),
    layout: Layout,
    ranges: impl FnOnce() -> (Vec<Range<usize>>, Vec<Range<usize>>),
    grad_out: &[T],
    indices: &[i64],
    grad_in: &mut [T],
) -> bool {
    let splits = layout == Layout::Nhwc && !grad_out.is_empty() && max_backward_gathers(n, h);
    let by_rows = layout == Layout::Nhwc && h * w * c >= ROW_SCATTER_MIN_ITEM;
    let ranges = (splits || by_rows).then(ranges);
    if let (true, Some((rows, cols))) = (splits, &ranges) {
        let split = (max_backward_in_bands(c, out_h, out_w)
            && scatter_max_nhwc_bands((c, h, w), out_w, rows, BAND_OUTPUTS, grad_out, indices, grad_in))
            || gather_max_nhwc((c, h, w), out_w, (rows, cols), grad_out, indices, grad_in);
        if split {
            return false;
        }
    }
    let extents = ranges.filter(|_| by_rows).map(|(rows, _)| window_row_extents(&rows, out_h));
    scatter_max((c, h, w, out_h * out_w), layout, extents.as_deref(), grad_out, indices, grad_in)
}

/// Gradient of `max_pool2d`: each output's gradient goes to `grad_in[indices[o]]` in its plane.
/// Returns `true` when some index lies outside `[0, H*W)`; `grad_in` is then unspecified (but
/// nothing outside it is written).
pub fn max_pool2d_backward<T: FloatElement>(
    g: &WindowGeometry,
    layout: Layout,
    grad_out: &[T],
    indices: &[i64],
    grad_in: &mut [T],
) -> bool {
    let ranges = || max_window_ranges(g);
    max_backward((g.n, g.c, g.h, g.w), (g.out_h, g.out_w), layout, ranges, grad_out, indices, grad_in)
}

/// Gradient of `adaptive_max_pool2d`, routed through `indices` as [`max_pool2d_backward`].
pub fn adaptive_max_pool2d_backward<T: FloatElement>(
    g: &AdaptiveGeometry,
    layout: Layout,
    grad_out: &[T],
    indices: &[i64],
    grad_in: &mut [T],
) -> bool {
    let ranges = || (adaptive_ranges(g.h, g.out_h), adaptive_ranges(g.w, g.out_w));
    max_backward((g.n, g.c, g.h, g.w), (g.out_h, g.out_w), layout, ranges, grad_out, indices, grad_in)
}

/// `grad_in` (row-major over `shape`) at multi-index `i` = `grad_out[sum_d i_d * strides[d]] /
/// divisor`: one division in `Acc`, rounded once. Strides of 0 broadcast.
pub fn broadcast_divide<T: FloatElement>(
    shape: &[usize],
    strides: &[usize],
    divisor: f64,
    grad_out: &[T],
    grad_in: &mut [T],
) {
    if grad_in.is_empty() {
        return;
    }
    let div: T::Acc = acc_from(divisor);
    // Merge neighbouring dims that walk grad_out as one (both broadcast, or contiguous), so
    // rows are as long as possible and the per-row index arithmetic is rare: NCHW GAP becomes
    // [N*C, H*W] with strides [1, 0], NHWC [N, H*W, C] with strides [C, 0, 1].
    let (shape, strides) = collapse_dims(shape, strides);
    let (shape, strides) = (&shape[..], &strides[..]);
    let Some((&last, outer)) = shape.split_last() else {
        grad_in[0] = simd::store::<T>(grad_out[0].to_acc() / div);
        return;
    };
    if last == 0 {
        return;
    }
    let last_stride = strides[shape.len() - 1];
    // grad_out is never larger than grad_in (it broadcasts): divide and round each of its
    // values once, then the broadcast is a plain fill or copy, bit-identical to dividing per
    // element.
    let mut quotients = vec![T::default(); grad_out.len()];
    let chunk = super::TASK_ELEMS;
    quotients.par_chunks_mut(chunk).zip(grad_out.par_chunks(chunk)).for_each(|(q, g)| {
        simd::dispatch(
            #[inline(always)]
            || {
                for (q, &g) in q.iter_mut().zip(g) {
                    *q = simd::store::<T>(simd::load(g) / div);
                }
            },
        )
    });
    let quotients = &quotients[..];
    // A broadcast dim just above a contiguous last dim repeats each row: fold it into the row
    // as a repeat count, so that NHWC's [N, H*W, C] fills runs of H*W*C elements with one
    // pattern of C quotients instead of H*W short rows, each with its index arithmetic and a
    // small copy (1x8x512x512: 8.7x faster in f32, 12x in bf16).
    let (rep, outer, strides) = match (outer.split_last(), strides.split_last()) {
        (Some((&rep, outer)), Some((_, [.., 0]))) if last_stride == 1 => {
            (rep, outer, &strides[..outer.len()])
        }
        _ => (1, outer, strides),
    };
    let row_len = rep * last;
    // Tasks of about 16 K elements (rows can be short: W = 7), each a whole number of
    // `last`-long rows, so every segment below starts at a row's start.
    let task_len = (16 * 1024 / last).max(1) * last;
    grad_in.par_chunks_mut(task_len).enumerate().for_each(|(task, dst)| {
        let mut pos = 0;
        while pos < dst.len() {
            let at = task * task_len + pos;
            let (row, offset) = (at / row_len, at % row_len);
            let seg = (row_len - offset).min(dst.len() - pos);
            let dst = &mut dst[pos..pos + seg];
            pos += seg;
            // Offset of this row in grad_out: decompose the row over the outer dims, last
            // fastest.
            let mut rest = row;
            let mut base = 0;
            for (&size, &stride) in outer.iter().zip(strides).rev() {
                base += (rest % size) * stride;
                rest /= size;
            }
            if last_stride == 0 {
                dst.fill(quotients[base]);
            } else if last_stride == 1 {
                repeat_into(dst, &quotients[base..base + last]);
            } else {
                for (j, d) in dst.iter_mut().enumerate() {
                    *d = quotients[base + j * last_stride];
                }
            }
        }
    });
}

/// Fills `dst` (a whole number of `pattern`s long) with copies of `pattern`: copies that
/// double in length up to a block of at least [`REPEAT_BLOCK`] elements, then copies of that
/// block, so that a short pattern costs a few large copies and the source stays in L1 (doubling
/// on to 32 KiB copies made the ResNet tail's 2048-channel rows 1.2x slower). A pattern of
/// that length or more is copied as it is.
fn repeat_into<T: Copy>(dst: &mut [T], pattern: &[T]) {
    if pattern.len() >= REPEAT_BLOCK {
        for d in dst.chunks_mut(pattern.len()) {
            d.copy_from_slice(&pattern[..d.len()]);
        }
        return;
    }
    let first = pattern.len().min(dst.len());
    dst[..first].copy_from_slice(&pattern[..first]);
    let mut block = first;
    let mut filled = first;
    while filled < dst.len() {
        let n = block.min(dst.len() - filled);
        dst.copy_within(..n, filled);
        filled += n;
        if block < REPEAT_BLOCK {
            block = filled;
        }
    }
}

/// See [`repeat_into`].
const REPEAT_BLOCK: usize = 1024;

/// `shape`/`strides` with neighbouring dims merged where the outer dim's stride is the inner
/// one's extent (`stride[d] == stride[d + 1] * shape[d + 1]`, which includes two broadcast
/// dims); dims of size 1 are dropped. Keeps at least one dim.
fn collapse_dims(shape: &[usize], strides: &[usize]) -> (Vec<usize>, Vec<usize>) {
    let mut out_shape: Vec<usize> = Vec::with_capacity(shape.len());
    let mut out_strides: Vec<usize> = Vec::with_capacity(shape.len());
    for (&size, &stride) in shape.iter().zip(strides) {
        if size == 1 && !out_shape.is_empty() {
            continue;
        }
        match (out_shape.last_mut(), out_strides.last_mut()) {
            (Some(s), Some(st)) if *s == 1 || *st == stride * size => {
                *s *= size;
                *st = stride;
            }
            _ => {
                out_shape.push(size);
                out_strides.push(stride);
            }
        }
    }
    (out_shape, out_strides)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::test_util::for_all_floats;

    #[test]
    fn collapse_dims_merges_broadcast_and_contiguous_runs() {
        // NCHW mean over (H, W): [N, C, H, W] strides [C, 1, 0, 0] -> [N*C, H*W] strides [1, 0].
        assert_eq!(collapse_dims(&[2, 3, 7, 7], &[3, 1, 0, 0]), (vec![6, 49], vec![1, 0]));
        // NHWC walk [N, H, W, C] strides [C, 0, 0, 1] -> [N, H*W, C] strides [C, 0, 1].
        assert_eq!(collapse_dims(&[2, 7, 7, 5], &[5, 0, 0, 1]), (vec![2, 49, 5], vec![5, 0, 1]));
        // Size-1 dims vanish; a leading one merges into the next.
        assert_eq!(collapse_dims(&[1, 4, 1, 3], &[12, 3, 3, 1]), (vec![12], vec![1]));
        assert_eq!(collapse_dims(&[1], &[0]), (vec![1], vec![0]));
    }

    use crate::ops::adaptive::{plan_adaptive_pool, AdaptiveKind};
    use crate::ops::window::plan_window_pool;
    use half::{bf16, f16};

    /// Deterministic pseudo-random values in [-1, 1).
    fn values(len: usize, seed: u64) -> Vec<f64> {
        let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (0..len)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
            })
            .collect()
    }

    fn offset(
        layout: Layout,
        (c, h, w): (usize, usize, usize),
        n: usize,
        ch: usize,
        y: usize,
        x: usize,
    ) -> usize {
        match layout {
            Layout::Nchw => ((n * c + ch) * h + y) * w + x,
            Layout::Nhwc => ((n * h + y) * w + x) * c + ch,
        }
    }

    /// NCHW to NHWC.
    fn to_nhwc<T: Copy>(x: &[T], (n, c, h, w): (usize, usize, usize, usize)) -> Vec<T> {
        let mut out = x.to_vec();
        for i in 0..n {
            for ch in 0..c {
                for p in 0..h * w {
                    out[(i * h * w + p) * c + ch] = x[(i * c + ch) * h * w + p];
                }
            }
        }
        out
    }

    /// The NCHW gather (AVX2 lanes for f32 and bf16 on small planes, the row gather otherwise)
    /// and the NHWC gather (a plain per-channel loop) add the same shares in the same order,
    /// so their gradients agree bit for bit: windowed and adaptive, partial lane groups,
    /// and inputs no window covers (the lane path declines those).
    fn gathers_agree<T: FloatElement>() {
        let rule = AvgRule { count_include_pad: true, divisor_override: None };
        let windowed = [
            ([2usize, 13, 7, 7], [3usize, 3], [2usize, 2], [1usize, 1]),
            ([1, 16, 6, 5], [2, 3], [1, 2], [1, 1]),
            ([3, 5, 9, 9], [2, 2], [3, 3], [0, 0]),
            // Channels-last gathers by pixel from `NHWC_ROWS_MAX_CHANNELS` channels, by rows below.
            ([2, 40, 7, 7], [3, 3], [2, 2], [1, 1]),
            ([1, 32, 6, 5], [2, 3], [1, 2], [1, 1]),
        ];
        for (shape, k, st, pad) in windowed {
            let g = plan_window_pool("avg_pool2d", &shape, k, Some(st), pad, [1, 1], false).unwrap();
            let dims = (g.n, g.c, g.out_h, g.out_w);
            let go: Vec<T> = values(g.output_len(), 7).into_iter().map(T::from_f64).collect();
            let mut nchw = vec![T::from_f64(9.0); g.input_len()];
            avg_pool2d_backward(&g, rule, Layout::Nchw, &go, &mut nchw);
            let mut nhwc = vec![T::from_f64(9.0); g.input_len()];
            avg_pool2d_backward(&g, rule, Layout::Nhwc, &to_nhwc(&go, dims), &mut nhwc);
            let want = to_nhwc(&nchw, (g.n, g.c, g.h, g.w));
            assert!(
                nhwc.iter().zip(&want).all(|(a, b)| a.to_f64().to_bits() == b.to_f64().to_bits()),
                "{shape:?}"
            );
        }
        // Gradient planes on both sides of `LANE_GATHER_MAX_PLANE` (lanes, then rows; 4550
        // gradient elements for 35 shares), and, without AVX-512, of
        // `AVX2_ROWS_MIN_INPUTS_PER_SHARE` for f32 (35x35: 25 per share, lanes; 42x42 and
        // 60x60: rows).
        let adaptive = [
            ([2usize, 11, 7, 7], [2usize, 2]),
            ([1, 8, 12, 10], [5, 3]),
            ([1, 9, 35, 35], [7, 7]),
            ([1, 9, 42, 42], [7, 7]),
            ([1, 9, 60, 60], [7, 7]),
            ([1, 9, 70, 65], [7, 5]),
            ([1, 33, 12, 10], [5, 3]),
        ];
        for (shape, out) in adaptive {
            let g = plan_adaptive_pool(AdaptiveKind::Avg, &shape, out).unwrap();
            let dims = (g.n, g.c, g.out_h, g.out_w);
            let go: Vec<T> = values(g.output_len(), 9).into_iter().map(T::from_f64).collect();
            let mut nchw = vec![T::from_f64(9.0); g.input_len()];
            adaptive_avg_pool2d_backward(&g, Layout::Nchw, &go, &mut nchw);
            let mut nhwc = vec![T::from_f64(9.0); g.input_len()];
            adaptive_avg_pool2d_backward(&g, Layout::Nhwc, &to_nhwc(&go, dims), &mut nhwc);
            let want = to_nhwc(&nchw, (g.n, g.c, g.h, g.w));
            assert!(
                nhwc.iter().zip(&want).all(|(a, b)| a.to_f64().to_bits() == b.to_f64().to_bits()),
                "{shape:?}"
            );
        }
    }

    #[test]
    fn nchw_and_nhwc_average_gathers_agree_bit_for_bit() {
        for_all_floats!(gathers_agree);
    }

    /// Naive scatter reference for avg pooling in f64.
    fn ref_avg(g: &WindowGeometry, rule: AvgRule, layout: Layout, go: &[f64]) -> Vec<f64> {
        let mut gi = vec![0.0; g.input_len()];
        for n in 0..g.n {
            for ch in 0..g.c {
                for oh in 0..g.out_h {
                    for ow in 0..g.out_w {
                        let win = g.avg_window(oh, ow, rule);
                        let v =
                            go[offset(layout, (g.c, g.out_h, g.out_w), n, ch, oh, ow)] / win.divisor as f64;
                        for y in win.h0..win.h1 {
                            for x in win.w0..win.w1 {
                                gi[offset(layout, (g.c, g.h, g.w), n, ch, y, x)] += v;
                            }
                        }
                    }
                }
            }
        }
        gi
    }

    fn ref_adaptive_avg(g: &AdaptiveGeometry, layout: Layout, go: &[f64]) -> Vec<f64> {
        let mut gi = vec![0.0; g.input_len()];
        for n in 0..g.n {
            for ch in 0..g.c {
                for oh in 0..g.out_h {
                    for ow in 0..g.out_w {
                        let (h0, h1) = g.rows(oh);
                        let (w0, w1) = g.cols(ow);
                        let v = go[offset(layout, (g.c, g.out_h, g.out_w), n, ch, oh, ow)]
                            / ((h1 - h0) * (w1 - w0)) as f64;
                        for y in h0..h1 {
                            for x in w0..w1 {
                                gi[offset(layout, (g.c, g.h, g.w), n, ch, y, x)] += v;
                            }
                        }
                    }
                }
            }
        }
        gi
    }

    /// Forward max pooling in f64 with PyTorch's rule (NaN wins, ties keep the first); returns
    /// the indices in `layout`.
    fn forward_max_indices(g: &WindowGeometry, layout: Layout, x: &[f64]) -> Vec<i64> {
        let mut ind = vec![0i64; g.output_len()];
        for n in 0..g.n {
            for ch in 0..g.c {
                for oh in 0..g.out_h {
                    for ow in 0..g.out_w {
                        let (h0, h1) = g.max_taps_h(oh);
                        let (w0, w1) = g.max_taps_w(ow);
                        let mut best = f64::NEG_INFINITY;
                        let mut bi = (h0 * g.w + w0) as i64;
                        for y in (h0..h1).step_by(g.dilation[0]) {
                            for xx in (w0..w1).step_by(g.dilation[1]) {
                                let v = x[offset(layout, (g.c, g.h, g.w), n, ch, y, xx)];
                                if v > best || v.is_nan() {
                                    best = v;
                                    bi = (y * g.w + xx) as i64;
                                }
                            }
                        }
                        ind[offset(layout, (g.c, g.out_h, g.out_w), n, ch, oh, ow)] = bi;
                    }
                }
            }
        }
        ind
    }

    fn ref_max(
        c: usize,
        plane_in: usize,
        plane_out: usize,
        n: usize,
        layout: Layout,
        go: &[f64],
        ind: &[i64],
    ) -> Vec<f64> {
        let mut gi = vec![0.0; n * c * plane_in];
        for img in 0..n {
            for ch in 0..c {
                for o in 0..plane_out {
                    let (src, base) = match layout {
                        Layout::Nchw => ((img * c + ch) * plane_out + o, (img * c + ch) * plane_in),
                        Layout::Nhwc => ((img * plane_out + o) * c + ch, img * plane_in * c + ch),
                    };
                    let i = ind[src] as usize;
                    let dst = match layout {
                        Layout::Nchw => base + i,
                        Layout::Nhwc => base + i * c,
                    };
                    gi[dst] += go[src];
                }
            }
        }
        gi
    }

    fn check_close<T: FloatElement>(got: &[T], want: &[f64], rel: f64, what: &str) {
        assert_eq!(got.len(), want.len(), "{what}: length");
        for (i, (&a, &b)) in got.iter().zip(want).enumerate() {
            let a = a.to_f64();
            assert!((a - b).abs() <= rel * b.abs().max(1.0), "{what}: element {i}: got {a}, want {b}");
        }
    }

    /// (shape, kernel, stride, padding, dilation, ceil_mode).
    type WindowCase = (Vec<usize>, [usize; 2], Option<[usize; 2]>, [usize; 2], [usize; 2], bool);

    fn window_cases() -> Vec<WindowCase> {
        vec![
            (vec![2, 3, 7, 9], [3, 3], Some([2, 2]), [1, 1], [1, 1], false),
            (vec![2, 3, 7, 9], [3, 3], Some([2, 2]), [1, 1], [1, 1], true),
            (vec![1, 4, 6, 6], [3, 2], Some([1, 1]), [1, 0], [1, 1], false),
            (vec![1, 2, 5, 5], [2, 2], None, [0, 0], [1, 1], true),
            (vec![3, 5, 8], [4, 3], Some([3, 2]), [2, 1], [1, 1], true),
            (vec![1, 8, 10, 11], [5, 5], Some([1, 3]), [2, 2], [1, 1], false),
            (vec![1, 1, 3, 3], [1, 1], Some([2, 2]), [0, 0], [1, 1], false),
        ]
    }

    fn run_avg<T: FloatElement>(tol: f64) {
        for (shape, k, s, p, d, ceil) in window_cases() {
            let g = plan_window_pool("t", &shape, k, s, p, d, ceil).unwrap();
            for rule in [
                AvgRule { count_include_pad: true, divisor_override: None },
                AvgRule { count_include_pad: false, divisor_override: None },
                AvgRule { count_include_pad: true, divisor_override: Some(-3) },
                AvgRule { count_include_pad: false, divisor_override: Some(7) },
            ] {
                for layout in [Layout::Nchw, Layout::Nhwc] {
                    let go64 = values(g.output_len(), 7);
                    let go: Vec<T> = go64.iter().map(|&v| T::from_f64(v)).collect();
                    let go64: Vec<f64> = go.iter().map(|v| v.to_f64()).collect();
                    let want = ref_avg(&g, rule, layout, &go64);
                    let mut gi = vec![T::default(); g.input_len()];
                    avg_pool2d_backward(&g, rule, layout, &go, &mut gi);
                    check_close(&gi, &want, tol, &format!("avg {shape:?} {k:?} {rule:?} {layout:?}"));
                    let mut again = vec![T::default(); g.input_len()];
                    avg_pool2d_backward(&g, rule, layout, &go, &mut again);
                    assert!(gi.iter().zip(&again).all(|(a, b)| a.to_f64().to_bits() == b.to_f64().to_bits()));
                }
            }
        }
    }

    #[test]
    fn avg_matches_naive_scatter_every_dtype() {
        run_avg::<f64>(1e-12);
        run_avg::<f32>(1e-5);
        run_avg::<f16>(2e-3);
        run_avg::<bf16>(1e-2);
    }

    fn run_adaptive_avg<T: FloatElement>(tol: f64) {
        for (shape, out) in [
            (vec![2, 3, 7, 9], [3, 4]),
            (vec![1, 2, 3, 5], [5, 7]),
            (vec![1, 3, 10, 10], [1, 1]),
            (vec![4, 6, 5], [6, 2]),
            (vec![1, 5, 8, 8], [8, 8]),
        ] {
            let g = plan_adaptive_pool(AdaptiveKind::Avg, &shape, out).unwrap();
            for layout in [Layout::Nchw, Layout::Nhwc] {
                let go: Vec<T> = values(g.output_len(), 3).iter().map(|&v| T::from_f64(v)).collect();
                let go64: Vec<f64> = go.iter().map(|v| v.to_f64()).collect();
                let want = ref_adaptive_avg(&g, layout, &go64);
                let mut gi = vec![T::default(); g.input_len()];
                adaptive_avg_pool2d_backward(&g, layout, &go, &mut gi);
                check_close(&gi, &want, tol, &format!("adaptive avg {shape:?} {out:?} {layout:?}"));
            }
        }
    }

    /// Where windows do not overlap every gradient element is its window's one share, `g /
    /// (kh * kw)` in the accumulator type, rounded once. The 16-bit gathers copy the rows
    /// that repeat; this holds every path to those bits: NCHW rows (planes too large for the
    /// lanes, and f16's), channels-last rows of few channels, channels-last pixels of many.
    fn disjoint_windows_round_each_share_once<T: FloatElement>() {
        for (shape, out) in [([1, 2, 80, 80], [5, 5]), ([2, 3, 16, 12], [4, 3]), ([2, 40, 12, 10], [3, 2])] {
            let g = plan_adaptive_pool(AdaptiveKind::Avg, &shape, out).unwrap();
            let ([n, c, h, w], [oh, ow]) = (shape, out);
            let (kh, kw) = (h / oh, w / ow);
            let divisor = acc_from::<T::Acc, usize>(kh * kw);
            for layout in [Layout::Nchw, Layout::Nhwc] {
                let go: Vec<T> = values(g.output_len(), 7).iter().map(|&v| T::from_f64(v)).collect();
                let mut gi = vec![T::default(); g.input_len()];
                adaptive_avg_pool2d_backward(&g, layout, &go, &mut gi);
                for (img, ch, ih, iw) in
                    (0..n * c * h * w).map(|k| (k / (c * h * w), k / (h * w) % c, k / w % h, k % w))
                {
                    let got = gi[offset(layout, (c, h, w), img, ch, ih, iw)];
                    let want = T::from_acc(
                        go[offset(layout, (c, oh, ow), img, ch, ih / kh, iw / kw)].to_acc() / divisor,
                    );
                    assert_eq!(
                        got.to_f64(),
                        want.to_f64(),
                        "{shape:?} -> {out:?} {layout:?} at {:?}",
                        (img, ch, ih, iw)
                    );
                }
            }
        }
    }

    #[test]
    fn disjoint_windows_give_each_share_rounded_once() {
        for_all_floats!(disjoint_windows_round_each_share_once);
    }

    #[test]
    fn adaptive_avg_matches_naive_scatter_up_and_down() {
        run_adaptive_avg::<f64>(1e-12);
        run_adaptive_avg::<f32>(1e-5);
        run_adaptive_avg::<f16>(2e-3);
        run_adaptive_avg::<bf16>(1e-2);
    }

    fn run_max<T: FloatElement>(tol: f64) {
        let mut cases = window_cases();
        cases.push((vec![2, 3, 9, 10], [3, 3], Some([1, 2]), [1, 1], [2, 3], false));
        cases.push((vec![1, 4, 11, 7], [2, 3], Some([2, 1]), [1, 1], [3, 2], true));
        for (shape, k, s, p, d, ceil) in cases {
            let g = plan_window_pool("t", &shape, k, s, p, d, ceil).unwrap();
            for layout in [Layout::Nchw, Layout::Nhwc] {
                // Few distinct values: many ties; some NaNs.
                let mut x: Vec<f64> = values(g.input_len(), 11).iter().map(|v| (v * 3.0).round()).collect();
                for i in (0..x.len()).step_by(13) {
                    x[i] = f64::NAN;
                }
                let ind = forward_max_indices(&g, layout, &x);
                let go: Vec<T> = values(g.output_len(), 5).iter().map(|&v| T::from_f64(v)).collect();
                let go64: Vec<f64> = go.iter().map(|v| v.to_f64()).collect();
                let want = ref_max(g.c, g.h * g.w, g.out_h * g.out_w, g.n, layout, &go64, &ind);
                let mut gi = vec![T::default(); g.input_len()];
                assert!(!max_pool2d_backward(&g, layout, &go, &ind, &mut gi));
                check_close(&gi, &want, tol, &format!("max {shape:?} {k:?} {layout:?}"));
            }
        }
    }

    #[test]
    fn max_matches_naive_scatter_with_ties_nans_and_dilation() {
        run_max::<f64>(1e-12);
        run_max::<f32>(1e-6);
        run_max::<f16>(2e-3);
        run_max::<bf16>(1e-2);
    }

    /// A channels-last max backward case of [`max_backward_cases`]: the geometry, the covering
    /// output rows and columns of each input row and column, the indices, the gradients, and
    /// the serial scatter's result (the reference every split path must match bit for bit).
    type MaxBackwardCase<T> =
        (WindowGeometry, Vec<Range<usize>>, Vec<Range<usize>>, Vec<i64>, Vec<T>, Vec<T>);

    /// Channels-last max backward cases, windowed and adaptive: windows strided, overlapping
    /// (3x3 stride 1), dilated, ceil-mode, adaptive ones shrinking and growing; inputs of few
    /// values (ties) and NaNs; gradients with -0, NaN and infinities.
    fn max_backward_cases<T: FloatElement>() -> Vec<MaxBackwardCase<T>> {
        let windows: Vec<WindowCase> = vec![
            (vec![2, 8, 9, 11], [3, 3], Some([2, 2]), [1, 1], [1, 1], false),
            (vec![1, 16, 8, 8], [2, 2], None, [0, 0], [1, 1], false),
            (vec![1, 24, 7, 6], [3, 3], Some([1, 1]), [1, 1], [1, 1], true),
            (vec![2, 3, 9, 10], [2, 2], Some([2, 1]), [1, 1], [2, 2], false),
            (vec![1, 8, 11, 7], [2, 3], Some([2, 1]), [1, 1], [3, 1], true),
            // Rows no window reads, between the windows and below the last.
            (vec![2, 8, 9, 8], [2, 2], Some([3, 3]), [0, 0], [1, 1], false),
        ];
        let mut cases = Vec::new();
        for (shape, k, st, p, d, ceil) in windows {
            let g = plan_window_pool("t", &shape, k, st, p, d, ceil).unwrap();
            let (rows, cols) = max_window_ranges(&g);
            cases.push((g, rows, cols));
        }
        for (shape, out) in [([1, 8, 9, 7], [4, 3]), ([2, 5, 3, 4], [5, 7]), ([1, 16, 7, 7], [2, 2])] {
            let a = plan_adaptive_pool(AdaptiveKind::Max, &shape, out).unwrap();
            let g = plan_window_pool("t", &shape, [1, 1], None, [0, 0], [1, 1], false).unwrap();
            let g = WindowGeometry { out_h: a.out_h, out_w: a.out_w, ..g };
            cases.push((g, adaptive_ranges(a.h, a.out_h), adaptive_ranges(a.w, a.out_w)));
        }
        let mut out = Vec::new();
        for (g, rows, cols) in cases {
            let mut x: Vec<f64> = values(g.input_len(), 3).iter().map(|v| (v * 3.0).round()).collect();
            x.iter_mut().step_by(17).for_each(|v| *v = f64::NAN);
            let ind = if g.kernel == [1, 1] {
                // Adaptive: the window's first element, or its last.
                let axis = |o: usize, out: usize, size: usize| {
                    (adaptive_start(o, out, size), adaptive_end(o, out, size))
                };
                (0..g.output_len())
                    .map(|k| {
                        let (oh, ow) = (k / g.c / g.out_w % g.out_h, k / g.c % g.out_w);
                        let ((h0, h1), (w0, w1)) = (axis(oh, g.out_h, g.h), axis(ow, g.out_w, g.w));
                        let (h, w) = if k % 3 == 0 { (h1 - 1, w1 - 1) } else { (h0, w0) };
                        (h * g.w + w) as i64
                    })
                    .collect()
            } else {
                forward_max_indices(&g, Layout::Nhwc, &x)
            };
            let mut go: Vec<T> = values(g.output_len(), 7).iter().map(|&v| T::from_f64(v * 4.0)).collect();
            for (k, v) in go.iter_mut().enumerate() {
                match k % 23 {
                    0 => *v = T::from_f64(-0.0),
                    5 => *v = T::from_f64(f64::NAN),
                    9 => *v = T::from_f64(f64::INFINITY),
                    _ => {}
                }
            }
            let shape = (g.c, g.h, g.w, g.out_h * g.out_w);
            let mut want = vec![T::from_f64(7.0); g.input_len()];
            assert!(!scatter_max(shape, Layout::Nhwc, None, &go, &ind, &mut want));
            out.push((g, rows, cols, ind, go, want));
        }
        out
    }

    /// The channels-last max gather against the scatter, bit for bit, on `T`'s paths: AVX2
    /// blocks where `c % 8 == 0` (f32, bf16, f16), the portable loop otherwise and for f64.
    fn gather_vs_scatter<T: FloatElement>() {
        let bits = |v: &[T]| v.iter().map(|x| x.to_f64().to_bits()).collect::<Vec<_>>();
        for (g, rows, cols, mut ind, go, want) in max_backward_cases::<T>() {
            let mut got = vec![T::from_f64(7.0); g.input_len()];
            let gathered = gather_max_nhwc((g.c, g.h, g.w), g.out_w, (&rows, &cols), &go, &ind, &mut got);
            assert!(gathered, "{g:?}");
            assert_eq!(bits(&got), bits(&want), "{g:?}");
            // An index inside the plane but outside its window, or outside the plane: the
            // gather declines, and the caller's scatter takes it (or reports the bad index).
            let last = ind.len() - 1;
            let saved = ind[last];
            ind[last] = 0;
            if !(rows[0].contains(&(g.out_h - 1)) && cols[0].contains(&(g.out_w - 1))) {
                assert!(!gather_max_nhwc((g.c, g.h, g.w), g.out_w, (&rows, &cols), &go, &ind, &mut got));
            }
            ind[last] = (g.h * g.w) as i64;
            assert!(!gather_max_nhwc((g.c, g.h, g.w), g.out_w, (&rows, &cols), &go, &ind, &mut got));
            ind[last] = saved + (1 << 32);
            assert!(!gather_max_nhwc((g.c, g.h, g.w), g.out_w, (&rows, &cols), &go, &ind, &mut got));
        }
    }

    #[test]
    fn channels_last_max_gather_matches_the_scatter_bit_for_bit() {
        for_all_floats!(gather_vs_scatter);
    }

    /// The banded channels-last max scatter against the serial scatter, bit for bit, with bands
    /// of one output row up to the whole image (so terms are deferred across one or more
    /// bands; 3x3 stride-1 windows reach back past a one-row band).
    fn bands_vs_scatter<T: FloatElement>() {
        let bits = |v: &[T]| v.iter().map(|x| x.to_f64().to_bits()).collect::<Vec<_>>();
        for (g, rows, _, mut ind, go, want) in max_backward_cases::<T>() {
            let dims = (g.c, g.h, g.w);
            let row_out = g.out_w * g.c;
            for band_rows in [1, 2, 3, g.out_h] {
                let mut got = vec![T::from_f64(7.0); g.input_len()];
                let banded =
                    scatter_max_nhwc_bands(dims, g.out_w, &rows, band_rows * row_out, &go, &ind, &mut got);
                assert!(banded, "{g:?} {band_rows}");
                assert_eq!(bits(&got), bits(&want), "{g:?} {band_rows}");
            }
            // An index outside the plane: declined (the caller's scatter reports it). One
            // inside the plane but outside its window: declined, or the scatter's bits.
            let last = ind.len() - 1;
            let saved = ind[last];
            for bad in [(g.h * g.w) as i64, -1, saved + (1 << 32)] {
                ind[last] = bad;
                let mut got = vec![T::from_f64(7.0); g.input_len()];
                assert!(
                    !scatter_max_nhwc_bands(dims, g.out_w, &rows, row_out, &go, &ind, &mut got),
                    "{g:?} {bad}"
                );
            }
            for stray in [0, (g.h * g.w - 1) as i64] {
                ind[last] = stray;
                ind[0] = (g.h * g.w - 1 - stray as usize) as i64;
                let mut want = vec![T::from_f64(7.0); g.input_len()];
                assert!(!scatter_max(
                    (g.c, g.h, g.w, g.out_h * g.out_w),
                    Layout::Nhwc,
                    None,
                    &go,
                    &ind,
                    &mut want
                ));
                for band_rows in [1, 2] {
                    let mut got = vec![T::from_f64(7.0); g.input_len()];
                    if scatter_max_nhwc_bands(dims, g.out_w, &rows, band_rows * row_out, &go, &ind, &mut got)
                    {
                        assert_eq!(bits(&got), bits(&want), "{g:?} stray {stray} {band_rows}");
                    }
                }
            }
        }
    }

    /// The row scatter against the whole-image scatter, bit for bit, image by image, with
    /// accumulators of one input row (declined wherever a window is taller), three, four and
    /// the whole image (rows closed and moved at every step, at some, at none). An index
    /// outside its window's rows but inside the plane is declined; one in its window's rows
    /// but another column gives the scatter's bits.
    fn rows_vs_scatter<T: FloatElement>() {
        let bits = |v: &[T]| v.iter().map(|x| x.to_f64().to_bits()).collect::<Vec<_>>();
        for (g, rows, _, mut ind, go, want) in max_backward_cases::<T>() {
            let extents = window_row_extents(&rows, g.out_h);
            let (item, outs) = (g.h * g.w * g.c, g.out_h * g.out_w * g.c);
            let tallest = extents.iter().map(|e| e.len()).max().unwrap();
            let row_bytes = g.w * g.c * std::mem::size_of::<T::Acc>();
            for capacity in [1, 3, 4, g.h] {
                for image in 0..g.n {
                    let (go, ind) = (&go[image * outs..][..outs], &ind[image * outs..][..outs]);
                    let mut got = vec![T::from_f64(7.0); item];
                    let mut acc = Vec::new();
                    let done = scatter_max_nhwc_rows(
                        (g.c, g.w),
                        &extents,
                        capacity * row_bytes,
                        go,
                        ind,
                        &mut got,
                        &mut acc,
                    );
                    // f32/f64 scatter in place, with no accumulators to outgrow.
                    let expected = AccScratch::<T>::is_identity() || capacity >= tallest;
                    assert_eq!(done, expected, "{g:?} capacity {capacity}");
                    if done {
                        assert_eq!(
                            bits(&got),
                            bits(&want[image * item..][..item]),
                            "{g:?} capacity {capacity}"
                        );
                    }
                }
            }
            let last = outs - 1;
            let (lo, hi) = (extents[g.out_h - 1].start, extents[g.out_h - 1].end);
            for (stray, accepted) in [(0, lo == 0), (((hi - 1) * g.w) as i64, true)] {
                ind[last] = stray;
                let mut want = vec![T::from_f64(7.0); item];
                let shape = (g.c, g.h, g.w, g.out_h * g.out_w);
                assert!(!scatter_max(shape, Layout::Nhwc, None, &go[..outs], &ind[..outs], &mut want));
                let mut got = vec![T::from_f64(7.0); item];
                let mut acc = Vec::new();
                let done = scatter_max_nhwc_rows(
                    (g.c, g.w),
                    &extents,
                    g.h * row_bytes,
                    &go[..outs],
                    &ind[..outs],
                    &mut got,
                    &mut acc,
                );
                assert_eq!(done, accepted, "{g:?} stray {stray}");
                if done {
                    assert_eq!(bits(&got), bits(&want), "{g:?} stray {stray}");
                }
            }
        }
    }

    #[test]
    fn channels_last_max_row_scatter_matches_the_whole_image_scatter_bit_for_bit() {
        for_all_floats!(rows_vs_scatter);
    }

    #[test]
    fn channels_last_max_bands_match_the_scatter_bit_for_bit() {
        for_all_floats!(bands_vs_scatter);
    }

    /// The public entry takes the gather (16 channels) or the bands (8 channels, two bands at
    /// least) for one tall image when there are threads to share it (not checked here: a
    /// one-thread pool scatters), and agrees with the naive scatter.
    #[test]
    fn channels_last_max_backward_of_one_tall_image_matches_the_naive_scatter() {
        for shape in [[1, 16, 40, 33], [1, 8, 300, 64]] {
            let g = plan_window_pool("t", &shape, [3, 3], Some([2, 2]), [1, 1], [1, 1], false).unwrap();
            let x: Vec<f64> = values(g.input_len(), 9).iter().map(|v| (v * 5.0).round()).collect();
            let ind = forward_max_indices(&g, Layout::Nhwc, &x);
            let go: Vec<f32> = values(g.output_len(), 4).iter().map(|&v| v as f32).collect();
            let go64: Vec<f64> = go.iter().map(|&v| v as f64).collect();
            let want = ref_max(g.c, g.h * g.w, g.out_h * g.out_w, g.n, Layout::Nhwc, &go64, &ind);
            let mut gi = vec![0f32; g.input_len()];
            assert!(!max_pool2d_backward(&g, Layout::Nhwc, &go, &ind, &mut gi));
            check_close(&gi, &want, 1e-6, &format!("one tall image {shape:?}"));
        }
        assert!(max_backward_in_bands(8, 150, 32), "[1, 8, 300, 64] scatters in bands");
    }

    #[test]
    fn adaptive_max_routes_through_indices() {
        let g = plan_adaptive_pool(AdaptiveKind::Max, &[2, 3, 5, 7], [3, 4]).unwrap();
        for layout in [Layout::Nchw, Layout::Nhwc] {
            // Every output points at plane element (oh + ow) % (H*W): many collisions.
            let ind: Vec<i64> = (0..g.output_len()).map(|o| (o % 9) as i64).collect();
            let go: Vec<f32> = values(g.output_len(), 9).iter().map(|&v| v as f32).collect();
            let go64: Vec<f64> = go.iter().map(|&v| v as f64).collect();
            let want = ref_max(g.c, g.h * g.w, g.out_h * g.out_w, g.n, layout, &go64, &ind);
            let mut gi = vec![0f32; g.input_len()];
            assert!(!adaptive_max_pool2d_backward(&g, layout, &go, &ind, &mut gi));
            check_close(&gi, &want, 1e-6, "adaptive max");
        }
    }

    #[test]
    fn negative_zero_gradients_sum_to_positive_zero_on_every_path() {
        // PyTorch adds each share to a zeroed gradient, so -0.0 shares give +0.0; the gathers
        // that start from the first term must too. Shapes reach the lanes (7x7 NCHW), the rows
        // (a 72x72 plane, whose 36x36 share plane is past the lanes; channels-last with few
        // channels) and the per-pixel channels-last gather (40 channels).
        let rule = AvgRule { count_include_pad: true, divisor_override: None };
        for shape in [[2usize, 8, 7, 7], [1, 3, 72, 72], [1, 40, 9, 9]] {
            let g = plan_window_pool("t", &shape, [3, 3], Some([2, 2]), [1, 1], [1, 1], false).unwrap();
            let ag = plan_adaptive_pool(AdaptiveKind::Avg, &shape, [3, 2]).unwrap();
            for layout in [Layout::Nchw, Layout::Nhwc] {
                let mut gi = vec![f32::NAN; g.input_len()];
                avg_pool2d_backward(&g, rule, layout, &vec![-0.0f32; g.output_len()], &mut gi);
                assert!(gi.iter().all(|v| v.to_bits() == 0), "avg {shape:?} {layout:?}");
                let mut gi = vec![half::bf16::NAN; ag.input_len()];
                adaptive_avg_pool2d_backward(
                    &ag,
                    layout,
                    &vec![half::bf16::NEG_ZERO; ag.output_len()],
                    &mut gi,
                );
                assert!(gi.iter().all(|v| v.to_bits() == 0), "adaptive {shape:?} {layout:?}");
            }
        }
    }

    #[test]
    fn an_empty_output_gives_a_zero_gradient() {
        // The tensor API rejects such a grad_out as PyTorch does; the kernels still write every
        // element (their output buffer may be a reused one holding stale values).
        for out in [[0, 0], [2, 0], [0, 3]] {
            let g = plan_adaptive_pool(AdaptiveKind::Avg, &[1, 2, 4, 4], out).unwrap();
            for layout in [Layout::Nchw, Layout::Nhwc] {
                let mut gi = vec![f32::NAN; g.input_len()];
                adaptive_avg_pool2d_backward(&g, layout, &[], &mut gi);
                assert!(gi.iter().all(|&v| v == 0.0), "adaptive avg {out:?} {layout:?}");
                let mut gi = vec![half::bf16::NAN; g.input_len()];
                assert!(!adaptive_max_pool2d_backward(&g, layout, &[], &[], &mut gi));
                assert!(gi.iter().all(|&v| v == half::bf16::ZERO), "adaptive max {out:?} {layout:?}");
            }
        }
    }

    #[test]
    fn out_of_plane_indices_are_reported() {
        let g = plan_window_pool("t", &[1, 2, 4, 4], [2, 2], None, [0, 0], [1, 1], false).unwrap();
        let go = vec![1f32; g.output_len()];
        for bad in [-1i64, 16, i64::MAX, i64::MIN] {
            let mut ind = vec![0i64; g.output_len()];
            ind[5] = bad;
            let mut gi = vec![0f32; g.input_len()];
            assert!(max_pool2d_backward(&g, Layout::Nchw, &go, &ind, &mut gi));
            assert!(max_pool2d_backward(&g, Layout::Nhwc, &go, &ind, &mut gi));
            let ag = plan_adaptive_pool(AdaptiveKind::Max, &[1, 2, 4, 4], [2, 2]).unwrap();
            assert!(adaptive_max_pool2d_backward(&ag, Layout::Nchw, &go, &ind, &mut gi));
        }
        // Channels-last scatters check their indices as they add them: in f32 (added in place)
        // and bf16 (into reused accumulators), in the first, a middle and the last image of
        // several, whole images and the row scatter's large ones (`ROW_SCATTER_MIN_ITEM`).
        for shape in [[3, 16, 4, 4], [1, 4, 256, 256]] {
            let g = plan_window_pool("t", &shape, [2, 2], None, [0, 0], [1, 1], false).unwrap();
            let ind: Vec<i64> = (0..g.output_len()).map(|o| window_max_index(&g, o)).collect();
            let go = vec![1f32; g.output_len()];
            let go16 = vec![half::bf16::ONE; g.output_len()];
            let mut gi = vec![0f32; g.input_len()];
            let mut gi16 = vec![half::bf16::ZERO; g.input_len()];
            assert!(!max_pool2d_backward(&g, Layout::Nhwc, &go, &ind, &mut gi));
            assert!(!max_pool2d_backward(&g, Layout::Nhwc, &go16, &ind, &mut gi16));
            for at in [0, g.output_len() / 2 + 1, g.output_len() - 1] {
                for bad in [-1i64, (g.h * g.w) as i64, i64::MIN] {
                    let mut ind = ind.clone();
                    ind[at] = bad;
                    assert!(
                        max_pool2d_backward(&g, Layout::Nhwc, &go, &ind, &mut gi),
                        "{shape:?} f32 {at} {bad}"
                    );
                    assert!(
                        max_pool2d_backward(&g, Layout::Nhwc, &go16, &ind, &mut gi16),
                        "{shape:?} bf16 {at} {bad}"
                    );
                }
            }
        }
    }

    /// The pixel of channels-last output `o`'s window's first tap (a valid max index).
    fn window_max_index(g: &WindowGeometry, o: usize) -> i64 {
        let pixel = o / g.c;
        let (oh, ow) = (pixel / g.out_w % g.out_h, pixel % g.out_w);
        ((oh * g.stride[0]) * g.w + ow * g.stride[1]) as i64
    }

    #[test]
    fn broadcast_divide_with_zero_strides() {
        // x (2, 3, 4), mean over dim 1 keepdim: grad_out (2, 1, 4), strides (4, 0, 1).
        let go: Vec<f32> = (0..8).map(|v| v as f32).collect();
        let mut gi = vec![0f32; 24];
        broadcast_divide(&[2, 3, 4], &[4, 0, 1], 3.0, &go, &mut gi);
        for a in 0..2 {
            for b in 0..3 {
                for c in 0..4 {
                    assert_eq!(gi[(a * 3 + b) * 4 + c], go[a * 4 + c] / 3.0);
                }
            }
        }
        // Mean over the last dim: grad_out (2, 3), strides (3, 1, 0).
        let go: Vec<f64> = (0..6).map(|v| v as f64 + 0.5).collect();
        let mut gi = vec![0f64; 24];
        broadcast_divide(&[2, 3, 4], &[3, 1, 0], 4.0, &go, &mut gi);
        assert!(gi.iter().enumerate().all(|(i, &v)| v == go[i / 4] / 4.0));
        // Every broadcast pattern against a direct index walk, on shapes that span several
        // rayon tasks (16 K elements each) with rows that do not divide them: NHWC GAP's
        // (N, H*W, C) with strides (C, 0, 1) (patterns shorter and longer than
        // `REPEAT_BLOCK`), a broadcast dim above a strided last dim, a
        // broadcast last dim, and a broadcast inside.
        let cases: [(&[usize], &[usize]); 6] = [
            (&[3, 5000, 7], &[7, 0, 1]),
            (&[3, 40, 1100], &[1100, 0, 1]),
            (&[2, 3, 4001, 5], &[15, 5, 0, 1]),
            (&[3, 6000, 5], &[1, 0, 3]),
            (&[5, 7, 3001], &[7, 1, 0]),
            (&[4, 2500, 3, 2], &[6, 0, 2, 1]),
        ];
        for (shape, strides) in cases {
            let len: usize = shape.iter().product();
            let go_len = shape.iter().zip(strides).map(|(&n, &s)| (n - 1) * s).sum::<usize>() + 1;
            let go: Vec<f32> = (0..go_len).map(|v| v as f32 * 0.37 - 11.0).collect();
            let mut gi = vec![f32::NAN; len];
            broadcast_divide(shape, strides, 3.0, &go, &mut gi);
            for (i, &v) in gi.iter().enumerate() {
                let (mut rest, mut at) = (i, 0);
                for (&n, &s) in shape.iter().zip(strides).rev() {
                    at += (rest % n) * s;
                    rest /= n;
                }
                assert_eq!(v.to_bits(), (go[at] / 3.0).to_bits(), "{shape:?} {strides:?} at {i}");
            }
        }
        // Rank 0.
        let mut gi = vec![f16::ZERO; 1];
        broadcast_divide(&[], &[], 2.0, &[f16::from_f32(3.0)], &mut gi);
        assert_eq!(gi[0], f16::from_f32(1.5));
    }

    #[test]
    fn ranges_cover_exactly_the_windows() {
        for (size, out) in [(7, 3), (3, 5), (10, 1), (8, 8), (5, 13)] {
            let r = adaptive_ranges(size, out);
            for (i, range) in r.iter().enumerate() {
                for o in 0..out {
                    let inside = adaptive_start(o, out, size) <= i && i < adaptive_end(o, out, size);
                    assert_eq!(inside, range.contains(&o), "size {size} out {out} i {i} o {o}");
                }
            }
        }
    }
}
