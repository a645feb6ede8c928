//! Tiny NCHW planes pooled with each whole plane held in AVX-512 registers.
//!
//! The lane path ([`super::lanes`]) transposes eight planes so that one vector operation
//! serves eight planes. On a 7x7 plane with few outputs (2x2 stride-2 max: 9 outputs of 4
//! taps) the two transposes are most of its time. A plane of at most 64 elements fits in four
//! AVX-512 registers, so here each tap is one gather *between registers* instead: for up to
//! 16 outputs at once, a precomputed index vector names the plane element that tap `j` of
//! each output reads, and two `vpermt2ps` (elements 0-31 and 32-63) and a blend fetch them.
//! Outputs then go out with one masked store, in plane order. Nothing is transposed. Four
//! planes go through at once, so that four independent chains of updates overlap.
//!
//! The taps of each output are visited in PyTorch's order (h, then w), skipping taps in the
//! padding (their masks are clear), so every output gets exactly the scalar loop's result:
//! the same additions in the same order, then the same divisions; or the same max rule
//! (`v > max || isnan(v)`, from -inf, the first in-plane tap's index when none is taken).
//!
//! It pays where outputs per plane are few, so that a 16-lane gather is mostly used, and taps
//! per output are few: [`Tables::pays`] says where, from timings on Zen 4 (see
//! docs/BENCHMARKS-HISTORY.md).

use super::lanes::{LanePlane, LaneWindow};
use crate::dtype::FloatElement;

/// Planes of at most this many elements fit the four registers.
pub(crate) const MAX_PLANE: usize = 64;

/// Planes pooled together, each in its own four registers.
const PLANE_GROUP: usize = 4;

/// Whether the register path can pool `U` planes of `plane` elements into `T` on this CPU.
pub(crate) fn applies<U: FloatElement, T: FloatElement>(plane: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        (1..=MAX_PLANE).contains(&plane)
            && super::simd::avx2_tile_kind::<U>().is_some()
            && super::simd::avx2_tile_kind::<T>().is_some()
            && cpu_has_it()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = plane;
        false
    }
}

/// Whether the CPU runs this path at all (AVX-512 F and BW): elsewhere its tables are not
/// built (building them took 4% of a 1x512x7x7 -> 2x2 average's profile on Zen 3).
pub(crate) fn cpu_has_it() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        super::simd::has_avx512()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The plane indices of a window's taps that lie inside the plane, in (h, w) order.
fn in_plane_taps<'a>(layout: &'a LanePlane, w: &'a LaneWindow) -> impl Iterator<Item = i32> + 'a {
    w.plane_rows(layout)
        .flat_map(move |ih| w.plane_cols(layout).map(move |iw| (ih * layout.width + iw) as i32))
}

/// Tap slot `j` of up to 16 outputs: the plane element each output reads (`index`), which
/// outputs have a `j`-th in-plane tap (`valid`), and which read elements 32-63 (`high`).
#[derive(Clone, Copy)]
#[repr(C, align(64))] // `index` is read with one aligned 64-byte load
struct TapSlot {
    index: [i32; 16],
    valid: u16,
    high: u16,
}

/// Up to 16 consecutive outputs: their tap slots, `first` (max's index when no tap is taken),
/// the two divisors of an average, and which lanes are outputs (`lanes`).
struct OutputChunk {
    slots: Vec<TapSlot>,
    first: [i32; 16],
    div: ([f32; 16], [f32; 16]),
    divides_twice: bool,
    lanes: u16,
}

/// The register path's tables for one plane shape and its windows, built once per op.
pub(crate) struct Tables {
    plane: usize,
    out_plane: usize,
    chunks: Vec<OutputChunk>,
}

impl Tables {
    /// The tables, where planes of this layout fit the registers (and every window steps
    /// forward).
    pub(crate) fn new(layout: &LanePlane, windows: &[LaneWindow]) -> Option<Self> {
        let plane = layout.height * layout.width;
        let stepped = windows.iter().all(|w| w.h.2 >= 1 && w.w.2 >= 1);
        if !(1..=MAX_PLANE).contains(&plane) || windows.is_empty() || !stepped {
            return None;
        }
        let chunks = windows.chunks(16).map(|chunk| output_chunk(layout, chunk)).collect();
        Some(Tables { plane, out_plane: windows.len(), chunks })
    }

    /// Whether the register path is expected to beat the lane path for these windows: where
    /// at least half of the gathered lanes are taps (each slot gathers 16 lanes for however
    /// many of its outputs have that tap). Measured on Zen 4, one core, 1x2048x7x7 planes: 2x2
    /// stride-2 max (56% of lanes used) 1.4x faster here, 3x3 stride-2 averages (84%) 1.5x-2x,
    /// 3x3 stride-1 (63%) 1.2x-1.7x; adaptive 7x7 -> 2x2 (25%) 0.5x-0.9x, so it stays in lanes.
    pub(crate) fn pays(&self) -> bool {
        let slots = self.chunks.iter().map(|chunk| chunk.slots.len()).sum::<usize>();
        let taps = self
            .chunks
            .iter()
            .flat_map(|chunk| &chunk.slots)
            .map(|s| s.valid.count_ones() as usize)
            .sum::<usize>();
        16 * slots <= 2 * taps
    }
}

fn output_chunk(layout: &LanePlane, chunk: &[LaneWindow]) -> OutputChunk {
    // Slot `j` takes each output's next tap, until no output has one left.
    let mut taps: Vec<_> = chunk.iter().map(|w| in_plane_taps(layout, w)).collect();
    let mut slots = Vec::new();
    loop {
        let mut slot = TapSlot { index: [0; 16], valid: 0, high: 0 };
        for (o, taps) in taps.iter_mut().enumerate() {
            if let Some(at) = taps.next() {
                slot.index[o] = at;
                slot.valid |= 1 << o;
                if at >= 32 {
                    slot.high |= 1 << o;
                }
            }
        }
        if slot.valid == 0 {
            break;
        }
        slots.push(slot);
    }
    let (mut first, mut div) = ([0; 16], ([1.0; 16], [1.0; 16]));
    for (o, w) in chunk.iter().enumerate() {
        first[o] = w.first;
        (div.0[o], div.1[o]) = w.div;
    }
    OutputChunk {
        slots,
        first,
        div,
        divides_twice: chunk.iter().any(|w| w.div.1 != 1.0),
        lanes: ((1u32 << chunk.len()) - 1) as u16,
    }
}

/// Pools whole planes `xs` into `ys` (and `is` with `WITH_INDEX`) as the windows `tables` was
/// built from say, as [`super::lanes::pool_planes`] does and with the same bits. Returns
/// `false`, having written nothing, where [`applies`] is false or `is` is short.
pub(crate) fn pool_planes<U: FloatElement, T: FloatElement, const MAX: bool, const WITH_INDEX: bool>(
    tables: &Tables,
    xs: &[U],
    ys: &mut [T],
    is: &mut [i64],
) -> bool {
    let Tables { plane, out_plane, ref chunks } = *tables;
    if !applies::<U, T>(plane) {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    {
        let (Some(in_kind), Some(kind)) =
            (super::simd::avx2_tile_kind::<U>(), super::simd::avx2_tile_kind::<T>())
        else {
            return false;
        };
        // A window whose taps all lie in the padding has no valid slot: its lanes keep the
        // starting value (a max of -inf at `first`, a sum of 0), as in the scalar loop.
        let planes = (xs.len() / plane).min(ys.len() / out_plane);
        if WITH_INDEX && is.len() < planes * out_plane {
            return false;
        }
        let mut p = 0;
        while p < planes {
            // Four planes at a time: each tap's update depends on the previous one (a compare
            // into a mask, then a masked move; or an addition), so one plane alone waits on
            // that chain; four independent ones keep the vector units busy.
            let group = if planes - p >= PLANE_GROUP { PLANE_GROUP } else { 1 };
            // SAFETY: `applies` found AVX-512 F/BW and that `U`, `T` are the f32, bf16 or f16
            // named by `in_kind`, `kind`; planes `p..p + group` of `xs` have `plane <= 64`
            // elements each and of `ys` (and `is`) `out_plane` (`p + group <= planes`,
            // bounded by both lengths above); every slot's indices are below `plane`
            // (`in_plane_taps`), and chunk `c` covers outputs `16c..`, of which `lanes` marks
            // those below `out_plane`.
            unsafe {
                let planes = avx512::Planes {
                    in_kind,
                    x: xs.as_ptr().add(p * plane).cast(),
                    plane,
                    kind,
                    y: ys.as_mut_ptr().add(p * out_plane).cast(),
                    out_plane,
                    index: if WITH_INDEX { is.as_mut_ptr().add(p * out_plane) } else { std::ptr::null_mut() },
                };
                if group == PLANE_GROUP {
                    avx512::pool_planes::<MAX, WITH_INDEX, PLANE_GROUP>(planes, chunks);
                } else {
                    avx512::pool_planes::<MAX, WITH_INDEX, 1>(planes, chunks);
                }
            }
            p += group;
        }
        true
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (xs, ys, is, chunks, out_plane);
        false
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::OutputChunk;
    use crate::cpu::simd::TileKind;
    use std::arch::x86_64::*;

    /// Sixteen bf16 as the exact f32. A function, not a closure: closures do not inherit the
    /// caller's target features.
    #[inline(always)]
    unsafe fn widen(h: __m256i) -> __m512 {
        _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h)))
    }

    /// Consecutive planes at `x` (`plane <= 64` elements of `in_kind` each) and their outputs
    /// at `y` (`out_plane` of `kind` per plane) and, for max with indices, `index`.
    #[derive(Clone, Copy)]
    pub(super) struct Planes {
        pub(super) in_kind: TileKind,
        pub(super) x: *const u8,
        pub(super) plane: usize,
        pub(super) kind: TileKind,
        pub(super) y: *mut u8,
        pub(super) out_plane: usize,
        pub(super) index: *mut i64,
    }

    /// The first `P` of `planes` pooled (chunk `c`'s outputs at `16c` of each plane's).
    ///
    /// # Safety
    /// AVX-512 F and BW; `x` readable for `P * plane` elements; `y` (and `index` with
    /// `WITH_INDEX`) writable for `P * out_plane`; chunks whose `lanes` mark outputs below
    /// `out_plane` only; every slot index below `plane`.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub(super) unsafe fn pool_planes<const MAX: bool, const WITH_INDEX: bool, const P: usize>(
        planes: Planes,
        chunks: &[OutputChunk],
    ) {
        let Planes { in_kind, x, plane, kind, y, out_plane, index } = planes;
        // r[q][k] holds elements 16k..16k + 16 of plane q; elements past the plane are never
        // read (every index is below `plane`), and masked loads do not touch them.
        let mut r = [[_mm512_setzero_ps(); 4]; P];
        for (q, r) in r.iter_mut().enumerate() {
            match in_kind {
                TileKind::F32 => {
                    let x = x.cast::<f32>().add(q * plane);
                    for (k, r) in r.iter_mut().enumerate() {
                        let n = plane.saturating_sub(16 * k).min(16);
                        if n > 0 {
                            *r = _mm512_maskz_loadu_ps(((1u32 << n) - 1) as u16, x.add(16 * k));
                        }
                    }
                }
                TileKind::Bf16 | TileKind::F16 => {
                    let x = x.cast::<u16>().add(q * plane);
                    for pair in 0..2 {
                        let n = plane.saturating_sub(32 * pair).min(32);
                        if n > 0 {
                            let mask = if n == 32 { u32::MAX } else { (1u32 << n) - 1 };
                            let raw = _mm512_maskz_loadu_epi16(mask, x.add(32 * pair).cast());
                            let (low, high) =
                                (_mm512_castsi512_si256(raw), _mm512_extracti64x4_epi64::<1>(raw));
                            if in_kind == TileKind::F16 {
                                r[2 * pair] = _mm512_cvtph_ps(low);
                                r[2 * pair + 1] = _mm512_cvtph_ps(high);
                            } else {
                                r[2 * pair] = widen(low);
                                r[2 * pair + 1] = widen(high);
                            }
                        }
                    }
                }
            }
        }
        let two_halves = plane > 32;
        for (c, chunk) in chunks.iter().enumerate() {
            let mut acc = [_mm512_set1_ps(if MAX { f32::NEG_INFINITY } else { 0.0 }); P];
            let mut at = [_mm512_setzero_si512(); P];
            if WITH_INDEX {
                at = [_mm512_loadu_si512(chunk.first.as_ptr().cast()); P];
            }
            for slot in &chunk.slots {
                let i = _mm512_load_si512(slot.index.as_ptr().cast());
                for q in 0..P {
                    let mut v = _mm512_permutex2var_ps(r[q][0], i, r[q][1]);
                    if two_halves {
                        v = _mm512_mask_blend_ps(slot.high, v, _mm512_permutex2var_ps(r[q][2], i, r[q][3]));
                    }
                    if MAX {
                        let take = _mm512_mask_cmp_ps_mask::<_CMP_GT_OQ>(slot.valid, v, acc[q])
                            | _mm512_mask_cmp_ps_mask::<_CMP_UNORD_Q>(slot.valid, v, v);
                        acc[q] = _mm512_mask_mov_ps(acc[q], take, v);
                        if WITH_INDEX {
                            at[q] = _mm512_mask_mov_epi32(at[q], take, i);
                        }
                    } else {
                        acc[q] = _mm512_mask_add_ps(acc[q], slot.valid, acc[q], v);
                    }
                }
            }
            for q in 0..P {
                let mut v = acc[q];
                if !MAX {
                    v = _mm512_div_ps(v, _mm512_loadu_ps(chunk.div.0.as_ptr()));
                    if chunk.divides_twice {
                        v = _mm512_div_ps(v, _mm512_loadu_ps(chunk.div.1.as_ptr()));
                    }
                }
                let at_out = q * out_plane + 16 * c;
                match kind {
                    TileKind::F32 => _mm512_mask_storeu_ps(y.cast::<f32>().add(at_out), chunk.lanes, v),
                    TileKind::F16 => {
                        let bits = _mm512_cvtepu16_epi32(_mm512_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v));
                        _mm512_mask_cvtepi32_storeu_epi16(
                            y.cast::<u16>().add(at_out).cast(),
                            chunk.lanes,
                            bits,
                        );
                    }
                    TileKind::Bf16 => {
                        let bits = _mm512_srli_epi32::<16>(crate::cpu::simd::avx512::bf16_in_high_half(v));
                        _mm512_mask_cvtepi32_storeu_epi16(
                            y.cast::<u16>().add(at_out).cast(),
                            chunk.lanes,
                            bits,
                        );
                    }
                }
                if WITH_INDEX {
                    let index = index.add(at_out);
                    let (low, high) = (chunk.lanes as u8, (chunk.lanes >> 8) as u8);
                    _mm512_mask_storeu_epi64(
                        index,
                        low,
                        _mm512_cvtepi32_epi64(_mm512_castsi512_si256(at[q])),
                    );
                    // Only where the chunk has outputs 8..16: past them `index + 8` could
                    // leave the buffer, and forming such a pointer is undefined even if a
                    // store through it is fully masked.
                    if high != 0 {
                        _mm512_mask_storeu_epi64(
                            index.add(8),
                            high,
                            _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64::<1>(at[q])),
                        );
                    }
                }
            }
        }
    }
}
