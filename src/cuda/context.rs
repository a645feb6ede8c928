//! Stand-in until the cudarc runtime lands: reports CUDA as unavailable.
use crate::cuda::{DeviceLimits, PlanExecutor};
use crate::dtype::{DType, HostData};
use crate::error::{Error, Result};
use crate::storage::Storage;

pub(crate) struct CudaBackend;

pub(crate) fn open(_ordinal: usize) -> Result<std::sync::Arc<CudaBackend>> {
    Err(Error::CudaUnavailable("the CUDA runtime is not built yet".into()))
}

impl CudaBackend {
    pub(crate) fn device_name(&self) -> String {
        String::new()
    }
}

impl PlanExecutor for CudaBackend {
    fn limits(&self) -> DeviceLimits {
        DeviceLimits::HOPPER
    }
    fn alloc_zeros(&self, _: DType, _: usize) -> Result<Storage> {
        Err(Error::CudaUnavailable("stub".into()))
    }
    fn upload(&self, _: HostData) -> Result<Storage> {
        Err(Error::CudaUnavailable("stub".into()))
    }
    fn download(&self, _: &Storage) -> Result<HostData> {
        Err(Error::CudaUnavailable("stub".into()))
    }
    fn execute(&self, _: &crate::cuda::plan::OpPlan, _: &[&Storage], _: &mut [&mut Storage]) -> Result<()> {
        Err(Error::CudaUnavailable("stub".into()))
    }
}
