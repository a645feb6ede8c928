//! Runtime CPU-feature dispatch and the fast element conversions shared by the CPU kernels.
//!
//! The crate is compiled for baseline x86-64 (SSE2). Hot per-task functions are written once as
//! `#[inline(always)]` generic code and run through [`dispatch`], which calls them inside a
//! `#[target_feature(enable = "avx2,f16c")]` trampoline when the CPU has AVX2: LLVM inlines the body
//! there and vectorises it with 256-bit registers. Float additions are never reassociated or
//! contracted into FMAs without fast-math flags (and FMA is not enabled), so both paths perform
//! the same operations in the same order and give bit-identical results.

use crate::dtype::FloatElement;
use std::any::TypeId;

/// Runs `f`, compiled for AVX2 when the CPU supports it (see the module docs). `f` should be a
/// closure marked `#[inline(always)]` that calls `#[inline(always)]` code, so that the whole
/// body is inlined into the AVX2 trampoline.
#[inline(always)]
pub(crate) fn dispatch<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx2() {
            // SAFETY: the CPU supports AVX2 and F16C (checked just above), the only
            // requirement of calling a function compiled with `target_feature(enable =
            // "avx2,f16c")`.
            return unsafe { with_avx2(f) };
        }
    }
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,f16c")]
unsafe fn with_avx2<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// Whether the CPU has what every AVX2 kernel here is compiled for: AVX2, and F16C for f16
/// conversions (every AVX2 CPU has it, but a virtual machine may hide it). Without either, the
/// kernels take their portable paths.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn has_avx2() -> bool {
    std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("f16c")
}

/// Asks for every cache line of `data` to be brought into L1 (a hint: never faults).
#[inline(always)]
pub(crate) fn prefetch<T>(data: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        let (start, bytes) = (data.as_ptr().cast::<u8>(), std::mem::size_of_val(data));
        for off in (0..bytes).step_by(64) {
            // SAFETY: `off < bytes`, so the address is inside `data`; a prefetch has no other
            // effect than on the caches.
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(start.add(off).cast())
            };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = data;
}

/// Whether `T` is bf16 with an f32 accumulator, whose conversion is a 16-bit shift.
#[inline(always)]
pub(crate) fn is_bf16<T: FloatElement>() -> bool {
    TypeId::of::<T>() == TypeId::of::<half::bf16>() && TypeId::of::<T::Acc>() == TypeId::of::<f32>()
}

/// Whether `T` is f16 with an f32 accumulator, converted by F16C in the AVX2 kernels.
#[inline(always)]
pub(crate) fn is_f16<T: FloatElement>() -> bool {
    TypeId::of::<T>() == TypeId::of::<half::f16>() && TypeId::of::<T::Acc>() == TypeId::of::<f32>()
}

/// Converts `src` to the accumulator type into `out` (same length). bf16 is widened inline by
/// a shift of its bits (exact, vectorises, inlines into the AVX2 path); f16 by F16C where the
/// CPU has AVX2 and F16C ([`avx2::widen_f16`]), else through `half`'s slice conversion, whose
/// F16C loop calls a function per eight values (a quarter of an f16 NCHW max pooling's time);
/// f32/f64 copy.
#[inline(always)]
pub(crate) fn block_to_acc<T: FloatElement>(src: &[T], out: &mut [T::Acc]) {
    #[cfg(target_arch = "x86_64")]
    if is_f16::<T>() && has_avx2() {
        let n = src.len().min(out.len());
        // SAFETY: `T` is f16 (checked by `TypeId`), a `#[repr(transparent)]` u16, and
        // `T::Acc` is f32 (checked), so the casts keep pointers, lengths and validity; `src`
        // and `out` are distinct borrows; AVX2 and F16C were detected just above.
        unsafe { avx2::widen_f16(src.as_ptr().cast::<u16>(), out.as_mut_ptr().cast::<f32>(), n) };
        return;
    }
    if is_bf16::<T>() {
        // SAFETY: `T` is bf16 (checked by `TypeId`), a `#[repr(transparent)]` u16, so `src` is
        // a valid `[u16]` of the same length; `T::Acc` is f32 (checked), so `out` is a valid
        // `&mut [f32]` of the same length, and it does not alias `src` (distinct borrows).
        let (bits, out) = unsafe {
            (
                std::slice::from_raw_parts(src.as_ptr().cast::<u16>(), src.len()),
                std::slice::from_raw_parts_mut(out.as_mut_ptr().cast::<f32>(), out.len()),
            )
        };
        for (o, &b) in out.iter_mut().zip(bits) {
            *o = f32::from_bits(u32::from(b) << 16);
        }
    } else {
        T::block_to_acc(src, out);
    }
}

/// Whether the paths that read `T` through [`load`], element by element, are the fast ones
/// for `T` (f32, f64: no conversion; bf16: a shift). Not for f16: its `load` is integer code
/// (about ten operations a value), and its kernels run faster on blocks widened by F16C
/// ([`block_to_acc`]) or on the explicit AVX2 tiles ([`avx2_tile_kind`]); sent down the
/// per-element paths, f16's narrow-channel GAP ran at 0.30x.
#[inline(always)]
pub(crate) fn converts_inline<T: FloatElement>() -> bool {
    TypeId::of::<T>() == TypeId::of::<T::Acc>() || is_bf16::<T>()
}

/// One element converted to the accumulator type; exact. Fast for the types of
/// [`converts_inline`].
#[inline(always)]
pub(crate) fn load<T: FloatElement>(v: T) -> T::Acc {
    if is_bf16::<T>() {
        // SAFETY: `T` is bf16 (checked by `TypeId`), a `#[repr(transparent)]` u16, and
        // `T::Acc` is f32 (checked), so both copies reinterpret values of the same size.
        unsafe {
            let bits: u16 = std::mem::transmute_copy(&v);
            std::mem::transmute_copy(&f32::from_bits(u32::from(bits) << 16))
        }
    } else if is_f16::<T>() {
        // SAFETY: `T` is f16 (checked by `TypeId`), a `#[repr(transparent)]` u16, and
        // `T::Acc` is f32 (checked), so both copies reinterpret values of the same size.
        unsafe {
            let bits: u16 = std::mem::transmute_copy(&v);
            std::mem::transmute_copy(&f16_bits_to_f32(bits))
        }
    } else {
        v.to_acc()
    }
}

/// An f16's bits widened to f32, exactly (F. Giesen's `half_to_float`): integer operations,
/// selects and one subtraction, which LLVM vectorises, where `half`'s conversion is a call
/// that re-detects F16C for every value. NaN payloads are kept (not quieted, as `half` does;
/// no result depends on a payload).
#[inline(always)]
pub(crate) fn f16_bits_to_f32(h: u16) -> f32 {
    let h = u32::from(h);
    let magnitude = (h & 0x7fff) << 13;
    let exponent = magnitude & (0x1f << 23);
    // Rebias the exponent from 15 to 127; an all-ones exponent (inf, NaN) stays all ones.
    let normal = magnitude + ((127 - 15) << 23);
    let inf_or_nan = normal + ((128 - 16) << 23);
    // A subnormal m * 2^-24: give it the exponent of 2^-14 (implicit 1 included), then take
    // 2^-14 away again, exactly. Zero gives +0.
    let subnormal = (f32::from_bits(magnitude + (113 << 23)) - f32::from_bits(113 << 23)).to_bits();
    let bits = if exponent == 0x1f << 23 {
        inf_or_nan
    } else if exponent == 0 {
        subnormal
    } else {
        normal
    };
    f32::from_bits(bits | ((h & 0x8000) << 16))
}

/// An accumulator value rounded once to `T`, exactly as `T::from_acc`. bf16 and f16 are
/// rounded inline (to nearest even; bf16 keeps NaN quiet as `bits >> 16 | 0x40`, as `half`
/// does; f16 see [`f32_to_f16_bits`]), branch-free so that stores of many channels vectorise;
/// other types use `T::from_acc`.
#[inline(always)]
pub(crate) fn store<T: FloatElement>(v: T::Acc) -> T {
    if is_f16::<T>() {
        // SAFETY: `T::Acc` is f32 and `T` is f16, a `#[repr(transparent)]` u16 (both checked by
        // `is_f16`), so both copies reinterpret values of the same size.
        return unsafe {
            let f: f32 = std::mem::transmute_copy(&v);
            std::mem::transmute_copy(&f32_to_f16_bits(f))
        };
    }
    if is_bf16::<T>() {
        // SAFETY: `T::Acc` is f32 and `T` is bf16, a `#[repr(transparent)]` u16 (both checked by
        // `is_bf16`), so both copies reinterpret values of the same size.
        unsafe {
            let f: f32 = std::mem::transmute_copy(&v);
            let x = f.to_bits();
            let rounded = (x.wrapping_add(0x7fff + ((x >> 16) & 1)) >> 16) as u16;
            let quiet = ((x >> 16) | 0x40) as u16;
            let bits = if f.is_nan() { quiet } else { rounded };
            std::mem::transmute_copy(&bits)
        }
    } else {
        T::from_acc(v)
    }
}

/// `dst[i] = store::<T>(src[i])` over the shorter of the two: a slice of accumulators rounded
/// once to `T`. For bf16 on CPUs with AVX-512 BF16 this is `vcvtne2ps2bf16`, 32 values an
/// instruction, where the scalar form compiles to about a dozen AVX2 operations per eight
/// (compare, shifts, adds, `vpblendvb`, packs): that loop was a quarter of the channels-last
/// bf16 max backward's time on the Emerald Rapids VM. The instruction rounds to nearest even
/// and quiets NaN as `store` does, but flushes subnormal inputs to zero, so a block of 32
/// holding one takes the scalar form.
#[inline(always)]
pub(crate) fn store_slice<T: FloatElement>(dst: &mut [T], src: &[T::Acc]) {
    #[cfg(target_arch = "x86_64")]
    if is_bf16::<T>() && bf16_convert_allowed() {
        let n = dst.len().min(src.len());
        // SAFETY: `is_bf16` checked that `T` is bf16 (a `#[repr(transparent)]` u16) and
        // `T::Acc` is f32, so both views reinterpret `n` elements of the same size and
        // alignment; `bf16_convert_allowed` checked the CPU features the function needs.
        unsafe {
            let d = std::slice::from_raw_parts_mut(dst.as_mut_ptr().cast::<u16>(), n);
            let s = std::slice::from_raw_parts(src.as_ptr().cast::<f32>(), n);
            avx512::store_bf16_slice(d, s);
        }
        return;
    }
    for (d, &a) in dst.iter_mut().zip(src) {
        *d = store::<T>(a);
    }
}

/// `store::<bf16>` of one f32, as bits.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn bf16_bits(f: f32) -> u16 {
    store::<half::bf16>(f).to_bits()
}

/// Whether [`store_slice`] may use AVX-512 BF16 (and tests have not asked for the AVX2 paths).
#[cfg(target_arch = "x86_64")]
fn bf16_convert_allowed() -> bool {
    avx512_allowed() && std::is_x86_feature_detected!("avx512bf16")
}

/// `f` rounded to f16 to nearest even, as `half::f16::from_f32` rounds (F. Giesen's
/// `float_to_half_fast3_rtne`), with integer operations, selects and one addition, all of
/// which LLVM vectorises: `half`'s conversion is a call that re-detects F16C for every value,
/// which was 40% of an f16 NCHW average pooling's time. Every NaN becomes the quiet NaN 0x7e00
/// with `f`'s sign (`half` keeps some payload bits; no result depends on a payload).
#[inline(always)]
pub(crate) fn f32_to_f16_bits(f: f32) -> u16 {
    // 2^16 and above round to infinity.
    const F16_MAX_EXCLUSIVE: u32 = (127 + 16) << 23;
    // 2^-14, f16's smallest normal.
    const SMALLEST_NORMAL: u32 = 113 << 23;
    // 0.5: adding it to a magnitude below 2^-14 rounds the magnitude (to nearest even, in the
    // FPU) to a multiple of 2^-24, f16's subnormal step, and leaves that multiple in the low
    // bits of the sum.
    const DENORM_MAGIC: u32 = ((127 - 15) + (23 - 10) + 1) << 23;
    // The exponent rebiased from 127 to 15, plus half an f16 ulp less one.
    const REBIAS_AND_HALF: u32 = (15u32.wrapping_sub(127) << 23).wrapping_add(0xfff);
    let bits = f.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let magnitude = bits & 0x7fff_ffff;
    let inf_or_nan: u32 = if magnitude > 0x7f80_0000 { 0x7e00 } else { 0x7c00 };
    let subnormal =
        (f32::from_bits(magnitude) + f32::from_bits(DENORM_MAGIC)).to_bits().wrapping_sub(DENORM_MAGIC);
    // Normal: rebias, round up from half an ulp (ties up only when the kept mantissa is odd,
    // that is to even), and drop the 13 extra mantissa bits.
    let odd = (magnitude >> 13) & 1;
    let normal = magnitude.wrapping_add(REBIAS_AND_HALF).wrapping_add(odd) >> 13;
    let out = if magnitude >= F16_MAX_EXCLUSIVE {
        inf_or_nan
    } else if magnitude < SMALLEST_NORMAL {
        subnormal
    } else {
        normal
    };
    out as u16 | sign
}

/// The element types the explicit AVX2 channel-tile kernels handle, all with an f32
/// accumulator: f32; bf16 (widened by a shift, rounded by [`store`]'s rule); f16 (widened and
/// rounded to nearest even by F16C, as `half` rounds).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum TileKind {
    F32,
    Bf16,
    F16,
}

impl TileKind {
    /// Bytes per element.
    #[inline(always)]
    pub(crate) fn bytes(self) -> usize {
        match self {
            TileKind::F32 => 4,
            TileKind::Bf16 | TileKind::F16 => 2,
        }
    }
}

/// The [`TileKind`] of `T`, when `T` has one and the CPU has AVX2 and F16C ([`has_avx2`]);
/// `None` sends the caller to its portable path.
#[inline(always)]
pub(crate) fn avx2_tile_kind<T: FloatElement>() -> Option<TileKind> {
    #[cfg(target_arch = "x86_64")]
    {
        if !has_avx2() {
            return None;
        }
        if is_bf16::<T>() {
            return Some(TileKind::Bf16);
        }
        if is_f16::<T>() {
            return Some(TileKind::F16);
        }
        if TypeId::of::<T>() == TypeId::of::<f32>() && TypeId::of::<T::Acc>() == TypeId::of::<f32>() {
            return Some(TileKind::F32);
        }
    }
    None
}

/// One channels-last window, described for [`max_window`]: the image's row width and channel
/// count, and the taps `h0..h1` step `dh`, `w0..w1` step `dw` (none for a dilated max window
/// that holds no input element).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ChannelWindow {
    pub(crate) width: usize,
    pub(crate) c: usize,
    pub(crate) h: (usize, usize, usize),
    pub(crate) w: (usize, usize, usize),
}

impl ChannelWindow {
    /// The pixel (`h0 * width + w0`) of the window's first tap: where a max starts, and the
    /// index PyTorch gives a window none of whose taps is taken.
    #[inline(always)]
    pub(crate) fn first_pixel(&self) -> usize {
        self.h.0 * self.width + self.w.0
    }
}

/// Outputs of at least this many bytes are written with non-temporal stores.
const STREAM_MIN_BYTES: usize = 4 << 20;

/// Whether the separable channels-last average ([`divide_row_sums`]) should write `y` with
/// non-temporal (streaming) stores: an f32 output as large as its input, written once, would
/// otherwise be read into the cache line by line before each write (read-for-ownership) and
/// evict the input. Measured through `cupool bench` (3x3 stride 1, best of three interleaved
/// runs): 1.36x on the 12.8 MB output of the 112x112 map, 1.37x on the long rows' 8 MB, 1.08x
/// on the seed's 201 MB; but 0.85x on a 2 MB output that stays in cache (hence the
/// threshold) and 0.78x to 1.04x for bf16 outputs. (The direct kernels' stride-2 outputs
/// measured 0.85x to 0.96x this way in an earlier round; they now stream under their own
/// rule, [`streams_window_output`], which measured faster for both types.) The stores are 16
/// bytes wide, so `y` must be 16-byte aligned (every host allocation is; a slice at an odd
/// offset is not).
pub(crate) fn streams_output<T: 'static>(y: &[T]) -> bool {
    std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>() && large_and_aligned(y)
}

/// What every streamed output needs: [`STREAM_MIN_BYTES`] or more, 16-byte aligned (the
/// non-temporal stores are 16 bytes wide).
fn large_and_aligned<T>(y: &[T]) -> bool {
    std::mem::size_of_val(y) >= STREAM_MIN_BYTES && (y.as_ptr() as usize).is_multiple_of(16)
}

/// One output's window for [`pool_windows`]: taps `h0..h1` step `dh`, `w0..w1` step `dw` (at
/// least one tap for averages; a dilated max window may hold none, and gives -inf with the
/// index of (`h0`, `w0`), as PyTorch) and, for averages, the divisors (see [`pool_windows`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct OutputWindow {
    pub(crate) h: (usize, usize, usize),
    pub(crate) w: (usize, usize, usize),
    pub(crate) divisors: (f32, f32),
}

/// The op [`pool_windows`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WindowOp {
    Avg,
    Max,
    /// `wide`: in AVX-512 registers ([`wide_indexed_max`]).
    MaxWithIndex {
        wide: bool,
    },
}

/// Max pooling of channels `0..c_end` (`c_end` a multiple of 8) of one channels-last window
/// with PyTorch's rule (-inf start, the first tap's index, `take = v > max || isnan(v)` in tap
/// order h then w), in AVX2 registers: the max and the plane index (as i32 lanes, selected on
/// the same mask) of 32 channels at a time, then 8; indices widened to i64 only at the store.
///
/// # Safety
/// `kind` must be [`avx2_tile_kind`] of the element type of `image` and `y` (so AVX2 is
/// present); `image` must point to the whole image (`H * width * c` elements, every tap in
/// bounds), `y` to `c_end` writable elements, and `index` (when `WITH_INDEX`) to `c_end`
/// writable i64; the plane `H * width` must fit in i32.
#[cfg(target_arch = "x86_64")]
pub(crate) unsafe fn max_window<const WITH_INDEX: bool>(
    kind: TileKind,
    image: *const u8,
    win: ChannelWindow,
    c_end: usize,
    y: *mut u8,
    index: *mut i64,
) {
    // SAFETY: forwarded from this function's contract (AVX2 present, pointers valid).
    unsafe { avx2::max_window::<WITH_INDEX>(kind, image, win, c_end, y, index) }
}

/// f32 averages pool every window of an output row over this many channels (2 KiB of each
/// pixel) before the next channels, not all of a window's channels before the next window:
/// the row's windows then share their taps in L1 (a 3x3 stride-2 row reads three input rows
/// of seven 2 KiB pixels, 42 KiB, where whole 8 KiB pixels left each window's taps to L2).
/// Same operations per channel, so the same bits. Measured on the Zen 4 VM with one scratch
/// binary switched by an environment variable, then the release binaries before and after
/// alternating (median times), 3x3 stride 2, f32: the ResNet tail (16x2048x7x7) 1.05x to
/// 1.15x (p10 94 -> 82 to 90 us), the EfficientNet tail (8x1280x7x7) 1.13x to 1.27x, batch 1
/// 1.07x to 1.11x in four alternations of five (0.82x in one, across a change of the VM's
/// speed); 256 channels was slower than 512 on the ResNet tail, and max (with indices or not)
/// and bf16 averages (AVX-512 blocks) measured 0.9x to 1.0x chunked, so they keep whole
/// pixels. On the Emerald Rapids VM (one scratch binary switching it, alternating in one
/// process): the ResNet tail 1.03x to 1.06x, batch 1 1.03x to 1.04x, the EfficientNet tail
/// 1.00x to 1.02x, so every CPU chunks. Stride-1 averages are separable and do not come here.
#[cfg(target_arch = "x86_64")]
const AVG_F32_CHUNK_CHANNELS: usize = 512;

/// Channels from which [`line_aligned_blocks`] splits (1 KiB f32, 512 B bf16 pixels).
#[cfg(target_arch = "x86_64")]
const SPLIT_MIN_CHANNELS: usize = 256;

/// Pools channels `0..c_end` (a multiple of 8) of each of `windows` of one channels-last
/// image (`width` pixels of `c` elements per row). Averages: per channel `((0 + t0) + t1) +
/// ...` over the taps in PyTorch's order (h, then w), divided by `divisors.0`, then by
/// `divisors.1` unless it is 1 (adaptive pooling divides twice, by `kh` and `kw`, as PyTorch
/// does; a division by 1 is exact, so it is skipped), rounded once: the same operations in
/// the same order as the portable tiles, so the same bits. Max as [`max_window`]. Output `i` goes to element `i * c` of `y` (and
/// of `index`, with indices). One call per output row, so that the loop over outputs runs
/// inside AVX2 code: per-output calls and window arithmetic cost as much as the taps on
/// narrow or few channels. On narrow pixels (under 32 vector channels) runs of windows with
/// the same taps are pooled side by side ([`avx2::narrow_group`]). On wide pixels the
/// channels are split at the first 64-byte line
/// ([`line_aligned_blocks`]), so that the loads of the rest are aligned. With `stream`
/// ([`streams_window_output`]), averages and max without indices write `y` with
/// non-temporal stores and end with a store fence; not where the blocks run in AVX-512
/// registers, which keep their ordinary stores. With `prefetch`
/// ([`prefetches_window_input`]), the windows go in runs, each run asking for the input of
/// the windows a little further on.
///
/// # Safety
/// As [`max_window`] for every window, with `y` (and `index` for [`WindowOp::MaxWithIndex`])
/// writable for `windows.len() * c` elements; with `stream`, `y` 16-byte aligned and `c` a
/// multiple of 8; with `WindowOp::MaxWithIndex { wide: true }`, the CPU has AVX-512 F, BW and
/// VL (as [`wide_indexed_max`] checks).
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn pool_windows(
    kind: TileKind,
    op: WindowOp,
    (image, prefetch): (*const u8, bool),
    (width, c): (usize, usize),
    windows: &[OutputWindow],
    c_end: usize,
    (y, stream): (*mut u8, bool),
    index: *mut i64,
) {
    if prefetch {
        let elem = kind.bytes();
        for first in (0..windows.len()).step_by(PREFETCH_RUN_WINDOWS) {
            let run = &windows[first..(first + PREFETCH_RUN_WINDOWS).min(windows.len())];
            let ahead = windows.get(first + PREFETCH_AHEAD_WINDOWS..).unwrap_or_default();
            let ahead = &ahead[..ahead.len().min(PREFETCH_RUN_WINDOWS)];
            // SAFETY: `ahead` and `run` are some of `windows`, which lie inside the image (this
            // call's contract); `run`'s outputs are outputs `first..` of `windows`, elements
            // `first * c..` of `y` and (with indices) of `index`, writable by the contract;
            // `y` moves by whole outputs of `c` elements, so a streamed `y` stays 16-byte
            // aligned (`c` a multiple of 8); the rest is this call's contract.
            unsafe {
                prefetch_window_inputs(image, (width, c * elem), ahead);
                let index = if index.is_null() { index } else { index.add(first * c) };
                pool_windows(
                    kind,
                    op,
                    (image, false),
                    (width, c),
                    run,
                    c_end,
                    (y.add(first * c * elem), stream),
                    index,
                )
            };
        }
        return;
    }
    let (wide, with_index) = match op {
        WindowOp::MaxWithIndex { wide } => (wide, true),
        _ => (wide_blocks(kind), false),
    };
    let stream = stream && !wide && !with_index;
    let elem = kind.bytes();
    // Channels `c0..c0 + n` of every window: the same windows over an image and outputs that
    // start `c0` channels later (every channel is pooled on its own, so any split of the
    // channels gives the same bits).
    let blocks = |c0: usize, n: usize| {
        let (image, y) = (image.add(c0 * elem), y.add(c0 * elem));
        let index = if with_index { index.add(c0) } else { index };
        // SAFETY: forwarded from this function's contract (channels `c0..c0 + n` lie within
        // `0..c_end`: `line_aligned_blocks` ranges, `c0` and `n` multiples of 8, so streamed
        // stores stay 16-byte aligned); the wide entry only where the CPU has AVX-512 F, BW
        // and VL (checked by `wide_blocks`, or by `wide_indexed_max` for the caller's `wide`).
        unsafe {
            if wide {
                avx2::pool_windows_wide(kind, op, image, (width, c), windows, n, y, index)
            } else {
                avx2::pool_windows(kind, op, image, (width, c), windows, n, (y, stream), index)
            }
        }
    };
    let chunk =
        if op == WindowOp::Avg && kind == TileKind::F32 { AVG_F32_CHUNK_CHANNELS } else { usize::MAX };
    for (c0, n) in line_aligned_blocks(image, elem, c_end) {
        // Sub-ranges of `chunk` channels (multiples of 8 from `c0`, so the contract above
        // still holds for each).
        let mut done = 0;
        while done < n {
            let m = chunk.min(n - done);
            blocks(c0 + done, m);
            done += m;
        }
    }
    if stream {
        // Non-temporal stores are weakly ordered: fence them before the caller's threads
        // join and the output is read.
        // SAFETY: SSE is part of x86_64.
        unsafe { std::arch::x86_64::_mm_sfence() };
    }
}

/// Whether the channels-last window kernels ([`pool_windows`]) prefetch their input (an
/// image of `input_bytes` in all) a few windows ahead: inputs of
/// [`super::STREAMING_INPUT_BYTES`] or more, which stream from memory, where consecutive output rows share input rows
/// (`window_rows > stride`, 3x3 stride 2). Measured on the 2-vCPU AMD Zen 5 VM, channels-last
/// 32x96x128x128 (100 MB in bf16, 201 MB in f32, past its 32 MiB L3), both forms alternating
/// in one process (nine rounds of 0.25 s each, median of the rounds' medians): 3x3 stride-2
/// average 1.04x to 1.15x in bf16 and 1.13x in f32, max 1.21x and 1.07x, max with indices
/// 1.22x and 1.03x. Without them one core ran the bf16 average at about 11 GB/s from memory,
/// in the direct and the separable forms alike, against 23 GB/s for the same input's GAP
/// and 27 GB/s for the same average on an input in L3. Windows that do not share rows (2x2
/// stride 2) stream each input row once, which the hardware prefetchers follow: the hints
/// cost them 0.93x to 0.95x. Pixels of at least 32 channels (`c`) only, as measured: the
/// narrow ones pool runs of 8 windows side by side ([`avx2::narrow_group`]), which the
/// prefetching runs would cut at each row's first, clipped window.
///
/// Only on AMD Zen 5 and later ([`is_amd_zen5_or_later`]), where this was measured. Earlier
/// forms measured no better elsewhere (BENCHMARKS-HISTORY.md's index): on the Intel VM, a
/// hint per window 2048 bytes on ran the quick seed's bf16 average 0.90x to 1.08x (f32 1.04x
/// to 1.12x), and on a Zen 4 VM hints of later windows' taps, on every input, 0.65x to 0.92x.
#[cfg(target_arch = "x86_64")]
pub(crate) fn prefetches_window_input(
    input_bytes: usize,
    c: usize,
    window_rows: usize,
    stride: usize,
) -> bool {
    window_prefetch_rule(input_bytes, c, (window_rows, stride), is_amd_zen5_or_later())
}

/// [`prefetches_window_input`]'s rule on a CPU where the hints were measured faster or not.
#[cfg(target_arch = "x86_64")]
fn window_prefetch_rule(
    input_bytes: usize,
    c: usize,
    (window_rows, stride): (usize, usize),
    cpu_gains: bool,
) -> bool {
    cpu_gains && input_bytes >= super::STREAMING_INPUT_BYTES && c >= 32 && window_rows > stride
}

/// [`pool_windows`] with `prefetch` goes through its windows in runs of this many, each
/// run's input asked for [`PREFETCH_AHEAD_WINDOWS`] windows ahead (about 6 KiB of each input
/// row for 96 bf16 channels, stride 2). A first form in the average's caller, the bf16
/// average above against no hints: 16 ahead 1.10x to 1.32x in eight runs, 8 ahead 1.01x and
/// 1.19x, 24 ahead 1.04x and 1.18x, 32 ahead 1.13x and 1.17x.
#[cfg(target_arch = "x86_64")]
const PREFETCH_RUN_WINDOWS: usize = 8;
#[cfg(target_arch = "x86_64")]
const PREFETCH_AHEAD_WINDOWS: usize = 16;

/// Asks for the input pixels of `windows` (one run of an output row, so all with the same
/// rows) into L1: every row of the first window's taps, from the first window's first column
/// to the last window's end.
///
/// # Safety
/// Every window lies inside the image at `image`: `width` pixels of `pixel` bytes per row.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn prefetch_window_inputs(image: *const u8, (width, pixel): (usize, usize), windows: &[OutputWindow]) {
    let (Some(head), Some(tail)) = (windows.first(), windows.last()) else { return };
    let (w0, w1) = (head.w.0, tail.w.1.max(head.w.0));
    // Plain `while` loops rather than [`prefetch`] over each row's slice: the same hints
    // through `step_by` iterators ran the seed's bf16 average 0.85x to 0.89x (four runs),
    // slower than none at all (not investigated further).
    let mut h = head.h.0;
    while h < head.h.1 {
        let (mut at, end) = ((h * width + w0) * pixel, (h * width + w1) * pixel);
        while at < end {
            // SAFETY: `at` is inside the window's row span, so inside the image; a prefetch
            // has no effect but on the caches.
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(image.add(at).cast())
            };
            at += 64;
        }
        h += head.h.2.max(1);
    }
}

/// Whether the channels-last window kernels ([`pool_windows`]) should write `y`, the output
/// of an op over `c` channels, with non-temporal stores: outputs of [`STREAM_MIN_BYTES`] and
/// more, 16-byte aligned, `c` a multiple of 8 (so every vector store is aligned and no
/// scalar tail shares their lines). An output a quarter of its input (3x3 or 2x2 stride 2)
/// that does not fit in the caches is otherwise read line by line before it is written.
/// Measured with both versions alternating call by call in one process, channels-last
/// 32x96x128x128 and 4x64x224x224 (6 to 50 MB outputs): 3x3 stride-2 averages 1.10x to 1.14x
/// in f32 and 1.02x to 1.07x in bf16, 3x3 stride-2 max 1.06x to 1.07x in f32 and 0.99x to
/// 1.03x in bf16; a 0.8 MB output that stays in cache measured 0.94x, hence the threshold.
/// Max with indices writes twice (bf16: four times) as many index bytes as values and keeps
/// ordinary stores (non-temporal index stores measured 0.90x to 1.10x).
#[cfg(target_arch = "x86_64")]
pub(crate) fn streams_window_output<T>(y: &[T], c: usize) -> bool {
    large_and_aligned(y) && c.is_multiple_of(8)
}

/// Channel ranges `(c0, n)` that cover `0..c_end` (a multiple of 8) so that the loads of all
/// but a few channels start on a 64-byte line of `image`. Inputs allocated by `malloc` start
/// 16 bytes past a line, and then every other 32-byte load (every 64-byte one) straddles two
/// lines: a 3x3 stride-2 f32 average on 2048 channels ran 1.15x faster from an aligned start.
/// So the channels up to the image's first line boundary go first, in one block of 8 (16 for
/// bf16: its AVX2 tiles load 16) channels or two, then the rest from the boundary, and the
/// last few again with a block that ends at `c_end` (empty where none are left); overlapping
/// channels are computed twice, to the same bits. Where the pixel stride is a multiple of 64
/// bytes (the common wide cases: 256, 512, 1280, 2048 channels) every pixel is then aligned;
/// otherwise some are, and the rest are no worse off. Split this way, 1.05x to 1.14x on f32
/// and 1.1x to 1.24x on bf16 (64-byte loads) where the input stays in L2. Only on wide pixels
/// ([`SPLIT_MIN_CHANNELS`]): on 64 channels the extra blocks made indexed max 2.3x slower.
#[cfg(target_arch = "x86_64")]
fn line_aligned_blocks(image: *const u8, elem: usize, c_end: usize) -> [(usize, usize); 3] {
    let lead = (64 - image as usize % 64) % 64 / elem;
    if lead == 0 || !(image as usize).is_multiple_of(elem) || c_end < SPLIT_MIN_CHANNELS {
        return [(0, c_end), (0, 0), (0, 0)];
    }
    let first = lead.next_multiple_of(32 / elem);
    let body = (c_end - lead) / 8 * 8;
    let last = if lead + body < c_end { (c_end - 8, 8) } else { (0, 0) };
    [(0, first), (lead, body), last]
}

/// Whether channels-last averages and max without indices run 32-channel blocks in AVX-512
/// registers (two instead of four AVX2 registers: half the instructions per tap, the same
/// operations per channel in the same order). bf16 only: its taps cost a load, a shift, a
/// mask and two additions (or maxima) per 32 channels instead of twice that (averages 1.1x to
/// 1.35x on Zen 4: 3x3 stride 2 on the ResNet tail 99 -> 78 us, 7x7 -> 2x2 adaptive 60 -> 50
/// us); f32 averages measured 0.93x (their AVX2 taps are already one fused load-add per
/// register), f16 0.63x to 1.09x (median 0.93x: `vcvtph2ps` widens 16 lanes no cheaper than
/// two times 8), and max with indices no faster either way.
#[cfg(target_arch = "x86_64")]
pub(crate) fn wide_blocks(kind: TileKind) -> bool {
    kind == TileKind::Bf16 && avx512_allowed()
}

/// Whether channels-last f32 max with indices runs 32-channel blocks in AVX-512 registers
/// ([`avx512::max_index_block32`]): per tap and 16 channels one compare into a mask register,
/// one masked minimum (the running key) and one masked move (the index), against the AVX2
/// block's compare, minimum, maximum and byte blend per 8 channels. On Intel a 512-bit
/// operation costs one 256-bit one, and the AVX2 blocks' `vpblendvb` is three uops (Golden
/// Cove and later); measured on the 2-vCPU Xeon (Emerald Rapids) VM, alternating in one
/// process: see BENCHMARKS-HISTORY.md. There, on wide pixels (4 KiB and more, 1024 f32
/// channels) whose input (`input_bytes`) does not fit in L2, the AVX-512 blocks ran 0.84x to
/// 0.93x the AVX2 ones (the 7x7 tails of 8 to 16 images, 1280 to 2048 channels), against
/// 1.2x to 1.5x on 1 to 8 such images in L2 and 1.05x to 1.26x on 64 to 256 channels at
/// every size up to the 201 MB seed (where 1.0x), so Intel keeps the AVX2 blocks there.
///
/// On AMD (Zen 4 runs a 512-bit operation as two 256-bit halves) every f32 shape runs them:
/// with one scratch binary switching them by an environment variable, alternating call by
/// call on the 2-vCPU Zen 4 VM, 16x2048x7x7 (6.4 MB, out of L2) 1.13x to 1.15x, 8x1280x7x7
/// 1.12x to 1.15x, 1x2048x7x7 1.09x to 1.23x, 2x512x14x14 1.10x to 1.15x, 8x128x56x56 1.06x
/// to 1.08x, 1x64x112x112 1.02x to 1.05x, and 1.0x (0.98x to 1.01x) on 4x64x112x112 and the
/// 32x96x128x128 seed. (An earlier mask-register form, two compares and two masked moves a
/// tap, had measured 0.90x to 0.99x there.)
#[cfg(target_arch = "x86_64")]
pub(crate) fn wide_indexed_max(kind: TileKind, c: usize, input_bytes: usize) -> bool {
    avx512_allowed() && indexed_max_shape_is_wide(kind, c, input_bytes, is_intel())
}

/// [`wide_indexed_max`]'s rule for the op's type and shape on an Intel CPU or another.
#[cfg(target_arch = "x86_64")]
fn indexed_max_shape_is_wide(kind: TileKind, c: usize, input_bytes: usize, intel: bool) -> bool {
    let fits = c * kind.bytes() < WIDE_PIXEL_BYTES || input_bytes <= WIDE_INDEXED_MAX_INPUT_BYTES;
    kind == TileKind::F32 && (fits || !intel)
}

/// Pixels of this many bytes and more are wide for [`wide_indexed_max`].
#[cfg(target_arch = "x86_64")]
const WIDE_PIXEL_BYTES: usize = 4096;

/// The largest input of wide pixels [`wide_indexed_max`] runs in AVX-512 registers: L2's size.
#[cfg(target_arch = "x86_64")]
const WIDE_INDEXED_MAX_INPUT_BYTES: usize = 2 << 20;

/// Whether the CPU is AMD's Zen 5 or a later family (vendor `AuthenticAMD`, CPUID leaf 1's
/// family, base plus extended, 0x1A or more), read once.
#[cfg(target_arch = "x86_64")]
pub(crate) fn is_amd_zen5_or_later() -> bool {
    static ZEN5: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ZEN5.get_or_init(|| {
        // SAFETY: CPUID leaf 1 exists on every x86_64 CPU and only reads identification.
        #[allow(unused_unsafe)]
        let signature = unsafe { std::arch::x86_64::__cpuid(1).eax };
        let family = (signature >> 8) & 0xf;
        let family = if family == 0xf { family + ((signature >> 20) & 0xff) } else { family };
        cpu_vendor() == *b"AuthenticAMD" && family >= 0x1a
    })
}

/// The CPU's vendor string (CPUID leaf 0: EBX, EDX, ECX).
#[cfg(target_arch = "x86_64")]
fn cpu_vendor() -> [u8; 12] {
    // SAFETY: CPUID leaf 0 exists on every x86_64 CPU and only reads identification.
    #[allow(unused_unsafe)]
    let leaf = unsafe { std::arch::x86_64::__cpuid(0) };
    let mut vendor = [0; 12];
    for (bytes, word) in vendor.chunks_exact_mut(4).zip([leaf.ebx, leaf.edx, leaf.ecx]) {
        bytes.copy_from_slice(&word.to_le_bytes());
    }
    vendor
}

/// Whether the CPU is Intel's (CPUID leaf 0's vendor string `GenuineIntel`), read once: in a
/// virtual machine CPUID traps to the hypervisor.
#[cfg(target_arch = "x86_64")]
pub(crate) fn is_intel() -> bool {
    static INTEL: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *INTEL.get_or_init(|| cpu_vendor() == *b"GenuineIntel")
}

/// Whether AVX-512 kernels may run: the CPU has AVX-512 F, BW and VL ([`has_avx512`]),
/// and tests have not asked for the AVX2 paths ([`AVX2_ONLY`]).
#[cfg(target_arch = "x86_64")]
pub(crate) fn avx512_allowed() -> bool {
    has_avx512() && !AVX2_ONLY.load(std::sync::atomic::Ordering::Relaxed)
}

/// Whether the CPU has AVX-512 F and BW, which every AVX-512 kernel here needs, and VL, which
/// the channels-last indexed max on narrow pixels needs (256-bit mask operations,
/// [`avx512::narrow_max_index_f32`]); every CPU with BW so far has VL too.
#[cfg(target_arch = "x86_64")]
pub(crate) fn has_avx512() -> bool {
    std::is_x86_feature_detected!("avx512f")
        && std::is_x86_feature_detected!("avx512bw")
        && std::is_x86_feature_detected!("avx512vl")
}

/// Set by tests to run the AVX2 blocks where the CPU has AVX-512 (both give the same bits).
pub(crate) static AVX2_ONLY: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The horizontal window sums of one channels-last input row (`row`: its pixels of `c`
/// channels, `c` a multiple of 8): for each column window `cols[ow] = (w0, w1)`, channels
/// `0..c` of `((0 + x[w0]) + x[w0 + 1]) + ...` in f32, stored at `sums + ow * c` (in
/// [`divide_row_sums`]'s lane order, which is the memory order except within bf16 blocks).
///
/// # Safety
/// `kind` as [`max_window`]; `row` readable for `w1 * c` elements for every `(w0, w1)` of
/// `cols`; `sums` writable for `cols.len() * c` f32.
#[cfg(target_arch = "x86_64")]
pub(crate) unsafe fn row_window_sums(
    (kind, wide): (TileKind, bool),
    row: *const u8,
    c: usize,
    cols: &[(usize, usize)],
    sums: *mut f32,
) {
    if wide {
        // SAFETY: forwarded from this function's contract (`wide` only from `wide_blocks`).
        unsafe { avx2::row_window_sums_wide(kind, row, (c, c), cols, sums) };
        return;
    }
    // f32 loads from the row's first 64-byte line on (see `line_aligned_blocks`). Only f32:
    // a bf16 block keeps its channels in a lane order that `divide_row_sums` reads back in
    // blocks from channel 0, so its blocks must not move.
    let ranges =
        if kind == TileKind::F32 { line_aligned_blocks(row, 4, c) } else { [(0, c), (0, 0), (0, 0)] };
    for (c0, n) in ranges {
        if n > 0 {
            // SAFETY: forwarded from this function's contract: channels `c0..c0 + n` lie in
            // `0..c`, so the offset row and sums address the same pixels' and windows' channels.
            unsafe { avx2::row_window_sums(kind, row.add(c0 * kind.bytes()), (c, n), cols, sums.add(c0)) };
        }
    }
}

/// One output row of a separable channels-last average: output `ow`, channels `0..c`, is
/// `((rows[0] + rows[1]) + ...) / divisors[ow]` over [`row_window_sums`]'s sums for that
/// output, rounded once to `kind`'s type at `y + ow * c` elements.
///
/// # Safety
/// `kind` as [`max_window`]; each of `rows` (at least one) readable for `divisors.len() * c`
/// f32 written by [`row_window_sums`] with the same `kind` and `c`; `y` writable for
/// `divisors.len() * c` elements; with `stream` (non-temporal stores, then a fence), `y`
/// 16-byte aligned.
#[cfg(target_arch = "x86_64")]
pub(crate) unsafe fn divide_row_sums(
    (kind, wide): (TileKind, bool),
    rows: &[*const f32],
    c: usize,
    divisors: &[f32],
    (y, stream): (*mut u8, bool),
) {
    // SAFETY: forwarded from this function's contract (`wide` only from `wide_blocks`).
    unsafe {
        if wide && !stream {
            avx2::divide_row_sums_wide(kind, rows, c, divisors, y)
        } else {
            avx2::divide_row_sums(kind, rows, c, divisors, (y, stream))
        }
    }
}

/// Asks for the cache lines at `x + offset` and every 64 bytes on, short of `bytes` (a hint:
/// never faults, so the range may lie past an allocation's end; `wrapping_add` keeps the
/// address defined). An unaligned range's last line is left to the hardware: asking for it
/// too measured no different on the seed's channels-last GAP.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn prefetch_lines(x: *const u8, offset: usize, bytes: usize) {
    use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
    let mut line = 0;
    while line < bytes {
        // SAFETY: a prefetch reads nothing architecturally and never faults, whatever the
        // address.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(x.wrapping_add(offset + line).cast()) };
        line += 64;
    }
}

/// Column sums of a strided slab: channels `0..8 * R` of `rows` rows, `stride` elements
/// apart (`rows_at` is `(stride, prefetch_rows)`), from `x`; each run of `block_rows` rows summed from +0 in order, in registers, then
/// added to `out` (f32, `8 * R` values, in channel order). The same additions in the same order
/// as the reduction's portable column accumulator, without its per-row accumulator loads and
/// stores. With `prefetch_rows > 0`, each row also asks for the lines of the row that many
/// rows on (past the end too: a prefetch never faults).
///
/// # Safety
/// `kind` as [`max_window`]; `x` readable for `(rows - 1) * stride + 8 * R` elements when
/// `rows > 0`; `out` readable and writable for `8 * R` f32.
#[cfg(target_arch = "x86_64")]
pub(crate) unsafe fn column_block_sums<const R: usize>(
    kind: TileKind,
    x: *const u8,
    rows_at: (usize, usize),
    rows: usize,
    block_rows: usize,
    out: *mut f32,
) {
    if kind == TileKind::Bf16 && R.is_multiple_of(4) && avx512_allowed() {
        // SAFETY: forwarded from this function's contract; AVX-512 F and BW are present
        // (`avx512_allowed`); `R / 4` blocks of 32 channels are `8 * R` channels.
        unsafe {
            match R / 4 {
                1 => return avx512::column_block_sums_bf16::<1>(x, rows_at, rows, block_rows, out),
                2 => return avx512::column_block_sums_bf16::<2>(x, rows_at, rows, block_rows, out),
                3 => return avx512::column_block_sums_bf16::<3>(x, rows_at, rows, block_rows, out),
                _ => {}
            }
        }
    }
    // SAFETY: forwarded from this function's contract.
    unsafe { avx2::column_block_sums::<R>(kind, x, rows_at, rows, block_rows, out) }
}

/// One input row of the channels-last max-backward gather (`backward::gather_max_nhwc`): for
/// input pixel `iw` and channel `ch` of row `ih`, `y[iw * c + ch]` is the sum, from +0 and in
/// ascending output order, of `grad[ow * c + ch]` over the output rows `(index, grad)` of
/// `rows` (ascending) and the outputs `ow` of `cols[iw]` whose `index[ow * c + ch]` is
/// `ih * width + iw`, rounded once to `kind`'s type. Returns how many (output, channel) pairs
/// matched.
///
/// # Safety
/// `kind` as [`max_window`]; `c` a multiple of 8; each `rows` pair readable for
/// `(cols.iter().map(|r| r.end).max()) * c` i32 and f32; `y` writable for `cols.len() * c`
/// elements; `(ih + 1) * cols.len() <= i32::MAX` (pixel numbers fit in i32).
#[cfg(target_arch = "x86_64")]
pub(crate) unsafe fn max_gather_row(
    kind: TileKind,
    c: usize,
    ih: usize,
    rows: &[(*const i32, *const f32)],
    cols: &[std::ops::Range<usize>],
    y: *mut u8,
) -> u64 {
    // SAFETY: forwarded from this function's contract.
    unsafe { avx2::max_gather_row(kind, c, ih, rows, cols, y) }
}

/// Prepares one output row for [`max_gather_row`]: `n` indices narrowed to i32 (those outside
/// `[0, plane)` to -1, which matches no element) and `n` gradients widened to f32.
///
/// # Safety
/// `kind` as [`max_window`]; `n` a multiple of 8; `index` and `out_index` valid for `n` i64
/// and i32, `grad` for `n` elements of `kind`'s type, `out_grad` for `n` f32;
/// `plane <= i32::MAX`.
#[cfg(target_arch = "x86_64")]
pub(crate) unsafe fn max_gather_convert(
    kind: TileKind,
    plane: usize,
    (index, grad): (*const i64, *const u8),
    n: usize,
    (out_index, out_grad): (*mut i32, *mut f32),
) {
    // SAFETY: forwarded from this function's contract.
    unsafe { avx2::max_gather_convert(kind, plane, (index, grad), n, (out_index, out_grad)) }
}

/// Runs `$body` once for each of the first `$g` (a constant, at most 8) windows of a narrow
/// group ([`avx2::narrow_group`]), with `$q` their position as a constant: the group's
/// registers are then plain locals (a `for` loop over an array of registers measured 0.5x to
/// 0.9x: the compiler kept the array on the stack).
#[cfg(target_arch = "x86_64")]
macro_rules! each_window {
    ($g:expr, |$q:ident| $body:block) => {
        each_window!(@ $g, $q, $body, 0 1 2 3 4 5 6 7)
    };
    (@ $g:expr, $q:ident, $body:block, $($n:literal)*) => {{
        $({
            const $q: usize = $n;
            if $q < $g {
                $body
            }
        })*
    }};
}

/// Runs `$body` with `$at` bound to the pixel (`h * width + w`) of each tap of the
/// [`ChannelWindow`] `$win`, in PyTorch's order (rows, then columns): every tap, or with
/// `$after_first` every tap but the first (for the max kernels that start from it,
/// `avx2::first_tap`).
/// A macro, not a function taking a closure: a closure would not inherit the caller's
/// AVX2, and its intrinsics would not inline.
#[cfg(target_arch = "x86_64")]
macro_rules! window_taps {
    ($win:expr, $after_first:expr, |$at:ident| $body:block) => {{
        let win: ChannelWindow = $win;
        let (width, (h0, h1, dh), (w0, w1, dw)) = (win.width, win.h, win.w);
        let mut h = h0;
        let mut w = if $after_first { w0 + dw } else { w0 };
        while h < h1 {
            while w < w1 {
                let $at = h * width + w;
                $body
                w += dw;
            }
            h += dh;
            w = w0;
        }
    }};
}

/// The pixel of each window's first tap in a narrow group (entries past the group's length
/// are 0, unused).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn group_first_pixels(group: &[OutputWindow], width: usize) -> [usize; 8] {
    std::array::from_fn(|q| group.get(q).map_or(0, |o| o.h.0 * width + o.w.0))
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2 {
    use super::{ChannelWindow, OutputWindow, TileKind, WindowOp};
    use std::arch::x86_64::*;

    /// Runs `$body` with `$k` bound to `$kind` as a literal of its variant, so the inlined tile
    /// kernels compile once per element type and their `match kind` in every load and store
    /// folds away. With `kind` a run-time value the tap loops kept a branch per load.
    /// Measured with both versions alternating call by call in one process (2 threads, the
    /// 7x7 tails, channels-last): plain f32 max 1.1x to 1.5x faster, indexed f32 max 1.04x to
    /// 1.24x, 3x3 averages (stride 2 and the separable stride 1) 1.01x to 1.07x in f32 and
    /// bf16, bf16 max 0.96x to 1.12x; on the 112x112 map, which streams from memory, 0.97x to
    /// 1.11x.
    macro_rules! with_kind_literal {
        ($kind:expr, |$k:ident| $body:expr) => {
            match $kind {
                TileKind::F32 => {
                    let $k = TileKind::F32;
                    $body
                }
                TileKind::Bf16 => {
                    let $k = TileKind::Bf16;
                    $body
                }
                TileKind::F16 => {
                    let $k = TileKind::F16;
                    $body
                }
            }
        };
    }

    /// Runs `$body` over the channels `0..$end` (a multiple of 8) in the blocks every kernel
    /// here uses: 32 channels at a time (`$r = 4` registers), then 8 (`$r = 1`), with `$c0`
    /// the block's first channel; with `$sixty_four`, 64 at a time first (`$r = 8`). One
    /// blocking for all, so that data one kernel writes in [`load_tile`]'s lane order (bf16
    /// blocks of 32 keep even and odd channels apart) is read back in the same blocks by the
    /// next: a block of 64 is laid out as two of 32, and the blocks of 8 start at the same
    /// channel either way.
    ///
    /// The averages' AVX2 sums take blocks of 64: eight independent chains of additions
    /// instead of four. On Zen 3 (no AVX-512) that made 3x3 averages on the ResNet tail
    /// 1.08x to 1.29x faster (f32 and bf16); max keeps 32, its indexed taps need two
    /// registers per block.
    macro_rules! channel_blocks {
        ($end:expr, |$r:ident, $c0:ident| $body:expr) => {
            channel_blocks!($end, false, |$r, $c0| $body)
        };
        ($end:expr, $sixty_four:expr, |$r:ident, $c0:ident| $body:expr) => {{
            let end = $end;
            let mut $c0 = 0;
            if $sixty_four {
                while $c0 + 64 <= end {
                    {
                        const $r: usize = 8;
                        $body;
                    }
                    $c0 += 64;
                }
            }
            while $c0 + 32 <= end {
                {
                    const $r: usize = 4;
                    $body;
                }
                $c0 += 32;
            }
            while $c0 + 8 <= end {
                {
                    const $r: usize = 1;
                    $body;
                }
                $c0 += 8;
            }
        }};
    }

    /// Byte shuffle of a 128-bit lane holding eight bf16 (both lanes the same, as
    /// `vbroadcasti128` loads them) into eight f32: bf16 `j` of the low lane's words 0-3 or the
    /// high lane's 4-7 lands in the upper half of f32 `j`, zeros below (-128 selects a zero).
    /// The widening this replaced, `vpmovzxwd` and a shift, is two uops, the first only on
    /// port 5 on Intel; a broadcast load is a load alone, and `vpshufb` runs on ports 1 and 5.
    /// The short-row sums (eight bf16 rows of 56 a call, 2048 rows, in L1/L2) ran 1.14x
    /// faster in one process, the two forms alternating (20000 calls each, p10 and median);
    /// the same bits.
    const BF16_TO_F32_BYTES: __m256i = unsafe {
        std::mem::transmute::<[i8; 32], __m256i>([
            -128, -128, 0, 1, -128, -128, 2, 3, -128, -128, 4, 5, -128, -128, 6, 7, //
            -128, -128, 8, 9, -128, -128, 10, 11, -128, -128, 12, 13, -128, -128, 14, 15,
        ])
    };

    /// Eight accumulator values from element `at` of `p`, exact.
    #[inline(always)]
    pub(crate) unsafe fn load8(kind: TileKind, p: *const u8, at: usize) -> __m256 {
        match kind {
            TileKind::F32 => _mm256_loadu_ps(p.cast::<f32>().add(at)),
            TileKind::Bf16 => {
                let h = _mm256_broadcastsi128_si256(_mm_loadu_si128(p.cast::<u16>().add(at).cast()));
                _mm256_castsi256_ps(_mm256_shuffle_epi8(h, BF16_TO_F32_BYTES))
            }
            TileKind::F16 => _mm256_cvtph_ps(_mm_loadu_si128(p.cast::<u16>().add(at).cast())),
        }
    }

    /// `n` f16 values at `src` widened (exactly) to f32 at `out`, eight at a time.
    ///
    /// # Safety
    /// AVX2 and F16C; `src` readable and `out` writable for `n` elements, not overlapping.
    #[target_feature(enable = "avx2,f16c")]
    #[inline]
    pub(crate) unsafe fn widen_f16(src: *const u16, out: *mut f32, n: usize) {
        let mut i = 0;
        while i + 8 <= n {
            _mm256_storeu_ps(out.add(i), _mm256_cvtph_ps(_mm_loadu_si128(src.add(i).cast())));
            i += 8;
        }
        while i < n {
            *out.add(i) = load1(TileKind::F16, src.cast(), i);
            i += 1;
        }
    }

    /// Element `at` of `p` as an accumulator value, exact.
    #[inline(always)]
    pub(crate) unsafe fn load1(kind: TileKind, p: *const u8, at: usize) -> f32 {
        match kind {
            TileKind::F32 => *p.cast::<f32>().add(at),
            TileKind::Bf16 => f32::from_bits(u32::from(*p.cast::<u16>().add(at)) << 16),
            TileKind::F16 => {
                _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(*p.cast::<u16>().add(at)))))
            }
        }
    }

    /// Eight f32 rounded to f16 to nearest even (F16C; the rounding `half` uses).
    #[inline(always)]
    unsafe fn to_f16(v: __m256) -> __m128i {
        _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v)
    }

    /// Eight f32 rounded to `kind`'s 16-bit type (bf16 or f16) as [`super::store`] rounds.
    #[inline(always)]
    pub(crate) unsafe fn to_16bit(kind: TileKind, v: __m256) -> __m128i {
        if kind == TileKind::F16 {
            to_f16(v)
        } else {
            to_bf16(v)
        }
    }

    /// Eight f32 rounded to bf16 exactly as [`super::store`] does (nearest even, NaN quieted).
    #[inline(always)]
    pub(crate) unsafe fn to_bf16(v: __m256) -> __m128i {
        let r = _mm256_srli_epi32::<16>(bf16_in_high_half(v));
        // Every lane fits 16 bits, so the saturating pack only narrows; it packs within
        // 128-bit halves, so gather the halves' low quadwords.
        let packed = _mm256_packus_epi32(r, r);
        _mm256_castsi256_si128(_mm256_permute4x64_epi64::<0b1000>(packed))
    }

    /// [`to_bf16`]'s rounding left in the high 16 bits of each 32-bit lane (the low bits are
    /// garbage): round to nearest even, NaN quieted. A function, not a closure: closures do
    /// not inherit the caller's AVX2.
    #[inline(always)]
    unsafe fn bf16_in_high_half(v: __m256) -> __m256i {
        let quiet = _mm256_or_si256(_mm256_castps_si256(v), _mm256_set1_epi32(0x40 << 16));
        let nan = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_UNORD_Q>(v, v));
        _mm256_blendv_epi8(sum_bf16_in_high_half(v), quiet, nan)
    }

    /// [`bf16_in_high_half`] for f32 sums and quotients of bf16 values (and +0 and finite
    /// divisors): round to nearest even only, three operations fewer. Such a NaN is quiet with
    /// its low 16 bits zero: x86 arithmetic returns a NaN operand quieted (a widened bf16 has
    /// zero low bits) or the default NaN `0xffc00000`. Adding `0x7fff` and the lsb to zero low
    /// bits carries nothing into the high half, which is then the NaN's bits with the quiet
    /// bit set, as `bits >> 16 | 0x40` gives (`window.rs`'s `bf16_averages_of_nan_stay_quiet_nan`).
    /// Channels-last bf16 averages of 3x3 windows stored by this ran 1.05x to 1.07x faster
    /// with stride 2 and 1.04x to 1.11x with stride 1 (the four tails and the 112x112 map,
    /// both versions alternating call by call in one process, Zen 3).
    #[inline(always)]
    unsafe fn sum_bf16_in_high_half(v: __m256) -> __m256i {
        let bits = _mm256_castps_si256(v);
        let lsb = _mm256_and_si256(_mm256_srli_epi32::<16>(bits), _mm256_set1_epi32(1));
        _mm256_add_epi32(_mm256_add_epi32(bits, _mm256_set1_epi32(0x7fff)), lsb)
    }

    /// One tap of PyTorch's max rule on eight lanes: `take = v > max || isnan(v)`; taken lanes
    /// get `v` and, with `WITH_INDEX`, the plane index `here` (i32 lanes). The one copy of the
    /// rule for every AVX2 max kernel (channels-last blocks, the lane path, adaptive `planes8`).
    #[inline(always)]
    pub(crate) unsafe fn max_tap<const WITH_INDEX: bool>(
        v: __m256,
        max: &mut __m256,
        at: &mut __m256i,
        here: __m256i,
    ) {
        let take = _mm256_or_ps(_mm256_cmp_ps::<_CMP_GT_OQ>(v, *max), _mm256_cmp_ps::<_CMP_UNORD_Q>(v, v));
        *max = _mm256_blendv_ps(*max, v, take);
        if WITH_INDEX {
            *at = _mm256_blendv_epi8(*at, here, _mm256_castps_si256(take));
        }
    }

    /// Eight results stored at element `at` of `y`, rounded as [`super::store`].
    #[inline(always)]
    pub(crate) unsafe fn store8(kind: TileKind, y: *mut u8, at: usize, v: __m256) {
        match kind {
            TileKind::F32 => _mm256_storeu_ps(y.cast::<f32>().add(at), v),
            TileKind::Bf16 | TileKind::F16 => {
                _mm_storeu_si128(y.cast::<u16>().add(at).cast(), to_16bit(kind, v))
            }
        }
    }

    /// The `8 * R` channels at element `at` of `p` as `R` registers of accumulator values,
    /// exact. f32 loads them in order. bf16 with an even `R` loads sixteen channels at a time
    /// and splits them into (even channels, odd channels) with one shift and one mask, instead
    /// of widening eight at a time (two loads, a shuffle and a shift): per-channel arithmetic
    /// does not care which lane a channel sits in, and [`store_tile`] and [`store_index_tile`]
    /// put the lanes back in order.
    #[inline(always)]
    unsafe fn load_tile<const R: usize>(kind: TileKind, p: *const u8, at: usize) -> [__m256; R] {
        let mut v = [_mm256_setzero_ps(); R];
        if kind == TileKind::Bf16 && R.is_multiple_of(2) {
            let high = _mm256_set1_epi32(0xffff_0000_u32 as i32);
            for pair in 0..R / 2 {
                let raw = _mm256_loadu_si256(p.cast::<u16>().add(at + 16 * pair).cast());
                v[2 * pair] = _mm256_castsi256_ps(_mm256_slli_epi32::<16>(raw));
                v[2 * pair + 1] = _mm256_castsi256_ps(_mm256_and_si256(raw, high));
            }
        } else {
            for (r, v) in v.iter_mut().enumerate() {
                *v = load8(kind, p, at + 8 * r);
            }
        }
        v
    }

    /// Eight i32 indices stored at `p`, widened to i64.
    #[inline(always)]
    unsafe fn store_index8(p: *mut i64, v: __m256i) {
        _mm256_storeu_si256(p.cast(), _mm256_cvtepi32_epi64(_mm256_castsi256_si128(v)));
        _mm256_storeu_si256(p.add(4).cast(), _mm256_cvtepi32_epi64(_mm256_extracti128_si256::<1>(v)));
    }

    /// Stores [`load_tile`]'s registers at element `at` of `y`, rounded as [`super::store`].
    ///
    /// With `stream`, non-temporal 16-byte stores (`y + at` elements must then be 16-byte
    /// aligned, which holds for a 16-byte aligned `y` and `at` a multiple of 8). `SUMS`: the
    /// registers hold f32 sums and quotients of `kind`'s values, so bf16 blocks of 16 channels
    /// round them by [`sum_bf16_in_high_half`], without the NaN test (blocks of 8, a few
    /// channels at the end, keep [`to_bf16`]'s: the same bits either way).
    #[inline(always)]
    unsafe fn store_tile<const R: usize, const SUMS: bool>(
        kind: TileKind,
        y: *mut u8,
        at: usize,
        v: [__m256; R],
        stream: bool,
    ) {
        if kind == TileKind::Bf16 && R.is_multiple_of(2) {
            // The even channel's bf16 ends in the low half of its lane, the odd channel's in
            // the high half (the memory order), so no pack or permute is needed.
            let high = _mm256_set1_epi32(0xffff_0000_u32 as i32);
            for pair in 0..R / 2 {
                let (even, odd) = if SUMS {
                    (sum_bf16_in_high_half(v[2 * pair]), sum_bf16_in_high_half(v[2 * pair + 1]))
                } else {
                    (bf16_in_high_half(v[2 * pair]), bf16_in_high_half(v[2 * pair + 1]))
                };
                let even = _mm256_srli_epi32::<16>(even);
                let odd = _mm256_and_si256(odd, high);
                let p = y.cast::<u16>().add(at + 16 * pair);
                let packed = _mm256_or_si256(even, odd);
                if stream {
                    _mm_stream_si128(p.cast(), _mm256_castsi256_si128(packed));
                    _mm_stream_si128(p.add(8).cast(), _mm256_extracti128_si256::<1>(packed));
                } else {
                    _mm256_storeu_si256(p.cast(), packed);
                }
            }
        } else if stream {
            for (r, &v) in v.iter().enumerate() {
                match kind {
                    TileKind::F32 => {
                        let p = y.cast::<f32>().add(at + 8 * r);
                        _mm_stream_ps(p, _mm256_castps256_ps128(v));
                        _mm_stream_ps(p.add(4), _mm256_extractf128_ps::<1>(v));
                    }
                    TileKind::Bf16 | TileKind::F16 => {
                        _mm_stream_si128(y.cast::<u16>().add(at + 8 * r).cast(), to_16bit(kind, v))
                    }
                }
            }
        } else {
            for (r, &v) in v.iter().enumerate() {
                store8(kind, y, at + 8 * r, v);
            }
        }
    }

    /// Stores the i32 plane indices kept beside [`load_tile`]'s registers (same lane order)
    /// at element `at` of `index`, widened to i64.
    #[inline(always)]
    unsafe fn store_index_tile<const R: usize>(kind: TileKind, index: *mut i64, at: usize, v: [__m256i; R]) {
        if kind == TileKind::Bf16 && R.is_multiple_of(2) {
            for pair in 0..R / 2 {
                // (even, odd) lanes e0..e7, o0..o7 are channels 0, 2, .. and 1, 3, ..;
                // unpacking within 128-bit halves gives channels 0-3 | 8-11 and 4-7 | 12-15.
                let (even, odd) = (v[2 * pair], v[2 * pair + 1]);
                let low = _mm256_unpacklo_epi32(even, odd);
                let high = _mm256_unpackhi_epi32(even, odd);
                let p = index.add(at + 16 * pair);
                store_index8(p, _mm256_permute2x128_si256::<0x20>(low, high));
                store_index8(p.add(8), _mm256_permute2x128_si256::<0x31>(low, high));
            }
        } else {
            for (r, &v) in v.iter().enumerate() {
                store_index8(index.add(at + 8 * r), v);
            }
        }
    }

    /// See [`super::row_window_sums`]. Blocks of 32 channels, then 8, as
    /// [`divide_row_sums`] reads them back (a bf16 block of 32 is kept in its even/odd lanes).
    #[target_feature(enable = "avx2,f16c")]
    pub(super) unsafe fn row_window_sums(
        kind: TileKind,
        row: *const u8,
        c: (usize, usize),
        cols: &[(usize, usize)],
        sums: *mut f32,
    ) {
        row_window_sums_body::<false>(kind, row, c, cols, sums)
    }

    /// [`row_window_sums`] with 32-channel blocks in AVX-512 registers, in their lane order:
    /// only [`divide_row_sums_wide`] reads these sums.
    ///
    /// # Safety
    /// As [`row_window_sums`], and the CPU has AVX-512 F and BW.
    #[target_feature(enable = "avx2,f16c,avx512f,avx512bw")]
    pub(super) unsafe fn row_window_sums_wide(
        kind: TileKind,
        row: *const u8,
        c: (usize, usize),
        cols: &[(usize, usize)],
        sums: *mut f32,
    ) {
        row_window_sums_body::<true>(kind, row, c, cols, sums)
    }

    /// Channels `0..c_end` of pixels `c` elements apart.
    #[inline(always)]
    unsafe fn row_window_sums_body<const WIDE: bool>(
        kind: TileKind,
        row: *const u8,
        (c, c_end): (usize, usize),
        cols: &[(usize, usize)],
        sums: *mut f32,
    ) {
        with_kind_literal!(kind, |kind| {
            // Narrow pixels (no block of 32): runs of eight windows of one width side by
            // side, as `narrow_group` pools windows (with the divisions below, 3x3 stride 1
            // on 1x8x512x512 1.5x to 2.1x in f32 and bf16, on 4x16x112x112 1.8x to 2.9x).
            let narrow = c_end < 32;
            let mut ow = 0;
            while ow < cols.len() {
                if narrow && ow + 8 <= cols.len() {
                    let group = &cols[ow..ow + 8];
                    let taps = group[0].1 - group[0].0;
                    if group.iter().all(|&(w0, w1)| w1 - w0 == taps) {
                        let mut c0 = 0;
                        while c0 < c_end {
                            narrow_column_sums::<8>(kind, row, c, group, c0, sums.add(ow * c));
                            c0 += 8;
                        }
                        ow += 8;
                        continue;
                    }
                }
                let (w0, w1) = cols[ow];
                let out = sums.add(ow * c);
                channel_blocks!(c_end, !WIDE, |R, c0| if WIDE && R == 4 {
                    super::avx512::sum_columns32(kind, row, c, (w0, w1), c0, out)
                } else {
                    sum_columns::<R>(kind, row, c, (w0, w1), c0, out)
                });
                ow += 1;
            }
        })
    }

    /// Eight channels (`c0..c0 + 8`) of `G` column windows of one width side by side: each
    /// [`sum_columns`]'s sum (from +0, left to right), at `out + q * c`.
    #[inline(always)]
    unsafe fn narrow_column_sums<const G: usize>(
        kind: TileKind,
        row: *const u8,
        c: usize,
        group: &[(usize, usize)],
        c0: usize,
        out: *mut f32,
    ) {
        let first: [usize; 8] = std::array::from_fn(|q| group.get(q).map_or(0, |w| w.0 * c + c0));
        let mut sum = [_mm256_setzero_ps(); 8];
        for j in 0..group[0].1 - group[0].0 {
            each_window!(G, |Q| {
                sum[Q] = _mm256_add_ps(sum[Q], load8(kind, row, first[Q] + j * c));
            });
        }
        each_window!(G, |Q| {
            _mm256_storeu_ps(out.add(Q * c + c0), sum[Q]);
        });
    }

    #[inline(always)]
    unsafe fn sum_columns<const R: usize>(
        kind: TileKind,
        row: *const u8,
        c: usize,
        (w0, w1): (usize, usize),
        c0: usize,
        out: *mut f32,
    ) {
        let mut sum = [_mm256_setzero_ps(); R];
        for w in w0..w1 {
            let v = load_tile::<R>(kind, row, w * c + c0);
            for (s, v) in sum.iter_mut().zip(v) {
                *s = _mm256_add_ps(*s, v);
            }
        }
        for (r, &s) in sum.iter().enumerate() {
            _mm256_storeu_ps(out.add(c0 + 8 * r), s);
        }
    }

    /// See [`super::divide_row_sums`].
    #[target_feature(enable = "avx2,f16c")]
    pub(super) unsafe fn divide_row_sums(
        kind: TileKind,
        rows: &[*const f32],
        c: usize,
        divisors: &[f32],
        (y, stream): (*mut u8, bool),
    ) {
        divide_row_sums_body::<false>(kind, rows, c, divisors, (y, stream))
    }

    /// [`divide_row_sums`] over [`row_window_sums_wide`]'s sums (ordinary stores only).
    ///
    /// # Safety
    /// As [`divide_row_sums`], and the CPU has AVX-512 F and BW.
    #[target_feature(enable = "avx2,f16c,avx512f,avx512bw")]
    pub(super) unsafe fn divide_row_sums_wide(
        kind: TileKind,
        rows: &[*const f32],
        c: usize,
        divisors: &[f32],
        y: *mut u8,
    ) {
        divide_row_sums_body::<true>(kind, rows, c, divisors, (y, false))
    }

    #[inline(always)]
    unsafe fn divide_row_sums_body<const WIDE: bool>(
        kind: TileKind,
        rows: &[*const f32],
        c: usize,
        divisors: &[f32],
        (y, stream): (*mut u8, bool),
    ) {
        with_kind_literal!(kind, |kind| {
            // Narrow pixels (no block of 32): eight outputs at a time side by side, as
            // `narrow_group` pools windows.
            let narrow = c < 32 && c.is_multiple_of(8);
            let mut ow = 0;
            while narrow && ow + 8 <= divisors.len() {
                let mut c0 = 0;
                while c0 < c {
                    narrow_divide::<8>(kind, rows, c, &divisors[ow..ow + 8], ow * c + c0, (y, stream));
                    c0 += 8;
                }
                ow += 8;
            }
            for (ow, &divisor) in divisors.iter().enumerate().skip(ow) {
                let divisor = _mm256_set1_ps(divisor);
                let at = ow * c;
                channel_blocks!(c, |R, c0| if WIDE && R == 4 {
                    super::avx512::divide_block32(kind, rows, at + c0, divisor, y)
                } else {
                    divide_block::<R>(kind, rows, at + c0, divisor, (y, stream))
                });
            }
        });
        if stream {
            _mm_sfence();
        }
    }

    /// Eight channels of `G` outputs side by side (`at`: the first one's element), each as
    /// [`divide_block`]: the rows' sums left to right, divided, rounded once.
    #[inline(always)]
    unsafe fn narrow_divide<const G: usize>(
        kind: TileKind,
        rows: &[*const f32],
        c: usize,
        divisors: &[f32],
        at: usize,
        (y, stream): (*mut u8, bool),
    ) {
        let mut sum = [_mm256_setzero_ps(); 8];
        each_window!(G, |Q| {
            sum[Q] = _mm256_loadu_ps(rows[0].add(at + Q * c));
        });
        for row in &rows[1..] {
            each_window!(G, |Q| {
                sum[Q] = _mm256_add_ps(sum[Q], _mm256_loadu_ps(row.add(at + Q * c)));
            });
        }
        each_window!(G, |Q| {
            let s = _mm256_div_ps(sum[Q], _mm256_set1_ps(divisors[Q]));
            store_tile::<1, true>(kind, y, at + Q * c, [s], stream);
        });
    }

    #[inline(always)]
    unsafe fn divide_block<const R: usize>(
        kind: TileKind,
        rows: &[*const f32],
        at: usize,
        divisor: __m256,
        (y, stream): (*mut u8, bool),
    ) {
        let mut sum = [_mm256_setzero_ps(); R];
        for (r, s) in sum.iter_mut().enumerate() {
            *s = _mm256_loadu_ps(rows[0].add(at + 8 * r));
        }
        for row in &rows[1..] {
            for (r, s) in sum.iter_mut().enumerate() {
                *s = _mm256_add_ps(*s, _mm256_loadu_ps(row.add(at + 8 * r)));
            }
        }
        for s in sum.iter_mut() {
            *s = _mm256_div_ps(*s, divisor);
        }
        store_tile::<R, true>(kind, y, at, sum, stream);
    }

    /// See [`super::max_gather_convert`]. Two signed 64-bit compares test `0 <= i < plane`;
    /// the low halves of the valid indices are the indices.
    #[target_feature(enable = "avx2,f16c")]
    pub(super) unsafe fn max_gather_convert(
        kind: TileKind,
        plane: usize,
        (index, grad): (*const i64, *const u8),
        n: usize,
        (out_index, out_grad): (*mut i32, *mut f32),
    ) {
        let (below, above) = (_mm256_set1_epi64x(-1), _mm256_set1_epi64x(plane as i64));
        let low_halves = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
        let mut at = 0;
        while at < n {
            let mut halves = [_mm_setzero_si128(); 2];
            for (k, half) in halves.iter_mut().enumerate() {
                let i = _mm256_loadu_si256(index.add(at + 4 * k).cast());
                let valid = _mm256_and_si256(_mm256_cmpgt_epi64(i, below), _mm256_cmpgt_epi64(above, i));
                // Invalid lanes become all ones (-1), valid ones keep their index.
                let i = _mm256_or_si256(i, _mm256_xor_si256(valid, below));
                *half = _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(i, low_halves));
            }
            _mm256_storeu_si256(out_index.add(at).cast(), _mm256_set_m128i(halves[1], halves[0]));
            _mm256_storeu_ps(out_grad.add(at), load8(kind, grad, at));
            at += 8;
        }
    }

    /// See [`super::max_gather_row`]. Each block of eight channels of a pixel sums in one
    /// register: per covering output a compare, a mask and an add (the masked-off lanes add
    /// +0, which changes no sum that starts from +0), and the matches are counted by
    /// subtracting the compare masks (at most `width * c / 8 * 9` per lane, below 2^32 for
    /// the rows of at most `i32::MAX` elements the caller passes).
    #[target_feature(enable = "avx2,f16c")]
    pub(super) unsafe fn max_gather_row(
        kind: TileKind,
        c: usize,
        ih: usize,
        rows: &[(*const i32, *const f32)],
        cols: &[std::ops::Range<usize>],
        y: *mut u8,
    ) -> u64 {
        let width = cols.len();
        let mut hits = _mm256_setzero_si256();
        // Slabs of channels, so that the converted rows' part that neighbouring pixels share
        // stays in L1 (a 2048-channel row of four outputs is 64 KiB).
        const SLAB: usize = 256;
        for slab in (0..c).step_by(SLAB) {
            for (iw, outputs) in cols.iter().enumerate() {
                let here = _mm256_set1_epi32((ih * width + iw) as i32);
                for c0 in (slab..c.min(slab + SLAB)).step_by(8) {
                    let mut sum = _mm256_setzero_ps();
                    for &(index, grad) in rows {
                        for ow in outputs.clone() {
                            let at = ow * c + c0;
                            let take = _mm256_cmpeq_epi32(_mm256_loadu_si256(index.add(at).cast()), here);
                            let g = _mm256_and_ps(_mm256_castsi256_ps(take), _mm256_loadu_ps(grad.add(at)));
                            sum = _mm256_add_ps(sum, g);
                            hits = _mm256_sub_epi32(hits, take);
                        }
                    }
                    store8(kind, y, iw * c + c0, sum);
                }
            }
        }
        let mut lanes = [0u32; 8];
        _mm256_storeu_si256(lanes.as_mut_ptr().cast(), hits);
        lanes.iter().map(|&n| n as u64).sum()
    }

    /// See [`super::column_block_sums`].
    #[target_feature(enable = "avx2,f16c")]
    pub(super) unsafe fn column_block_sums<const R: usize>(
        kind: TileKind,
        x: *const u8,
        (stride, prefetch_rows): (usize, usize),
        rows: usize,
        block_rows: usize,
        out: *mut f32,
    ) {
        with_kind_literal!(kind, |kind| {
            let mut r = 0;
            while r < rows {
                let end = rows.min(r + block_rows);
                let mut sum = [_mm256_setzero_ps(); R];
                for row in r..end {
                    if prefetch_rows > 0 {
                        super::prefetch_lines(
                            x,
                            (row + prefetch_rows) * stride * kind.bytes(),
                            8 * R * kind.bytes(),
                        );
                    }
                    for (i, s) in sum.iter_mut().enumerate() {
                        *s = _mm256_add_ps(*s, load8(kind, x, row * stride + 8 * i));
                    }
                }
                for (i, &s) in sum.iter().enumerate() {
                    _mm256_storeu_ps(out.add(8 * i), _mm256_add_ps(_mm256_loadu_ps(out.add(8 * i)), s));
                }
                r = end;
            }
        })
    }

    /// See [`super::pool_windows`].
    #[target_feature(enable = "avx2,f16c")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn pool_windows(
        kind: TileKind,
        op: WindowOp,
        image: *const u8,
        (width, c): (usize, usize),
        windows: &[OutputWindow],
        c_end: usize,
        (y, stream): (*mut u8, bool),
        index: *mut i64,
    ) {
        pool_windows_body::<false>(kind, op, image, (width, c), windows, c_end, (y, stream), index)
    }

    /// [`pool_windows`] with 32-channel blocks in AVX-512 registers: bf16 averages and max
    /// ([`super::wide_blocks`]), f32 max with indices ([`super::wide_indexed_max`]).
    ///
    /// # Safety
    /// As [`pool_windows`], and the CPU has AVX-512 F, BW and VL.
    #[target_feature(enable = "avx2,f16c,avx512f,avx512bw,avx512vl")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn pool_windows_wide(
        kind: TileKind,
        op: WindowOp,
        image: *const u8,
        (width, c): (usize, usize),
        windows: &[OutputWindow],
        c_end: usize,
        y: *mut u8,
        index: *mut i64,
    ) {
        pool_windows_body::<true>(kind, op, image, (width, c), windows, c_end, (y, false), index)
    }

    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn pool_windows_body<const WIDE: bool>(
        kind: TileKind,
        op: WindowOp,
        image: *const u8,
        (width, c): (usize, usize),
        windows: &[OutputWindow],
        c_end: usize,
        (y, stream): (*mut u8, bool),
        index: *mut i64,
    ) {
        with_kind_literal!(kind, |kind| {
            let elem = kind.bytes();
            let with_index = matches!(op, WindowOp::MaxWithIndex { .. });
            let group_len = if c_end < 32 { narrow_group_len(op) } else { 0 };
            let mut i = 0;
            while i < windows.len() {
                let index = if with_index { index.add(i * c) } else { index };
                if group_len > 0 && i + group_len <= windows.len() {
                    let group = &windows[i..i + group_len];
                    if same_taps(group) {
                        let y = (y.add(i * c * elem), stream);
                        narrow_group::<WIDE>(kind, op, image, (width, c), group, c_end, y, index);
                        i += group_len;
                        continue;
                    }
                }
                let out = &windows[i];
                let win = ChannelWindow { width, c, h: out.h, w: out.w };
                let y = (y.add(i * c * elem), stream);
                match op {
                    WindowOp::Avg if out.divisors.1 == 1.0 => {
                        avg_passes::<false, WIDE>(kind, image, win, c_end, out.divisors, y)
                    }
                    WindowOp::Avg => avg_passes::<true, WIDE>(kind, image, win, c_end, out.divisors, y),
                    WindowOp::Max => {
                        max_blocks::<false, WIDE>(kind, image, win, c_end, y, std::ptr::null_mut())
                    }
                    WindowOp::MaxWithIndex { .. } => {
                        max_blocks::<true, WIDE>(kind, image, win, c_end, y, index)
                    }
                }
                i += 1;
            }
        })
    }

    /// How many windows [`narrow_group`] pools side by side on narrow pixels (`c_end` below
    /// 32: blocks of 8 channels only). One window's taps are one chain of dependent
    /// operations per 8 channels (an average's additions, a max's compare and blend): on 8
    /// channels, one register, a 3x3 window is nine such steps in a row, and the loop over
    /// windows, with its bounds per window, did not let the next window's chain overlap
    /// enough. Side by side, the group's chains run together. Measured with one scratch
    /// binary switching the two forms, alternating in one process (Intel VM, 3x3 stride 2
    /// unless named), per round (median): on 1x8x512x512 f32 averages 1.35x to 1.48x
    /// (1.42x), max 1.47x to 1.90x (1.49x), 2x2 max 1.24x to 1.55x (1.52x), indexed max 1.42x
    /// to 1.55x (1.51x); bf16 there averages 1.51x to 1.99x (1.71x), max 1.58x to 2.98x
    /// (1.65x), indexed 0.84x to 1.42x (1.29x); 4x16x112x112 and 2x24x112x112 f32 medians
    /// 1.38x to 1.57x; adaptive averages (large windows) unchanged. Eight windows for
    /// averages and max without indices, which measured 0.99x to 1.08x against four
    /// (medians); four with indices (a value and an index register each: eight measured a
    /// median 0.90x with AVX-512's masks, and would spill AVX2's sixteen registers).
    #[inline(always)]
    fn narrow_group_len(op: WindowOp) -> usize {
        match op {
            WindowOp::Avg | WindowOp::Max => 8,
            WindowOp::MaxWithIndex { .. } => 4,
        }
    }

    /// Whether `group`'s windows all have the first one's taps, shifted along the row: the
    /// same rows and the same number of columns at the same dilation, at least one tap.
    #[inline(always)]
    pub(super) fn same_taps(group: &[OutputWindow]) -> bool {
        let ((h0, h1, _), (w0, w1, dw)) = (group[0].h, group[0].w);
        h0 < h1
            && w0 < w1
            && group.iter().all(|o| o.h == group[0].h && o.w.2 == dw && o.w.1 - o.w.0 == w1 - w0)
    }

    /// Channels `0..c_end` (a multiple of 8 below 32) of the [`same_taps`] windows `group`
    /// ([`narrow_group_len`] of them), pooled side by side in blocks of 8 channels, each
    /// window by the same operations in the same order as [`pool_windows`]' one-window
    /// blocks, so the same bits; `y` (and `index` with indices) at the group's first output.
    ///
    /// # Safety
    /// As [`pool_windows`] for these windows; `WIDE` as [`pool_windows_wide`].
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn narrow_group<const WIDE: bool>(
        kind: TileKind,
        op: WindowOp,
        image: *const u8,
        (width, c): (usize, usize),
        group: &[OutputWindow],
        c_end: usize,
        (y, stream): (*mut u8, bool),
        index: *mut i64,
    ) {
        let elem = kind.bytes();
        let mut c0 = 0;
        while c0 < c_end {
            let (image, y) = (image.add(c0 * elem), (y.add(c0 * elem), stream));
            let px = (width, c);
            match (op, group.len()) {
                (WindowOp::Avg, 8) => narrow_avg::<8>(kind, image, px, group, y),
                (WindowOp::Max, 8) => {
                    if !narrow_max_unless_nan::<8>(kind, image, px, group, y) {
                        narrow_max::<8, false>(kind, image, px, group, y, std::ptr::null_mut())
                    }
                }
                (WindowOp::MaxWithIndex { wide: true }, 4) if WIDE && kind == TileKind::F32 => {
                    super::avx512::narrow_max_index_f32::<4>(image, px, group, y.0, index.add(c0))
                }
                (WindowOp::MaxWithIndex { .. }, 4) => {
                    narrow_max::<4, true>(kind, image, px, group, y, index.add(c0))
                }
                _ => unreachable!("narrow_group_len gives these lengths"),
            }
            c0 += 8;
        }
    }

    /// Eight channels of `G` average windows side by side: [`avg_block`]'s sums and divisions.
    #[inline(always)]
    unsafe fn narrow_avg<const G: usize>(
        kind: TileKind,
        image: *const u8,
        (width, c): (usize, usize),
        group: &[OutputWindow],
        (y, stream): (*mut u8, bool),
    ) {
        let first = super::group_first_pixels(group, width);
        let mut sum = [_mm256_setzero_ps(); 8];
        window_taps!(ChannelWindow { width, c, h: group[0].h, w: group[0].w }, false, |at| {
            // Every window's taps are the first one's, shifted along the row (`same_taps`).
            let off = at - first[0];
            each_window!(G, |Q| {
                sum[Q] = _mm256_add_ps(sum[Q], load8(kind, image, (first[Q] + off) * c));
            });
        });
        each_window!(G, |Q| {
            let (d0, d1) = group[Q].divisors;
            let mut s = _mm256_div_ps(sum[Q], _mm256_set1_ps(d0));
            if d1 != 1.0 {
                s = _mm256_div_ps(s, _mm256_set1_ps(d1));
            }
            store_tile::<1, true>(kind, y.add(Q * c * kind.bytes()), 0, [s], stream);
        });
    }

    /// Eight channels of `G` max windows side by side by [`max_block_unless_nan`]'s rule
    /// (`vmaxps` and a NaN probe; here one probe per two windows): `false`, having written
    /// nothing, where a tap was NaN (or the probe's sum overflowed to `inf - inf`).
    #[inline(always)]
    unsafe fn narrow_max_unless_nan<const G: usize>(
        kind: TileKind,
        image: *const u8,
        (width, c): (usize, usize),
        group: &[OutputWindow],
        (y, stream): (*mut u8, bool),
    ) -> bool {
        let first = super::group_first_pixels(group, width);
        let mut max = [_mm256_setzero_ps(); 8];
        let mut probe = [_mm256_setzero_ps(); 4];
        each_window!(G, |Q| {
            max[Q] = load8(kind, image, first[Q] * c);
            probe[Q / 2] = _mm256_add_ps(probe[Q / 2], max[Q]);
        });
        window_taps!(ChannelWindow { width, c, h: group[0].h, w: group[0].w }, true, |at| {
            // Every window's taps are the first one's, shifted along the row (`same_taps`).
            let off = at - first[0];
            each_window!(G, |Q| {
                let v = load8(kind, image, (first[Q] + off) * c);
                max[Q] = _mm256_max_ps(v, max[Q]);
                probe[Q / 2] = _mm256_add_ps(probe[Q / 2], v);
            });
        });
        let mut any_nan = _mm256_setzero_ps();
        for p in probe {
            any_nan = _mm256_or_ps(any_nan, _mm256_cmp_ps::<_CMP_UNORD_Q>(p, p));
        }
        if _mm256_movemask_ps(any_nan) != 0 {
            return false;
        }
        each_window!(G, |Q| {
            store_tile::<1, false>(kind, y.add(Q * c * kind.bytes()), 0, [max[Q]], stream);
        });
        true
    }

    /// Eight channels of `G` max windows side by side by [`max_tap`]'s exact rule, from each
    /// window's first tap, as [`max_block`] without `NAN_AS_INF`.
    #[inline(always)]
    unsafe fn narrow_max<const G: usize, const WITH_INDEX: bool>(
        kind: TileKind,
        image: *const u8,
        (width, c): (usize, usize),
        group: &[OutputWindow],
        (y, stream): (*mut u8, bool),
        index: *mut i64,
    ) {
        let first = super::group_first_pixels(group, width);
        let mut max = [_mm256_setzero_ps(); 8];
        let mut at_max = [_mm256_setzero_si256(); 8];
        each_window!(G, |Q| {
            max[Q] = load8(kind, image, first[Q] * c);
            at_max[Q] = _mm256_set1_epi32(first[Q] as i32);
        });
        window_taps!(ChannelWindow { width, c, h: group[0].h, w: group[0].w }, true, |at| {
            // Every window's taps are the first one's, shifted along the row (`same_taps`).
            let off = at - first[0];
            each_window!(G, |Q| {
                let at = first[Q] + off;
                let v = load8(kind, image, at * c);
                max_tap::<WITH_INDEX>(v, &mut max[Q], &mut at_max[Q], _mm256_set1_epi32(at as i32));
            });
        });
        each_window!(G, |Q| {
            store_tile::<1, false>(kind, y.add(Q * c * kind.bytes()), 0, [max[Q]], stream);
            if WITH_INDEX {
                store_index8(index.add(Q * c), at_max[Q]);
            }
        });
    }

    /// Channels `c0..c0 + 8 * R` of one window, from its first tap ([`first_tap`]), by
    /// [`max_tap`]'s exact rule; or, with `NAN_AS_INF` (f32 with indices only), by the same
    /// rule in four operations a tap instead of five. The exact rule (`take = v > max ||
    /// isnan(v)`, then blend the max and the index) needs two compares and an `or`, because
    /// once `max` is NaN only a NaN may be taken, and no single predicate says "`v` is NaN
    /// or greater, but not when `max` is NaN". So the running max becomes a key with NaN read
    /// as +inf: `take = !(v <= key)` (one unordered compare) is then `v > max || isnan(v)` in
    /// every case, since a NaN max has key +inf, above which only a NaN lies. The key follows
    /// as `vmaxps(vminps(v, inf), key)` (`vminps` returns its second operand for a NaN,
    /// `vmaxps` its second on ties, so ties keep the first tap's bits, -0 or +0, as the
    /// strict `>` does), and with no value blend. Where the key ends below +inf it is the
    /// result's bits; where it is +inf (a NaN or +inf was taken) the result is the value at
    /// the kept index, as everywhere (PyTorch's max is always its index's tap), read back.
    /// Measured against the exact rule, alternating in one process: 1.04x to 1.06x on the 7x7
    /// tails (with the first tap's start, 1.09x to 1.12x against the round before); 0.92x to
    /// 0.95x on blocks of 8, which keep the exact rule (see [`max_blocks`]).
    #[inline(always)]
    unsafe fn max_block<const R: usize, const WITH_INDEX: bool, const NAN_AS_INF: bool>(
        kind: TileKind,
        image: *const u8,
        win: ChannelWindow,
        c0: usize,
        (y, stream): (*mut u8, bool),
        index: *mut i64,
    ) {
        debug_assert!(!NAN_AS_INF || (WITH_INDEX && kind == TileKind::F32));
        let inf = _mm256_set1_ps(f32::INFINITY);
        let first = win.first_pixel();
        let mut max = first_tap::<R>(kind, image, win, c0);
        if NAN_AS_INF {
            for m in max.iter_mut() {
                *m = _mm256_min_ps(*m, inf);
            }
        }
        let mut at_max = [_mm256_set1_epi32(first as i32); R];
        window_taps!(win, true, |at| {
            let here = _mm256_set1_epi32(at as i32);
            let v = load_tile::<R>(kind, image, at * win.c + c0);
            for (r, &v) in v.iter().enumerate() {
                if NAN_AS_INF {
                    let take = _mm256_cmp_ps::<_CMP_NLE_UQ>(v, max[r]);
                    max[r] = _mm256_max_ps(_mm256_min_ps(v, inf), max[r]);
                    at_max[r] = _mm256_blendv_epi8(at_max[r], here, _mm256_castps_si256(take));
                } else {
                    max_tap::<WITH_INDEX>(v, &mut max[r], &mut at_max[r], here);
                }
            }
        });
        store_tile::<R, false>(kind, y, c0, max, stream);
        if NAN_AS_INF {
            // The lanes whose key is +inf get their tap's value back (rare: inputs with NaN
            // or +inf). Every kept index is one of the window's taps, in bounds as they are.
            let mut fix = _mm256_setzero_ps();
            for &m in &max {
                fix = _mm256_or_ps(fix, _mm256_cmp_ps::<_CMP_EQ_OQ>(m, inf));
            }
            if _mm256_movemask_ps(fix) != 0 {
                let (image, y) = (image.cast::<f32>(), y.cast::<f32>());
                for (r, &at) in at_max.iter().enumerate() {
                    let mut lanes = [0i32; 8];
                    _mm256_storeu_si256(lanes.as_mut_ptr().cast(), at);
                    for (lane, &at) in lanes.iter().enumerate() {
                        let ch = c0 + 8 * r + lane;
                        *y.add(ch) = *image.add(at as usize * win.c + ch);
                    }
                }
            }
        }
        if WITH_INDEX {
            store_index_tile::<R>(kind, index, c0, at_max);
        }
    }

    /// The start of a max over channels `c0..c0 + 8 * R` of one window: its first tap (`h0`,
    /// `w0`), as [`load_tile`] registers. PyTorch starts from -inf with that tap's index, and
    /// the tap is then taken (its value, its index) or is -inf (the same), so the taps after
    /// it are all that is left to compare: one tap less. A dilated window can hold no input
    /// element at all (its first tap lands past the input); that start is -inf, unread.
    #[inline(always)]
    unsafe fn first_tap<const R: usize>(
        kind: TileKind,
        image: *const u8,
        win: ChannelWindow,
        c0: usize,
    ) -> [__m256; R] {
        let ((h0, h1, _), (w0, w1, _)) = (win.h, win.w);
        if h0 < h1 && w0 < w1 {
            load_tile::<R>(kind, image, win.first_pixel() * win.c + c0)
        } else {
            [_mm256_set1_ps(f32::NEG_INFINITY); R]
        }
    }

    /// Channels `c0..c0 + 8 * R` of one average window, or of one pass over some of its rows
    /// (see [`row_passes`]): a first pass starts from zero, a later one from the f32 running
    /// sums the previous pass left in `partial`; the last pass divides and stores the result,
    /// the others store their running sums. The sums see the taps in the same order either way.
    #[inline(always)]
    unsafe fn avg_block<const R: usize, const TWO_DIVISIONS: bool, const FIRST: bool, const LAST: bool>(
        kind: TileKind,
        image: *const u8,
        win: ChannelWindow,
        c0: usize,
        divisors: (__m256, __m256),
        (y, stream): (*mut u8, bool),
        partial: *mut f32,
    ) {
        let mut sum = [_mm256_setzero_ps(); R];
        if !FIRST {
            for (r, s) in sum.iter_mut().enumerate() {
                *s = _mm256_loadu_ps(partial.add(c0 + 8 * r));
            }
        }
        window_taps!(win, false, |at| {
            let v = load_tile::<R>(kind, image, at * win.c + c0);
            for (s, v) in sum.iter_mut().zip(v) {
                *s = _mm256_add_ps(*s, v);
            }
        });
        if !LAST {
            for (r, &s) in sum.iter().enumerate() {
                _mm256_storeu_ps(partial.add(c0 + 8 * r), s);
            }
            return;
        }
        for s in sum.iter_mut() {
            *s = _mm256_div_ps(*s, divisors.0);
            if TWO_DIVISIONS {
                *s = _mm256_div_ps(*s, divisors.1);
            }
        }
        store_tile::<R, true>(kind, y, c0, sum, stream);
    }

    /// Windows with more taps than this, on images whose pixel stride is a multiple of 4 KiB,
    /// are swept in passes of at most this many taps.
    const TAPS_PER_PASS: usize = 9;

    /// How many of the window's rows each pass over the channels takes, when it is split into
    /// passes at all (`None`: one pass over every tap). A block's taps are
    /// all at the same channel offset, one pixel stride apart; when that stride is a multiple
    /// of 4 KiB (2048 f32 channels, 1024, ..., or 2048 bf16) every tap's cache line falls in
    /// the same L1 set, and more taps than the set has ways (8) evict each other's lines, and
    /// the prefetched ones, before use. Measured on the ResNet tail (7x7 -> 2x2 adaptive
    /// average, 16 taps): C = 2048 ran 2 to 2.6x slower than C = 2040; passes of at most 9
    /// taps (two rows) made it 2.3x faster in f32 and 1.5x in bf16. 3x3 windows (9 taps, 15%
    /// to 25% slower at C = 2048) measured no better split into 6 + 3 taps, so stay whole.
    /// The running sums go through a small C-wide f32 scratch between passes, in the same
    /// tap order, so the result is the same bits.
    #[inline(always)]
    fn row_passes(kind: TileKind, win: &ChannelWindow) -> Option<usize> {
        let stride_bytes = win.c * kind.bytes();
        if !stride_bytes.is_multiple_of(4096) {
            return None;
        }
        let ((h0, h1, dh), (w0, w1, dw)) = (win.h, win.w);
        let (rows, cols) = ((h1 - h0).div_ceil(dh), (w1 - w0).div_ceil(dw));
        let per_pass = (TAPS_PER_PASS / cols).max(1);
        (rows * cols > TAPS_PER_PASS && per_pass < rows).then_some(per_pass)
    }

    std::thread_local! {
        /// The running sums between passes ([`row_passes`]).
        static PASS_SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    }

    /// This thread's pass scratch, at least `c` elements, as a raw pointer: the passes run in
    /// the caller's AVX2 function, not in a closure (which would not inherit the target
    /// feature, so its intrinsics would not inline: measured 10x to 40x slower). The pointer
    /// stays valid until the next call on this thread, the only thing that resizes the
    /// buffer; no kernel calls itself.
    fn pass_scratch(c: usize) -> *mut f32 {
        PASS_SCRATCH.with_borrow_mut(|sums| {
            if sums.len() < c {
                sums.resize(c, 0.0);
            }
            sums.as_mut_ptr()
        })
    }

    #[inline(always)]
    unsafe fn avg_passes<const TWO_DIVISIONS: bool, const WIDE: bool>(
        kind: TileKind,
        image: *const u8,
        win: ChannelWindow,
        c_end: usize,
        divisors: (f32, f32),
        y: (*mut u8, bool),
    ) {
        let divisors = (_mm256_set1_ps(divisors.0), _mm256_set1_ps(divisors.1));
        let Some(per_pass) = row_passes(kind, &win) else {
            let no_scratch = std::ptr::null_mut();
            avg_blocks::<TWO_DIVISIONS, true, true, WIDE>(kind, image, win, c_end, divisors, y, no_scratch);
            return;
        };
        let partial = pass_scratch(c_end);
        let (h0, h1, dh) = win.h;
        let step = per_pass * dh;
        let mut h = h0;
        while h < h1 {
            let end = h1.min(h + step);
            let pass = ChannelWindow { h: (h, end, dh), ..win };
            match (h == h0, end == h1) {
                (true, _) => avg_blocks::<TWO_DIVISIONS, true, false, WIDE>(
                    kind, image, pass, c_end, divisors, y, partial,
                ),
                (false, false) => avg_blocks::<TWO_DIVISIONS, false, false, WIDE>(
                    kind, image, pass, c_end, divisors, y, partial,
                ),
                (false, true) => avg_blocks::<TWO_DIVISIONS, false, true, WIDE>(
                    kind, image, pass, c_end, divisors, y, partial,
                ),
            }
            h = end;
        }
    }

    #[inline(always)]
    unsafe fn avg_blocks<const TWO_DIVISIONS: bool, const FIRST: bool, const LAST: bool, const WIDE: bool>(
        kind: TileKind,
        image: *const u8,
        win: ChannelWindow,
        c_end: usize,
        divisors: (__m256, __m256),
        y: (*mut u8, bool),
        partial: *mut f32,
    ) {
        channel_blocks!(c_end, !WIDE, |R, c0| if WIDE && R == 4 {
            super::avx512::avg_block32::<TWO_DIVISIONS, FIRST, LAST>(
                kind, image, win, c0, divisors, y.0, partial,
            )
        } else {
            avg_block::<R, TWO_DIVISIONS, FIRST, LAST>(kind, image, win, c0, divisors, y, partial)
        });
    }

    /// Channels `c0..c0 + 8 * R` of one window without indices, by `vmaxps(v, max)`, which is
    /// `v > max ? v : max`: PyTorch's rule for every tap that is not NaN (ties, signed zeros
    /// included, keep the earlier tap). A NaN tap would be dropped, so a per-register sum of
    /// the taps probes for one (NaN in, NaN out; `inf - inf` trips it too). A tripped block
    /// returns `false` having written nothing, and the caller redoes it with [`max_block`]'s
    /// exact rule. The probe costs one add per tap, the exact rule's test and blend four
    /// operations.
    #[inline(always)]
    unsafe fn max_block_unless_nan<const R: usize>(
        kind: TileKind,
        image: *const u8,
        win: ChannelWindow,
        c0: usize,
        (y, stream): (*mut u8, bool),
    ) -> bool {
        // The first tap starts the max and the probe (NaN there or not).
        let mut max = first_tap::<R>(kind, image, win, c0);
        let mut probe = max;
        window_taps!(win, true, |at| {
            let v = load_tile::<R>(kind, image, at * win.c + c0);
            for r in 0..R {
                max[r] = _mm256_max_ps(v[r], max[r]);
                probe[r] = _mm256_add_ps(probe[r], v[r]);
            }
        });
        let mut any_nan = _mm256_setzero_ps();
        for p in probe {
            any_nan = _mm256_or_ps(any_nan, _mm256_cmp_ps::<_CMP_UNORD_Q>(p, p));
        }
        if _mm256_movemask_ps(any_nan) != 0 {
            return false;
        }
        store_tile::<R, false>(kind, y, c0, max, stream);
        true
    }

    /// bf16 or f16 max with indices over channels `c0..c0 + 32` of one window, compared as
    /// 16-bit integers instead of widened to f32: half the lanes per operation and no rounding
    /// at the store. A bf16's or f16's bits are its sign and magnitude, and for the non-NaN
    /// values the key `sign ? -magnitude : magnitude` (one mask, one `vpsignw`) orders them as
    /// floats do, with -0 and +0 equal; so `key(v) > key(max)` is PyTorch's `v > max` wherever
    /// no tap is NaN, and the kept value is the taken tap's own bits, as PyTorch keeps it.
    /// Indices stay u16 in the lanes (planes up to 65536 elements, checked by the caller). A
    /// running max of the magnitudes probes for NaN (a magnitude above infinity's: `0x7f80`
    /// for bf16, `0x7c00` for f16); a block that saw one returns `false`, having written
    /// nothing, and the caller redoes it with the exact f32 rule. Per tap and 16 channels:
    /// seven integer operations, against thirteen widened to f32 (bf16 1.35x to 1.5x on 3x3
    /// stride-2 windows, f16 1.3x to 1.7x, to bf16's speed). AVX-512 masks for the
    /// f32 rule measured no faster: on Zen 4 a 512-bit operation costs two 256-bit ones.
    ///
    /// # Safety
    /// As [`max_block`]'s for bf16 or f16, the type `kind` names (AVX2 present, every tap of
    /// channels `c0..c0 + 32` in bounds, `y` and `index` writable there), and every tap's plane
    /// index below 65536.
    #[inline(always)]
    unsafe fn max_block_keys16(
        kind: TileKind,
        image: *const u8,
        win: ChannelWindow,
        c0: usize,
        y: *mut u8,
        index: *mut i64,
    ) -> bool {
        // Infinity's magnitude: -inf (sign bit and this) starts the max, as PyTorch's does.
        let infinity: i16 = if kind == TileKind::F16 { 0x7c00 } else { 0x7f80 };
        let magnitude = _mm256_set1_epi16(0x7fff);
        let mut key_max = [_mm256_set1_epi16(-infinity); 2];
        let mut max = [_mm256_set1_epi16(infinity | i16::MIN); 2];
        let mut at_max = [_mm256_set1_epi16(win.first_pixel() as u16 as i16); 2];
        let mut probe = [_mm256_setzero_si256(); 2];
        let image = image.cast::<u16>();
        window_taps!(win, false, |at| {
            let here = _mm256_set1_epi16(at as u16 as i16);
            let p = image.add(at * win.c + c0);
            for r in 0..2 {
                let raw = _mm256_loadu_si256(p.add(16 * r).cast());
                let mag = _mm256_and_si256(raw, magnitude);
                probe[r] = _mm256_max_epu16(probe[r], mag);
                let key = _mm256_sign_epi16(mag, raw);
                let take = _mm256_cmpgt_epi16(key, key_max[r]);
                key_max[r] = _mm256_max_epi16(key, key_max[r]);
                max[r] = _mm256_blendv_epi8(max[r], raw, take);
                at_max[r] = _mm256_blendv_epi8(at_max[r], here, take);
            }
        });
        let nan = _mm256_cmpgt_epi16(_mm256_max_epu16(probe[0], probe[1]), _mm256_set1_epi16(infinity));
        if _mm256_movemask_epi8(nan) != 0 {
            return false;
        }
        let y = y.cast::<u16>().add(c0);
        for r in 0..2 {
            _mm256_storeu_si256(y.add(16 * r).cast(), max[r]);
            for half in 0..2 {
                let lanes = if half == 0 {
                    _mm256_castsi256_si128(at_max[r])
                } else {
                    _mm256_extracti128_si256::<1>(at_max[r])
                };
                let p = index.add(c0 + 16 * r + 8 * half);
                _mm256_storeu_si256(p.cast(), _mm256_cvtepu16_epi64(lanes));
                _mm256_storeu_si256(p.add(4).cast(), _mm256_cvtepu16_epi64(_mm_srli_si128::<8>(lanes)));
            }
        }
        true
    }

    /// See [`super::max_window`].
    #[target_feature(enable = "avx2,f16c")]
    pub(super) unsafe fn max_window<const WITH_INDEX: bool>(
        kind: TileKind,
        image: *const u8,
        win: ChannelWindow,
        c_end: usize,
        y: *mut u8,
        index: *mut i64,
    ) {
        with_kind_literal!(kind, |kind| max_blocks::<WITH_INDEX, false>(
            kind,
            image,
            win,
            c_end,
            (y, false),
            index
        ));
    }

    #[inline(always)]
    unsafe fn max_blocks<const WITH_INDEX: bool, const WIDE: bool>(
        kind: TileKind,
        image: *const u8,
        win: ChannelWindow,
        c_end: usize,
        (y, stream): (*mut u8, bool),
        index: *mut i64,
    ) {
        // bf16 and f16 blocks of 32 compare integer keys when their indices fit its u16 lanes,
        // that is when the window's last tap's does (the largest); f32 blocks of 32 keep NaN
        // out of their running max. Blocks of 8 take the plain rule: on 8 channels the
        // NaN-free max's check at the store cost more than it saved (0.94x on 1x8x512x512).
        let keys = WITH_INDEX && kind != TileKind::F32 && {
            let ((_, h1, _), (_, w1, _)) = (win.h, win.w);
            (h1 - 1) * win.width + (w1 - 1) <= u16::MAX as usize
        };
        channel_blocks!(c_end, |R, c0| {
            let done = R == 4
                && if !WITH_INDEX {
                    if WIDE {
                        super::avx512::max_block32_unless_nan(kind, image, win, c0, y)
                    } else {
                        max_block_unless_nan::<R>(kind, image, win, c0, (y, stream))
                    }
                } else if kind == TileKind::F32 {
                    if WIDE {
                        super::avx512::max_index_block32(image, win, c0, y, index)
                    } else {
                        max_block::<R, true, true>(kind, image, win, c0, (y, false), index)
                    }
                    true
                } else {
                    keys && max_block_keys16(kind, image, win, c0, y, index)
                };
            if !done {
                max_block::<R, WITH_INDEX, false>(kind, image, win, c0, (y, stream), index);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The AVX-512 indexed max's shapes: f32 only; on Intel wide pixels only while the input
    /// fits in L2, elsewhere every shape.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn wide_indexed_max_only_where_measured_faster() {
        for intel in [true, false] {
            assert!(!indexed_max_shape_is_wide(TileKind::Bf16, 64, 1 << 20, intel));
            assert!(!indexed_max_shape_is_wide(TileKind::Bf16, 2048, 3 << 20, intel));
            assert!(indexed_max_shape_is_wide(TileKind::F32, 64, 1 << 30, intel));
            assert!(indexed_max_shape_is_wide(TileKind::F32, 1023, 1 << 30, intel));
            assert!(indexed_max_shape_is_wide(TileKind::F32, 2048, 1 << 20, intel));
        }
        let wide_pixels_past_l2 = [(2048, 3 << 20), (1024, WIDE_INDEXED_MAX_INPUT_BYTES + 1)];
        for (c, bytes) in wide_pixels_past_l2 {
            assert!(!indexed_max_shape_is_wide(TileKind::F32, c, bytes, true));
            assert!(indexed_max_shape_is_wide(TileKind::F32, c, bytes, false));
        }
    }

    /// The window kernels' prefetching form (runs of windows, hints ahead) writes the same
    /// bits as the plain one: 3x3 stride-2 windows (some dilated), narrow and wide pixels, f32
    /// and bf16, average, max and max with indices, over rows of more windows than the hints
    /// run ahead; and only wide pixels of inputs past the caches whose windows share rows
    /// prefetch, on CPUs where that was measured faster.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn prefetching_window_runs_give_the_same_bits() {
        if !has_avx2() {
            return;
        }
        assert!(window_prefetch_rule(64 << 20, 96, (3, 2), true));
        assert!(!window_prefetch_rule(64 << 20, 96, (3, 2), false));
        assert!(!window_prefetch_rule(64 << 20, 96, (2, 2), true));
        assert!(!window_prefetch_rule(8 << 20, 96, (3, 2), true));
        assert!(!window_prefetch_rule(64 << 20, 24, (3, 2), true));
        let (h, w) = (7, 2 * (PREFETCH_AHEAD_WINDOWS + 2 * PREFETCH_RUN_WINDOWS) + 3);
        for (kind, c) in
            [(TileKind::F32, 16), (TileKind::F32, 40), (TileKind::Bf16, 24), (TileKind::Bf16, 96)]
        {
            let elem = kind.bytes();
            let values: Vec<f32> =
                (0..h * w * c).map(|i| ((i * 7919 % 1009) as f32 - 500.0) / 64.0).collect();
            let image: Vec<u8> = match kind {
                TileKind::F32 => values.iter().flat_map(|v| v.to_ne_bytes()).collect(),
                _ => values.iter().flat_map(|&v| half::bf16::from_f32(v).to_bits().to_ne_bytes()).collect(),
            };
            for dilation in [1, 2] {
                let span = 2 * dilation + 1;
                let out_w = (w + 2 - span) / 2 + 1;
                for op in [WindowOp::Avg, WindowOp::Max, WindowOp::MaxWithIndex { wide: false }] {
                    if op == WindowOp::Avg && dilation > 1 {
                        continue;
                    }
                    for oh in 0..(h + 2 - span) / 2 + 1 {
                        // Taps `2o - 1 + k * dilation` (padding 1), those inside `0..len`.
                        let clip = |o: usize, len: usize| {
                            let first = if o == 0 { dilation - 1 } else { 2 * o - 1 };
                            (first, (2 * o + span - 1).min(len), dilation)
                        };
                        let windows: Vec<OutputWindow> = (0..out_w)
                            .map(|ow| OutputWindow { h: clip(oh, h), w: clip(ow, w), divisors: (3.0, 3.0) })
                            .collect();
                        let mut outputs = Vec::new();
                        for prefetch in [false, true] {
                            let mut y = vec![0u8; out_w * c * elem];
                            let mut index = vec![0i64; out_w * c];
                            let with_index = matches!(op, WindowOp::MaxWithIndex { .. });
                            // SAFETY: AVX2 is present (checked above); every window lies inside the
                            // `h` x `w` image of `c` channels; `y` and `index` hold `out_w * c`
                            // elements; no streaming; the indexed max is not the wide one.
                            unsafe {
                                pool_windows(
                                    kind,
                                    op,
                                    (image.as_ptr(), prefetch),
                                    (w, c),
                                    &windows,
                                    c,
                                    (y.as_mut_ptr(), false),
                                    if with_index { index.as_mut_ptr() } else { std::ptr::null_mut() },
                                );
                            }
                            outputs.push((y, index));
                        }
                        assert!(
                            outputs[0] == outputs[1],
                            "{kind:?} c={c} {op:?} dilation {dilation} row {oh}"
                        );
                    }
                }
            }
        }
    }

    /// f32 values at every exponent and sign, with the mantissas where rounding to nearest
    /// even turns (ties, one below and above), NaNs with payloads, infinities and subnormals.
    fn bf16_rounding_cases() -> Vec<f32> {
        let mantissas =
            [0, 1, 0x7fff, 0x8000, 0x8001, 0x1_7fff, 0x1_8000, 0x1_8001, 0x40_0000, 0x7f_ffff, 0x12_3456];
        let mut v = Vec::new();
        for e in 0..=255u32 {
            for m in mantissas {
                for sign in [0, 1u32 << 31] {
                    v.push(f32::from_bits(sign | e << 23 | m));
                }
            }
        }
        v
    }

    /// `store_slice` against `store`, value by value, on both sides of the AVX-512 BF16 path:
    /// blocks of 32 with and without a subnormal, and tails, at several offsets.
    #[test]
    fn bf16_slices_round_as_store_does() {
        let cases = bf16_rounding_cases();
        // Every case (blocks with subnormals take the scalar form), and the normal ones alone
        // (whole blocks take vcvtne2ps2bf16).
        let normal: Vec<f32> = cases.iter().copied().filter(|f| !f.is_subnormal()).collect();
        for src in [&cases[..], &normal[..]] {
            for start in [0, 1, 5, 31] {
                for len in [0, 3, 32, 33, 64 + 17, src.len() - start] {
                    let src = &src[start..start + len];
                    let mut got = vec![half::bf16::ZERO; len];
                    store_slice::<half::bf16>(&mut got, src);
                    for (g, &f) in got.iter().zip(src) {
                        let want = store::<half::bf16>(f);
                        assert_eq!(g.to_bits(), want.to_bits(), "{:#010x}", f.to_bits());
                    }
                }
            }
        }
    }

    /// Every f32 bit pattern through `store_slice` and `store` (about 10 s in release; run
    /// with `cargo test --release -- --ignored every_f32`).
    #[test]
    #[ignore]
    fn bf16_slices_round_as_store_does_for_every_f32() {
        let mut src = vec![0f32; 1 << 20];
        let mut got = vec![half::bf16::ZERO; 1 << 20];
        for chunk in 0..(1u64 << 12) {
            for (k, f) in src.iter_mut().enumerate() {
                *f = f32::from_bits(((chunk << 20) as u32) | k as u32);
            }
            store_slice::<half::bf16>(&mut got, &src);
            for (g, &f) in got.iter().zip(&src) {
                assert_eq!(g.to_bits(), store::<half::bf16>(f).to_bits(), "{:#010x}", f.to_bits());
            }
        }
    }

    #[test]
    fn inline_f16_widening_matches_half_for_every_value() {
        for bits in 0..=u16::MAX {
            let want = half::f16::from_bits(bits).to_f32();
            let got: f32 = load(half::f16::from_bits(bits));
            assert!(got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()), "{bits:#06x}");
        }
    }

    #[test]
    fn inline_f16_rounding_matches_half() {
        // Every 2^9-th f32 bit pattern (all exponents, both signs, NaNs, infinities), each
        // with the 13 bits f16 drops set to ties, just below and above them, and random; plus
        // every f16 value and the midpoints between neighbours.
        let mut r = crate::cpu::test_util::Lcg::new(5);
        let check = |bits: u32| {
            let f = f32::from_bits(bits);
            let got = f32_to_f16_bits(f);
            let want = half::f16::from_f32(f).to_bits();
            let nan = |b: u16| b & 0x7fff > 0x7c00;
            assert!(
                got == want || (nan(got) && nan(want) && got & 0x8000 == want & 0x8000),
                "{bits:#010x}: {got:#06x} vs {want:#06x}"
            );
            let stored: half::f16 = store(f);
            assert_eq!(stored.to_bits(), got);
        };
        for hi in (0..=u32::MAX).step_by(1 << 9) {
            for low in [0, 0x0fff, 0x1000, 0x1001, 0x1fff, r.next_u32() & 0x1fff] {
                check((hi & !0x1fff) | low);
            }
        }
        for h in 0..=u16::MAX {
            let f = half::f16::from_bits(h).to_f32();
            check(f.to_bits());
            check(f.to_bits().wrapping_add(0x1000));
            check(f.to_bits() ^ 0x8000_0000);
        }
    }

    #[test]
    fn inline_bf16_rounding_matches_half() {
        // Every 2^11-th f32 bit pattern (all exponents, both signs, ties, NaNs, infinities) plus
        // the edges around them.
        let mut r = crate::cpu::test_util::Lcg::new(3);
        for hi in (0..=u32::MAX).step_by(1 << 11) {
            for bits in [hi, hi | 0x7fff, hi | 0x8000, hi | 0x8001, hi | (r.next_u32() & 0xffff)] {
                let f = f32::from_bits(bits);
                let got: half::bf16 = store(f);
                let want = half::bf16::from_f32(f);
                assert_eq!(got.to_bits(), want.to_bits(), "{bits:#010x}");
            }
        }
    }
}

/// 32-channel blocks in AVX-512 registers for the `*_wide` entries of [`avx2`] (see
/// [`wide_blocks`]): per tap one load and two additions or maxima (f32: channels `c0..c0 + 16`
/// and `c0 + 16..c0 + 32`; bf16: the even and the odd channels, split by a shift and a mask)
/// instead of four of each, the same operations per channel in the same order as [`avx2`]'s
/// blocks, so the same bits. Running sums between passes and the separable path's row sums
/// use this lane order, and only this module reads them back.
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512 {
    use super::{ChannelWindow, TileKind};
    use std::arch::x86_64::*;

    #[inline(always)]
    unsafe fn load32(kind: TileKind, p: *const u8, at: usize) -> [__m512; 2] {
        match kind {
            TileKind::F32 => {
                let p = p.cast::<f32>().add(at);
                [_mm512_loadu_ps(p), _mm512_loadu_ps(p.add(16))]
            }
            TileKind::Bf16 => {
                let raw = _mm512_loadu_si512(p.cast::<u16>().add(at).cast());
                [
                    _mm512_castsi512_ps(_mm512_slli_epi32::<16>(raw)),
                    _mm512_castsi512_ps(_mm512_and_si512(raw, _mm512_set1_epi32(0xffff_0000_u32 as i32))),
                ]
            }
            TileKind::F16 => {
                let p = p.cast::<u16>().add(at);
                [
                    _mm512_cvtph_ps(_mm256_loadu_si256(p.cast())),
                    _mm512_cvtph_ps(_mm256_loadu_si256(p.add(16).cast())),
                ]
            }
        }
    }

    /// [`super::avx2::to_bf16`]'s rounding (nearest even, NaN quieted), left in the high 16
    /// bits of each lane.
    #[inline(always)]
    pub(crate) unsafe fn bf16_in_high_half(v: __m512) -> __m512i {
        let quiet = _mm512_or_si512(_mm512_castps_si512(v), _mm512_set1_epi32(0x40 << 16));
        let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v);
        _mm512_mask_blend_epi32(nan, finite_bf16_in_high_half(v), quiet)
    }

    /// [`bf16_in_high_half`] for lanes known not to be NaN (round to nearest even only): two
    /// operations fewer, for kernels whose inputs were checked finite.
    #[inline(always)]
    pub(crate) unsafe fn finite_bf16_in_high_half(v: __m512) -> __m512i {
        let bits = _mm512_castps_si512(v);
        let lsb = _mm512_and_si512(_mm512_srli_epi32::<16>(bits), _mm512_set1_epi32(1));
        _mm512_add_epi32(_mm512_add_epi32(bits, _mm512_set1_epi32(0x7fff)), lsb)
    }

    #[inline(always)]
    unsafe fn store32(kind: TileKind, y: *mut u8, at: usize, v: [__m512; 2]) {
        match kind {
            TileKind::F32 => {
                let y = y.cast::<f32>().add(at);
                _mm512_storeu_ps(y, v[0]);
                _mm512_storeu_ps(y.add(16), v[1]);
            }
            TileKind::Bf16 => {
                let even = _mm512_srli_epi32::<16>(bf16_in_high_half(v[0]));
                let odd =
                    _mm512_and_si512(bf16_in_high_half(v[1]), _mm512_set1_epi32(0xffff_0000_u32 as i32));
                _mm512_storeu_si512(y.cast::<u16>().add(at).cast(), _mm512_or_si512(even, odd));
            }
            TileKind::F16 => {
                let y = y.cast::<u16>().add(at);
                _mm256_storeu_si256(y.cast(), _mm512_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v[0]));
                _mm256_storeu_si256(y.add(16).cast(), _mm512_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v[1]));
            }
        }
    }

    /// The lanes of `v` that are subnormal: exponent bits all zero, mantissa not.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn subnormal_lanes(v: __m512) -> __mmask16 {
        let bits = _mm512_castps_si512(v);
        let zero_exponent = _mm512_testn_epi32_mask(bits, _mm512_set1_epi32(0x7f80_0000));
        _mm512_mask_test_epi32_mask(zero_exponent, bits, _mm512_set1_epi32(0x007f_ffff))
    }

    /// `dst[i] = bf16_bits(src[i])` (over the shorter of the two): `vcvtne2ps2bf16` on
    /// blocks of 32 without subnormals (which it flushes to zero), the scalar rounding on the
    /// rest. See [`super::store_slice`].
    ///
    /// # Safety
    /// The CPU has AVX-512 F, BW and BF16.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub(crate) unsafe fn store_bf16_slice(dst: &mut [u16], src: &[f32]) {
        let n = dst.len().min(src.len());
        let mut i = 0;
        while i + 32 <= n {
            // SAFETY: `i + 32 <= n`, so both loads read inside `src` and the store writes
            // inside `dst`; unaligned forms throughout.
            let (lo, hi) =
                unsafe { (_mm512_loadu_ps(src.as_ptr().add(i)), _mm512_loadu_ps(src.as_ptr().add(i + 16))) };
            let subnormal = subnormal_lanes(lo) | subnormal_lanes(hi);
            if subnormal == 0 {
                // The second operand fills the low 16 results.
                // SAFETY: `__m512bh` and `__m512i` are both 64-byte vectors of plain bits.
                let packed: __m512i = unsafe { std::mem::transmute(_mm512_cvtne2ps_pbh(hi, lo)) };
                // SAFETY: as the loads.
                unsafe { _mm512_storeu_si512(dst.as_mut_ptr().add(i).cast(), packed) };
            } else {
                for k in i..i + 32 {
                    dst[k] = super::bf16_bits(src[k]);
                }
            }
            i += 32;
        }
        for k in i..n {
            dst[k] = super::bf16_bits(src[k]);
        }
    }

    /// [`super::avx2`]'s `max_block_unless_nan` for 32 channels: `vmaxps` per tap with a
    /// running sum of the taps as the NaN probe; `false`, having written nothing, when the
    /// probe is NaN (the caller redoes the block with the exact rule).
    ///
    /// # Safety
    /// As that block's, and the CPU has AVX-512 F and BW.
    #[inline(always)]
    pub(super) unsafe fn max_block32_unless_nan(
        kind: TileKind,
        image: *const u8,
        win: ChannelWindow,
        c0: usize,
        y: *mut u8,
    ) -> bool {
        let ((h0, h1, dh), (w0, w1, dw)) = (win.h, win.w);
        let mut max = [_mm512_set1_ps(f32::NEG_INFINITY); 2];
        let mut probe = [_mm512_setzero_ps(); 2];
        let mut h = h0;
        while h < h1 {
            let mut w = w0;
            while w < w1 {
                let v = load32(kind, image, (h * win.width + w) * win.c + c0);
                for r in 0..2 {
                    max[r] = _mm512_max_ps(v[r], max[r]);
                    probe[r] = _mm512_add_ps(probe[r], v[r]);
                }
                w += dw;
            }
            h += dh;
        }
        let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(probe[0], probe[0])
            | _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(probe[1], probe[1]);
        if nan != 0 {
            return false;
        }
        store32(kind, y, c0, max);
        true
    }

    /// Eight f32 channels of `G` max windows with indices side by side (a narrow group of
    /// [`super::avx2::same_taps`] windows), by [`max_index_block32`]'s rule in 256-bit
    /// registers: per tap and window one compare into a mask register, one masked minimum
    /// (the key) and one masked move (the index), against the AVX2 rule's two compares, an
    /// `or` and two three-uop blends; the same bits.
    ///
    /// # Safety
    /// As [`super::avx2::pool_windows`] for f32 and these windows (`image`, `y` and `index`
    /// at the block's first channel), and the CPU has AVX-512 F, BW and VL.
    #[inline(always)]
    pub(super) unsafe fn narrow_max_index_f32<const G: usize>(
        image: *const u8,
        (width, c): (usize, usize),
        group: &[super::OutputWindow],
        y: *mut u8,
        index: *mut i64,
    ) {
        let (image, y) = (image.cast::<f32>(), y.cast::<f32>());
        let inf = _mm256_set1_ps(f32::INFINITY);
        let first = super::group_first_pixels(group, width);
        let mut key = [_mm256_setzero_ps(); 8];
        let mut at_max = [_mm256_setzero_si256(); 8];
        each_window!(G, |Q| {
            key[Q] = _mm256_min_ps(_mm256_loadu_ps(image.add(first[Q] * c)), inf);
            at_max[Q] = _mm256_set1_epi32(first[Q] as i32);
        });
        window_taps!(ChannelWindow { width, c, h: group[0].h, w: group[0].w }, true, |at| {
            // Every window's taps are the first one's, shifted along the row (`same_taps`).
            let off = at - first[0];
            each_window!(G, |Q| {
                let at = first[Q] + off;
                let v = _mm256_loadu_ps(image.add(at * c));
                let take = _mm256_cmp_ps_mask::<_CMP_NLE_UQ>(v, key[Q]);
                key[Q] = _mm256_mask_min_ps(key[Q], take, v, inf);
                at_max[Q] = _mm256_mask_mov_epi32(at_max[Q], take, _mm256_set1_epi32(at as i32));
            });
        });
        each_window!(G, |Q| {
            let (y, index) = (y.add(Q * c), index.add(Q * c));
            _mm256_storeu_ps(y, key[Q]);
            _mm512_storeu_si512(index.cast(), _mm512_cvtepi32_epi64(at_max[Q]));
            // Rare: inputs with NaN or +inf. Every kept index is one of the window's taps.
            let mut fix = _mm256_cmp_ps_mask::<_CMP_EQ_OQ>(key[Q], inf);
            if fix != 0 {
                let mut lanes = [0i32; 8];
                _mm256_storeu_si256(lanes.as_mut_ptr().cast(), at_max[Q]);
                while fix != 0 {
                    let lane = fix.trailing_zeros() as usize;
                    *y.add(lane) = *image.add(lanes[lane] as usize * c + lane);
                    fix &= fix - 1;
                }
            }
        });
    }

    /// [`super::avx2`]'s `max_block` with indices for 32 f32 channels (see
    /// [`super::wide_indexed_max`]), by the same key as its `NAN_AS_INF` form: the running max
    /// with NaN read as +inf, so that `take = !(v <= key)`, one unordered compare, is
    /// PyTorch's `v > max || isnan(v)`. A taken tap's key is `min(v, inf)` (`vminps` gives
    /// its second operand for a NaN, so +inf), written under the mask with the index; ties
    /// are not taken and keep the earlier tap's bits. Lanes whose key ends at +inf (a NaN or
    /// +inf was taken) get their kept tap's value back, as there.
    ///
    /// # Safety
    /// As that block's for f32, and the CPU has AVX-512 F and BW.
    #[inline(always)]
    pub(super) unsafe fn max_index_block32(
        image: *const u8,
        win: ChannelWindow,
        c0: usize,
        y: *mut u8,
        index: *mut i64,
    ) {
        let ((h0, h1, dh), (w0, w1, dw)) = (win.h, win.w);
        let (image, y) = (image.cast::<f32>(), y.cast::<f32>());
        let inf = _mm512_set1_ps(f32::INFINITY);
        let first = win.first_pixel();
        // PyTorch starts from -inf with the first tap's index, and the first tap is then taken
        // or is -inf: the same as starting from it (a dilated window may have no tap at all).
        let mut key = [_mm512_set1_ps(f32::NEG_INFINITY); 2];
        if h0 < h1 && w0 < w1 {
            let p = image.add(first * win.c + c0);
            key = [_mm512_min_ps(_mm512_loadu_ps(p), inf), _mm512_min_ps(_mm512_loadu_ps(p.add(16)), inf)];
        }
        let mut at_max = [_mm512_set1_epi32(first as i32); 2];
        let mut h = h0;
        let mut w = w0 + dw;
        while h < h1 {
            while w < w1 {
                let at = h * win.width + w;
                let here = _mm512_set1_epi32(at as i32);
                let p = image.add(at * win.c + c0);
                for r in 0..2 {
                    let v = _mm512_loadu_ps(p.add(16 * r));
                    let take = _mm512_cmp_ps_mask::<_CMP_NLE_UQ>(v, key[r]);
                    key[r] = _mm512_mask_min_ps(key[r], take, v, inf);
                    at_max[r] = _mm512_mask_mov_epi32(at_max[r], take, here);
                }
                w += dw;
            }
            h += dh;
            w = w0;
        }
        for r in 0..2 {
            let (y, index) = (y.add(c0 + 16 * r), index.add(c0 + 16 * r));
            _mm512_storeu_ps(y, key[r]);
            let at = at_max[r];
            _mm512_storeu_si512(index.cast(), _mm512_cvtepi32_epi64(_mm512_castsi512_si256(at)));
            _mm512_storeu_si512(
                index.add(8).cast(),
                _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64::<1>(at)),
            );
            // Rare: inputs with NaN or +inf. Every kept index is one of the window's taps, in
            // bounds as they are.
            let mut fix = _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(key[r], inf);
            if fix != 0 {
                let mut lanes = [0i32; 16];
                _mm512_storeu_si512(lanes.as_mut_ptr().cast(), at);
                while fix != 0 {
                    let lane = fix.trailing_zeros() as usize;
                    *y.add(lane) = *image.add(lanes[lane] as usize * win.c + c0 + 16 * r + lane);
                    fix &= fix - 1;
                }
            }
        }
    }

    /// [`super::column_block_sums`] for bf16, `G` blocks of 32 channels: each row's 32
    /// channels in one load, split into the even and the odd channels by a shift and a mask
    /// (as [`load32`]), two additions; every channel sees the same additions in the same
    /// order as the AVX2 blocks (so the same bits), at a third of their instructions per
    /// channel (AVX2 widens eight channels a load). The sums go back to channel order once
    /// per block of rows. NHWC bf16 GAP on the seed (96 channels) is bound by these
    /// instructions: see BENCHMARKS.md.
    ///
    /// # Safety
    /// As [`super::column_block_sums`] with `R = 4 * G` and bf16 data, and the CPU has
    /// AVX-512 F and BW.
    #[target_feature(enable = "avx2,f16c,avx512f,avx512bw")]
    pub(super) unsafe fn column_block_sums_bf16<const G: usize>(
        x: *const u8,
        (stride, prefetch_rows): (usize, usize),
        rows: usize,
        block_rows: usize,
        out: *mut f32,
    ) {
        // Lanes 0..16 of (even, odd) are channels 0, 2, .., 30 and 1, 3, .., 31.
        let first_half = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
        let second_half = _mm512_add_epi32(first_half, _mm512_set1_epi32(8));
        let mut r = 0;
        while r < rows {
            let end = rows.min(r + block_rows);
            let mut sum = [[_mm512_setzero_ps(); 2]; G];
            for row in r..end {
                if prefetch_rows > 0 {
                    super::prefetch_lines(x, (row + prefetch_rows) * stride * 2, 64 * G);
                }
                for (g, s) in sum.iter_mut().enumerate() {
                    let v = load32(TileKind::Bf16, x, row * stride + 32 * g);
                    s[0] = _mm512_add_ps(s[0], v[0]);
                    s[1] = _mm512_add_ps(s[1], v[1]);
                }
            }
            for (g, s) in sum.iter().enumerate() {
                let out = out.add(32 * g);
                let low = _mm512_permutex2var_ps(s[0], first_half, s[1]);
                let high = _mm512_permutex2var_ps(s[0], second_half, s[1]);
                _mm512_storeu_ps(out, _mm512_add_ps(_mm512_loadu_ps(out), low));
                _mm512_storeu_ps(out.add(16), _mm512_add_ps(_mm512_loadu_ps(out.add(16)), high));
            }
            r = end;
        }
    }

    /// [`super::avx2`]'s `sum_columns` for 32 channels: the sums of taps `w0..w1` of a row,
    /// stored at `out + c0` in this module's lane order.
    ///
    /// # Safety
    /// As that function's, and the CPU has AVX-512 F and BW.
    #[inline(always)]
    pub(super) unsafe fn sum_columns32(
        kind: TileKind,
        row: *const u8,
        c: usize,
        (w0, w1): (usize, usize),
        c0: usize,
        out: *mut f32,
    ) {
        let mut sum = [_mm512_setzero_ps(); 2];
        for w in w0..w1 {
            let v = load32(kind, row, w * c + c0);
            sum[0] = _mm512_add_ps(sum[0], v[0]);
            sum[1] = _mm512_add_ps(sum[1], v[1]);
        }
        _mm512_storeu_ps(out.add(c0), sum[0]);
        _mm512_storeu_ps(out.add(c0 + 16), sum[1]);
    }

    /// [`super::avx2`]'s `divide_block` for 32 channels: the rows' sums at `at` added in
    /// order from the first, divided, stored.
    ///
    /// # Safety
    /// As that function's, and the CPU has AVX-512 F and BW.
    #[inline(always)]
    pub(super) unsafe fn divide_block32(
        kind: TileKind,
        rows: &[*const f32],
        at: usize,
        divisor: __m256,
        y: *mut u8,
    ) {
        let mut sum = [_mm512_loadu_ps(rows[0].add(at)), _mm512_loadu_ps(rows[0].add(at + 16))];
        for row in &rows[1..] {
            sum[0] = _mm512_add_ps(sum[0], _mm512_loadu_ps(row.add(at)));
            sum[1] = _mm512_add_ps(sum[1], _mm512_loadu_ps(row.add(at + 16)));
        }
        let divisor = _mm512_castpd_ps(_mm512_broadcast_f64x4(_mm256_castps_pd(divisor)));
        store32(kind, y, at, [_mm512_div_ps(sum[0], divisor), _mm512_div_ps(sum[1], divisor)]);
    }

    /// [`super::avx2`]'s `avg_block` for 32 channels.
    ///
    /// # Safety
    /// As that block's, and the CPU has AVX-512 F and BW.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn avg_block32<const TWO_DIVISIONS: bool, const FIRST: bool, const LAST: bool>(
        kind: TileKind,
        image: *const u8,
        win: ChannelWindow,
        c0: usize,
        divisors: (__m256, __m256),
        y: *mut u8,
        partial: *mut f32,
    ) {
        let ((h0, h1, dh), (w0, w1, dw)) = (win.h, win.w);
        let mut sum = [_mm512_setzero_ps(); 2];
        if !FIRST {
            sum = [_mm512_loadu_ps(partial.add(c0)), _mm512_loadu_ps(partial.add(c0 + 16))];
        }
        let mut h = h0;
        while h < h1 {
            let mut w = w0;
            while w < w1 {
                let v = load32(kind, image, (h * win.width + w) * win.c + c0);
                sum[0] = _mm512_add_ps(sum[0], v[0]);
                sum[1] = _mm512_add_ps(sum[1], v[1]);
                w += dw;
            }
            h += dh;
        }
        if !LAST {
            _mm512_storeu_ps(partial.add(c0), sum[0]);
            _mm512_storeu_ps(partial.add(c0 + 16), sum[1]);
            return;
        }
        let both = |d: __m256| {
            let d = _mm256_castps_pd(d);
            _mm512_castpd_ps(_mm512_insertf64x4::<1>(_mm512_castpd256_pd512(d), d))
        };
        let (d0, d1) = (both(divisors.0), both(divisors.1));
        for s in sum.iter_mut() {
            *s = _mm512_div_ps(*s, d0);
            if TWO_DIVISIONS {
                *s = _mm512_div_ps(*s, d1);
            }
        }
        store32(kind, y, c0, sum);
    }
}
