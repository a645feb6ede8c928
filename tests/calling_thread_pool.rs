//! The first thread that runs a CPU op joins cupool's thread pool as its worker 0
//! (`cpu::threads`), unless `CUPOOL_JOIN_POOL=0`; every other thread hands its parallel work to
//! rayon's global pool as before. This checks which threads join, and that an op gives the same
//! bits on a joined thread (which splits work into more, smaller tasks) as on one that did not.
//!
//! One test in its own binary (its own process): joining happens once per process, and the
//! environment variable is read on each thread's first op.

use cupool::{AvgPool2d, CudaTensor, Device, MaxPool2d};

/// A few op families on shapes large enough to run in parallel, as the bits of every output.
fn run_ops() -> Vec<Vec<u64>> {
    let dev = Device::cpu();
    let shape = [4usize, 64, 28, 28];
    let len: usize = shape.iter().product();
    let data: Vec<f32> = (0..len).map(|i| ((i * 7919) % 1009) as f32 / 101.0 - 5.0).collect();
    let nchw = CudaTensor::from_vec(&dev, &shape, data).unwrap();
    let mut outputs = Vec::new();
    for x in [nchw.clone(), nchw.to_channels_last().unwrap()] {
        let avg = AvgPool2d::new([3, 3]).stride([1, 1]).padding([1, 1]);
        let max = MaxPool2d::new([3, 3]).stride([2, 2]).padding([1, 1]);
        let y = x.avg_pool2d(&avg).unwrap();
        let (m, i) = x.max_pool2d_with_indices(&max).unwrap();
        let dx = x.avg_pool2d_backward(&y, &avg).unwrap();
        for t in [y, m, dx, x.mean(&[2, 3], false).unwrap(), x.adaptive_avg_pool2d([7, 7]).unwrap()] {
            outputs.push(
                t.contiguous()
                    .unwrap()
                    .to_array::<f32>()
                    .unwrap()
                    .iter()
                    .map(|v| v.to_bits() as u64)
                    .collect(),
            );
        }
        outputs.push(i.contiguous().unwrap().to_array::<i64>().unwrap().iter().map(|&v| v as u64).collect());
    }
    outputs
}

/// Runs the ops on a new thread; returns their bits and that thread's rayon index afterwards.
fn on_new_thread() -> (Vec<Vec<u64>>, Option<usize>) {
    std::thread::spawn(|| (run_ops(), rayon::current_thread_index())).join().unwrap()
}

#[test]
fn first_calling_thread_joins_the_pool_and_results_do_not_depend_on_it() {
    // Opted out: the thread stays outside every pool.
    std::env::set_var("CUPOOL_JOIN_POOL", "0");
    let (opted_out, index) = on_new_thread();
    assert_eq!(index, None, "CUPOOL_JOIN_POOL=0 keeps the thread out");
    std::env::remove_var("CUPOOL_JOIN_POOL");

    // The first thread that may join becomes worker 0 of cupool's pool...
    let (joined, index) = on_new_thread();
    assert_eq!(index, Some(0), "the first calling thread joins as worker 0");
    // ...and only that one.
    let (later, index) = on_new_thread();
    assert_eq!(index, None, "a second thread keeps rayon's global pool");

    assert_eq!(joined.len(), opted_out.len());
    for (k, ((a, b), c)) in joined.iter().zip(&opted_out).zip(&later).enumerate() {
        assert!(a == b && b == c, "output {k} differs between threads");
    }
}
