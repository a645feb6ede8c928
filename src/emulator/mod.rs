//! Runs CUDA launch plans on the host through kernels/emulator: the unchanged kernel sources,
//! compiled as C++17 by build/emulator.rs, executed block by block with the block's threads as
//! fibers, every global access checked against the launch's buffers (see
//! kernels/emulator/README.md).
//!
//! Each buffer is copied into a 256-byte-aligned staging allocation for the plan (a GPU
//! allocation is 256-byte aligned and the kernels' 16-byte vector loads rely on it; a `Vec<f32>`
//! is only 4-byte aligned), with a gap after it so that a small overrun lands outside every
//! buffer and is reported. Inputs are read-only, outputs and scratch writable, scratch zeroed.

use std::alloc::{self, Layout};
use std::collections::HashMap;
use std::ffi::{c_char, c_void, CStr, CString};

use crate::cuda::plan::{BufferId, LaunchPlan, OpPlan};
use crate::cuda::{DeviceLimits, PlanExecutor};
use crate::dtype::{DType, HostData};
use crate::error::{Error, Result};
use crate::storage::Storage;

mod ffi {
    use std::ffi::{c_char, c_void};

    /// One buffer a launch may touch (kernels/emulator/emulator.cpp's `CupoolEmuBuffer`).
    #[repr(C)]
    pub struct Buffer {
        pub base: u64,
        pub len: u64,
        /// 0 input, 1 output, 2 scratch: how the emulator names the buffer in a fault.
        pub kind: u32,
        pub index: u32,
        pub writable: u32,
        pub reserved: u32,
    }

    extern "C" {
        #[allow(clippy::too_many_arguments)]
        pub fn cupool_emu_launch(
            name: *const c_char,
            grid: *const u32,
            block: *const u32,
            shared_bytes: u32,
            params: *mut *mut c_void,
            param_sizes: *const u64,
            param_count: u32,
            buffers: *const Buffer,
            buffer_count: u32,
            error: *mut c_char,
            error_len: usize,
        ) -> i32;
        pub fn cupool_emu_kernel_count() -> u32;
        pub fn cupool_emu_kernel_name(index: u32) -> *const c_char;
        pub fn cupool_emu_launch_count(name: *const c_char) -> u64;
        pub fn cupool_emu_reset_launch_counts();
    }
}

/// Alignment of every staging buffer, as `cudaMalloc` guarantees.
const BUFFER_ALIGN: usize = 256;
/// Unused bytes after each staging buffer, so that an overrun lands in no buffer.
const BUFFER_GAP: usize = 256;
/// Room for the emulator's fault message.
const ERROR_CAPACITY: usize = 2048;

/// A zero-initialised, 256-byte-aligned host allocation standing in for a device buffer.
struct Staging {
    ptr: *mut u8,
    len: usize,
    layout: Layout,
}

impl Staging {
    fn zeroed(len: usize) -> Result<Staging> {
        let layout = Layout::from_size_align(len + BUFFER_GAP, BUFFER_ALIGN)
            .map_err(|e| Error::OutOfMemory(format!("emulator buffer of {len} bytes: {e}")))?;
        // SAFETY: `layout` has a non-zero size (BUFFER_GAP > 0) and a valid power-of-two alignment.
        let ptr = unsafe { alloc::alloc_zeroed(layout) };
        if ptr.is_null() {
            return Err(Error::OutOfMemory(format!("emulator buffer of {len} bytes")));
        }
        Ok(Staging { ptr, len, layout })
    }

    fn from_bytes(bytes: &[u8]) -> Result<Staging> {
        let staging = Staging::zeroed(bytes.len())?;
        // SAFETY: `staging.ptr` owns `bytes.len() + BUFFER_GAP` writable bytes, and a fresh
        // allocation cannot overlap `bytes`.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), staging.ptr, bytes.len()) };
        Ok(staging)
    }

    fn address(&self) -> u64 {
        self.ptr as u64
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: `ptr` points at `len` initialised bytes (zeroed at allocation) that live as long
        // as `self`; the emulator writes them only during a launch, which holds `&self` no longer.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from `alloc_zeroed(self.layout)` and is freed only here.
        unsafe { alloc::dealloc(self.ptr, self.layout) }
    }
}

/// The emulated device: runs launch plans on host memory.
#[derive(Debug, Default, Clone, Copy)]
pub struct EmulatorExecutor;

impl EmulatorExecutor {
    pub fn new() -> EmulatorExecutor {
        EmulatorExecutor
    }
}

fn host_data(storage: &Storage) -> Result<&HostData> {
    storage.host().ok_or_else(|| {
        Error::DeviceMismatch("the emulated device was given a tensor in GPU memory".to_string())
    })
}

fn host_data_mut(storage: &mut Storage) -> Result<&mut HostData> {
    match storage {
        Storage::Host(h) => Ok(h),
        #[cfg(feature = "cuda")]
        Storage::Cuda(_) => {
            Err(Error::DeviceMismatch("the emulated device was given a tensor in GPU memory".to_string()))
        }
    }
}

impl PlanExecutor for EmulatorExecutor {
    fn limits(&self) -> DeviceLimits {
        DeviceLimits::HOPPER
    }

    fn alloc_zeros(&self, dtype: DType, len: usize) -> Result<Storage> {
        Ok(Storage::Host(HostData::try_zeros(dtype, len)?))
    }

    fn alloc_uninit(&self, dtype: DType, len: usize) -> Result<Storage> {
        let mut data = HostData::try_zeros(dtype, len)?;
        data.as_bytes_mut().fill(0xFF);
        Ok(Storage::Host(data))
    }

    fn upload(&self, data: HostData) -> Result<Storage> {
        Ok(Storage::Host(data))
    }

    fn download(&self, storage: &Storage) -> Result<HostData> {
        Ok(host_data(storage)?.clone())
    }

    fn execute(&self, plan: &OpPlan, inputs: &[&Storage], outputs: &mut [&mut Storage]) -> Result<()> {
        let inputs = inputs.iter().map(|s| host_data(s)).collect::<Result<Vec<_>>>()?;
        let mut outputs = outputs.iter_mut().map(|s| host_data_mut(s)).collect::<Result<Vec<_>>>()?;
        run_plan(plan, &inputs, &mut outputs)
    }
}

/// Runs one launch on host buffers: `BufferId::Input(i)` is `inputs[i]`, `BufferId::Output(i)`
/// is `outputs[i]` (for tests that drive single kernels; a plan with scratch buffers goes
/// through [`EmulatorExecutor`]).
pub fn launch_raw(plan: &LaunchPlan, inputs: &[&HostData], outputs: &mut [&mut HostData]) -> Result<()> {
    let op = OpPlan { launches: vec![plan.clone()], ..OpPlan::default() };
    run_plan(&op, inputs, outputs)
}

/// Every launch of `plan` in order, on staging copies; outputs are copied back only when every
/// launch succeeded.
fn run_plan(plan: &OpPlan, inputs: &[&HostData], outputs: &mut [&mut HostData]) -> Result<()> {
    let input_staging =
        inputs.iter().map(|h| Staging::from_bytes(h.as_bytes())).collect::<Result<Vec<_>>>()?;
    let output_staging =
        outputs.iter().map(|h| Staging::from_bytes(h.as_bytes())).collect::<Result<Vec<_>>>()?;
    let scratch_staging =
        plan.scratch_bytes.iter().map(|&n| Staging::zeroed(n)).collect::<Result<Vec<_>>>()?;

    let mut table = Vec::new();
    for (kind, writable, list) in
        [(0u32, 0u32, &input_staging), (1, 1, &output_staging), (2, 1, &scratch_staging)]
    {
        for (index, s) in list.iter().enumerate() {
            table.push(ffi::Buffer {
                base: s.address(),
                len: s.len as u64,
                kind,
                index: index as u32,
                writable,
                reserved: 0,
            });
        }
    }

    for launch in &plan.launches {
        let resolve = |id: BufferId| -> Option<&Staging> {
            match id {
                BufferId::Input(i) => input_staging.get(i),
                BufferId::Output(i) => output_staging.get(i),
                BufferId::Scratch(i) => scratch_staging.get(i),
            }
        };
        // Every buffer argument must name a buffer the op has, before any bytes are built.
        for arg in &launch.args {
            if let crate::cuda::plan::KernelArg::Buffer(id) = arg {
                if resolve(*id).is_none() {
                    return Err(Error::KernelFault(format!(
                        "launch of {} passes {id:?}, but the op has {} inputs, {} outputs and {} scratch buffers",
                        launch.kernel,
                        input_staging.len(),
                        output_staging.len(),
                        scratch_staging.len()
                    )));
                }
            }
        }
        let arg_bytes: Vec<Vec<u8>> =
            launch.args.iter().map(|a| a.bytes(|id| resolve(id).map_or(0, Staging::address))).collect();
        launch_one(launch, &arg_bytes, &table)?;
    }

    for (out, staging) in outputs.iter_mut().zip(&output_staging) {
        out.as_bytes_mut().copy_from_slice(staging.bytes());
    }
    Ok(())
}

/// One `cupool_emu_launch` call.
fn launch_one(launch: &LaunchPlan, arg_bytes: &[Vec<u8>], table: &[ffi::Buffer]) -> Result<()> {
    let name = CString::new(launch.kernel.as_str())
        .map_err(|_| Error::KernelFault(format!("kernel name {:?} contains a NUL byte", launch.kernel)))?;
    // The emulator reads each argument through these pointers (memcpy, so no alignment needed)
    // and never writes them; `*mut` only because that is cuLaunchKernel's `void**` shape.
    let mut params: Vec<*mut c_void> = arg_bytes.iter().map(|b| b.as_ptr() as *mut c_void).collect();
    let sizes: Vec<u64> = arg_bytes.iter().map(|b| b.len() as u64).collect();
    let mut error = vec![0u8; ERROR_CAPACITY];
    // SAFETY: every pointer is valid for the call: `name` is NUL-terminated; grid and block are
    // 3 u32s each; `params` holds `sizes.len()` pointers to that many bytes each (the emulator
    // checks the sizes against the kernel's parameter list before reading); `table` describes
    // live staging allocations that nothing else touches during the call; `error` has
    // ERROR_CAPACITY writable bytes and the emulator NUL-terminates what it writes.
    let rc = unsafe {
        ffi::cupool_emu_launch(
            name.as_ptr(),
            launch.grid.as_ptr(),
            launch.block.as_ptr(),
            launch.shared_mem_bytes,
            params.as_mut_ptr(),
            sizes.as_ptr(),
            sizes.len() as u32,
            table.as_ptr(),
            table.len() as u32,
            error.as_mut_ptr().cast::<c_char>(),
            error.len(),
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let message = CStr::from_bytes_until_nul(&error)
        .map(|m| m.to_string_lossy().into_owned())
        .unwrap_or_else(|_| format!("kernel {} failed", launch.kernel));
    Err(Error::KernelFault(message))
}

/// The names of every kernel compiled into the emulator, in registration order.
pub fn registered_kernels() -> Vec<String> {
    // SAFETY: takes no arguments; only reads the registry filled before main.
    let count = unsafe { ffi::cupool_emu_kernel_count() };
    (0..count)
        .filter_map(|i| {
            // SAFETY: `i < count`, so the emulator returns a pointer to a NUL-terminated name it
            // owns for the life of the process (or null, handled below).
            let name = unsafe { ffi::cupool_emu_kernel_name(i) };
            if name.is_null() {
                return None;
            }
            // SAFETY: non-null, NUL-terminated, and never freed (see above).
            Some(unsafe { CStr::from_ptr(name) }.to_string_lossy().into_owned())
        })
        .collect()
}

/// How many times each registered kernel was launched since the start (or the last
/// [`reset_launch_counts`]), counting launches that passed the configuration checks.
pub fn launch_counts() -> HashMap<String, u64> {
    registered_kernels()
        .into_iter()
        .map(|name| {
            let count = match CString::new(name.as_str()) {
                // SAFETY: `c` is a NUL-terminated string alive for the call.
                Ok(c) => unsafe { ffi::cupool_emu_launch_count(c.as_ptr()) },
                Err(_) => 0,
            };
            (name, count)
        })
        .collect()
}

/// Sets every launch count back to zero.
pub fn reset_launch_counts() {
    // SAFETY: takes no arguments; the emulator guards the counts with a mutex.
    unsafe { ffi::cupool_emu_reset_launch_counts() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_start_as_0xff_bytes_unless_the_plan_asks_for_zeros() {
        let exec = EmulatorExecutor::new();
        let plan = OpPlan { zeroed_outputs: vec![1], ..OpPlan::default() };
        let values = exec.alloc_output(&plan, 0, DType::F32, 5).unwrap();
        let flag = exec.alloc_output(&plan, 1, DType::I64, 1).unwrap();
        let values = exec.download(&values).unwrap();
        assert_eq!(values.len(), 5);
        assert!(values.as_bytes().iter().all(|&b| b == 0xFF), "an uninitialised output is 0xFF bytes");
        match values {
            HostData::F32(v) => assert!(v.iter().all(|x| x.is_nan()), "so unwritten floats read as NaN"),
            other => panic!("expected f32, got {}", other.dtype()),
        }
        let flag = exec.download(&flag).unwrap();
        assert!(flag.as_bytes().iter().all(|&b| b == 0), "a zeroed output is zero");
    }
}
