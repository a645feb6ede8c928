//! Runs CUDA launch plans on the host through kernels/emulator.
