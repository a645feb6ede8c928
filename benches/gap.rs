//! Criterion: global average pooling in its three formulations, CPU device, on ResNet-50's
//! tail (128, 2048, 7, 7) and the long-row shape (4, 8, 512, 512), NCHW and NHWC, f32, bf16 and
//! f16 (the issue sets GAP targets for all three).
//! Throughput is bytes read + written. The full suite is `cupool bench`.

use criterion::{criterion_group, criterion_main, Criterion};
use cupool::DType;

mod common;
use common::{bench_op, bytes_of, config, input, layout_name};

fn gap(c: &mut Criterion) {
    let mut group = c.benchmark_group("gap");
    for (shape_name, dims) in [("resnet_tail", [128, 2048, 7, 7]), ("long_rows", [4, 8, 512, 512])] {
        for dtype in [DType::F32, DType::BF16, DType::F16] {
            for channels_last in [false, true] {
                let x = input(dims, dtype, channels_last);
                let [n, ch, h, w] = dims;
                let bytes = bytes_of(&x) + (n * ch * dtype.size_in_bytes()) as u64;
                let tag = format!("{shape_name}/{}/{dtype}", layout_name(channels_last));
                bench_op(&mut group, &format!("avg_pool2d/{tag}"), bytes, || {
                    Ok(vec![x.avg_pool2d(&cupool::AvgPool2d::new([h, w]))?])
                });
                bench_op(&mut group, &format!("adaptive_avg_pool2d/{tag}"), bytes, || {
                    Ok(vec![x.adaptive_avg_pool2d([1, 1])?])
                });
                // The view formulation where a view exists (NCHW), else mean over (H, W).
                bench_op(&mut group, &format!("mean/{tag}"), bytes, || {
                    if channels_last {
                        Ok(vec![x.mean(&[-2, -1], false)?])
                    } else {
                        Ok(vec![x.view(&[n as isize, ch as isize, -1])?.mean(&[2], false)?])
                    }
                });
            }
        }
    }
    group.finish();
}

criterion_group! { name = benches; config = config(); targets = gap }
criterion_main!(benches);
