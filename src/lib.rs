//! cupool: pooling on NVIDIA GPUs with a CPU fallback that gives the same answers.
#![allow(dead_code)]

pub mod cpu;
pub mod cuda;
pub mod dtype;
#[cfg(feature = "emulator")]
pub mod emulator;
pub mod error;
pub mod ops;
pub(crate) mod storage;

pub use dtype::{DType, Element, FloatElement};
pub use error::{Error, Result};
pub use ops::window::{AvgPool2d, MaxPool2d};
pub use ops::Layout;
