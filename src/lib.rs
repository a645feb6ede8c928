//! cupool: pooling on NVIDIA GPUs with a CPU fallback that gives the same answers.

pub mod cpu;
pub mod cuda;
mod device;
pub mod dtype;
#[cfg(feature = "emulator")]
pub mod emulator;
pub mod error;
pub mod ops;
pub(crate) mod storage;
mod tensor;

pub use device::Device;
pub use dtype::{DType, Element, FloatElement};
pub use error::{Error, Result};
pub use ops::reduce::Gap;
pub use ops::window::{AvgPool2d, MaxPool2d};
pub use ops::Layout;
pub use tensor::CudaTensor;
