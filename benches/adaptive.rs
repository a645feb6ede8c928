//! Criterion: adaptive pooling, CPU device: avg and max to 7x7 from a (8, 256, 56, 56) map, avg
//! to 2x2 from ResNet-50's (128, 2048, 7, 7) tail; NCHW and NHWC, f32 and bf16. Throughput is
//! bytes read + written. The full suite is `cupool bench`.

use criterion::{criterion_group, criterion_main, Criterion};
use cupool::DType;

mod common;
use common::{bench_op, bytes_of, config, input, layout_name};

fn adaptive(c: &mut Criterion) {
    let mut group = c.benchmark_group("adaptive");
    for dtype in [DType::F32, DType::BF16] {
        for channels_last in [false, true] {
            let es = dtype.size_in_bytes() as u64;
            let tag = format!("{}/{dtype}", layout_name(channels_last));
            let map = input([8, 256, 56, 56], dtype, channels_last);
            let to7 = bytes_of(&map) + (8 * 256 * 49) as u64 * es;
            bench_op(&mut group, &format!("avg_56_to_7/{tag}"), to7, || {
                Ok(vec![map.adaptive_avg_pool2d([7, 7])?])
            });
            bench_op(&mut group, &format!("max_56_to_7/{tag}"), to7, || {
                Ok(vec![map.adaptive_max_pool2d([7, 7])?])
            });
            let tail = input([128, 2048, 7, 7], dtype, channels_last);
            let to2 = bytes_of(&tail) + (128 * 2048 * 4) as u64 * es;
            bench_op(&mut group, &format!("avg_7_to_2/{tag}"), to2, || {
                Ok(vec![tail.adaptive_avg_pool2d([2, 2])?])
            });
        }
    }
    group.finish();
}

criterion_group! { name = benches; config = config(); targets = adaptive }
criterion_main!(benches);
