//! Criterion: windowed pooling (max 2x2 s2, max 3x3 s2 p1 with and without indices, avg 3x3
//! s2 p1 and s1 p1), CPU device, on a (8, 64, 112, 112) early feature map, NCHW and NHWC, f32
//! and bf16. Throughput is bytes read + written. The full suite is `cupool bench`.

use criterion::{criterion_group, criterion_main, Criterion};
use cupool::{AvgPool2d, DType, MaxPool2d};

mod common;
use common::{bench_op, bytes_of, config, input, layout_name};

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
