//! CPU ops write into buffers the host cache hands back from dropped tensors (`host_cache`),
//! without zeroing them when the kernel writes every element. This checks that each op family
//! gives the same bits into a reused buffer full of NaNs as into a fresh one: an element a
//! kernel forgot to write would stay NaN, and a backward pass that accumulates into a buffer
//! it did not zero would come out NaN too.
//!
//! One test in its own binary (its own process), so no other test shares the process-wide
//! cache and the reuse itself can be asserted.

use cupool::{host_cache, AvgPool2d, CudaTensor, DType, Device, Gap, MaxPool2d};

type Outputs = Vec<(DType, Vec<u64>)>;

/// Every output's bits, with its dtype.
fn bits(tensors: &[&CudaTensor]) -> Outputs {
    tensors
        .iter()
        .map(|t| {
            let bits = if t.dtype() == DType::I64 {
                t.to_array::<i64>().unwrap().iter().map(|&v| v as u64).collect()
            } else {
                // Every f32, f16 and bf16 value is exact in f64, NaN stays NaN.
                t.to_dtype(DType::F64)
                    .unwrap()
                    .to_array::<f64>()
                    .unwrap()
                    .iter()
                    .map(|v| v.to_bits())
                    .collect()
            };
            (t.dtype(), bits)
        })
        .collect()
}

/// Drops a NaN-filled tensor of each output's dtype and length, so the cache holds them (the
/// most recent first) for the op's next outputs.
fn poison(dev: &Device, outputs: &[(DType, usize)]) {
    for &(dtype, len) in outputs {
        let nan = CudaTensor::from_vec(dev, &[len], vec![f32::NAN; len]).unwrap();
        let t = if dtype == DType::I64 {
            CudaTensor::from_vec(dev, &[len], vec![i64::MIN; len]).unwrap()
        } else {
            nan.to_dtype(dtype).unwrap()
        };
        drop(nan);
        drop(t);
    }
}

#[test]
fn ops_write_every_element_of_a_reused_output_buffer() {
    let dev = Device::cpu();
    let shape = [2usize, 32, 128, 128];
    let len: usize = shape.iter().product();
    let data: Vec<f32> = (0..len).map(|i| ((i * 7919) % 1009) as f32 / 101.0 - 5.0).collect();
    let nchw = CudaTensor::from_vec(&dev, &shape, data).unwrap();
    type Op = Box<dyn Fn(&CudaTensor) -> Vec<CudaTensor>>;
    let ops: Vec<(&str, Op)> = vec![
        (
            "avg_pool2d 3x3 s2 p1",
            Box::new(|x| vec![x.avg_pool2d(&AvgPool2d::new([3, 3]).stride([2, 2]).padding([1, 1])).unwrap()]),
        ),
        (
            "avg_pool2d 3x3 s1 p1",
            Box::new(|x| vec![x.avg_pool2d(&AvgPool2d::new([3, 3]).stride([1, 1]).padding([1, 1])).unwrap()]),
        ),
        ("max_pool2d 2x2", Box::new(|x| vec![x.max_pool2d(&MaxPool2d::new([2, 2])).unwrap()])),
        (
            "max_pool2d_with_indices 3x3 s2 p1",
            Box::new(|x| {
                let (v, i) = x
                    .max_pool2d_with_indices(&MaxPool2d::new([3, 3]).stride([2, 2]).padding([1, 1]))
                    .unwrap();
                vec![v, i]
            }),
        ),
        ("adaptive_avg_pool2d 64x64", Box::new(|x| vec![x.adaptive_avg_pool2d([64, 64]).unwrap()])),
        (
            "adaptive_max_pool2d_with_indices 64x64",
            Box::new(|x| {
                let (v, i) = x.adaptive_max_pool2d_with_indices([64, 64]).unwrap();
                vec![v, i]
            }),
        ),
        ("sum over N", Box::new(|x| vec![x.sum(&[0], false).unwrap()])),
        ("mean over C", Box::new(|x| vec![x.mean(&[1], true).unwrap()])),
        ("global_avg_pool", Box::new(|x| vec![x.global_avg_pool(Gap::AvgPool2d).unwrap()])),
        ("channels-last copy", Box::new(|x| vec![x.contiguous().unwrap(), x.to_channels_last().unwrap()])),
        (
            "avg_pool2d_backward 3x3 s2 p1",
            Box::new(|x| {
                let spec = AvgPool2d::new([3, 3]).stride([2, 2]).padding([1, 1]);
                let grad = x.avg_pool2d(&spec).unwrap();
                vec![x.avg_pool2d_backward(&grad, &spec).unwrap()]
            }),
        ),
        (
            "avg_pool2d_backward 2x2 s3 (inputs no window covers)",
            Box::new(|x| {
                let spec = AvgPool2d::new([2, 2]).stride([3, 3]);
                let grad = x.avg_pool2d(&spec).unwrap();
                vec![x.avg_pool2d_backward(&grad, &spec).unwrap()]
            }),
        ),
        (
            "max_pool2d_backward 2x2 s3 (inputs no window covers)",
            Box::new(|x| {
                let spec = MaxPool2d::new([2, 2]).stride([3, 3]);
                let (v, i) = x.max_pool2d_with_indices(&spec).unwrap();
                vec![x.max_pool2d_backward(&v, &i, &spec).unwrap()]
            }),
        ),
        (
            "adaptive_avg_pool2d_backward 64x64",
            Box::new(|x| {
                let grad = x.adaptive_avg_pool2d([64, 64]).unwrap();
                vec![x.adaptive_avg_pool2d_backward(&grad).unwrap()]
            }),
        ),
        (
            "max_pool2d_backward 3x3 s2 p1",
            Box::new(|x| {
                let spec = MaxPool2d::new([3, 3]).stride([2, 2]).padding([1, 1]);
                let (v, i) = x.max_pool2d_with_indices(&spec).unwrap();
                vec![x.max_pool2d_backward(&v, &i, &spec).unwrap()]
            }),
        ),
        (
            "mean_backward over HW",
            Box::new(|x| {
                let grad = x.mean(&[2, 3], false).unwrap();
                vec![x.mean_backward(&grad, &[2, 3], false).unwrap()]
            }),
        ),
        (
            "adaptive_max_pool2d_backward 64x64",
            Box::new(|x| {
                let (v, i) = x.adaptive_max_pool2d_with_indices([64, 64]).unwrap();
                vec![x.adaptive_max_pool2d_backward(&v, &i).unwrap()]
            }),
        ),
    ];
    let mut reused = 0;
    for dtype in [DType::F32, DType::BF16, DType::F64] {
        for channels_last in [false, true] {
            let x = nchw.to_dtype(dtype).unwrap();
            let x = if channels_last { x.to_channels_last().unwrap() } else { x };
            for (name, op) in &ops {
                let what = format!("{name} {dtype} channels_last={channels_last}");
                let fresh = op(&x);
                let want = bits(&fresh.iter().collect::<Vec<_>>());
                let sizes: Vec<(DType, usize)> = fresh.iter().map(|t| (t.dtype(), t.numel())).collect();
                drop(fresh);
                host_cache::clear();
                poison(&dev, &sizes);
                let held = host_cache::held_bytes();
                let again = op(&x);
                if host_cache::held_bytes() < held {
                    reused += 1;
                }
                assert_eq!(bits(&again.iter().collect::<Vec<_>>()), want, "{what}");
            }
        }
    }
    // Outputs of `host_cache::MIN_BYTES` (32 KiB) and more come from the cache: most of the cases above.
    assert!(reused >= ops.len() * 3, "only {reused} runs reused a buffer");
}
