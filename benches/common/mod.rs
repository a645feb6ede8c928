//! Shared by the criterion benches: deterministic inputs on the CPU device, byte counts, and a
//! registration helper that skips (rather than panics on) an op a backend lacks.
#![allow(dead_code)] // each bench uses a different subset

use criterion::measurement::WallTime;
use criterion::{black_box, BenchmarkGroup, Criterion, Throughput};
use cupool::{CudaTensor, DType, Device};
use ndarray::{ArrayD, IxDyn};
use std::time::Duration;

/// Uniform values in [-1, 1) from a fixed seed (xorshift64*: plenty for benchmark data).
pub fn input(dims: [usize; 4], dtype: DType, channels_last: bool) -> CudaTensor {
    let mut s = 0x9E37_79B9_7F4A_7C15u64;
    let values: Vec<f32> = (0..dims.iter().product::<usize>())
        .map(|_| {
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            (s.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect();
    let array = ArrayD::from_shape_vec(IxDyn(&dims), values).expect("shape matches the data");
    let x =
        CudaTensor::from_array(&Device::cpu(), &array).and_then(|x| x.to_dtype(dtype)).expect("cpu tensor");
    if channels_last {
        x.to_channels_last().expect("4-D input")
    } else {
        x
    }
}

pub fn bytes_of(t: &CudaTensor) -> u64 {
    (t.numel() * t.dtype().size_in_bytes()) as u64
}

pub fn layout_name(channels_last: bool) -> &'static str {
    if channels_last {
        "nhwc"
    } else {
        "nchw"
    }
}

/// Registers `op` under `name` with `bytes` moved per call, or says why not when the op fails
/// (a backend that does not implement it yet): a bench must not panic mid-run.
pub fn bench_op<F>(group: &mut BenchmarkGroup<'_, WallTime>, name: &str, bytes: u64, op: F)
where
    F: Fn() -> cupool::Result<Vec<CudaTensor>>,
{
    if let Err(e) = op() {
        eprintln!("skipping {name}: {e}");
        return;
    }
    group.throughput(Throughput::Bytes(bytes));
    group.bench_function(name, |b| b.iter(|| op().map(black_box)));
}

/// Small samples and short windows: every `cargo bench` target finishes in well under a
/// minute on a 2-core machine.
pub fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
}
