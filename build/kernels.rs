//! Embeds the CUDA kernels in the crate.
//!
//! Always: every `kernels/*.cu` and `kernels/*.cuh` as source text (`KERNEL_SOURCES`), so NVRTC
//! can compile them at run time and tests can compile-check them. Where `nvcc` is found
//! (`CUPOOL_NVCC`, else `nvcc` on `PATH`) and feature `cuda` is on: each `kernels/*.cu` as a
//! fatbin of cubins for `CUPOOL_CUDA_ARCHS` (`KERNEL_FATBINS`, `KERNEL_FATBIN_ARCHS`). Cubins, not
//! PTX: PTX from a toolkit newer than the driver fails to load, cubins do not have that problem.
//! A kernel that nvcc rejects fails the build with nvcc's message.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Architectures compiled when `CUPOOL_CUDA_ARCHS` is not set: A100 and H100/H200.
const DEFAULT_ARCHS: &str = "80,90";

pub fn run() {
    println!("cargo:rerun-if-changed=kernels");
    println!("cargo:rerun-if-env-changed=CUPOOL_NVCC");
    println!("cargo:rerun-if-env-changed=CUPOOL_CUDA_ARCHS");
    println!("cargo:rerun-if-env-changed=PATH");

    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let kernel_dir = manifest_dir.join("kernels");

    let sources = kernel_files(&kernel_dir);
    for path in &sources {
        // The directory watch above misses edits inside a file on some filesystems; watch each.
        println!("cargo:rerun-if-changed={}", path.display());
    }

    let mut code = String::new();
    code.push_str("/// Every `kernels/*.cu` and `kernels/*.cuh`: (file name, source text).\n");
    code.push_str("pub const KERNEL_SOURCES: &[(&str, &str)] = &[\n");
    for path in &sources {
        let _ =
            writeln!(code, "    ({:?}, include_str!({:?})),", file_name(path), path.display().to_string());
    }
    code.push_str("];\n");

    let units: Vec<&PathBuf> = sources.iter().filter(|p| p.extension().is_some_and(|e| e == "cu")).collect();
    let archs = parse_archs();
    let cuda_feature = env::var_os("CARGO_FEATURE_CUDA").is_some();
    let fatbins = match (cuda_feature, find_nvcc()) {
        (true, Some(nvcc)) => compile_fatbins(&nvcc, &kernel_dir, &out_dir, &units, &archs),
        (true, None) => {
            println!(
                "cargo:warning=cupool: nvcc not found (set CUPOOL_NVCC or put nvcc on PATH); no cubins \
                 embedded, the CUDA backend will compile kernels with NVRTC at run time (NVRTC fallback)"
            );
            Vec::new()
        }
        // Without the CUDA backend nothing would load a fatbin: skip the slow nvcc step.
        (false, _) => Vec::new(),
    };

    code.push_str(
        "/// `kernels/*.cu` compiled by nvcc at build time: (`.cu` file name, fatbin of cubins).\n",
    );
    code.push_str("pub const KERNEL_FATBINS: &[(&str, &[u8])] = &[\n");
    for (name, fatbin) in &fatbins {
        let _ = writeln!(code, "    ({:?}, include_bytes!({:?})),", name, fatbin.display().to_string());
    }
    code.push_str("];\n");
    code.push_str("/// The `sm_XY` (as `XY`) that every fatbin holds a cubin for; empty without fatbins.\n");
    let arch_list: Vec<String> =
        if fatbins.is_empty() { Vec::new() } else { archs.iter().map(|a| a.to_string()).collect() };
    let _ = writeln!(code, "pub const KERNEL_FATBIN_ARCHS: &[u32] = &[{}];", arch_list.join(", "));

    let target = out_dir.join("kernel_sources.rs");
    fs::write(&target, code).unwrap_or_else(|e| panic!("cupool: cannot write {}: {e}", target.display()));
}

/// `kernels/*.cu` and `kernels/*.cuh`, sorted; `kernels/emulator/` and other folders are not
/// kernels. An absent `kernels/` folder gives an empty list (the crate still builds).
fn kernel_files(kernel_dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(kernel_dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "cu" || e == "cuh"))
        .collect();
    files.sort();
    files
}

fn file_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// `CUPOOL_CUDA_ARCHS`: a comma list like `80,90` (`sm_80` and `compute_80` are accepted too).
fn parse_archs() -> Vec<u32> {
    let raw = env::var("CUPOOL_CUDA_ARCHS").unwrap_or_else(|_| DEFAULT_ARCHS.to_string());
    let mut archs = Vec::new();
    for item in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let digits = item.trim_start_matches("sm_").trim_start_matches("compute_");
        match digits.parse::<u32>() {
            Ok(a) if (30..1000).contains(&a) => {
                if !archs.contains(&a) {
                    archs.push(a)
                }
            }
            _ => panic!(
                "cupool: CUPOOL_CUDA_ARCHS={raw:?}: {item:?} is not a compute capability like 80 or 90 \
                 (write a comma list such as \"80,90\")"
            ),
        }
    }
    if archs.is_empty() {
        panic!("cupool: CUPOOL_CUDA_ARCHS={raw:?} names no architecture (write e.g. \"80,90\")");
    }
    archs
}

/// `CUPOOL_NVCC` if set (it must run), else `nvcc` if it runs from `PATH`.
fn find_nvcc() -> Option<PathBuf> {
    if let Some(explicit) = env::var_os("CUPOOL_NVCC").filter(|v| !v.is_empty()) {
        let nvcc = PathBuf::from(explicit);
        if runs(&nvcc) {
            return Some(nvcc);
        }
        panic!("cupool: CUPOOL_NVCC={} does not run (`--version` failed)", nvcc.display());
    }
    let nvcc = PathBuf::from("nvcc");
    runs(&nvcc).then_some(nvcc)
}

fn runs(nvcc: &Path) -> bool {
    Command::new(nvcc)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Compiles each `.cu` into `$OUT_DIR/fatbin/<name>.fatbin`, a few at a time (nvcc is single
/// threaded per file). Any failure panics with nvcc's output, which fails the build.
fn compile_fatbins(
    nvcc: &Path,
    kernel_dir: &Path,
    out_dir: &Path,
    units: &[&PathBuf],
    archs: &[u32],
) -> Vec<(String, PathBuf)> {
    let fatbin_dir = out_dir.join("fatbin");
    fs::create_dir_all(&fatbin_dir)
        .unwrap_or_else(|e| panic!("cupool: cannot create {}: {e}", fatbin_dir.display()));
    let parallel = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut results = Vec::new();
    for chunk in units.chunks(parallel) {
        let children: Vec<_> = chunk
            .iter()
            .map(|src| {
                let name = file_name(src);
                let output = fatbin_dir.join(format!("{name}.fatbin"));
                let mut cmd = Command::new(nvcc);
                cmd.arg("-fatbin").arg("-O3").arg("-std=c++17").arg("-I").arg(kernel_dir);
                for arch in archs {
                    cmd.arg("-gencode").arg(format!("arch=compute_{arch},code=sm_{arch}"));
                }
                cmd.arg("-o").arg(&output).arg(src.as_path());
                let child = cmd
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap_or_else(|e| panic!("cupool: cannot start {}: {e}", nvcc.display()));
                (name, output, child)
            })
            .collect();
        for (name, output, child) in children {
            let out = child.wait_with_output().unwrap_or_else(|e| panic!("cupool: nvcc on {name}: {e}"));
            if !out.status.success() {
                panic!(
                    "cupool: nvcc failed to compile kernels/{name} for sm_{archs:?}:\n{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            results.push((name, output));
        }
    }
    results
}
