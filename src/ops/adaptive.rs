//! Adaptive pooling semantics: PyTorch's integer window bounds and its input checks.
//! Sources: `aten/src/ATen/native/AdaptivePooling.h`, `AdaptiveAveragePooling.cpp`,
//! `AdaptiveMaxPooling2d.cpp`.

use crate::error::{shape_err, Result};

/// A validated adaptive pooling problem: input (N, C, H, W) to output (N, C, out_h, out_w).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdaptiveGeometry {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub out_h: usize,
    pub out_w: usize,
}

/// `floor(o * input / output)`, computed without overflow as PyTorch's `start_index`.
#[inline]
pub fn adaptive_start(o: usize, output: usize, input: usize) -> usize {
    (o / output) * input + ((o % output) * input) / output
}

/// `ceil((o + 1) * input / output)`, as PyTorch's `end_index`.
#[inline]
pub fn adaptive_end(o: usize, output: usize, input: usize) -> usize {
    1 + ((o + 1) * input - 1) / output
}

impl AdaptiveGeometry {
    /// The input rows `[start, end)` that output row `oh` pools.
    #[inline]
    pub fn rows(&self, oh: usize) -> (usize, usize) {
        (adaptive_start(oh, self.out_h, self.h), adaptive_end(oh, self.out_h, self.h))
    }
    /// The input columns `[start, end)` that output column `ow` pools.
    #[inline]
    pub fn cols(&self, ow: usize) -> (usize, usize) {
        (adaptive_start(ow, self.out_w, self.w), adaptive_end(ow, self.out_w, self.w))
    }
    pub fn input_len(&self) -> usize {
        self.n * self.c * self.h * self.w
    }
    pub fn output_len(&self) -> usize {
        self.n * self.c * self.out_h * self.out_w
    }
}

/// Which adaptive op is checked: PyTorch's rules differ in which dims may be empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdaptiveKind {
    Avg,
    Max,
}

/// Validates an adaptive pooling call as PyTorch does and returns its geometry.
pub fn plan_adaptive_pool(
    kind: AdaptiveKind,
    shape: &[usize],
    output: [usize; 2],
) -> Result<AdaptiveGeometry> {
    let op = match kind {
        AdaptiveKind::Avg => "adaptive_avg_pool2d",
        AdaptiveKind::Max => "adaptive_max_pool2d",
    };
    let (n, c, h, w) = match *shape {
        [c, h, w] => (1, c, h, w),
        [n, c, h, w] => (n, c, h, w),
        _ => shape_err!("{op}(): Expected 3D or 4D tensor, but got {shape:?}"),
    };
    // Avg only needs a non-empty plane; max also needs C (every dim but the batch).
    let first_checked = match kind {
        AdaptiveKind::Avg => shape.len() - 2,
        AdaptiveKind::Max => 1,
    };
    for (i, &d) in shape.iter().enumerate().skip(first_checked) {
        if d == 0 {
            shape_err!(
                "{op}(): Expected input to have non-zero size for non-batch dimensions, but input has sizes {shape:?} with dimension {i} being empty"
            );
        }
    }
    // The output may be far larger than the input, and even when the batch is empty its
    // strides must fit; its span in bytes must fit an isize.
    let out_extent = crate::tensor::checked_extent(&[n, c, output[0], output[1]]);
    if out_extent.is_none_or(|extent| extent > isize::MAX as usize / 8) {
        shape_err!("{op}(): output_size {output:?} for input {shape:?} is too large to allocate");
    }
    Ok(AdaptiveGeometry { n, c, h, w, out_h: output[0], out_w: output[1] })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_overlap_when_output_is_larger_than_input() {
        let w: Vec<_> = (0..5).map(|o| (adaptive_start(o, 5, 3), adaptive_end(o, 5, 3))).collect();
        assert_eq!(w, vec![(0, 1), (0, 2), (1, 2), (1, 3), (2, 3)]);
    }

    #[test]
    fn windows_tile_an_exact_division() {
        let w: Vec<_> = (0..7).map(|o| (adaptive_start(o, 7, 56), adaptive_end(o, 7, 56))).collect();
        assert_eq!(w[0], (0, 8));
        assert_eq!(w[6], (48, 56));
    }
}
