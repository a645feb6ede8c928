//! bf16 window averages whose sums no order of the additions can change.
//!
//! PyTorch sums a window in f32, tap by tap, in row-major order, and every kernel here that
//! must match it keeps that order: on small bf16 planes that means transposing planes into
//! lanes (`lanes.rs`) and chains of dependent additions. But the order only matters when an
//! addition rounds. When every partial sum of a window is exact in f32, every order yields the
//! exact sum, and so the same bits as PyTorch. For bf16 inputs that is easy to guarantee:
//!
//! - A nonzero bf16 with exponent field `f` (1..=254) is an integer of at most 8 bits times
//!   `2^(f - 134)`. If the nonzero values of a window have fields `f_min..=f_max`, every value,
//!   and every partial sum, is an integer multiple of `2^(f_min - 134)`.
//! - A sum of at most `2^c` values is below `2^c * 2^(f_max - 126)` in magnitude, so that
//!   integer is below `2^(8 + (f_max - f_min) + c)`.
//! - f32 holds every such multiple exactly when that integer fits its 24-bit significand and
//!   the sum stays below `2^128`: `f_max - f_min <= 16 - c` and `f_max <= 254 - c`.
//! - `f_min >= 8` keeps every nonzero partial sum at `2^-126` or more, a normal f32: so the
//!   result holds even where a host process has turned on flush-to-zero (MXCSR is inherited
//!   by threads; `torch.set_flush_denormal` sets it), which would flush a subnormal partial
//!   sum in one order and not in another.
//! - A sum that is exactly zero: PyTorch starts from +0 and `+0 + -0 = +0`, so it gets +0.
//!   Another order gets -0 only when every tap is -0, so the result gets `+ 0.0` (which changes
//!   nothing else).
//!
//! [`SumRange`] is that check, on [`GROUP_PLANES`] planes at a time (four integer operations
//! per 32 inputs). A group that passes is summed in any order. In a group that fails, each
//! plane is checked alone: a few failing planes are redone in PyTorch's order by a scalar
//! loop, and a group where more than a quarter fail (infinities, NaN, subnormals, or
//! magnitudes more than 2^12 apart all over) goes back to the caller's in-order path. With
//! uniform data in [-1, 1), one group in eleven fails and one plane in 170.
//!
//! The order-free kernel here is adaptive pooling to four outputs (2x2, or 1x4 / 4x1) from
//! planes of at most 64 elements, windows of at most 16 taps: the 7x7 -> 2x2 of a pyramid pool
//! at the end of ResNet. There the lane path spends its time transposing 49-element planes
//! into lanes, and then on 16-long chains of additions. Here each plane is two 64-byte loads;
//! four `vpermt2w` pick its 64 taps (four outputs of 16) straight into f32 lanes, laid out so
//! that three additions and a 128-bit fold across four planes give the sixteen outputs of four
//! planes in memory order.

use super::simd::is_bf16;
use crate::dtype::FloatElement;
use half::bf16;

/// A window: input rows `h0..h1`, columns `w0..w1`, as `((h0, h1), (w0, w1))`.
pub(crate) type Window = ((usize, usize), (usize, usize));

/// Planes checked (and then summed, or handed back) together.
pub(crate) const GROUP_PLANES: usize = 16;

/// The widest windows [`FourWindows`] sums: four outputs of 16 taps fill four 16-lane
/// permutes.
const MAX_TAPS: usize = 16;

/// The largest and smallest nonzero magnitude of some bf16 values, as bits without the sign.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct SumRange {
    pub(crate) max_abs: u16,
    /// `None` when every value is a zero.
    pub(crate) min_nonzero_abs: Option<u16>,
}

impl SumRange {
    /// The range of `values`, one by one (the reference for the vector check).
    #[cfg(test)]
    pub(crate) fn of(values: &[bf16]) -> Self {
        let abs = values.iter().map(|v| v.to_bits() & 0x7FFF);
        SumRange { max_abs: abs.clone().max().unwrap_or(0), min_nonzero_abs: abs.filter(|&a| a != 0).min() }
    }

    /// Whether every sum of at most `taps` of these values, added in any order, is exact in
    /// f32, each nonzero partial sum a normal f32 (the module's doc has the argument): no inf
    /// or NaN, exponent fields from 8, at most `16 - c` apart and at most `254 - c`, where
    /// `2^c >= taps`.
    pub(crate) fn sums_are_exact(&self, taps: usize) -> bool {
        let Some(min) = self.min_nonzero_abs else { return true };
        let c = taps.max(1).next_power_of_two().trailing_zeros() as i32;
        let (f_max, f_min) = (i32::from(self.max_abs >> 7), i32::from(min >> 7));
        f_min >= 8 && f_max <= 254 - c && f_max - f_min <= 16 - c
    }
}

/// Four outputs' windows over planes of `height x width <= 64` elements, prepared once per op
/// for [`FourWindows::avg_planes`]: output `o` (row-major) sums its taps (at most
/// [`MAX_TAPS`]) and divides by `div[o].0`, then by `div[o].1` (adaptive pooling's `kh`,
/// `kw`).
pub(crate) struct FourWindows {
    plane: usize,
    /// Each output's taps in PyTorch's order (row by row), as cells of the plane.
    tap_cells: [[u8; MAX_TAPS]; 4],
    tap_counts: [usize; 4],
    /// Each output's divisors, in PyTorch's order.
    divisors: [(f32, f32); 4],
    /// Permute `j`'s word index per 16-bit slot: f32 lane `L` (its high half, slot `2L + 1`)
    /// takes tap `4j + L / 4` of output `L % 4`; a plane's cells `0..32` are the first source,
    /// `32..64` the second.
    cells: [[i16; 32]; 4],
    /// Permute `j`'s zeroing mask: the high slot of lanes whose tap exists. The low slots
    /// stay zero, which makes each bf16 its exact f32.
    used: [u32; 4],
    /// The two divisors of each of the sixteen outputs of four planes (lane `l`: output
    /// `l % 4`), or, when every divisor is a power of two, their reciprocals: then `x / d` and
    /// `x * (1 / d)` are the same correctly rounded quotient (the two `vdivps` took a fifth
    /// of the kernel's time in a profile of 7x7 -> 2x2).
    div: ([f32; 16], [f32; 16]),
    multiply: bool,
}

impl FourWindows {
    /// `windows[o] = ((h0, h1), (w0, w1))`, every one non-empty and inside the plane; `None`
    /// where the plane or a window is too large, or a window is empty.
    pub(crate) fn new(
        (height, width): (usize, usize),
        windows: [Window; 4],
        div: [(f32, f32); 4],
    ) -> Option<Self> {
        let plane = height * width;
        let valid = |&((h0, h1), (w0, w1)): &Window| {
            h0 < h1 && h1 <= height && w0 < w1 && w1 <= width && (h1 - h0) * (w1 - w0) <= MAX_TAPS
        };
        if plane == 0 || plane > 64 || !windows.iter().all(valid) {
            return None;
        }
        let power_of_two =
            |d: f32| (1.0..=65536.0).contains(&d) && d == (d as u32) as f32 && (d as u32).is_power_of_two();
        let multiply = div.iter().all(|&(a, b)| power_of_two(a) && power_of_two(b));
        let mut cells = [[0i16; 32]; 4];
        let mut used = [0u32; 4];
        let (mut tap_cells, mut tap_counts) = ([[0u8; MAX_TAPS]; 4], [0usize; 4]);
        for (o, &((h0, h1), (w0, w1))) in windows.iter().enumerate() {
            let window = (h0..h1).flat_map(|h| (w0..w1).map(move |w| h * width + w));
            for (t, cell) in window.enumerate() {
                tap_cells[o][t] = cell as u8;
                tap_counts[o] = t + 1;
                // Tap `t` of output `o`: permute `t / 4`, lane `4 (t % 4) + o`, its high half.
                let slot = 2 * (4 * (t % 4) + o) + 1;
                cells[t / 4][slot] = cell as i16;
                used[t / 4] |= 1 << slot;
            }
        }
        Some(FourWindows {
            plane,
            tap_cells,
            tap_counts,
            divisors: div,
            cells,
            used,
            div: if multiply {
                (std::array::from_fn(|l| 1.0 / div[l % 4].0), std::array::from_fn(|l| 1.0 / div[l % 4].1))
            } else {
                (std::array::from_fn(|l| div[l % 4].0), std::array::from_fn(|l| div[l % 4].1))
            },
            multiply,
        })
    }

    /// One plane's four outputs in PyTorch's order (each window row by row from +0 in f32,
    /// then the two divisions, rounded to bf16 as `simd::store` does): the kernel's answer
    /// for a plane that fails its check inside a group that passes mostly. The four sums go
    /// side by side, so their chains of additions overlap.
    fn plane_in_order(&self, plane: &[bf16], out: &mut [bf16]) {
        let plane = &plane[..self.plane];
        let mut sums = [0f32; 4];
        for t in 0..self.widest() {
            for (o, sum) in sums.iter_mut().enumerate() {
                if t < self.tap_counts[o] {
                    *sum += super::simd::load(plane[usize::from(self.tap_cells[o][t])]);
                }
            }
        }
        for ((o, sum), &(kh, kw)) in out.iter_mut().zip(sums).zip(&self.divisors) {
            *o = super::simd::store::<bf16>(sum / kh / kw);
        }
    }

    /// The most taps of any output's window (what the exactness check allows for).
    fn widest(&self) -> usize {
        self.tap_counts.into_iter().max().unwrap_or(0)
    }

    /// Whether [`FourWindows::avg_planes`] runs its kernel on this CPU: AVX-512 F and BW, tests
    /// have not asked for AVX2 only, and the CPU is Intel's. On the 2-vCPU Zen 4 VM (which runs
    /// 512-bit operations as two halves) the lane path's row registers beat the kernel:
    /// normally distributed data, 1 and 2 s loops alternating the two (`NCHW` bf16 adaptive
    /// 7x7 -> 2x2), 16x2048x7x7 76.5 us against 122 us, 8x1280x7x7 24.8 against 40.1,
    /// 2x2048x7x7 12.1 against 17.6; 1x2048x7x7, seven alternations, each process either
    /// fast or slow: the lanes 7.7 to 7.8 us in five and 11.1 to 11.2 in two, the kernel 9.8
    /// to 10.0 in six and 13.3 in one. On data that always passes the check, the ResNet tail
    /// 76 against 90 us. On Intel (Emerald Rapids) the lanes were no faster beyond that VM's
    /// noise (BENCHMARKS-HISTORY.md's index), so it keeps the kernel.
    pub(crate) fn available() -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            super::simd::avx512_allowed() && super::simd::is_intel()
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    /// Averages the planes of `xs` into `ys` (four outputs per plane), [`GROUP_PLANES`] at a
    /// time. bf16 groups are done here: in any order where the [`SumRange`] allows it, a few
    /// failing planes in PyTorch's order. Every other group (one where more than a quarter of
    /// the planes fail, all of them for other types or where [`FourWindows::available`] is
    /// false) is handed to `in_order` as its planes' inputs and outputs.
    pub(crate) fn avg_planes<T: FloatElement>(
        &self,
        xs: &[T],
        ys: &mut [T],
        in_order: impl FnMut(&[T], &mut [T]),
    ) {
        self.avg_planes_using(xs, ys, in_order, Self::available());
    }

    /// [`FourWindows::avg_planes`] with the kernel when `kernel` (and `T` is bf16): tests ask
    /// for it directly, since other tests switch [`FourWindows::available`] off and on while
    /// they run.
    fn avg_planes_using<T: FloatElement>(
        &self,
        xs: &[T],
        ys: &mut [T],
        mut in_order: impl FnMut(&[T], &mut [T]),
        kernel: bool,
    ) {
        #[cfg(target_arch = "x86_64")]
        let kernel = kernel && super::simd::has_avx512();
        let planes = (xs.len() / self.plane).min(ys.len() / 4);
        let order_free = is_bf16::<T>() && kernel;
        // Planes handed to `in_order` (see below). Data that fails one group tends to fail
        // the next ones too, and each hand-off has a cost of its own: on data where every
        // plane fails, one group at a time ran at 0.42x the lanes' speed, doubling runs at
        // 0.83x, quadrupling them at 0.96x to 0.98x.
        let mut run = GROUP_PLANES / 4;
        let mut p0 = 0;
        while p0 < planes {
            let (xs, ys) = (&xs[p0 * self.plane..planes * self.plane], &mut ys[4 * p0..4 * planes]);
            // SAFETY: with `order_free`, `T` is bf16 (same size, alignment and validity, so the
            // casts keep each slice's memory and length) and the CPU has AVX-512 F and BW; the
            // kernel reads only `xs` and writes only `ys`, `planes - p0` planes of each.
            let done = if order_free {
                unsafe {
                    let x = std::slice::from_raw_parts(xs.as_ptr().cast::<bf16>(), xs.len());
                    let y = std::slice::from_raw_parts_mut(ys.as_mut_ptr().cast::<bf16>(), ys.len());
                    avx512::avg_until_inexact(self, x, y, planes - p0)
                }
            } else {
                0
            };
            // Planes `p0 + done..` are left: the group there goes in order, or after stops in
            // a row at the kernel's first group, four times as many planes as the last time.
            run = if done == 0 { 4 * run } else { GROUP_PLANES };
            let group = (planes - p0 - done).min(run);
            if group > 0 {
                in_order(
                    &xs[done * self.plane..(done + group) * self.plane],
                    &mut ys[4 * done..4 * (done + group)],
                );
            }
            p0 += done + group;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::super::simd::avx512::finite_bf16_in_high_half;
    use super::{FourWindows, SumRange};
    use half::bf16;
    use std::arch::x86_64::*;

    /// The [`SumRange`] of `x`, 32 values per step: on each value doubled (which drops the
    /// sign) the largest, and the smallest after subtracting 2 (a zero wraps to 0xFFFE, above
    /// every nonzero value's).
    ///
    /// # Safety
    /// AVX-512 F and BW.
    #[target_feature(enable = "avx2,avx512f,avx512bw")]
    pub(super) unsafe fn sum_range(x: &[bf16]) -> SumRange {
        if x.is_empty() {
            return SumRange { max_abs: 0, min_nonzero_abs: None };
        }
        let (mut high, mut low) = (_mm512_setzero_si512(), _mm512_set1_epi16(-1));
        let two = _mm512_set1_epi16(2);
        let mut step = |v: __m512i| {
            let doubled = _mm512_add_epi16(v, v);
            high = _mm512_max_epu16(high, doubled);
            low = _mm512_min_epu16(low, _mm512_sub_epi16(doubled, two));
        };
        let mut chunks = x.chunks_exact(32);
        for chunk in &mut chunks {
            // SAFETY: the chunk holds 32 values.
            step(_mm512_loadu_si512(chunk.as_ptr().cast()));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            // SAFETY: the mask covers the last `len < 32` values; masked-off words are neither
            // read nor faulted on, and load as zeros (ignored by both reductions).
            step(_mm512_maskz_loadu_epi16((u64::MAX >> (64 - rest.len())) as u32, rest.as_ptr().cast()));
        }
        let high = 0xFFFF - min_u16(_mm512_xor_si512(high, _mm512_set1_epi16(-1)));
        let low = min_u16(low);
        // Lazily: `low + 2` overflows for the all-zero 0xFFFE.
        SumRange { max_abs: high >> 1, min_nonzero_abs: (low != 0xFFFE).then(|| (low + 2) >> 1) }
    }

    /// The smallest of 32 u16.
    #[inline(always)]
    unsafe fn min_u16(v: __m512i) -> u16 {
        let v = _mm256_min_epu16(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64::<1>(v));
        let v = _mm_min_epu16(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
        _mm_cvtsi128_si32(_mm_minpos_epu16(v)) as u16
    }

    /// `planes` planes (`x`, four outputs each in `y`), [`super::GROUP_PLANES`] at a time, up
    /// to the first group where more than a quarter of the planes fail their check: returns
    /// how many planes were done (all of them, or where that group starts). In a group that
    /// fails the check as a whole each plane is checked alone, and the few that fail are
    /// redone in PyTorch's order after the group's vectors. (In uniform data in [-1, 1), one
    /// value in 2^13 lies more than 12 binades below the largest: a group fails about once in
    /// eleven, a plane once in 170.)
    ///
    /// Four planes at a time: each plane's permutes give lanes `L` that sum taps of output
    /// `L % 4`, so a plane's accumulator holds four partial sums per output, one in each
    /// 128-bit chunk; adding the chunks of four planes pairwise (two rounds of 128-bit
    /// shuffles) leaves plane `i`'s four outputs in chunk `i`, the outputs' memory order.
    ///
    /// # Safety
    /// AVX-512 F and BW; `x` holds `planes * s.plane` and `y` `4 * planes` elements.
    #[target_feature(enable = "avx2,avx512f,avx512bw")]
    pub(super) unsafe fn avg_until_inexact(
        s: &FourWindows,
        x: &[bf16],
        y: &mut [bf16],
        planes: usize,
    ) -> usize {
        debug_assert!(x.len() >= planes * s.plane && y.len() >= 4 * planes);
        let cells = s.cells.map(|c| _mm512_loadu_si512(c.as_ptr().cast()));
        let (div0, div1) = (_mm512_loadu_ps(s.div.0.as_ptr()), _mm512_loadu_ps(s.div.1.as_ptr()));
        // The plane's first 32 cells and the rest (`plane <= 64`).
        let (first, second) = (
            (u64::MAX >> (64 - s.plane.min(32))) as u32,
            if s.plane > 32 { (u64::MAX >> (96 - s.plane)) as u32 } else { 0 },
        );
        // Partial sums of plane `p` (zeros past the last plane).
        let sums = |p: usize| -> __m512 {
            if p >= planes {
                return _mm512_setzero_ps();
            }
            let at = x.as_ptr().add(p * s.plane).cast::<i16>();
            // SAFETY: plane `p < planes` has `s.plane` elements at `at`; the masks cover
            // exactly those (masked-off words are not read). `wrapping_add`: with `second`
            // empty, `at + 32` may lie past the allocation.
            let (lo, hi) =
                (_mm512_maskz_loadu_epi16(first, at), _mm512_maskz_loadu_epi16(second, at.wrapping_add(32)));
            let tap =
                |j: usize| _mm512_castsi512_ps(_mm512_maskz_permutex2var_epi16(s.used[j], lo, cells[j], hi));
            _mm512_add_ps(_mm512_add_ps(tap(0), tap(1)), _mm512_add_ps(tap(2), tap(3)))
        };
        let taps = s.widest();
        let mut p0 = 0;
        while p0 < planes {
            let group = (planes - p0).min(super::GROUP_PLANES);
            let xg = &x[p0 * s.plane..(p0 + group) * s.plane];
            // Planes of the group (bit `i`: plane `p0 + i`) whose own range fails the check.
            let mut in_order = 0u32;
            if !sum_range(xg).sums_are_exact(taps) {
                for (i, plane) in xg.chunks_exact(s.plane).enumerate() {
                    if !sum_range(plane).sums_are_exact(taps) {
                        in_order |= 1 << i;
                        if in_order.count_ones() as usize > super::GROUP_PLANES / 4 {
                            return p0;
                        }
                    }
                }
            }
            for q in (p0..p0 + group).step_by(4) {
                let (a0, a1, a2, a3) = (sums(q), sums(q + 1), sums(q + 2), sums(q + 3));
                // [a0 c0+c2, a0 c1+c3, a1 c0+c2, a1 c1+c3], likewise for a2, a3.
                let s01 =
                    _mm512_add_ps(_mm512_shuffle_f32x4::<0x44>(a0, a1), _mm512_shuffle_f32x4::<0xEE>(a0, a1));
                let s23 =
                    _mm512_add_ps(_mm512_shuffle_f32x4::<0x44>(a2, a3), _mm512_shuffle_f32x4::<0xEE>(a2, a3));
                let total = _mm512_add_ps(
                    _mm512_shuffle_f32x4::<0x88>(s01, s23),
                    _mm512_shuffle_f32x4::<0xDD>(s01, s23),
                );
                // + 0: a window of -0 only sums to -0 here, to +0 in PyTorch's order from +0.
                let total = _mm512_add_ps(total, _mm512_setzero_ps());
                let mean = if s.multiply {
                    _mm512_mul_ps(_mm512_mul_ps(total, div0), div1)
                } else {
                    _mm512_div_ps(_mm512_div_ps(total, div0), div1)
                };
                // The means are finite (the check passed no inf or NaN).
                let out = _mm512_cvtepi32_epi16(_mm512_srli_epi32::<16>(finite_bf16_in_high_half(mean)));
                let n = (planes - q).min(4);
                if n == 4 {
                    // SAFETY: outputs `4q..4q + 16` exist (planes `q..q + 4` do).
                    _mm256_storeu_si256(y.as_mut_ptr().add(4 * q).cast(), out);
                } else {
                    // SAFETY: the mask stores only outputs `4q..4q + 4n`, those of the `n`
                    // planes left.
                    _mm512_mask_storeu_epi16(
                        y.as_mut_ptr().add(4 * q).cast(),
                        (1u32 << (4 * n)) - 1,
                        _mm512_castsi256_si512(out),
                    );
                }
            }
            while in_order != 0 {
                let p = p0 + in_order.trailing_zeros() as usize;
                s.plane_in_order(&x[p * s.plane..(p + 1) * s.plane], &mut y[4 * p..4 * p + 4]);
                in_order &= in_order - 1;
            }
            p0 += group;
        }
        planes
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod avx512 {
    use super::FourWindows;
    use half::bf16;

    /// Never called: [`FourWindows::available`] is false off x86-64.
    pub(super) unsafe fn avg_until_inexact(_: &FourWindows, _: &[bf16], _: &mut [bf16], _: usize) -> usize {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::test_util::Lcg;

    /// PyTorch's adaptive window bounds.
    fn bounds(size: usize, out: usize) -> Vec<(usize, usize)> {
        (0..out).map(|i| (i * size / out, ((i + 1) * size).div_ceil(out))).collect()
    }

    /// A bf16 from its sign, exponent field and 7-bit fraction.
    fn bits(negative: bool, field: u16, fraction: u16) -> bf16 {
        bf16::from_bits(u16::from(negative) << 15 | field << 7 | fraction)
    }

    /// PyTorch's order: the window's taps row by row from +0 in f32, `/ kh / kw`, then bf16.
    fn in_order(plane: &[bf16], width: usize, ((h0, h1), (w0, w1)): Window) -> bf16 {
        let mut sum = 0f32;
        for h in h0..h1 {
            for w in w0..w1 {
                sum += plane[h * width + w].to_f32();
            }
        }
        bf16::from_f32(sum / (h1 - h0) as f32 / (w1 - w0) as f32)
    }

    #[test]
    fn the_range_check_follows_its_argument() {
        let window = |small_field: u16| {
            // Fifteen of the largest significand at field 140 and one odd significand lower:
            // the exact sum needs 8 + (140 - small_field) + 4 bits.
            let mut v = vec![bits(false, 140, 0x7F); 15];
            v.push(bits(false, small_field, 3));
            v
        };
        for (small_field, exact) in [(128, true), (127, false)] {
            let v = window(small_field);
            let range = SumRange::of(&v);
            assert_eq!(range.sums_are_exact(16), exact, "fields 140 and {small_field}");
            let sequential = v.iter().fold(0f32, |s, x| s + x.to_f32());
            let exact_sum: f64 = v.iter().map(|x| x.to_f64()).sum();
            // The bound is tight: one binade more and the sum rounds.
            assert_eq!(f64::from(sequential) == exact_sum, exact, "fields 140 and {small_field}");
        }
        // Fewer taps, fewer carry bits.
        assert!(SumRange::of(&window(127)).sums_are_exact(8));
        let range = |v: &[bf16]| SumRange::of(v);
        let one = bits(false, 127, 0);
        assert!(range(&[bf16::ZERO, bf16::NEG_ZERO]).sums_are_exact(16));
        assert_eq!(range(&[bf16::NEG_ZERO, one]).min_nonzero_abs, Some(one.to_bits()));
        assert!(!range(&[one, bf16::INFINITY]).sums_are_exact(16));
        assert!(!range(&[one, bf16::NAN]).sums_are_exact(16));
        assert!(!range(&[bf16::from_bits(1)]).sums_are_exact(1), "subnormal");
        // Overflow: 16 values below 2^124 stay below 2^128; 2^124 and up may not.
        assert!(range(&[bits(true, 250, 0x7F)]).sums_are_exact(16));
        assert!(!range(&[bits(false, 251, 0)]).sums_are_exact(16));
        assert!(range(&[bits(false, 251, 0)]).sums_are_exact(8));
    }

    /// Windows that pass the check sum to the same f32 in every order tried.
    #[test]
    fn sums_that_pass_are_exact_in_any_order() {
        let mut r = Lcg::new(11);
        let mut passed = 0;
        for case in 0..20_000 {
            let (taps, span) = (1 + case % 16, (case / 16 % 16) as u16);
            let v: Vec<bf16> = (0..taps)
                .map(|_| match r.next_u32() % 8 {
                    0 => bf16::ZERO,
                    1 => bf16::NEG_ZERO,
                    _ => bits(
                        r.next_u32().is_multiple_of(2),
                        120 + (r.next_u32() % (u32::from(span) + 1)) as u16,
                        (r.next_u32() % 128) as u16,
                    ),
                })
                .collect();
            if !SumRange::of(&v).sums_are_exact(taps) {
                continue;
            }
            passed += 1;
            let exact: f64 = v.iter().map(|x| x.to_f64()).sum();
            let forward = v.iter().fold(0f32, |s, x| s + x.to_f32());
            let backward = v.iter().rev().fold(0f32, |s, x| s + x.to_f32());
            let pairwise =
                v.chunks(2).map(|p| p.iter().map(|x| x.to_f32()).sum::<f32>()).fold(0f32, |s, x| s + x);
            for sum in [forward, backward, pairwise] {
                assert_eq!(f64::from(sum), exact, "{v:?}");
                assert_eq!(sum.to_bits(), forward.to_bits(), "{v:?}");
            }
        }
        assert!(passed > 5_000, "{passed}");
    }

    #[test]
    fn the_vector_range_matches_the_reference() {
        #[cfg(target_arch = "x86_64")]
        if crate::cpu::simd::has_avx512() {
            let mut r = Lcg::new(5);
            for len in 1..=100 {
                for _ in 0..20 {
                    let v: Vec<bf16> = (0..len)
                        .map(|_| match r.next_u32() % 4 {
                            0 => bf16::from_bits(r.next_u32() as u16),
                            1 => bf16::from_bits((r.next_u32() as u16) & 0x807F),
                            _ => bf16::from_f64(r.uniform(-2.0, 2.0)),
                        })
                        .collect();
                    // SAFETY: AVX-512 F and BW, just checked.
                    assert_eq!(unsafe { avx512::sum_range(&v) }, SumRange::of(&v), "{v:?}");
                }
                // Constant inputs (all zeros, all -0, extremes), alone and with one 1.0 last.
                for pattern in [0u16, 0x8000, 0x0001, 0x8001, 0x7FFF, 0xFFFF, 0x7F80, 0xFF80, 0x0080] {
                    let mut v = vec![bf16::from_bits(pattern); len];
                    // SAFETY: AVX-512 F and BW, just checked.
                    assert_eq!(unsafe { avx512::sum_range(&v) }, SumRange::of(&v), "{pattern:#x} x {len}");
                    v[len - 1] = bf16::ONE;
                    // SAFETY: as above.
                    assert_eq!(
                        unsafe { avx512::sum_range(&v) },
                        SumRange::of(&v),
                        "{pattern:#x} x {len}, 1.0"
                    );
                }
            }
            // SAFETY: as above.
            assert_eq!(unsafe { avx512::sum_range(&[]) }, SumRange { max_abs: 0, min_nonzero_abs: None });
        }
    }

    /// Inputs that pass the check (magnitudes in [0.5, 2), zeros of both signs), inputs with
    /// whole planes of -0 (a tree of additions gets -0 there, PyTorch +0), inputs that fail
    /// it in most planes (tiny values, infinities, NaN, subnormals), and inputs where a
    /// quarter of the planes fail: `2^24 + 1 - 2^24` (0 in PyTorch's order, 1 in the
    /// kernel's) or a NaN.
    fn data(kind: usize, len: usize, plane: usize, seed: u64) -> Vec<bf16> {
        let mut r = Lcg::new(seed);
        (0..len)
            .map(|i| {
                let u = r.next_u32();
                let magnitude = r.uniform(0.5, 2.0);
                let signed = if u.is_multiple_of(2) { magnitude } else { -magnitude };
                bf16::from_f64(match kind {
                    0 => signed,
                    1 if (i / plane) % 3 == 1 => -0.0,
                    1 => [0.0, -0.0, signed][(u % 3) as usize],
                    3 => match ((i / plane) % 8, i % plane) {
                        (3, 0) => 16777216.0,
                        (3, 1) => 1.0,
                        (3, 2) => -16777216.0,
                        (3, _) => 0.0,
                        (6, 4) => f64::NAN,
                        _ => signed,
                    },
                    _ => match u % 64 {
                        0 => 1e-6,
                        1 => f64::INFINITY,
                        2 => f64::NAN,
                        3 => 1e-40,
                        _ => signed,
                    },
                })
            })
            .collect()
    }

    /// Whether the CPU runs the kernel (tests ask for it whatever `AVX2_ONLY` says).
    fn kernel_present() -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            crate::cpu::simd::has_avx512()
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    /// The windows of adaptive pooling from `(h, w)` to `(oh, ow)` (four outputs), and their
    /// `FourWindows` where it takes them.
    fn adaptive_four((h, w): (usize, usize), (oh, ow): (usize, usize)) -> ([Window; 4], Option<FourWindows>) {
        let (rows, cols) = (bounds(h, oh), bounds(w, ow));
        let windows: [_; 4] = std::array::from_fn(|k| (rows[k / ow], cols[k % ow]));
        let div = windows.map(|((h0, h1), (w0, w1))| ((h1 - h0) as f32, (w1 - w0) as f32));
        (windows, FourWindows::new((h, w), windows, div))
    }

    /// Pools `x` (planes of width `w`) with the kernel where the CPU has it, the groups handed
    /// back in PyTorch's order; checks every output against PyTorch's order bit for bit and
    /// returns how many hand-offs there were.
    fn check(four: &FourWindows, w: usize, windows: &[Window; 4], x: &[bf16], what: &str) -> usize {
        let plane = four.plane;
        let want: Vec<bf16> = x.chunks(plane).flat_map(|p| windows.map(|win| in_order(p, w, win))).collect();
        let mut y = vec![bf16::from_f32(7.0); want.len()];
        let mut handed_back = 0;
        let in_order_path = |xs: &[bf16], ys: &mut [bf16]| {
            handed_back += 1;
            for (p, out) in xs.chunks(plane).zip(ys.chunks_mut(4)) {
                for (o, &win) in out.iter_mut().zip(windows) {
                    *o = in_order(p, w, win);
                }
            }
        };
        four.avg_planes_using(x, &mut y, in_order_path, true);
        for (i, (a, b)) in y.iter().zip(&want).enumerate() {
            assert!(
                a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
                "{what} at {i}: {a:?} vs {b:?}"
            );
        }
        handed_back
    }

    #[test]
    fn four_windows_give_pytorchs_bits() {
        let shapes = [
            ((7, 7), (2, 2)),
            ((8, 8), (2, 2)),
            ((6, 5), (2, 2)),
            ((5, 7), (1, 4)),
            ((7, 3), (4, 1)),
            ((2, 2), (2, 2)),
            ((3, 3), (2, 2)),
            ((4, 16), (4, 1)),
        ];
        for ((h, w), out) in shapes {
            let (windows, four) = adaptive_four((h, w), out);
            let four = four.expect("four windows of at most 16 taps");
            for planes in [1, 3, 4, 5, 16, 17, 33, 38] {
                for kind in 0..4 {
                    let x = data(kind, planes * h * w, h * w, (planes * 10 + kind) as u64);
                    let what = format!("{h}x{w} -> {out:?}, {planes} planes, data {kind}");
                    let handed_back = check(&four, w, &windows, &x, &what);
                    // The order-free kernel did the passing groups (where the CPU has it).
                    if kernel_present() && kind != 2 {
                        assert_eq!(handed_back, 0, "{what}");
                    }
                    // Data 2 fails most planes of 16 elements or more: whole groups go back.
                    if kind == 2 && planes >= 16 && h * w >= 16 {
                        assert!(handed_back > 0, "{what}");
                    }
                }
            }
        }
    }

    /// Every plane shape up to 64 elements pooled to 2x2, 1x4 and 4x1, planes of random bf16
    /// over the whole exponent range (fields 1 to 254, 0 to 19 binades apart within a plane or
    /// a whole input), zeros of both signs and random bit patterns (NaN, inf, subnormals):
    /// groups that pass, fail plane by plane and go back, partial last groups, divisors that
    /// are powers of two and not. (A review found `x * (1 / 3)` for `x / 3` passing the other
    /// tests; this one catches it.)
    #[test]
    fn random_planes_of_every_shape_give_pytorchs_bits() {
        let mut r = Lcg::new(99);
        let mut value = |base: u32, span: u32| match r.next_u32() % 16 {
            0 => bf16::ZERO,
            1 => bf16::NEG_ZERO,
            2 if r.next_u32().is_multiple_of(8) => bf16::from_bits(r.next_u32() as u16),
            _ => {
                let field = (base + r.next_u32() % (span + 1)).clamp(1, 254) as u16;
                bits(r.next_u32().is_multiple_of(2), field, (r.next_u32() % 128) as u16)
            }
        };
        let mut r = Lcg::new(7);
        let mut outputs = 0;
        for h in 1..=64 {
            for w in (1..=64).filter(|w| h * w <= 64) {
                for out in [(2, 2), (1, 4), (4, 1)] {
                    if out.0 > h || out.1 > w {
                        continue;
                    }
                    let (windows, Some(four)) = adaptive_four((h, w), out) else { continue };
                    for trial in 0..6 {
                        let planes = 1 + (r.next_u32() % 80) as usize;
                        let shared_base = 1 + r.next_u32() % 254;
                        let mut x = Vec::with_capacity(planes * h * w);
                        for _ in 0..planes {
                            let base = if trial % 2 == 0 { shared_base } else { 1 + r.next_u32() % 254 };
                            let span = r.next_u32() % 20;
                            x.extend((0..h * w).map(|_| value(base, span)));
                        }
                        check(&four, w, &windows, &x, &format!("{h}x{w} -> {out:?}, trial {trial}"));
                        outputs += 4 * planes;
                    }
                }
            }
        }
        assert!(outputs > 100_000, "{outputs}");
    }

    /// With flush-to-zero on (a host process may set it), a window whose partial sums go
    /// subnormal in one order and not in another would differ: such values fail the check
    /// (exponent fields from 8), so the bits still match PyTorch's order under the same flags.
    #[test]
    #[cfg(target_arch = "x86_64")]
    #[allow(deprecated)]
    fn flush_to_zero_cannot_change_the_bits() {
        use std::arch::x86_64::{_mm_getcsr, _mm_setcsr};
        if !kernel_present() {
            return;
        }
        let (windows, four) = adaptive_four((4, 4), (2, 2));
        let four = four.unwrap();
        let mut x = vec![bf16::ZERO; 16];
        x[0] = bf16::from_f32(1.5 * 2f32.powi(-126));
        x[1] = bf16::from_f32(-(2f32.powi(-126)));
        x[4] = bf16::from_f32(2f32.powi(-120));
        // SAFETY: reads and then sets this thread's MXCSR: only flush-to-zero (bit 15) is
        // added, and the saved value is restored before anything else runs on this thread.
        let saved = unsafe { _mm_getcsr() };
        unsafe { _mm_setcsr(saved | 0x8000) };
        let (mut fast, mut reference) = ([bf16::ZERO; 4], [bf16::ZERO; 4]);
        four.avg_planes_using(&x, &mut fast, |_, _| panic!("one plane never goes back"), true);
        four.plane_in_order(&x, &mut reference);
        // SAFETY: as above.
        unsafe { _mm_setcsr(saved) };
        assert_eq!(fast.map(bf16::to_bits), reference.map(bf16::to_bits), "{windows:?}");
    }

    /// The kernel's masked loads and stores stay inside the planes: the input and the output
    /// each end where an inaccessible page begins, for every plane of at most 64 elements
    /// pooled to 2x2, with plane counts that leave partial groups and partial quads. A full
    /// 64-byte load or store past the last plane would fault.
    #[test]
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    fn loads_and_stores_stay_inside_the_planes() {
        if !kernel_present() {
            return;
        }
        // SAFETY: sysconf has no preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap();
        // Pages: input, guard, output, guard.
        // SAFETY: a fresh private anonymous mapping; nothing else refers to it.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4 * page,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(base, libc::MAP_FAILED);
        let base = base.cast::<u8>();
        for guard in [1, 3] {
            // SAFETY: page `guard` lies inside the mapping made above.
            assert_eq!(unsafe { libc::mprotect(base.add(guard * page).cast(), page, libc::PROT_NONE) }, 0);
        }
        let mut cases = 0;
        for h in 2..=32 {
            for w in (2..=32).filter(|w| h * w <= 64) {
                let (windows, Some(four)) = adaptive_four((h, w), (2, 2)) else { continue };
                let plane = h * w;
                for planes in [1, 2, 3, 5, 16, 17, 22, 31].into_iter().filter(|p| 2 * p * plane <= page) {
                    let values = data(0, planes * plane, plane, (plane * 100 + planes) as u64);
                    let want: Vec<bf16> =
                        values.chunks(plane).flat_map(|p| windows.map(|win| in_order(p, w, win))).collect();
                    // SAFETY: both slices lie in the writable pages 0 and 2 and end exactly
                    // at the guard pages after them; bf16 has alignment 2 and every offset
                    // here is even; nothing else refers to the mapping while they live.
                    let (x, y) = unsafe {
                        let x = base.add(page - 2 * values.len()).cast::<bf16>();
                        let y = base.add(3 * page - 2 * want.len()).cast::<bf16>();
                        (
                            std::slice::from_raw_parts_mut(x, values.len()),
                            std::slice::from_raw_parts_mut(y, want.len()),
                        )
                    };
                    x.copy_from_slice(&values);
                    y.fill(bf16::from_f32(7.0));
                    four.avg_planes_using(x, y, |_, _| panic!("data 0 passes the check"), true);
                    assert_eq!(
                        y.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                        want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                        "{h}x{w}, {planes} planes"
                    );
                    cases += 1;
                }
            }
        }
        // SAFETY: the mapping made above; the slices into it are gone.
        assert_eq!(unsafe { libc::munmap(base.cast(), 4 * page) }, 0);
        assert!(cases > 300, "{cases}");
    }

    #[test]
    fn windows_it_cannot_take() {
        let one = ((1.0, 1.0), ((0, 1), (0, 1)));
        let four = |w: ((usize, usize), (usize, usize))| {
            FourWindows::new((9, 7), [w, one.1, one.1, one.1], [one.0; 4])
        };
        assert!(four(((0, 4), (0, 4))).is_some());
        assert!(four(((0, 5), (0, 4))).is_none(), "20 taps");
        assert!(four(((2, 2), (0, 4))).is_none(), "empty");
        assert!(four(((0, 2), (0, 8))).is_none(), "outside the plane");
        assert!(FourWindows::new((9, 8), [one.1; 4], [one.0; 4]).is_none(), "72 elements");
    }
}
