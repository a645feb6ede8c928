//! Criterion: windowed pooling (max 2x2 s2, max 3x3 s2 p1 with and without indices, avg 3x3
//! s2 p1 and s1 p1), CPU device, on a (8, 64, 112, 112) early feature map, NCHW and NHWC, f32
//! and bf16. Throughput is bytes read + written. The full suite is `cupool bench`.

use criterion::measurement::WallTime;
use criterion::{black_box, criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use cupool::{AvgPool2d, CudaTensor, DType, Device, MaxPool2d};
use ndarray::{ArrayD, IxDyn};
use std::time::Duration;

/// Uniform values in [-1, 1) from a fixed seed (xorshift64*: plenty for benchmark data).
fn input(dims: [usize; 4], dtype: DType, channels_last: bool) -> CudaTensor {
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

fn bytes_of(t: &CudaTensor) -> u64 {
    (t.numel() * t.dtype().size_in_bytes()) as u64
}

fn layout_name(channels_last: bool) -> &'static str {
    if channels_last {
        "nhwc"
    } else {
        "nchw"
    }
}

/// Registers `op` under `name` with `bytes` moved per call, or says why not when the op fails
/// (a backend that does not implement it yet): a bench must not panic mid-run.
fn bench_op<F>(group: &mut BenchmarkGroup<'_, WallTime>, name: &str, bytes: u64, op: F)
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
fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
}

fn window(c: &mut Criterion) {
    let mut group = c.benchmark_group("window");
    let dims = [8, 64, 112, 112];
    for dtype in [DType::F32, DType::BF16] {
        for channels_last in [false, true] {
            let x = input(dims, dtype, channels_last);
            let es = dtype.size_in_bytes() as u64;
            let plane_out = |oh: usize, ow: usize| (dims[0] * dims[1] * oh * ow) as u64;
            let tag = format!("{}/{dtype}", layout_name(channels_last));
            let max2 = MaxPool2d::new([2, 2]).stride([2, 2]);
            let max3 = MaxPool2d::new([3, 3]).stride([2, 2]).padding([1, 1]);
            let avg_s2 = AvgPool2d::new([3, 3]).stride([2, 2]).padding([1, 1]);
            let avg_s1 = AvgPool2d::new([3, 3]).stride([1, 1]).padding([1, 1]);
            bench_op(&mut group, &format!("max_k2s2/{tag}"), bytes_of(&x) + plane_out(56, 56) * es, || {
                Ok(vec![x.max_pool2d(&max2)?])
            });
            bench_op(&mut group, &format!("max_k3s2p1/{tag}"), bytes_of(&x) + plane_out(56, 56) * es, || {
                Ok(vec![x.max_pool2d(&max3)?])
            });
            bench_op(
                &mut group,
                &format!("max_k3s2p1_indices/{tag}"),
                bytes_of(&x) + plane_out(56, 56) * (es + 8),
                || {
                    let (v, i) = x.max_pool2d_with_indices(&max3)?;
                    Ok(vec![v, i])
                },
            );
            bench_op(&mut group, &format!("avg_k3s2p1/{tag}"), bytes_of(&x) + plane_out(56, 56) * es, || {
                Ok(vec![x.avg_pool2d(&avg_s2)?])
            });
            bench_op(&mut group, &format!("avg_k3s1p1/{tag}"), 2 * bytes_of(&x), || {
                Ok(vec![x.avg_pool2d(&avg_s1)?])
            });
        }
    }
    group.finish();
}

criterion_group! { name = benches; config = config(); targets = window }
criterion_main!(benches);
