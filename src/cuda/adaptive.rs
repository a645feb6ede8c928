use crate::cuda::{plan::OpPlan, DeviceLimits};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::ops::adaptive::AdaptiveGeometry;
use crate::ops::Layout;
pub fn plan_adaptive_avg_pool2d(
    _g: &AdaptiveGeometry,
    _l: Layout,
    _d: DType,
    _x: &DeviceLimits,
) -> Result<OpPlan> {
    Err(Error::Unsupported("stub".into()))
}
pub fn plan_adaptive_max_pool2d(
    _g: &AdaptiveGeometry,
    _l: Layout,
    _d: DType,
    _i: bool,
    _x: &DeviceLimits,
) -> Result<OpPlan> {
    Err(Error::Unsupported("stub".into()))
}
