//! Adaptive pooling on the CPU, with PyTorch's integer window bounds (`g.rows`, `g.cols`).
//!
//! NCHW: rayon over runs of planes; per output row, every output of the row accumulates at once
//! while the input rows of its window stream by (converted once per row for f16/bf16). The
//! accumulators carry across input rows, so each output still sums its window in PyTorch's
//! order (h ascending, then w ascending). NHWC: rayon over (image, output row), a C-wide
//! accumulator vector per output.
//!
//! Average: `sum / kh / kw` in `T::Acc`, two divisions, exactly as PyTorch's CPU contiguous
//! kernel and its CUDA NCHW kernel, so f32 NCHW results match PyTorch CPU bit for bit. (A single
//! division by `kh * kw` would be the correctly rounded mean of the sum, at most about an ulp
//! away; we keep PyTorch's arithmetic since PyTorch is the reference.)

use super::window::MaxScratch;
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

fn avg_nchw<T: FloatElement>(g: &AdaptiveGeometry, x: &[T], y: &mut [T]) {
    let (in_plane, out_plane) = (g.h * g.w, g.out_h * g.out_w);
    let planes_per_task = items_per_task(plane_work(g));
    let (rows, cols) = windows(g);
    y.par_chunks_mut(out_plane * planes_per_task).zip(x.par_chunks(in_plane * planes_per_task)).for_each(
        |(ys, xs)| {
            let mut scratch = AccScratch::<T>::new();
            let mut acc = vec![T::Acc::zero(); g.out_w];
            simd::dispatch(
                #[inline(always)]
                || {
                    for (yp, xp) in ys.chunks_exact_mut(out_plane).zip(xs.chunks_exact(in_plane)) {
                        // Per output row, every output accumulates at once while the input rows
                        // of its window stream by: each output still sums rows then columns
                        // (PyTorch's order), and the outputs' chains overlap.
                        for (yrow, &(h0, h1)) in yp.chunks_exact_mut(g.out_w).zip(&rows) {
                            acc.iter_mut().for_each(|a| *a = T::Acc::zero());
                            for h in h0..h1 {
                                let row = scratch.view(&xp[h * g.w..(h + 1) * g.w]);
                                for (a, &(w0, w1)) in acc.iter_mut().zip(&cols) {
                                    for &v in &row[w0..w1] {
                                        *a += v;
                                    }
                                }
                            }
                            for (o, (&a, &(w0, w1))) in yrow.iter_mut().zip(acc.iter().zip(&cols)) {
                                *o = T::from_acc(adaptive_mean(a, h1 - h0, w1 - w0));
                            }
                        }
                    }
                },
            );
        },
    );
}

fn avg_nhwc<T: FloatElement>(g: &AdaptiveGeometry, x: &[T], y: &mut [T]) {
    let c = g.c;
    let row_out = g.out_w * c;
    let rows_per_task = items_per_task(plane_work(g) * c / g.out_h.max(1));
    let (rows, cols) = windows(g);
    y.par_chunks_mut(row_out).enumerate().with_min_len(rows_per_task).for_each_init(
        || (AccScratch::<T>::new(), vec![T::Acc::zero(); c]),
        |(scratch, acc), (k, yrow)| {
            let (n, oh) = (k / g.out_h, k % g.out_h);
            let image = &x[n * g.h * g.w * c..(n + 1) * g.h * g.w * c];
            let (h0, h1) = rows[oh];
            simd::dispatch(
                #[inline(always)]
                || {
                    for (ow, yo) in yrow.chunks_exact_mut(c).enumerate() {
                        let (w0, w1) = cols[ow];
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
                            *o = T::from_acc(adaptive_mean(a, h1 - h0, w1 - w0));
                        }
                    }
                },
            );
        },
    );
}

fn max_nchw<T: FloatElement>(g: &AdaptiveGeometry, x: &[T], y: &mut [T], indices: Option<&mut [i64]>) {
    let (in_plane, out_plane) = (g.h * g.w, g.out_h * g.out_w);
    let planes_per_task = items_per_task(plane_work(g));
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

fn max_nchw_planes<T: FloatElement, const WITH_INDEX: bool>(
    g: &AdaptiveGeometry,
    xs: &[T],
    ys: &mut [T],
    is: &mut [i64],
) {
    let (in_plane, out_plane) = (g.h * g.w, g.out_h * g.out_w);
    let (rows, cols) = windows(g);
    let neg_inf = T::neg_infinity().to_acc();
    let mut scratch = AccScratch::<T>::new();
    simd::dispatch(
        #[inline(always)]
        || {
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
                        yp[k] = T::from_acc(m);
                        if WITH_INDEX {
                            is[p * out_plane + k] = at as i64;
                        }
                    }
                }
            }
        },
    );
}

fn max_nhwc<T: FloatElement>(g: &AdaptiveGeometry, x: &[T], y: &mut [T], indices: Option<&mut [i64]>) {
    let row_out = g.out_w * g.c;
    let rows_per_task = items_per_task(plane_work(g) * g.c / g.out_h.max(1));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::test_util::{for_all_floats, offset, random, same, special};
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
        let shapes: [([usize; 4], [usize; 2]); 9] = [
            ([2, 3, 14, 14], [7, 7]),
            ([2, 3, 10, 9], [3, 4]),
            ([1, 2, 3, 3], [5, 7]),
            ([2, 2, 5, 8], [5, 8]),
            ([1, 1, 1, 4099], [1, 10]),
            ([1, 2, 300, 1], [7, 2]),
            ([3, 4, 6, 6], [1, 1]),
            ([0, 2, 4, 4], [2, 2]),
            ([1, 16, 13, 11], [4, 3]),
        ];
        for (shape, out) in shapes {
            let g = plan_adaptive_pool(AdaptiveKind::Max, &shape, out).unwrap();
            for x in [random::<T>(g.input_len(), 5), special::<T>(g.input_len(), 11)] {
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
        for_all_floats!(all);
    }

    #[test]
    fn empty_outputs_do_nothing() {
        let g = plan_adaptive_pool(AdaptiveKind::Avg, &[2, 3, 4, 4], [0, 2]).unwrap();
        adaptive_avg_pool2d::<f32>(&g, Layout::Nchw, &[0.0; 96], &mut []);
        let g = plan_adaptive_pool(AdaptiveKind::Avg, &[2, 0, 4, 4], [2, 2]).unwrap();
        adaptive_avg_pool2d::<f32>(&g, Layout::Nhwc, &[], &mut []);
    }
}
