//! The kernels as build.rs embedded them (build/kernels.rs): the sources always, and fatbins of
//! cubins where nvcc was found at build time.

mod generated {
    include!(concat!(env!("OUT_DIR"), "/kernel_sources.rs"));
}

/// Every `kernels/*.cu` and `kernels/*.cuh` as (file name, source text), sorted by name.
pub fn kernel_sources() -> &'static [(&'static str, &'static str)] {
    generated::KERNEL_SOURCES
}

/// The source text of one embedded kernel file, by file name (`"gap.cu"`, `"common.cuh"`).
pub fn kernel_source(file: &str) -> Option<&'static str> {
    generated::KERNEL_SOURCES.iter().find(|(name, _)| *name == file).map(|(_, src)| *src)
}

/// The `.cu` files (translation units), in [`kernel_sources`] order; one CUDA module each.
pub fn kernel_units() -> impl Iterator<Item = &'static str> {
    generated::KERNEL_SOURCES.iter().map(|(name, _)| *name).filter(|name| name.ends_with(".cu"))
}

/// The fatbin nvcc built for `file` (a `.cu` name), if it ran at build time.
pub fn kernel_fatbin(file: &str) -> Option<&'static [u8]> {
    generated::KERNEL_FATBINS.iter().find(|(name, _)| *name == file).map(|(_, bin)| *bin)
}

/// The architectures (`XY` of `sm_XY`) every fatbin holds a cubin for (`CUPOOL_CUDA_ARCHS` at
/// build time); empty when no fatbins were built.
pub fn fatbin_archs() -> &'static [u32] {
    generated::KERNEL_FATBIN_ARCHS
}
