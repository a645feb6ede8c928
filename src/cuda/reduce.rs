//! Launch planning for kernels/reduce.cu: sums and means over the middle axis of
//! `[outer, reduce, inner]`. Picks the kernel for the shape (short rows, rows, rows split across
//! blocks, strided columns with or without a split), its grid, block, shared memory and params.

use super::plan::{BufferId, KernelArg, LaunchPlan, OpPlan};
use super::DeviceLimits;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::ops::reduce_geometry::{ReduceFinish, ReduceGeometry};

/// Rows of at most this many elements take `reduce_rows_short` (flat tiles of many rows).
pub const SHORT_ROW_MAX: usize = 256;
/// Bytes of input one `reduce_rows_short` block stages in shared memory.
const SHORT_TILE_BYTES: usize = 16 * 1024;
/// Threads of the short-row and column kernels.
const BLOCK: u32 = 256;
/// Blocks the planner aims for per SM when it decides to split a reduction across blocks.
const BLOCKS_PER_SM: usize = 8;
/// Largest `gridDim.x` and `gridDim.y` / `gridDim.z`.
pub(crate) const MAX_GRID_X: usize = (1 << 31) - 1;
pub(crate) const MAX_GRID_YZ: usize = 65_535;

/// Mirrors `ReduceRowsParams` in kernels/reduce.cu (no padding: 8-byte fields first).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ReduceRowsParams {
    pub outer: i64,
    pub reduce: i64,
    pub chunk: i64,
    pub input_len: i64,
    pub divisor: f64,
    pub split: i32,
    pub divide: i32,
    pub group: i32,
    pub pad_: i32,
}

/// Mirrors `ReduceColsParams` in kernels/reduce.cu.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ReduceColsParams {
    pub outer: i64,
    pub reduce: i64,
    pub inner: i64,
    pub chunk: i64,
    pub col_blocks: i64,
    pub divisor: f64,
    pub split: i32,
    pub divide: i32,
    pub vec: i32,
    pub cols_per_block: i32,
}

/// Mirrors `ReduceCombineParams` in kernels/reduce.cu.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ReduceCombineParams {
    pub total: i64,
    pub inner: i64,
    pub divisor: f64,
    pub split: i32,
    pub divide: i32,
}

/// The float dtypes the kernels are stamped for; anything else is refused.
pub(crate) fn check_float(dtype: DType, op: &str) -> Result<()> {
    if dtype.is_float() {
        Ok(())
    } else {
        Err(Error::Unsupported(format!("{op}: no CUDA kernel for dtype {dtype}")))
    }
}

/// `v` as an `i64` kernel argument, or an error naming what overflowed.
pub(crate) fn to_i64(v: usize, what: &str) -> Result<i64> {
    i64::try_from(v)
        .map_err(|_| Error::InvalidArgument(format!("{what} = {v} does not fit in a 64-bit index")))
}

/// Checks a launch against the device's limits before it is planned into an `OpPlan`.
pub(crate) fn launch(
    kernel: String,
    grid: [usize; 3],
    block: u32,
    shared: usize,
    args: Vec<KernelArg>,
    limits: &DeviceLimits,
) -> Result<LaunchPlan> {
    if grid[0] == 0
        || grid[0] > MAX_GRID_X
        || grid[1] == 0
        || grid[1] > MAX_GRID_YZ
        || grid[2] == 0
        || grid[2] > MAX_GRID_YZ
    {
        return Err(Error::Unsupported(format!(
            "{kernel}: grid {grid:?} exceeds the device's limits (x <= {MAX_GRID_X}, y, z <= {MAX_GRID_YZ}); the problem is too large"
        )));
    }
    if block == 0 || block > limits.max_threads_per_block {
        return Err(Error::Unsupported(format!(
            "{kernel}: block of {block} threads exceeds the device's {} threads per block",
            limits.max_threads_per_block
        )));
    }
    if shared > limits.max_shared_per_block as usize {
        return Err(Error::Unsupported(format!(
            "{kernel}: needs {shared} bytes of shared memory, the device allows {} per block",
            limits.max_shared_per_block
        )));
    }
    Ok(LaunchPlan {
        kernel,
        grid: [grid[0] as u32, grid[1] as u32, grid[2] as u32],
        block: [block, 1, 1],
        shared_mem_bytes: shared as u32,
        args,
    })
}

/// Blocks of `block` threads covering `n` threads.
pub(crate) fn blocks_for(n: usize, block: u32) -> usize {
    n.div_ceil(block as usize)
}

fn acc_size(dtype: DType) -> usize {
    if dtype == DType::F64 {
        8
    } else {
        4
    }
}

fn finish_args(finish: ReduceFinish) -> (i32, f64) {
    match finish {
        ReduceFinish::Sum => (0, 1.0),
        ReduceFinish::DivideBy(d) => (1, d),
    }
}

/// Plans `y[o, i] = finish(sum_r x[o, r, i])`. Input(0) = x (contiguous `[outer, reduce, inner]`),
/// Output(0) = y (`[outer, inner]`).
pub fn plan_reduce(
    g: &ReduceGeometry,
    finish: ReduceFinish,
    dtype: DType,
    limits: &DeviceLimits,
) -> Result<OpPlan> {
    check_float(dtype, "reduce")?;
    let out_len = g
        .outer
        .checked_mul(g.inner)
        .ok_or_else(|| Error::InvalidArgument("reduce: output too large".into()))?;
    let in_len = out_len
        .checked_mul(g.reduce)
        .ok_or_else(|| Error::InvalidArgument("reduce: input too large".into()))?;
    to_i64(in_len.saturating_mul(dtype.size_in_bytes()), "reduce input bytes")?;
    if out_len == 0 {
        return Ok(OpPlan::default());
    }
    let sfx = dtype.kernel_suffix();
    let (divide, divisor) = finish_args(finish);
    if g.reduce == 0 {
        // An empty sum: the combine kernel with no partials writes finish(0) (NaN for a mean).
        return Ok(OpPlan {
            launches: vec![combine(g, 0, divide, divisor, sfx, BufferId::Input(0), limits)?],
            ..OpPlan::default()
        });
    }
    if g.inner == 1 {
        plan_rows(g, divide, divisor, dtype, limits)
    } else {
        plan_cols(g, divide, divisor, dtype, limits)
    }
}

fn combine(
    g: &ReduceGeometry,
    split: usize,
    divide: i32,
    divisor: f64,
    sfx: &str,
    scratch: BufferId,
    limits: &DeviceLimits,
) -> Result<LaunchPlan> {
    let total = g.outer * g.inner;
    let p = ReduceCombineParams {
        total: to_i64(total, "outputs")?,
        inner: to_i64(g.inner, "inner")?,
        divisor,
        split: i32::try_from(split).map_err(|_| Error::InvalidArgument("reduce: split too large".into()))?,
        divide,
    };
    launch(
        format!("reduce_combine_{sfx}"),
        [blocks_for(total, BLOCK), 1, 1],
        BLOCK,
        0,
        vec![KernelArg::params(&p), KernelArg::Buffer(scratch), KernelArg::Buffer(BufferId::Output(0))],
        limits,
    )
}

fn plan_rows(
    g: &ReduceGeometry,
    divide: i32,
    divisor: f64,
    dtype: DType,
    limits: &DeviceLimits,
) -> Result<OpPlan> {
    let sfx = dtype.kernel_suffix();
    let es = dtype.size_in_bytes();
    let sms = limits.sm_count.max(1) as usize;
    let mut p = ReduceRowsParams {
        outer: to_i64(g.outer, "outer")?,
        reduce: to_i64(g.reduce, "reduce")?,
        chunk: 0,
        input_len: to_i64(g.input_len(), "input length")?,
        divisor,
        split: 1,
        divide,
        group: 32,
        pad_: 0,
    };
    if g.reduce <= SHORT_ROW_MAX {
        // Many rows per block, but enough blocks for two per SM when the input is small.
        let tile_rows = (SHORT_TILE_BYTES / es / g.reduce).max(1);
        let rows = tile_rows.min(g.outer.div_ceil(2 * sms)).max(1);
        // Lanes per row: a power of two with about two elements per lane.
        p.group = g.reduce.div_ceil(2).next_power_of_two().min(32) as i32;
        p.chunk = rows as i64;
        // The staged span, widened to 16-byte chunks on both ends.
        let shared = (rows * g.reduce * es).div_ceil(16) * 16 + 32;
        let l = launch(
            format!("reduce_rows_short_{sfx}"),
            [g.outer.div_ceil(rows), 1, 1],
            BLOCK,
            shared,
            vec![
                KernelArg::params(&p),
                KernelArg::Buffer(BufferId::Input(0)),
                KernelArg::Buffer(BufferId::Output(0)),
            ],
            limits,
        )?;
        return Ok(OpPlan { launches: vec![l], ..OpPlan::default() });
    }
    // Few long rows: split each row into chunks (multiples of 256 elements, >= 4096) so that
    // there are enough blocks to fill the device; partial sums go to scratch.
    let mut split = 1usize;
    if g.outer < 2 * sms {
        let want = (BLOCKS_PER_SM * sms).div_ceil(g.outer);
        let most = g.reduce / 4096;
        split = want.min(most).max(1);
    }
    let chunk = if split > 1 { g.reduce.div_ceil(split).div_ceil(256) * 256 } else { g.reduce };
    let split = g.reduce.div_ceil(chunk);
    p.chunk = to_i64(chunk, "chunk")?;
    p.split = i32::try_from(split).map_err(|_| Error::InvalidArgument("reduce: split too large".into()))?;
    // Threads per block: about 16 elements per thread, 64..=256.
    let block = (chunk / 16).next_power_of_two().clamp(64, 256) as u32;
    let blocks =
        g.outer.checked_mul(split).ok_or_else(|| Error::InvalidArgument("reduce: too many blocks".into()))?;
    let scratch = if split > 1 { BufferId::Scratch(0) } else { BufferId::Output(0) };
    let rows = launch(
        format!("reduce_rows_{sfx}"),
        [blocks, 1, 1],
        block,
        32 * acc_size(dtype),
        vec![
            KernelArg::params(&p),
            KernelArg::Buffer(BufferId::Input(0)),
            KernelArg::Buffer(BufferId::Output(0)),
            KernelArg::Buffer(scratch),
        ],
        limits,
    )?;
    if split == 1 {
        return Ok(OpPlan { launches: vec![rows], ..OpPlan::default() });
    }
    let comb = combine(g, split, divide, divisor, sfx, BufferId::Scratch(0), limits)?;
    Ok(OpPlan {
        launches: vec![rows, comb],
        scratch_bytes: vec![blocks * acc_size(dtype)],
        ..OpPlan::default()
    })
}

fn plan_cols(
    g: &ReduceGeometry,
    divide: i32,
    divisor: f64,
    dtype: DType,
    limits: &DeviceLimits,
) -> Result<OpPlan> {
    let sfx = dtype.kernel_suffix();
    let sms = limits.sm_count.max(1) as usize;
    // 16 bytes a load where the row allows it: 8 elements of a 16-bit type (4 would be 8 bytes,
    // and the seed's channels-last bf16 GAP ran at 77% of an H200's copy rate against f32's
    // 98%), else 4 elements, else 1.
    let vec = if dtype.size_in_bytes() == 2 && g.inner.is_multiple_of(8) {
        8
    } else if g.inner.is_multiple_of(4) {
        4
    } else {
        1
    };
    let ncols = g.inner / vec + usize::from(!g.inner.is_multiple_of(vec));
    // Few blocks (channels-last GAP of 7x7 maps: 128 images of 2048 channels make 256 blocks of
    // 256 columns): narrower blocks with more thread rows each, down to 32 columns (a warp's
    // 512 contiguous bytes per row) while each thread row keeps two rows or more. That fills
    // the device in one launch, where splitting the reduce axis needs a second (the combine).
    let target = BLOCKS_PER_SM * sms;
    let mut col_blocks = ncols.div_ceil(BLOCK as usize);
    loop {
        let narrower = ncols.div_ceil(col_blocks * 2);
        let rows_per_thread_row = g.reduce / (BLOCK as usize / narrower.max(1));
        if g.outer.saturating_mul(col_blocks) >= target || narrower < 32 || rows_per_thread_row < 2 {
            break;
        }
        col_blocks *= 2;
    }
    let cols_per_block = ncols.div_ceil(col_blocks);
    let ty = (BLOCK as usize / cols_per_block).max(1);
    let block = ((cols_per_block * ty).div_ceil(32) * 32) as u32;
    let blocks = g
        .outer
        .checked_mul(col_blocks)
        .ok_or_else(|| Error::InvalidArgument("reduce: too many blocks".into()))?;
    // Split the reduce axis across blocks when there are still too few blocks to fill the
    // device, keeping at least 8 rows per thread row.
    let mut split = 1usize;
    if blocks < target {
        split = target.div_ceil(blocks).min(g.reduce / (8 * ty)).clamp(1, MAX_GRID_YZ);
    }
    let chunk = g.reduce.div_ceil(split);
    let split = g.reduce.div_ceil(chunk);
    let p = ReduceColsParams {
        outer: to_i64(g.outer, "outer")?,
        reduce: to_i64(g.reduce, "reduce")?,
        inner: to_i64(g.inner, "inner")?,
        chunk: to_i64(chunk, "chunk")?,
        col_blocks: to_i64(col_blocks, "column blocks")?,
        divisor,
        split: split as i32,
        divide,
        vec: vec as i32,
        cols_per_block: cols_per_block as i32,
    };
    let shared = ty * cols_per_block * vec * acc_size(dtype);
    let scratch = if split > 1 { BufferId::Scratch(0) } else { BufferId::Output(0) };
    let cols = launch(
        format!("reduce_cols_{sfx}"),
        [blocks, split, 1],
        block,
        shared,
        vec![
            KernelArg::params(&p),
            KernelArg::Buffer(BufferId::Input(0)),
            KernelArg::Buffer(BufferId::Output(0)),
            KernelArg::Buffer(scratch),
        ],
        limits,
    )?;
    if split == 1 {
        return Ok(OpPlan { launches: vec![cols], ..OpPlan::default() });
    }
    let comb = combine(g, split, divide, divisor, sfx, BufferId::Scratch(0), limits)?;
    Ok(OpPlan {
        launches: vec![cols, comb],
        scratch_bytes: vec![g.outer * split * g.inner * acc_size(dtype)],
        ..OpPlan::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(outer: usize, reduce: usize, inner: usize) -> OpPlan {
        plan_reduce(
            &ReduceGeometry { outer, reduce, inner },
            ReduceFinish::DivideBy(reduce as f64),
            DType::F32,
            &DeviceLimits::HOPPER,
        )
        .unwrap()
    }

    #[test]
    fn params_structs_have_no_padding() {
        assert_eq!(std::mem::size_of::<ReduceRowsParams>(), 56);
        assert_eq!(std::mem::size_of::<ReduceColsParams>(), 64);
        assert_eq!(std::mem::size_of::<ReduceCombineParams>(), 32);
    }

    #[test]
    fn dispatch_follows_the_shape() {
        assert_eq!(plan(128 * 2048, 49, 1).launches[0].kernel, "reduce_rows_short_f32");
        let seed = plan(256 * 96, 128 * 128, 1);
        assert_eq!(seed.launches.len(), 1);
        assert_eq!(seed.launches[0].kernel, "reduce_rows_f32");
        let long = plan(32, 512 * 512, 1);
        assert_eq!(long.launches.len(), 2);
        assert_eq!(long.launches[1].kernel, "reduce_combine_f32");
        assert_eq!(plan(128, 49, 2048).launches[0].kernel, "reduce_cols_f32");
        // Channels-last GAP of 7x7 maps: narrower blocks (32 columns of four channels, 8 thread
        // rows) fill the device in one launch, without a combine.
        for outer in [1, 128] {
            let cols = plan(outer, 49, 2048);
            assert_eq!(cols.launches.len(), 1, "outer {outer}");
            assert_eq!(cols.launches[0].block, [256, 1, 1]);
            assert_eq!(cols.launches[0].grid, [outer as u32 * 16, 1, 1]);
        }
        // 16-bit types load 8 channels (16 bytes) at a time: half as many column blocks.
        let g = ReduceGeometry { outer: 128, reduce: 49, inner: 2048 };
        let bf16 = plan_reduce(&g, ReduceFinish::DivideBy(49.0), DType::BF16, &DeviceLimits::HOPPER).unwrap();
        let KernelArg::Params(bytes) = &bf16.launches[0].args[0] else { panic!("params first") };
        // vec sits after five i64, the divisor and two i32.
        assert_eq!(i32::from_ne_bytes(bytes[56..60].try_into().unwrap()), 8);
        assert_eq!(bf16.launches[0].grid, [128 * 8, 1, 1]);
        assert!(plan(0, 49, 1).launches.is_empty());
        assert_eq!(plan(3, 0, 1).launches[0].kernel, "reduce_combine_f32");
    }
}
