//! Reduction semantics shared by every backend: PyTorch's dim rules, and the one shape every
//! reduction is brought to, `[outer, reduce, inner]` in memory order.

use crate::error::{invalid_arg, Result};

/// A reduction over the middle axis of a buffer viewed as `[outer, reduce, inner]` (row-major),
/// writing `[outer, inner]`. NCHW GAP is `[N*C, H*W, 1]`; NHWC GAP is `[N, H*W, C]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReduceGeometry {
    pub outer: usize,
    pub reduce: usize,
    pub inner: usize,
}

impl ReduceGeometry {
    pub fn input_len(&self) -> usize {
        self.outer * self.reduce * self.inner
    }
    pub fn output_len(&self) -> usize {
        self.outer * self.inner
    }
}

/// What is done with a sum before it is stored once, rounded to the output dtype.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ReduceFinish {
    Sum,
    /// `sum / divisor` in the accumulator type: `mean` (divisor = count, NaN for an empty
    /// reduction) and the global `avg_pool2d` (divisor = H*W or `divisor_override`).
    DivideBy(f64),
}

/// PyTorch's `maybe_wrap_dim` over a list: negative dims count from the end, each dim once.
/// An empty list means every dim, as in `torch.mean(x, dim=[])`. Returns sorted dims.
pub fn normalize_dims(dims: &[isize], rank: usize) -> Result<Vec<usize>> {
    if dims.is_empty() {
        return Ok((0..rank).collect());
    }
    // A 0-d tensor takes dims -1 and 0, as PyTorch's scalars do.
    let wrap = rank.max(1) as isize;
    let mut seen = vec![false; wrap as usize];
    for &d in dims {
        if d < -wrap || d >= wrap {
            invalid_arg!(
                "Dimension out of range (expected to be in range of [{}, {}], but got {d})",
                -wrap,
                wrap - 1
            );
        }
        let i = if d < 0 { d + wrap } else { d } as usize;
        if seen[i] {
            invalid_arg!("dim {i} appears multiple times in the list of dims");
        }
        seen[i] = true;
    }
    Ok((0..rank).filter(|&i| seen[i]).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dims_wrap_and_repeat_like_pytorch() {
        assert_eq!(normalize_dims(&[-1, -2], 4).unwrap(), vec![2, 3]);
        assert_eq!(normalize_dims(&[], 3).unwrap(), vec![0, 1, 2]);
        assert!(normalize_dims(&[4], 4).is_err());
        assert!(normalize_dims(&[-5], 4).is_err());
        assert!(normalize_dims(&[1, -3], 4).is_err());
    }
}
