//! The CPU backend: one file per op family, rayon over planes or images, vectorisable inner loops.
//!
//! Every kernel accumulates in `T::Acc` (f32 for f16/bf16/f32, f64 for f64) and rounds once.
//! The inner loops run on slices of `T::Acc`: for f32 and f64 the input is read in place;
//! bf16 is widened inline by a shift; f16 blocks are widened first, by F16C
//! (`simd::block_to_acc`), and the explicit AVX2 tiles widen all three types in registers
//! (`simd::TileKind`). `half`'s own conversions are not used in hot loops: they call a
//! function per value (or per eight) that re-checks CPU features.

pub mod adaptive;
pub mod backward;
pub(crate) mod exact_sums;
pub(crate) mod lanes;
pub(crate) mod plane_registers;
pub mod reduce;
pub(crate) mod simd;
pub(crate) mod threads;
pub mod window;

use crate::dtype::FloatElement;
use num_traits::Zero;
use std::any::TypeId;

/// Input elements one rayon task should cover at least, so task overhead stays negligible while
/// a 2-core machine still gets several tasks to balance.
pub(crate) const TASK_ELEMS: usize = 1 << 15;

/// Ops with at most this much work (elements, counting every window tap) run on the calling
/// thread when it is not a rayon worker: handing a job to rayon's pool and waiting for it costs
/// tens of microseconds on a virtualised or busy machine (futex wake-ups, yields), more than
/// such an op takes on one core.
pub(crate) const SEQUENTIAL_WORK: usize = 1 << 19;

/// The same limit on a thread that splits work in place ([`threads`]): there a split costs a
/// few microseconds, and only when another worker takes the other half.
pub(crate) const SEQUENTIAL_WORK_IN_PLACE: usize = 1 << 16;

/// Inputs of at least this many bytes are taken to stream from memory rather than sit in the
/// caches (the development VMs' L3 is 32 MiB on AMD): the kernels that prefetch ahead of the
/// hardware prefetchers (reductions, NCHW separable averages, channels-last windows) do so
/// only from here, since on inputs in cache the hints only cost instructions.
pub(crate) const STREAMING_INPUT_BYTES: usize = 32 << 20;

/// How many of an op's `items` work items, of `item_elems` elements each, one rayon task
/// should take: all of them when the op is small (one task, which rayon runs on the calling
/// thread without waking its pool), else about [`TASK_ELEMS`] elements' worth.
#[inline]
pub(crate) fn items_per_task(item_elems: usize, items: usize) -> usize {
    let sequential = if threads::splits_in_place() { SEQUENTIAL_WORK_IN_PLACE } else { SEQUENTIAL_WORK };
    if item_elems.saturating_mul(items) <= sequential {
        return items.max(1);
    }
    TASK_ELEMS.div_ceil(item_elems.max(1)).max(1)
}

/// A reusable conversion buffer: empty when `T` is its own accumulator (f32, f64), so those
/// types never copy; otherwise grown on demand and reused across calls of one task.
pub(crate) struct AccScratch<T: FloatElement> {
    buf: Vec<T::Acc>,
}

impl<T: FloatElement> AccScratch<T> {
    /// Whether `T` is its own accumulator type, so `&[T]` is already `&[T::Acc]`.
    #[inline(always)]
    pub(crate) fn is_identity() -> bool {
        TypeId::of::<T>() == TypeId::of::<T::Acc>()
    }

    pub(crate) fn new() -> Self {
        AccScratch { buf: Vec::new() }
    }

    /// `src` as accumulator values: the same memory for f32/f64, a converted copy otherwise.
    #[inline(always)]
    pub(crate) fn view<'a>(&'a mut self, src: &'a [T]) -> &'a [T::Acc] {
        if Self::is_identity() {
            // SAFETY: `T` and `T::Acc` are the same type (equal `TypeId`s), so the slice's
            // pointer, length, alignment and validity are unchanged by the cast.
            unsafe { std::slice::from_raw_parts(src.as_ptr().cast::<T::Acc>(), src.len()) }
        } else {
            if self.buf.len() < src.len() {
                self.buf.resize(src.len(), T::Acc::zero());
            }
            let out = &mut self.buf[..src.len()];
            simd::block_to_acc(src, out);
            out
        }
    }
}

/// `v` converted to the accumulator type, for divisors and counts. NaN where the type cannot
/// represent it (it always can for the counts used here).
#[inline(always)]
pub(crate) fn acc_from_f64<A: num_traits::Float>(v: f64) -> A {
    A::from(v).unwrap_or_else(A::nan)
}

/// Helpers shared by the CPU unit tests: deterministic data, layouts and exact comparison.
#[cfg(test)]
pub(crate) mod test_util {
    use crate::dtype::{Element, FloatElement};
    use crate::ops::Layout;

    /// A small deterministic generator (64-bit LCG), so failures reproduce.
    pub struct Lcg(u64);
    impl Lcg {
        pub fn new(seed: u64) -> Self {
            Lcg(seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407))
        }
        pub fn next_u32(&mut self) -> u32 {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (self.0 >> 33) as u32
        }
        /// Uniform in [lo, hi).
        pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
            lo + (hi - lo) * (self.next_u32() as f64 / (1u64 << 31) as f64)
        }
    }

    /// `len` values uniform in [-2, 2), rounded to `T`.
    pub fn random<T: Element>(len: usize, seed: u64) -> Vec<T> {
        let mut r = Lcg::new(seed);
        (0..len).map(|_| T::from_f64(r.uniform(-2.0, 2.0))).collect()
    }

    /// Values full of ties and specials: small integers, -inf, +inf and NaN.
    pub fn special<T: Element>(len: usize, seed: u64) -> Vec<T> {
        let mut r = Lcg::new(seed);
        (0..len)
            .map(|_| {
                T::from_f64(match r.next_u32() % 16 {
                    0 => f64::NAN,
                    1 | 2 => f64::NEG_INFINITY,
                    3 => f64::INFINITY,
                    k => (k % 4) as f64 - 1.0,
                })
            })
            .collect()
    }

    /// Ties of both signed zeros, small integers and infinities, with a NaN only about once
    /// in 512 values: most vector blocks of a window see no NaN (the kernels' fast paths),
    /// some see one (their exact fallbacks).
    pub fn rare_nan<T: Element>(len: usize, seed: u64) -> Vec<T> {
        let mut r = Lcg::new(seed);
        (0..len)
            .map(|_| {
                let u = r.next_u32();
                T::from_f64(if u.is_multiple_of(512) {
                    f64::NAN
                } else {
                    match (u >> 9) % 8 {
                        0 => -0.0,
                        1 => 0.0,
                        2 => f64::NEG_INFINITY,
                        3 => f64::INFINITY,
                        k => (k % 3) as f64 - 1.0,
                    }
                })
            })
            .collect()
    }

    /// No value above zero: +0 and -0, -1 and -inf, so that maxima of large windows are
    /// zeros of either sign (the first one in PyTorch's order wins), and a NaN about once in
    /// 4096 values.
    pub fn zeros_at_most<T: Element>(len: usize, seed: u64) -> Vec<T> {
        let mut r = Lcg::new(seed);
        let values = [0.0, -0.0, -1.0, f64::NEG_INFINITY];
        (0..len)
            .map(|_| {
                let u = r.next_u32();
                T::from_f64(if u.is_multiple_of(4096) { f64::NAN } else { values[(u >> 12) as usize % 4] })
            })
            .collect()
    }

    /// Memory offset of logical (n, c, h, w) in a tensor of shape (_, cs, hs, ws).
    pub fn offset(layout: Layout, [n, c, h, w]: [usize; 4], [cs, hs, ws]: [usize; 3]) -> usize {
        match layout {
            Layout::Nchw => ((n * cs + c) * hs + h) * ws + w,
            Layout::Nhwc => ((n * hs + h) * ws + w) * cs + c,
        }
    }

    /// Bit-exact equality, any NaN equal to any NaN (payloads are not part of the contract).
    pub fn same<T: FloatElement>(a: T, b: T) -> bool {
        (a.is_nan() && b.is_nan()) || a.to_f64().to_bits() == b.to_f64().to_bits()
    }

    /// Calls `$f::<T>()` for all four float types.
    macro_rules! for_all_floats {
        ($f:ident) => {{
            $f::<f32>();
            $f::<f64>();
            $f::<half::f16>();
            $f::<half::bf16>();
        }};
    }
    pub(crate) use for_all_floats;
}
