//! # cupool
//!
//! Pooling on NVIDIA GPUs through hand-written CUDA kernels loaded with `cudarc`, with a CPU
//! fallback that gives the same answers. PyTorch's behaviour is the reference for every value,
//! index, output shape and error.
//!
//! Global average pooling (GAP) reduces (N, C, H, W) to (N, C); PyTorch users write it three
//! ways, and [`CudaTensor`] offers all three (they run the same reduction kernel):
//!
//! ```
//! use cupool::{AvgPool2d, CudaTensor, Device, Gap};
//! use ndarray::{ArrayD, IxDyn};
//!
//! # fn main() -> cupool::Result<()> {
//! let (n, c, h, w) = (2, 3, 7, 7);
//! let values: Vec<f32> = (0..n * c * h * w).map(|i| (i % 13) as f32 * 0.25).collect();
//! let host = ArrayD::from_shape_vec(IxDyn(&[n, c, h, w]), values).unwrap();
//!
//! let dev = Device::auto(); // the first CUDA GPU, else the CPU; never panics
//! let x = CudaTensor::from_array(&dev, &host)?;
//!
//! // 1. F.avg_pool2d(x, x.size()[2:])
//! let a = x.avg_pool2d(&AvgPool2d::new([h, w]))?;
//! // 2. F.adaptive_avg_pool2d(x, (1, 1))
//! let b = x.adaptive_avg_pool2d([1, 1])?;
//! // 3. torch.mean(x.view(N, C, -1), dim=2)
//! let m = x.view(&[n as isize, c as isize, -1])?.mean(&[2], false)?;
//!
//! assert_eq!(a.shape(), &[n, c, 1, 1]);
//! assert_eq!(b.shape(), &[n, c, 1, 1]);
//! assert_eq!(m.shape(), &[n, c]);
//! let (a, b, m) = (a.to_array::<f32>()?, b.to_array::<f32>()?, m.to_array::<f32>()?);
//! for ((a, b), m) in a.iter().zip(b.iter()).zip(m.iter()) {
//!     assert!((a - m).abs() <= 1e-5 && (b - m).abs() <= 1e-5);
//! }
//! // The same, as one call with any formulation:
//! assert_eq!(x.global_avg_pool(Gap::Mean)?.shape(), &[n, c]);
//! # Ok(())
//! # }
//! ```
//!
//! The rest of the family: [`CudaTensor::avg_pool2d`] and [`CudaTensor::max_pool2d`] with every
//! PyTorch option ([`AvgPool2d`], [`MaxPool2d`]), `max_pool2d_with_indices`, adaptive average
//! and max pooling, [`CudaTensor::mean`] / [`CudaTensor::sum`] over any dims, and the backward
//! passes (deterministic on every device). Data may be f32, f64, `half::f16` or `half::bf16`,
//! 3-D or 4-D, NCHW or channels-last; ops keep the input's layout.
//!
//! Devices: [`Device::cuda`] (feature `cuda`, default; builds without a CUDA toolkit and
//! returns `Err(Error::CudaUnavailable)` where there is no driver), [`Device::cpu`], and
//! [`Device::emulated`] (feature `emulator`: the CUDA kernels run on the host, for tests).

pub mod cpu;
pub mod cuda;
mod device;
pub mod dtype;
#[cfg(feature = "emulator")]
pub mod emulator;
pub mod error;
pub mod host_cache;
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
