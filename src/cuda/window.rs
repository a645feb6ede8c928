use crate::cuda::{plan::OpPlan, DeviceLimits};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::ops::window::{AvgRule, WindowGeometry};
use crate::ops::Layout;
pub fn plan_avg_pool2d(
    _g: &WindowGeometry,
    _r: AvgRule,
    _l: Layout,
    _d: DType,
    _x: &DeviceLimits,
) -> Result<OpPlan> {
    Err(Error::Unsupported("stub".into()))
}
pub fn plan_max_pool2d(
    _g: &WindowGeometry,
    _l: Layout,
    _d: DType,
    _i: bool,
    _x: &DeviceLimits,
) -> Result<OpPlan> {
    Err(Error::Unsupported("stub".into()))
}
