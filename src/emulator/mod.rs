//! stub
use crate::cuda::{plan::OpPlan, DeviceLimits, PlanExecutor};
use crate::dtype::{DType, HostData};
use crate::error::{Error, Result};
use crate::storage::Storage;
pub struct EmulatorExecutor;
impl EmulatorExecutor {
    pub(crate) fn shared() -> std::sync::Arc<EmulatorExecutor> {
        std::sync::Arc::new(EmulatorExecutor)
    }
}
impl PlanExecutor for EmulatorExecutor {
    fn limits(&self) -> DeviceLimits {
        DeviceLimits::HOPPER
    }
    fn alloc_zeros(&self, d: DType, n: usize) -> Result<Storage> {
        Ok(Storage::Host(HostData::zeros(d, n)))
    }
    fn upload(&self, h: HostData) -> Result<Storage> {
        Ok(Storage::Host(h))
    }
    fn download(&self, s: &Storage) -> Result<HostData> {
        match s {
            Storage::Host(h) => Ok(h.clone()),
            #[allow(unreachable_patterns)]
            _ => Err(Error::Unsupported("x".into())),
        }
    }
    fn execute(&self, _: &OpPlan, _: &[&Storage], _: &mut [&mut Storage]) -> Result<()> {
        Err(Error::Unsupported("stub".into()))
    }
}
