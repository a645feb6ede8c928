//! The three ways PyTorch users write global average pooling, and `global_avg_pool(Gap::*)`,
//! agree with each other (to the f32 tolerance) on random inputs, for f32 in both layouts and
//! bf16, on the CPU and the emulator.

mod common;

use common::{host_devices, GoldenElement};
use cupool::{AvgPool2d, CudaTensor, Device, Gap};
use half::bf16;
use ndarray::{ArrayD, IxDyn};

/// A small deterministic generator (splitmix64), so the test needs no rand crate.
struct SplitMix(u64);

impl SplitMix {
    fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

const SHAPES: [[usize; 4]; 6] =
    [[2, 3, 7, 7], [1, 4, 13, 17], [2, 2, 1, 1], [1, 2, 1, 300], [3, 5, 9, 1], [1, 16, 5, 6]];

/// Every formulation's (N, C) values, in row-major order, labelled.
fn formulations<T: GoldenElement>(x: &CudaTensor) -> Result<Vec<(&'static str, Vec<f64>)>, String> {
    let s = x.shape().to_vec();
    let (n, c) = (s[0] as isize, s[1] as isize);
    fn e(what: &'static str) -> impl Fn(cupool::Error) -> String {
        move |err| format!("{what}: {err}")
    }
    let results = vec![
        ("avg_pool2d(whole plane)", x.avg_pool2d(&AvgPool2d::new([s[2], s[3]])).map_err(e("avg_pool2d"))?),
        ("adaptive_avg_pool2d([1, 1])", x.adaptive_avg_pool2d([1, 1]).map_err(e("adaptive_avg_pool2d"))?),
        (
            "view(n, c, -1).mean([2])",
            x.view(&[n, c, -1]).and_then(|v| v.mean(&[2], false)).map_err(e("view+mean"))?,
        ),
        ("global_avg_pool(AvgPool2d)", x.global_avg_pool(Gap::AvgPool2d).map_err(e("Gap::AvgPool2d"))?),
        (
            "global_avg_pool(AdaptiveAvgPool2d)",
            x.global_avg_pool(Gap::AdaptiveAvgPool2d).map_err(e("Gap::Adaptive"))?,
        ),
        ("global_avg_pool(Mean)", x.global_avg_pool(Gap::Mean).map_err(e("Gap::Mean"))?),
    ];
    results
        .into_iter()
        .map(|(name, t)| {
            let v = t.to_array::<T>().map_err(|err| format!("{name}: to_array: {err}"))?;
            Ok((name, v.iter().map(|x| x.as_f64()).collect()))
        })
        .collect()
}

fn check(dev: &Device, shape: [usize; 4], bf: bool, channels_last: bool, seed: u64) -> Result<(), String> {
    let mut rng = SplitMix(seed);
    let n: usize = shape.iter().product();
    let values: Vec<f64> = (0..n).map(|_| rng.next_f64() * 4.0 - 1.0).collect();
    let x = if bf {
        let a = ArrayD::from_shape_vec(IxDyn(&shape), values.iter().map(|&v| bf16::from_f64(v)).collect())
            .map_err(|e| e.to_string())?;
        CudaTensor::from_array(dev, &a)
    } else {
        let a = ArrayD::from_shape_vec(IxDyn(&shape), values.iter().map(|&v| v as f32).collect())
            .map_err(|e| e.to_string())?;
        CudaTensor::from_array(dev, &a)
    }
    .map_err(|e| e.to_string())?;
    let x = if channels_last { x.to_channels_last().map_err(|e| e.to_string())? } else { x };
    let all = if bf { formulations::<bf16>(&x)? } else { formulations::<f32>(&x)? };
    let (rtol, atol) = f32::TOL;
    let (ref_name, reference) = &all[0];
    if reference.len() != shape[0] * shape[1] {
        return Err(format!("{ref_name}: {} values for N*C = {}", reference.len(), shape[0] * shape[1]));
    }
    for (name, vals) in &all[1..] {
        if vals.len() != reference.len() {
            return Err(format!("{name}: {} values, {ref_name} has {}", vals.len(), reference.len()));
        }
        for (i, (a, b)) in vals.iter().zip(reference).enumerate() {
            if (a - b).abs() > atol + rtol * b.abs() {
                return Err(format!("{name} [{i}] = {a:?}, {ref_name} = {b:?}"));
            }
        }
    }
    Ok(())
}

#[test]
fn the_three_gap_formulations_agree() {
    let mut failures = Vec::new();
    for (dev_name, dev) in host_devices() {
        for (k, shape) in SHAPES.iter().enumerate() {
            for (bf, cl) in [(false, false), (false, true), (true, false), (true, true)] {
                if let Err(e) = check(&dev, *shape, bf, cl, 1000 + k as u64) {
                    let dtype = if bf { "bf16" } else { "f32" };
                    let layout = if cl { "nhwc" } else { "nchw" };
                    failures.push(format!("{shape:?} {dtype} {layout} on {dev_name}: {e}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}
