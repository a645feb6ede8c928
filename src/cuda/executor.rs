//! Runs launch plans on a GPU through cudarc: the device-side twin of the emulator.
//!
//! Plans carry their arguments as bytes (`KernelArg::bytes`), so launches go through the raw
//! `cuLaunchKernel` (cudarc's `result::launch_kernel`) with a `void**` of those bytes rather
//! than cudarc's typed launch builder. Buffers still go through cudarc's `device_ptr` /
//! `device_ptr_mut`, which make the stream wait for earlier writers/readers and record this
//! launch's reads and writes, so cudarc's event tracking stays correct across streams.

use std::ffi::c_void;

use cudarc::driver::sys::CUresult;
use cudarc::driver::{CudaFunction, CudaSlice, DevicePtr, DevicePtrMut, DriverError, SyncOnDrop};

use crate::cuda::context::{driver_error, CudaBackend, Kernel};
use crate::cuda::plan::{BufferId, KernelArg, LaunchPlan, OpPlan};
use crate::cuda::{CudaBuffer, DeviceLimits, PlanExecutor};
use crate::dtype::{DType, HostData};
use crate::error::{Error, Result};
use crate::storage::Storage;

impl PlanExecutor for CudaBackend {
    fn limits(&self) -> DeviceLimits {
        self.device_limits()
    }

    fn alloc_zeros(&self, dtype: DType, len: usize) -> Result<Storage> {
        let bytes = byte_len(dtype, len)?;
        // A zero-byte device allocation is an error in the driver; keep one byte instead.
        let slice = self.retry_out_of_memory(&format!("allocating {len} {dtype} elements"), || {
            self.stream.alloc_zeros::<u8>(bytes.max(1))
        })?;
        Ok(Storage::Cuda(CudaBuffer { bytes: slice, dtype, len }))
    }

    fn alloc_uninit(&self, dtype: DType, len: usize) -> Result<Storage> {
        let bytes = byte_len(dtype, len)?;
        // SAFETY: `alloc` is unsafe because the memory is not initialised, and a `CudaSlice<T>`
        // of a type with invalid bit patterns could then hold invalid values. These are u8
        // bytes, valid whatever they hold, and the host reads them only through `download`,
        // which copies bytes. The plan that receives the buffer writes every element before
        // anything reads it (OpPlan::zeroed_outputs; checked by running every op under the
        // emulator, whose uninitialised buffers are 0xFF bytes); a plan that broke that would
        // give wrong values, not undefined behaviour.
        let slice = self.retry_out_of_memory(&format!("allocating {len} {dtype} elements"), || unsafe {
            self.stream.alloc::<u8>(bytes.max(1))
        })?;
        Ok(Storage::Cuda(CudaBuffer { bytes: slice, dtype, len }))
    }

    fn upload(&self, data: HostData) -> Result<Storage> {
        let (dtype, len) = (data.dtype(), data.len());
        let bytes = data.as_bytes();
        let slice = self.retry_out_of_memory(&format!("uploading {len} {dtype} elements"), || {
            if bytes.is_empty() {
                self.stream.alloc_zeros::<u8>(1)
            } else {
                self.stream.clone_htod(bytes)
            }
        })?;
        Ok(Storage::Cuda(CudaBuffer { bytes: slice, dtype, len }))
    }

    fn download(&self, storage: &Storage) -> Result<HostData> {
        let buffer = match storage {
            Storage::Host(host) => return Ok(host.clone()),
            Storage::Cuda(buffer) => buffer,
        };
        self.check_same_device(buffer, "download")?;
        let mut host = HostData::zeros(buffer.dtype, buffer.len);
        let wanted = host.as_bytes().len();
        if wanted == 0 {
            return Ok(host);
        }
        let view = buffer.bytes.try_slice(0..wanted).ok_or_else(|| {
            Error::Driver(format!(
                "a {} buffer of {} elements holds only {} bytes",
                buffer.dtype,
                buffer.len,
                buffer.bytes.len()
            ))
        })?;
        let what = format!("downloading {} {} elements", buffer.len, buffer.dtype);
        self.stream.memcpy_dtoh(&view, host.as_bytes_mut()).map_err(|e| driver_error(&what, &e))?;
        // The copy into pageable memory is synchronous in practice; synchronising makes it so by
        // contract, and surfaces any error of earlier kernels on this stream here.
        self.stream.synchronize().map_err(|e| driver_error(&what, &e))?;
        self.ctx.check_err().map_err(|e| driver_error(&what, &e))?;
        Ok(host)
    }

    fn execute(&self, plan: &OpPlan, inputs: &[&Storage], outputs: &mut [&mut Storage]) -> Result<()> {
        // Everything that can be checked on the host is checked before anything is launched or
        // allocated, so a bad plan leaves no half-run op behind.
        let mut functions = Vec::with_capacity(plan.launches.len());
        for launch in &plan.launches {
            self.check_launch(launch, plan, inputs.len(), outputs.len())?;
            let kernel = self.function(&launch.kernel)?;
            self.check_params(launch, &kernel)?;
            functions.push(kernel.function);
        }
        let input_slices: Vec<&CudaSlice<u8>> = inputs
            .iter()
            .enumerate()
            .map(|(i, storage)| match storage {
                Storage::Cuda(buffer) => self.check_same_device(buffer, "input").map(|()| &buffer.bytes),
                Storage::Host(_) => {
                    Err(Error::DeviceMismatch(format!("input {i} is on the host, not the GPU")))
                }
            })
            .collect::<Result<_>>()?;
        let mut output_slices: Vec<&mut CudaSlice<u8>> = Vec::with_capacity(outputs.len());
        for (i, storage) in outputs.iter_mut().enumerate() {
            match &mut **storage {
                Storage::Cuda(buffer) => {
                    self.check_same_device(buffer, "output")?;
                    output_slices.push(&mut buffer.bytes);
                }
                Storage::Host(_) => {
                    return Err(Error::DeviceMismatch(format!("output {i} is on the host, not the GPU")))
                }
            }
        }
        let mut scratch: Vec<CudaSlice<u8>> = plan
            .scratch_bytes
            .iter()
            .map(|&bytes| {
                self.retry_out_of_memory(&format!("allocating {bytes} bytes of scratch"), || {
                    self.stream.alloc_zeros::<u8>(bytes.max(1))
                })
            })
            .collect::<Result<_>>()?;

        self.ctx.bind_to_thread().map_err(|e| driver_error("binding the CUDA context", &e))?;
        for (launch, function) in plan.launches.iter().zip(&functions) {
            self.launch(launch, function, &input_slices, &mut output_slices, &mut scratch)?;
        }
        // Errors cudarc recorded while tracking events (it cannot return them from `Drop`).
        // Scratch buffers are freed stream-ordered when `scratch` drops, after the launches.
        self.ctx.check_err().map_err(|e| driver_error("after launching the op's kernels", &e))
    }
}

impl CudaBackend {
    /// Runs `alloc`; where the driver is out of memory, gives the pool's cached memory back
    /// ([`CudaBackend::release_cached_memory`], which waits for pending frees) and tries once
    /// more, as PyTorch's caching allocator does, so that memory cupool keeps pooled never
    /// makes an allocation fail that would succeed without the pool.
    fn retry_out_of_memory<T>(
        &self,
        what: &str,
        alloc: impl Fn() -> std::result::Result<T, DriverError>,
    ) -> Result<T> {
        match alloc() {
            Err(DriverError(CUresult::CUDA_ERROR_OUT_OF_MEMORY)) => {
                self.release_cached_memory()?;
                alloc().map_err(|e| driver_error(what, &e))
            }
            other => other.map_err(|e| driver_error(what, &e)),
        }
    }

    fn check_same_device(&self, buffer: &CudaBuffer, role: &str) -> Result<()> {
        if **buffer.bytes.context() == *self.ctx {
            Ok(())
        } else {
            Err(Error::DeviceMismatch(format!(
                "{role} buffer is on GPU {}, the op runs on GPU {}",
                buffer.bytes.context().ordinal(),
                self.ctx.ordinal()
            )))
        }
    }

    /// Host-side launch checks: what the driver would reject (or worse, what would index past
    /// a buffer list) comes back as a typed error naming the kernel.
    fn check_launch(&self, launch: &LaunchPlan, plan: &OpPlan, inputs: usize, outputs: usize) -> Result<()> {
        let fault = |why: String| Err(Error::KernelFault(format!("launch of {}: {why}", launch.kernel)));
        let threads: u64 = launch.block.iter().map(|&d| u64::from(d)).product();
        if threads == 0 || threads > u64::from(self.max_threads_per_block) {
            return fault(format!(
                "block {:?} has {threads} threads, allowed 1..={}",
                launch.block, self.max_threads_per_block
            ));
        }
        for axis in 0..3 {
            if launch.block[axis] > self.max_block_dims[axis] {
                return fault(format!(
                    "block {:?} exceeds the device's {:?}",
                    launch.block, self.max_block_dims
                ));
            }
            if launch.grid[axis] == 0 || launch.grid[axis] > self.max_grid_dims[axis] {
                return fault(format!("grid {:?} must lie within 1..={:?}", launch.grid, self.max_grid_dims));
            }
        }
        if launch.shared_mem_bytes > self.max_shared_per_block {
            return fault(format!(
                "{} bytes of dynamic shared memory, allowed {}",
                launch.shared_mem_bytes, self.max_shared_per_block
            ));
        }
        for arg in &launch.args {
            if let KernelArg::Buffer(id) = arg {
                let present = match *id {
                    BufferId::Input(i) => i < inputs,
                    BufferId::Output(i) => i < outputs,
                    BufferId::Scratch(i) => i < plan.scratch_bytes.len(),
                };
                if !present {
                    return fault(format!(
                        "argument {id:?} names a missing buffer ({inputs} inputs, {outputs} outputs, {} scratch)",
                        plan.scratch_bytes.len()
                    ));
                }
            }
        }
        Ok(())
    }

    /// Checks the plan's argument count and sizes against the kernel's own parameter list
    /// (read from the driver when the kernel was loaded), so a planner/kernel mismatch is an
    /// error instead of `cuLaunchKernel` reading past an argument.
    fn check_params(&self, launch: &LaunchPlan, kernel: &Kernel) -> Result<()> {
        // The driver could not say (before 12.4, or not for this function): skip the check.
        let Some(sizes) = &kernel.param_sizes else { return Ok(()) };
        let mismatch = |why: String| Err(Error::KernelFault(format!("launch of {}: {why}", launch.kernel)));
        if launch.args.len() != sizes.len() {
            return mismatch(format!(
                "the plan passes {} arguments, the kernel takes {}",
                launch.args.len(),
                sizes.len()
            ));
        }
        for (index, (arg, &size)) in launch.args.iter().zip(sizes).enumerate() {
            let given = arg.bytes(|_| 0).len();
            if given != size {
                return mismatch(format!(
                    "argument {index} is {given} bytes, the kernel's parameter is {size}"
                ));
            }
        }
        Ok(())
    }

    /// One `cuLaunchKernel`.
    fn launch(
        &self,
        launch: &LaunchPlan,
        function: &CudaFunction,
        inputs: &[&CudaSlice<u8>],
        outputs: &mut [&mut CudaSlice<u8>],
        scratch: &mut [CudaSlice<u8>],
    ) -> Result<()> {
        let used = |id: BufferId| launch.args.contains(&KernelArg::Buffer(id));
        let stream = &*self.stream;
        // Device pointers of the buffers this launch uses; each guard records this launch's
        // read or write on the buffer's event when it drops, i.e. after the launch is queued.
        let mut pointers: Vec<(BufferId, u64)> = Vec::new();
        let mut guards: Vec<SyncOnDrop<'_>> = Vec::new();
        for (i, slice) in inputs.iter().enumerate().filter(|(i, _)| used(BufferId::Input(*i))) {
            let (ptr, guard) = slice.device_ptr(stream);
            pointers.push((BufferId::Input(i), ptr));
            guards.push(guard);
        }
        for (i, slice) in outputs.iter_mut().enumerate().filter(|(i, _)| used(BufferId::Output(*i))) {
            let (ptr, guard) = slice.device_ptr_mut(stream);
            pointers.push((BufferId::Output(i), ptr));
            guards.push(guard);
        }
        for (i, slice) in scratch.iter_mut().enumerate().filter(|(i, _)| used(BufferId::Scratch(*i))) {
            let (ptr, guard) = slice.device_ptr_mut(stream);
            pointers.push((BufferId::Scratch(i), ptr));
            guards.push(guard);
        }
        let pointer = |id: BufferId| pointers.iter().find(|(b, _)| *b == id).map_or(0, |(_, p)| *p);

        // Each argument's bytes in its own 8-byte-aligned storage; `cuLaunchKernel` copies
        // `sizeof(param)` bytes from each pointer at launch time.
        let mut arg_words: Vec<Vec<u64>> =
            launch.args.iter().map(|arg| to_words(&arg.bytes(pointer))).collect();
        let mut params: Vec<*mut c_void> =
            arg_words.iter_mut().map(|w| w.as_mut_ptr().cast::<c_void>()).collect();

        // SAFETY:
        // - `function` is a live CUfunction: it holds an Arc of its module, loaded into
        //   `self.ctx`, which is bound to this thread (execute bound it).
        // - `params` has one pointer per kernel parameter, each to initialised storage at least
        //   as large as the parameter: planners and kernels are written in pairs, the emulator
        //   runs the same plans against the same kernel sources with checked accesses, and
        //   `check_params` verified count and sizes with the driver where it can.
        // - Buffer arguments are device pointers of live allocations on this context, kept
        //   alive by the borrows above until this function returns, and (being freed
        //   stream-ordered on drop) until the kernel has run; the kernels' accesses stay within
        //   them by the same pairing of planner and kernel.
        // - Grid, block and shared memory passed `check_launch`.
        // - `arg_words` outlives the call; the driver copies the argument values during it.
        let result = unsafe {
            cudarc::driver::result::launch_kernel(
                function.cu_function(),
                (launch.grid[0], launch.grid[1], launch.grid[2]),
                (launch.block[0], launch.block[1], launch.block[2]),
                launch.shared_mem_bytes,
                stream.cu_stream(),
                &mut params,
            )
        };
        drop(guards);
        result.map_err(|e| driver_error(&format!("launching {}", launch.kernel), &e))
    }
}

/// `bytes` as zero-padded native-endian words (at least one, so the pointer is never dangling).
fn to_words(bytes: &[u8]) -> Vec<u64> {
    let mut words = vec![0u64; bytes.len().div_ceil(8).max(1)];
    for (word, chunk) in words.iter_mut().zip(bytes.chunks(8)) {
        let mut raw = [0u8; 8];
        raw[..chunk.len()].copy_from_slice(chunk);
        *word = u64::from_ne_bytes(raw);
    }
    words
}

fn byte_len(dtype: DType, len: usize) -> Result<usize> {
    len.checked_mul(dtype.size_in_bytes())
        .ok_or_else(|| Error::OutOfMemory(format!("{len} {dtype} elements overflow the address space")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_hold_the_bytes() {
        let bytes: Vec<u8> = (1..=12).collect();
        let words = to_words(&bytes);
        assert_eq!(words.len(), 2);
        let back: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
        assert_eq!(&back[..12], &bytes[..]);
        assert_eq!(&back[12..], &[0, 0, 0, 0]);
        assert_eq!(to_words(&[]).len(), 1);
    }

    /// On a GPU (with driver 12.4+), a plan whose arguments do not match the kernel's
    /// parameter list is refused before launch: too few, too many, and one of the wrong size.
    /// Skipped without a GPU, unless `CUPOOL_REQUIRE_GPU=1`.
    #[test]
    fn plans_that_do_not_match_the_kernel_are_refused() {
        let backend = match crate::cuda::context::open(0) {
            Ok(b) => b,
            Err(e) => {
                assert_ne!(std::env::var("CUPOOL_REQUIRE_GPU").as_deref(), Ok("1"), "no GPU: {e}");
                println!("skip: no CUDA device ({e})");
                return;
            }
        };
        let x = backend.upload(HostData::F32(vec![1.0; 4])).expect("upload");
        let mut y = backend.alloc_zeros(DType::F32, 4).expect("alloc");
        let good =
            crate::cuda::copy::plan_strided_copy(&[4], &[1], 0, DType::F32, &backend.limits()).expect("plan");
        backend.execute(&good, &[&x], &mut [&mut y]).expect("the planner's own plan runs");
        let Some(sizes) = backend.function("strided_copy_f32").expect("kernel").param_sizes else {
            println!("skip: this driver does not report parameter lists");
            return;
        };
        assert_eq!(sizes, [std::mem::size_of::<crate::cuda::copy::StridedCopyParams>(), 8, 8]);
        let mut refused = |edit: &dyn Fn(&mut Vec<KernelArg>)| {
            let mut plan = good.clone();
            edit(&mut plan.launches[0].args);
            match backend.execute(&plan, &[&x], &mut [&mut y]) {
                Err(Error::KernelFault(m)) => m,
                other => panic!("expected a refused launch, got {other:?}"),
            }
        };
        assert!(refused(&|a| {
            a.pop();
        })
        .contains("passes 2 arguments, the kernel takes 3"));
        assert!(refused(&|a| a.push(KernelArg::U32(0))).contains("passes 4 arguments, the kernel takes 3"));
        assert!(refused(&|a| a[0] = KernelArg::U64(0)).contains("argument 0 is 8 bytes"));
    }

    #[test]
    fn byte_len_overflow_is_an_error() {
        assert_eq!(byte_len(DType::F32, 3).ok(), Some(12));
        assert!(matches!(byte_len(DType::F64, usize::MAX), Err(Error::OutOfMemory(_))));
    }
}
