use crate::cuda::{plan::OpPlan, DeviceLimits};
use crate::dtype::DType;
use crate::error::{Error, Result};
pub fn plan_strided_copy(
    _s: &[usize],
    _t: &[usize],
    _o: usize,
    _d: DType,
    _l: &DeviceLimits,
) -> Result<OpPlan> {
    Err(Error::Unsupported("stub".into()))
}
