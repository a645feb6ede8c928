// Placeholder until the CUDA runtime lands: embeds nothing yet.
pub fn run() {
    println!("cargo:rerun-if-changed=kernels");
}
