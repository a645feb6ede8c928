//! The crate's typed error. Every message says what was asked and what is allowed; where PyTorch
//! has its own wording for a rejected argument, the message uses it.

/// Everything that can go wrong in cupool. No input makes the library panic; it returns one of these.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An argument PyTorch would reject (kernel, stride, padding, output size, dims, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A tensor's rank or shape does not fit the op (wrong rank, zero-size dims, shape mismatch).
    #[error("shape error: {0}")]
    Shape(String),
    /// A dtype the op does not take, or two tensors of different dtypes in one call.
    #[error("dtype error: {0}")]
    DType(String),
    /// Tensors from different devices in one call.
    #[error("device mismatch: {0}")]
    DeviceMismatch(String),
    /// No CUDA driver, no GPU, or the driver refused to start.
    #[error("CUDA unavailable: {0}")]
    CudaUnavailable(String),
    /// A CUDA driver call failed (launch failure, bad context, ...).
    #[error("CUDA driver error: {0}")]
    Driver(String),
    /// NVRTC (or a missing cubin) kept the kernels from loading; carries NVRTC's log.
    #[error("kernel compile error: {0}")]
    KernelCompile(String),
    /// The device ran out of memory.
    #[error("out of device memory: {0}")]
    OutOfMemory(String),
    /// The emulator caught a kernel misbehaving (out-of-bounds access, bad launch configuration),
    /// or a kernel reported bad data through its error flag (an index out of range).
    #[error("kernel fault: {0}")]
    KernelFault(String),
    /// A feature that exists in the API but not on this device or build.
    #[error("not supported: {0}")]
    Unsupported(String),
}

/// `Result` with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// Shorthand for `Err(Error::InvalidArgument(..))` with `format!` arguments.
macro_rules! invalid_arg {
    ($($t:tt)*) => { return Err($crate::error::Error::InvalidArgument(format!($($t)*))) };
}
/// Shorthand for `Err(Error::Shape(..))` with `format!` arguments.
macro_rules! shape_err {
    ($($t:tt)*) => { return Err($crate::error::Error::Shape(format!($($t)*))) };
}
pub(crate) use invalid_arg;
pub(crate) use shape_err;
