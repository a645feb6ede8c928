//! Every embedded kernel compiles with NVRTC to a cubin for sm_75, sm_80 and sm_90, where
//! libnvrtc is found (a printed skip otherwise). This is the check that the kernels build for
//! every supported GPU on machines that have none.
#![cfg(feature = "cuda")]

use cupool::cuda::kernel_sources;
use cupool::cuda::nvrtc::{compile_cubin, nvrtc_available, nvrtc_version};

const ARCHS: [&str; 3] = ["sm_75", "sm_80", "sm_90"];

#[test]
fn every_kernel_compiles_to_a_cubin() {
    if !nvrtc_available() {
        println!("skipped: libnvrtc not found");
        return;
    }
    println!("NVRTC {:?}", nvrtc_version());
    let units: Vec<&str> =
        kernel_sources().iter().map(|(name, _)| *name).filter(|n| n.ends_with(".cu")).collect();
    // One thread per file: NVRTC is single threaded and the big files take seconds each.
    let failures: Vec<String> = std::thread::scope(|scope| {
        let workers: Vec<_> = units
            .iter()
            .map(|unit| {
                scope.spawn(move || {
                    let mut failures = Vec::new();
                    for arch in ARCHS {
                        match compile_cubin(unit, arch) {
                            Ok(cubin) if cubin.starts_with(b"\x7fELF") => {
                                println!("{unit} {arch}: {} bytes", cubin.len())
                            }
                            Ok(_) => {
                                failures.push(format!("{unit} for {arch}: the cubin is not an ELF image"))
                            }
                            Err(e) => failures.push(format!("{unit} for {arch}: {e}")),
                        }
                    }
                    failures
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_else(|_| vec!["a compile thread panicked".into()]))
            .collect()
    });
    assert!(failures.is_empty(), "NVRTC failed:\n{}", failures.join("\n\n"));
}

#[test]
fn compile_errors_are_reported_not_panicked() {
    // An unknown file and a PTX-only architecture are typed errors with or without libnvrtc.
    assert!(compile_cubin("no_such_kernel.cu", "sm_90").is_err());
    if let Some(unit) = kernel_sources().iter().map(|(n, _)| *n).find(|n| n.ends_with(".cu")) {
        assert!(compile_cubin(unit, "compute_90").is_err());
    }
}
