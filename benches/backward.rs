//! Criterion: backward passes (avg 3x3 s2 p1, max 3x3 s2 p1, adaptive avg to 7x7, mean over
//! (H, W)), CPU device, on a (8, 64, 112, 112) map, NCHW and NHWC, f32 and bf16. Throughput is
//! bytes read (gradient, indices) + written (the input's gradient). Backward ops a backend does
//! not implement yet are skipped with a message. The full suite is `cupool bench`.

use criterion::{criterion_group, criterion_main, Criterion};
use cupool::{AvgPool2d, DType, MaxPool2d};

mod common;
use common::{bench_op, bytes_of, config, input, layout_name};

fn backward(c: &mut Criterion) {
    let mut group = c.benchmark_group("backward");
    let avg = AvgPool2d::new([3, 3]).stride([2, 2]).padding([1, 1]);
    let max = MaxPool2d::new([3, 3]).stride([2, 2]).padding([1, 1]);
    for dtype in [DType::F32, DType::BF16] {
        for channels_last in [false, true] {
            let x = input([8, 64, 112, 112], dtype, channels_last);
            let tag = format!("{}/{dtype}", layout_name(channels_last));
            // Gradients shaped like each forward output, made once outside the timing.
            let grads = (
                x.avg_pool2d(&avg),
                x.max_pool2d_with_indices(&max),
                x.adaptive_avg_pool2d([7, 7]),
                x.mean(&[-2, -1], false),
            );
            match grads {
                (Ok(g_avg), Ok((g_max, indices)), Ok(g_ada), Ok(g_mean)) => {
                    bench_op(
                        &mut group,
                        &format!("avg_k3s2p1/{tag}"),
                        bytes_of(&g_avg) + bytes_of(&x),
                        || Ok(vec![x.avg_pool2d_backward(&g_avg, &avg)?]),
                    );
                    let max_bytes = bytes_of(&g_max) + bytes_of(&indices) + bytes_of(&x);
                    bench_op(&mut group, &format!("max_k3s2p1/{tag}"), max_bytes, || {
                        Ok(vec![x.max_pool2d_backward(&g_max, &indices, &max)?])
                    });
                    bench_op(
                        &mut group,
                        &format!("adaptive_avg_7/{tag}"),
                        bytes_of(&g_ada) + bytes_of(&x),
                        || Ok(vec![x.adaptive_avg_pool2d_backward(&g_ada)?]),
                    );
                    bench_op(&mut group, &format!("mean_hw/{tag}"), bytes_of(&g_mean) + bytes_of(&x), || {
                        Ok(vec![x.mean_backward(&g_mean, &[-2, -1], false)?])
                    });
                }
                _ => eprintln!("skipping backward/{tag}: a forward op failed"),
            }
        }
    }
    group.finish();
}

criterion_group! { name = benches; config = config(); targets = backward }
criterion_main!(benches);
