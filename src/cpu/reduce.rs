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
/// Reductions of inputs of at least this many bytes (streaming from memory) prefetch ahead of
/// their loads ([`prefetch_distance`]): on Intel every AVX2 row sum and register column
/// block, on other CPUs without AVX-512 (AMD Zen 3) 16-bit row sums only, and on AMD with
/// AVX-512 (Zen 4) nothing. On the 2-vCPU Zen 4 VM, the quick seed's GAP (32x96x128x128,
/// 100 MB in bf16), the two forms alternating call by call in one process (about 900 calls
/// each, four runs): without hints bf16 and f16 ran 1.02x to 1.08x faster than with 1024 bytes
/// ahead, in both layouts (median time); on 400 MB, 0.99x to 1.05x; 4096 bytes ahead on every
/// type cost f32 0.93x.
const PREFETCH_MIN_BYTES: usize = super::STREAMING_INPUT_BYTES;
/// Bytes ahead, 16-bit row sums only, on CPUs without AVX-512 that are not Intel's. On the
/// 2-core Zen 3 VM the hardware prefetchers alone left the seed's NCHW bf16/f16 GAP at 13 to
/// 17 GB/s against f32's 19 to 22: four alternations per distance (`cupool bench --ops gap
/// --shapes seed`), median time, 1024 bytes ahead gave bf16 1.09x to 1.18x and f16 0.95x to
/// 1.14x (2048: bf16 1.13x to 1.23x, but f16 0.94x to 0.97x). f32 measured 0.9x to 1.1x, so it
/// keeps the hardware prefetchers; so do inputs that stay in cache, where the hints only cost
/// instructions.
const PREFETCH_AHEAD: usize = 1024;
/// Bytes ahead on Intel, every type. On the 2-vCPU Xeon (Emerald Rapids) VM, the full seed's
/// GAP (805 MB, past its L3 cache), median times, alternating binaries:
/// - NCHW bf16 and f16, three alternations per distance: 4096 bytes ahead ran bf16 1.05x to
///   1.38x and f16 1.22x to 1.30x faster than 1024 (2048 and 8192 about as 4096), and the
///   quick bench's 100 MB seed bf16 0.96x to 1.22x, f16 1.46x to 1.83x;
/// - channels-last bf16 and f16 (the register column blocks, one row about 4096 bytes on),
///   against no hints: bf16 1.32x to 1.48x, f16 1.10x to 1.39x (the quick seed 1.35x to 2.4x);
/// - f32, against no hints, four alternations: NCHW 1.15x to 1.26x, channels-last 1.05x to
///   1.26x (one thread, NCHW: 1.13x and 1.14x).
const PREFETCH_AHEAD_INTEL: usize = 4096;
/// Strided path: rows folded into the accumulator per pass (fewer accumulator loads/stores).
const FOLD: usize = 4;
/// Strided path, cascade level 0: rows summed into a block accumulator before it is added to
/// the segment accumulator.
const ROW_BLOCK: usize = 64;
/// Strided path, cascade level 1 and parallel split of the reduced axis.
const ROW_SEGMENT: usize = 64 * ROW_BLOCK;
/// Strided path: columns per task, so the two accumulators and conversion buffers stay in L1.
const COL_TILE: usize = 1024;
/// Strided path: column tiles up to this wide (NHWC with C <= 96) keep their block sums in
/// AVX2 registers, one sequential pass over the rows (seed, C = 96: 1.09x; 112x112, C = 64:
/// 1.19x). Wider tiles would take several strided passes, which measured slower (C = 2048:
/// 0.82x to 0.87x) than the accumulator in L1. Except for f16: its accumulator path first
/// converts every row into a scratch buffer, and the register passes (widening with F16C in
/// registers) ran the 7x7 tails' 1280 and 2048 channels 1.5x to 2x faster than it. And for
/// bf16 ([`bf16_register_passes`]) wherever a pixel is not a multiple of 4 KiB.
const REGISTER_COLUMNS: usize = 96;

/// Whether channels-last bf16 rows of `inner` channels wider than [`REGISTER_COLUMNS`] are
/// summed in register passes too: unless the pixel stride is a multiple of 4 KiB. On the
/// 2-vCPU AMD Zen 5 VM, channels-last bf16 GAP (`avg_pool2d(HxW)`), both forms alternating in
/// one process (nine rounds of 0.2 s, median of the rounds' medians), register passes
/// against the accumulator in L1: 8x1280x7x7 1.67x and 1.69x, 16x512x7x7 1.59x, 16x768x7x7
/// 1.71x, 16x1024x7x7 1.32x, 4x256x56x56 1.30x; but 16x2048x7x7 (a 4 KiB pixel, so a pass's
/// 49 rows share one L1 set) 0.85x and 0.87x, so those keep the accumulator. f16 measured
/// the other way there, its accumulator path 0.53x and 0.61x on 2048 channels, so it keeps
/// the register passes on every width; f32, whose accumulator path converts nothing, 0.95x
/// to 1.01x, so it keeps the accumulator. Measured on Zen 5 only, and applied on every CPU
/// with AVX2, as f16's rule (measured on Zen 4) is: the cost it avoids, a conversion pass
/// per row, and the aliasing it steers around (L1 sets that repeat every 4 KiB, on Zen 3 to 5
/// and on the Intel cores alike) are not Zen 5's own.
#[cfg(target_arch = "x86_64")]
fn bf16_register_passes(inner: usize) -> bool {
    !(inner * 2).is_multiple_of(4096)
}

/// Reduces `x` ([outer, reduce, inner], row-major) into `y` ([outer, inner]): a sum in `T::Acc`,
/// then `finish`, rounded once to `T`. An empty reduction sums to 0 (so a mean is 0/0 = NaN).
pub fn reduce<T: FloatElement>(g: &ReduceGeometry, finish: ReduceFinish, x: &[T], y: &mut [T]) {
    let out_len = g.output_len();
    if out_len == 0 {
        return;
    }
    let (y, x) = (&mut y[..out_len], &x[..g.input_len()]);
    if g.reduce == 0 {
        let v = T::from_acc(T::Acc::zero() / finish_divisor::<T::Acc>(finish));
        y.iter_mut().for_each(|o| *o = v);
    } else if g.inner == 1 {
        reduce_rows(g.reduce, finish, x, y);
    } else {
        reduce_strided(g, finish, x, y);
    }
}

/// What a reduction's sums are divided by: 1 for a sum (a division by 1 changes no bits), the
/// element count for a mean (one true division). Converted once per loop, outside it: per
/// output, the conversion from f64 kept the channels-last GAP's rounding loop scalar (the 7x7
/// tails' f32 and bf16 GAP ran 1.2x to 1.3x faster without it).
#[inline(always)]
fn finish_divisor<A: Float>(finish: ReduceFinish) -> A {
    match finish {
        ReduceFinish::Sum => A::one(),
        ReduceFinish::DivideBy(d) => acc_from_f64::<A>(d),
    }
}

/// The `LANES` lane sums of `v` (lane `l` adds elements `l, l + LANES, ...` in order).
#[inline(always)]
fn lane_sums<E: Copy, A: Float, const LANES: usize>(v: &[E], load: impl Fn(E) -> A) -> [A; LANES] {
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
    acc
}

/// Sum of at most `BLOCK` values in `LANES` independent lanes, then a lane tree; `load`
/// converts each value to the accumulator type (inline, so it vectorises).
#[inline(always)]
fn lane_sum<E: Copy, A: Float, const LANES: usize>(v: &[E], load: impl Fn(E) -> A) -> A {
    let mut acc = lane_sums::<E, A, LANES>(v, load);
    let mut width = LANES / 2;
    while width > 0 {
        for i in 0..width {
            acc[i] = acc[i] + acc[i + width];
        }
        width /= 2;
    }
    acc[0]
}

/// How far ahead (bytes) reductions over `x` prefetch, if they do (see [`PREFETCH_MIN_BYTES`]).
fn prefetch_distance<T>(x: &[T]) -> Option<usize> {
    if std::mem::size_of_val(x) < PREFETCH_MIN_BYTES {
        return None;
    }
    #[cfg(target_arch = "x86_64")]
    if simd::is_intel() {
        return Some(PREFETCH_AHEAD_INTEL);
    }
    #[cfg(target_arch = "x86_64")]
    if simd::has_avx512() {
        return None;
    }
    (std::mem::size_of::<T>() == 2).then_some(PREFETCH_AHEAD)
}

/// Cascade levels 0 and 1 over at most `SEGMENT` elements; with a `prefetch` distance, the
/// AVX2 blocks prefetch that many bytes ahead of their loads (the sums are the same).
#[inline(always)]
fn segment_sum<T: FloatElement>(x: &[T], scratch: &mut AccScratch<T>, prefetch: Option<usize>) -> T::Acc {
    let mut total = T::Acc::zero();
    if x.len() < SHORT_ROW {
        // Short rows (HW = 49 in a ResNet tail): fewer lanes, a shorter lane tree per row.
        return if simd::converts_inline::<T>() {
            lane_sum::<_, _, SHORT_LANES>(x, simd::load::<T>)
        } else {
            lane_sum::<_, _, SHORT_LANES>(scratch.view(x), |v| v)
        };
    }
    #[cfg(target_arch = "x86_64")]
    if let Some(kind) = simd::avx2_tile_kind::<T>() {
        for block in x.chunks(BLOCK) {
            // SAFETY: `kind` comes from `avx2_tile_kind::<T>()` (AVX2 present, `T` is the f32,
            // bf16 or f16 it names); the pointer and length are `block`'s.
            let sum = unsafe {
                match prefetch {
                    Some(ahead) => lanes16::sum::<true>(kind, block.as_ptr().cast(), block.len(), ahead),
                    None => lanes16::sum::<false>(kind, block.as_ptr().cast(), block.len(), 0),
                }
            };
            total += num_traits::NumCast::from(sum).unwrap_or_else(T::Acc::nan);
        }
        return total;
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

/// [`lane_sum`] with `LANES = 16` over f32, bf16 or f16 in two AVX2 registers (lanes 0-7 and 8-15):
/// the same adds in the same order, written out because LLVM vectorises the 16-element array
/// loop poorly (two-float loads). The remainder is a masked load whose missing lanes add +0.0,
/// an exact no-op (a lane sum starts at +0.0, so it is never -0.0).
#[cfg(target_arch = "x86_64")]
mod lanes16 {
    use crate::cpu::simd::TileKind;
    use std::arch::x86_64::*;

    /// Eight f32 from `n <= 8` elements at `p` (the rest +0.0), exact.
    #[inline(always)]
    unsafe fn load(kind: TileKind, p: *const u8, at: usize, n: usize) -> __m256 {
        if n == 8 {
            return crate::cpu::simd::avx2::load8(kind, p, at);
        }
        let mut v = [0f32; 8];
        for (i, v) in v.iter_mut().enumerate().take(n) {
            *v = crate::cpu::simd::avx2::load1(kind, p, at + i);
        }
        _mm256_loadu_ps(v.as_ptr())
    }

    /// The 16-lane sum of the `len` elements at `p`; with `PREFETCH`, each step also asks for
    /// the line `ahead` bytes on (past the end too: a prefetch never faults, and
    /// `wrapping_add` keeps the address computation defined).
    ///
    /// # Safety
    /// AVX2; `p` points to `len` readable elements of `kind`.
    #[target_feature(enable = "avx2,f16c")]
    pub(super) unsafe fn sum<const PREFETCH: bool>(
        kind: TileKind,
        p: *const u8,
        len: usize,
        ahead: usize,
    ) -> f32 {
        let (mut lo, mut hi) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let full = len / 16 * 16;
        let mut at = 0;
        while at < full {
            if PREFETCH {
                _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(at * kind.bytes() + ahead).cast());
            }
            lo = _mm256_add_ps(lo, load(kind, p, at, 8));
            hi = _mm256_add_ps(hi, load(kind, p, at + 8, 8));
            at += 16;
        }
        let rest = len - full;
        if rest > 0 {
            lo = _mm256_add_ps(lo, load(kind, p, at, rest.min(8)));
            hi = _mm256_add_ps(hi, load(kind, p, at + 8, rest.saturating_sub(8)));
        }
        // The lane tree: lanes i + 8, then i + 4, i + 2, i + 1.
        let v = _mm256_add_ps(lo, hi);
        let x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let x = _mm_add_ps(x, _mm_movehl_ps(x, x));
        let x = _mm_add_ss(x, _mm_shuffle_ps::<0b01>(x, x));
        _mm_cvtss_f32(x)
    }
}

/// Short contiguous rows (HW = 49 in a ResNet or EfficientNet tail) summed eight at a time with
/// AVX2: one 8-wide accumulator per row (unaligned loads, a masked load for the row's tail), then
/// a transpose-style horizontal reduction of the eight accumulators at once. Per row the order is
/// fixed (lane `l` sums elements `l, l + 8, ...`; then lanes `((0+1)+(2+3)) + ((4+5)+(6+7))`),
/// whatever the row's position in a group, so results do not depend on the task split.
mod short_rows {
    use super::{finish_divisor, ReduceFinish};
    use crate::cpu::simd;
    use crate::dtype::FloatElement;

    /// Sums every row of `xs` (rows of `reduce` elements, back to back) into `ys`, returning
    /// false (and touching nothing) when the CPU or the element type has no fast path here.
    pub(super) fn sum_rows<T: FloatElement>(
        reduce: usize,
        finish: ReduceFinish,
        xs: &[T],
        ys: &mut [T],
    ) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            let Some(kind) = simd::avx2_tile_kind::<T>() else { return false };
            if reduce == 0 || xs.len() < ys.len() * reduce {
                return false;
            }
            // The portable path's division, in f32 (every tile kind's accumulator).
            let divisor = finish_divisor::<f32>(finish);
            let mut row0 = 0;
            while row0 < ys.len() {
                let count = (ys.len() - row0).min(8);
                // SAFETY: `kind` comes from `avx2_tile_kind::<T>()`: AVX2 and F16C are
                // present and `T` is the f32, bf16 or f16 `kind` names; rows
                // `row0..row0 + count` of `reduce` elements lie inside `xs` (length checked
                // above), the kernel reads only inside `xs.len()` elements, and it writes
                // `count` outputs at `ys[row0..]`, which exist.
                unsafe {
                    avx2::sum8(
                        kind,
                        xs.as_ptr().cast::<u8>(),
                        xs.len(),
                        row0,
                        count,
                        reduce,
                        divisor,
                        ys.as_mut_ptr().add(row0).cast::<u8>(),
                    )
                };
                row0 += count;
            }
            true
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (reduce, finish, xs, ys);
            false
        }
    }

    #[cfg(target_arch = "x86_64")]
    mod avx2 {
        use crate::cpu::simd::avx2::{load8, to_16bit};
        use crate::cpu::simd::TileKind;
        use std::arch::x86_64::*;

        /// The last `rem` (< 8) elements of a row from element index `at`, zeros elsewhere.
        /// Rows are back to back, so when 8 elements from `at` are inside the buffer (`len`
        /// elements) a full load is masked; only the buffer's very end reads element by element.
        #[inline(always)]
        unsafe fn load_tail(
            kind: TileKind,
            p: *const u8,
            at: usize,
            rem: usize,
            len: usize,
            mask: __m256i,
        ) -> __m256 {
            if at + 8 <= len {
                return _mm256_and_ps(load8(kind, p, at), _mm256_castsi256_ps(mask));
            }
            match kind {
                TileKind::F32 => _mm256_maskload_ps(p.cast::<f32>().add(at), mask),
                _ => {
                    let mut bits = [0u16; 8];
                    for (i, b) in bits.iter_mut().enumerate().take(rem) {
                        *b = *p.cast::<u16>().add(at + i);
                    }
                    load8(kind, bits.as_ptr().cast(), 0)
                }
            }
        }

        /// Sums rows `row0..row0 + count` (count in 1..=8) of `reduce` elements starting at `x`,
        /// divides by `divisor` and writes the `count` results, rounded once (round to nearest
        /// even, as `half` does) to the type of `kind`, at `out`. Missing rows of a short group repeat row `row0` (results
        /// discarded), so every row is summed by exactly the same instructions.
        ///
        /// # Safety
        /// AVX2 and F16C must be available; `x` must point to at least
        /// `len >= (row0 + count) * reduce` readable elements of the type named by `kind`, and
        /// `out` to `count` writable ones.
        #[target_feature(enable = "avx2,f16c")]
        #[allow(clippy::too_many_arguments)]
        pub(super) unsafe fn sum8(
            kind: TileKind,
            x: *const u8,
            len: usize,
            row0: usize,
            count: usize,
            reduce: usize,
            divisor: f32,
            out: *mut u8,
        ) {
            let (full, rem) = (reduce / 8, reduce % 8);
            let start: [usize; 8] = std::array::from_fn(|i| (row0 + if i < count { i } else { 0 }) * reduce);
            let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
            let mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(rem as i32), lane);
            let mut acc = [_mm256_setzero_ps(); 8];
            for k in 0..full {
                for i in 0..8 {
                    acc[i] = _mm256_add_ps(acc[i], load8(kind, x, start[i] + 8 * k));
                }
            }
            if rem > 0 {
                for i in 0..8 {
                    acc[i] = _mm256_add_ps(acc[i], load_tail(kind, x, start[i] + 8 * full, rem, len, mask));
                }
            }
            // Transpose-style reduction: after two rounds of pairwise adds, lane i of the low
            // half holds row i's (l0+l1)+(l2+l3) (rows 0-3 in h0123, 4-7 in h4567) and the high
            // half its (l4+l5)+(l6+l7).
            let h01 = _mm256_hadd_ps(acc[0], acc[1]);
            let h23 = _mm256_hadd_ps(acc[2], acc[3]);
            let h45 = _mm256_hadd_ps(acc[4], acc[5]);
            let h67 = _mm256_hadd_ps(acc[6], acc[7]);
            let h0123 = _mm256_hadd_ps(h01, h23);
            let h4567 = _mm256_hadd_ps(h45, h67);
            let lo = _mm256_permute2f128_ps::<0x20>(h0123, h4567);
            let hi = _mm256_permute2f128_ps::<0x31>(h0123, h4567);
            let mean = _mm256_div_ps(_mm256_add_ps(lo, hi), _mm256_set1_ps(divisor));
            // A full group stores its eight results directly: a copy of a variable count is a
            // call to `memmove`, 6% of the time of batch 1's bf16 GAP (2048 rows of 49). The
            // direct stores: bf16 1.06x to 1.09x, f32 1.02x to 1.06x (three alternations).
            if kind == TileKind::F32 {
                if count == 8 {
                    _mm256_storeu_ps(out.cast::<f32>(), mean);
                    return;
                }
                let mut v = [0f32; 8];
                _mm256_storeu_ps(v.as_mut_ptr(), mean);
                std::ptr::copy_nonoverlapping(v.as_ptr(), out.cast::<f32>(), count);
            } else {
                if count == 8 {
                    _mm_storeu_si128(out.cast(), to_16bit(kind, mean));
                    return;
                }
                let mut v = [0u16; 8];
                _mm_storeu_si128(v.as_mut_ptr().cast(), to_16bit(kind, mean));
                std::ptr::copy_nonoverlapping(v.as_ptr(), out.cast::<u16>(), count);
            }
        }
    }
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
    let prefetch = prefetch_distance(x);
    if reduce <= SEGMENT {
        // Many short rows (HW = 49 in a ResNet tail): tasks take runs of rows, not single rows
        // (a small input is one task, on this thread: see `items_per_task`).
        let rows_per_task = items_per_task(reduce, y.len());
        y.par_chunks_mut(rows_per_task).zip(x.par_chunks(rows_per_task * reduce)).for_each(|(ys, xs)| {
            if reduce < SHORT_ROW && short_rows::sum_rows(reduce, finish, xs, ys) {
                return;
            }
            let mut scratch = AccScratch::<T>::new();
            let divisor = finish_divisor::<T::Acc>(finish);
            simd::dispatch(
                #[inline(always)]
                || {
                    for (o, row) in ys.iter_mut().zip(xs.chunks_exact(reduce)) {
                        *o = T::from_acc(segment_sum(row, &mut scratch, prefetch) / divisor);
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
            || segment_sum(&x[start..end], scratch, prefetch),
        );
    });
    // A few adds per row: on this thread (a second hand-off to the pool costs more).
    let divisor = finish_divisor::<T::Acc>(finish);
    for (o, segs) in y.iter_mut().zip(partial.chunks(segments_per_row)) {
        *o = T::from_acc(combine_segments(segs) / divisor);
    }
}

/// `inner > 1`: per outer index, a column-vector accumulator streamed over the reduced rows.
fn reduce_strided<T: FloatElement>(g: &ReduceGeometry, finish: ReduceFinish, x: &[T], y: &mut [T]) {
    if LANES.is_multiple_of(g.inner) && simd::converts_inline::<T>() {
        return reduce_narrow(g, finish, x, y);
    }
    let (reduce, inner) = (g.reduce, g.inner);
    let outer_stride = reduce * inner;
    let prefetch = prefetch_distance(x);
    let tile_tasks = items_per_task(COL_TILE.min(inner) * reduce.min(ROW_SEGMENT), inner.div_ceil(COL_TILE));
    if reduce <= ROW_SEGMENT {
        y.par_chunks_mut(inner).enumerate().with_min_len(items_per_task(outer_stride, g.outer)).for_each(
            |(o, yo)| {
                let xo = &x[o * outer_stride..(o + 1) * outer_stride];
                yo.par_chunks_mut(COL_TILE).enumerate().with_min_len(tile_tasks).for_each(|(t, yt)| {
                    let mut acc = [T::Acc::zero(); COL_TILE];
                    let acc = &mut acc[..yt.len()];
                    simd::dispatch(
                        #[inline(always)]
                        || {
                            column_segment_sum(xo, inner, 0..reduce, t * COL_TILE, acc, prefetch);
                            // In the AVX2 code and branch-free, so that the rounding
                            // vectorises: `T::from_acc` per output, outside it, was 30% of a
                            // bf16 ResNet tail's GAP.
                            let divisor = finish_divisor::<T::Acc>(finish);
                            for (o, &a) in yt.iter_mut().zip(acc.iter()) {
                                *o = simd::store::<T>(a / divisor);
                            }
                        },
                    );
                });
            },
        );
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
                || column_segment_sum(xo, inner, rows.clone(), t * COL_TILE, acc, prefetch),
            );
        });
    });
    combine_column_segments(&partial, segments, inner, finish, y);
}

/// `y[o][c]` = the sums `partial[o][s][c]` of segments `s = 0..segments` added in order, then
/// finished. A few adds per output: on the calling thread.
fn combine_column_segments<T: FloatElement>(
    partial: &[T::Acc],
    segments: usize,
    inner: usize,
    finish: ReduceFinish,
    y: &mut [T],
) {
    let divisor = finish_divisor::<T::Acc>(finish);
    for (o, yo) in y.chunks_exact_mut(inner).enumerate() {
        let parts = &partial[o * segments * inner..(o + 1) * segments * inner];
        for (c, out) in yo.iter_mut().enumerate() {
            let total = parts[c..].iter().step_by(inner).fold(T::Acc::zero(), |a, &s| a + s);
            *out = T::from_acc(total / divisor);
        }
    }
}

/// Narrow channels (`inner` divides `LANES`: NHWC with 2, 4, 8 or 16 channels): a strided
/// accumulator only `inner` wide would spend its time on loop overhead. Each outer index's
/// `[reduce, inner]` slab is one contiguous run, summed like a row (`LANES` lanes per block
/// of `BLOCK` elements, blocks into segments of `SEGMENT`), except that lane `l` only ever
/// sees channel `l % inner`: a block's lanes fold into per-channel sums (lanes `c`, `c +
/// inner`, ... in order), which are added per segment; segments are separate work items,
/// combined in order. The order depends only on constants, as everywhere here.
fn reduce_narrow<T: FloatElement>(g: &ReduceGeometry, finish: ReduceFinish, x: &[T], y: &mut [T]) {
    let (inner, outer_stride) = (g.inner, g.reduce * g.inner);
    let segments = outer_stride.div_ceil(SEGMENT);
    let mut partial = vec![T::Acc::zero(); g.outer * segments * inner];
    let items = partial.len() / inner;
    let per_task = items_per_task(SEGMENT, items);
    partial.par_chunks_mut(inner * per_task).enumerate().for_each(|(task, parts)| {
        simd::dispatch(
            #[inline(always)]
            || {
                for (i, part) in parts.chunks_exact_mut(inner).enumerate() {
                    let k = task * per_task + i;
                    let (o, seg) = (k / segments, k % segments);
                    let start = o * outer_stride + seg * SEGMENT;
                    let end = o * outer_stride + ((seg + 1) * SEGMENT).min(outer_stride);
                    for block in x[start..end].chunks(BLOCK) {
                        let lanes = lane_sums::<_, _, LANES>(block, simd::load::<T>);
                        for (c, p) in part.iter_mut().enumerate() {
                            let mut sum = lanes[c];
                            for l in (c + inner..LANES).step_by(inner) {
                                sum += lanes[l];
                            }
                            *p += sum;
                        }
                    }
                }
            },
        );
    });
    combine_column_segments(&partial, segments, inner, finish, y);
}

/// Sums rows `rows` of the `[reduce, inner]` slab `xo`, columns `col0..col0 + out.len()`, into
/// `out` (overwritten): rows in order, `FOLD` rows per pass, blocks of `ROW_BLOCK` rows summed
/// separately and then added (cascade). At most `ROW_SEGMENT` rows and `COL_TILE` columns.
/// With a `prefetch` distance (bytes), the register blocks prefetch the row about that far on.
#[inline(always)]
fn column_segment_sum<T: FloatElement>(
    xo: &[T],
    inner: usize,
    rows: std::ops::Range<usize>,
    col0: usize,
    out: &mut [T::Acc],
    prefetch: Option<usize>,
) {
    #[cfg(target_arch = "x86_64")]
    if let Some(kind) = simd::avx2_tile_kind::<T>().filter(|&kind| match kind {
        _ if out.len() <= REGISTER_COLUMNS => true,
        simd::TileKind::F16 => true,
        simd::TileKind::Bf16 => bf16_register_passes(inner),
        simd::TileKind::F32 => false,
    }) {
        let width = out.len();
        out.iter_mut().for_each(|a| *a = T::Acc::zero());
        // f32, bf16 and f16 (f32 accumulator): the block sums in registers, 96 channels (12
        // registers) at a time, then 64, 32 and 8; the last `width % 8` below.
        let vector_end = width - width % 8;
        assert!(rows.end * inner <= xo.len() && col0 + width <= inner);
        let prefetch_rows = prefetch.map_or(0, |ahead| ahead.div_ceil(inner * std::mem::size_of::<T>()));
        let mut c = 0;
        while c < vector_end {
            let left = vector_end - c;
            let start = rows.start * inner + col0 + c;
            let n = rows.len();
            // SAFETY: `kind` comes from `avx2_tile_kind::<T>()` (AVX2, `T` its element type,
            // `T::Acc` f32); rows `rows` of `xo` hold `inner >= col0 + width` elements each
            // (asserted above; `xo` is `[reduce, inner]`), so every load, `8 * R <= left`
            // channels from column `col0 + c`, stays inside `xo`; `out[c..]` holds `left`
            // accumulators of f32.
            unsafe {
                let (x, out) = (xo.as_ptr().add(start).cast::<u8>(), out.as_mut_ptr().add(c).cast::<f32>());
                c += match left {
                    96.. => {
                        simd::column_block_sums::<12>(kind, x, (inner, prefetch_rows), n, ROW_BLOCK, out);
                        96
                    }
                    64.. => {
                        simd::column_block_sums::<8>(kind, x, (inner, prefetch_rows), n, ROW_BLOCK, out);
                        64
                    }
                    32.. => {
                        simd::column_block_sums::<4>(kind, x, (inner, prefetch_rows), n, ROW_BLOCK, out);
                        32
                    }
                    _ => {
                        simd::column_block_sums::<1>(kind, x, (inner, prefetch_rows), n, ROW_BLOCK, out);
                        8
                    }
                };
            }
        }
        if vector_end == width {
            return;
        }
        return column_segment_sum_portable(xo, inner, rows, col0 + vector_end, &mut out[vector_end..]);
    }
    column_segment_sum_portable(xo, inner, rows, col0, out)
}

/// [`column_segment_sum`] without the AVX2 register path (and for the columns it leaves).
/// Inlined, like its caller, into `simd::dispatch`'s AVX2 function.
#[inline(always)]
fn column_segment_sum_portable<T: FloatElement>(
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

    /// The strided path's register blocks (channels-last tiles of at most `REGISTER_COLUMNS`,
    /// and wider f16 and bf16 ones, `bf16_register_passes`) add exactly what its portable
    /// accumulator adds, in the same order.
    fn register_columns_match_portable<T: FloatElement>() {
        let tiles = [
            (8, 0, 8),
            (13, 0, 13),
            (45, 3, 40),
            (96, 0, 96),
            (200, 100, 96),
            (300, 0, 300),
            (1280, 256, 1024),
        ];
        for (inner, col0, width) in tiles {
            for rows in [1, 63, 64, 65, 200] {
                let xo: Vec<T> = random(rows * inner, (rows * 1000 + inner) as u64);
                let mut fast = vec![T::Acc::zero(); width];
                let mut prefetched = vec![T::Acc::zero(); width];
                let mut portable = vec![T::Acc::zero(); width];
                simd::dispatch(|| column_segment_sum(&xo, inner, 0..rows, col0, &mut fast, None));
                simd::dispatch(|| column_segment_sum(&xo, inner, 0..rows, col0, &mut prefetched, Some(4096)));
                column_segment_sum_portable(&xo, inner, 0..rows, col0, &mut portable);
                let bits = |v: &[T::Acc]| {
                    v.iter()
                        .map(|a| num_traits::ToPrimitive::to_f64(a).unwrap().to_bits())
                        .collect::<Vec<_>>()
                };
                assert_eq!(bits(&fast), bits(&portable), "inner {inner} cols {col0}+{width} rows {rows}");
                assert_eq!(
                    bits(&prefetched),
                    bits(&fast),
                    "prefetching, inner {inner} cols {col0}+{width} rows {rows}"
                );
            }
        }
    }

    #[test]
    fn register_column_sums_match_the_portable_accumulator_bit_for_bit() {
        for_all_floats!(register_columns_match_portable);
    }

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
            (37, 49, 1),
            (9, 8, 1),
            (11, 127, 1),
            (700, 49, 1),
            // Narrow channels (`reduce_narrow`): several segments, block tails, every width.
            (2, SEGMENT / 4 + 37, 8),
            (3, 1000, 8),
            (5, 49, 2),
            (1, 17, 16),
            (2, 301, 4),
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

    fn identical_rows<T: FloatElement>() {
        // The same row at every position of a group of eight (and in the odd group at the end)
        // must give the same bits: the order of a row's sum depends only on the row.
        let reduce_len = 49;
        let row: Vec<T> = random(reduce_len, 5);
        let x: Vec<T> = (0..1003).flat_map(|_| row.iter().copied()).collect();
        let g = ReduceGeometry { outer: 1003, reduce: reduce_len, inner: 1 };
        let mut y = vec![T::from_f64(0.0); g.output_len()];
        reduce(&g, ReduceFinish::DivideBy(49.0), &x, &mut y);
        assert!(y.iter().all(|v| same(*v, y[0])), "{:?}", T::DTYPE);
    }

    #[test]
    fn short_rows_sum_the_same_at_every_position() {
        for_all_floats!(identical_rows);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_lane_sum_is_the_portable_lane_sum_bit_for_bit() {
        if simd::avx2_tile_kind::<f32>().is_none() {
            return;
        }
        for len in [0, 1, 7, 8, 9, 15, 16, 17, 31, 100, 511, 512] {
            let x: Vec<f32> = random(len, len as u64 + 5);
            let xb: Vec<half::bf16> = random(len, len as u64 + 6);
            // SAFETY: AVX2 was detected above; pointers and lengths are the vectors'.
            let (got, got_b, prefetched_b) = unsafe {
                (
                    lanes16::sum::<false>(simd::TileKind::F32, x.as_ptr().cast(), len, 0),
                    lanes16::sum::<false>(simd::TileKind::Bf16, xb.as_ptr().cast(), len, 0),
                    lanes16::sum::<true>(simd::TileKind::Bf16, xb.as_ptr().cast(), len, PREFETCH_AHEAD_INTEL),
                )
            };
            assert_eq!(got.to_bits(), lane_sum::<_, f32, 16>(&x, |v| v).to_bits(), "f32 {len}");
            assert_eq!(got_b.to_bits(), lane_sum::<_, f32, 16>(&xb, |v| v.to_f32()).to_bits(), "bf16 {len}");
            assert_eq!(prefetched_b.to_bits(), got_b.to_bits(), "bf16 prefetching {len}");
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
