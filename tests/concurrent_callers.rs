//! Several threads running ops at once get the same bits as one thread alone: the CPU's
//! thread pool (which the first calling thread joins), the host buffer cache that hands a
//! dropped output's memory to the next op, and the emulator's executor are all shared.

use cupool::{AvgPool2d, CudaTensor, Device, MaxPool2d};

/// The bits of a forward-and-backward round over one of a few shapes, chosen by `seed`.
fn run_ops(dev: &Device, seed: usize) -> Vec<Vec<u32>> {
    let shape = [2usize, 16 + seed % 5 * 8, 20 + seed % 3, 17];
    let len: usize = shape.iter().product();
    let data: Vec<f32> = (0..len).map(|i| (((i + seed) * 7919) % 1009) as f32 / 101.0 - 5.0).collect();
    let nchw = CudaTensor::from_vec(dev, &shape, data).unwrap();
    let avg = AvgPool2d::new([3, 3]).stride([2, 2]).padding([1, 1]);
    let max = MaxPool2d::new([3, 3]).stride([2, 2]).padding([1, 1]);
    let mut outputs = Vec::new();
    for x in [nchw.clone(), nchw.to_channels_last().unwrap()] {
        let y = x.avg_pool2d(&avg).unwrap();
        let (m, i) = x.max_pool2d_with_indices(&max).unwrap();
        let dx_avg = x.avg_pool2d_backward(&y, &avg).unwrap();
        let dx_max = x.max_pool2d_backward(&m, &i, &max).unwrap();
        let mean = x.mean(&[2, 3], false).unwrap();
        let adaptive = x.adaptive_max_pool2d([5, 3]).unwrap();
        let sum = x.sum(&[0, 2], true).unwrap();
        for t in [y, m, dx_avg, dx_max, mean, adaptive, sum] {
            outputs.push(
                t.contiguous().unwrap().to_array::<f32>().unwrap().iter().map(|v| v.to_bits()).collect(),
            );
        }
    }
    outputs
}

#[test]
fn concurrent_callers_get_the_same_bits_as_one() {
    const SEEDS: usize = 15;
    let mut devices = vec![Device::cpu()];
    devices.extend(Device::emulated());
    for dev in devices {
        let expected: Vec<_> = (0..SEEDS).map(|seed| run_ops(&dev, seed)).collect();
        std::thread::scope(|scope| {
            for thread in 0..6 {
                let (dev, expected) = (dev.clone(), &expected);
                scope.spawn(move || {
                    for round in 0..8 {
                        let seed = (thread * 7 + round) % SEEDS;
                        assert!(
                            run_ops(&dev, seed) == expected[seed],
                            "{}: thread {thread} round {round}",
                            dev.name()
                        );
                    }
                });
            }
        });
    }
}
