//! Backward passes on the emulated CUDA device (the real kernels of kernels/backward.cu and their
//! launch plans, run on the host) against the CPU backend: every planner, every dtype, both
//! layouts; bit-for-bit repeatability; out-of-plane indices rejected on both devices.

use cupool::{AvgPool2d, CudaTensor, DType, Device, MaxPool2d};
use ndarray::{ArrayD, IxDyn};

/// Deterministic pseudo-random values in [-1, 1).
fn values(len: usize, seed: u64) -> Vec<f64> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(1);
    (0..len)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
        })
        .collect()
}

const DTYPES: [DType; 4] = [DType::F32, DType::F64, DType::F16, DType::BF16];

/// (rel, abs) tolerance per dtype.
fn tolerance(dtype: DType) -> (f64, f64) {
    match dtype {
        DType::F32 => (1e-5, 1e-6),
        DType::F64 => (1e-12, 1e-12),
        DType::F16 => (1e-3, 1e-3),
        _ => (8e-3, 8e-3),
    }
}

/// A float tensor of `shape` with values from `seed`, in `dtype`, on `device`, channels-last
/// when `nhwc`.
fn tensor(device: &Device, shape: &[usize], seed: u64, dtype: DType, nhwc: bool) -> CudaTensor {
    let n: usize = shape.iter().product();
    let arr = ArrayD::from_shape_vec(IxDyn(shape), values(n, seed)).unwrap();
    let t = CudaTensor::from_array(device, &arr).unwrap().to_dtype(dtype).unwrap();
    if nhwc {
        t.to_channels_last().unwrap()
    } else {
        t
    }
}

fn as_f64(t: &CudaTensor) -> Vec<f64> {
    t.to_dtype(DType::F64).unwrap().to_array::<f64>().unwrap().iter().copied().collect()
}

fn bits(t: &CudaTensor) -> Vec<u64> {
    as_f64(t).iter().map(|v| v.to_bits()).collect()
}

fn assert_close(emu: &CudaTensor, cpu: &CudaTensor, dtype: DType, exact: bool, what: &str) {
    assert_eq!(emu.shape(), cpu.shape(), "{what}: shape");
    let (a, b) = (as_f64(emu), as_f64(cpu));
    let (rel, abs) = tolerance(dtype);
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        let ok = if exact && matches!(dtype, DType::F32 | DType::F64) {
            x.to_bits() == y.to_bits()
        } else {
            (x - y).abs() <= abs + rel * y.abs()
        };
        assert!(ok, "{what}: element {i}: emulated {x}, cpu {y}");
    }
}

struct Devices {
    cpu: Device,
    emu: Device,
}

fn devices() -> Devices {
    Devices { cpu: Device::cpu(), emu: Device::emulated().expect("feature emulator") }
}

fn avg_specs() -> Vec<(Vec<usize>, AvgPool2d)> {
    vec![
        (vec![2, 4, 7, 9], AvgPool2d::new([3, 3]).stride([2, 2]).padding([1, 1])),
        (
            vec![2, 4, 7, 9],
            AvgPool2d::new([3, 3]).stride([2, 2]).padding([1, 1]).ceil_mode(true).count_include_pad(false),
        ),
        (vec![1, 3, 6, 6], AvgPool2d::new([3, 2]).stride([1, 1]).padding([1, 0]).divisor_override(Some(-5))),
        (vec![1, 8, 5, 5], AvgPool2d::new([2, 2]).ceil_mode(true)),
        (vec![2, 5, 8, 11], AvgPool2d::new([4, 3]).stride([3, 2]).padding([2, 1]).ceil_mode(true)),
    ]
}

fn max_specs() -> Vec<(Vec<usize>, MaxPool2d)> {
    vec![
        (vec![2, 4, 7, 9], MaxPool2d::new([3, 3]).stride([2, 2]).padding([1, 1])),
        (vec![1, 3, 6, 6], MaxPool2d::new([3, 3]).stride([1, 1]).padding([1, 1]).ceil_mode(true)),
        (vec![2, 8, 9, 10], MaxPool2d::new([3, 2]).stride([1, 2]).padding([1, 1]).dilation([2, 3])),
        (
            vec![1, 5, 11, 7],
            MaxPool2d::new([2, 3]).stride([2, 1]).padding([1, 1]).dilation([3, 2]).ceil_mode(true),
        ),
    ]
}

#[test]
pub fn avg_pool2d_backward_matches_cpu_every_dtype_and_layout() {
    let d = devices();
    for dtype in DTYPES {
        for nhwc in [false, true] {
            for (shape, spec) in avg_specs() {
                let x_cpu = tensor(&d.cpu, &shape, 1, dtype, nhwc);
                let x_emu = tensor(&d.emu, &shape, 1, dtype, nhwc);
                let y_shape = x_cpu.avg_pool2d(&spec).map(|y| y.shape().to_vec());
                // The forward shape from the CPU backend; fall back to PyTorch's formula.
                let y_shape = y_shape.unwrap_or_else(|_| pooled(&shape, &spec));
                let g_cpu = tensor(&d.cpu, &y_shape, 2, dtype, nhwc);
                let g_emu = tensor(&d.emu, &y_shape, 2, dtype, nhwc);
                let want = x_cpu.avg_pool2d_backward(&g_cpu, &spec).unwrap();
                let got = x_emu.avg_pool2d_backward(&g_emu, &spec).unwrap();
                let what = format!("avg {dtype} nhwc={nhwc} {shape:?} {spec:?}");
                // Same divisions, same order, same rounding: bit-identical in every dtype.
                assert_close(&got, &want, dtype, true, &what);
                assert_eq!(bits(&got), bits(&want), "{what}: CPU and emulated differ in bits");
                assert_eq!(got.is_channels_last(), nhwc && !got.is_contiguous(), "{what}: layout");
                let again = x_emu.avg_pool2d_backward(&g_emu, &spec).unwrap();
                assert_eq!(bits(&got), bits(&again), "{what}: not repeatable");
            }
        }
    }
}

/// PyTorch's output size (floor mode with the ceil adjustment), for shapes only.
fn pooled(shape: &[usize], spec: &AvgPool2d) -> Vec<usize> {
    let s = spec.stride.unwrap_or(spec.kernel);
    let axis = |i: usize, k: usize, p: usize, s: usize| {
        let num = i + 2 * p - k + if spec.ceil_mode { s - 1 } else { 0 };
        let mut o = num / s + 1;
        if spec.ceil_mode && (o - 1) * s >= i + p {
            o -= 1;
        }
        o
    };
    let mut out = shape.to_vec();
    let r = out.len();
    out[r - 2] = axis(shape[r - 2], spec.kernel[0], spec.padding[0], s[0]);
    out[r - 1] = axis(shape[r - 1], spec.kernel[1], spec.padding[1], s[1]);
    out
}

/// Max indices that a forward pass could produce: a pseudo-random tap of each output's window
/// (in-bounds taps only), as a logical (N, C, oh, ow) array.
fn window_indices(shape: &[usize], spec: &MaxPool2d, out_hw: (usize, usize), seed: u64) -> ArrayD<i64> {
    let (n, c, h, w) = (shape[0], shape[1], shape[2], shape[3]);
    let s = spec.stride.unwrap_or(spec.kernel);
    let taps = |o: usize, k: usize, st: usize, p: usize, dil: usize, size: usize| -> Vec<usize> {
        (0..k)
            .filter_map(|j| {
                let i = (o * st + j * dil) as i64 - p as i64;
                (i >= 0 && (i as usize) < size).then_some(i as usize)
            })
            .collect()
    };
    let r = values(n * c * out_hw.0 * out_hw.1, seed);
    let mut out = Vec::with_capacity(r.len());
    let mut k = 0;
    for _ in 0..n * c {
        for oh in 0..out_hw.0 {
            let th = taps(oh, spec.kernel[0], s[0], spec.padding[0], spec.dilation[0], h);
            for ow in 0..out_hw.1 {
                let tw = taps(ow, spec.kernel[1], s[1], spec.padding[1], spec.dilation[1], w);
                let pick = ((r[k] + 1.0) * 1e6) as usize;
                k += 1;
                let (y, x) = (th[pick % th.len()], tw[(pick / 7) % tw.len()]);
                out.push((y * w + x) as i64);
            }
        }
    }
    ArrayD::from_shape_vec(IxDyn(&[n, c, out_hw.0, out_hw.1]), out).unwrap()
}

/// Max output size (PyTorch's rule with dilation).
fn max_out(shape: &[usize], spec: &MaxPool2d) -> (usize, usize) {
    let s = spec.stride.unwrap_or(spec.kernel);
    let axis = |i: usize, k: usize, p: usize, s: usize, d: usize| {
        let num = i + 2 * p - d * (k - 1) - 1 + if spec.ceil_mode { s - 1 } else { 0 };
        let mut o = num / s + 1;
        if spec.ceil_mode && (o - 1) * s >= i + p {
            o -= 1;
        }
        o
    };
    (
        axis(shape[2], spec.kernel[0], spec.padding[0], s[0], spec.dilation[0]),
        axis(shape[3], spec.kernel[1], spec.padding[1], s[1], spec.dilation[1]),
    )
}

/// Index tensor on `device` in the requested layout. The emulated device has no i64 copy
/// kernel, so channels-last indices there come from the emulated forward pass.
fn max_case(
    d: &Devices,
    shape: &[usize],
    spec: &MaxPool2d,
    dtype: DType,
    nhwc: bool,
) -> (CudaTensor, CudaTensor, CudaTensor, CudaTensor) {
    let x_emu = tensor(&d.emu, shape, 3, dtype, nhwc);
    let x_cpu = tensor(&d.cpu, shape, 3, dtype, nhwc);
    let (ind_emu, ind_cpu) = if nhwc {
        let (_, ind) = x_emu.max_pool2d_with_indices(spec).expect("emulated forward for NHWC indices");
        let host = ind.to_array::<i64>().unwrap();
        (ind, CudaTensor::from_array(&d.cpu, &host).unwrap())
    } else {
        let arr = window_indices(shape, spec, max_out(shape, spec), 4);
        (CudaTensor::from_array(&d.emu, &arr).unwrap(), CudaTensor::from_array(&d.cpu, &arr).unwrap())
    };
    let _ = (&x_cpu, &ind_cpu);
    (x_emu, ind_emu, x_cpu, ind_cpu)
}

#[test]
pub fn max_pool2d_backward_matches_cpu_exactly() {
    let d = devices();
    for dtype in DTYPES {
        for nhwc in [false, true] {
            for (shape, spec) in max_specs() {
                let (x_emu, ind_emu, x_cpu, ind_cpu) = max_case(&d, &shape, &spec, dtype, nhwc);
                let mut gshape = shape.clone();
                let (oh, ow) = max_out(&shape, &spec);
                gshape[2] = oh;
                gshape[3] = ow;
                let g_cpu = tensor(&d.cpu, &gshape, 5, dtype, nhwc);
                let g_emu = tensor(&d.emu, &gshape, 5, dtype, nhwc);
                let want = x_cpu.max_pool2d_backward(&g_cpu, &ind_cpu, &spec).unwrap();
                let got = x_emu.max_pool2d_backward(&g_emu, &ind_emu, &spec).unwrap();
                let what = format!("max {dtype} nhwc={nhwc} {shape:?} {spec:?}");
                assert_close(&got, &want, dtype, true, &what);
                let again = x_emu.max_pool2d_backward(&g_emu, &ind_emu, &spec).unwrap();
                assert_eq!(bits(&got), bits(&again), "{what}: not repeatable");
            }
        }
    }
}

#[test]
pub fn adaptive_avg_pool2d_backward_matches_cpu() {
    let d = devices();
    for dtype in DTYPES {
        for nhwc in [false, true] {
            for (shape, out) in [
                (vec![2, 4, 7, 9], [3, 4]),
                (vec![1, 3, 3, 5], [5, 7]),
                (vec![2, 8, 10, 10], [1, 1]),
                (vec![1, 4, 8, 8], [8, 8]),
            ] {
                let x_cpu = tensor(&d.cpu, &shape, 6, dtype, nhwc);
                let x_emu = tensor(&d.emu, &shape, 6, dtype, nhwc);
                let gshape = vec![shape[0], shape[1], out[0], out[1]];
                let g_cpu = tensor(&d.cpu, &gshape, 7, dtype, nhwc);
                let g_emu = tensor(&d.emu, &gshape, 7, dtype, nhwc);
                let want = x_cpu.adaptive_avg_pool2d_backward(&g_cpu).unwrap();
                let got = x_emu.adaptive_avg_pool2d_backward(&g_emu).unwrap();
                let what = format!("adaptive avg {dtype} nhwc={nhwc} {shape:?} {out:?}");
                assert_close(&got, &want, dtype, true, &what);
                assert_eq!(bits(&got), bits(&want), "{what}: CPU and emulated differ in bits");
                let again = x_emu.adaptive_avg_pool2d_backward(&g_emu).unwrap();
                assert_eq!(bits(&got), bits(&again), "{what}: not repeatable");
            }
        }
    }
}

#[test]
pub fn adaptive_max_pool2d_backward_matches_cpu() {
    let d = devices();
    for dtype in DTYPES {
        for nhwc in [false, true] {
            for (shape, out) in [(vec![2, 4, 7, 9], [3, 4]), (vec![1, 4, 3, 5], [5, 7])] {
                let x_emu = tensor(&d.emu, &shape, 8, dtype, nhwc);
                let x_cpu = tensor(&d.cpu, &shape, 8, dtype, nhwc);
                let (ind_emu, ind_cpu) = if nhwc {
                    let (_, ind) =
                        x_emu.adaptive_max_pool2d_with_indices(out).expect("emulated adaptive forward");
                    let host = ind.to_array::<i64>().unwrap();
                    (ind, CudaTensor::from_array(&d.cpu, &host).unwrap())
                } else {
                    // Any in-window element: the window's first row and a pseudo-random column.
                    let (h, w) = (shape[2], shape[3]);
                    let mut v = Vec::new();
                    let r = values(shape[0] * shape[1] * out[0] * out[1], 9);
                    for (k, rv) in r.iter().enumerate() {
                        let (oh, ow) = ((k / out[1]) % out[0], k % out[1]);
                        let (h0, w0) = (oh * h / out[0], ow * w / out[1]);
                        let w1 = ((ow + 1) * w).div_ceil(out[1]);
                        let x = w0 + ((rv + 1.0) * 1e6) as usize % (w1 - w0);
                        v.push((h0 * w + x) as i64);
                    }
                    let arr =
                        ArrayD::from_shape_vec(IxDyn(&[shape[0], shape[1], out[0], out[1]]), v).unwrap();
                    (
                        CudaTensor::from_array(&d.emu, &arr).unwrap(),
                        CudaTensor::from_array(&d.cpu, &arr).unwrap(),
                    )
                };
                let gshape = vec![shape[0], shape[1], out[0], out[1]];
                let g_cpu = tensor(&d.cpu, &gshape, 10, dtype, nhwc);
                let g_emu = tensor(&d.emu, &gshape, 10, dtype, nhwc);
                let want = x_cpu.adaptive_max_pool2d_backward(&g_cpu, &ind_cpu).unwrap();
                let got = x_emu.adaptive_max_pool2d_backward(&g_emu, &ind_emu).unwrap();
                let what = format!("adaptive max {dtype} nhwc={nhwc} {shape:?} {out:?}");
                assert_close(&got, &want, dtype, true, &what);
                let again = x_emu.adaptive_max_pool2d_backward(&g_emu, &ind_emu).unwrap();
                assert_eq!(bits(&got), bits(&again), "{what}: not repeatable");
            }
        }
    }
}

#[test]
pub fn mean_backward_matches_cpu() {
    let d = devices();
    for dtype in DTYPES {
        for (shape, dims, keepdim) in [
            (vec![2, 3, 4, 5], vec![2isize, 3], true),
            (vec![2, 3, 4, 5], vec![-1], false),
            (vec![3, 7], vec![0], false),
            (vec![2, 3, 4], vec![0, 2], true),
            (vec![4, 5], vec![0, 1], false),
        ] {
            let x_cpu = tensor(&d.cpu, &shape, 11, dtype, false);
            let x_emu = tensor(&d.emu, &shape, 11, dtype, false);
            let rank = shape.len() as isize;
            let norm: Vec<usize> =
                dims.iter().map(|&d| if d < 0 { (d + rank) as usize } else { d as usize }).collect();
            let gshape: Vec<usize> = (0..shape.len())
                .filter_map(|i| if norm.contains(&i) { keepdim.then_some(1) } else { Some(shape[i]) })
                .collect();
            let g_cpu = tensor(&d.cpu, &gshape, 12, dtype, false);
            let g_emu = tensor(&d.emu, &gshape, 12, dtype, false);
            let want = x_cpu.mean_backward(&g_cpu, &dims, keepdim).unwrap();
            let got = x_emu.mean_backward(&g_emu, &dims, keepdim).unwrap();
            let what = format!("mean {dtype} {shape:?} {dims:?} {keepdim}");
            assert_close(&got, &want, dtype, true, &what);
            assert_eq!(bits(&got), bits(&want), "{what}: CPU and emulated differ in bits");
        }
    }
}

#[test]
pub fn out_of_plane_index_is_an_error_on_both_devices() {
    let d = devices();
    let shape = [1usize, 2, 4, 4];
    let spec = MaxPool2d::new([2, 2]);
    for bad in [-1i64, 16, 1 << 40] {
        let mut idx = ArrayD::<i64>::zeros(IxDyn(&[1, 2, 2, 2]));
        idx[[0, 1, 1, 0]] = bad;
        for dev in [&d.cpu, &d.emu] {
            let x = tensor(dev, &shape, 13, DType::F32, false);
            let g = tensor(dev, &[1, 2, 2, 2], 14, DType::F32, false);
            let ind = CudaTensor::from_array(dev, &idx).unwrap();
            assert!(x.max_pool2d_backward(&g, &ind, &spec).is_err(), "{} index {bad}", dev.name());
            assert!(x.adaptive_max_pool2d_backward(&g, &ind).is_err(), "{} adaptive index {bad}", dev.name());
        }
    }
}

/// A dilated window can hold no input element at all: here (H, W) = (3, 1), one row, columns
/// -1 and 1. PyTorch's forward then gives -inf and the index of its first in-bounds row and
/// column, (0, 1): flat index 1, the element (1, 0), outside the window. Its CPU backward adds
/// the gradient there (its CUDA gather, which only visits each element's windows, drops it);
/// both devices here add it, as the golden case `max_dilated_window_past_the_edge` holds the
/// CPU to. No input element's gather visits that output, so its index is audited apart: an
/// index outside the plane there is an error on both devices too.
#[test]
pub fn window_with_no_input_element_routes_its_index_on_both_devices() {
    let d = devices();
    let shape = [1usize, 2, 3, 1];
    let spec = MaxPool2d::new([1, 2]).stride([3, 3]).padding([0, 1]).dilation([2, 2]).ceil_mode(true);
    for dev in [&d.cpu, &d.emu] {
        let x = tensor(dev, &shape, 21, DType::F32, false);
        let (values, indices) = x.max_pool2d_with_indices(&spec).unwrap();
        assert_eq!(values.shape(), &[1, 2, 1, 1]);
        assert!(as_f64(&values).iter().all(|&v| v == f64::NEG_INFINITY), "{}", dev.name());
        assert_eq!(indices.to_array::<i64>().unwrap().iter().copied().collect::<Vec<_>>(), vec![1, 1]);
        let g = CudaTensor::from_array(
            dev,
            &ArrayD::from_shape_vec(IxDyn(&[1, 2, 1, 1]), vec![2.5f32, -4.0]).unwrap(),
        )
        .unwrap();
        let grad = x.max_pool2d_backward(&g, &indices, &spec).unwrap();
        assert_eq!(as_f64(&grad), vec![0.0, 2.5, 0.0, 0.0, -4.0, 0.0], "{}", dev.name());
        for bad in [-1i64, 3] {
            let ind = CudaTensor::from_array(dev, &ArrayD::from_elem(IxDyn(&[1, 2, 1, 1]), bad)).unwrap();
            assert!(x.max_pool2d_backward(&g, &ind, &spec).is_err(), "{} index {bad}", dev.name());
        }
    }
}

#[test]
pub fn large_input_takes_the_grid_stride_loop() {
    // 1.28 M input elements: more than the planner's 132 SMs x 32 blocks x 256 threads.
    let d = devices();
    let shape = [2usize, 16, 200, 200];
    let spec = AvgPool2d::new([3, 3]).stride([2, 2]).padding([1, 1]).ceil_mode(true);
    let x_cpu = tensor(&d.cpu, &shape, 15, DType::F32, false);
    let x_emu = tensor(&d.emu, &shape, 15, DType::F32, false);
    let gshape = pooled(&shape, &spec);
    let want = x_cpu.avg_pool2d_backward(&tensor(&d.cpu, &gshape, 16, DType::F32, false), &spec).unwrap();
    let got = x_emu.avg_pool2d_backward(&tensor(&d.emu, &gshape, 16, DType::F32, false), &spec).unwrap();
    assert_eq!(bits(&got), bits(&want));
}

#[test]
pub fn empty_batch_and_empty_output() {
    let d = devices();
    for dev in [&d.cpu, &d.emu] {
        let x = tensor(dev, &[0, 3, 4, 4], 17, DType::F32, false);
        let g = tensor(dev, &[0, 3, 2, 2], 18, DType::F32, false);
        let spec = AvgPool2d::new([2, 2]);
        assert_eq!(x.avg_pool2d_backward(&g, &spec).unwrap().shape(), &[0, 3, 4, 4]);
        assert_eq!(x.adaptive_avg_pool2d_backward(&g).unwrap().shape(), &[0, 3, 4, 4]);
        // Adaptive pooling to an empty output: the forward accepts it, and PyTorch's backward
        // rejects the empty gradient ("Expected grad_output to have non-zero size for
        // non-batch dimensions"), so cupool's does too.
        let x = tensor(dev, &[1, 3, 4, 4], 19, DType::F32, false);
        let g = tensor(dev, &[1, 3, 0, 2], 20, DType::F32, false);
        assert!(x.adaptive_avg_pool2d_backward(&g).is_err(), "{}", dev.name());
        let ind = tensor(dev, &[1, 3, 0, 2], 21, DType::I64, false);
        assert!(x.adaptive_max_pool2d_backward(&g, &ind).is_err(), "{}", dev.name());
    }
}
