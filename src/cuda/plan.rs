//! Launch plans: what to launch, as plain data. Planning is free of cudarc types so that the
//! same plan runs on a GPU (src/cuda/executor.rs, through cudarc) and on the host
//! (src/emulator, through kernels/emulator) unchanged.

/// A buffer a kernel argument points to: one of the op's inputs or outputs (by position, as
/// passed to the executor), or a scratch buffer the executor allocates for this op.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BufferId {
    Input(usize),
    Output(usize),
    Scratch(usize),
}

/// One kernel argument, as `cuLaunchKernel`'s `kernelParams` sees it: a device pointer, a
/// scalar, or a `#[repr(C)]` params struct passed by value (its bytes).
#[derive(Debug, Clone, PartialEq)]
pub enum KernelArg {
    Buffer(BufferId),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    /// The bytes of a `#[repr(C)]` struct, laid out as the kernel's C struct (see
    /// [`KernelArg::params`]).
    Params(Vec<u8>),
}

impl KernelArg {
    /// The bytes of a `#[repr(C)]`, `Copy` params struct, for passing by value.
    pub fn params<P: Copy + 'static>(p: &P) -> KernelArg {
        // SAFETY: `P` is a `Copy` `#[repr(C)]` struct of plain integers and floats (callers pass
        // only such params structs), so reading its `size_of::<P>()` bytes is reading initialised
        // memory. Params structs are written with no implicit padding (fields ordered by size)
        // so no padding byte is read.
        let bytes =
            unsafe { std::slice::from_raw_parts((p as *const P).cast::<u8>(), std::mem::size_of::<P>()) };
        KernelArg::Params(bytes.to_vec())
    }

    /// The argument's bytes as the kernel receives them; buffers resolve through `pointer`.
    pub fn bytes(&self, pointer: impl Fn(BufferId) -> u64) -> Vec<u8> {
        match self {
            KernelArg::Buffer(b) => pointer(*b).to_ne_bytes().to_vec(),
            KernelArg::U32(v) => v.to_ne_bytes().to_vec(),
            KernelArg::I32(v) => v.to_ne_bytes().to_vec(),
            KernelArg::U64(v) => v.to_ne_bytes().to_vec(),
            KernelArg::I64(v) => v.to_ne_bytes().to_vec(),
            KernelArg::F32(v) => v.to_ne_bytes().to_vec(),
            KernelArg::F64(v) => v.to_ne_bytes().to_vec(),
            KernelArg::Params(b) => b.clone(),
        }
    }
}

/// One kernel launch.
#[derive(Debug, Clone, PartialEq)]
pub struct LaunchPlan {
    /// `{op}_{dtype}`, an `extern "C"` entry point in kernels/*.cu.
    pub kernel: String,
    pub grid: [u32; 3],
    pub block: [u32; 3],
    /// Dynamic (`extern __shared__`) bytes.
    pub shared_mem_bytes: u32,
    pub args: Vec<KernelArg>,
}

/// Everything one op launches, in order on one stream, and the scratch buffers it needs.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OpPlan {
    pub launches: Vec<LaunchPlan>,
    /// Bytes of each scratch buffer `BufferId::Scratch(i)`; zero-initialised by the executor.
    pub scratch_bytes: Vec<usize>,
    /// The outputs (`BufferId::Output(i)`, by `i`) that must be zero before the launches: an
    /// error flag a kernel only sets, or a gradient no kernel writes. Every other output starts
    /// uninitialised (the emulator fills it with 0xFF bytes), so the launches must write each of
    /// its elements. Zeroing a 1.6 GB gradient that a gather then overwrites cost a whole extra
    /// pass over it.
    pub zeroed_outputs: Vec<usize>,
}
