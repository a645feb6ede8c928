//! Launch planning for kernels/copy.cu: a strided view (rank <= 8) gathered into a contiguous
//! output, for `.contiguous()`, `to_channels_last()` and reshape copies on the GPU.

use super::plan::{BufferId, KernelArg, OpPlan};
use super::reduce::{blocks_for, launch, to_i64};
use super::DeviceLimits;
use crate::dtype::DType;
use crate::error::{Error, Result};

const BLOCK: u32 = 256;
/// The most dims the kernel's params hold.
pub const MAX_RANK: usize = 8;

/// Mirrors `StridedCopyParams` in kernels/copy.cu.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct StridedCopyParams {
    pub sizes: [i64; MAX_RANK],
    pub strides: [i64; MAX_RANK],
    pub offset: i64,
    pub total: i64,
    pub rank: i32,
    pub pad_: i32,
}

/// Plans `y = x.as_strided(shape, strides, offset).contiguous()` (strides and offset in
/// elements). Input(0) = the strided source, Output(0) = the contiguous output.
pub fn plan_strided_copy(
    shape: &[usize],
    strides: &[usize],
    offset: usize,
    dtype: DType,
    limits: &DeviceLimits,
) -> Result<OpPlan> {
    // Every dtype has a copy kernel, i64 (indices) included.
    if shape.len() != strides.len() {
        return Err(Error::InvalidArgument(format!(
            "strided_copy: {} sizes but {} strides",
            shape.len(),
            strides.len()
        )));
    }
    if shape.len() > MAX_RANK {
        return Err(Error::Unsupported(format!("strided_copy: rank {} exceeds {MAX_RANK}", shape.len())));
    }
    let total = shape
        .iter()
        .try_fold(1usize, |a, &s| a.checked_mul(s))
        .ok_or_else(|| Error::InvalidArgument("strided_copy: element count overflows".into()))?;
    if total == 0 {
        return Ok(OpPlan::default());
    }
    // The furthest source element must be addressable with 64-bit element offsets.
    let last = shape
        .iter()
        .zip(strides)
        .try_fold(offset, |a, (&s, &st)| (s - 1).checked_mul(st).and_then(|d| a.checked_add(d)));
    match last {
        Some(l) if l <= i64::MAX as usize / 8 => {}
        _ => {
            return Err(Error::InvalidArgument(
                "strided_copy: source offsets overflow 64-bit indexing".into(),
            ))
        }
    }
    let mut p = StridedCopyParams {
        sizes: [1; MAX_RANK],
        strides: [0; MAX_RANK],
        offset: to_i64(offset, "offset")?,
        total: to_i64(total, "elements")?,
        rank: shape.len() as i32,
        pad_: 0,
    };
    for (d, (&s, &st)) in shape.iter().zip(strides).enumerate() {
        p.sizes[d] = to_i64(s, "size")?;
        p.strides[d] = to_i64(st, "stride")?;
    }
    let l = launch(
        format!("strided_copy_{}", dtype.kernel_suffix()),
        [blocks_for(total, BLOCK), 1, 1],
        BLOCK,
        0,
        vec![
            KernelArg::params(&p),
            KernelArg::Buffer(BufferId::Input(0)),
            KernelArg::Buffer(BufferId::Output(0)),
        ],
        limits,
    )?;
    Ok(OpPlan { launches: vec![l], ..OpPlan::default() })
}
