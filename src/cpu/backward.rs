use crate::dtype::FloatElement;
use crate::ops::adaptive::AdaptiveGeometry;
use crate::ops::window::{AvgRule, WindowGeometry};
use crate::ops::Layout;
pub fn avg_pool2d_backward<T: FloatElement>(
    _g: &WindowGeometry,
    _r: AvgRule,
    _l: Layout,
    _go: &[T],
    _gi: &mut [T],
) {
}
pub fn max_pool2d_backward<T: FloatElement>(
    _g: &WindowGeometry,
    _l: Layout,
    _go: &[T],
    _i: &[i64],
    _gi: &mut [T],
) -> bool {
    false
}
pub fn adaptive_avg_pool2d_backward<T: FloatElement>(
    _g: &AdaptiveGeometry,
    _l: Layout,
    _go: &[T],
    _gi: &mut [T],
) {
}
pub fn adaptive_max_pool2d_backward<T: FloatElement>(
    _g: &AdaptiveGeometry,
    _l: Layout,
    _go: &[T],
    _i: &[i64],
    _gi: &mut [T],
) -> bool {
    false
}
pub fn broadcast_divide<T: FloatElement>(_s: &[usize], _t: &[usize], _d: f64, _go: &[T], _gi: &mut [T]) {}
