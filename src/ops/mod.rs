//! The semantics of every op, once: argument checks, output shapes, the divisor rule and the
//! adaptive window bounds, and the choice of algorithm. Backends (src/cpu, src/cuda) only compute.

pub mod adaptive;
pub(crate) mod backward;
pub(crate) mod dispatch;
pub(crate) mod pool;
pub mod reduce;
pub mod reduce_geometry;
pub mod window;

/// How a 4-D pooling input (or output) is laid out in memory. 3-D input is always `Nchw` (N = 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layout {
    /// Row-major (N, C, H, W): element (n, c, h, w) at `((n*C + c)*H + h)*W + w`.
    Nchw,
    /// Channels-last (N, H, W, C) memory: element (n, c, h, w) at `((n*H + h)*W + w)*C + c`.
    Nhwc,
}
