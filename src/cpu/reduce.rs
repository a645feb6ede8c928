use crate::dtype::FloatElement;
use crate::ops::reduce_geometry::{ReduceFinish, ReduceGeometry};
pub fn reduce<T: FloatElement>(_g: &ReduceGeometry, _f: ReduceFinish, _x: &[T], _y: &mut [T]) {}
