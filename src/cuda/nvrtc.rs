//! Run-time compilation of the embedded kernels with NVRTC, to a CUBIN for one exact `sm_XY`.
//!
//! Why a cubin and not PTX: every NVRTC writes its own PTX ISA version, and a driver older than
//! the NVRTC rejects it (`CUDA_ERROR_UNSUPPORTED_PTX_VERSION`); a cubin for the device's own
//! architecture has no such skew. The kernels are header-free (NVRTC ships no `cuda_fp16.h`),
//! so the only headers are the embedded `kernels/*.cuh`, handed to NVRTC by name.
//!
//! cudarc panics when libnvrtc is missing, so every entry here probes for the library first.

use std::ffi::{c_char, c_int, CStr, CString};
use std::sync::OnceLock;

use cudarc::nvrtc::sys;

use crate::cuda::embedded::{kernel_source, kernel_sources};
use crate::error::{Error, Result};

/// Whether libnvrtc can be loaded (probed once per process).
pub fn nvrtc_available() -> bool {
    static PRESENT: OnceLock<bool> = OnceLock::new();
    // SAFETY: `is_culib_present` only tries `dlopen` on each candidate library name and drops
    // what it opened; it calls no NVRTC function and has no precondition.
    *PRESENT.get_or_init(|| unsafe { sys::is_culib_present() })
}

/// NVRTC's (major, minor) version, or `None` when libnvrtc is missing or does not answer.
pub fn nvrtc_version() -> Option<(i32, i32)> {
    if !nvrtc_available() {
        return None;
    }
    let (mut major, mut minor): (c_int, c_int) = (0, 0);
    // SAFETY: the library is present (checked above), and both pointers are to live, writable
    // `c_int`s for the duration of the call.
    let status = unsafe { sys::nvrtcVersion(&mut major, &mut minor) };
    (status == sys::nvrtcResult::NVRTC_SUCCESS).then_some((major, minor))
}

/// Compiles the embedded `file` (a `kernels/*.cu` name such as `"gap.cu"`) for `arch` (`"sm_90"`)
/// and returns the CUBIN (an ELF image). Errors: `KernelCompile` with NVRTC's log on a compile
/// error, or saying libnvrtc was not found; `InvalidArgument` for an unknown file or a malformed
/// architecture.
pub fn compile_cubin(file: &str, arch: &str) -> Result<Vec<u8>> {
    let source = kernel_source(file).filter(|_| file.ends_with(".cu")).ok_or_else(|| {
        Error::InvalidArgument(format!("no embedded kernel file {file:?} (a kernels/*.cu name)"))
    })?;
    if !is_sm_arch(arch) {
        return Err(Error::InvalidArgument(format!(
            "NVRTC architecture {arch:?} must be a real architecture like \"sm_90\" (a cubin needs one)"
        )));
    }
    if !nvrtc_available() {
        return Err(Error::KernelCompile(
            "libnvrtc not found: put the CUDA NVRTC library (libnvrtc.so.13 or .12) on \
             LD_LIBRARY_PATH, or build with nvcc so that cubins are embedded"
                .to_string(),
        ));
    }

    let c_source = to_cstring(source, file)?;
    let c_name = to_cstring(file, file)?;
    let headers: Vec<(CString, CString)> = kernel_sources()
        .iter()
        .filter(|(name, _)| name.ends_with(".cuh"))
        .map(|(name, text)| Ok((to_cstring(text, name)?, to_cstring(name, name)?)))
        .collect::<Result<_>>()?;
    let header_texts: Vec<*const c_char> = headers.iter().map(|(text, _)| text.as_ptr()).collect();
    let header_names: Vec<*const c_char> = headers.iter().map(|(_, name)| name.as_ptr()).collect();
    let header_count = c_int::try_from(headers.len())
        .map_err(|_| Error::KernelCompile(format!("{} headers are too many for NVRTC", headers.len())))?;

    let mut raw_program: sys::nvrtcProgram = std::ptr::null_mut();
    // SAFETY: libnvrtc is present. Every pointer is to a NUL-terminated string (`CString`s and
    // the arrays of their pointers) that outlives the program: `c_source`, `c_name` and
    // `headers` are dropped after `program` below, which destroys the program first.
    // `header_texts` and `header_names` both hold `header_count` entries.
    let status = unsafe {
        sys::nvrtcCreateProgram(
            &mut raw_program,
            c_source.as_ptr(),
            c_name.as_ptr(),
            header_count,
            header_texts.as_ptr(),
            header_names.as_ptr(),
        )
    };
    if status != sys::nvrtcResult::NVRTC_SUCCESS {
        return Err(Error::KernelCompile(format!("nvrtcCreateProgram({file}): {}", status_text(status))));
    }
    let program = Program(raw_program);

    let options = [format!("--gpu-architecture={arch}"), "-std=c++17".to_string()];
    let c_options: Vec<CString> = options.iter().map(|o| to_cstring(o, "option")).collect::<Result<_>>()?;
    let option_ptrs: Vec<*const c_char> = c_options.iter().map(|o| o.as_ptr()).collect();
    // SAFETY: `program.0` is a live program (created above, destroyed only when `program`
    // drops); `option_ptrs` holds `option_ptrs.len()` pointers to live NUL-terminated strings.
    let status =
        unsafe { sys::nvrtcCompileProgram(program.0, option_ptrs.len() as c_int, option_ptrs.as_ptr()) };
    if status != sys::nvrtcResult::NVRTC_SUCCESS {
        return Err(Error::KernelCompile(format!(
            "NVRTC failed to compile kernels/{file} for {arch} ({}):\n{}",
            status_text(status),
            program.log()
        )));
    }

    let mut size: usize = 0;
    // SAFETY: live program, compiled successfully; `size` is a writable `usize`.
    let status = unsafe { sys::nvrtcGetCUBINSize(program.0, &mut size) };
    if status != sys::nvrtcResult::NVRTC_SUCCESS || size == 0 {
        return Err(Error::KernelCompile(format!(
            "NVRTC produced no cubin for kernels/{file} ({arch}): {}",
            status_text(status)
        )));
    }
    let mut cubin = vec![0u8; size];
    // SAFETY: `cubin` has exactly the `size` bytes NVRTC just reported for this program's cubin.
    let status = unsafe { sys::nvrtcGetCUBIN(program.0, cubin.as_mut_ptr().cast::<c_char>()) };
    if status != sys::nvrtcResult::NVRTC_SUCCESS {
        return Err(Error::KernelCompile(format!("nvrtcGetCUBIN({file}, {arch}): {}", status_text(status))));
    }
    Ok(cubin)
}

/// `sm_` followed by two or three digits, optionally an `a`/`f` suffix (`sm_90a`).
fn is_sm_arch(arch: &str) -> bool {
    let Some(rest) = arch.strip_prefix("sm_") else {
        return false;
    };
    let digits = rest.strip_suffix(['a', 'f']).unwrap_or(rest);
    (2..=3).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit())
}

fn to_cstring(text: &str, what: &str) -> Result<CString> {
    CString::new(text).map_err(|_| Error::KernelCompile(format!("{what} contains a NUL byte")))
}

fn status_text(status: sys::nvrtcResult) -> String {
    // SAFETY: only called once libnvrtc is known present; nvrtcGetErrorString returns a pointer
    // to a static NUL-terminated string (or null, handled) for any status value.
    let text = unsafe { sys::nvrtcGetErrorString(status) };
    if text.is_null() {
        format!("{status:?}")
    } else {
        // SAFETY: non-null, static, NUL-terminated (NVRTC's documented contract).
        unsafe { CStr::from_ptr(text) }.to_string_lossy().into_owned()
    }
}

/// An NVRTC program, destroyed on drop on every path.
struct Program(sys::nvrtcProgram);

impl Program {
    /// The compile log, or a note that there is none.
    fn log(&self) -> String {
        let mut size: usize = 0;
        // SAFETY: `self.0` is a live program; `size` is a writable `usize`.
        if unsafe { sys::nvrtcGetProgramLogSize(self.0, &mut size) } != sys::nvrtcResult::NVRTC_SUCCESS
            || size == 0
        {
            return "(no NVRTC log)".to_string();
        }
        let mut log = vec![0u8; size];
        // SAFETY: `log` has the `size` bytes NVRTC reported for this program's log.
        if unsafe { sys::nvrtcGetProgramLog(self.0, log.as_mut_ptr().cast::<c_char>()) }
            != sys::nvrtcResult::NVRTC_SUCCESS
        {
            return "(NVRTC log unavailable)".to_string();
        }
        let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
        String::from_utf8_lossy(&log[..end]).trim_end().to_string()
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        // SAFETY: `self.0` came from a successful nvrtcCreateProgram and is destroyed only here.
        // A destroy failure cannot be acted on (and leaks at most the program).
        let _ = unsafe { sys::nvrtcDestroyProgram(&mut self.0) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arch_names() {
        assert!(is_sm_arch("sm_90"));
        assert!(is_sm_arch("sm_100"));
        assert!(is_sm_arch("sm_90a"));
        assert!(!is_sm_arch("compute_90"));
        assert!(!is_sm_arch("sm_9"));
        assert!(!is_sm_arch("90"));
    }

    #[test]
    fn bad_requests_are_errors() {
        assert!(matches!(compile_cubin("no_such_file.cu", "sm_90"), Err(Error::InvalidArgument(_))));
        if let Some((file, _)) = kernel_sources().iter().find(|(n, _)| n.ends_with(".cu")) {
            assert!(matches!(compile_cubin(file, "compute_90"), Err(Error::InvalidArgument(_))));
        }
    }
}
