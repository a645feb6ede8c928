//! Finding a GPU without ever panicking, and loading the kernels onto it.
//!
//! cudarc panics when libcuda is missing (inside a `OnceLock`, so on every later call too), so
//! [`open`] probes for the library before the first cudarc driver call; every later failure
//! (no device, a stub driver, an unsupported device) comes back as `Err`.
//!
//! Kernels load as one CUDA module per `kernels/*.cu`, lazily, once per backend: from the fatbin
//! nvcc built (the driver picks the device's cubin) when the device's `sm_XY` was compiled in,
//! else from a cubin NVRTC compiles for exactly `sm_XY`. PTX is never loaded (a PTX from a
//! toolkit newer than the driver fails to load; cubins have no such skew).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use cudarc::driver::sys::{CUdevice_attribute, CUresult};
use cudarc::driver::{CudaContext, CudaFunction, CudaModule, CudaStream, DriverError};
use cudarc::nvrtc::Ptx;

use crate::cuda::embedded::{fatbin_archs, kernel_fatbin, kernel_source, kernel_units};
use crate::cuda::nvrtc;
use crate::cuda::DeviceLimits;
use crate::error::{Error, Result};

/// A module, loaded once on first use; a load failure is kept as well.
type ModuleSlot = OnceLock<std::result::Result<Arc<CudaModule>, Error>>;

/// One GPU, as the CUDA executor uses it.
pub(crate) struct CudaBackend {
    pub(crate) ctx: Arc<CudaContext>,
    /// Every op runs on this stream, in order.
    pub(crate) stream: Arc<CudaStream>,
    /// (major, minor).
    pub(crate) compute_capability: (i32, i32),
    pub(crate) name: String,
    pub(crate) sm_count: u32,
    pub(crate) max_threads_per_block: u32,
    /// Shared memory a block may use without opting in (48 KiB on every supported part).
    pub(crate) max_shared_per_block: u32,
    pub(crate) max_block_dims: [u32; 3],
    pub(crate) max_grid_dims: [u32; 3],
    /// `cuDriverGetVersion`, e.g. 13000.
    pub(crate) driver_version: i32,
    /// One slot per `.cu` file (in `kernel_units()` order), filled on first use; a failure is
    /// kept too, so a broken module is not recompiled on every call.
    modules: Vec<(&'static str, ModuleSlot)>,
    /// Kernel name to function, filled on first launch of each kernel.
    functions: Mutex<HashMap<String, Kernel>>,
}

/// A loaded kernel and its parameter list as the driver reports it.
#[derive(Clone)]
pub(crate) struct Kernel {
    pub(crate) function: CudaFunction,
    /// Each parameter's size in bytes (`cuFuncGetParamInfo`, driver 12.4+), read once when the
    /// kernel is loaded; `None` where the driver cannot say. Launches compare against this
    /// list, so they make no driver calls for the check (and raise no driver errors, which
    /// compute-sanitizer would report on every launch).
    pub(crate) param_sizes: Option<Vec<usize>>,
}

/// `cuFuncGetParamInfo` exists from driver 12.4 on; older drivers skip the argument check
/// (calling a missing symbol through cudarc's dynamic loading would panic).
const PARAM_INFO_MIN_DRIVER: i32 = 12040;

/// The sizes of `function`'s parameters, in order, or `None` where the driver cannot say.
fn param_sizes(function: &CudaFunction, driver_version: i32) -> Option<Vec<usize>> {
    if driver_version < PARAM_INFO_MIN_DRIVER {
        return None;
    }
    let mut sizes = Vec::new();
    // A kernel's parameters fit in 32 KiB, so at most 32768 one-byte ones: the loop is bounded.
    for index in 0..=32768usize {
        let (mut offset, mut size) = (0usize, 0usize);
        // SAFETY: the driver is 12.4 or newer, so the symbol exists; `function` is a live
        // handle (it holds its module); both out-pointers are to live, writable usizes.
        let status = unsafe {
            cudarc::driver::sys::cuFuncGetParamInfo(function.cu_function(), index, &mut offset, &mut size)
        };
        match status {
            CUresult::CUDA_SUCCESS => sizes.push(size),
            // Past the last parameter (the driver's one way of giving the count).
            CUresult::CUDA_ERROR_INVALID_VALUE => return Some(sizes),
            _ => return None,
        }
    }
    None
}

impl std::fmt::Debug for CudaBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaBackend")
            .field("ordinal", &self.ctx.ordinal())
            .field("name", &self.name)
            .field("compute_capability", &self.compute_capability)
            .field("sm_count", &self.sm_count)
            .finish_non_exhaustive()
    }
}

/// Makes the device's current memory pool (where cudarc's stream-ordered allocations come
/// from) keep freed memory instead of returning it to the driver at every synchronisation.
/// With the pool's default threshold of 0, the driver may return freed memory at each
/// synchronisation, and an op's next output is then mapped afresh (what that costs a loop over
/// a 1.6 GB backward is what scripts/gpu-round.sh's A/B measures). PyTorch's caching allocator
/// keeps memory the same way;
/// [`CudaBackend::release_cached_memory`] gives it back, and `CUPOOL_NO_MEMORY_CACHING=1` (as
/// PyTorch's `PYTORCH_NO_CUDA_MEMORY_CACHING=1`) leaves the driver's default. A failure only
/// costs speed, so it is ignored.
fn keep_freed_memory_in_pool(ctx: &CudaContext) {
    let Ok(pool) = memory_pool(ctx) else { return };
    let mut threshold: u64 = u64::MAX;
    // SAFETY: `pool` is the device's live pool (memory_pool), and the threshold attribute takes
    // a pointer to a u64 (cuuint64_t), which `threshold` is.
    let _ = unsafe {
        cudarc::driver::sys::cuMemPoolSetAttribute(
            pool,
            cudarc::driver::sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD,
            (&mut threshold as *mut u64).cast(),
        )
    };
}

/// The device's current memory pool, where cudarc's stream-ordered allocations come from.
/// Only for a context that reports memory-pool support (`has_async_alloc`).
fn memory_pool(ctx: &CudaContext) -> std::result::Result<cudarc::driver::sys::CUmemoryPool, CUresult> {
    let mut pool: cudarc::driver::sys::CUmemoryPool = std::ptr::null_mut();
    // SAFETY: the context exists (so cuInit ran and the driver library is loaded), and callers
    // only ask where it reports memory-pool support, so cuDeviceGetMemPool (CUDA 11.2+)
    // exists in the driver; `pool` is a live out-pointer.
    match unsafe { cudarc::driver::sys::cuDeviceGetMemPool(&mut pool, ctx.cu_device()) } {
        CUresult::CUDA_SUCCESS if !pool.is_null() => Ok(pool),
        CUresult::CUDA_SUCCESS => Err(CUresult::CUDA_ERROR_INVALID_VALUE),
        other => Err(other),
    }
}

/// Opens GPU `ordinal`, or says why there is none. Never panics: the driver library is probed
/// before cudarc touches it. A backend is opened once per ordinal and shared.
pub(crate) fn open(ordinal: usize) -> Result<Arc<CudaBackend>> {
    static OPENED: OnceLock<Mutex<HashMap<usize, Arc<CudaBackend>>>> = OnceLock::new();
    let opened = OPENED.get_or_init(|| Mutex::new(HashMap::new()));
    // A poisoned lock only means another thread panicked while holding it; the map is still
    // a valid cache (inserts are single operations), so keep using it.
    let mut opened = opened.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(backend) = opened.get(&ordinal) {
        return Ok(backend.clone());
    }
    let backend = Arc::new(CudaBackend::new(ordinal)?);
    opened.insert(ordinal, backend.clone());
    Ok(backend)
}

/// Whether libcuda can be loaded (probed once per process).
pub(crate) fn driver_present() -> bool {
    static PRESENT: OnceLock<bool> = OnceLock::new();
    // SAFETY: `is_culib_present` only tries `dlopen` on candidate library names and closes what
    // it opened; it calls no driver function and has no precondition.
    *PRESENT.get_or_init(|| unsafe { cudarc::driver::sys::is_culib_present() })
}

impl CudaBackend {
    fn new(ordinal: usize) -> Result<CudaBackend> {
        if !driver_present() {
            return Err(Error::CudaUnavailable("no CUDA driver (libcuda.so) found".to_string()));
        }
        let unavailable = |what: &str, e: DriverError| {
            Error::CudaUnavailable(format!("{what} for GPU {ordinal}: {}", describe(&e)))
        };
        // `CudaContext::new` runs cuInit, cuDeviceGet and retains the primary context, each with
        // `?`: no device (CUDA_ERROR_NO_DEVICE), a stub driver, or a bad ordinal come back here.
        let ctx = CudaContext::new(ordinal).map_err(|e| unavailable("cannot start CUDA", e))?;
        let compute_capability =
            ctx.compute_capability().map_err(|e| unavailable("no compute capability", e))?;
        let name = ctx.name().unwrap_or_else(|_| format!("CUDA device {ordinal}"));
        let attribute = |attr: CUdevice_attribute| -> Result<u32> {
            let value = ctx.attribute(attr).map_err(|e| unavailable("cannot query device attributes", e))?;
            Ok(u32::try_from(value).unwrap_or(0))
        };
        use CUdevice_attribute as A;
        let sm_count = attribute(A::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)?;
        let max_threads_per_block = attribute(A::CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK)?;
        let max_shared_per_block =
            attribute(A::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK)?.min(48 * 1024);
        let max_block_dims = [
            attribute(A::CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_X)?,
            attribute(A::CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Y)?,
            attribute(A::CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Z)?,
        ];
        let max_grid_dims = [
            attribute(A::CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_X)?,
            attribute(A::CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Y)?,
            attribute(A::CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Z)?,
        ];
        let mut driver_version: std::ffi::c_int = 0;
        // SAFETY: the driver library is loaded and initialised (CudaContext::new ran cuInit);
        // the pointer is to a live, writable c_int. A failure leaves 0 ("unknown").
        let _ = unsafe { cudarc::driver::sys::cuDriverGetVersion(&mut driver_version) };
        let stream = ctx.default_stream();
        if ctx.has_async_alloc() && std::env::var_os("CUPOOL_NO_MEMORY_CACHING").is_none_or(|v| v != "1") {
            keep_freed_memory_in_pool(&ctx);
        }
        Ok(CudaBackend {
            ctx,
            stream,
            compute_capability,
            name,
            sm_count,
            max_threads_per_block,
            max_shared_per_block,
            max_block_dims,
            max_grid_dims,
            driver_version,
            modules: kernel_units().map(|unit| (unit, OnceLock::new())).collect(),
            functions: Mutex::new(HashMap::new()),
        })
    }

    /// Waits for this device's queued work, then returns the memory its pool keeps for reuse
    /// (see `keep_freed_memory_in_pool`) to the driver.
    pub(crate) fn release_cached_memory(&self) -> Result<()> {
        self.stream.synchronize().map_err(|e| driver_error("synchronising before trimming the pool", &e))?;
        if !self.ctx.has_async_alloc() {
            return Ok(());
        }
        self.ctx.bind_to_thread().map_err(|e| driver_error("binding the CUDA context", &e))?;
        let status = memory_pool(&self.ctx).and_then(|pool| {
            // SAFETY: `pool` is the device's live pool (memory_pool); trimming frees only
            // memory no allocation holds.
            match unsafe { cudarc::driver::sys::cuMemPoolTrimTo(pool, 0) } {
                CUresult::CUDA_SUCCESS => Ok(()),
                other => Err(other),
            }
        });
        status.map_err(|e| Error::Driver(format!("trimming the memory pool: {e:?}")))
    }

    /// The device's name as the driver reports it (`"NVIDIA H200"`).
    pub(crate) fn device_name(&self) -> String {
        self.name.clone()
    }

    pub(crate) fn device_limits(&self) -> DeviceLimits {
        DeviceLimits {
            sm_count: self.sm_count,
            max_threads_per_block: self.max_threads_per_block,
            max_shared_per_block: self.max_shared_per_block,
        }
    }

    /// `sm_XY` for this device.
    pub(crate) fn sm_arch(&self) -> String {
        format!("sm_{}{}", self.compute_capability.0, self.compute_capability.1)
    }

    /// The function `kernel`, from whichever module defines it; cached per backend.
    pub(crate) fn function(&self, kernel: &str) -> Result<Kernel> {
        if let Some(k) = self.functions.lock().unwrap_or_else(|p| p.into_inner()).get(kernel) {
            return Ok(k.clone());
        }
        if kernel.is_empty() || kernel.contains('\0') {
            return Err(Error::InvalidArgument(format!("{kernel:?} is not a kernel name")));
        }
        let mut load_errors = Vec::new();
        for index in self.search_order(kernel) {
            let module = match self.module(index) {
                Ok(module) => module,
                Err(e) => {
                    load_errors.push(e);
                    continue;
                }
            };
            match module.load_function(kernel) {
                Ok(function) => {
                    let param_sizes = param_sizes(&function, self.driver_version);
                    let k = Kernel { function, param_sizes };
                    self.functions
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(kernel.to_string(), k.clone());
                    return Ok(k);
                }
                Err(DriverError(CUresult::CUDA_ERROR_NOT_FOUND)) => continue,
                Err(e) => return Err(driver_error(&format!("looking up kernel {kernel}"), &e)),
            }
        }
        // A module that failed to load may have held the kernel: report why it failed.
        if let Some(first) = load_errors.into_iter().next() {
            return Err(first);
        }
        Err(Error::Driver(format!(
            "kernel {kernel} is in none of the embedded modules ({})",
            self.modules.iter().map(|(unit, _)| *unit).collect::<Vec<_>>().join(", ")
        )))
    }

    /// Module indices to search for `kernel`: files whose source mentions the kernel's op
    /// (its name up to the dtype suffix) first, so a lookup loads one module, not all of them.
    fn search_order(&self, kernel: &str) -> Vec<usize> {
        let op = kernel.rsplit_once('_').map_or(kernel, |(op, _)| op);
        let mentions = |unit: &str| kernel_source(unit).is_some_and(|src| src.contains(op));
        let (mut likely, rest): (Vec<usize>, Vec<usize>) =
            (0..self.modules.len()).partition(|&i| mentions(self.modules[i].0));
        likely.extend(rest);
        likely
    }

    /// Module `index`, loading it on first use (once per backend, also under concurrent use).
    fn module(&self, index: usize) -> Result<Arc<CudaModule>> {
        let (unit, slot) = &self.modules[index];
        match slot.get_or_init(|| self.load_module(unit)) {
            Ok(module) => Ok(module.clone()),
            Err(e) => Err(clone_error(e)),
        }
    }

    /// Loads `unit` (a `.cu` name): the embedded fatbin when it holds this device's exact
    /// `sm_XY`, else an NVRTC cubin for `sm_XY`. When NVRTC is missing, a fatbin cubin of the
    /// same major architecture (binary compatible, e.g. sm_80 on sm_86) is the last resort.
    fn load_module(&self, unit: &str) -> std::result::Result<Arc<CudaModule>, Error> {
        let (major, minor) = self.compute_capability;
        let device_arch = u32::try_from(major * 10 + minor).unwrap_or(0);
        let fatbin = kernel_fatbin(unit);
        let mut fatbin_error = None;
        if let Some(fatbin) = fatbin.filter(|_| fatbin_archs().contains(&device_arch)) {
            match self.ctx.load_module(Ptx::from_binary(fatbin.to_vec())) {
                Ok(module) => return Ok(module),
                // e.g. a cubin from a toolkit newer than the driver: try NVRTC below.
                Err(e) => fatbin_error = Some(describe(&e)),
            }
        }
        let arch = self.sm_arch();
        let nvrtc_error = match nvrtc::compile_cubin(unit, &arch) {
            Ok(cubin) => match self.ctx.load_module(Ptx::from_binary(cubin)) {
                Ok(module) => return Ok(module),
                Err(e) => Error::KernelCompile(format!(
                    "the NVRTC cubin for kernels/{unit} ({arch}) did not load: {}",
                    describe(&e)
                )),
            },
            Err(e) => e,
        };
        let compatible = fatbin_archs().iter().any(|&a| a / 10 == major as u32 && a <= device_arch);
        if let (Some(fatbin), true, None) = (fatbin, compatible, &fatbin_error) {
            if let Ok(module) = self.ctx.load_module(Ptx::from_binary(fatbin.to_vec())) {
                return Ok(module);
            }
        }
        let built = if fatbin_archs().is_empty() {
            "no cubins were embedded (nvcc was not found at build time)".to_string()
        } else {
            let archs: Vec<String> = fatbin_archs().iter().map(|a| format!("sm_{a}")).collect();
            format!("embedded cubins are for {}", archs.join(", "))
        };
        let fatbin_note =
            fatbin_error.map(|e| format!("; the embedded fatbin did not load: {e}")).unwrap_or_default();
        Err(Error::KernelCompile(format!(
            "cannot load kernels/{unit} on {} ({arch}): {built}{fatbin_note}; {nvrtc_error}",
            self.name
        )))
    }
}

/// `CUDA_ERROR_X (text)` for a driver error, without panicking if the driver cannot say.
pub(crate) fn describe(e: &DriverError) -> String {
    match e.error_string() {
        Ok(text) => format!("{:?} ({})", e.0, text.to_string_lossy()),
        Err(_) => format!("{:?}", e.0),
    }
}

/// A driver error as cupool's: out of memory is its own kind; the rest carry `what` failed.
pub(crate) fn driver_error(what: &str, e: &DriverError) -> Error {
    match e.0 {
        CUresult::CUDA_ERROR_OUT_OF_MEMORY => Error::OutOfMemory(format!("{what}: {}", describe(e))),
        _ => Error::Driver(format!("{what}: {}", describe(e))),
    }
}

/// `Error` is not `Clone` (its public shape is fixed); cached load failures are re-issued by
/// kind and message.
fn clone_error(e: &Error) -> Error {
    match e {
        Error::InvalidArgument(m) => Error::InvalidArgument(m.clone()),
        Error::Shape(m) => Error::Shape(m.clone()),
        Error::DType(m) => Error::DType(m.clone()),
        Error::DeviceMismatch(m) => Error::DeviceMismatch(m.clone()),
        Error::CudaUnavailable(m) => Error::CudaUnavailable(m.clone()),
        Error::Driver(m) => Error::Driver(m.clone()),
        Error::KernelCompile(m) => Error::KernelCompile(m.clone()),
        Error::OutOfMemory(m) => Error::OutOfMemory(m.clone()),
        Error::KernelFault(m) => Error::KernelFault(m.clone()),
        Error::Unsupported(m) => Error::Unsupported(m.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Wherever this runs, opening a GPU answers Ok or a typed Err, never a panic; on a machine
    /// without libcuda (CI) the answer is `CudaUnavailable`.
    #[test]
    fn open_never_panics() {
        match open(0) {
            Ok(backend) => {
                assert!(backend.sm_count > 0);
                assert!(!backend.device_name().is_empty());
                // The cache hands out the same backend.
                assert!(Arc::ptr_eq(&backend, &open(0).expect("opened once already")));
            }
            Err(Error::CudaUnavailable(reason)) => {
                assert!(!reason.is_empty());
                if !driver_present() {
                    assert_eq!(reason, "no CUDA driver (libcuda.so) found");
                }
            }
            Err(other) => panic!("open(0) must give Ok or CudaUnavailable, got {other}"),
        }
        // An ordinal no machine has is an error too, never a panic.
        assert!(matches!(open(1_000_000), Err(Error::CudaUnavailable(_))));
    }
}
