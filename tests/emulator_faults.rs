//! The emulator itself: correct kernels give the right answers, and broken kernels (races,
//! out-of-bounds accesses, writes into inputs, bad launch configurations, partial-warp
//! shuffles) are reported instead of giving silently wrong results. Uses the test-only kernels
//! in kernels/emulator/test_kernels.cu.

use cupool::cuda::plan::{BufferId, KernelArg, LaunchPlan};
use cupool::dtype::HostData;
use cupool::emulator::{launch_counts, launch_raw, registered_kernels};
use cupool::Error;

fn plan(kernel: &str, grid: u32, block: u32, shared: u32, args: Vec<KernelArg>) -> LaunchPlan {
    LaunchPlan {
        kernel: kernel.to_string(),
        grid: [grid, 1, 1],
        block: [block, 1, 1],
        shared_mem_bytes: shared,
        args,
    }
}

fn input(i: usize) -> KernelArg {
    KernelArg::Buffer(BufferId::Input(i))
}

fn output(i: usize) -> KernelArg {
    KernelArg::Buffer(BufferId::Output(i))
}

fn f32s(data: &HostData) -> &[f32] {
    match data {
        HostData::F32(v) => v,
        other => panic!("expected f32 data, got {:?}", other.dtype()),
    }
}

/// The fault message of a launch that must fail.
fn fault(result: cupool::Result<()>) -> String {
    match result {
        Err(Error::KernelFault(message)) => message,
        Err(other) => panic!("expected a kernel fault, got {other}"),
        Ok(()) => panic!("expected a kernel fault, the launch succeeded"),
    }
}

fn block_sum(kernel: &str, values: &[f32], threads: u32) -> cupool::Result<f32> {
    let x = HostData::F32(values.to_vec());
    let mut out = HostData::F32(vec![0.0]);
    let p =
        plan(kernel, 1, threads, threads * 4, vec![input(0), output(0), KernelArg::U32(values.len() as u32)]);
    launch_raw(&p, &[&x], &mut [&mut out])?;
    Ok(f32s(&out)[0])
}

#[test]
fn shared_memory_reduction_is_exact() {
    let values: Vec<f32> = (0..1000).map(|i| (i % 17) as f32).collect();
    let expected: f32 = values.iter().sum();
    for threads in [32, 128, 256, 1024] {
        let sum = block_sum("emu_test_block_sum", &values, threads).expect("reduction runs");
        assert_eq!(sum, expected, "{threads} threads");
    }
}

#[test]
fn reduction_without_syncthreads_is_caught() {
    let values: Vec<f32> = (0..1000).map(|i| (i % 17) as f32).collect();
    let expected: f32 = values.iter().sum();
    match block_sum("emu_test_block_sum_nosync", &values, 256) {
        Ok(sum) => assert!(sum != expected, "a race went unnoticed: {sum}"),
        Err(Error::KernelFault(_)) => {}
        Err(other) => panic!("unexpected error {other}"),
    }
}

#[test]
fn shared_memory_overrun_is_reported() {
    let mut out = HostData::F32(vec![0.0]);
    let p = plan("emu_test_shared_overrun", 1, 64, 64 * 4, vec![output(0)]);
    let message = fault(launch_raw(&p, &[], &mut [&mut out]));
    assert!(message.contains("emu_test_shared_overrun"), "{message}");
    assert!(message.contains("shared memory") && message.contains("256"), "{message}");
}

#[test]
fn out_of_bounds_global_read_is_reported() {
    let x = HostData::F32(vec![1.0; 100]);
    let mut out = HostData::F32(vec![0.0; 100]);
    let p = plan(
        "emu_test_copy_offset",
        1,
        128,
        0,
        vec![input(0), output(0), KernelArg::U32(100), KernelArg::I32(1)],
    );
    let message = fault(launch_raw(&p, &[&x], &mut [&mut out]));
    assert!(message.contains("emu_test_copy_offset"), "{message}");
    assert!(message.contains("read") && message.contains("no buffer"), "{message}");
    // Thread 99 reads in[100], one past the end of input 0.
    assert!(message.contains("element 100") && message.contains("input 0"), "{message}");
    assert!(message.contains("thread (99,0,0)"), "{message}");
    // Nothing was copied back from a failed launch.
    assert!(f32s(&out).iter().all(|&v| v == 0.0));
}

#[test]
fn out_of_bounds_global_write_is_reported() {
    let mut out = HostData::F32(vec![0.0; 10]);
    let p = plan("emu_test_write_at", 1, 32, 0, vec![output(0), KernelArg::U32(12)]);
    let message = fault(launch_raw(&p, &[], &mut [&mut out]));
    assert!(message.contains("emu_test_write_at"), "{message}");
    assert!(message.contains("write") && message.contains("element 12"), "{message}");
    assert!(message.contains("output 0"), "{message}");
    // In range it works.
    let p = plan("emu_test_write_at", 1, 32, 0, vec![output(0), KernelArg::U32(9)]);
    launch_raw(&p, &[], &mut [&mut out]).expect("in-range write");
    assert_eq!(f32s(&out)[9], 1.0);
}

#[test]
fn write_into_input_is_reported() {
    let x = HostData::F32(vec![1.0; 8]);
    let mut out = HostData::F32(vec![0.0]);
    let p = plan("emu_test_write_input", 1, 32, 0, vec![input(0), output(0)]);
    let message = fault(launch_raw(&p, &[&x], &mut [&mut out]));
    assert!(message.contains("emu_test_write_input"), "{message}");
    assert!(message.contains("read-only input 0") && message.contains("element 3"), "{message}");
}

#[test]
fn misaligned_vector_load_is_reported() {
    let x = HostData::F32(vec![1.0; 8]);
    let mut out = HostData::F32(vec![0.0]);
    let p = plan("emu_test_misaligned_read", 1, 32, 0, vec![input(0), output(0)]);
    let message = fault(launch_raw(&p, &[&x], &mut [&mut out]));
    assert!(message.contains("misaligned") && message.contains("16 bytes"), "{message}");
}

#[test]
fn launch_limits_are_enforced() {
    let x = HostData::F32(vec![1.0; 4]);
    let mut out = HostData::F32(vec![0.0]);
    let args = || vec![input(0), output(0), KernelArg::U32(4)];

    let too_many = plan("emu_test_block_sum", 1, 1025, 1025 * 4, args());
    let message = fault(launch_raw(&too_many, &[&x], &mut [&mut out]));
    assert!(message.contains("emu_test_block_sum") && message.contains("1025"), "{message}");

    let too_much_shared = plan("emu_test_block_sum", 1, 256, 48 * 1024 + 4, args());
    let message = fault(launch_raw(&too_much_shared, &[&x], &mut [&mut out]));
    assert!(message.contains("emu_test_block_sum") && message.contains("shared memory"), "{message}");

    let zero_grid = plan("emu_test_block_sum", 0, 256, 1024, args());
    assert!(fault(launch_raw(&zero_grid, &[&x], &mut [&mut out])).contains("zero"));

    let mut deep = plan("emu_test_block_sum", 1, 1, 4, args());
    deep.block = [1, 1, 65];
    assert!(fault(launch_raw(&deep, &[&x], &mut [&mut out])).contains("(1,1,65)"));

    let mut tall = plan("emu_test_block_sum", 1, 1, 4, args());
    tall.grid = [1, 65536, 1];
    assert!(fault(launch_raw(&tall, &[&x], &mut [&mut out])).contains("65536"));

    let wrong_arity = plan("emu_test_block_sum", 1, 32, 128, vec![input(0), output(0)]);
    assert!(fault(launch_raw(&wrong_arity, &[&x], &mut [&mut out])).contains("takes 3 arguments"));

    let unknown = plan("no_such_kernel", 1, 32, 0, vec![]);
    assert!(fault(launch_raw(&unknown, &[], &mut [])).contains("no_such_kernel"));
}

struct ShuffleOutputs {
    down: HostData,
    xor: HostData,
    idx: HostData,
    ballot: HostData,
    sum: HostData,
    up16: HostData,
}

fn run_shuffles(values: &[f32], block: u32, src_lane: i32) -> (cupool::Result<()>, ShuffleOutputs) {
    let n = values.len();
    let x = HostData::F32(values.to_vec());
    let mut o = ShuffleOutputs {
        down: HostData::F32(vec![0.0; n]),
        xor: HostData::F32(vec![0.0; n]),
        idx: HostData::F32(vec![0.0; n]),
        // u32 results travel in an f32 buffer's bytes.
        ballot: HostData::F32(vec![0.0; n]),
        sum: HostData::F64(vec![0.0; n]),
        up16: HostData::F32(vec![0.0; n]),
    };
    let grid = (n as u32).div_ceil(block);
    let p = plan(
        "emu_test_shuffles",
        grid,
        block,
        0,
        vec![
            input(0),
            output(0),
            output(1),
            output(2),
            output(3),
            output(4),
            output(5),
            KernelArg::I32(src_lane),
        ],
    );
    let result = launch_raw(
        &p,
        &[&x],
        &mut [&mut o.down, &mut o.xor, &mut o.idx, &mut o.ballot, &mut o.sum, &mut o.up16],
    );
    (result, o)
}

#[test]
fn warp_shuffles_match_cuda_semantics() {
    let values: Vec<f32> = (0..128).map(|i| if i % 3 == 0 { -(i as f32) - 1.0 } else { i as f32 }).collect();
    let (result, o) = run_shuffles(&values, 64, 7);
    result.expect("shuffles run");
    let sums = match &o.sum {
        HostData::F64(v) => v.clone(),
        _ => unreachable!(),
    };
    for i in 0..values.len() {
        let lane = i % 32;
        let warp_base = i - lane;
        let down = if lane + 3 < 32 { values[i + 3] } else { values[i] };
        assert_eq!(f32s(&o.down)[i], down, "down, thread {i}");
        assert_eq!(f32s(&o.xor)[i], values[warp_base + (lane ^ 5)], "xor, thread {i}");
        assert_eq!(f32s(&o.idx)[i], values[warp_base + 7], "idx, thread {i}");
        let ballot: u32 =
            (0..32).filter(|&l| values[warp_base + l] > 0.0).fold(0, |acc, l| acc | (1u32 << l));
        assert_eq!(f32s(&o.ballot)[i].to_bits(), ballot, "ballot, thread {i}");
        // The butterfly sum in double is exact for these small integers.
        let warp_sum: f64 = values[warp_base..warp_base + 32].iter().map(|&v| v as f64).sum();
        assert_eq!(sums[i], warp_sum, "sum, thread {i}");
        let up = if lane % 16 >= 3 { values[i - 3] } else { values[i] };
        assert_eq!(f32s(&o.up16)[i], up, "up (width 16), thread {i}");
    }
}

#[test]
fn partial_warp_shuffle_is_an_error() {
    let values = vec![1.0f32; 48];
    let (result, _) = run_shuffles(&values, 48, 0);
    let message = fault(result);
    assert!(message.contains("emu_test_shuffles") && message.contains("48 threads"), "{message}");
}

#[test]
fn shuffle_with_exited_lanes_is_an_error() {
    let x = HostData::F32(vec![1.0; 32]);
    let mut out = HostData::F32(vec![0.0; 32]);
    let p = plan("emu_test_exited_lane_shuffle", 1, 32, 0, vec![input(0), output(0), KernelArg::U32(20)]);
    let message = fault(launch_raw(&p, &[&x], &mut [&mut out]));
    assert!(message.contains("exited"), "{message}");
    // With every lane present it works.
    let p = plan("emu_test_exited_lane_shuffle", 1, 32, 0, vec![input(0), output(0), KernelArg::U32(32)]);
    launch_raw(&p, &[&x], &mut [&mut out]).expect("full warp");
}

#[repr(C)]
#[derive(Clone, Copy)]
struct AffineParams {
    n: u32,
    scale: f32,
    bias: f32,
    reserved: u32,
}

#[test]
fn params_struct_vector_loads_and_static_shared() {
    // 1003 elements: 250 float4 loads (which need the 256-byte staging alignment) and a tail.
    let values: Vec<f32> = (0..1003).map(|i| i as f32 * 0.5).collect();
    let x = HostData::F32(values.clone());
    let mut out = HostData::F32(vec![0.0; values.len()]);
    let params = AffineParams { n: values.len() as u32, scale: 2.0, bias: -1.0, reserved: 0 };
    let p = plan("emu_test_affine", 3, 64, 0, vec![input(0), output(0), KernelArg::params(&params)]);
    launch_raw(&p, &[&x], &mut [&mut out]).expect("affine runs");
    for (i, (&o, &v)) in f32s(&out).iter().zip(&values).enumerate() {
        assert_eq!(o, v * 2.0 - 1.0, "element {i}");
    }
}

#[test]
fn syncthreads_count_and_shared_atomics() {
    let values: Vec<f32> = (0..256).map(|i| if i % 5 == 0 { 1.0 } else { -1.0 }).collect();
    let x = HostData::F32(values);
    let mut out = HostData::F32(vec![0.0; 2]);
    let p = plan("emu_test_count_positive", 1, 256, 0, vec![input(0), output(0)]);
    launch_raw(&p, &[&x], &mut [&mut out]).expect("count runs");
    let counts: Vec<u32> = f32s(&out).iter().map(|v| v.to_bits()).collect();
    assert_eq!(counts, vec![52, 52]);
}

#[test]
fn registry_lists_test_kernels_and_counts_launches() {
    let names = registered_kernels();
    for kernel in ["emu_test_block_sum", "emu_test_block_sum_nosync", "emu_test_shuffles", "emu_test_affine"]
    {
        assert!(names.iter().any(|n| n == kernel), "{kernel} missing from {names:?}");
    }
    let before = launch_counts().get("emu_test_write_at").copied().unwrap_or(0);
    let mut out = HostData::F32(vec![0.0; 4]);
    let p = plan("emu_test_write_at", 1, 32, 0, vec![output(0), KernelArg::U32(0)]);
    launch_raw(&p, &[], &mut [&mut out]).expect("write runs");
    launch_raw(&p, &[], &mut [&mut out]).expect("write runs");
    // Other tests run in parallel and may launch it too: at least these two were counted.
    let after = launch_counts().get("emu_test_write_at").copied().unwrap_or(0);
    assert!(after >= before + 2, "{before} -> {after}");
}
