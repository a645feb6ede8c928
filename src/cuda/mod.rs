//! The CUDA backend. Planning (which kernel, grid, block, shared memory, arguments) is plain
//! data and always compiled, because the emulator runs the same plans; the cudarc executor is
//! behind feature `cuda`.

pub mod adaptive;
pub mod backward;
#[cfg(feature = "cuda")]
pub(crate) mod context;
pub mod copy;
pub mod embedded;
#[cfg(feature = "cuda")]
mod executor;
#[cfg(feature = "cuda")]
pub mod nvrtc;
pub mod plan;
pub mod reduce;
pub mod window;

pub use embedded::kernel_sources;

use crate::dtype::{DType, HostData};
use crate::error::Result;
use crate::storage::Storage;
use plan::OpPlan;

/// What a planner may know about the device it plans for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceLimits {
    pub sm_count: u32,
    pub max_threads_per_block: u32,
    /// Dynamic + static shared memory a block may use without opting in (48 KiB).
    pub max_shared_per_block: u32,
}

impl DeviceLimits {
    /// The limits the emulator pretends to have: an H100/H200-class part.
    pub const HOPPER: DeviceLimits =
        DeviceLimits { sm_count: 132, max_threads_per_block: 1024, max_shared_per_block: 48 * 1024 };
}

/// Runs launch plans: the cudarc executor on a GPU, the emulator on the host.
pub(crate) trait PlanExecutor: Send + Sync {
    fn limits(&self) -> DeviceLimits;
    /// A zero-filled buffer.
    fn alloc_zeros(&self, dtype: DType, len: usize) -> Result<Storage>;
    /// A buffer whose contents are unspecified, for an output the plan writes in full. The
    /// emulator fills it with 0xFF bytes (NaN, or index -1), so an element a kernel forgets to
    /// write fails the tests instead of reading as a plausible zero.
    fn alloc_uninit(&self, dtype: DType, len: usize) -> Result<Storage>;
    /// `alloc_zeros` where `plan` asks for output `output` zeroed, else `alloc_uninit`.
    fn alloc_output(&self, plan: &OpPlan, output: usize, dtype: DType, len: usize) -> Result<Storage> {
        if plan.zeroed_outputs.contains(&output) {
            self.alloc_zeros(dtype, len)
        } else {
            self.alloc_uninit(dtype, len)
        }
    }
    fn upload(&self, data: HostData) -> Result<Storage>;
    fn download(&self, storage: &Storage) -> Result<HostData>;
    /// Runs every launch of `plan` in order. `BufferId::Input(i)` is `inputs[i]`,
    /// `BufferId::Output(i)` is `outputs[i]`; scratch buffers are allocated here.
    fn execute(&self, plan: &OpPlan, inputs: &[&Storage], outputs: &mut [&mut Storage]) -> Result<()>;
}

/// A tensor buffer in GPU memory: raw bytes plus the dtype and element count they hold.
#[cfg(feature = "cuda")]
#[derive(Debug)]
pub struct CudaBuffer {
    pub(crate) bytes: cudarc::driver::CudaSlice<u8>,
    pub(crate) dtype: DType,
    pub(crate) len: usize,
}

#[cfg(feature = "cuda")]
impl CudaBuffer {
    pub fn dtype(&self) -> DType {
        self.dtype
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}
