//! Devices: the CPU, a CUDA GPU, or the emulator that runs the CUDA kernels on the host.
//! Detection never panics: cudarc panics when libcuda is missing, so we probe first.

use crate::cuda::PlanExecutor;
use crate::error::{Error, Result};
#[cfg(any(feature = "cuda", feature = "emulator"))]
use std::sync::Arc;

/// Where tensors live and ops run. Cheap to clone; clones share the GPU context.
#[derive(Clone)]
pub struct Device {
    kind: DeviceKind,
}

#[derive(Clone)]
pub(crate) enum DeviceKind {
    Cpu,
    #[cfg(feature = "cuda")]
    Cuda {
        ordinal: usize,
        backend: Arc<crate::cuda::context::CudaBackend>,
    },
    #[cfg(feature = "emulator")]
    Emulated(Arc<crate::emulator::EmulatorExecutor>),
}

impl Device {
    /// The CPU fallback: rayon over planes, vectorised inner loops.
    pub fn cpu() -> Device {
        Device { kind: DeviceKind::Cpu }
    }

    /// CUDA GPU `ordinal`. `Err(Error::CudaUnavailable(reason))` when there is no driver, no
    /// such GPU, or the crate was built without feature `cuda`; never panics. Repeated calls
    /// share one context (and its loaded kernels).
    pub fn cuda(ordinal: usize) -> Result<Device> {
        #[cfg(feature = "cuda")]
        {
            // `open` probes for the driver before any cudarc call and caches one backend
            // (context, stream, loaded kernels) per ordinal.
            let backend = crate::cuda::context::open(ordinal)?;
            Ok(Device { kind: DeviceKind::Cuda { ordinal, backend } })
        }
        #[cfg(not(feature = "cuda"))]
        {
            let _ = ordinal;
            Err(Error::CudaUnavailable("cupool was built without feature `cuda`".into()))
        }
    }

    /// The first CUDA GPU when one works, else the CPU. Never panics; `name()` says which.
    pub fn auto() -> Device {
        Device::cuda(0).unwrap_or_else(|_| Device::cpu())
    }

    /// The emulated CUDA device: the real kernels and launch plans, run on the host (feature
    /// `emulator`; for tests and CI, it is slow).
    pub fn emulated() -> Result<Device> {
        #[cfg(feature = "emulator")]
        {
            Ok(Device { kind: DeviceKind::Emulated(Arc::new(crate::emulator::EmulatorExecutor::new())) })
        }
        #[cfg(not(feature = "emulator"))]
        {
            Err(Error::Unsupported("the emulated device needs cupool's feature `emulator`".into()))
        }
    }

    /// A short description: `cpu`, `cuda:0 (NVIDIA H200)`, `emulated`.
    pub fn name(&self) -> String {
        match &self.kind {
            DeviceKind::Cpu => "cpu".to_string(),
            #[cfg(feature = "cuda")]
            DeviceKind::Cuda { ordinal, backend } => format!("cuda:{ordinal} ({})", backend.device_name()),
            #[cfg(feature = "emulator")]
            DeviceKind::Emulated(_) => "emulated (CUDA kernels on the host)".to_string(),
        }
    }

    pub fn is_cpu(&self) -> bool {
        matches!(self.kind, DeviceKind::Cpu)
    }
    pub fn is_cuda(&self) -> bool {
        #[cfg(feature = "cuda")]
        if let DeviceKind::Cuda { .. } = self.kind {
            return true;
        }
        false
    }
    pub fn is_emulated(&self) -> bool {
        #[cfg(feature = "emulator")]
        if let DeviceKind::Emulated(_) = self.kind {
            return true;
        }
        false
    }

    /// Gives the device memory that freed tensors left in the CUDA memory pool back to the
    /// driver, after waiting for the device's queued work. cupool keeps freed GPU memory
    /// pooled for reuse, as PyTorch's caching allocator does (`torch.cuda.empty_cache()` is
    /// this call's counterpart). A no-op on the CPU and the emulator.
    ///
    /// ```
    /// let dev = cupool::Device::auto();
    /// let x = cupool::CudaTensor::from_vec(&dev, &[2, 3, 8, 8], vec![1f32; 384])?;
    /// let gap = x.mean(&[-2, -1], false)?;
    /// drop(x);
    /// dev.release_cached_memory()?; // x's memory goes back to the driver
    /// assert_eq!(gap.to_array::<f32>()?.iter().sum::<f32>(), 6.0);
    /// # Ok::<(), cupool::Error>(())
    /// ```
    pub fn release_cached_memory(&self) -> Result<()> {
        match &self.kind {
            #[cfg(feature = "cuda")]
            DeviceKind::Cuda { backend, .. } => backend.release_cached_memory(),
            _ => Ok(()),
        }
    }

    /// The plan executor of a CUDA or emulated device; `None` on the CPU.
    pub(crate) fn executor(&self) -> Option<&dyn PlanExecutor> {
        match &self.kind {
            DeviceKind::Cpu => None,
            #[cfg(feature = "cuda")]
            DeviceKind::Cuda { backend, .. } => Some(backend.as_ref()),
            #[cfg(feature = "emulator")]
            DeviceKind::Emulated(e) => Some(e.as_ref()),
        }
    }

    /// `Err(DeviceMismatch)` unless `other` is the same device.
    pub(crate) fn check_same(&self, other: &Device, what: &str) -> Result<()> {
        if self == other {
            Ok(())
        } else {
            Err(Error::DeviceMismatch(format!(
                "{what} is on {} but the input is on {}",
                other.name(),
                self.name()
            )))
        }
    }
}

impl PartialEq for Device {
    fn eq(&self, other: &Device) -> bool {
        match (&self.kind, &other.kind) {
            (DeviceKind::Cpu, DeviceKind::Cpu) => true,
            #[cfg(feature = "cuda")]
            (DeviceKind::Cuda { ordinal: a, .. }, DeviceKind::Cuda { ordinal: b, .. }) => a == b,
            #[cfg(feature = "emulator")]
            (DeviceKind::Emulated(_), DeviceKind::Emulated(_)) => true,
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Device({})", self.name())
    }
}
