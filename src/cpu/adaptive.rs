//! Adaptive pooling on the CPU, with PyTorch's integer window bounds (`g.rows`, `g.cols`).
//!
//! NCHW: rayon over runs of planes; per output row, every output of the row accumulates at once
//! while the input rows of its window stream by (converted once per row for f16/bf16). The
//! accumulators carry across input rows, so each output still sums its window in PyTorch's
//! order (h ascending, then w ascending). With AVX2, f32, bf16 and f16 planes go eight at a time
//! instead: small ones through the lane path (`lanes.rs`), larger ones in `planes8`, except
//! max without indices on larger planes, which goes columns first (`by_columns`), and bf16
//! averages to four outputs from small planes, which on Intel with AVX-512 sum in any order
//! where every partial sum is exact (`exact_sums.rs`; the same bits). NHWC:
//! rayon over (image, output row), the channels of each output in registers across its window.
//!
//! Average: `sum / kh / kw` in `T::Acc`, two divisions, exactly as PyTorch's CPU contiguous
//! kernel and its CUDA NCHW kernel, so f32 NCHW results match PyTorch CPU bit for bit. (A single
//! division by `kh * kw` would be the correctly rounded mean of the sum, at most about an ulp
//! away; we keep PyTorch's arithmetic since PyTorch is the reference.)

use super::exact_sums;
use super::lanes::{self, LanePlane, LaneWindow, PlanePooling};
use super::window::{max_channels, MaxScratch, CHANNEL_TILE};
use super::{acc_from_f64, items_per_task, simd, AccScratch};
use crate::dtype::FloatElement;
use crate::ops::adaptive::AdaptiveGeometry;
use crate::ops::Layout;
use num_traits::{Float, Zero};
use rayon::prelude::*;

/// Adaptive average pooling: `sum / kh / kw` per output, the sum in `T::Acc`, rounded once.
pub fn adaptive_avg_pool2d<T: FloatElement>(g: &AdaptiveGeometry, layout: Layout, x: &[T], y: &mut [T]) {
    if g.output_len() == 0 {
        return;
    }
    let (x, y) = (&x[..g.input_len()], &mut y[..g.output_len()]);
    match layout {
        Layout::Nchw => avg_nchw(g, x, y),
        Layout::Nhwc => avg_nhwc(g, x, y),
    }
}

/// Adaptive max pooling with max pooling's rule (NaN wins, ties keep the first, indices
/// `h * W + w` within the plane).
pub fn adaptive_max_pool2d<T: FloatElement>(
    g: &AdaptiveGeometry,
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

/// `sum / kh / kw`, PyTorch's two divisions.
#[inline(always)]
fn adaptive_mean<A: Float>(sum: A, kh: usize, kw: usize) -> A {
    sum / acc_from_f64::<A>(kh as f64) / acc_from_f64::<A>(kw as f64)
}

/// Work of one plane, for task sizing: every input element at least once, every output's window.
fn plane_work(g: &AdaptiveGeometry) -> usize {
    let kh = g.h.div_ceil(g.out_h) + 1;
    let kw = g.w.div_ceil(g.out_w) + 1;
    (g.h * g.w).max(g.out_h * g.out_w * kh * kw)
}

/// The windows of every output row and column, computed once per call (PyTorch's bounds use
/// integer divisions, too slow to repeat per plane on small planes).
#[allow(clippy::type_complexity)]
fn windows(g: &AdaptiveGeometry) -> (Vec<(usize, usize)>, Vec<(usize, usize)>) {
    ((0..g.out_h).map(|oh| g.rows(oh)).collect(), (0..g.out_w).map(|ow| g.cols(ow)).collect())
}

/// Output rows' (or columns') input ranges, from [`windows`].
type Ranges<'a> = &'a [(usize, usize)];

/// Every output's window for [`lanes`], once per call, where NCHW planes of `T` take that path.
fn lane_pooling<T: FloatElement>(
    g: &AdaptiveGeometry,
    rows: &[(usize, usize)],
    cols: &[(usize, usize)],
) -> Option<PlanePooling> {
    lanes::applies::<T>(g.h * g.w).then(|| {
        let windows = rows
            .iter()
            .flat_map(|&(h0, h1)| {
                cols.iter().map(move |&(w0, w1)| LaneWindow {
                    h: (h0, h1, 1),
                    w: (w0, w1, 1),
                    first: (h0 * g.w + w0) as i32,
                    div: ((h1 - h0) as f32, (w1 - w0) as f32),
                })
            })
            .collect();
        PlanePooling::new(LanePlane::unpadded(g.h, g.w), windows)
    })
}

fn avg_nchw<T: FloatElement>(g: &AdaptiveGeometry, x: &[T], y: &mut [T]) {
    let (in_plane, out_plane) = (g.h * g.w, g.out_h * g.out_w);
    let (rows, cols) = windows(g);
    let four = four_windows::<T>(g, &rows, &cols);
    let group = if four.is_some() { exact_sums::GROUP_PLANES } else { PLANE_GROUP };
    let planes_per_task = items_per_task(plane_work(g), g.n * g.c).next_multiple_of(group);
    // The lane path's tables take a few microseconds to build, as long as a whole batch-1 op
    // takes order-free: with `four` they are built only once a group fails its check. A task
    // that finds them missing builds them itself rather than wait for another's build (a
    // blocked thread waits for a wake-up, tens of microseconds on a VM: waiting on a shared
    // build made the f32 batch-1 7x7 -> 2x2 run at half speed).
    let tables = std::sync::OnceLock::new();
    if four.is_none() {
        let _ = tables.set(lane_pooling::<T>(g, &rows, &cols));
    }
    let small = || {
        if tables.get().is_none() {
            let _ = tables.set(lane_pooling::<T>(g, &rows, &cols));
        }
        tables.get().and_then(Option::as_ref)
    };
    y.par_chunks_mut(out_plane * planes_per_task).zip(x.par_chunks(in_plane * planes_per_task)).for_each(
        |(ys, xs)| match &four {
            Some(four) => {
                four.avg_planes(xs, ys, |xs, ys| avg_nchw_in_order(g, (&rows, &cols), small(), xs, ys))
            }
            None => avg_nchw_in_order(g, (&rows, &cols), small(), xs, ys),
        },
    );
}

/// The order-free sums of [`exact_sums`] for bf16 planes pooled to four outputs, where they
/// apply (once per op).
fn four_windows<T: FloatElement>(
    g: &AdaptiveGeometry,
    rows: Ranges,
    cols: Ranges,
) -> Option<exact_sums::FourWindows> {
    if !simd::is_bf16::<T>() || rows.len() * cols.len() != 4 || !exact_sums::FourWindows::available() {
        return None;
    }
    let window = |k: usize| (rows[k / cols.len()], cols[k % cols.len()]);
    let div = |k: usize| {
        let ((h0, h1), (w0, w1)) = window(k);
        ((h1 - h0) as f32, (w1 - w0) as f32)
    };
    exact_sums::FourWindows::new((g.h, g.w), std::array::from_fn(window), std::array::from_fn(div))
}

/// NCHW planes `xs` into `ys`, each output's window summed in PyTorch's order: eight planes at
/// a time where [`fast_planes`] can, the rest here.
fn avg_nchw_in_order<T: FloatElement>(
    g: &AdaptiveGeometry,
    (rows, cols): (Ranges, Ranges),
    small: Option<&PlanePooling>,
    xs: &[T],
    ys: &mut [T],
) {
    let (in_plane, out_plane) = (g.h * g.w, g.out_h * g.out_w);
    let done = fast_planes::<T, false, false>(g, (rows, cols), small, xs, ys, &mut []);
    let (ys, xs) = (&mut ys[done * out_plane..], &xs[(done * in_plane).min(xs.len())..]);
    if ys.is_empty() {
        return;
    }
    let mut scratch = AccScratch::<T>::new();
    let mut acc = vec![T::Acc::zero(); g.out_w];
    simd::dispatch(
        #[inline(always)]
        || {
            if in_plane <= SMALL_PLANE && simd::converts_inline::<T>() {
                // Small planes (7x7 -> 2x2): per-plane loop overhead dominates row
                // streaming, so each output sums its window directly, for
                // `PLANE_GROUP` planes at once (independent chains that overlap).
                let mut yg = ys.chunks_exact_mut(out_plane * PLANE_GROUP);
                let mut xg = xs.chunks_exact(in_plane * PLANE_GROUP);
                for (yp, xp) in (&mut yg).zip(&mut xg) {
                    avg_planes_direct::<T, PLANE_GROUP>(g, rows, cols, xp, yp);
                }
                let (yr, xr) = (yg.into_remainder(), xg.remainder());
                for (yp, xp) in yr.chunks_exact_mut(out_plane).zip(xr.chunks_exact(in_plane)) {
                    avg_planes_direct::<T, 1>(g, rows, cols, xp, yp);
                }
                return;
            }
            for (yp, xp) in ys.chunks_exact_mut(out_plane).zip(xs.chunks_exact(in_plane)) {
                // Per output row, every output accumulates at once while the input rows
                // of its window stream by: each output still sums rows then columns
                // (PyTorch's order), and the outputs' chains overlap.
                for (yrow, &(h0, h1)) in yp.chunks_exact_mut(g.out_w).zip(rows) {
                    acc.iter_mut().for_each(|a| *a = T::Acc::zero());
                    for h in h0..h1 {
                        let row = scratch.view(&xp[h * g.w..(h + 1) * g.w]);
                        for (a, &(w0, w1)) in acc.iter_mut().zip(cols) {
                            for &v in &row[w0..w1] {
                                *a += v;
                            }
                        }
                    }
                    for (o, (&a, &(w0, w1))) in yrow.iter_mut().zip(acc.iter().zip(cols)) {
                        *o = simd::store::<T>(adaptive_mean(a, h1 - h0, w1 - w0));
                    }
                }
            }
        },
    );
}

/// NCHW planes up to this many elements use [`avg_planes_direct`].
const SMALL_PLANE: usize = 256;
/// Planes summed together by [`avg_planes_direct`].
const PLANE_GROUP: usize = 8;

/// `P` consecutive planes (`xp`, `yp`): each output's window summed directly in PyTorch's
/// order (h, then w), the `P` planes' sums as independent chains.
#[inline(always)]
fn avg_planes_direct<T: FloatElement, const P: usize>(
    g: &AdaptiveGeometry,
    rows: &[(usize, usize)],
    cols: &[(usize, usize)],
    xp: &[T],
    yp: &mut [T],
) {
    let (in_plane, out_plane) = (g.h * g.w, g.out_h * g.out_w);
    let (xp, yp) = (&xp[..P * in_plane], &mut yp[..P * out_plane]);
    for (oh, &(h0, h1)) in rows.iter().enumerate() {
        for (ow, &(w0, w1)) in cols.iter().enumerate() {
            let mut acc = [T::Acc::zero(); P];
            for h in h0..h1 {
                for w in w0..w1 {
                    for (p, a) in acc.iter_mut().enumerate() {
                        *a += simd::load(xp[p * in_plane + h * g.w + w]);
                    }
                }
            }
            for (p, &a) in acc.iter().enumerate() {
                yp[p * out_plane + oh * g.out_w + ow] = simd::store::<T>(adaptive_mean(a, h1 - h0, w1 - w0));
            }
        }
    }
}

fn avg_nhwc<T: FloatElement>(g: &AdaptiveGeometry, x: &[T], y: &mut [T]) {
    let c = g.c;
    let row_out = g.out_w * c;
    let rows_per_task = items_per_task(plane_work(g) * c / g.out_h.max(1), g.n * g.out_h);
    let (rows, cols) = windows(g);
    y.par_chunks_mut(row_out).enumerate().with_min_len(rows_per_task).for_each_init(
        || (AccScratch::<T>::new(), vec![T::Acc::zero(); c], Vec::with_capacity(cols.len())),
        |(scratch, acc, windows), (k, yrow)| {
            let (n, oh) = (k / g.out_h, k % g.out_h);
            let image = &x[n * g.h * g.w * c..(n + 1) * g.h * g.w * c];
            let (h0, h1) = rows[oh];
            #[cfg(target_arch = "x86_64")]
            if let Some(kind) = simd::avx2_tile_kind::<T>() {
                let vector_end = c - c % 8;
                // The whole output row in one call, as the windowed averages do.
                windows.clear();
                windows.extend(cols.iter().map(|&(w0, w1)| simd::OutputWindow {
                    h: (h0, h1, 1),
                    w: (w0, w1, 1),
                    divisors: ((h1 - h0) as f32, (w1 - w0) as f32),
                }));
                // SAFETY: `kind` comes from `avx2_tile_kind::<T>()`, so AVX2 is present and `T`
                // is its element type; `image` is the whole image and PyTorch's adaptive
                // windows lie inside it (each has a tap); `yrow` holds `out_w * c` elements,
                // output `ow` at `ow * c`; no indices are written (average).
                unsafe {
                    simd::pool_windows(
                        kind,
                        simd::WindowOp::Avg,
                        // No prefetch hints: measured on windowed pooling only.
                        (image.as_ptr().cast(), false),
                        (g.w, c),
                        windows,
                        vector_end,
                        (yrow.as_mut_ptr().cast(), false),
                        std::ptr::null_mut(),
                    );
                }
                for (yo, &(w0, w1)) in yrow.chunks_exact_mut(c).zip(cols.iter()) {
                    for c0 in vector_end..c {
                        avg_tile::<T, 1>(image, (g.w, c), ((h0, h1), (w0, w1)), c0, yo);
                    }
                }
                return;
            }
            simd::dispatch(
                #[inline(always)]
                || {
                    for (ow, yo) in yrow.chunks_exact_mut(c).enumerate() {
                        let (w0, w1) = cols[ow];
                        if simd::converts_inline::<T>() {
                            let win = ((h0, h1), (w0, w1));
                            let full = c - c % CHANNEL_TILE;
                            for c0 in (0..full).step_by(CHANNEL_TILE) {
                                avg_tile::<T, CHANNEL_TILE>(image, (g.w, c), win, c0, yo);
                            }
                            // A half tile for 8..15 leftover channels (C = 8 would otherwise run one
                            // channel at a time).
                            let mut full = full;
                            if c - full >= 8 {
                                avg_tile::<T, 8>(image, (g.w, c), win, full, yo);
                                full += 8;
                            }
                            for c0 in full..c {
                                avg_tile::<T, 1>(image, (g.w, c), win, c0, yo);
                            }
                            continue;
                        }
                        acc.iter_mut().for_each(|a| *a = T::Acc::zero());
                        for h in h0..h1 {
                            for w in w0..w1 {
                                let v = scratch.view(&image[(h * g.w + w) * c..(h * g.w + w + 1) * c]);
                                for (a, &v) in acc.iter_mut().zip(v) {
                                    *a += v;
                                }
                            }
                        }
                        for (o, &a) in yo.iter_mut().zip(acc.iter()) {
                            *o = simd::store::<T>(adaptive_mean(a, h1 - h0, w1 - w0));
                        }
                    }
                },
            );
        },
    );
}

/// Channels `c0..c0 + N` of one channels-last adaptive average window: the sum in registers
/// across the taps in PyTorch's order (h, then w), then PyTorch's two divisions.
#[inline(always)]
fn avg_tile<T: FloatElement, const N: usize>(
    image: &[T],
    (width, c): (usize, usize),
    ((h0, h1), (w0, w1)): ((usize, usize), (usize, usize)),
    c0: usize,
    yo: &mut [T],
) {
    let mut acc = [T::Acc::zero(); N];
    for h in h0..h1 {
        for w in w0..w1 {
            let px = &image[(h * width + w) * c + c0..][..N];
            for k in 0..N {
                acc[k] += simd::load(px[k]);
            }
        }
    }
    for (o, &a) in yo[c0..c0 + N].iter_mut().zip(&acc) {
        *o = simd::store(adaptive_mean(a, h1 - h0, w1 - w0));
    }
}

fn max_nchw<T: FloatElement>(g: &AdaptiveGeometry, x: &[T], y: &mut [T], indices: Option<&mut [i64]>) {
    let (in_plane, out_plane) = (g.h * g.w, g.out_h * g.out_w);
    let planes_per_task = items_per_task(plane_work(g), g.n * g.c).next_multiple_of(PLANE_GROUP);
    let (rows, cols) = windows(g);
    let small = lane_pooling::<T>(g, &rows, &cols);
    let windows = ((&rows[..], &cols[..]), small.as_ref());
    let (ys, xs) = (y.par_chunks_mut(out_plane * planes_per_task), x.par_chunks(in_plane * planes_per_task));
    match indices {
        Some(ind) => {
            ys.zip(xs).zip(ind.par_chunks_mut(out_plane * planes_per_task)).for_each(|((ys, xs), is)| {
                max_nchw_planes::<T, true>(g, windows, xs, ys, is);
            })
        }
        None => ys.zip(xs).for_each(|(ys, xs)| max_nchw_planes::<T, false>(g, windows, xs, ys, &mut [])),
    }
}

fn max_nchw_planes<T: FloatElement, const WITH_INDEX: bool>(
    g: &AdaptiveGeometry,
    ((rows, cols), small): ((Ranges, Ranges), Option<&PlanePooling>),
    xs: &[T],
    ys: &mut [T],
    is: &mut [i64],
) {
    let (in_plane, out_plane) = (g.h * g.w, g.out_h * g.out_w);
    if !WITH_INDEX && small.is_none() && max_by_columns(g, (rows, cols), xs, ys) {
        return;
    }
    let done = fast_planes::<T, true, WITH_INDEX>(g, (rows, cols), small, xs, ys, is);
    let (ys, xs) = (&mut ys[done * out_plane..], &xs[(done * in_plane).min(xs.len())..]);
    let is = if WITH_INDEX { &mut is[done * out_plane..] } else { is };
    let neg_inf = T::neg_infinity().to_acc();
    let mut scratch = AccScratch::<T>::new();
    simd::dispatch(
        #[inline(always)]
        || {
            if in_plane <= SMALL_PLANE && simd::converts_inline::<T>() {
                let groups = ys.len() / out_plane / PLANE_GROUP;
                for q in 0..groups {
                    max_planes_direct::<T, PLANE_GROUP, WITH_INDEX>(
                        g,
                        rows,
                        cols,
                        xs,
                        ys,
                        is,
                        q * PLANE_GROUP,
                    );
                }
                for p in groups * PLANE_GROUP..ys.len() / out_plane {
                    max_planes_direct::<T, 1, WITH_INDEX>(g, rows, cols, xs, ys, is, p);
                }
                return;
            }
            for (p, (yp, xp)) in ys.chunks_exact_mut(out_plane).zip(xs.chunks_exact(in_plane)).enumerate() {
                let xp = scratch.view(xp);
                for (oh, &(h0, h1)) in rows.iter().enumerate() {
                    for (ow, &(w0, w1)) in cols.iter().enumerate() {
                        let (mut m, mut at) = (neg_inf, h0 * g.w + w0);
                        for h in h0..h1 {
                            for (w, &v) in xp[h * g.w + w0..h * g.w + w1].iter().enumerate() {
                                let take = v > m || v.is_nan();
                                m = if take { v } else { m };
                                if WITH_INDEX {
                                    at = if take { h * g.w + w0 + w } else { at };
                                }
                            }
                        }
                        let k = oh * g.out_w + ow;
                        yp[k] = simd::store::<T>(m);
                        if WITH_INDEX {
                            is[p * out_plane + k] = at as i64;
                        }
                    }
                }
            }
        },
    );
}

/// NCHW adaptive max without indices, plane by plane, columns first (see [`by_columns`]):
/// f32, bf16 and f16 planes at least 8 wide, with AVX2, where windows are large (at least
/// [`BY_COLUMNS_MIN_INPUTS_PER_OUTPUT`] inputs per output). Returns `false`, having written
/// nothing, where it does not apply.
fn max_by_columns<T: FloatElement>(
    g: &AdaptiveGeometry,
    (rows, cols): (Ranges, Ranges),
    xs: &[T],
    ys: &mut [T],
) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        let Some(kind) = simd::avx2_tile_kind::<T>() else { return false };
        let (in_plane, out_plane) = (g.h * g.w, g.out_h * g.out_w);
        if g.w < 8 || in_plane < BY_COLUMNS_MIN_INPUTS_PER_OUTPUT * out_plane {
            return false;
        }
        let mut column_max = vec![0f32; g.w];
        let mut vals = vec![0f32; out_plane];
        for (yp, xp) in ys.chunks_exact_mut(out_plane).zip(xs.chunks_exact(in_plane)) {
            // SAFETY: `avx2_tile_kind` found AVX2 and that `T` is the f32, bf16 or f16 named by
            // `kind`; `xp` is one whole `g.h x g.w` plane, at least 8 wide (checked); PyTorch's
            // windows lie inside it; `column_max` holds `g.w` and `vals` `out_plane` f32.
            unsafe {
                by_columns::max_plane(
                    kind,
                    xp.as_ptr().cast(),
                    (g.h, g.w),
                    rows,
                    cols,
                    &mut column_max,
                    &mut vals,
                )
            };
            for (y, &v) in yp.iter_mut().zip(&vals) {
                // Exact: `v` is one of the plane's values, and `T::Acc` is f32.
                *y = simd::store::<T>(acc_from_f64(f64::from(v)));
            }
        }
        true
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (g, rows, cols, xs, ys);
        false
    }
}

/// Small windows stay in `planes8`: by columns, each output's own work (a window maximum over
/// a few columns, the zero test, the store) outweighs what the columns save. Measured on
/// 64x64 planes: 7x7 windows (41 inputs per output) 1.1x to 1.3x faster by columns, 4x4
/// windows (16) 0.85x, 2x2 (4) 0.5x to 0.67x; 112x112 -> 7x7 (256) 1.9x.
const BY_COLUMNS_MIN_INPUTS_PER_OUTPUT: usize = 32;

/// Adaptive max over NCHW planes, columns first. The scalar rule (`v > max || isnan(v)` in
/// (h, w) order) picks the largest value, and only order decides between values that compare
/// equal yet differ in bits: +0 and -0 (the first one seen wins) and NaNs (the last one wins).
/// So each output row's band of input rows is first reduced down the columns, eight columns
/// per vector, in any order, then each output takes the largest of its window's column
/// maxima; the outputs where order could matter are redone in PyTorch's order: every output of
/// a band that holds a NaN (found by a running sum per column, which a NaN makes NaN; an
/// inf - inf makes a false alarm, which costs only time) and every output whose maximum is a
/// zero. The result is the scalar loop's, bit for bit. Against the eight-plane transposes of
/// `planes8` this loads each input vector once with no shuffles and spends one maximum and one
/// addition per eight inputs, instead of a compare-blend per input.
#[cfg(target_arch = "x86_64")]
mod by_columns {
    use super::Ranges;
    use crate::cpu::simd::avx2::{load1, load8};
    use crate::cpu::simd::TileKind;
    use std::arch::x86_64::*;

    /// Every output of one plane at `x` (`height x width` elements of `kind`, `width >= 8`)
    /// into `vals[oh * cols.len() + ow]`, as f32 (exact for both kinds).
    ///
    /// # Safety
    /// AVX2; `x` readable for `height * width` elements of `kind`; every window inside the
    /// plane; `column_max` holds `width` and `vals` `rows.len() * cols.len()` f32.
    #[target_feature(enable = "avx2,f16c")]
    pub(super) unsafe fn max_plane(
        kind: TileKind,
        x: *const u8,
        (height, width): (usize, usize),
        rows: Ranges,
        cols: Ranges,
        column_max: &mut [f32],
        vals: &mut [f32],
    ) {
        debug_assert!(width >= 8 && column_max.len() >= width && vals.len() >= rows.len() * cols.len());
        debug_assert!(rows.iter().all(|&(h0, h1)| h0 < h1 && h1 <= height));
        let column_max = column_max.as_mut_ptr();
        for (oh, &(h0, h1)) in rows.iter().enumerate() {
            // Columns in vectors of eight, four at a time while four fit; a last partial vector
            // is the plane's last eight columns again (a maximum may see a column twice).
            let mut nan = _mm256_setzero_ps();
            let mut w = 0;
            while w < width {
                if w + 32 <= width {
                    nan = _mm256_or_ps(nan, band_columns::<4>(kind, x, width, (h0, h1), w, column_max));
                    w += 32;
                } else {
                    let at = w.min(width - 8);
                    nan = _mm256_or_ps(nan, band_columns::<1>(kind, x, width, (h0, h1), at, column_max));
                    w = at + 8;
                }
            }
            let band_has_nan = _mm256_movemask_ps(nan) != 0;
            for (ow, &(w0, w1)) in cols.iter().enumerate() {
                let m = if band_has_nan { 0.0 } else { window_max(column_max, (w0, w1)) };
                // A zero maximum may be +0 or -0 in PyTorch's order; NaNs as above.
                vals[oh * cols.len() + ow] =
                    if m == 0.0 || band_has_nan { in_order(kind, x, width, (h0, h1), (w0, w1)) } else { m };
            }
        }
    }

    /// Columns `at..at + 8 * R` of rows `h0..h1`: their maxima (in any order) stored at
    /// `column_max + at`; returns the lanes whose running sums are NaN (all-ones), which
    /// include every column holding a NaN.
    #[inline(always)]
    unsafe fn band_columns<const R: usize>(
        kind: TileKind,
        x: *const u8,
        width: usize,
        (h0, h1): (usize, usize),
        at: usize,
        column_max: *mut f32,
    ) -> __m256 {
        let mut max = [_mm256_set1_ps(f32::NEG_INFINITY); R];
        let mut sum = [_mm256_setzero_ps(); R];
        for h in h0..h1 {
            for r in 0..R {
                let v = load8(kind, x, h * width + at + 8 * r);
                max[r] = _mm256_max_ps(max[r], v);
                sum[r] = _mm256_add_ps(sum[r], v);
            }
        }
        let mut nan = _mm256_setzero_ps();
        for r in 0..R {
            _mm256_storeu_ps(column_max.add(at + 8 * r), max[r]);
            nan = _mm256_or_ps(nan, _mm256_cmp_ps::<_CMP_UNORD_Q>(sum[r], sum[r]));
        }
        nan
    }

    /// The largest of `column_max[w0..w1]` (no NaNs among them), eight at a time where eight fit.
    #[inline(always)]
    unsafe fn window_max(column_max: *const f32, (w0, w1): (usize, usize)) -> f32 {
        if w1 - w0 < 8 {
            let mut m = f32::NEG_INFINITY;
            for w in w0..w1 {
                m = m.max(*column_max.add(w));
            }
            return m;
        }
        let mut v = _mm256_loadu_ps(column_max.add(w1 - 8));
        let mut w = w0;
        while w + 8 < w1 {
            v = _mm256_max_ps(v, _mm256_loadu_ps(column_max.add(w)));
            w += 8;
        }
        let v = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let v = _mm_max_ps(v, _mm_movehl_ps(v, v));
        let v = _mm_max_ss(v, _mm_shuffle_ps::<1>(v, v));
        _mm_cvtss_f32(v)
    }

    /// One window in PyTorch's order with its rule (`v > max || isnan(v)`, from -inf).
    #[inline(always)]
    unsafe fn in_order(
        kind: TileKind,
        x: *const u8,
        width: usize,
        (h0, h1): (usize, usize),
        (w0, w1): (usize, usize),
    ) -> f32 {
        let mut m = f32::NEG_INFINITY;
        for h in h0..h1 {
            for w in w0..w1 {
                let v = load1(kind, x, h * width + w);
                if v > m || v.is_nan() {
                    m = v;
                }
            }
        }
        m
    }
}

/// Planes `p0..p0 + P` of a task (`xs`, `ys`, `is`): each output's window scanned directly in
/// PyTorch's order with max pooling's rule, the `P` planes as independent chains.
#[inline(always)]
fn max_planes_direct<T: FloatElement, const P: usize, const WITH_INDEX: bool>(
    g: &AdaptiveGeometry,
    rows: &[(usize, usize)],
    cols: &[(usize, usize)],
    xs: &[T],
    ys: &mut [T],
    is: &mut [i64],
    p0: usize,
) {
    let (in_plane, out_plane) = (g.h * g.w, g.out_h * g.out_w);
    let xp = &xs[p0 * in_plane..(p0 + P) * in_plane];
    let yp = &mut ys[p0 * out_plane..(p0 + P) * out_plane];
    let neg_inf = T::neg_infinity().to_acc();
    for (oh, &(h0, h1)) in rows.iter().enumerate() {
        for (ow, &(w0, w1)) in cols.iter().enumerate() {
            let mut m = [neg_inf; P];
            let mut at = [h0 * g.w + w0; P];
            for h in h0..h1 {
                for w in w0..w1 {
                    let i = h * g.w + w;
                    for p in 0..P {
                        let v = simd::load(xp[p * in_plane + i]);
                        let take = v > m[p] || v.is_nan();
                        m[p] = if take { v } else { m[p] };
                        if WITH_INDEX {
                            at[p] = if take { i } else { at[p] };
                        }
                    }
                }
            }
            let k = oh * g.out_w + ow;
            for p in 0..P {
                yp[p * out_plane + k] = simd::store::<T>(m[p]);
                if WITH_INDEX {
                    is[(p0 + p) * out_plane + k] = at[p] as i64;
                }
            }
        }
    }
}

fn max_nhwc<T: FloatElement>(g: &AdaptiveGeometry, x: &[T], y: &mut [T], indices: Option<&mut [i64]>) {
    let row_out = g.out_w * g.c;
    let rows_per_task = items_per_task(plane_work(g) * g.c / g.out_h.max(1), g.n * g.out_h);
    let ys = y.par_chunks_mut(row_out).enumerate().with_min_len(rows_per_task);
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

#[inline(always)]
fn max_nhwc_row<T: FloatElement, const WITH_INDEX: bool>(
    g: &AdaptiveGeometry,
    x: &[T],
    k: usize,
    yrow: &mut [T],
    irow: &mut [i64],
    s: &mut MaxScratch<T>,
) {
    let c = g.c;
    let (n, oh) = (k / g.out_h, k % g.out_h);
    let image = &x[n * g.h * g.w * c..(n + 1) * g.h * g.w * c];
    let (h0, h1) = g.rows(oh);
    for (ow, yo) in yrow.chunks_exact_mut(c).enumerate() {
        let (w0, w1) = g.cols(ow);
        let io = if WITH_INDEX { &mut irow[ow * c..(ow + 1) * c] } else { &mut [][..] };
        // Values and indices in registers across the whole window, as windowed channels-last.
        if max_channels::<T, WITH_INDEX>(image, (g.h, g.w, c), (h0, h1, 1), (w0, w1, 1), yo, io) {
            continue;
        }
        s.start((h0 * g.w + w0) as i64);
        for h in h0..h1 {
            for w in w0..w1 {
                let at = h * g.w + w;
                s.tap::<WITH_INDEX>(&image[at * c..(at + 1) * c], at as i64);
            }
        }
        let ind = if WITH_INDEX { &mut irow[ow * c..(ow + 1) * c] } else { &mut [][..] };
        s.store::<WITH_INDEX>(yo, ind);
    }
}

/// Planes of a task (`xs`, `ys`, `is`) done eight at a time with AVX2, returning how many (0
/// without AVX2 or for f64; the rest is the caller's):
/// small planes all of them through the lane path ([`lanes`]), larger ones in groups of eight
/// by [`planes8`].
fn fast_planes<T: FloatElement, const MAX: bool, const WITH_INDEX: bool>(
    g: &AdaptiveGeometry,
    (rows, cols): (Ranges, Ranges),
    small: Option<&PlanePooling>,
    xs: &[T],
    ys: &mut [T],
    is: &mut [i64],
) -> usize {
    let (in_plane, out_plane) = (g.h * g.w, g.out_h * g.out_w);
    // `small` exists exactly where the lane path applies (`lane_pooling`).
    if let Some(pooling) = small {
        return if lanes::pool_planes::<T, T, MAX, WITH_INDEX>(pooling, xs, ys, is) {
            (ys.len() / out_plane.max(1)).min(xs.len() / in_plane.max(1))
        } else {
            0
        };
    }
    #[cfg(target_arch = "x86_64")]
    {
        let Some(kind) = simd::avx2_tile_kind::<T>() else { return 0 };
        let groups = (ys.len() / out_plane.max(1)).min(xs.len() / in_plane.max(1)) / 8;
        let mut vals = vec![0f32; 8 * out_plane];
        let mut idx = vec![0i32; if WITH_INDEX { 8 * out_plane } else { 0 }];
        if in_plane > i32::MAX as usize {
            return 0;
        }
        // bf16 only: f32 measured 0.95x with them (its AVX2 transpose has no widening to save).
        // Tests set `AVX2_ONLY` to run the AVX2 transposes too (the same bits).
        let run = if kind == simd::TileKind::Bf16 && simd::avx512_allowed() {
            planes8::run_avx512::<MAX, WITH_INDEX, 4>
        } else {
            planes8::run::<MAX, WITH_INDEX, 4>
        };
        for q in 0..groups {
            let xg = &xs[8 * q * in_plane..];
            // SAFETY: AVX2 was detected by `avx2_tile_kind`, which also checked that `T` is the
            // f32, bf16 or f16 named by `kind`; `xg` holds at least the group's 8 planes and the kernel
            // reads only inside `xg.len()` elements; PyTorch's windows lie inside the plane;
            // `vals`/`idx` hold 8 entries per output; plane indices fit i32 (checked); the
            // AVX-512 entry only where the CPU has AVX-512 F and BW (`avx512_allowed`).
            unsafe { run(kind, xg.as_ptr().cast(), xg.len(), (g.h, g.w), rows, cols, &mut vals, &mut idx) };
            let ys = &mut ys[8 * q * out_plane..][..8 * out_plane];
            let is = if WITH_INDEX { &mut is[8 * q * out_plane..][..8 * out_plane] } else { &mut is[..0] };
            // SAFETY: AVX2 and `kind` as above; `vals`/`idx` hold `8 * out_plane` entries; `ys`
            // (and `is` with `WITH_INDEX`) hold the group's `8 * out_plane` outputs.
            unsafe {
                lanes::avx2::scatter_group::<WITH_INDEX>(
                    kind,
                    &vals,
                    &idx,
                    out_plane,
                    8,
                    ys.as_mut_ptr().cast(),
                    is.as_mut_ptr(),
                );
            }
        }
        8 * groups
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (g, rows, cols, xs, ys, is);
        0
    }
}

/// NCHW adaptive pooling of eight larger planes at once with AVX2 (lane `p` of every vector
/// belongs to plane `p`): the outputs of an output row are done `OB` at a time with their
/// accumulators in registers, streaming the window rows once for all of them; each window row
/// segment is read as eight 8-wide loads (one per plane) and transposed, so tap `j` of all
/// eight planes is one vector. The taps are applied in PyTorch's order (h, then w), so every
/// plane gets exactly the scalar loop's result.
#[cfg(target_arch = "x86_64")]
mod planes8 {
    use crate::cpu::lanes::avx2::taps;
    use crate::cpu::lanes::avx512;
    use crate::cpu::simd::avx2::max_tap;
    use crate::cpu::simd::TileKind;
    use std::arch::x86_64::*;

    /// Eight planes starting at `x` (`len` elements readable from `x`, planes of `h_w.0 *
    /// h_w.1` elements): per output `k` (row-major over `rows` x `cols`), `vals[8k + p]` gets
    /// plane `p`'s `sum / kh / kw` (`MAX` false) or max (`MAX` true, PyTorch's rule: take when
    /// greater or NaN), and with `WITH_INDEX` `idx[8k + p]` its plane index.
    ///
    /// # Safety
    /// AVX2 must be available, `x` must point to `len >= 8 * plane` readable elements of the
    /// type named by `kind`, every window inside the plane, and `vals`/`idx` hold `8 *
    /// rows.len() * cols.len()` entries (`idx` only with `WITH_INDEX`).
    #[target_feature(enable = "avx2,f16c")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn run<const MAX: bool, const WITH_INDEX: bool, const OB: usize>(
        kind: TileKind,
        x: *const u8,
        len: usize,
        (height, width): (usize, usize),
        rows: &[(usize, usize)],
        cols: &[(usize, usize)],
        vals: &mut [f32],
        idx: &mut [i32],
    ) {
        run_body::<MAX, WITH_INDEX, OB, false>(kind, x, len, (height, width), rows, cols, vals, idx)
    }

    /// [`run`] with AVX-512's two-source permutes for the 8x8 transposes
    /// (`lanes::avx512::taps`, the same bits): for bf16 four permutes instead of 24 shuffles,
    /// eight widenings and eight shifts (bf16 112x112 -> 7x7 average 1.075x).
    ///
    /// # Safety
    /// As [`run`], and the CPU has AVX-512 F and BW.
    #[target_feature(enable = "avx2,f16c,avx512f,avx512bw")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn run_avx512<const MAX: bool, const WITH_INDEX: bool, const OB: usize>(
        kind: TileKind,
        x: *const u8,
        len: usize,
        (height, width): (usize, usize),
        rows: &[(usize, usize)],
        cols: &[(usize, usize)],
        vals: &mut [f32],
        idx: &mut [i32],
    ) {
        run_body::<MAX, WITH_INDEX, OB, true>(kind, x, len, (height, width), rows, cols, vals, idx)
    }

    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn run_body<const MAX: bool, const WITH_INDEX: bool, const OB: usize, const AVX512: bool>(
        kind: TileKind,
        x: *const u8,
        len: usize,
        (height, width): (usize, usize),
        rows: &[(usize, usize)],
        cols: &[(usize, usize)],
        vals: &mut [f32],
        idx: &mut [i32],
    ) {
        let plane = height * width;
        // Outputs of one output row are done `OB` at a time with their accumulators in
        // registers, streaming the window rows once for all of them (each output still applies
        // its taps h-major, then w): eight planes' rows stream in order, which the prefetchers
        // follow.
        for (oh, &(h0, h1)) in rows.iter().enumerate() {
            for b0 in (0..cols.len()).step_by(OB) {
                let block = &cols[b0..(b0 + OB).min(cols.len())];
                let mut acc = [_mm256_set1_ps(if MAX { f32::NEG_INFINITY } else { 0.0 }); OB];
                let mut at = [_mm256_setzero_si256(); OB];
                for (i, at) in at.iter_mut().enumerate() {
                    *at = _mm256_set1_epi32((h0 * width + block.get(i).map_or(0, |c| c.0)) as i32);
                }
                for h in h0..h1 {
                    for (i, &(w0, w1)) in block.iter().enumerate() {
                        let mut w = w0;
                        while w < w1 {
                            let n = (w1 - w).min(8);
                            let cell = h * width + w;
                            // SAFETY (AVX-512 loads): the eight planes' cells `cell..cell + 8`
                            // lie inside `len` (checked here).
                            let t = if AVX512 && 7 * plane + cell + 8 <= len {
                                avx512::taps(kind, x, plane, cell)
                            } else {
                                taps(kind, x, len, plane, cell, n)
                            };
                            for (j, &v) in t.iter().enumerate().take(n) {
                                if MAX {
                                    let here = _mm256_set1_epi32((h * width + w + j) as i32);
                                    max_tap::<WITH_INDEX>(v, &mut acc[i], &mut at[i], here);
                                } else {
                                    acc[i] = _mm256_add_ps(acc[i], v);
                                }
                            }
                            w += n;
                        }
                    }
                }
                for (i, &(w0, w1)) in block.iter().enumerate() {
                    let k = oh * cols.len() + b0 + i;
                    let mut r = acc[i];
                    if !MAX {
                        // PyTorch's two divisions, as `adaptive_mean`.
                        let kh = _mm256_set1_ps((h1 - h0) as f32);
                        r = _mm256_div_ps(_mm256_div_ps(r, kh), _mm256_set1_ps((w1 - w0) as f32));
                    }
                    _mm256_storeu_ps(vals[8 * k..8 * k + 8].as_mut_ptr(), r);
                    if WITH_INDEX {
                        _mm256_storeu_si256(idx[8 * k..8 * k + 8].as_mut_ptr().cast(), at[i]);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::test_util::{for_all_floats, offset, random, rare_nan, same, special, zeros_at_most};
    use crate::ops::adaptive::{plan_adaptive_pool, AdaptiveKind};

    fn outputs(g: &AdaptiveGeometry) -> impl Iterator<Item = [usize; 4]> + '_ {
        (0..g.n).flat_map(move |n| {
            (0..g.c).flat_map(move |c| {
                (0..g.out_h).flat_map(move |oh| (0..g.out_w).map(move |ow| [n, c, oh, ow]))
            })
        })
    }

    /// The plain loop: per output, its window in h-then-w order, then PyTorch's finish.
    fn reference<T: FloatElement>(
        g: &AdaptiveGeometry,
        layout: Layout,
        x: &[T],
    ) -> (Vec<T>, Vec<T>, Vec<i64>) {
        let len = g.output_len();
        let (mut avg, mut max, mut ind) = (vec![T::default(); len], vec![T::default(); len], vec![-1; len]);
        for [n, c, oh, ow] in outputs(g) {
            let ((h0, h1), (w0, w1)) = (g.rows(oh), g.cols(ow));
            let (mut sum, mut m, mut mi) =
                (T::Acc::zero(), T::neg_infinity().to_acc(), (h0 * g.w + w0) as i64);
            for h in h0..h1 {
                for w in w0..w1 {
                    let v = x[offset(layout, [n, c, h, w], [g.c, g.h, g.w])].to_acc();
                    sum += v;
                    if v > m || v.is_nan() {
                        m = v;
                        mi = (h * g.w + w) as i64;
                    }
                }
            }
            let at = offset(layout, [n, c, oh, ow], [g.c, g.out_h, g.out_w]);
            let (kh, kw) =
                (acc_from_f64::<T::Acc>((h1 - h0) as f64), acc_from_f64::<T::Acc>((w1 - w0) as f64));
            avg[at] = T::from_acc(sum / kh / kw);
            max[at] = T::from_acc(m);
            ind[at] = mi;
        }
        (avg, max, ind)
    }

    fn all<T: FloatElement>() {
        let shapes: [([usize; 4], [usize; 2]); 23] = [
            ([2, 19, 7, 7], [2, 2]),
            ([3, 27, 9, 9], [4, 3]),
            ([1, 17, 24, 20], [3, 3]),
            ([2, 3, 14, 14], [7, 7]),
            ([2, 3, 10, 9], [3, 4]),
            ([1, 2, 3, 3], [5, 7]),
            ([2, 2, 5, 8], [5, 8]),
            ([1, 1, 1, 4099], [1, 10]),
            ([1, 2, 300, 1], [7, 2]),
            ([3, 4, 6, 6], [1, 1]),
            ([0, 2, 4, 4], [2, 2]),
            ([1, 16, 13, 11], [4, 3]),
            // Channels-last AVX2 blocks: 32 channels, then 8, then 3 scalar channels.
            ([1, 43, 9, 9], [4, 3]),
            // Many 32-channel blocks, for the rare-NaN data's fast paths.
            ([2, 136, 7, 7], [2, 2]),
            // 4 KiB pixel strides (1024 f32 or 2048 bf16 channels) and 16-tap windows: the
            // channels-last average runs in two row passes.
            ([1, 1024, 7, 7], [2, 2]),
            ([1, 2048, 8, 7], [2, 2]),
            // NCHW planes too large for the lane path: one AVX2 group of eight (`planes8`,
            // results transposed back eight outputs at a time plus one), then three planes.
            ([1, 11, 48, 50], [7, 7]),
            // Max without indices on planes too large for the lane path, columns first
            // (`by_columns`): 16-wide windows (vectors of 8, four at a time); overlapping
            // windows 7 and 8 wide over a width that is no multiple of 8 (a scalar window
            // maximum, a vector one, the last vector overlapping); 100-wide windows.
            ([1, 3, 112, 112], [7, 7]),
            ([2, 3, 45, 61], [5, 9]),
            ([1, 2, 9, 300], [2, 3]),
            // Small windows on a large plane: max without indices stays in `planes8`.
            ([1, 9, 50, 60], [20, 24]),
            // Channels-last averages on narrow pixels, windows side by side (`narrow_group`):
            // 20 windows of one width (two groups of eight, then four alone); 17 windows of
            // three and four columns, mixed so that no eight agree: each goes alone.
            ([2, 8, 6, 40], [3, 20]),
            ([1, 24, 5, 45], [2, 17]),
        ];
        for (shape, out) in shapes {
            let g = plan_adaptive_pool(AdaptiveKind::Max, &shape, out).unwrap();
            for x in [
                random::<T>(g.input_len(), 5),
                special::<T>(g.input_len(), 11),
                rare_nan::<T>(g.input_len(), 13),
                zeros_at_most::<T>(g.input_len(), 17),
            ] {
                for layout in [Layout::Nchw, Layout::Nhwc] {
                    let what = format!("{:?} {shape:?}->{out:?} {layout:?}", T::DTYPE);
                    let (want_avg, want_max, want_ind) = reference(&g, layout, &x);
                    let mut y = vec![T::from_f64(9.0); g.output_len()];
                    adaptive_avg_pool2d(&g, layout, &x, &mut y);
                    for (i, (a, b)) in y.iter().zip(&want_avg).enumerate() {
                        assert!(same(*a, *b), "avg {what} at {i}: {a:?} vs {b:?}");
                    }
                    let mut ind = vec![-7i64; g.output_len()];
                    adaptive_max_pool2d(&g, layout, &x, &mut y, Some(&mut ind));
                    for (i, (a, b)) in y.iter().zip(&want_max).enumerate() {
                        assert!(same(*a, *b), "max {what} at {i}: {a:?} vs {b:?}");
                    }
                    assert_eq!(ind, want_ind, "indices {what}");
                    let mut y2 = vec![T::from_f64(9.0); g.output_len()];
                    adaptive_max_pool2d(&g, layout, &x, &mut y2, None);
                    assert!(y2.iter().zip(&want_max).all(|(a, b)| same(*a, *b)), "max (no indices) {what}");
                }
            }
        }
    }

    #[test]
    fn adaptive_pools_match_the_plain_loop_bit_for_bit() {
        // bf16 channels-last averages run in AVX-512 registers where the CPU has them: both ways.
        for avx2_only in [false, true] {
            crate::cpu::simd::AVX2_ONLY.store(avx2_only, std::sync::atomic::Ordering::Relaxed);
            for_all_floats!(all);
        }
        crate::cpu::simd::AVX2_ONLY.store(false, std::sync::atomic::Ordering::Relaxed);
    }

    /// A NaN that only a band's last, overlapping column vector sees (the plane is 61 wide:
    /// vectors at columns 0, 8, ..., 48 and 53): `vmaxps` drops a NaN when a later row of its
    /// column is not NaN, so only the NaN probe sends the band to the exact loop.
    fn nan_in_the_last_column_vector<T: FloatElement>() {
        let g = plan_adaptive_pool(AdaptiveKind::Max, &[1, 1, 50, 61], [5, 9]).unwrap();
        let mut x = vec![T::from_f64(-1.0); g.input_len()];
        x[60] = T::from_f64(f64::NAN);
        let mut y = vec![T::from_f64(9.0); g.output_len()];
        adaptive_max_pool2d(&g, Layout::Nchw, &x, &mut y, None);
        let (_, want, _) = reference(&g, Layout::Nchw, &x);
        assert!(y[8].is_nan(), "{:?}", T::DTYPE);
        assert!(y.iter().zip(&want).all(|(a, b)| same(*a, *b)), "{:?}", T::DTYPE);
    }

    #[test]
    fn a_nan_seen_only_by_the_last_column_vector_wins() {
        for_all_floats!(nan_in_the_last_column_vector);
    }

    #[test]
    fn empty_outputs_do_nothing() {
        let g = plan_adaptive_pool(AdaptiveKind::Avg, &[2, 3, 4, 4], [0, 2]).unwrap();
        adaptive_avg_pool2d::<f32>(&g, Layout::Nchw, &[0.0; 96], &mut []);
        let g = plan_adaptive_pool(AdaptiveKind::Avg, &[2, 0, 4, 4], [2, 2]).unwrap();
        adaptive_avg_pool2d::<f32>(&g, Layout::Nhwc, &[], &mut []);
    }
}
