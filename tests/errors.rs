//! Every call PyTorch rejects (tests/golden/errors.json, with torch's message) returns `Err` on
//! the CPU and the emulator, and never panics; plus mismatches PyTorch cannot express the same way
//! (dtype, device, I64 data, views).

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};

use common::{avg_spec, case_name, host_devices, isizes, max_spec, pair, usizes, zeros};
use cupool::{AvgPool2d, CudaTensor, Device, MaxPool2d};
use ndarray::{ArrayD, IxDyn};
use serde_json::Value;

/// Runs the op of an error case; `Ok(())` means cupool accepted what torch rejected.
fn call(dev: &Device, case: &Value) -> Result<(), String> {
    let input = &case["input"];
    let dtype = input["dtype"].as_str().unwrap_or("f32");
    let x = zeros(dev, &usizes(&input["shape"]), dtype, input["channels_last"].as_bool().unwrap_or(false))?;
    let p = &case["params"];
    let grad = || zeros(dev, &usizes(&case["grad_out"]["shape"]), dtype, false);
    let indices = || zeros(dev, &usizes(&case["indices"]["shape"]), "i64", false);
    let result: cupool::Result<()> = match case["op"].as_str().unwrap_or("") {
        "avg_pool2d" => x.avg_pool2d(&avg_spec(p)).map(drop),
        "max_pool2d" => x.max_pool2d(&max_spec(p)).map(drop),
        "max_pool2d_with_indices" => x.max_pool2d_with_indices(&max_spec(p)).map(drop),
        "adaptive_avg_pool2d" => x.adaptive_avg_pool2d(pair(&p["output_size"])).map(drop),
        "adaptive_max_pool2d" => x.adaptive_max_pool2d(pair(&p["output_size"])).map(drop),
        "adaptive_max_pool2d_with_indices" => {
            x.adaptive_max_pool2d_with_indices(pair(&p["output_size"])).map(drop)
        }
        "mean" => x.mean(&isizes(&p["dims"]), p["keepdim"].as_bool().unwrap_or(false)).map(drop),
        "sum" => x.sum(&isizes(&p["dims"]), p["keepdim"].as_bool().unwrap_or(false)).map(drop),
        "avg_pool2d_backward" => x.avg_pool2d_backward(&grad()?, &avg_spec(p)).map(drop),
        "max_pool2d_backward" => x.max_pool2d_backward(&grad()?, &indices()?, &max_spec(p)).map(drop),
        "adaptive_avg_pool2d_backward" => x.adaptive_avg_pool2d_backward(&grad()?).map(drop),
        "adaptive_max_pool2d_backward" => x.adaptive_max_pool2d_backward(&grad()?, &indices()?).map(drop),
        "mean_backward" => {
            x.mean_backward(&grad()?, &isizes(&p["dims"]), p["keepdim"].as_bool().unwrap_or(false)).map(drop)
        }
        other => return Err(format!("unknown op {other:?}")),
    };
    match result {
        Ok(()) => Err(format!("accepted; torch says: {}", case["torch_error"].as_str().unwrap_or("?"))),
        Err(_) => Ok(()),
    }
}

#[test]
fn every_call_torch_rejects_is_an_error() {
    let cases = common::load_cases("errors");
    let mut failures = Vec::new();
    for (dev_name, dev) in host_devices() {
        for case in &cases {
            let msg = match catch_unwind(AssertUnwindSafe(|| call(&dev, case))) {
                Ok(Ok(())) => continue,
                Ok(Err(m)) => m,
                Err(panic) => format!("PANIC: {}", common::panic_message(&panic)),
            };
            failures.push(format!("{} on {dev_name}: {msg}", case_name(case)));
        }
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}

/// Asserts `f` returns `Err` without panicking.
fn assert_err<T>(what: &str, f: impl FnOnce() -> cupool::Result<T>) {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(_)) => panic!("{what}: accepted, expected an error"),
        Ok(Err(e)) => println!("{what}: {e}"),
        Err(panic) => panic!("{what}: panicked: {}", common::panic_message(&panic)),
    }
}

fn f32_tensor(dev: &Device, shape: &[usize]) -> CudaTensor {
    let n: usize = shape.iter().product();
    let data: Vec<f32> = (0..n).map(|i| i as f32 * 0.25 - 3.0).collect();
    CudaTensor::from_array(dev, &ArrayD::from_shape_vec(IxDyn(shape), data).expect("shape"))
        .expect("from_array")
}

#[test]
fn backward_with_grad_of_another_dtype_is_an_error() {
    for (name, dev) in host_devices() {
        let x = f32_tensor(&dev, &[1, 2, 4, 4]);
        let spec = AvgPool2d::new([2, 2]);
        let y = x.avg_pool2d(&spec).expect("forward");
        let g64 = CudaTensor::from_array(&dev, &ArrayD::<f64>::zeros(IxDyn(y.shape()))).expect("from_array");
        assert_err(&format!("{name}: avg_pool2d_backward f64 grad, f32 x"), || {
            x.avg_pool2d_backward(&g64, &spec)
        });
        assert_err(&format!("{name}: adaptive_avg_pool2d_backward f64 grad"), || {
            x.adaptive_avg_pool2d_backward(&g64)
        });
        let mspec = MaxPool2d::new([2, 2]);
        let (_, idx) = x.max_pool2d_with_indices(&mspec).expect("forward");
        assert_err(&format!("{name}: max_pool2d_backward f64 grad"), || {
            x.max_pool2d_backward(&g64, &idx, &mspec)
        });
        let gm = CudaTensor::from_array(&dev, &ArrayD::<f64>::zeros(IxDyn(&[1, 2]))).expect("from_array");
        assert_err(&format!("{name}: mean_backward f64 grad"), || x.mean_backward(&gm, &[2, 3], false));
        // indices of a float dtype are not indices
        let yf = x.max_pool2d(&mspec).expect("forward");
        assert_err(&format!("{name}: max_pool2d_backward with f32 indices"), || {
            x.max_pool2d_backward(&yf, &yf, &mspec)
        });
    }
}

#[test]
fn mixing_devices_is_an_error() {
    let Ok(emu) = Device::emulated() else {
        println!("skip: emulated device unavailable");
        return;
    };
    let cpu = Device::cpu();
    let x = f32_tensor(&emu, &[1, 2, 4, 4]);
    let g = f32_tensor(&cpu, &[1, 2, 2, 2]);
    let spec = AvgPool2d::new([2, 2]);
    assert_err("avg_pool2d_backward: CPU grad, emulated x", || x.avg_pool2d_backward(&g, &spec));
    assert_err("adaptive_avg_pool2d_backward: CPU grad, emulated x", || x.adaptive_avg_pool2d_backward(&g));
    let mspec = MaxPool2d::new([2, 2]);
    let (_, idx) = x.max_pool2d_with_indices(&mspec).expect("forward");
    assert_err("max_pool2d_backward: CPU grad, emulated x", || x.max_pool2d_backward(&g, &idx, &mspec));
    let (_, idx_cpu) = f32_tensor(&cpu, &[1, 2, 4, 4]).max_pool2d_with_indices(&mspec).expect("forward");
    let g_emu = f32_tensor(&emu, &[1, 2, 2, 2]);
    assert_err("max_pool2d_backward: CPU indices, emulated x", || {
        x.max_pool2d_backward(&g_emu, &idx_cpu, &mspec)
    });
    let gm = f32_tensor(&cpu, &[1, 2]);
    assert_err("mean_backward: CPU grad, emulated x", || x.mean_backward(&gm, &[2, 3], false));
}

#[test]
fn i64_data_is_not_poolable() {
    for (name, dev) in host_devices() {
        let x = match CudaTensor::from_array(&dev, &ArrayD::<i64>::ones(IxDyn(&[1, 2, 4, 4]))) {
            Ok(x) => x,
            Err(e) => {
                println!("{name}: from_array(i64) already refuses: {e}");
                continue;
            }
        };
        assert_err(&format!("{name}: avg_pool2d on i64"), || x.avg_pool2d(&AvgPool2d::new([2, 2])));
        assert_err(&format!("{name}: max_pool2d on i64"), || x.max_pool2d(&MaxPool2d::new([2, 2])));
        assert_err(&format!("{name}: max_pool2d_with_indices on i64"), || {
            x.max_pool2d_with_indices(&MaxPool2d::new([2, 2]))
        });
        assert_err(&format!("{name}: adaptive_avg_pool2d on i64"), || x.adaptive_avg_pool2d([1, 1]));
        assert_err(&format!("{name}: adaptive_max_pool2d on i64"), || x.adaptive_max_pool2d([2, 2]));
        assert_err(&format!("{name}: mean on i64"), || x.mean(&[2, 3], false));
        assert_err(&format!("{name}: global_avg_pool on i64"), || x.global_avg_pool(cupool::Gap::Mean));
    }
}

#[test]
fn views_torch_rejects_are_errors() {
    for (name, dev) in host_devices() {
        let x = f32_tensor(&dev, &[2, 3, 4, 5]);
        let cl = x.to_channels_last().expect("to_channels_last");
        // torch: "view size is not compatible with input tensor's size and stride ..."
        assert_err(&format!("{name}: view(-1) of channels-last"), || cl.view(&[-1]));
        assert_err(&format!("{name}: view(2, -1) of channels-last"), || cl.view(&[2, -1]));
        // torch: "only one dimension can be inferred"
        assert_err(&format!("{name}: view(-1, -1)"), || x.view(&[-1, -1]));
        // torch: "shape '[7, -1]' is invalid for input of size 120"
        assert_err(&format!("{name}: view(7, -1)"), || x.view(&[7, -1]));
        assert_err(&format!("{name}: view(2, 3, 21)"), || x.view(&[2, 3, 21]));
        assert_err(&format!("{name}: view(-2, 60)"), || x.view(&[-2, 60]));
        // and what torch accepts stays accepted
        assert!(cl.view(&[2, 3, -1]).is_ok(), "{name}: view(n, c, -1) of channels-last is valid in torch");
        assert!(x.view(&[-1]).is_ok(), "{name}: view(-1) of a contiguous tensor");
        assert!(cl.reshape(&[-1]).is_ok(), "{name}: reshape copies where view cannot");
    }
}

/// An output the machine cannot hold is an error, not an abort.
#[test]
fn a_huge_adaptive_output_is_an_error_not_an_abort() {
    let x =
        CudaTensor::from_array(&Device::cpu(), &ndarray::ArrayD::<f32>::zeros(ndarray::IxDyn(&[1, 1, 2, 2])))
            .unwrap();
    let huge = 1usize << 40;
    assert!(x.adaptive_avg_pool2d([huge, huge]).is_err());
    assert!(x.adaptive_max_pool2d_with_indices([huge, huge]).is_err());
    // 2^40 f32 outputs (4 TiB): the count fits, the allocation does not.
    let big = 1usize << 20;
    assert!(matches!(x.adaptive_avg_pool2d([big, big]), Err(cupool::Error::OutOfMemory(_))));
}

/// Sizes past int64, and shapes whose strides overflow, are errors on every device and in
/// debug builds too (where an overflowing multiply panics). PyTorch takes int64 sizes and lets
/// its window arithmetic wrap near the limit; cupool checks it instead.
#[test]
fn sizes_that_overflow_are_errors_not_panics() {
    const MAX: usize = usize::MAX;
    for (name, dev) in host_devices() {
        let x = f32_tensor(&dev, &[1, 2, 5, 5]);
        // dilation * (kernel - 1) + 1 leaves int64 (the CPU used to wrap it and pool garbage)
        for dilation in [[MAX, 1], [1 << 63, 1], [i64::MAX as usize, 1], [1, i64::MAX as usize]] {
            let spec = MaxPool2d::new([2, 2]).dilation(dilation);
            assert_err(&format!("{name}: max_pool2d dilation {dilation:?}"), || x.max_pool2d(&spec));
            assert_err(&format!("{name}: max_pool2d_with_indices dilation {dilation:?}"), || {
                x.max_pool2d_with_indices(&spec)
            });
        }
        for kernel in [[MAX, 1], [1, MAX], [i64::MAX as usize, 1]] {
            assert_err(&format!("{name}: avg_pool2d kernel {kernel:?}"), || {
                x.avg_pool2d(&AvgPool2d::new(kernel))
            });
            let wide = MaxPool2d::new(kernel).dilation([MAX / 2, MAX / 2]);
            assert_err(&format!("{name}: max_pool2d kernel {kernel:?} dilated"), || x.max_pool2d(&wide));
        }
        // padding of half a kernel near i64::MAX: input + 2 * padding leaves int64
        let half = i64::MAX as usize / 2;
        let padded = AvgPool2d::new([2 * half, 1]).padding([half, 0]).stride([1, 1]);
        assert_err(&format!("{name}: avg_pool2d padding {half}"), || x.avg_pool2d(&padded));
        let strided = AvgPool2d::new([2, 2]).stride([MAX, 1]).ceil_mode(true);
        assert_err(&format!("{name}: avg_pool2d stride past int64"), || x.avg_pool2d(&strided));

        // shapes whose element count or strides overflow, even when they hold nothing
        assert_err(&format!("{name}: from_vec [MAX, 2]"), || {
            CudaTensor::from_vec(&dev, &[MAX, 2], vec![0f32; 4])
        });
        assert_err(&format!("{name}: from_vec [2^32, 2^32, 0, 5]"), || {
            CudaTensor::from_vec(&dev, &[1 << 32, 1 << 32, 0, 5], Vec::<f32>::new())
        });
        assert_err(&format!("{name}: from_vec [MAX, 0]"), || {
            CudaTensor::from_vec(&dev, &[MAX, 0], Vec::<f32>::new())
        });
        let empty = CudaTensor::from_vec(&dev, &[0, 1 << 61, 1, 1], Vec::<f32>::new()).expect("strides fit");
        assert_err(&format!("{name}: view of an empty tensor as [2^62, 2^62, 0]"), || {
            empty.view(&[1 << 62, 1 << 62, 0])
        });
        assert_err(&format!("{name}: reshape [isize::MAX, isize::MAX, 0, -1]"), || {
            empty.reshape(&[isize::MAX, isize::MAX, 0, -1])
        });
        // outputs of an empty batch whose strides would not fit
        let pad_one = AvgPool2d::new([2, 2]).stride([1, 1]).padding([1, 1]);
        assert_err(&format!("{name}: avg_pool2d growing an empty batch past isize"), || {
            empty.avg_pool2d(&pad_one)
        });
        let max_pad_one = MaxPool2d::new([2, 2]).stride([1, 1]).padding([1, 1]);
        assert_err(&format!("{name}: max_pool2d growing an empty batch past isize"), || {
            empty.max_pool2d_with_indices(&max_pad_one)
        });
        assert_err(&format!("{name}: adaptive_max_pool2d of an empty batch to 3x3"), || {
            empty.adaptive_max_pool2d_with_indices([3, 3])
        });
        // and an empty batch whose output fits still works
        let y = empty.avg_pool2d(&AvgPool2d::new([1, 1])).expect("same-size output of an empty batch");
        assert_eq!(y.shape(), &[0, 1 << 61, 1, 1]);
        assert_eq!(empty.mean(&[2, 3], false).expect("mean").shape(), &[0, 1 << 61]);
    }
}
