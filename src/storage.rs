//! Where a tensor's elements live: host memory (the CPU and emulated devices) or GPU memory.

use crate::dtype::{DType, HostData};

/// A tensor's buffer. Tensors share it through an `Arc` and never write it after creation;
/// every op writes a fresh output buffer.
#[derive(Debug)]
pub(crate) enum Storage {
    Host(HostData),
    #[cfg(feature = "cuda")]
    Cuda(crate::cuda::CudaBuffer),
}

/// A host buffer goes to the [`crate::host_cache`] when its last tensor lets go of it, so the
/// next output of the same size reuses mapped memory.
impl Drop for Storage {
    fn drop(&mut self) {
        match self {
            Storage::Host(data) => {
                crate::host_cache::keep(std::mem::replace(data, HostData::F32(Vec::new())))
            }
            #[cfg(feature = "cuda")]
            Storage::Cuda(_) => {}
        }
    }
}

impl Storage {
    /// The host buffer, or `None` for GPU memory.
    pub fn host(&self) -> Option<&HostData> {
        match self {
            Storage::Host(h) => Some(h),
            #[cfg(feature = "cuda")]
            Storage::Cuda(_) => None,
        }
    }

    pub fn dtype(&self) -> DType {
        match self {
            Storage::Host(h) => h.dtype(),
            #[cfg(feature = "cuda")]
            Storage::Cuda(b) => b.dtype(),
        }
    }
}
