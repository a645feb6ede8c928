//! GPU outputs are not zeroed (a plan's kernels write every element; DESIGN.md "The CUDA
//! backend"), and freed GPU memory stays pooled for the next allocation. So an op that runs
//! right after a large tensor full of NaN was dropped most likely gets that memory back: its
//! outputs must still be the CPU's (within the summation-order tolerance; indices exactly), with
//! no NaN left anywhere (the inputs hold none). On the emulator outputs start as 0xFF bytes
//! (NaN) anyway; on the CPU this is the host cache's reuse. `Device::release_cached_memory`
//! must work between ops on every device.

mod common;

use common::devices;
use cupool::{AvgPool2d, CudaTensor, DType, Device, MaxPool2d};

/// Every output's values as f64 (indices too: they are far below 2^53).
fn values(t: &CudaTensor) -> Vec<f64> {
    if t.dtype() == DType::I64 {
        return t.to_array::<i64>().unwrap().iter().map(|&v| v as f64).collect();
    }
    t.to_dtype(DType::F64).unwrap().to_array::<f64>().unwrap().iter().copied().collect()
}

/// `got` against the CPU's `want`, op by op: same lengths, no NaN, values within `rtol`.
fn check(got: &[Vec<f64>], want: &[Vec<f64>], rtol: f64, what: &str) {
    assert_eq!(got.len(), want.len());
    for (op, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.len(), w.len(), "{what}: op {op}'s length");
        for (i, (&a, &b)) in g.iter().zip(w).enumerate() {
            assert!(!a.is_nan(), "{what}: op {op} left element {i} unwritten (NaN)");
            assert!(
                (a - b).abs() <= rtol * (1.0 + b.abs()),
                "{what}: op {op} element {i}: {a} against the CPU's {b}"
            );
        }
    }
}

/// Forward and backward ops of every kind of plan: gathers, reductions, the broadcast.
fn run_ops(dev: &Device, dtype: DType, channels_last: bool) -> Vec<Vec<f64>> {
    let shape = [2usize, 8, 21, 19];
    let len: usize = shape.iter().product();
    let data: Vec<f32> = (0..len).map(|i| ((i * 7919) % 1009) as f32 / 101.0 - 5.0).collect();
    let mut x = CudaTensor::from_vec(dev, &shape, data).unwrap().to_dtype(dtype).unwrap();
    if channels_last {
        x = x.to_channels_last().unwrap();
    }
    let max = MaxPool2d::new([3, 3]).stride([2, 2]).padding([1, 1]);
    let avg = AvgPool2d::new([3, 3]).stride([2, 2]).padding([1, 1]);
    let (y, idx) = x.max_pool2d_with_indices(&max).unwrap();
    let gap = x.mean(&[-2, -1], false).unwrap();
    vec![
        values(&y),
        values(&idx),
        values(&x.avg_pool2d(&avg).unwrap()),
        values(&gap),
        values(&x.adaptive_avg_pool2d([5, 3]).unwrap()),
        values(&x.max_pool2d_backward(&y, &idx, &max).unwrap()),
        values(&x.avg_pool2d_backward(&x.avg_pool2d(&avg).unwrap(), &avg).unwrap()),
        values(&x.adaptive_avg_pool2d_backward(&x.adaptive_avg_pool2d([5, 3]).unwrap()).unwrap()),
        values(&x.mean_backward(&gap, &[-2, -1], false).unwrap()),
        values(&x.contiguous().unwrap()),
    ]
}

/// Drops a NaN-filled tensor about the size of the ops' outputs, so that the allocator holds
/// NaN bytes where their outputs may land.
fn leave_nan_behind(dev: &Device) {
    let len = 2 * 8 * 21 * 19 * 8;
    drop(CudaTensor::from_vec(dev, &[len], vec![f32::NAN; len]).unwrap());
}

#[test]
fn outputs_are_whole_after_freed_memory_and_a_release() {
    let cpu = Device::cpu();
    for (name, dev) in devices() {
        for dtype in [DType::F32, DType::BF16] {
            for channels_last in [false, true] {
                let want = run_ops(&cpu, dtype, channels_last);
                leave_nan_behind(&dev);
                let rtol = if dtype == DType::BF16 { 1e-2 } else { 1e-5 };
                let what = format!("{name} {dtype} channels_last={channels_last}");
                check(
                    &run_ops(&dev, dtype, channels_last),
                    &want,
                    rtol,
                    &format!("{what}, after NaN was freed"),
                );
                dev.release_cached_memory().unwrap();
                check(&run_ops(&dev, dtype, channels_last), &want, rtol, &format!("{what}, after a release"));
            }
        }
    }
}
