//! Launch planning for kernels/pool2d.cu: windowed `avg_pool2d` / `max_pool2d` forward.
//! NCHW: a block per tile of output rows of one plane, its input rows (with the halo) staged in
//! shared memory; planes too wide for that take the direct kernel. NHWC: one thread per output
//! position and group of four channels.

use super::plan::{BufferId, KernelArg, OpPlan};
use super::reduce::{blocks_for, check_float, launch, to_i64};
use super::DeviceLimits;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::ops::window::{AvgRule, WindowGeometry};
use crate::ops::Layout;

const BLOCK: u32 = 256;
/// Input bytes a tiled block aims to stage (tile + halo), well under the 48 KiB limit so that
/// several blocks share an SM.
const TILE_TARGET_BYTES: usize = 16 * 1024;
/// The most a tiled block may stage; wider planes take the direct kernel.
const TILE_MAX_BYTES: usize = 32 * 1024;

/// Mirrors `WindowParams` in kernels/pool2d.cu (8-byte fields first, no padding).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct WindowParams {
    pub n: i64,
    pub c: i64,
    pub h: i64,
    pub w: i64,
    pub out_h: i64,
    pub out_w: i64,
    pub kh: i64,
    pub kw: i64,
    pub sh: i64,
    pub sw: i64,
    pub ph: i64,
    pub pw: i64,
    pub dh: i64,
    pub dw: i64,
    pub divisor_override: i64,
    pub tile_rows: i64,
    pub tiles_per_plane: i64,
    pub planes_per_block: i64,
    pub count_include_pad: i32,
    pub has_override: i32,
    pub vec: i32,
    pub pad_: i32,
}

fn params(g: &WindowGeometry) -> Result<WindowParams> {
    // Every index the kernels form is below input_len / output_len; both must fit in i64.
    let bytes = g.input_len().checked_mul(8).and_then(|b| b.checked_add(g.output_len() * 8));
    if bytes.is_none() || g.input_len().max(g.output_len()) > i64::MAX as usize / 8 {
        return Err(Error::InvalidArgument("pooling: tensor too large for 64-bit indexing".into()));
    }
    Ok(WindowParams {
        n: to_i64(g.n, "N")?,
        c: to_i64(g.c, "C")?,
        h: to_i64(g.h, "H")?,
        w: to_i64(g.w, "W")?,
        out_h: to_i64(g.out_h, "out_h")?,
        out_w: to_i64(g.out_w, "out_w")?,
        kh: to_i64(g.kernel[0], "kernel")?,
        kw: to_i64(g.kernel[1], "kernel")?,
        sh: to_i64(g.stride[0], "stride")?,
        sw: to_i64(g.stride[1], "stride")?,
        ph: to_i64(g.padding[0], "padding")?,
        pw: to_i64(g.padding[1], "padding")?,
        dh: to_i64(g.dilation[0], "dilation")?,
        dw: to_i64(g.dilation[1], "dilation")?,
        divisor_override: 0,
        tile_rows: 0,
        tiles_per_plane: 0,
        planes_per_block: 1,
        count_include_pad: 1,
        has_override: 0,
        vec: 1,
        pad_: 0,
    })
}

/// Plans the launch of one pooling kernel family (`avg_pool2d` or `max_pool2d`).
fn plan_pool(
    op: &str,
    g: &WindowGeometry,
    mut p: WindowParams,
    layout: Layout,
    dtype: DType,
    with_indices: bool,
    limits: &DeviceLimits,
) -> Result<OpPlan> {
    check_float(dtype, op)?;
    if g.output_len() == 0 {
        return Ok(OpPlan::default());
    }
    let sfx = dtype.kernel_suffix();
    let idx = if with_indices { "_idx" } else { "" };
    let mut args = vec![KernelArg::Buffer(BufferId::Input(0)), KernelArg::Buffer(BufferId::Output(0))];
    if with_indices {
        args.push(KernelArg::Buffer(BufferId::Output(1)));
    }
    let es = dtype.size_in_bytes();
    let (kernel, grid, shared) = match layout {
        Layout::Nhwc => {
            p.vec = if g.c.is_multiple_of(4) { 4 } else { 1 };
            let threads = g.n * g.out_h * g.out_w * (g.c / p.vec as usize);
            (format!("{op}_nhwc{idx}_{sfx}"), blocks_for(threads, BLOCK), 0)
        }
        Layout::Nchw => {
            // Input rows one output row needs, and each further output row adds `stride`.
            let reach = (g.kernel[0] - 1) * g.dilation[0] + 1;
            let row_bytes = g.w * es;
            let min_bytes = reach.min(g.h) * row_bytes + 32;
            // The tiled kernel counts a block's outputs in 32 bits.
            let tile_outputs_fit = g.out_w.checked_mul(g.out_h).is_some_and(|o| o < i32::MAX as usize);
            if min_bytes > TILE_MAX_BYTES.min(limits.max_shared_per_block as usize) || !tile_outputs_fit {
                let threads = g.output_len();
                (format!("{op}_nchw_direct{idx}_{sfx}"), blocks_for(threads, BLOCK), 0)
            } else {
                let planes = g.n * g.c;
                let sms = limits.sm_count.max(1) as usize;
                let plane_bytes = g.h * row_bytes;
                let (tile_rows, planes_per_block) =
                    if plane_bytes <= TILE_TARGET_BYTES && g.out_h * g.out_w < BLOCK as usize {
                        // Small planes (7x7, 14x14): a block per plane would leave most of its
                        // threads idle and make the grid hundreds of thousands of blocks long
                        // (20x slower than PyTorch on 128x2048x7x7), so a block takes a run of
                        // whole planes, which is still one contiguous span. Keep at least two
                        // blocks per SM.
                        let by_bytes = TILE_TARGET_BYTES / plane_bytes;
                        let by_blocks = planes.div_ceil(2 * sms);
                        (g.out_h, by_bytes.min(by_blocks).max(1))
                    } else {
                        let fit_rows = (TILE_TARGET_BYTES / row_bytes).max(reach);
                        let mut tile_rows = ((fit_rows - reach) / g.stride[0] + 1).clamp(1, g.out_h);
                        // Keep at least two blocks per SM on small inputs.
                        let want_tiles = (2 * sms).div_ceil(planes);
                        if want_tiles > 1 {
                            tile_rows = tile_rows.min(g.out_h.div_ceil(want_tiles)).max(1);
                        }
                        (tile_rows, 1)
                    };
                let tiles = g.out_h.div_ceil(tile_rows);
                let staged_rows = ((tile_rows - 1) * g.stride[0] + reach).min(g.h);
                let staged_bytes = (planes_per_block - 1) * plane_bytes + staged_rows * row_bytes;
                let shared = staged_bytes.div_ceil(16) * 16 + 32;
                p.tile_rows = to_i64(tile_rows, "tile rows")?;
                p.tiles_per_plane = to_i64(tiles, "tiles")?;
                p.planes_per_block = to_i64(planes_per_block, "planes per block")?;
                let blocks = planes
                    .div_ceil(planes_per_block)
                    .checked_mul(tiles)
                    .ok_or_else(|| Error::InvalidArgument(format!("{op}: too many blocks")))?;
                (format!("{op}_nchw{idx}_{sfx}"), blocks, shared)
            }
        }
    };
    let mut all = vec![KernelArg::params(&p)];
    all.extend(args);
    Ok(OpPlan {
        launches: vec![launch(kernel, [grid, 1, 1], BLOCK, shared, all, limits)?],
        ..OpPlan::default()
    })
}

/// Plans `avg_pool2d`. Input(0) = x, Output(0) = y, both contiguous in `layout`.
pub fn plan_avg_pool2d(
    g: &WindowGeometry,
    rule: AvgRule,
    layout: Layout,
    dtype: DType,
    limits: &DeviceLimits,
) -> Result<OpPlan> {
    let mut p = params(g)?;
    p.count_include_pad = i32::from(rule.count_include_pad);
    if let Some(d) = rule.divisor_override {
        if d == 0 {
            return Err(Error::InvalidArgument("divisor must be not zero".into()));
        }
        p.has_override = 1;
        p.divisor_override = d;
    }
    if g.dilation != [1, 1] {
        return Err(Error::InvalidArgument("avg_pool2d has no dilation".into()));
    }
    plan_pool("avg_pool2d", g, p, layout, dtype, false, limits)
}

/// Plans `max_pool2d`. Output(0) = values; Output(1) = i64 indices (h * W + w in the plane, laid
/// out as the values) only when `with_indices`.
pub fn plan_max_pool2d(
    g: &WindowGeometry,
    layout: Layout,
    dtype: DType,
    with_indices: bool,
    limits: &DeviceLimits,
) -> Result<OpPlan> {
    let p = params(g)?;
    plan_pool("max_pool2d", g, p, layout, dtype, with_indices, limits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::window::plan_window_pool;

    #[test]
    fn params_struct_has_no_padding() {
        assert_eq!(std::mem::size_of::<WindowParams>(), 18 * 8 + 16);
    }

    /// The `WindowParams` a one-launch plan passes first.
    fn launch_params(plan: &OpPlan) -> WindowParams {
        let KernelArg::Params(bytes) = &plan.launches[0].args[0] else { panic!("params first") };
        assert_eq!(bytes.len(), std::mem::size_of::<WindowParams>());
        // SAFETY: the planner wrote these bytes from a WindowParams (the length is checked
        // above), and every bit pattern is a valid WindowParams (plain integers);
        // read_unaligned copies them out of the byte buffer.
        unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) }
    }

    /// 7x7 planes: a block takes a run of whole planes (still at least two blocks per SM), so
    /// the grid is thousands of blocks, not one per plane.
    #[test]
    fn small_planes_share_a_block() {
        let g =
            plan_window_pool("max_pool2d", &[128, 2048, 7, 7], [3, 3], Some([2, 2]), [1, 1], [1, 1], false)
                .unwrap();
        let limits = DeviceLimits::HOPPER;
        let plan = plan_max_pool2d(&g, Layout::Nchw, DType::F32, true, &limits).unwrap();
        let launch = &plan.launches[0];
        assert_eq!(launch.kernel, "max_pool2d_nchw_idx_f32");
        let p = launch_params(&plan);
        assert_eq!((p.tile_rows, p.tiles_per_plane), (4, 1));
        assert_eq!(p.planes_per_block, (TILE_TARGET_BYTES / (49 * 4)) as i64);
        let blocks = (128 * 2048usize).div_ceil(p.planes_per_block as usize);
        assert_eq!(launch.grid[0] as usize, blocks);
        assert!(blocks >= 2 * limits.sm_count as usize);
        assert!(launch.shared_mem_bytes as usize >= p.planes_per_block as usize * 49 * 4);
        assert!(launch.shared_mem_bytes <= limits.max_shared_per_block);
        // Few planes: no fewer than two blocks per SM, so fewer planes a block.
        let g = plan_window_pool("avg_pool2d", &[1, 2048, 7, 7], [3, 3], Some([2, 2]), [1, 1], [1, 1], false)
            .unwrap();
        let rule = AvgRule { count_include_pad: true, divisor_override: None };
        let plan = plan_avg_pool2d(&g, rule, Layout::Nchw, DType::BF16, &limits).unwrap();
        let p = launch_params(&plan);
        assert_eq!(p.planes_per_block, 2048usize.div_ceil(2 * 132) as i64);
    }

    #[test]
    fn wide_planes_take_the_direct_kernel() {
        let g =
            plan_window_pool("max_pool2d", &[1, 1, 8, 20000], [3, 3], None, [0, 0], [1, 1], false).unwrap();
        let plan = plan_max_pool2d(&g, Layout::Nchw, DType::F32, true, &DeviceLimits::HOPPER).unwrap();
        assert_eq!(plan.launches[0].kernel, "max_pool2d_nchw_direct_idx_f32");
        let g =
            plan_window_pool("max_pool2d", &[2, 64, 112, 112], [3, 3], Some([2, 2]), [1, 1], [1, 1], false)
                .unwrap();
        let plan = plan_max_pool2d(&g, Layout::Nchw, DType::F32, false, &DeviceLimits::HOPPER).unwrap();
        assert_eq!(plan.launches[0].kernel, "max_pool2d_nchw_f32");
        assert!(plan.launches[0].shared_mem_bytes <= 32 * 1024);
    }
}
