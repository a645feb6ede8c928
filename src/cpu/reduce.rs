//! Sums and means over the middle axis of `[outer, reduce, inner]`: NCHW GAP and `mean` over the
//! last dims (`inner == 1`, row sums), NHWC GAP and `mean` over leading or middle dims
//! (`inner > 1`, a column-vector accumulator streamed over the reduced rows).
//!
//! Summation order is fixed by constants, never by the thread count, so results repeat bit for
//! bit on any machine. Both paths cascade (sum small blocks, then add block sums) so the error
//! grows with the number of levels rather than the length of the reduction.

use super::{acc_from_f64, items_per_task, simd, AccScratch};
use crate::dtype::FloatElement;
use crate::ops::reduce_geometry::{ReduceFinish, ReduceGeometry};
use num_traits::{Float, Zero};
use rayon::prelude::*;

/// Independent accumulators of a row sum: enough to hide add latency and let LLVM use full
/// vector registers (4 SSE or 2 AVX registers for f32).
const LANES: usize = 16;
/// Rows shorter than this are summed in `SHORT_LANES` lanes (one AVX2 register of f32).
const SHORT_ROW: usize = 128;
const SHORT_LANES: usize = 8;
/// Cascade level 0: a block summed in `LANES` lanes, then a lane tree.
const BLOCK: usize = 512;
/// Cascade level 1: a segment sums up to 64 block sums in order. Long rows are split into
/// segments for parallelism; their sums are combined in a fixed order (level 2 and 3).
const SEGMENT: usize = 64 * BLOCK;
/// Level 2: segment sums are added in groups of this many, then the group sums are added.
const SEGMENT_GROUP: usize = 64;
/// Strided path: rows folded into the accumulator per pass (fewer accumulator loads/stores).
const FOLD: usize = 4;
/// Strided path, cascade level 0: rows summed into a block accumulator before it is added to
/// the segment accumulator.
const ROW_BLOCK: usize = 64;
/// Strided path, cascade level 1 and parallel split of the reduced axis.
const ROW_SEGMENT: usize = 64 * ROW_BLOCK;
/// Strided path: columns per task, so the two accumulators and conversion buffers stay in L1.
const COL_TILE: usize = 1024;

/// Reduces `x` ([outer, reduce, inner], row-major) into `y` ([outer, inner]): a sum in `T::Acc`,
/// then `finish`, rounded once to `T`. An empty reduction sums to 0 (so a mean is 0/0 = NaN).
pub fn reduce<T: FloatElement>(g: &ReduceGeometry, finish: ReduceFinish, x: &[T], y: &mut [T]) {
    let out_len = g.output_len();
    if out_len == 0 {
        return;
    }
    let (y, x) = (&mut y[..out_len], &x[..g.input_len()]);
    if g.reduce == 0 {
        let v = T::from_acc(apply_finish(T::Acc::zero(), finish));
        y.iter_mut().for_each(|o| *o = v);
    } else if g.inner == 1 {
        reduce_rows(g.reduce, finish, x, y);
    } else {
        reduce_strided(g, finish, x, y);
    }
}

/// `acc` after the finishing step: unchanged for a sum, one true division for a mean.
#[inline(always)]
fn apply_finish<A: Float>(acc: A, finish: ReduceFinish) -> A {
    match finish {
        ReduceFinish::Sum => acc,
        ReduceFinish::DivideBy(d) => acc / acc_from_f64::<A>(d),
    }
}

/// Sum of at most `BLOCK` values in `LANES` independent lanes, then a lane tree; `load`
/// converts each value to the accumulator type (inline, so it vectorises).
#[inline(always)]
fn lane_sum<E: Copy, A: Float, const LANES: usize>(v: &[E], load: impl Fn(E) -> A) -> A {
    let mut acc = [A::zero(); LANES];
    let mut chunks = v.chunks_exact(LANES);
    for c in &mut chunks {
        for i in 0..LANES {
            acc[i] = acc[i] + load(c[i]);
        }
    }
    for (a, &t) in acc.iter_mut().zip(chunks.remainder()) {
        *a = *a + load(t);
    }
    let mut width = LANES / 2;
    while width > 0 {
        for i in 0..width {
            acc[i] = acc[i] + acc[i + width];
        }
        width /= 2;
    }
    acc[0]
}

/// Cascade levels 0 and 1 over at most `SEGMENT` elements.
#[inline(always)]
fn segment_sum<T: FloatElement>(x: &[T], scratch: &mut AccScratch<T>) -> T::Acc {
    let mut total = T::Acc::zero();
    if x.len() < SHORT_ROW {
        // Short rows (HW = 49 in a ResNet tail): fewer lanes, a shorter lane tree per row.
        return if simd::converts_inline::<T>() {
            lane_sum::<_, _, SHORT_LANES>(x, simd::load::<T>)
        } else {
            lane_sum::<_, _, SHORT_LANES>(scratch.view(x), |v| v)
        };
    }
    if simd::converts_inline::<T>() {
        for block in x.chunks(BLOCK) {
            total += lane_sum::<_, _, LANES>(block, simd::load::<T>);
        }
    } else {
        for block in x.chunks(BLOCK) {
            total += lane_sum::<_, _, LANES>(scratch.view(block), |v| v);
        }
    }
    total
}

/// Cascade levels 2 and 3: segment sums of one row, in order.
fn combine_segments<A: Float>(segments: &[A]) -> A {
    segments
        .chunks(SEGMENT_GROUP)
        .map(|group| group.iter().fold(A::zero(), |a, &s| a + s))
        .fold(A::zero(), |a, s| a + s)
}

/// `inner == 1`: one sum per contiguous row of `reduce` elements.
fn reduce_rows<T: FloatElement>(reduce: usize, finish: ReduceFinish, x: &[T], y: &mut [T]) {
    if reduce <= SEGMENT {
        // Many short rows (HW = 49 in a ResNet tail): tasks take runs of rows, not single rows.
        let rows_per_task = items_per_task(reduce);
        y.par_chunks_mut(rows_per_task).zip(x.par_chunks(rows_per_task * reduce)).for_each(|(ys, xs)| {
            let mut scratch = AccScratch::<T>::new();
            simd::dispatch(
                #[inline(always)]
                || {
                    for (o, row) in ys.iter_mut().zip(xs.chunks_exact(reduce)) {
                        *o = T::from_acc(apply_finish(segment_sum(row, &mut scratch), finish));
                    }
                },
            );
        });
        return;
    }
    // Long rows: every segment of every row is one work item, so even a single row uses every
    // core; segment boundaries depend only on `reduce`, so the result does not depend on threads.
    let segments_per_row = reduce.div_ceil(SEGMENT);
    let mut partial = vec![T::Acc::zero(); y.len() * segments_per_row];
    partial.par_iter_mut().enumerate().for_each_init(AccScratch::<T>::new, |scratch, (k, s)| {
        let (row, seg) = (k / segments_per_row, k % segments_per_row);
        let start = row * reduce + seg * SEGMENT;
        let end = row * reduce + ((seg + 1) * SEGMENT).min(reduce);
        *s = simd::dispatch(
            #[inline(always)]
            || segment_sum(&x[start..end], scratch),
        );
    });
    y.par_iter_mut().zip(partial.par_chunks(segments_per_row)).for_each(|(o, segs)| {
        *o = T::from_acc(apply_finish(combine_segments(segs), finish));
    });
}

/// `inner > 1`: per outer index, a column-vector accumulator streamed over the reduced rows.
fn reduce_strided<T: FloatElement>(g: &ReduceGeometry, finish: ReduceFinish, x: &[T], y: &mut [T]) {
    let (reduce, inner) = (g.reduce, g.inner);
    let outer_stride = reduce * inner;
    let tile_tasks = items_per_task(COL_TILE.min(inner) * reduce.min(ROW_SEGMENT));
    if reduce <= ROW_SEGMENT {
        y.par_chunks_mut(inner).enumerate().with_min_len(items_per_task(outer_stride)).for_each(|(o, yo)| {
            let xo = &x[o * outer_stride..(o + 1) * outer_stride];
            yo.par_chunks_mut(COL_TILE).enumerate().with_min_len(tile_tasks).for_each(|(t, yt)| {
                let mut acc = [T::Acc::zero(); COL_TILE];
                let acc = &mut acc[..yt.len()];
                simd::dispatch(
                    #[inline(always)]
                    || column_segment_sum(xo, inner, 0..reduce, t * COL_TILE, acc),
                );
                for (o, &a) in yt.iter_mut().zip(acc.iter()) {
                    *o = T::from_acc(apply_finish(a, finish));
                }
            });
        });
        return;
    }
    // Long reductions: segments of the reduced axis are separate work items, combined in order.
    let segments = reduce.div_ceil(ROW_SEGMENT);
    let mut partial = vec![T::Acc::zero(); g.outer * segments * inner];
    partial.par_chunks_mut(inner).enumerate().for_each(|(k, part)| {
        let (o, seg) = (k / segments, k % segments);
        let xo = &x[o * outer_stride..(o + 1) * outer_stride];
        let rows = seg * ROW_SEGMENT..((seg + 1) * ROW_SEGMENT).min(reduce);
        part.par_chunks_mut(COL_TILE).enumerate().with_min_len(tile_tasks).for_each(|(t, acc)| {
            simd::dispatch(
                #[inline(always)]
                || column_segment_sum(xo, inner, rows.clone(), t * COL_TILE, acc),
            );
        });
    });
    y.par_chunks_mut(inner).enumerate().with_min_len(items_per_task(inner * segments)).for_each(|(o, yo)| {
        let parts = &partial[o * segments * inner..(o + 1) * segments * inner];
        for (c, out) in yo.iter_mut().enumerate() {
            let sums = parts[c..].iter().step_by(inner);
            let total = sums.fold(T::Acc::zero(), |a, &s| a + s);
            *out = T::from_acc(apply_finish(total, finish));
        }
    });
}

/// Sums rows `rows` of the `[reduce, inner]` slab `xo`, columns `col0..col0 + out.len()`, into
/// `out` (overwritten): rows in order, `FOLD` rows per pass, blocks of `ROW_BLOCK` rows summed
/// separately and then added (cascade). At most `ROW_SEGMENT` rows and `COL_TILE` columns.
#[inline(always)]
fn column_segment_sum<T: FloatElement>(
    xo: &[T],
    inner: usize,
    rows: std::ops::Range<usize>,
    col0: usize,
    out: &mut [T::Acc],
) {
    let width = out.len();
    let mut block = [T::Acc::zero(); COL_TILE];
    let block = &mut block[..width];
    let mut scratch: [AccScratch<T>; FOLD] = std::array::from_fn(|_| AccScratch::new());
    out.iter_mut().for_each(|a| *a = T::Acc::zero());
    let mut r = rows.start;
    while r < rows.end {
        let block_end = (r + ROW_BLOCK).min(rows.end);
        block.iter_mut().for_each(|a| *a = T::Acc::zero());
        if simd::converts_inline::<T>() {
            // f32/f64/bf16: rows read in place, converted in registers.
            let at = |i: usize| &xo[(r + i) * inner + col0..(r + i) * inner + col0 + width];
            fold_rows(block, block_end - r, at, simd::load::<T>);
        } else if width == inner {
            // The block's rows are one contiguous run: one conversion for all of them (narrow
            // rows, e.g. 8 channels, would otherwise pay a conversion call per 8 values).
            let v = scratch[0].view(&xo[r * inner..block_end * inner]);
            fold_rows(block, block_end - r, |i| &v[i * inner..(i + 1) * inner], |v| v);
        } else {
            let mut k = r;
            while k + FOLD <= block_end {
                let row = |r: usize| &xo[r * inner + col0..r * inner + col0 + width];
                let [s0, s1, s2, s3] = &mut scratch;
                let quad = [s0.view(row(k)), s1.view(row(k + 1)), s2.view(row(k + 2)), s3.view(row(k + 3))];
                fold_rows(block, FOLD, |i| quad[i], |v| v);
                k += FOLD;
            }
            for k in k..block_end {
                let v = scratch[0].view(&xo[k * inner + col0..k * inner + col0 + width]);
                fold_rows(block, 1, |_| v, |v| v);
            }
        }
        r = block_end;
        for (o, &b) in out.iter_mut().zip(block.iter()) {
            *o += b;
        }
    }
}

/// Adds rows `row(0..count)` into `block`, in row order, `FOLD` rows per pass over `block`
/// (one accumulator load/store per `FOLD` rows); `load` converts each value.
#[inline(always)]
fn fold_rows<'a, E: Copy + 'a, A: Float>(
    block: &mut [A],
    count: usize,
    row: impl Fn(usize) -> &'a [E],
    load: impl Fn(E) -> A,
) {
    let width = block.len();
    let mut i = 0;
    while i + FOLD <= count {
        let (a, b, c, d) =
            (&row(i)[..width], &row(i + 1)[..width], &row(i + 2)[..width], &row(i + 3)[..width]);
        for j in 0..width {
            block[j] = block[j] + load(a[j]) + load(b[j]) + load(c[j]) + load(d[j]);
        }
        i += FOLD;
    }
    for i in i..count {
        let a = &row(i)[..width];
        for j in 0..width {
            block[j] = block[j] + load(a[j]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::test_util::{for_all_floats, random, same};

    /// Relative tolerance of a reduction result in `T`: its rounding plus accumulation error.
    fn tolerance<T: FloatElement>() -> f64 {
        match T::DTYPE {
            crate::DType::F64 => 1e-12,
            crate::DType::F32 => 1e-5,
            crate::DType::F16 => 1e-3,
            _ => 8e-3,
        }
    }

    /// Straightforward f64 loop over [outer, reduce, inner].
    fn reference<T: FloatElement>(g: &ReduceGeometry, finish: ReduceFinish, x: &[T]) -> Vec<f64> {
        let mut y = vec![0.0; g.output_len()];
        for o in 0..g.outer {
            for i in 0..g.inner {
                let s: f64 = (0..g.reduce).map(|r| x[(o * g.reduce + r) * g.inner + i].to_f64()).sum();
                y[o * g.inner + i] = match finish {
                    ReduceFinish::Sum => s,
                    ReduceFinish::DivideBy(d) => s / d,
                };
            }
        }
        y
    }

    fn check_shape<T: FloatElement>(outer: usize, reduce_len: usize, inner: usize) {
        let g = ReduceGeometry { outer, reduce: reduce_len, inner };
        let x: Vec<T> = random(g.input_len(), (outer * 31 + reduce_len * 7 + inner) as u64);
        // Sums of |x| bound the cancellation error, so the check is relative to them.
        let abs: Vec<T> = x.iter().map(|v| T::from_f64(v.to_f64().abs())).collect();
        for (data, finish) in [
            (&x, ReduceFinish::Sum),
            (&x, ReduceFinish::DivideBy(reduce_len as f64)),
            (&abs, ReduceFinish::Sum),
        ] {
            let mut y = vec![T::from_f64(7.0); g.output_len()];
            reduce(&g, finish, data, &mut y);
            let abs_ref = reference(&g, finish, &abs);
            for ((got, want), scale) in y.iter().zip(reference(&g, finish, data)).zip(abs_ref) {
                if T::from_f64(want).to_f64().is_infinite() {
                    // The exact result overflows T (f16 sums of many values): so must ours.
                    assert_eq!(got.to_f64(), T::from_f64(want).to_f64());
                    continue;
                }
                let err = (got.to_f64() - want).abs();
                assert!(
                    err <= tolerance::<T>() * scale.abs() + 1e-30,
                    "{:?} [{outer}, {reduce_len}, {inner}] {finish:?}: got {got:?}, want {want}",
                    T::DTYPE
                );
            }
        }
    }

    fn shapes<T: FloatElement>() {
        for &(o, r, i) in &[
            (1, 1, 1),
            (3, 49, 1),
            (300, 1, 1),
            (1, 4099, 1),
            (5, 17, 1),
            (2, SEGMENT + 5, 1),
            (1, 3 * SEGMENT, 1),
            (4, 49, 7),
            (2, 5, 1500),
            (2, 130, 96),
            (1, ROW_SEGMENT + 3, 5),
            (3, 2, 2 * COL_TILE + 3),
        ] {
            check_shape::<T>(o, r, i);
        }
    }

    #[test]
    fn sums_and_means_match_a_plain_loop_for_every_dtype() {
        for_all_floats!(shapes);
    }

    fn empty<T: FloatElement>() {
        let g = ReduceGeometry { outer: 2, reduce: 0, inner: 3 };
        let mut y = vec![T::from_f64(5.0); 6];
        reduce(&g, ReduceFinish::Sum, &[], &mut y);
        assert!(y.iter().all(|v| v.to_f64() == 0.0));
        reduce(&g, ReduceFinish::DivideBy(0.0), &[], &mut y);
        assert!(y.iter().all(|v| v.is_nan()));
        // No outputs at all: nothing to do, nothing touched.
        reduce::<T>(&ReduceGeometry { outer: 0, reduce: 4, inner: 3 }, ReduceFinish::Sum, &[], &mut []);
    }

    #[test]
    fn empty_reduction_is_zero_sum_and_nan_mean() {
        for_all_floats!(empty);
    }

    #[test]
    fn rows_and_strided_paths_agree_with_the_sequential_order_where_exact() {
        // Small integers sum exactly in any order, so both paths must give the exact answer.
        let x: Vec<f32> = (0..4 * 300 * 6).map(|i| (i % 13) as f32 - 6.0).collect();
        let rows = ReduceGeometry { outer: 24, reduce: 300, inner: 1 };
        let strided = ReduceGeometry { outer: 4, reduce: 300, inner: 6 };
        for g in [rows, strided] {
            let mut y = vec![0.0f32; g.output_len()];
            reduce(&g, ReduceFinish::Sum, &x, &mut y);
            for (got, want) in y.iter().zip(reference(&g, ReduceFinish::Sum, &x)) {
                assert!(same(*got, want as f32), "{g:?}: {got} vs {want}");
            }
        }
    }

    #[test]
    fn long_f32_row_stays_accurate() {
        // One 512x512 plane of positive values: a naive running f32 sum drifts by ~1e-4 here.
        let n = 512 * 512;
        let x: Vec<f32> = random::<f32>(n, 99).iter().map(|v| v.abs() + 0.1).collect();
        let exact: f64 = x.iter().map(|&v| v as f64).sum();
        for g in [
            ReduceGeometry { outer: 1, reduce: n, inner: 1 },
            ReduceGeometry { outer: 1, reduce: n / 4, inner: 4 },
        ] {
            let mut y = vec![0.0f32; g.output_len()];
            reduce(&g, ReduceFinish::DivideBy(g.reduce as f64), &x, &mut y);
            let mean: f64 = y.iter().map(|&v| v as f64).sum::<f64>() / g.inner as f64;
            let rel = (mean - exact / n as f64).abs() / (exact / n as f64);
            assert!(rel < 1e-6, "{g:?}: relative error {rel:e}");
        }
    }

    #[test]
    fn nan_and_inf_propagate() {
        let mut x = vec![1.0f32; 2 * 1000];
        x[10] = f32::NAN;
        x[1500] = f32::INFINITY;
        let g = ReduceGeometry { outer: 2, reduce: 1000, inner: 1 };
        let mut y = vec![0.0f32; 2];
        reduce(&g, ReduceFinish::Sum, &x, &mut y);
        assert!(y[0].is_nan() && y[1] == f32::INFINITY);
    }
}
