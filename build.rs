//! Build script: embeds the kernel sources (always), builds a fatbin of cubins where nvcc is
//! found (build/kernels.rs), and compiles the kernels for the host emulator under feature
//! `emulator` (build/emulator.rs).

#[path = "build/emulator.rs"]
mod emulator_build;
#[path = "build/kernels.rs"]
mod kernels_build;

fn main() {
    kernels_build::run();
    if std::env::var_os("CARGO_FEATURE_EMULATOR").is_some() {
        emulator_build::run();
    }
}
