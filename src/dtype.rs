//! Data types: the four float types pooling works on, and i64 for max-pool indices.

use half::{bf16, f16};
use num_traits::Float;
use std::fmt::Debug;
use std::ops::AddAssign;

/// The element type of a tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F64,
    F16,
    BF16,
    /// Max-pooling indices only; no op takes it as data.
    I64,
}

impl DType {
    /// Bytes per element.
    pub fn size_in_bytes(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F64 | DType::I64 => 8,
            DType::F16 | DType::BF16 => 2,
        }
    }
    /// The suffix of kernel names: `gap_rows_{suffix}`.
    pub fn kernel_suffix(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F64 => "f64",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::I64 => "i64",
        }
    }
    /// Whether pooling and reductions accept this dtype.
    pub fn is_float(self) -> bool {
        !matches!(self, DType::I64)
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.kernel_suffix())
    }
}

/// Host data of one dtype. CPU tensors, and emulated-device tensors, keep their storage here.
#[derive(Debug, Clone)]
pub enum HostData {
    F32(Vec<f32>),
    F64(Vec<f64>),
    F16(Vec<f16>),
    BF16(Vec<bf16>),
    I64(Vec<i64>),
}

impl HostData {
    pub fn dtype(&self) -> DType {
        match self {
            HostData::F32(_) => DType::F32,
            HostData::F64(_) => DType::F64,
            HostData::F16(_) => DType::F16,
            HostData::BF16(_) => DType::BF16,
            HostData::I64(_) => DType::I64,
        }
    }
    pub fn len(&self) -> usize {
        match self {
            HostData::F32(v) => v.len(),
            HostData::F64(v) => v.len(),
            HostData::F16(v) => v.len(),
            HostData::BF16(v) => v.len(),
            HostData::I64(v) => v.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// A zero-filled buffer of `len` elements.
    pub fn zeros(dtype: DType, len: usize) -> HostData {
        match dtype {
            DType::F32 => HostData::F32(vec![0.0; len]),
            DType::F64 => HostData::F64(vec![0.0; len]),
            DType::F16 => HostData::F16(vec![f16::ZERO; len]),
            DType::BF16 => HostData::BF16(vec![bf16::ZERO; len]),
            DType::I64 => HostData::I64(vec![0; len]),
        }
    }
    /// As [`HostData::zeros`], but an allocation the machine cannot make is an
    /// `Error::OutOfMemory`, not an abort (a huge adaptive output size, say).
    pub fn try_zeros(dtype: DType, len: usize) -> crate::error::Result<HostData> {
        /// A zeroed `Vec` from `alloc_zeroed` (calloc): like `vec![0; len]`, large buffers come
        /// as fresh zero pages with no write pass, but a failed allocation is an error.
        fn zeroed<T: Element>(len: usize) -> crate::error::Result<Vec<T>> {
            let oom = || {
                crate::error::Error::OutOfMemory(format!(
                    "host: cannot allocate {len} elements of {}",
                    T::DTYPE
                ))
            };
            let layout = std::alloc::Layout::array::<T>(len).map_err(|_| oom())?;
            if layout.size() == 0 {
                return Ok(Vec::new());
            }
            // Where Linux overcommits without limit (vm.overcommit_memory=1, common on GPU
            // servers), calloc grants any size and the process is killed when the pages are
            // written; a buffer past all of RAM and swap can never be filled, so refuse it here.
            if layout.size() > host_memory_bytes() {
                return Err(oom());
            }
            // SAFETY: `layout` has a non-zero size, as `alloc_zeroed` requires.
            let ptr = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<T>();
            if ptr.is_null() {
                return Err(oom());
            }
            advise_huge_pages(ptr.cast(), layout.size());
            // SAFETY: `ptr` comes from the global allocator with the layout of `[T; len]`, so
            // length and capacity `len` match the allocation; every byte is zero, and all-zero
            // bits are a valid value (0.0 or 0) of every `Element` type (f32, f64, f16, bf16, i64).
            Ok(unsafe { Vec::from_raw_parts(ptr, len, len) })
        }
        /// Asks Linux to back the whole 2 MiB pages inside a large fresh buffer with huge pages
        /// (`MADV_HUGEPAGE`, for systems whose transparent huge pages are in `madvise` mode).
        /// An op's output is written once, right after this allocation: with 4 KiB pages a
        /// 50 MB output takes 12,000 page faults, each zeroing its page, which cost as much
        /// as the pooling itself; with 2 MiB pages, 25. Contents are unchanged (still zero);
        /// a refusal is harmless, so the result is ignored.
        fn advise_huge_pages(ptr: *mut u8, size: usize) {
            const HUGE: usize = 2 << 20;
            if size < 4 * HUGE {
                return;
            }
            #[cfg(target_os = "linux")]
            {
                let start = (ptr as usize).next_multiple_of(HUGE);
                let end = (ptr as usize + size) / HUGE * HUGE;
                if end > start {
                    // SAFETY: `[start, end)` lies inside the caller's live allocation of `size`
                    // bytes at `ptr`; MADV_HUGEPAGE only changes how the kernel backs those
                    // pages, never their contents, and touches no memory outside the range.
                    unsafe {
                        libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
                    }
                }
            }
            #[cfg(not(target_os = "linux"))]
            let _ = ptr;
        }
        Ok(match dtype {
            DType::F32 => HostData::F32(zeroed(len)?),
            DType::F64 => HostData::F64(zeroed(len)?),
            DType::F16 => HostData::F16(zeroed(len)?),
            DType::BF16 => HostData::BF16(zeroed(len)?),
            DType::I64 => HostData::I64(zeroed(len)?),
        })
    }

    /// The buffer's bytes, for handing to the emulator or a device copy.
    pub fn as_bytes(&self) -> &[u8] {
        fn bytes<T>(v: &[T]) -> &[u8] {
            // SAFETY: every element type here is plain old data with no padding, so its memory
            // is a valid, initialised byte slice of `size_of_val(v)` bytes for the borrow's life.
            unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<u8>(), std::mem::size_of_val(v)) }
        }
        match self {
            HostData::F32(v) => bytes(v),
            HostData::F64(v) => bytes(v),
            HostData::F16(v) => bytes(v),
            HostData::BF16(v) => bytes(v),
            HostData::I64(v) => bytes(v),
        }
    }
    /// The buffer's bytes, writable.
    pub fn as_bytes_mut(&mut self) -> &mut [u8] {
        fn bytes<T>(v: &mut [T]) -> &mut [u8] {
            // SAFETY: as in `as_bytes`; in addition every bit pattern is a valid value of each of
            // these element types (floats, half floats and i64), so any byte write keeps `v` valid.
            unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr().cast::<u8>(), std::mem::size_of_val(v)) }
        }
        match self {
            HostData::F32(v) => bytes(v),
            HostData::F64(v) => bytes(v),
            HostData::F16(v) => bytes(v),
            HostData::BF16(v) => bytes(v),
            HostData::I64(v) => bytes(v),
        }
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
    impl Sealed for half::f16 {}
    impl Sealed for half::bf16 {}
    impl Sealed for i64 {}
}

/// A type a tensor can hold: f32, f64, `half::f16`, `half::bf16`, and i64 (for indices).
pub trait Element: Copy + Send + Sync + Debug + Default + PartialOrd + 'static + sealed::Sealed {
    const DTYPE: DType;
    fn into_host(v: Vec<Self>) -> HostData;
    fn host_slice(h: &HostData) -> Option<&[Self]>;
    fn host_slice_mut(h: &mut HostData) -> Option<&mut [Self]>;
    /// Lossy conversion for tests, printing and dtype casts (f64 holds every value exactly but i64).
    fn to_f64(self) -> f64;
    fn from_f64(v: f64) -> Self;
}

/// A float type that pooling computes on. `Acc` is the accumulator: f32 for f16, bf16 and f32,
/// f64 for f64 (PyTorch's `opmath_type`).
pub trait FloatElement: Element {
    type Acc: Float + AddAssign + Send + Sync + Debug + Default + 'static;
    fn to_acc(self) -> Self::Acc;
    /// Rounds once, to nearest even.
    fn from_acc(a: Self::Acc) -> Self;
    /// Converts a block of values to the accumulator type (`half`'s vectorised slice conversion
    /// for f16/bf16; a copy otherwise). `out.len()` must equal `src.len()`.
    fn block_to_acc(src: &[Self], out: &mut [Self::Acc]);
    fn is_nan(self) -> bool;
    /// Negative infinity: the identity of max pooling.
    fn neg_infinity() -> Self;
}

macro_rules! impl_host {
    ($t:ty, $variant:ident, $dt:ident) => {
        const DTYPE: DType = DType::$dt;
        fn into_host(v: Vec<Self>) -> HostData {
            HostData::$variant(v)
        }
        fn host_slice(h: &HostData) -> Option<&[Self]> {
            match h {
                HostData::$variant(v) => Some(v),
                _ => None,
            }
        }
        fn host_slice_mut(h: &mut HostData) -> Option<&mut [Self]> {
            match h {
                HostData::$variant(v) => Some(v),
                _ => None,
            }
        }
    };
}

impl Element for f32 {
    impl_host!(f32, F32, F32);
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn from_f64(v: f64) -> Self {
        v as f32
    }
}
impl Element for f64 {
    impl_host!(f64, F64, F64);
    fn to_f64(self) -> f64 {
        self
    }
    fn from_f64(v: f64) -> Self {
        v
    }
}
impl Element for f16 {
    impl_host!(f16, F16, F16);
    fn to_f64(self) -> f64 {
        self.to_f64()
    }
    fn from_f64(v: f64) -> Self {
        f16::from_f64(v)
    }
}
impl Element for bf16 {
    impl_host!(bf16, BF16, BF16);
    fn to_f64(self) -> f64 {
        self.to_f64()
    }
    fn from_f64(v: f64) -> Self {
        bf16::from_f64(v)
    }
}
impl Element for i64 {
    impl_host!(i64, I64, I64);
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn from_f64(v: f64) -> Self {
        v as i64
    }
}

/// `FloatElement` for a type whose accumulator is itself (f32, f64).
macro_rules! impl_float_native {
    ($t:ident) => {
        impl FloatElement for $t {
            type Acc = $t;
            #[inline(always)]
            fn to_acc(self) -> $t {
                self
            }
            #[inline(always)]
            fn from_acc(a: $t) -> Self {
                a
            }
            fn block_to_acc(src: &[Self], out: &mut [$t]) {
                out.copy_from_slice(src);
            }
            #[inline(always)]
            fn is_nan(self) -> bool {
                self.is_nan()
            }
            fn neg_infinity() -> Self {
                $t::NEG_INFINITY
            }
        }
    };
}

/// `FloatElement` for a 16-bit float that accumulates in f32 (f16, bf16).
macro_rules! impl_float_half {
    ($t:ident) => {
        impl FloatElement for $t {
            type Acc = f32;
            #[inline(always)]
            fn to_acc(self) -> f32 {
                self.to_f32()
            }
            #[inline(always)]
            fn from_acc(a: f32) -> Self {
                $t::from_f32(a)
            }
            fn block_to_acc(src: &[Self], out: &mut [f32]) {
                use half::slice::HalfFloatSliceExt;
                src.convert_to_f32_slice(out);
            }
            #[inline(always)]
            fn is_nan(self) -> bool {
                self.is_nan()
            }
            fn neg_infinity() -> Self {
                $t::NEG_INFINITY
            }
        }
    };
}

impl_float_native!(f32);
impl_float_native!(f64);
impl_float_half!(f16);
impl_float_half!(bf16);

/// Calls `$body` with `$T` bound to the Rust type of a float dtype; `$on_other` for I64.
macro_rules! with_float_type {
    ($dtype:expr, $T:ident => $body:expr, $on_other:expr) => {
        match $dtype {
            $crate::dtype::DType::F32 => {
                type $T = f32;
                $body
            }
            $crate::dtype::DType::F64 => {
                type $T = f64;
                $body
            }
            $crate::dtype::DType::F16 => {
                type $T = half::f16;
                $body
            }
            $crate::dtype::DType::BF16 => {
                type $T = half::bf16;
                $body
            }
            $crate::dtype::DType::I64 => $on_other,
        }
    };
}
pub(crate) use with_float_type;

/// All of the machine's RAM and swap (read once), or `usize::MAX` where unknown.
fn host_memory_bytes() -> usize {
    static TOTAL: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *TOTAL.get_or_init(|| {
        #[cfg(target_os = "linux")]
        {
            // SAFETY: `libc::sysinfo` is a C struct of integers and padding, for which all-zero
            // bits are a valid value.
            let mut info: libc::sysinfo = unsafe { std::mem::zeroed() };
            // SAFETY: `sysinfo(2)` writes only the struct its pointer names; the pointer is to
            // `info`, live and writable for the whole call.
            if unsafe { libc::sysinfo(&mut info) } == 0 {
                let total = (info.totalram as u128 + info.totalswap as u128) * info.mem_unit.max(1) as u128;
                return usize::try_from(total).unwrap_or(usize::MAX);
            }
        }
        usize::MAX
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bound is at least the RAM /proc/meminfo reports (so no buffer that could fit is
    /// refused), and a buffer past it is an error, not an allocation.
    #[test]
    fn buffers_past_ram_and_swap_are_refused() {
        let total = host_memory_bytes();
        #[cfg(target_os = "linux")]
        {
            let info = std::fs::read_to_string("/proc/meminfo").expect("meminfo");
            let line = info.lines().find(|l| l.starts_with("MemTotal:")).expect("MemTotal");
            let kib: usize = line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("a number");
            assert!(total >= kib * 1024, "{total} < MemTotal {kib} KiB");
            assert!(total < usize::MAX);
        }
        if let Some(past) = total.checked_add(1 << 20) {
            let result = HostData::try_zeros(DType::F32, past / 4);
            assert!(matches!(result, Err(crate::error::Error::OutOfMemory(_))));
        }
    }
}
