//! Reductions of inputs of 32 MB and more prefetch ahead of their loads on the CPU (16-bit
//! rows everywhere; every type, NCHW rows and channels-last column blocks, on Intel: see
//! `cpu::reduce`). The hints must not change what is summed: each mean here is checked against
//! a plain f64 sum of the values as stored, on inputs just over that size, in both layouts.

use cupool::{CudaTensor, DType, Device};

/// `x` (NCHW values as stored, row-major) reduced over H and W by an f64 sum, per (n, c).
fn plain_means(values: &[f32], [n, c, h, w]: [usize; 4]) -> Vec<f64> {
    (0..n * c)
        .map(|plane| {
            values[plane * h * w..(plane + 1) * h * w].iter().map(|&v| f64::from(v)).sum::<f64>()
                / (h * w) as f64
        })
        .collect()
}

fn check(dtype: DType, shape: [usize; 4], (rtol, atol): (f64, f64)) {
    let dev = Device::cpu();
    let len: usize = shape.iter().product();
    // Values near 1 with a small spread, off any power-of-two grid (so the sums round): a
    // running f32 sum of millions of them would drift, and every plane has its own mean.
    let plane = shape[2] * shape[3];
    let data: Vec<f32> = (0..len)
        .map(|i| {
            1.0 + ((i.wrapping_mul(2_654_435_761) >> 7) % 1000) as f32 / 997.0 + (i / plane) as f32 / 61.0
        })
        .collect();
    let x = CudaTensor::from_vec(&dev, &shape, data).unwrap().to_dtype(dtype).unwrap();
    let stored: Vec<f32> =
        x.to_dtype(DType::F32).unwrap().to_array::<f32>().unwrap().iter().copied().collect();
    let expected = plain_means(&stored, shape);
    for x in [x.clone(), x.to_channels_last().unwrap()] {
        assert!(x.numel() * dtype.size_in_bytes() >= 32 << 20, "the input must reach the prefetch threshold");
        let got = x.mean(&[-2, -1], false).unwrap().to_dtype(DType::F32).unwrap().to_array::<f32>().unwrap();
        for (k, (&g, &e)) in got.iter().zip(&expected).enumerate() {
            let err = (f64::from(g) - e).abs();
            assert!(err <= atol + rtol * e.abs(), "{dtype:?} {shape:?} plane {k}: {g} against {e}");
        }
    }
}

#[test]
fn f32_means_of_32_mb_match_a_plain_f64_sum() {
    check(DType::F32, [1, 64, 512, 256], (1e-5, 1e-6));
}

#[test]
fn bf16_and_f16_means_of_32_mb_match_a_plain_f64_sum() {
    check(DType::BF16, [2, 64, 512, 256], (8e-3, 8e-3));
    check(DType::F16, [2, 64, 512, 256], (1e-3, 1e-3));
}
