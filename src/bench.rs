//! `cupool bench`: measures the machine's baseline bandwidth, then times every forward and
//! backward op over DESIGN.md's shape suite and prints one markdown row per (op, shape, layout,
//! dtype) with the median time, GB/s (bytes read + bytes written) and % of the baseline.
//!
//! `benches/compare_torch.py` runs PyTorch over the same suite in the same order (the op names,
//! shapes and byte counts here and there must stay in step) and joins on our `--json` output.

use anyhow::{Context, Result};
use cupool::{AvgPool2d, CudaTensor, DType, Device, MaxPool2d};
use half::{bf16, f16};
use ndarray::{ArrayD, IxDyn};
use rayon::prelude::*;
use std::fmt::Write as _;
use std::time::Instant;

/// A shape of the suite, by name; `adaptive_only` marks the extra (32, 256, 56, 56) map that
/// only the adaptive-to-7x7 ops use.
struct SuiteShape {
    name: &'static str,
    dims: [usize; 4],
    adaptive_only: bool,
}

const SUITE: [SuiteShape; 7] = [
    SuiteShape { name: "seed", dims: [256, 96, 128, 128], adaptive_only: false },
    SuiteShape { name: "resnet_tail", dims: [128, 2048, 7, 7], adaptive_only: false },
    SuiteShape { name: "effnet_tail", dims: [64, 1280, 7, 7], adaptive_only: false },
    SuiteShape { name: "early_map", dims: [32, 64, 112, 112], adaptive_only: false },
    SuiteShape { name: "long_rows", dims: [4, 8, 512, 512], adaptive_only: false },
    SuiteShape { name: "batch1", dims: [1, 2048, 7, 7], adaptive_only: false },
    SuiteShape { name: "mid_map", dims: [32, 256, 56, 56], adaptive_only: true },
];

/// The ops, in the order they run (compare_torch.py uses the same names and order).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    GapAvgPool,
    GapAdaptive,
    GapMean,
    Max2x2,
    Max3x3,
    Max3x3Indices,
    Avg3x3S2,
    Avg3x3S1,
    AdaptiveAvg7,
    AdaptiveAvg2,
    AdaptiveMax7,
    AvgBackward,
    MaxBackward,
    AdaptiveAvg7Backward,
    MeanBackward,
}

const OPS: [Op; 15] = [
    Op::GapAvgPool,
    Op::GapAdaptive,
    Op::GapMean,
    Op::Max2x2,
    Op::Max3x3,
    Op::Max3x3Indices,
    Op::Avg3x3S2,
    Op::Avg3x3S1,
    Op::AdaptiveAvg7,
    Op::AdaptiveAvg2,
    Op::AdaptiveMax7,
    Op::AvgBackward,
    Op::MaxBackward,
    Op::AdaptiveAvg7Backward,
    Op::MeanBackward,
];

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::GapAvgPool => "gap avg_pool2d(HxW)",
            Op::GapAdaptive => "gap adaptive_avg_pool2d(1,1)",
            Op::GapMean => "gap mean(-2,-1)",
            Op::Max2x2 => "max_pool2d k2 s2",
            Op::Max3x3 => "max_pool2d k3 s2 p1",
            Op::Max3x3Indices => "max_pool2d_with_indices k3 s2 p1",
            Op::Avg3x3S2 => "avg_pool2d k3 s2 p1",
            Op::Avg3x3S1 => "avg_pool2d k3 s1 p1",
            Op::AdaptiveAvg7 => "adaptive_avg_pool2d 7x7",
            Op::AdaptiveAvg2 => "adaptive_avg_pool2d 2x2",
            Op::AdaptiveMax7 => "adaptive_max_pool2d 7x7",
            Op::AvgBackward => "avg_pool2d_backward k3 s2 p1",
            Op::MaxBackward => "max_pool2d_backward k3 s2 p1",
            Op::AdaptiveAvg7Backward => "adaptive_avg_pool2d_backward 7x7",
            Op::MeanBackward => "mean_backward(-2,-1)",
        }
    }

    /// Which shapes the op runs on: adaptive-to-7x7 on the two large maps, adaptive-to-2x2 on
    /// the 7x7 tails, everything else on the six suite shapes.
    fn applies_to(self, shape: &SuiteShape) -> bool {
        match self {
            Op::AdaptiveAvg7 | Op::AdaptiveMax7 | Op::AdaptiveAvg7Backward => {
                shape.name == "early_map" || shape.name == "mid_map"
            }
            Op::AdaptiveAvg2 => !shape.adaptive_only && shape.dims[2] == 7 && shape.dims[3] == 7,
            _ => !shape.adaptive_only,
        }
    }

    /// Which element types the op runs in by default (`--dtypes` runs every op in the types it
    /// lists): f32 and bf16 for every op; f16 for the three GAP formulations, which carry the
    /// only f16 target (issue 5: f16 and bf16 GAP at 80% of the read bandwidth). f16's other
    /// ops run the same kernels as bf16 with a different conversion, so their rows would
    /// mostly repeat bf16's and lengthen every run by half.
    fn runs_in(self, dtype: DType) -> bool {
        dtype != DType::F16 || matches!(self, Op::GapAvgPool | Op::GapAdaptive | Op::GapMean)
    }
}

fn max3x3() -> MaxPool2d {
    MaxPool2d::new([3, 3]).stride([2, 2]).padding([1, 1])
}
fn avg3x3(stride: usize) -> AvgPool2d {
    AvgPool2d::new([3, 3]).stride([stride, stride]).padding([1, 1])
}

/// Bytes a tensor's elements occupy (what an op reads or writes of it).
fn bytes_of(t: &CudaTensor) -> usize {
    t.numel() * t.dtype().size_in_bytes()
}

/// Everything one timed call needs, prepared outside the timing (backward ops need the forward
/// output as a gradient, and max's indices).
struct Prepared {
    x: CudaTensor,
    grad: Option<CudaTensor>,
    indices: Option<CudaTensor>,
}

/// Prepares the op's inputs; returns the prepared state and the bytes one call moves.
fn prepare(op: Op, x: &CudaTensor) -> Result<(Prepared, usize)> {
    let (n, c, h, w) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
    let in_bytes = bytes_of(x);
    let elem = x.dtype().size_in_bytes();
    let forward_only = |out_elems: usize, extra: usize| {
        (Prepared { x: x.clone(), grad: None, indices: None }, in_bytes + out_elems * elem + extra)
    };
    Ok(match op {
        Op::GapAvgPool | Op::GapAdaptive | Op::GapMean => forward_only(n * c, 0),
        Op::Max2x2 => forward_only(n * c * (h / 2) * (w / 2), 0),
        Op::Max3x3 | Op::Avg3x3S2 => forward_only(n * c * h.div_ceil(2) * w.div_ceil(2), 0),
        Op::Max3x3Indices => {
            let out = n * c * h.div_ceil(2) * w.div_ceil(2);
            forward_only(out, out * DType::I64.size_in_bytes())
        }
        Op::Avg3x3S1 => forward_only(n * c * h * w, 0),
        Op::AdaptiveAvg7 | Op::AdaptiveMax7 => forward_only(n * c * 49, 0),
        Op::AdaptiveAvg2 => forward_only(n * c * 4, 0),
        Op::AvgBackward => {
            let grad = x.avg_pool2d(&avg3x3(2))?;
            let bytes = bytes_of(&grad) + in_bytes;
            (Prepared { x: x.clone(), grad: Some(grad), indices: None }, bytes)
        }
        Op::MaxBackward => {
            let (grad, indices) = x.max_pool2d_with_indices(&max3x3())?;
            let bytes = bytes_of(&grad) + bytes_of(&indices) + in_bytes;
            (Prepared { x: x.clone(), grad: Some(grad), indices: Some(indices) }, bytes)
        }
        Op::AdaptiveAvg7Backward => {
            let grad = x.adaptive_avg_pool2d([7, 7])?;
            let bytes = bytes_of(&grad) + in_bytes;
            (Prepared { x: x.clone(), grad: Some(grad), indices: None }, bytes)
        }
        Op::MeanBackward => {
            let grad = x.mean(&[-2, -1], false)?;
            let bytes = bytes_of(&grad) + in_bytes;
            (Prepared { x: x.clone(), grad: Some(grad), indices: None }, bytes)
        }
    })
}

/// One call of the op; returns its outputs (dropped by the caller after the clock stops).
fn call(op: Op, p: &Prepared) -> cupool::Result<Vec<CudaTensor>> {
    let x = &p.x;
    let (n, c, h, w) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
    let missing = || cupool::Error::Unsupported("bench: gradient not prepared".into());
    Ok(match op {
        Op::GapAvgPool => vec![x.avg_pool2d(&AvgPool2d::new([h, w]))?],
        Op::GapAdaptive => vec![x.adaptive_avg_pool2d([1, 1])?],
        // The view formulation where a view exists (NCHW); channels-last cannot be viewed as
        // (N, C, H*W), so it reduces the two spatial dims directly, as PyTorch users write it.
        Op::GapMean => {
            if x.is_contiguous() {
                vec![x.view(&[n as isize, c as isize, -1])?.mean(&[2], false)?]
            } else {
                vec![x.mean(&[-2, -1], false)?]
            }
        }
        Op::Max2x2 => vec![x.max_pool2d(&MaxPool2d::new([2, 2]).stride([2, 2]))?],
        Op::Max3x3 => vec![x.max_pool2d(&max3x3())?],
        Op::Max3x3Indices => {
            let (v, i) = x.max_pool2d_with_indices(&max3x3())?;
            vec![v, i]
        }
        Op::Avg3x3S2 => vec![x.avg_pool2d(&avg3x3(2))?],
        Op::Avg3x3S1 => vec![x.avg_pool2d(&avg3x3(1))?],
        Op::AdaptiveAvg7 => vec![x.adaptive_avg_pool2d([7, 7])?],
        Op::AdaptiveAvg2 => vec![x.adaptive_avg_pool2d([2, 2])?],
        Op::AdaptiveMax7 => vec![x.adaptive_max_pool2d([7, 7])?],
        Op::AvgBackward => {
            vec![x.avg_pool2d_backward(p.grad.as_ref().ok_or_else(missing)?, &avg3x3(2))?]
        }
        Op::MaxBackward => vec![x.max_pool2d_backward(
            p.grad.as_ref().ok_or_else(missing)?,
            p.indices.as_ref().ok_or_else(missing)?,
            &max3x3(),
        )?],
        Op::AdaptiveAvg7Backward => {
            vec![x.adaptive_avg_pool2d_backward(p.grad.as_ref().ok_or_else(missing)?)?]
        }
        Op::MeanBackward => {
            vec![x.mean_backward(p.grad.as_ref().ok_or_else(missing)?, &[-2, -1], false)?]
        }
    })
}

/// Waits for the device's queued work: a no-op on the CPU (ops are synchronous there); on a
/// GPU, reading back a one-element tensor on the same stream waits for everything before it.
struct Sync {
    probe: Option<CudaTensor>,
}

impl Sync {
    fn new(device: &Device) -> Result<Sync> {
        if device.is_cpu() {
            return Ok(Sync { probe: None });
        }
        let probe = CudaTensor::from_array(device, &ndarray::arr1(&[0f32]))?;
        Ok(Sync { probe: Some(probe) })
    }
    fn wait(&self) -> Result<()> {
        if let Some(p) = &self.probe {
            p.to_array::<f32>()?;
        }
        Ok(())
    }
    /// The median cost of one `wait` with nothing queued, subtracted from GPU samples.
    fn overhead_s(&self) -> Result<f64> {
        if self.probe.is_none() {
            return Ok(0.0);
        }
        let mut t = Vec::new();
        for _ in 0..21 {
            let start = Instant::now();
            self.wait()?;
            t.push(start.elapsed().as_secs_f64());
        }
        Ok(median(&mut t))
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Median seconds per call. One untimed warm-up call (kernel loading, page faults) sizes the
/// repetitions so a row takes about `row_seconds`; on a GPU each sample queues enough calls to
/// last about a millisecond, then waits once.
fn time_op(
    op: Op,
    p: &Prepared,
    sync: &Sync,
    sync_overhead_s: f64,
    row_seconds: f64,
    quick: bool,
) -> Result<(f64, usize)> {
    let start = Instant::now();
    drop(call(op, p)?);
    sync.wait()?;
    let first = start.elapsed().as_secs_f64().max(1e-7);
    if sync.probe.is_some() {
        // A GPU idles while the host makes each input: on an H200 the first op timed after
        // that ran up to 1.3x slower than the same reduction timed right after it, which looks
        // like clocks that dropped. Untimed calls for 20 ms first.
        let warm = Instant::now();
        while warm.elapsed().as_secs_f64() < 0.02 {
            drop(call(op, p)?);
            sync.wait()?;
        }
    }
    // Short ops get many samples: on a shared VM single calls of a few hundred microseconds
    // swing by 2x and more, and a median of ten is not stable.
    let max_reps = if quick { 200 } else { 400 };
    let reps = ((row_seconds / first).round() as usize).clamp(5, max_reps);
    let per_sample = calls_per_sample(sync, first);
    let mut samples = Vec::with_capacity(reps);
    for _ in 0..reps {
        samples.push(sample(op, p, sync, sync_overhead_s, per_sample)?);
    }
    Ok((median(&mut samples), reps))
}

/// Calls per timed sample: one on the CPU; on a GPU enough to last about a millisecond, so a
/// sample is not mostly the wait.
fn calls_per_sample(sync: &Sync, first_call_s: f64) -> usize {
    if sync.probe.is_some() {
        ((1e-3 / first_call_s).ceil() as usize).clamp(1, 100)
    } else {
        1
    }
}

/// One timed sample: `per_sample` calls, then a wait; seconds per call.
fn sample(op: Op, p: &Prepared, sync: &Sync, sync_overhead_s: f64, per_sample: usize) -> Result<f64> {
    let mut outputs = Vec::with_capacity(per_sample);
    let start = Instant::now();
    for _ in 0..per_sample {
        outputs.push(call(op, p)?);
    }
    sync.wait()?;
    let elapsed = start.elapsed().as_secs_f64();
    drop(outputs); // freeing is not part of the op's time
    Ok(((elapsed - sync_overhead_s) / per_sample as f64).max(1e-9))
}

/// Uniform values in [-1, 1), generated in parallel; an error where memory cannot hold them.
pub(crate) fn random_f32(len: usize, seed: u64) -> Result<Vec<f32>> {
    let mut v = Vec::new();
    v.try_reserve_exact(len).with_context(|| format!("cannot allocate {len} f32 input values"))?;
    v.resize(len, 0f32);
    v.par_chunks_mut(1 << 16).enumerate().for_each(|(chunk, out)| {
        let mut s = seed ^ (chunk as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
        for x in out {
            // xorshift64*: plenty for benchmark data.
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            let r = s.wrapping_mul(0x2545_F491_4F6C_DD1D);
            *x = (r >> 40) as f32 / (1u64 << 23) as f32 - 1.0;
        }
    });
    Ok(v)
}

/// A row-major (NCHW) input on `device`; the dtype conversion runs here in parallel rather
/// than through `to_dtype` (which goes through f64 on one thread).
fn make_input(device: &Device, dims: [usize; 4], dtype: DType) -> Result<CudaTensor> {
    let values = random_f32(dims.iter().product(), 42)?;
    fn narrowed<T: cupool::Element>(
        device: &Device,
        dims: [usize; 4],
        values: Vec<f32>,
        narrow: fn(f32) -> T,
    ) -> Result<CudaTensor> {
        let v: Vec<T> = values.par_iter().map(|&x| narrow(x)).collect();
        drop(values);
        Ok(CudaTensor::from_array(device, &ArrayD::from_shape_vec(IxDyn(&dims), v)?)?)
    }
    match dtype {
        DType::BF16 => narrowed(device, dims, values, bf16::from_f32),
        DType::F16 => narrowed(device, dims, values, f16::from_f32),
        _ => Ok(CudaTensor::from_array(device, &ArrayD::from_shape_vec(IxDyn(&dims), values)?)?
            .to_dtype(dtype)?),
    }
}

/// The machine's baseline bandwidth in GB/s and what it is.
struct Baseline {
    gbps: Option<f64>,
    what: String,
}

/// CPU: a plain, vectorised, multi-threaded sum over 1 GiB of f32 (far larger than any L3),
/// median of several runs: what a read-once reduction can reach here.
fn cpu_read_bandwidth(quick: bool) -> Baseline {
    const LEN: usize = 1 << 28; // 2^28 f32 = 1 GiB
    let data = match random_f32(LEN, 7) {
        Ok(data) => data,
        Err(e) => return Baseline { gbps: None, what: format!("streaming read not measured: {e:#}") },
    };
    let runs = if quick { 5 } else { 9 };
    let mut times = Vec::with_capacity(runs);
    let mut total = 0f32;
    for _ in 0..=runs {
        let (seconds, sum) = read_once(&data);
        times.push(seconds);
        total += sum;
    }
    times.remove(0); // the first run faults the pages of nothing, but warms the thread pool
    let t = median(&mut times);
    let gbps = (LEN * 4) as f64 / t / 1e9;
    let cached = cpu_cached_read_gbps(&data[..CACHED_READ_LEN]);
    Baseline {
        gbps: Some(gbps),
        what: format!(
            "streaming read: sum of 1 GiB f32 on {} threads, median of {runs} (checksum {total:.1}; \
             the same sum over {} MiB, in cache: {cached:.1} GB/s)",
            rayon::current_num_threads(),
            (CACHED_READ_LEN * 4) >> 20
        ),
    }
}

/// f32 elements of the cached read: 8 MiB, about what the 7x7 tails' rows read and write.
const CACHED_READ_LEN: usize = 1 << 21;

/// The baseline's sum over `data`, small enough to stay in the last-level cache: each thread
/// sums its part 16 times over in one parallel region (so no pass pays a thread wake-up);
/// median GB/s of 31 regions. It is the ceiling of rows whose data stays in cache, which
/// read "above 100%" of the streaming baseline: a row at 2x PyTorch there needs PyTorch
/// below half this rate.
fn cpu_cached_read_gbps(data: &[f32]) -> f64 {
    const PASSES: usize = 16;
    let part = data.len().div_ceil(rayon::current_num_threads());
    let mut times: Vec<f64> = (0..31)
        .map(|_| {
            let start = Instant::now();
            let sum: f32 =
                data.par_chunks(part).map(|c| (0..PASSES).map(|_| sum_lanes(c)).sum::<f32>()).sum();
            std::hint::black_box(sum);
            start.elapsed().as_secs_f64()
        })
        .collect();
    (PASSES * data.len() * 4) as f64 / median(&mut times) / 1e9
}

/// f32 elements of `bench --serve`'s `read` sample: 256 MiB, eight times the L3 here.
const READ_SAMPLE_LEN: usize = 1 << 26;

/// One pass of the baseline's sum over `data`: (seconds, the sum).
fn read_once(data: &[f32]) -> (f64, f32) {
    let start = Instant::now();
    // One contiguous range per thread, as the reduction kernels split their input.
    let part = data.len().div_ceil(rayon::current_num_threads());
    let sum: f32 = data.par_chunks(part).map(sum_lanes).sum();
    (start.elapsed().as_secs_f64(), std::hint::black_box(sum))
}

/// The baseline's inner loop: 32 independent lanes, compiled for AVX2 where the CPU has it
/// (as cupool's own kernels are), so that the baseline measures memory, not an SSE2 add chain.
fn sum_lanes(chunk: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 support was detected at run time just above.
        return unsafe { sum_lanes_avx2(chunk) };
    }
    sum_lanes_portable(chunk)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn sum_lanes_avx2(chunk: &[f32]) -> f32 {
    sum_lanes_portable(chunk)
}

#[inline(always)]
fn sum_lanes_portable(chunk: &[f32]) -> f32 {
    let mut acc = [0f32; 32];
    let mut blocks = chunk.chunks_exact(32);
    for block in &mut blocks {
        for (a, x) in acc.iter_mut().zip(block) {
            *a += *x;
        }
    }
    acc.iter().sum::<f32>() + blocks.remainder().iter().sum::<f32>()
}

fn baseline(device: &Device, quick: bool) -> Baseline {
    if device.is_cpu() {
        return cpu_read_bandwidth(quick);
    }
    // cupool's API has no plain device-to-device copy (contiguous()/to_channels_last() are
    // strided gathers, not a copy baseline), so on CUDA the copy goes through cudarc directly.
    #[cfg(feature = "cuda")]
    if device.is_cuda() {
        let ordinal = cuda_ordinal(&device.name());
        return match cuda_copy_bandwidth(ordinal, quick) {
            Ok(gbps) => Baseline {
                gbps: Some(gbps),
                what: format!(
                    "device-to-device copy (cuMemcpyDtoD) of 1 GiB on cuda:{ordinal}, read + write bytes"
                ),
            },
            Err(e) => Baseline { gbps: None, what: format!("copy bandwidth: n/a ({e})") },
        };
    }
    Baseline {
        gbps: None,
        what: "copy bandwidth: n/a (the emulator has no meaningful bandwidth; no plain copy in cupool's API)"
            .into(),
    }
}

/// The ordinal in a device name `cuda:N (...)`.
#[cfg(feature = "cuda")]
fn cuda_ordinal(name: &str) -> usize {
    name.strip_prefix("cuda:")
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|digits| digits.parse().ok())
        .unwrap_or(0)
}

/// Median GB/s (bytes read + written) of 1 GiB device-to-device copies. The device was opened
/// by cupool already, so libcuda is present (`CudaContext::new` panics without it) and this
/// retains the same primary context.
#[cfg(feature = "cuda")]
fn cuda_copy_bandwidth(ordinal: usize, quick: bool) -> std::result::Result<f64, String> {
    use cudarc::driver::CudaContext;
    const LEN: usize = 1 << 28; // f32 elements: 1 GiB a buffer
    let err = |e: cudarc::driver::DriverError| e.to_string();
    let ctx = CudaContext::new(ordinal).map_err(err)?;
    let stream = ctx.default_stream();
    let src = stream.alloc_zeros::<f32>(LEN).map_err(err)?;
    let mut dst = stream.alloc_zeros::<f32>(LEN).map_err(err)?;
    stream.memcpy_dtod(&src, &mut dst).map_err(err)?; // warm-up
    stream.synchronize().map_err(err)?;
    let (runs, copies_per_run) = if quick { (5, 4) } else { (9, 10) };
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        for _ in 0..copies_per_run {
            stream.memcpy_dtod(&src, &mut dst).map_err(err)?;
        }
        stream.synchronize().map_err(err)?;
        times.push(start.elapsed().as_secs_f64() / copies_per_run as f64);
    }
    Ok((2 * LEN * 4) as f64 / median(&mut times) / 1e9)
}

/// Host memory available now (Linux), to skip rows that would not fit.
fn available_host_bytes() -> Option<usize> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

struct Row {
    op: &'static str,
    shape_name: &'static str,
    dims: [usize; 4],
    layout: &'static str,
    dtype: DType,
    /// `Ok((median seconds, bytes, reps))` or why the row has no time.
    result: std::result::Result<(f64, usize, usize), String>,
}

fn dtype_name(d: DType) -> &'static str {
    match d {
        DType::F32 => "f32",
        DType::F64 => "f64",
        DType::F16 => "f16",
        DType::BF16 => "bf16",
        DType::I64 => "i64",
    }
}

/// `cupool bench`: the baseline, then every op of the suite; the table on stdout, progress on
/// stderr, and the same table as JSON in `json_path`.
/// Which rows of the suite to run: suite shapes by name, ops by a substring of their name, and
/// element types (empty lists: everything, f16 only where [`Op::runs_in`] says). For iterating
/// on one kernel; a report uses the whole suite.
#[derive(Default)]
pub struct Filter {
    pub shapes: Vec<String>,
    pub ops: Vec<String>,
    /// Listed types run every op.
    pub dtypes: Vec<DType>,
}

impl Filter {
    fn dtypes(&self) -> Vec<DType> {
        if self.dtypes.is_empty() {
            vec![DType::F32, DType::BF16, DType::F16]
        } else {
            self.dtypes.clone()
        }
    }

    fn op_in(&self, op: Op, dtype: DType) -> bool {
        self.op(op) && (!self.dtypes.is_empty() || op.runs_in(dtype))
    }

    fn shape(&self, s: &SuiteShape) -> bool {
        self.shapes.is_empty() || self.shapes.iter().any(|n| n == s.name)
    }

    fn op(&self, op: Op) -> bool {
        self.ops.is_empty() || self.ops.iter().any(|o| op.name().contains(o.as_str()))
    }
}

/// Runs the suite. `row_seconds`: about how long each row's timed calls take (default 0.8 s, or
/// 0.25 s with `quick`); a GPU, whose calls are short, gets a stable median from far less.
pub fn run(
    device: &Device,
    quick: bool,
    row_seconds: Option<f64>,
    json_path: Option<&str>,
    filter: &Filter,
) -> Result<()> {
    if let Some(bad) = filter.shapes.iter().find(|n| !SUITE.iter().any(|s| s.name == n.as_str())) {
        anyhow::bail!("unknown suite shape {bad}");
    }
    // The emulator runs every CUDA thread on the host: its times say nothing about a GPU, and
    // full-size shapes would take hours there.
    let quick = if device.is_emulated() && !quick {
        eprintln!("emulated device: using --quick shapes (emulator times are not GPU times)");
        true
    } else {
        quick
    };
    let row_seconds = row_seconds.unwrap_or(if quick { 0.25 } else { 0.8 });
    eprintln!("cupool bench on {}{}", device.name(), if quick { " (quick: batch / 8)" } else { "" });
    eprintln!("measuring the baseline ...");
    let base = baseline(device, quick);
    eprintln!("baseline: {} -> {}", base.what, fmt_opt(base.gbps, 1));
    let sync = Sync::new(device)?;
    let sync_overhead_s = sync.overhead_s()?;

    let mut rows: Vec<Row> = Vec::new();
    for shape in SUITE.iter().filter(|s| filter.shape(s)) {
        if !OPS.iter().any(|&o| o.applies_to(shape) && filter.op(o)) {
            continue;
        }
        let mut dims = shape.dims;
        if quick {
            dims[0] = (dims[0] / 8).max(1);
        }
        for dtype in filter.dtypes() {
            let runs = |o: Op| o.applies_to(shape) && filter.op_in(o, dtype);
            if !OPS.iter().any(|&o| runs(o)) {
                continue;
            }
            let elems: usize = dims.iter().product();
            let input_bytes = elems * dtype.size_in_bytes();
            // Peak: the NCHW and NHWC copies while converting, plus the largest op's outputs
            // (stride-1 pooling or a backward's gradient, about one more input).
            if let Some(avail) = available_host_bytes().filter(|_| device.is_cpu()) {
                if input_bytes * 4 > avail {
                    eprintln!(
                        "skipping {} {dims:?} {}: needs about {} GB",
                        shape.name,
                        dtype,
                        input_bytes * 4 / 1_000_000_000
                    );
                    for layout in ["NCHW", "NHWC"] {
                        for op in OPS.iter().filter(|&&o| runs(o)) {
                            rows.push(Row {
                                op: op.name(),
                                shape_name: shape.name,
                                dims,
                                layout,
                                dtype,
                                result: Err("skipped: memory".into()),
                            });
                        }
                    }
                    continue;
                }
            }
            eprintln!("preparing {} {dims:?} {dtype} ({:.0} MB)", shape.name, input_bytes as f64 / 1e6);
            let nchw = make_input(device, dims, dtype)
                .with_context(|| format!("making a {dims:?} {dtype} input"))?;
            let nhwc = nchw.to_channels_last()?;
            for (layout, x) in [("NCHW", nchw), ("NHWC", nhwc)] {
                for op in OPS.iter().copied().filter(|&o| runs(o)) {
                    let result = prepare(op, &x)
                        .and_then(|(p, bytes)| {
                            let (t, reps) = time_op(op, &p, &sync, sync_overhead_s, row_seconds, quick)?;
                            Ok((t, bytes, reps))
                        })
                        .map_err(|e| format!("n/a: {}", first_line(&e.to_string())));
                    match &result {
                        Ok((t, bytes, reps)) => eprintln!(
                            "  {:<34} {layout} {dtype:<4} {:>10.3} ms {:>7.1} GB/s ({reps} reps)",
                            op.name(),
                            t * 1e3,
                            *bytes as f64 / t / 1e9
                        ),
                        Err(why) => eprintln!("  {:<34} {layout} {dtype:<4} {why}", op.name()),
                    }
                    rows.push(Row { op: op.name(), shape_name: shape.name, dims, layout, dtype, result });
                }
                // `x` (this layout's input) is dropped here, before the next layout's runs.
            }
        }
    }

    print!("{}", markdown(device, &base, &rows));
    if let Some(path) = json_path {
        std::fs::write(path, json(device, quick, &base, &rows)).with_context(|| format!("writing {path}"))?;
        eprintln!("wrote {path}");
    }
    Ok(())
}

/// `cupool bench --serve`: times single rows on request, so that `benches/compare_torch.py
/// --pair` can alternate our samples with PyTorch's every few tens of milliseconds. On a shared
/// machine whose speed swings by 2x within seconds, a ratio of two medians taken seconds apart
/// measures the swing as much as the kernels; samples taken in alternating short rounds see the
/// same machine.
///
/// One request per line on stdin, one JSON line per request on stdout:
/// - `baseline`: `{"gbps": ..., "what": ...}`, the streaming-read baseline measured now;
/// - `read`: `{"gbps": ...}`, one streaming read of 256 MiB on the CPU (the baseline's sum,
///   once, on a buffer allocated at the first request), `null` on other devices (or without
///   the memory): sampled next to the rows' own samples, so that "% of baseline" compares
///   like moments too;
/// - `time<TAB>shape<TAB>op<TAB>layout<TAB>dtype<TAB>seconds`: calls the op (the suite's shape
///   by name, batch / 8 with `--quick`; `NCHW` or `NHWC`; the op's name as in the table) for
///   about `seconds` (at least one sample), and answers `{"status": "ok", "bytes": B, "samples":
///   [seconds per call, ...]}`, or `{"status": "n/a: why"}`. The input and the op's prepared
///   state are kept while consecutive requests name the same row; every request makes one
///   untimed call first, which wakes the thread pool after the other side's round (unless
///   one call takes longer than `seconds`).
/// - `quit`, or the end of stdin: exits.
pub fn serve(device: &Device, quick: bool) -> Result<()> {
    use std::io::BufRead;
    let sync = Sync::new(device)?;
    let sync_overhead_s = sync.overhead_s()?;
    // (shape, layout, dtype) -> input; (op) -> prepared state, bytes, calls per sample and the
    // first call's seconds.
    let mut input: Option<((String, String, DType), CudaTensor)> = None;
    let mut row: Option<(Op, Prepared, usize, usize, f64)> = None;
    let mut read_buffer: Option<Vec<f32>> = None;
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let line = line?;
        let fields: Vec<&str> = line.trim_end().split('\t').collect();
        let reply = match fields.as_slice() {
            ["quit"] => break,
            ["baseline"] => {
                let base = baseline(device, quick);
                format!("{{\"gbps\": {}, \"what\": {}}}", json_num(base.gbps), json_str(&base.what))
            }
            ["read"] => {
                if device.is_cpu() && read_buffer.is_none() {
                    // Where 256 MiB cannot be had, the reads answer null (the caller then uses
                    // the `baseline` request's figure).
                    read_buffer = random_f32(READ_SAMPLE_LEN, 7).ok();
                }
                let gbps = read_buffer
                    .as_deref()
                    .map(|data| std::mem::size_of_val(data) as f64 / read_once(data).0 / 1e9);
                format!("{{\"gbps\": {}}}", json_num(gbps))
            }
            ["time", shape, op, layout, dtype, seconds] => {
                match serve_row(
                    device,
                    quick,
                    (shape, op, layout, dtype, seconds),
                    &sync,
                    sync_overhead_s,
                    &mut input,
                    &mut row,
                ) {
                    Ok((bytes, samples)) => format!(
                        "{{\"status\": \"ok\", \"bytes\": {bytes}, \"samples\": [{}]}}",
                        samples.iter().map(|t| format!("{t:e}")).collect::<Vec<_>>().join(", ")
                    ),
                    Err(e) => format!(
                        "{{\"status\": {}}}",
                        json_str(&format!("n/a: {}", first_line(&format!("{e:#}"))))
                    ),
                }
            }
            _ => format!("{{\"status\": {}}}", json_str(&format!("n/a: bad request {line:?}"))),
        };
        println!("{reply}");
    }
    Ok(())
}

/// One `time` request of [`serve`]: returns the op's bytes per call and the samples.
#[allow(clippy::type_complexity)]
fn serve_row(
    device: &Device,
    quick: bool,
    (shape, op, layout, dtype, seconds): (&str, &str, &str, &str, &str),
    sync: &Sync,
    sync_overhead_s: f64,
    input: &mut Option<((String, String, DType), CudaTensor)>,
    row: &mut Option<(Op, Prepared, usize, usize, f64)>,
) -> Result<(usize, Vec<f64>)> {
    let suite =
        SUITE.iter().find(|s| s.name == shape).with_context(|| format!("unknown suite shape {shape}"))?;
    let op = *OPS.iter().find(|o| o.name() == op).with_context(|| format!("unknown op {op}"))?;
    let dtype = crate::parse_dtype(dtype)?;
    if layout != "NCHW" && layout != "NHWC" {
        anyhow::bail!("unknown layout {layout}");
    }
    let seconds: f64 = seconds.parse().context("seconds")?;
    if !(seconds > 0.0 && seconds.is_finite()) {
        anyhow::bail!("seconds must be positive");
    }
    if !op.applies_to(suite) {
        anyhow::bail!("{} does not run on {shape}", op.name());
    }
    let key = (shape.to_string(), layout.to_string(), dtype);
    if input.as_ref().is_none_or(|(k, _)| *k != key) {
        // The previous row's state goes first: the seed's inputs are hundreds of MB.
        *row = None;
        *input = None;
        let mut dims = suite.dims;
        if quick {
            dims[0] = (dims[0] / 8).max(1);
        }
        let nchw = make_input(device, dims, dtype)?;
        let x = if layout == "NHWC" { nchw.to_channels_last()? } else { nchw };
        *input = Some((key, x));
    }
    let x = &input.as_ref().expect("made above").1;
    if row.as_ref().is_none_or(|(o, ..)| *o != op) {
        *row = None;
        let (p, bytes) = prepare(op, x)?;
        let start = Instant::now();
        drop(call(op, &p)?);
        sync.wait()?;
        let first_s = start.elapsed().as_secs_f64().max(1e-7);
        *row = Some((op, p, bytes, calls_per_sample(sync, first_s), first_s));
    }
    let (_, p, bytes, per_sample, first_s) = row.as_ref().expect("prepared above");
    // After the other side's round, the thread pool has gone to sleep: one untimed call wakes
    // it (compare_torch.py does the same for PyTorch's round), unless a call outlasts the
    // round, where the wake-up is lost in it.
    if *first_s < seconds {
        drop(call(op, p)?);
        sync.wait()?;
    }
    let mut samples = Vec::new();
    let start = Instant::now();
    while samples.is_empty() || start.elapsed().as_secs_f64() < seconds {
        samples.push(sample(op, p, sync, sync_overhead_s, *per_sample)?);
    }
    Ok((*bytes, samples))
}

fn first_line(s: &str) -> String {
    let line = s.lines().next().unwrap_or("");
    if line.len() > 100 {
        format!("{}...", line.chars().take(100).collect::<String>())
    } else {
        line.to_string()
    }
}

fn fmt_opt(v: Option<f64>, digits: usize) -> String {
    match v {
        Some(x) => format!("{x:.digits$} GB/s"),
        None => "n/a".into(),
    }
}

fn dims_str(d: &[usize; 4]) -> String {
    format!("{}x{}x{}x{}", d[0], d[1], d[2], d[3])
}

fn markdown(device: &Device, base: &Baseline, rows: &[Row]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "device: {}", device.name());
    let _ = writeln!(s, "baseline: {} = {}\n", base.what, fmt_opt(base.gbps, 1));
    let _ = writeln!(s, "| op | shape | layout | dtype | median | GB/s | % of baseline |");
    let _ = writeln!(s, "|---|---|---|---|---|---|---|");
    for r in rows {
        let shape = format!("{} {}", r.shape_name, dims_str(&r.dims));
        match &r.result {
            Ok((t, bytes, _)) => {
                let gbps = *bytes as f64 / t / 1e9;
                let pct = base.gbps.map_or("n/a".to_string(), |b| format!("{:.0}%", 100.0 * gbps / b));
                let _ = writeln!(
                    s,
                    "| {} | {shape} | {} | {} | {} | {gbps:.1} | {pct} |",
                    r.op,
                    r.layout,
                    dtype_name(r.dtype),
                    fmt_time(*t)
                );
            }
            Err(why) => {
                let _ = writeln!(
                    s,
                    "| {} | {shape} | {} | {} | {why} | n/a | n/a |",
                    r.op,
                    r.layout,
                    dtype_name(r.dtype)
                );
            }
        }
    }
    s
}

fn fmt_time(t: f64) -> String {
    if t >= 1.0 {
        format!("{t:.3} s")
    } else if t >= 1e-3 {
        format!("{:.3} ms", t * 1e3)
    } else {
        format!("{:.1} µs", t * 1e6)
    }
}

/// A JSON string literal (serde is not a dependency of the binary).
fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json_num(v: Option<f64>) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{x}"),
        _ => "null".into(),
    }
}

fn json(device: &Device, quick: bool, base: &Baseline, rows: &[Row]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{{");
    let _ = writeln!(s, "  \"device\": {},", json_str(&device.name()));
    let _ = writeln!(s, "  \"quick\": {quick},");
    let _ = writeln!(s, "  \"threads\": {},", rayon::current_num_threads());
    let _ = writeln!(
        s,
        "  \"baseline\": {{\"gbps\": {}, \"what\": {}}},",
        json_num(base.gbps),
        json_str(&base.what)
    );
    let _ = writeln!(s, "  \"rows\": [");
    for (i, r) in rows.iter().enumerate() {
        let (median_ms, gbps, bytes, reps, status) = match &r.result {
            Ok((t, bytes, reps)) => (
                Some(t * 1e3),
                Some(*bytes as f64 / t / 1e9),
                Some(*bytes as f64),
                Some(*reps as f64),
                "ok".to_string(),
            ),
            Err(why) => (None, None, None, None, why.clone()),
        };
        let pct = gbps.zip(base.gbps).map(|(g, b)| 100.0 * g / b);
        let _ = write!(
            s,
            "    {{\"op\": {}, \"shape_name\": {}, \"shape\": [{}], \"layout\": {}, \"dtype\": {}, \"median_ms\": {}, \"gbps\": {}, \"pct_of_baseline\": {}, \"bytes\": {}, \"reps\": {}, \"status\": {}}}",
            json_str(r.op),
            json_str(r.shape_name),
            r.dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", "),
            json_str(r.layout),
            json_str(dtype_name(r.dtype)),
            json_num(median_ms),
            json_num(gbps),
            json_num(pct),
            json_num(bytes),
            json_num(reps),
            json_str(&status)
        );
        let _ = writeln!(s, "{}", if i + 1 < rows.len() { "," } else { "" });
    }
    let _ = writeln!(s, "  ]");
    let _ = writeln!(s, "}}");
    s
}
