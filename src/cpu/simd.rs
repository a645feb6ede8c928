//! Runtime CPU-feature dispatch and the fast element conversions shared by the CPU kernels.
//!
//! The crate is compiled for baseline x86-64 (SSE2). Hot per-task functions are written once as
//! `#[inline(always)]` generic code and run through [`dispatch`], which calls them inside a
//! `#[target_feature(enable = "avx2")]` trampoline when the CPU has AVX2: LLVM inlines the body
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
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above), the only requirement of
            // calling a function compiled with `target_feature(enable = "avx2")`.
            return unsafe { with_avx2(f) };
        }
    }
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn with_avx2<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// Whether `T` is bf16 with an f32 accumulator, whose conversion is a 16-bit shift.
#[inline(always)]
fn is_bf16<T: FloatElement>() -> bool {
    TypeId::of::<T>() == TypeId::of::<half::bf16>() && TypeId::of::<T::Acc>() == TypeId::of::<f32>()
}

/// Converts `src` to the accumulator type into `out` (same length). bf16 is widened inline by
/// a shift of its bits (exact, vectorises, inlines into the AVX2 path); f16 uses `half`'s slice
/// conversion (F16C when present); f32/f64 copy.
#[inline(always)]
pub(crate) fn block_to_acc<T: FloatElement>(src: &[T], out: &mut [T::Acc]) {
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

/// Whether [`load`] converts `T` cheaply and vectorisably (f32, f64: no conversion; bf16: a
/// shift). f16's per-element conversion re-detects CPU features on every call, so f16 kernels
/// convert blocks with [`block_to_acc`] instead.
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
    } else {
        v.to_acc()
    }
}

/// An accumulator value rounded once to `T`, exactly as `T::from_acc`. bf16 is rounded inline
/// (round to nearest even; NaN kept quiet as `bits >> 16 | 0x40`, as `half` does), branch-free
/// so that stores of many channels vectorise; other types use `T::from_acc`.
#[inline(always)]
pub(crate) fn store<T: FloatElement>(v: T::Acc) -> T {
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

#[cfg(test)]
mod tests {
    use super::*;

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
