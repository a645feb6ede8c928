//! Small NCHW planes pooled eight at a time in AVX2 lanes.
//!
//! On small planes (the 7x7 maps at the end of ResNet and EfficientNet) the row kernels spend
//! their time on per-plane and per-window bookkeeping, not on data: a 7x7 plane has 49 inputs
//! and a 3x3 window 9 taps. Here eight planes are transposed together (8x8 register
//! transposes) so that element `i` of all eight is one vector; every output window is then
//! reduced with one vector operation per tap, in PyTorch's tap order (h, then w), so each lane
//! gets exactly the scalar loop's result; and the eight results of each output go back to their
//! planes. A window's bookkeeping is paid once per eight planes, and the transposed group
//! (`8 * H * W` f32) stays in L1/L2 while every window reads it.
//!
//! Windowed (`window.rs`) and adaptive (`adaptive.rs`) pooling, and the NCHW average backward's
//! gather (`backward.rs`, a window over the plane of shares), describe their outputs as
//! [`LaneWindow`]s in a [`PlanePooling`] and call [`pool_planes`]; f32, bf16 and f16 (accumulated
//! in f32), AVX2 (with F16C) only. Planes of at most 64 elements whose windows keep most of a 16-lane
//! gather busy go to [`plane_registers`] instead (AVX-512), which gives the same bits without
//! the transposes.

use super::{plane_registers, simd};
use crate::dtype::FloatElement;

/// Planes of at most this many elements take the lane path (64 KiB of transposed f32 per
/// group). Larger planes stream rows instead, which the row kernels do near bandwidth.
pub(crate) const SMALL_PLANE: usize = 2048;

/// The layout of one transposed plane in the lane buffer: the `height x width` input at rows
/// `pad.0..`, columns `pad.1..` of a `rows x cols` buffer whose other cells hold `identity`
/// (-inf for max, +0 for sums). Windowed pooling pads so that every window has all of its
/// taps (the same trip counts for every window: no mispredicted loop exits, no clipping); the
/// pad taps are exact no-ops: a -inf tap is never taken by `v > max || isnan(v)`, and adding
/// +0 to a sum that started at +0 never changes it (such a sum is never -0).
#[derive(Clone, Copy, Debug)]
pub(crate) struct LanePlane {
    pub(crate) height: usize,
    pub(crate) width: usize,
    pub(crate) pad: (usize, usize),
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    pub(crate) identity: f32,
}

impl LanePlane {
    /// The plane as it is, no padding (adaptive pooling's windows are always inside).
    pub(crate) fn unpadded(height: usize, width: usize) -> Self {
        LanePlane { height, width, pad: (0, 0), rows: height, cols: width, identity: 0.0 }
    }

    pub(crate) fn buffer_len(&self) -> usize {
        self.rows * self.cols
    }
}

/// One output: taps `h0..h1` step `dh` and `w0..w1` step `dw` in the buffer's coordinates (at
/// least one), `first` the plane index a max reports when no tap is taken (its first in-plane
/// tap), and for averages two divisors applied in turn: adaptive pooling's `kh, kw` (PyTorch
/// divides twice), windowed pooling's `divisor, 1` (a division by 1 is exact).
#[derive(Clone, Copy, Debug)]
pub(crate) struct LaneWindow {
    pub(crate) h: (usize, usize, usize),
    pub(crate) w: (usize, usize, usize),
    pub(crate) first: i32,
    pub(crate) div: (f32, f32),
}

impl LaneWindow {
    /// The plane rows the window takes, ascending: its buffer rows without the pad cells.
    pub(crate) fn plane_rows(&self, layout: &LanePlane) -> impl DoubleEndedIterator<Item = usize> {
        in_plane(self.h, layout.pad.0, layout.height)
    }

    /// The plane columns the window takes, ascending (as [`LaneWindow::plane_rows`]).
    pub(crate) fn plane_cols(&self, layout: &LanePlane) -> impl DoubleEndedIterator<Item = usize> {
        in_plane(self.w, layout.pad.1, layout.width)
    }
}

/// Buffer cells `a..b` step `s` as plane coordinates (`pad` less), those inside `0..n`.
fn in_plane(
    (a, b, s): (usize, usize, usize),
    pad: usize,
    n: usize,
) -> impl DoubleEndedIterator<Item = usize> {
    (a..b).step_by(s).filter_map(move |i| i.checked_sub(pad).filter(|&i| i < n))
}

/// Whether NCHW planes of `T` whose lane buffer has `buffer_len` cells take the lane path on
/// this CPU.
pub(crate) fn applies<T: FloatElement>(buffer_len: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        (1..=SMALL_PLANE).contains(&buffer_len) && simd::avx2_tile_kind::<T>().is_some()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = buffer_len;
        false
    }
}

/// Planes of one shape and their windows, prepared once per op for [`pool_planes`]: the
/// windows checked once (re-checked by every rayon task, 3136 windows per task, a 56x56 ->
/// 7x7 adaptive backward ran 1.5x to 1.7x slower), with the register path's tables where that
/// path pays.
pub(crate) struct PlanePooling {
    layout: LanePlane,
    windows: Vec<LaneWindow>,
    /// The plane fits its buffer, and there are windows, each with at least one tap, all
    /// inside the buffer (so each one's first cell is too).
    valid: bool,
    registers: Option<plane_registers::Tables>,
    row_registers: Option<RowRegisters>,
}

/// Most outputs one [`RowChunk`] pools: one accumulator register each.
const ROW_REGISTER_OUTPUTS: usize = 4;

/// The row-register path's tables: planes at most 8 wide whose outputs go in chunks of at
/// most [`ROW_REGISTER_OUTPUTS`] (adaptive 7x7 -> 2x2 in one, a 3x3 stride-2 window's 7x7 ->
/// 4x4 in four, one per output row). For each chunk, each row of eight planes that its
/// outputs take is transposed in registers (one vector per column, lane `p` = plane `p`) and
/// added straight into the outputs whose windows hold it, so nothing goes through the lane
/// buffer. Which outputs take a row and which of its columns are bit masks, fixed per op (and
/// compiled in for 7x7 -> 2x2, see [`avx2::row_register_kernel`]). Rows are visited in
/// ascending order and each row's columns in ascending order, so every output still sees its
/// taps in PyTorch's (h, w) order. Padding taps are left out: the lanes' pad cells are exact
/// no-ops (see [`LanePlane`]), and PyTorch does not visit them either.
///
/// On the 2-vCPU Zen 3 without AVX-512, the lane path ran the ResNet tail's NCHW 7x7 -> 2x2
/// average at 6 to 14 GB/s (about 250 ns per group of eight planes on one core, where a
/// hand-written register loop over the same data took 60 to 100); this path runs it about 2x
/// faster (docs/BENCHMARKS-HISTORY.md has the figures). A chunk transposes its rows again
/// where another chunk took them already, so the path is taken only where that repeats at
/// most [`ROW_REGISTER_TRANSPOSES`] row transposes per plane row ([`RowRegisters::new`]).
struct RowRegisters {
    chunks: Vec<RowChunk>,
    /// Whether the tables pool a 7x7 plane exactly as adaptive 7x7 -> 2x2 does
    /// ([`SEVEN_TO_TWO_ROWS`], [`SEVEN_TO_TWO_COLUMNS`]; a 4x4 window at stride 3 has the same
    /// windows and other divisors), so that the kernels may take the table as constants.
    seven_to_two: bool,
    /// Every chunk's column masks, where all chunks have the same (windowed pooling without
    /// dilation: every output row's windows take the same columns), so that the kernels may
    /// take known ones as constants ([`avx2::row_register_kernel`]).
    columns: Option<[u8; ROW_REGISTER_OUTPUTS]>,
}

/// Consecutive outputs `first_output..first_output + outputs` of a plane pooled together
/// through [`RowRegisters`]: the input rows `first_row..first_row + row_outputs.len()` that
/// any of them takes, each transposed once for the chunk.
struct RowChunk {
    first_output: usize,
    first_row: usize,
    /// Per input row from `first_row`, bit `k` set when output `k` of the chunk takes the row.
    row_outputs: Vec<u8>,
    /// Per output, bit `w` set when its window takes column `w`.
    columns: [u8; ROW_REGISTER_OUTPUTS],
    first: [i32; ROW_REGISTER_OUTPUTS],
    div: [(f32, f32); ROW_REGISTER_OUTPUTS],
    /// `div`'s reciprocals where every divisor is a power of two, so that each division is a
    /// multiplication by its reciprocal with the same bits (both are the exactly rounded
    /// `sum * 2^-k`); worked out once per op rather than by eight scalar divisions per group.
    /// A 7x7 -> 2x2 average divides by 4 twice: eight `vdivps` a group, by published tables
    /// one every 3.5 cycles on Zen 3 against two `vmulps` a cycle (in the bench, within
    /// noise).
    reciprocals: Option<[(f32, f32); ROW_REGISTER_OUTPUTS]>,
    outputs: usize,
}

/// The most row transposes per plane row that [`RowRegisters`] may spend. Measured on the
/// 2-vCPU Zen 3, 7x7 planes against the lanes: 3x3 stride-2 padding-1 windows (11 transposes
/// for 7 rows) 1.12x to 1.94x faster, 3x3 stride-1 (38 for 7, the limit lifted in a scratch
/// build) 0.64x to 0.78x.
const ROW_REGISTER_TRANSPOSES: usize = 2;

/// Which of the four outputs take each row of a 7x7 plane pooled to 2x2 (rows 0..4 and 3..7).
const SEVEN_TO_TWO_ROWS: [u8; 7] = [3, 3, 3, 15, 12, 12, 12];

/// The column masks of those four outputs (columns 0..4 and 3..7): the ResNet and
/// EfficientNet tails' adaptive 7x7 -> 2x2.
const SEVEN_TO_TWO_COLUMNS: [u8; ROW_REGISTER_OUTPUTS] = [0x0f, 0x78, 0x0f, 0x78];

/// The column masks of each output row of a 7-wide plane's 3x3 stride-2 padding-1 windows
/// (columns 0..2, 1..4, 3..6, 5..7: the tails' `max_pool2d` and `avg_pool2d(3, 2, 1)`) and
/// of its 2x2 stride-2 windows (three outputs a row), which the kernels take as constants.
const SEVEN_WIDE_3X3_S2_P1_COLUMNS: [u8; ROW_REGISTER_OUTPUTS] = [0x03, 0x0e, 0x38, 0x60];
const SEVEN_WIDE_2X2_S2_COLUMNS: [u8; ROW_REGISTER_OUTPUTS] = [0x03, 0x0c, 0x30, 0x00];

impl RowRegisters {
    /// The tables where the path applies to `layout` and its (validated) `windows`: planes at
    /// most 8 wide. Up to [`ROW_REGISTER_OUTPUTS`] outputs go in one chunk; more go in chunks
    /// of one output row each (split in fours), and only where the chunks' rows add up to at
    /// most [`ROW_REGISTER_TRANSPOSES`] times the plane's height (overlapping windows make
    /// chunks share rows; a stride-1 3x3 window's 7x7 -> 7x7 would take 38 row transposes,
    /// where the lanes take 7).
    fn new(layout: &LanePlane, windows: &[LaneWindow]) -> Option<Self> {
        if layout.width > 8 {
            return None;
        }
        // The plane rows `first..end` that a group of windows takes (0..1 when none).
        let span = |group: &[LaneWindow]| {
            let first = group.iter().filter_map(|w| w.plane_rows(layout).next()).min().unwrap_or(0);
            let last = group.iter().filter_map(|w| w.plane_rows(layout).next_back()).max().unwrap_or(0);
            (first, (last + 1).max(first + 1))
        };
        // The groups, given up as soon as their rows pass the limit (before any table is
        // built: an adaptive backward's gather has thousands of outputs over a 7x7 plane).
        let mut groups: Vec<(&[LaneWindow], (usize, usize))> = Vec::new();
        if windows.len() <= ROW_REGISTER_OUTPUTS {
            groups.push((windows, span(windows)));
        } else {
            let (mut rest, mut transposes) = (windows, 0);
            while let Some(w) = rest.first() {
                let same_row = rest.iter().take_while(|v| v.h == w.h).count().min(ROW_REGISTER_OUTPUTS);
                let (group, rows) = (&rest[..same_row], span(&rest[..same_row]));
                transposes += rows.1 - rows.0;
                if transposes > ROW_REGISTER_TRANSPOSES * layout.height {
                    return None;
                }
                groups.push((group, rows));
                rest = &rest[same_row..];
            }
        }
        let mut chunks = Vec::with_capacity(groups.len());
        let mut first_output = 0;
        for (group, (first_row, end_row)) in groups {
            let mut chunk = RowChunk {
                first_output,
                first_row,
                row_outputs: vec![0; end_row - first_row],
                columns: [0; ROW_REGISTER_OUTPUTS],
                first: [0; ROW_REGISTER_OUTPUTS],
                div: [(1.0, 1.0); ROW_REGISTER_OUTPUTS],
                reciprocals: None,
                outputs: group.len(),
            };
            for (k, w) in group.iter().enumerate() {
                for h in w.plane_rows(layout) {
                    chunk.row_outputs[h - first_row] |= 1 << k;
                }
                for c in w.plane_cols(layout) {
                    chunk.columns[k] |= 1 << c;
                }
                chunk.first[k] = w.first;
                chunk.div[k] = w.div;
            }
            let power_of_two = |d: f32| d >= 1.0 && d.to_bits() & 0x007f_ffff == 0 && d.is_finite();
            let powers_of_two = chunk.div.iter().all(|&(a, b)| power_of_two(a) && power_of_two(b));
            chunk.reciprocals = powers_of_two.then(|| chunk.div.map(|(a, b)| (1.0 / a, 1.0 / b)));
            first_output += group.len();
            chunks.push(chunk);
        }
        let seven_to_two = (layout.height, layout.width) == (7, 7)
            && chunks.len() == 1
            && chunks[0].outputs == ROW_REGISTER_OUTPUTS
            && chunks[0].first_row == 0
            && chunks[0].columns == SEVEN_TO_TWO_COLUMNS
            && chunks[0].row_outputs == SEVEN_TO_TWO_ROWS;
        let columns = chunks.iter().all(|c| c.columns == chunks[0].columns).then_some(chunks[0].columns);
        Some(RowRegisters { chunks, seven_to_two, columns })
    }
}

impl PlanePooling {
    /// One [`LaneWindow`] per output of a `layout` plane, row-major.
    pub(crate) fn new(layout: LanePlane, windows: Vec<LaneWindow>) -> Self {
        let fits = layout.pad.0 + layout.height <= layout.rows && layout.pad.1 + layout.width <= layout.cols;
        let inside = |(a, b, s): (usize, usize, usize), n: usize| s >= 1 && a < b && b <= n;
        let valid = fits
            && layout.height * layout.width > 0
            && !windows.is_empty()
            && windows.iter().all(|w| inside(w.h, layout.rows) && inside(w.w, layout.cols));
        let registers = if valid && plane_registers::cpu_has_it() {
            plane_registers::Tables::new(&layout, &windows).filter(plane_registers::Tables::pays)
        } else {
            None
        };
        let row_registers = if valid { RowRegisters::new(&layout, &windows) } else { None };
        PlanePooling { layout, windows, valid, registers, row_registers }
    }
}

/// Pools whole planes `xs` (of `U`) into `ys` (of `T`; each f32, bf16 or f16, usually the same,
/// but the average backward sums f32 shares into bf16 gradients), and `is` when `WITH_INDEX`,
/// one window per output: max with PyTorch's rule (`MAX`: -inf start, `first` as the index,
/// take when greater or NaN) or the sum divided by the window's divisors. Every plane is
/// done: in registers where [`plane_registers::Tables::pays`] (and the CPU has AVX-512), else in
/// lanes, the last partial group through a zero-padded copy. Returns `false`, having written
/// nothing, when [`applies`] is false for `U` or `T`, the plane does not fit its buffer, or a
/// window is empty or leaves the buffer.
pub(crate) fn pool_planes<U: FloatElement, T: FloatElement, const MAX: bool, const WITH_INDEX: bool>(
    pooling: &PlanePooling,
    xs: &[U],
    ys: &mut [T],
    is: &mut [i64],
) -> bool {
    pool_planes_using::<U, T, MAX, WITH_INDEX>(pooling, xs, ys, is, Path::Fastest)
}

/// How [`pool_planes_using`] pools: tests pick each path on a CPU that has them all.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Path {
    /// The register path where the tables were built, else the row registers where they
    /// apply, else the lanes with AVX-512 transposes where the CPU has them.
    Fastest,
    /// The row registers ([`RowRegisters`]) where they apply, else the plain lanes.
    #[cfg_attr(not(test), allow(dead_code))]
    RowRegisters,
    /// The lanes, transposing with AVX-512 when `avx512` and the CPU has it.
    Lanes { avx512: bool },
}

fn pool_planes_using<U: FloatElement, T: FloatElement, const MAX: bool, const WITH_INDEX: bool>(
    pooling: &PlanePooling,
    xs: &[U],
    ys: &mut [T],
    is: &mut [i64],
    path: Path,
) -> bool {
    let (layout, windows) = (&pooling.layout, &pooling.windows[..]);
    let (plane, out_plane) = (layout.height * layout.width, windows.len());
    if !pooling.valid || !applies::<T>(layout.buffer_len()) || !applies::<U>(layout.buffer_len()) {
        return false;
    }
    if let (Path::Fastest, Some(tables)) = (path, &pooling.registers) {
        if plane_registers::pool_planes::<U, T, MAX, WITH_INDEX>(tables, xs, ys, is) {
            return true;
        }
    }
    #[cfg(target_arch = "x86_64")]
    {
        let (Some(in_kind), Some(kind)) = (simd::avx2_tile_kind::<U>(), simd::avx2_tile_kind::<T>()) else {
            return false;
        };
        let planes = (xs.len() / plane).min(ys.len() / out_plane);
        let is = if WITH_INDEX { &mut is[..planes * out_plane] } else { &mut is[..0] };
        let mut buffers = BUFFERS.take();
        let LaneBuffers { lanes, vals, idx } = &mut buffers;
        lanes.clear();
        lanes.resize(8 * layout.buffer_len(), layout.identity);
        vals.resize(8 * out_plane, 0.0);
        idx.resize(if WITH_INDEX { 8 * out_plane } else { 0 }, 0);
        let mut padded: Vec<U> = Vec::new();
        let avx512 = path != Path::Lanes { avx512: false } && simd::has_avx512();
        let row_kernel = match path {
            Path::Fastest | Path::RowRegisters => pooling.row_registers.as_ref(),
            Path::Lanes { .. } => None,
        }
        .map(|rows| (avx2::row_register_kernel::<MAX, WITH_INDEX>(in_kind, rows), rows));
        // Whole groups of 7x7 -> 2x2 without indices, in and out of one type: all at once.
        let mut fused = 0;
        if let Some((_, rows)) = row_kernel.filter(|_| !WITH_INDEX && in_kind == kind) {
            if let Some(kernel) = avx2::seven_to_two_kernel::<MAX>(kind, rows) {
                fused = planes / 8;
                // SAFETY: AVX2 and F16C (`avx2_tile_kind` found them); `U` and `T` are both the
                // type named by `kind`; `xs` holds `planes >= 8 * fused` planes of 49 elements
                // and `ys` their `4 * 8 * fused` outputs (`seven_to_two_kernel` gives a kernel
                // only where `rows`, built for `layout`, pool a 7x7 plane to 2x2).
                unsafe { kernel(xs.as_ptr().cast(), xs.len(), fused, layout, rows, ys.as_mut_ptr().cast()) };
            }
        }
        for p0 in (8 * fused..planes).step_by(8) {
            let group = (planes - p0).min(8);
            let mut xg = &xs[p0 * plane..planes * plane];
            if group < 8 {
                // The last group: the remaining planes followed by zero planes.
                padded.resize(8 * plane, U::default());
                padded[..group * plane].copy_from_slice(&xg[..group * plane]);
                xg = &padded;
            }
            // SAFETY: `avx2_tile_kind` found AVX2 and that `U` is the f32, bf16 or f16 named by
            // `in_kind`; `xg` holds at least 8 planes of `U` (sliced or padded above); `lanes`
            // holds 8 buffers, the plane fits its buffer and every window lies inside the
            // buffer (`pooling.valid`, checked above); `vals` (and `idx` with `WITH_INDEX`) hold
            // `8 * out_plane` entries; plane indices fit i32 (`buffer_len <= SMALL_PLANE`); with
            // `avx512`, the CPU has AVX-512 F and BW (`simd::has_avx512`, checked above).
            // `row_kernel` was picked for `in_kind`, `U`'s kind, and for `rows` (its constant
            // column masks, if any, are every chunk's), which were built for this layout and
            // its windows: at most 8 wide, each chunk's rows and columns inside the plane, its
            // outputs among the plane's `out_plane` (so inside `vals` and `idx`).
            unsafe {
                if let Some((kernel, rows)) = row_kernel {
                    kernel(xg.as_ptr().cast(), xg.len(), layout, rows, vals, idx);
                } else if avx512 {
                    avx2::transpose_group_avx512(in_kind, xg.as_ptr().cast(), xg.len(), layout, lanes);
                    avx2::reduce_windows::<MAX, WITH_INDEX>(lanes, layout, windows, vals, idx);
                } else {
                    avx2::transpose_group(in_kind, xg.as_ptr().cast(), xg.len(), layout, lanes);
                    avx2::reduce_windows::<MAX, WITH_INDEX>(lanes, layout, windows, vals, idx);
                }
            }
            let ys = &mut ys[p0 * out_plane..][..group * out_plane];
            let is = if WITH_INDEX { &mut is[p0 * out_plane..][..group * out_plane] } else { &mut is[..0] };
            // SAFETY: AVX2 as above, and `T` is the f32, bf16 or f16 named by `kind`; `vals`/`idx`
            // hold `8 * out_plane` entries;
            // `ys` (and `is` with `WITH_INDEX`) hold the group's `group * out_plane` outputs.
            unsafe {
                avx2::scatter_group::<WITH_INDEX>(
                    kind,
                    vals,
                    idx,
                    out_plane,
                    group,
                    ys.as_mut_ptr().cast(),
                    is.as_mut_ptr(),
                );
            }
        }
        // Outputs may outnumber the inputs many times over (adaptive pooling to a larger
        // size): a thread keeps only buffers of ordinary size.
        if buffers.vals.capacity() <= 1 << 16 {
            BUFFERS.set(buffers);
        }
        true
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (xs, ys, is);
        false
    }
}

/// [`pool_planes_using`]'s buffers, kept per thread between calls: a batch-1 op calls it once
/// per rayon task, and the order-free path of `exact_sums.rs` hands it runs of planes several
/// times per task, where allocating (and zeroing) them each time measured a twentieth of the
/// time.
#[derive(Default)]
struct LaneBuffers {
    lanes: Vec<f32>,
    vals: Vec<f32>,
    idx: Vec<i32>,
}

std::thread_local! {
    static BUFFERS: std::cell::Cell<LaneBuffers> = std::cell::Cell::new(LaneBuffers::default());
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2 {
    use super::{
        LanePlane, LaneWindow, RowChunk, RowRegisters, ROW_REGISTER_OUTPUTS, SEVEN_TO_TWO_COLUMNS,
        SEVEN_TO_TWO_ROWS, SEVEN_WIDE_2X2_S2_COLUMNS, SEVEN_WIDE_3X3_S2_P1_COLUMNS,
    };
    use crate::cpu::simd::avx2::{load1, load8, max_tap, store8, to_16bit};
    use crate::cpu::simd::TileKind;
    use std::arch::x86_64::*;

    /// How many groups ahead [`transpose_group`] prefetches: the hardware prefetchers do not
    /// keep up with eight interleaved short streams.
    const PREFETCH_GROUPS: usize = 4;

    /// `t[j]` lane `p` = element `at + j` of plane `p` (planes `plane` elements apart), for
    /// `j < n <= 8`; reads element by element where 8-wide loads would pass the buffer's `len`.
    ///
    /// # Safety
    /// AVX2; `x` points to `len` readable elements of `kind`, with `7 * plane + at + n <= len`.
    #[inline(always)]
    pub(crate) unsafe fn taps(
        kind: TileKind,
        x: *const u8,
        len: usize,
        plane: usize,
        at: usize,
        n: usize,
    ) -> [__m256; 8] {
        if 7 * plane + at + 8 > len {
            let mut t = [[0f32; 8]; 8];
            for (j, tj) in t.iter_mut().enumerate().take(n) {
                for (p, v) in tj.iter_mut().enumerate() {
                    *v = load1(kind, x, p * plane + at + j);
                }
            }
            let mut r = [_mm256_setzero_ps(); 8];
            for (r, t) in r.iter_mut().zip(&t) {
                *r = _mm256_loadu_ps(t.as_ptr());
            }
            return r;
        }
        if kind == TileKind::Bf16 {
            return bf16_taps(x.cast(), plane, at);
        }
        // Plain loops, not closures, around intrinsics here and below: a closure is a function
        // of its own, compiled without the caller's AVX2 and not inlined.
        let mut r = [_mm256_setzero_ps(); 8];
        for (p, r) in r.iter_mut().enumerate() {
            *r = load8(kind, x, p * plane + at);
        }
        transpose8(r)
    }

    /// [`taps`] for bf16, transposed while still 16 bits wide and widened by the last
    /// interleave: planes `p` and `p + 4` share a register (one per 128-bit lane), two rounds
    /// of in-lane interleaves gather each column's four planes per lane, and interleaving
    /// zeros below them (bf16 is the top half of an f32) widens column `j` to eight f32. That
    /// is 16 in-lane shuffles a row against the f32 transpose's 24 (8 lane-crossing) plus 16
    /// widening operations.
    ///
    /// # Safety
    /// AVX2; `x` points to bf16 planes `plane` apart, elements `at..at + 8` of planes 0 to 7
    /// readable.
    #[inline(always)]
    unsafe fn bf16_taps(x: *const u16, plane: usize, at: usize) -> [__m256; 8] {
        let mut y = [_mm256_setzero_si256(); 4];
        for (p, y) in y.iter_mut().enumerate() {
            *y = _mm256_loadu2_m128i(x.add((p + 4) * plane + at).cast(), x.add(p * plane + at).cast());
        }
        // Per lane (planes 0-3 below, 4-7 above): pairs of planes per column, then quads.
        let (a, b) = (_mm256_unpacklo_epi16(y[0], y[1]), _mm256_unpackhi_epi16(y[0], y[1]));
        let (c, d) = (_mm256_unpacklo_epi16(y[2], y[3]), _mm256_unpackhi_epi16(y[2], y[3]));
        let quads = [
            _mm256_unpacklo_epi32(a, c),
            _mm256_unpackhi_epi32(a, c),
            _mm256_unpacklo_epi32(b, d),
            _mm256_unpackhi_epi32(b, d),
        ];
        let zero = _mm256_setzero_si256();
        let mut t = [_mm256_setzero_ps(); 8];
        for (j, q) in quads.iter().enumerate() {
            t[2 * j] = _mm256_castsi256_ps(_mm256_unpacklo_epi16(zero, *q));
            t[2 * j + 1] = _mm256_castsi256_ps(_mm256_unpackhi_epi16(zero, *q));
        }
        t
    }

    /// The 8x8 transpose: lane `j` of result `p` is lane `p` of `r[j]`.
    #[inline(always)]
    unsafe fn transpose8(r: [__m256; 8]) -> [__m256; 8] {
        let a = transpose_quads([r[0], r[1], r[2], r[3]]);
        let b = transpose_quads([r[4], r[5], r[6], r[7]]);
        [
            _mm256_permute2f128_ps::<0x20>(a[0], b[0]),
            _mm256_permute2f128_ps::<0x20>(a[1], b[1]),
            _mm256_permute2f128_ps::<0x20>(a[2], b[2]),
            _mm256_permute2f128_ps::<0x20>(a[3], b[3]),
            _mm256_permute2f128_ps::<0x31>(a[0], b[0]),
            _mm256_permute2f128_ps::<0x31>(a[1], b[1]),
            _mm256_permute2f128_ps::<0x31>(a[2], b[2]),
            _mm256_permute2f128_ps::<0x31>(a[3], b[3]),
        ]
    }

    /// The in-lane stages of transposing four rows: result `k` holds lane `k` of `r[0..4]` in
    /// its low 128 bits and lane `k + 4` in its high 128 bits.
    #[inline(always)]
    unsafe fn transpose_quads(r: [__m256; 4]) -> [__m256; 4] {
        let t0 = _mm256_unpacklo_ps(r[0], r[1]);
        let t1 = _mm256_unpackhi_ps(r[0], r[1]);
        let t2 = _mm256_unpacklo_ps(r[2], r[3]);
        let t3 = _mm256_unpackhi_ps(r[2], r[3]);
        [
            _mm256_shuffle_ps::<0x44>(t0, t2),
            _mm256_shuffle_ps::<0xEE>(t0, t2),
            _mm256_shuffle_ps::<0x44>(t1, t3),
            _mm256_shuffle_ps::<0xEE>(t1, t3),
        ]
    }

    /// The reverse of [`transpose_group`] for results: output `k` of plane `p` (`vals[8k + p]`,
    /// and `idx[8k + p]` with `WITH_INDEX`) stored at `y[p * out_plane + k]` (rounded to
    /// `kind`) and `index[p * out_plane + k]`, for planes `p < planes`. Eight outputs at a
    /// time through 8x8 transposes; the rest through one more transpose (with zero vectors),
    /// or a 4x8 one when a full group has 4 outputs a plane; remaining indices one by one.
    ///
    /// # Safety
    /// AVX2; `vals` (and `idx` with `WITH_INDEX`) hold `8 * out_plane`; `y` (and `index`) point
    /// to `planes * out_plane` writable elements of `kind` (i64), `planes <= 8`.
    #[target_feature(enable = "avx2,f16c")]
    pub(crate) unsafe fn scatter_group<const WITH_INDEX: bool>(
        kind: TileKind,
        vals: &[f32],
        idx: &[i32],
        out_plane: usize,
        planes: usize,
        y: *mut u8,
        index: *mut i64,
    ) {
        let vectors = out_plane / 8 * 8;
        for k0 in (0..vectors).step_by(8) {
            let mut v = [_mm256_setzero_ps(); 8];
            for (j, v) in v.iter_mut().enumerate() {
                *v = _mm256_loadu_ps(vals[8 * (k0 + j)..][..8].as_ptr());
            }
            let v = transpose8(v);
            for (p, &v) in v.iter().enumerate().take(planes) {
                store8(kind, y, p * out_plane + k0, v);
            }
            if WITH_INDEX {
                let mut i = [_mm256_setzero_ps(); 8];
                for (j, i) in i.iter_mut().enumerate() {
                    *i = _mm256_castsi256_ps(_mm256_loadu_si256(idx[8 * (k0 + j)..][..8].as_ptr().cast()));
                }
                let i = transpose8(i);
                for (p, &i) in i.iter().enumerate().take(planes) {
                    let i = _mm256_castps_si256(i);
                    let at = index.add(p * out_plane + k0);
                    _mm256_storeu_si256(at.cast(), _mm256_cvtepi32_epi64(_mm256_castsi256_si128(i)));
                    _mm256_storeu_si256(
                        at.add(4).cast(),
                        _mm256_cvtepi32_epi64(_mm256_extracti128_si256::<1>(i)),
                    );
                }
            }
        }
        let rest = out_plane - vectors;
        if rest == 0 {
            return;
        }
        if out_plane == 4 && planes == 8 {
            // Adaptive 2x2, the common small case: the group's 32 outputs are contiguous, so
            // a 4x8 transpose writes them in four full vectors.
            let mut v = [_mm256_setzero_ps(); 4];
            for (k, v) in v.iter_mut().enumerate() {
                *v = _mm256_loadu_ps(vals[8 * k..][..8].as_ptr());
            }
            for (at, v) in [0, 8, 16, 24].into_iter().zip(transpose4x8(v)) {
                store8(kind, y, at, v);
            }
        } else {
            // The last `rest` outputs of each plane: transposed with the zero vectors after
            // them, rounded in vectors, then `rest` lanes copied per plane.
            let mut v = [_mm256_setzero_ps(); 8];
            for (j, v) in v.iter_mut().enumerate().take(rest) {
                *v = _mm256_loadu_ps(vals[8 * (vectors + j)..][..8].as_ptr());
            }
            let v = transpose8(v);
            for (p, &v) in v.iter().enumerate().take(planes) {
                let at = p * out_plane + vectors;
                match kind {
                    TileKind::F32 => {
                        let mut lanes = [0f32; 8];
                        _mm256_storeu_ps(lanes.as_mut_ptr(), v);
                        copy_first(&lanes, y.cast::<f32>().add(at), rest);
                    }
                    TileKind::Bf16 | TileKind::F16 => {
                        let mut lanes = [0u16; 8];
                        _mm_storeu_si128(lanes.as_mut_ptr().cast(), to_16bit(kind, v));
                        copy_first(&lanes, y.cast::<u16>().add(at), rest);
                    }
                }
            }
        }
        if WITH_INDEX {
            for k in vectors..out_plane {
                for p in 0..planes {
                    *index.add(p * out_plane + k) = i64::from(idx[8 * k + p]);
                }
            }
        }
    }

    /// Copies `lanes[..n]` to `to`, `n < 8`, in at most three fixed-size moves: a copy of
    /// runtime length compiles to a call to `memmove`, which was a tenth of a 7x7 plane's
    /// 2x2 max pooling (one call per plane for its ninth output).
    ///
    /// # Safety
    /// `to` is writable for `n` elements, `n < 8`.
    #[inline(always)]
    unsafe fn copy_first<E: Copy>(lanes: &[E; 8], to: *mut E, n: usize) {
        debug_assert!(n < 8);
        let mut i = 0;
        for part in [4, 2, 1] {
            if n & part != 0 {
                std::ptr::copy_nonoverlapping(lanes[i..].as_ptr(), to.add(i), part);
                i += part;
            }
        }
    }

    /// Four vectors of eight lanes (`v[k]` lane `p`) as a row-major 8x4 matrix: lanes
    /// `4p..4p + 4` of the result are `v[0..4]` lane `p`.
    #[inline(always)]
    unsafe fn transpose4x8(v: [__m256; 4]) -> [__m256; 4] {
        // Lanes (0 | 4), (1 | 5), (2 | 6), (3 | 7): pair the low halves, then the high ones.
        let q = transpose_quads(v);
        [
            _mm256_permute2f128_ps::<0x20>(q[0], q[1]),
            _mm256_permute2f128_ps::<0x20>(q[2], q[3]),
            _mm256_permute2f128_ps::<0x31>(q[0], q[1]),
            _mm256_permute2f128_ps::<0x31>(q[2], q[3]),
        ]
    }

    /// The eight planes at `x` (`len` elements readable from `x`, at least `8 * H * W`)
    /// transposed into `lanes`: element `(h, w)` of plane `p` at `lanes[8 * i + p]`, `i` its
    /// cell `(h + pad.0) * cols + w + pad.1` of the buffer (the pad cells are not written).
    /// Also prefetches the group [`PREFETCH_GROUPS`] ahead, where `len` reaches that far.
    ///
    /// # Safety
    /// AVX2; `x` points to `len >= 8 * height * width` readable elements of `kind`; the plane
    /// fits the buffer and `lanes` holds `8 * rows * cols` f32.
    #[target_feature(enable = "avx2,f16c")]
    pub(crate) unsafe fn transpose_group(
        kind: TileKind,
        x: *const u8,
        len: usize,
        layout: &LanePlane,
        lanes: &mut [f32],
    ) {
        transpose_rows::<false>(kind, x, len, layout, lanes)
    }

    /// [`transpose_group`] with AVX-512's two-source permutes for the 8x8 blocks (see
    /// [`super::avx512`]).
    ///
    /// # Safety
    /// As [`transpose_group`], and the CPU has AVX-512 F and BW.
    #[target_feature(enable = "avx2,f16c,avx512f,avx512bw")]
    pub(crate) unsafe fn transpose_group_avx512(
        kind: TileKind,
        x: *const u8,
        len: usize,
        layout: &LanePlane,
        lanes: &mut [f32],
    ) {
        transpose_rows::<true>(kind, x, len, layout, lanes)
    }

    #[inline(always)]
    unsafe fn transpose_rows<const AVX512: bool>(
        kind: TileKind,
        x: *const u8,
        len: usize,
        layout: &LanePlane,
        lanes: &mut [f32],
    ) {
        let (height, width) = (layout.height, layout.width);
        let plane = height * width;
        let elem = kind.bytes();
        let (group_bytes, ahead) = (8 * plane * elem, PREFETCH_GROUPS * 8 * plane * elem);
        for off in (0..group_bytes).step_by(64) {
            if ahead + off < len * elem {
                // SAFETY: inside the buffer (checked); a prefetch never faults anyway.
                _mm_prefetch::<_MM_HINT_T0>(x.add(ahead + off).cast());
            }
        }
        let lanes = &mut lanes[..8 * layout.rows * layout.cols];
        for h in 0..height {
            let row = &mut lanes[8 * ((h + layout.pad.0) * layout.cols + layout.pad.1)..][..8 * width];
            let mut w = 0;
            while w < width {
                let n = (width - w).min(8);
                let at = h * width + w;
                if AVX512 && 7 * plane + at + 8 <= len {
                    // SAFETY: the eight planes' elements `at..at + 8` are inside `len` (just
                    // checked); `row` has the `n` cells from `w` (sliced above); AVX-512 F/BW
                    // by this function's contract.
                    super::avx512::transpose8x8(kind, x, plane, at, row[8 * w..][..8 * n].as_mut_ptr(), n);
                } else {
                    let t = taps(kind, x, len, plane, at, n);
                    for (j, &v) in t.iter().enumerate().take(n) {
                        _mm256_storeu_ps(row[8 * (w + j)..][..8].as_mut_ptr(), v);
                    }
                }
                w += n;
            }
        }
    }

    /// Every output window over a transposed group: `vals[8k..8k + 8]` gets output `k`'s max
    /// (`MAX`, PyTorch's rule) or `sum / div.0 / div.1`, and with `WITH_INDEX` `idx[8k..]` the
    /// max's plane index (a buffer cell's `(h - pad.0) * width + (w - pad.1)`).
    ///
    /// Runs of [`BLOCK`] consecutive windows of the same shape (all of windowed pooling's, most
    /// of adaptive pooling's) are reduced together, tap by tap, so that their dependency
    /// chains (compare/blend or add, then the divisions) overlap.
    ///
    /// # Safety
    /// AVX2; every window's taps lie inside the buffer (`lanes` holds `8 * rows * cols`);
    /// `vals` (and `idx` with `WITH_INDEX`) hold `8 * windows.len()`.
    #[target_feature(enable = "avx2,f16c")]
    pub(crate) unsafe fn reduce_windows<const MAX: bool, const WITH_INDEX: bool>(
        lanes: &[f32],
        layout: &LanePlane,
        windows: &[LaneWindow],
        vals: &mut [f32],
        idx: &mut [i32],
    ) {
        let shape = |w: &LaneWindow| (w.h.1 - w.h.0, w.h.2, w.w.1 - w.w.0, w.w.2);
        let mut k = 0;
        while k < windows.len() {
            let block = &windows[k..(k + BLOCK).min(windows.len())];
            if block.len() == BLOCK && block.iter().all(|w| shape(w) == shape(&block[0])) {
                reduce_block::<MAX, WITH_INDEX, BLOCK>(lanes, layout, block, k, vals, idx);
                k += BLOCK;
            } else {
                reduce_block::<MAX, WITH_INDEX, 1>(lanes, layout, &windows[k..k + 1], k, vals, idx);
                k += 1;
            }
        }
    }

    /// A window's sum divided by `div.0`, then by `div.1` (windowed pooling's second divisor
    /// is 1: skipping it is exact); given `reciprocals` of divisors that are both powers of
    /// two, multiplied by them instead, which gives the same bits.
    #[inline(always)]
    unsafe fn divide(sum: __m256, (div0, div1): (f32, f32), reciprocals: Option<(f32, f32)>) -> __m256 {
        if let Some((r0, r1)) = reciprocals {
            return _mm256_mul_ps(_mm256_mul_ps(sum, _mm256_set1_ps(r0)), _mm256_set1_ps(r1));
        }
        let v = _mm256_div_ps(sum, _mm256_set1_ps(div0));
        if div1 != 1.0 {
            _mm256_div_ps(v, _mm256_set1_ps(div1))
        } else {
            v
        }
    }

    /// Windows reduced together by [`reduce_windows`].
    const BLOCK: usize = 4;

    /// The columns of one transposed row (`t`, plane index of column 0 `row`) that an output
    /// takes (`columns`, when it takes the row at all), in ascending order.
    #[inline(always)]
    unsafe fn row_taps<const MAX: bool, const WITH_INDEX: bool>(
        takes_row: bool,
        columns: u8,
        t: &[__m256; 8],
        row: i32,
        acc: &mut __m256,
        at: &mut __m256i,
    ) {
        if !takes_row {
            return;
        }
        for (w, &v) in t.iter().enumerate() {
            if columns & (1 << w) != 0 {
                if MAX {
                    max_tap::<WITH_INDEX>(v, acc, at, _mm256_set1_epi32(row + w as i32));
                } else {
                    *acc = _mm256_add_ps(*acc, v);
                }
            }
        }
    }

    /// One group of eight planes (at `x`, `len` elements readable) pooled through `rows`
    /// (see [`RowRegisters`]): `vals[8k..8k + 8]` gets output `k`'s max (`MAX`, PyTorch's
    /// rule) or `sum / div.0 / div.1`, and with `WITH_INDEX` `idx[8k..]` the max's plane index,
    /// as [`reduce_windows`] gives them.
    ///
    /// # Safety
    /// As [`row_register_outputs`] for each of `rows.chunks`; `vals` (and `idx` with
    /// `WITH_INDEX`) hold eight entries per output of the plane.
    #[target_feature(enable = "avx2,f16c")]
    unsafe fn pool_group_in_row_registers<
        const MAX: bool,
        const WITH_INDEX: bool,
        const KIND: u8,
        const SEVEN_TO_TWO: bool,
        const COLUMNS: u32,
    >(
        x: *const u8,
        len: usize,
        layout: &LanePlane,
        rows: &RowRegisters,
        vals: &mut [f32],
        idx: &mut [i32],
    ) {
        for chunk in &rows.chunks {
            let (v, at) =
                row_register_outputs::<MAX, WITH_INDEX, KIND, SEVEN_TO_TWO, COLUMNS>(x, len, layout, chunk);
            let outputs = if SEVEN_TO_TWO { ROW_REGISTER_OUTPUTS } else { chunk.outputs };
            for k in 0..outputs {
                let at_k = 8 * (chunk.first_output + k);
                _mm256_storeu_ps(vals[at_k..at_k + 8].as_mut_ptr(), v[k]);
                if WITH_INDEX {
                    _mm256_storeu_si256(idx[at_k..at_k + 8].as_mut_ptr().cast(), at[k]);
                }
            }
        }
    }

    /// `groups` whole groups of eight 7x7 planes (at `x`, `len` elements readable) pooled
    /// to 2x2 through `rows` (`rows.seven_to_two`), without indices, and written straight to
    /// their planes' outputs at `y` (four of the same `KIND` per plane) by one 4x8
    /// transpose: no detour through [`scatter_group`], and no two calls per group (one for
    /// the sums, one for the scatter; docs/BENCHMARKS.md has the figures). Two groups at a
    /// time, their rows interleaved, took 1.1x to 1.45x as long (out of registers, presumably).
    ///
    /// # Safety
    /// As [`row_register_outputs`] with `len >= 8 * groups * 49`, `SEVEN_TO_TWO`; `y` points
    /// to `32 * groups` writable elements of `KIND`.
    #[target_feature(enable = "avx2,f16c")]
    pub(super) unsafe fn seven_to_two_groups<const MAX: bool, const KIND: u8>(
        x: *const u8,
        len: usize,
        groups: usize,
        layout: &LanePlane,
        rows: &RowRegisters,
        y: *mut u8,
    ) {
        let kind = kind_from_code(KIND);
        let group_len = 8 * 49;
        for g in 0..groups {
            let x = x.add(g * group_len * kind.bytes());
            let (v, _) = row_register_outputs::<MAX, false, KIND, true, 0>(
                x,
                len - g * group_len,
                layout,
                &rows.chunks[0],
            );
            for (at, v) in [0, 8, 16, 24].into_iter().zip(transpose4x8(v)) {
                store8(kind, y, 32 * g + at, v);
            }
        }
    }

    /// The outputs of one chunk of one group of eight planes (at `x`, `len` elements
    /// readable) pooled through `chunk` (see [`RowRegisters`]): vector `k` holds the chunk's
    /// output `k`'s max (`MAX`,
    /// PyTorch's rule) or `sum / div.0 / div.1` for the eight planes, and with `WITH_INDEX`
    /// its plane index, as [`reduce_windows`] gives them. The element type is a constant, and
    /// with `SEVEN_TO_TWO` so is the whole table but the divisors and first indices (the
    /// plane's shape, which outputs take each row, and their columns): a runtime type made
    /// each row's loads branch on it, and runtime masks made each tap a test and a branch
    /// (together 2x the time of this kernel with both constant, measured on the ResNet tail);
    /// runtime rows left a test and a branch per row and output, and a loop over rows
    /// (compiled in, the rows unroll).
    ///
    /// # Safety
    /// AVX2 and F16C; `KIND` is a [`TileKind`] code (`kind_code`) and `x` points to
    /// `len >= 8 * height * width` readable elements of that kind; `chunk` is one of the
    /// [`RowRegisters`] built for `layout` (so the plane is at most 8 wide and the chunk's
    /// rows and columns lie inside it) and, with `SEVEN_TO_TWO`, the only chunk of tables
    /// with `seven_to_two`.
    #[inline(always)]
    unsafe fn row_register_outputs<
        const MAX: bool,
        const WITH_INDEX: bool,
        const KIND: u8,
        const SEVEN_TO_TWO: bool,
        const COLUMNS: u32,
    >(
        x: *const u8,
        len: usize,
        layout: &LanePlane,
        chunk: &RowChunk,
    ) -> ([__m256; ROW_REGISTER_OUTPUTS], [__m256i; ROW_REGISTER_OUTPUTS]) {
        let kind = kind_from_code(KIND);
        let (columns, (height, width), outputs) = if SEVEN_TO_TWO {
            (SEVEN_TO_TWO_COLUMNS, (7, 7), ROW_REGISTER_OUTPUTS)
        } else if COLUMNS != 0 {
            (COLUMNS.to_le_bytes(), (layout.height, layout.width), chunk.outputs)
        } else {
            (chunk.columns, (layout.height, layout.width), chunk.outputs)
        };
        let plane = height * width;
        let mut acc = [_mm256_set1_ps(if MAX { f32::NEG_INFINITY } else { 0.0 }); ROW_REGISTER_OUTPUTS];
        let mut at = [_mm256_setzero_si256(); ROW_REGISTER_OUTPUTS];
        for (at, &first) in at.iter_mut().zip(&chunk.first) {
            *at = _mm256_set1_epi32(first);
        }
        let (row_outputs, first_row): (&[u8], usize) =
            if SEVEN_TO_TWO { (&SEVEN_TO_TWO_ROWS, 0) } else { (&chunk.row_outputs, chunk.first_row) };
        for (h, &takes) in (first_row..height).zip(row_outputs) {
            // The columns of row `h` of the eight planes, lane `p` = plane `p` (columns past
            // `width` hold the next row's or zeros, and no mask takes them).
            let t = taps(kind, x, len, plane, h * width, width);
            // One call per output with a constant `k`, so that each accumulator stays in a
            // register (a loop over `k` kept them in memory: a store and a reload per tap).
            let row = (h * width) as i32;
            let [a0, a1, a2, a3] = &mut acc;
            let [i0, i1, i2, i3] = &mut at;
            row_taps::<MAX, WITH_INDEX>(takes & 1 != 0, columns[0], &t, row, a0, i0);
            row_taps::<MAX, WITH_INDEX>(takes & 2 != 0, columns[1], &t, row, a1, i1);
            row_taps::<MAX, WITH_INDEX>(takes & 4 != 0, columns[2], &t, row, a2, i2);
            row_taps::<MAX, WITH_INDEX>(takes & 8 != 0, columns[3], &t, row, a3, i3);
        }
        if !MAX {
            for (k, acc) in acc.iter_mut().enumerate().take(outputs) {
                *acc = divide(*acc, chunk.div[k], chunk.reciprocals.map(|r| r[k]));
            }
        }
        (acc, at)
    }

    /// [`TileKind`] codes for const generic parameters (see [`kind_code`]).
    const F32: u8 = kind_code(TileKind::F32);
    const BF16: u8 = kind_code(TileKind::Bf16);
    const F16: u8 = kind_code(TileKind::F16);

    /// A [`TileKind`] as a const generic parameter.
    const fn kind_code(kind: TileKind) -> u8 {
        match kind {
            TileKind::F32 => 0,
            TileKind::Bf16 => 1,
            TileKind::F16 => 2,
        }
    }

    #[inline(always)]
    const fn kind_from_code(code: u8) -> TileKind {
        match code {
            0 => TileKind::F32,
            1 => TileKind::Bf16,
            _ => TileKind::F16,
        }
    }

    /// A row-register group kernel, as [`pool_group_in_row_registers`]'s arguments.
    pub(super) type RowRegisterKernel =
        unsafe fn(*const u8, usize, &LanePlane, &RowRegisters, &mut [f32], &mut [i32]);

    /// [`pool_group_in_row_registers`] for `kind`, with the table compiled in where `rows`
    /// pool 7x7 -> 2x2 (`rows.seven_to_two`), else read at run time.
    pub(super) fn row_register_kernel<const MAX: bool, const WITH_INDEX: bool>(
        kind: TileKind,
        rows: &RowRegisters,
    ) -> RowRegisterKernel {
        macro_rules! for_kind {
            ($seven_to_two:expr, $columns:expr) => {
                match kind {
                    TileKind::F32 => {
                        pool_group_in_row_registers::<MAX, WITH_INDEX, F32, { $seven_to_two }, { $columns }>
                    }
                    TileKind::Bf16 => {
                        pool_group_in_row_registers::<MAX, WITH_INDEX, BF16, { $seven_to_two }, { $columns }>
                    }
                    TileKind::F16 => {
                        pool_group_in_row_registers::<MAX, WITH_INDEX, F16, { $seven_to_two }, { $columns }>
                    }
                }
            };
        }
        const THREE_STRIDE_TWO_PAD_ONE: u32 = u32::from_le_bytes(SEVEN_WIDE_3X3_S2_P1_COLUMNS);
        const TWO_STRIDE_TWO: u32 = u32::from_le_bytes(SEVEN_WIDE_2X2_S2_COLUMNS);
        match (rows.seven_to_two, rows.columns.map(u32::from_le_bytes)) {
            (true, _) => for_kind!(true, 0),
            (false, Some(THREE_STRIDE_TWO_PAD_ONE)) => for_kind!(false, THREE_STRIDE_TWO_PAD_ONE),
            (false, Some(TWO_STRIDE_TWO)) => for_kind!(false, TWO_STRIDE_TWO),
            (false, _) => for_kind!(false, 0),
        }
    }

    /// [`seven_to_two_groups`]'s arguments.
    pub(super) type SevenToTwoKernel = unsafe fn(*const u8, usize, usize, &LanePlane, &RowRegisters, *mut u8);

    /// [`seven_to_two_groups`] for `kind`, where `rows` pool 7x7 -> 2x2
    /// (`rows.seven_to_two`).
    pub(super) fn seven_to_two_kernel<const MAX: bool>(
        kind: TileKind,
        rows: &RowRegisters,
    ) -> Option<SevenToTwoKernel> {
        rows.seven_to_two.then_some(match kind {
            TileKind::F32 => seven_to_two_groups::<MAX, F32> as SevenToTwoKernel,
            TileKind::Bf16 => seven_to_two_groups::<MAX, BF16>,
            TileKind::F16 => seven_to_two_groups::<MAX, F16>,
        })
    }

    /// Windows `k0..k0 + R` (`block`, all of the first one's shape), tap by tap.
    #[inline(always)]
    unsafe fn reduce_block<const MAX: bool, const WITH_INDEX: bool, const R: usize>(
        lanes: &[f32],
        layout: &LanePlane,
        block: &[LaneWindow],
        k0: usize,
        vals: &mut [f32],
        idx: &mut [i32],
    ) {
        let block: [LaneWindow; R] = std::array::from_fn(|r| block[r]);
        let cols = layout.cols;
        debug_assert!(lanes.len() >= 8 * layout.rows * cols);
        let (pad_h, pad_w, width) = (layout.pad.0 as i32, layout.pad.1 as i32, layout.width as i32);
        // SAFETY (for these pointers and every load below): the caller guarantees that every
        // tap of every window lies inside the buffer, so `8 * (h * cols + w) + 8 <= lanes.len()`
        // for each tap's cell `(h, w)`.
        let (first, win) = (block.map(|w| lanes.as_ptr().add(8 * (w.h.0 * cols + w.w.0))), &block[0]);
        // Plane index of each window's top-left cell (wraps for pad cells, whose indices are
        // never taken); a tap `a` rows and `b` columns further adds `a * width + b`.
        let corner =
            block.map(|w| (w.h.0 as i32 - pad_h).wrapping_mul(width).wrapping_add(w.w.0 as i32 - pad_w));
        let mut acc = [_mm256_set1_ps(if MAX { f32::NEG_INFINITY } else { 0.0 }); R];
        let mut at = [_mm256_setzero_si256(); R];
        for (at, w) in at.iter_mut().zip(&block) {
            *at = _mm256_set1_epi32(w.first);
        }
        let ((h0, h1, dh), (w0, w1, dw)) = (win.h, win.w);
        let mut a = 0;
        while a < h1 - h0 {
            let mut b = 0;
            while b < w1 - w0 {
                let off = 8 * (a * cols + b);
                for r in 0..R {
                    let v = _mm256_loadu_ps(first[r].add(off));
                    if MAX {
                        let here = _mm256_set1_epi32(corner[r].wrapping_add(a as i32 * width + b as i32));
                        max_tap::<WITH_INDEX>(v, &mut acc[r], &mut at[r], here);
                    } else {
                        acc[r] = _mm256_add_ps(acc[r], v);
                    }
                }
                b += dw;
            }
            a += dh;
        }
        for (r, w) in block.iter().enumerate() {
            let k = k0 + r;
            let mut v = acc[r];
            if !MAX {
                v = divide(v, w.div, None);
            }
            _mm256_storeu_ps(vals[8 * k..8 * k + 8].as_mut_ptr(), v);
            if WITH_INDEX {
                _mm256_storeu_si256(idx[8 * k..8 * k + 8].as_mut_ptr().cast(), at[r]);
            }
        }
    }
}

/// The 8x8 block transposes of [`avx2::transpose_group_avx512`] (and, in registers through
/// [`avx512::taps`], of the bf16 eight-plane groups in `adaptive.rs`): AVX-512's two-source
/// permutes (`vpermt2w`, `vpermt2ps`) move eight planes' eight elements into place in four
/// (bf16, widening for free: the zeroing mask fills the low half of every f32) or eight (f32)
/// instructions, where AVX2 needs 24 shuffles plus, for bf16, a widening shuffle and a shift
/// per plane. The results are the same bits; only the shuffling differs.
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512 {
    use crate::cpu::simd::TileKind;
    use std::arch::x86_64::*;

    /// bf16 permutes: f32 lane L of `z[k]` is cell 2k + L / 8, plane L % 8; its high u16 (odd
    /// slot s = 2L + 1) takes that bf16 (u16 8 * plane + cell of the pair (lo, hi)), its low
    /// u16 is zeroed by the mask: the exact f32.
    const BF16_CELLS: [[i16; 32]; 4] = [bf16_cells(0), bf16_cells(1), bf16_cells(2), bf16_cells(3)];

    const fn bf16_cells(k: usize) -> [i16; 32] {
        let mut idx = [0i16; 32];
        let mut s = 1;
        while s < 32 {
            idx[s] = (8 * (s / 2 % 8) + 2 * k + s / 16) as i16;
            s += 2;
        }
        idx
    }

    /// f32 stage 1, lane t: cell 4h + t / 4 (h = 0 or 1: cells 0-3 or 4-7), plane t % 4.
    const F32_QUADS: [[i32; 16]; 2] = [f32_quads(0), f32_quads(1)];

    const fn f32_quads(h: usize) -> [i32; 16] {
        let mut idx = [0i32; 16];
        let mut t = 0;
        while t < 16 {
            idx[t] = (8 * (t % 4) + 4 * h + t / 4) as i32;
            t += 1;
        }
        idx
    }

    /// f32 stage 2, lane s: cell c + s / 8 (c = 0 or 2, within stage 1's four), plane s % 8,
    /// from planes 0-3 (first source) or 4-7 (second) at lane 4 * cell + plane % 4.
    const F32_CELLS: [[i32; 16]; 2] = [f32_cells(0), f32_cells(2)];

    const fn f32_cells(c: usize) -> [i32; 16] {
        let mut idx = [0i32; 16];
        let mut s = 0;
        while s < 16 {
            idx[s] = (16 * (s % 8 / 4) + 4 * (c + s / 8) + s % 4) as i32;
            s += 1;
        }
        idx
    }

    /// Elements `at..at + 8` of the eight planes at `x` (`plane` elements apart) transposed:
    /// element `at + j` of plane `p` stored at `out[8 * j + p]` as f32, for `j < n <= 8`.
    ///
    /// # Safety
    /// AVX-512 F and BW; elements `7 * plane + at + 8` of `kind` readable from `x`; `out`
    /// writable for `8 * n` f32.
    #[inline(always)]
    pub(crate) unsafe fn transpose8x8(
        kind: TileKind,
        x: *const u8,
        plane: usize,
        at: usize,
        out: *mut f32,
        n: usize,
    ) {
        let z = transposed_pairs(kind, x, plane, at);
        for (k, &z) in z.iter().enumerate() {
            if 2 * k + 1 < n {
                _mm512_storeu_ps(out.add(16 * k), z);
            } else if 2 * k < n {
                _mm256_storeu_ps(out.add(16 * k), _mm512_castps512_ps256(z));
            }
        }
    }

    /// [`transpose8x8`] in registers: lane `p` of result `j` is element `at + j` of plane `p`
    /// (the eight planes' taps that `avx2::taps` returns, for the same bits).
    ///
    /// # Safety
    /// As [`transpose8x8`] (no `out`).
    #[inline(always)]
    pub(crate) unsafe fn taps(kind: TileKind, x: *const u8, plane: usize, at: usize) -> [__m256; 8] {
        let z = transposed_pairs(kind, x, plane, at);
        let mut t = [_mm256_setzero_ps(); 8];
        for (k, &z) in z.iter().enumerate() {
            t[2 * k] = _mm512_castps512_ps256(z);
            t[2 * k + 1] = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(z)));
        }
        t
    }

    /// Four vectors `z[k]`: cells `at + 2k` (low half) and `at + 2k + 1` (high half) of the
    /// eight planes, as f32.
    #[inline(always)]
    unsafe fn transposed_pairs(kind: TileKind, x: *const u8, plane: usize, at: usize) -> [__m512; 4] {
        // Plain loops, not closures, around the intrinsics (see `avx2::taps`).
        let mut z = [_mm512_setzero_ps(); 4];
        match kind {
            TileKind::Bf16 => {
                let x = x.cast::<u16>();
                let mut rows = [_mm_setzero_si128(); 8];
                for (p, r) in rows.iter_mut().enumerate() {
                    *r = _mm_loadu_si128(x.add(p * plane + at).cast());
                }
                // Planes 0-3 and 4-7, eight u16 each: element j of plane p is u16 8p + j of
                // the pair (lo, hi).
                let mut lo = _mm512_castsi128_si512(rows[0]);
                let mut hi = _mm512_castsi128_si512(rows[4]);
                lo = _mm512_inserti32x4::<1>(lo, rows[1]);
                hi = _mm512_inserti32x4::<1>(hi, rows[5]);
                lo = _mm512_inserti32x4::<2>(lo, rows[2]);
                hi = _mm512_inserti32x4::<2>(hi, rows[6]);
                lo = _mm512_inserti32x4::<3>(lo, rows[3]);
                hi = _mm512_inserti32x4::<3>(hi, rows[7]);
                for (z, idx) in z.iter_mut().zip(&BF16_CELLS) {
                    let idx = _mm512_loadu_si512(idx.as_ptr().cast());
                    *z = _mm512_castsi512_ps(_mm512_maskz_permutex2var_epi16(0xAAAA_AAAA, lo, idx, hi));
                }
            }
            TileKind::F32 | TileKind::F16 => {
                use crate::cpu::simd::avx2::load8;
                // a[m] = planes 2m, 2m + 1. Element j of plane p (p < 4) is lane 8p + j of
                // (a[0], a[1]), likewise of (a[2], a[3]) for plane p + 4. (f16 is widened
                // by F16C as it is loaded, then permuted as f32.)
                let mut a = [_mm512_setzero_ps(); 4];
                for (m, a) in a.iter_mut().enumerate() {
                    let first = _mm256_castps_pd(load8(kind, x, 2 * m * plane + at));
                    let second = _mm256_castps_pd(load8(kind, x, (2 * m + 1) * plane + at));
                    *a = _mm512_castpd_ps(_mm512_insertf64x4::<1>(_mm512_castpd256_pd512(first), second));
                }
                let i0 = _mm512_loadu_si512(F32_QUADS[0].as_ptr().cast());
                let i1 = _mm512_loadu_si512(F32_QUADS[1].as_ptr().cast());
                let b = [
                    _mm512_permutex2var_ps(a[0], i0, a[1]),
                    _mm512_permutex2var_ps(a[0], i1, a[1]),
                    _mm512_permutex2var_ps(a[2], i0, a[3]),
                    _mm512_permutex2var_ps(a[2], i1, a[3]),
                ];
                let c0 = _mm512_loadu_si512(F32_CELLS[0].as_ptr().cast());
                let c2 = _mm512_loadu_si512(F32_CELLS[1].as_ptr().cast());
                z = [
                    _mm512_permutex2var_ps(b[0], c0, b[2]),
                    _mm512_permutex2var_ps(b[0], c2, b[2]),
                    _mm512_permutex2var_ps(b[1], c0, b[3]),
                    _mm512_permutex2var_ps(b[1], c2, b[3]),
                ];
            }
        }
        z
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::test_util::{random, same, special};
    use half::bf16;

    /// The plain loop over [`LaneWindow`]s: taps in (h, w) order from the identity, PyTorch's
    /// max rule, the sum divided by `div.0` then `div.1`.
    fn reference<T: FloatElement<Acc = f32>>(
        layout: &LanePlane,
        windows: &[LaneWindow],
        xs: &[T],
        max: bool,
    ) -> (Vec<T>, Vec<i64>) {
        let plane = layout.height * layout.width;
        let (mut ys, mut is) = (Vec::new(), Vec::new());
        for x in xs.chunks(plane) {
            for win in windows {
                let (mut acc, mut at) = (if max { f32::NEG_INFINITY } else { 0.0 }, i64::from(win.first));
                for h in (win.h.0..win.h.1).step_by(win.h.2) {
                    for w in (win.w.0..win.w.1).step_by(win.w.2) {
                        let (ih, iw) = (h.wrapping_sub(layout.pad.0), w.wrapping_sub(layout.pad.1));
                        let v = if ih < layout.height && iw < layout.width {
                            x[ih * layout.width + iw].to_acc()
                        } else {
                            layout.identity
                        };
                        if !max {
                            acc += v;
                        } else if v > acc || v.is_nan() {
                            (acc, at) = (v, (ih * layout.width + iw) as i64);
                        }
                    }
                }
                ys.push(T::from_acc(if max { acc } else { acc / win.div.0 / win.div.1 }));
                is.push(at);
            }
        }
        (ys, is)
    }

    /// Windowed pooling's layout and windows for a `height x width` plane (as `window.rs`
    /// builds them): square kernel `k`, stride `s`, padding `p`, dilation `d`.
    fn windowed(
        height: usize,
        width: usize,
        [k, s, p, d]: [usize; 4],
        identity: f32,
    ) -> (LanePlane, Vec<LaneWindow>) {
        let out = |n: usize| (n + 2 * p - d * (k - 1) - 1) / s + 1;
        let (oh, ow) = (out(height), out(width));
        let span = (k - 1) * d + 1;
        let layout = LanePlane {
            height,
            width,
            pad: (p, p),
            rows: ((oh - 1) * s + span).max(p + height),
            cols: ((ow - 1) * s + span).max(p + width),
            identity,
        };
        let first_inside =
            |o: usize, n: usize| (0..k).map(|t| (o * s + t * d).wrapping_sub(p)).find(|&i| i < n).unwrap();
        let windows = (0..oh * ow)
            .map(|o| {
                let (i, j) = (o / ow, o % ow);
                LaneWindow {
                    h: (i * s, i * s + span, d),
                    w: (j * s, j * s + span, d),
                    first: (first_inside(i, height) * width + first_inside(j, width)) as i32,
                    div: ((k * k) as f32, 1.0),
                }
            })
            .collect();
        (layout, windows)
    }

    /// Every path (both lane transposes, AVX2 shuffles and AVX-512 permutes, the register path
    /// in groups of four planes and one by one, and the choice between them) gives the plain
    /// loop's bits where the CPU has it: 7x7 planes (eight elements per
    /// row load, 49 outputs: four register chunks), padded and dilated windows, adaptive 2x2
    /// windows (the 4x8 result transpose, two divisions), planes of at most 32 elements (one
    /// register pair), of exactly 64, and widths past one 8x8 block (lanes only).
    fn all<T: FloatElement<Acc = f32>>() {
        let adaptive_2x2: Vec<LaneWindow> = [(0, 4), (3, 7)]
            .iter()
            .flat_map(|&h| {
                [(0, 4), (3, 7)].map(|w| LaneWindow {
                    h: (h.0, h.1, 1),
                    w: (w.0, w.1, 1),
                    first: (h.0 * 7 + w.0) as i32,
                    div: (4.0, 4.0),
                })
            })
            .collect();
        let mut cases = vec![
            (LanePlane::unpadded(7, 7), adaptive_2x2.clone(), false),
            (LanePlane::unpadded(7, 7), adaptive_2x2, true),
        ];
        // Adaptive pooling to at most four outputs from planes at most 8 wide (the row
        // registers, with runtime column masks), and wider ones (lanes only).
        for ((h, w), (oh, ow)) in
            [((8, 8), (2, 2)), ((5, 3), (1, 2)), ((12, 8), (2, 1)), ((3, 8), (1, 4)), ((7, 9), (2, 2))]
        {
            for max in [false, true] {
                cases.push((LanePlane::unpadded(h, w), adaptive(h, w, oh, ow), max));
            }
        }
        for (height, width, geometry) in [
            (7, 7, [4, 3, 0, 1]), // 7x7 -> 2x2's windows, divided by 16 once
            (7, 7, [3, 2, 1, 1]),
            (7, 7, [2, 2, 0, 1]),
            (7, 7, [3, 1, 1, 1]),
            (5, 5, [3, 2, 1, 1]),
            (8, 8, [3, 1, 2, 2]),
            (5, 19, [3, 2, 1, 1]),
            (4, 4, [2, 2, 0, 1]),
            (5, 5, [2, 2, 0, 2]),
        ] {
            for max in [false, true] {
                let identity = if max { f32::NEG_INFINITY } else { 0.0 };
                let (layout, windows) = windowed(height, width, geometry, identity);
                cases.push((layout, windows, max));
            }
        }
        for (layout, windows, max) in cases {
            let plane = layout.height * layout.width;
            // 19 planes: two full lane groups and a partial one; four register groups and three
            // single planes. 16: the last full group ends the input (row loads near its end).
            let inputs =
                [random::<T>(19 * plane, 3), special::<T>(19 * plane, 4), random::<T>(16 * plane, 5)];
            for xs in inputs {
                let (want, want_is) = reference(&layout, &windows, &xs, max);
                let tables = plane_registers::Tables::new(&layout, &windows);
                let lanes_only =
                    PlanePooling { registers: None, ..PlanePooling::new(layout, windows.clone()) };
                let fastest = PlanePooling::new(layout, windows.clone());
                let paths = [
                    Some(Path::Lanes { avx512: false }),
                    Some(Path::Lanes { avx512: true }),
                    Some(Path::RowRegisters),
                    Some(Path::Fastest),
                    None,
                ];
                for path in paths {
                    let mut ys = vec![T::from_f64(7.0); want.len()];
                    let mut is = vec![-1i64; if max { want.len() } else { 0 }];
                    let pooling = match path {
                        Some(Path::Fastest | Path::RowRegisters) => &fastest,
                        _ => &lanes_only,
                    };
                    let done = match (path, max) {
                        (Some(path), true) => {
                            pool_planes_using::<T, T, true, true>(pooling, &xs, &mut ys, &mut is, path)
                        }
                        (Some(path), false) => {
                            pool_planes_using::<T, T, false, false>(pooling, &xs, &mut ys, &mut is, path)
                        }
                        (None, true) => tables.as_ref().is_some_and(|t| {
                            plane_registers::pool_planes::<T, T, true, true>(t, &xs, &mut ys, &mut is)
                        }),
                        (None, false) => tables.as_ref().is_some_and(|t| {
                            plane_registers::pool_planes::<T, T, false, false>(t, &xs, &mut ys, &mut is)
                        }),
                    };
                    if !done {
                        match path {
                            Some(_) => assert!(
                                !applies::<T>(layout.rows * layout.cols),
                                "the lanes declined {layout:?}"
                            ),
                            None => assert!(
                                !plane_registers::applies::<T, T>(plane),
                                "the registers declined {layout:?}"
                            ),
                        }
                        continue;
                    }
                    let what = format!("{:?} {layout:?} {path:?} (None: registers)", T::DTYPE);
                    for (k, (a, b)) in ys.iter().zip(&want).enumerate() {
                        assert!(same(*a, *b), "{what}: output {k}: {a:?} vs {b:?}");
                    }
                    if max {
                        assert_eq!(is, want_is, "{what}: indices");
                    }
                    if let (Some(path), true) = (path, max) {
                        // Max without indices: its own kernels (7x7 -> 2x2 fused with the
                        // scatter).
                        let mut ys = vec![T::from_f64(7.0); want.len()];
                        assert!(pool_planes_using::<T, T, true, false>(pooling, &xs, &mut ys, &mut [], path));
                        for (k, (a, b)) in ys.iter().zip(&want).enumerate() {
                            assert!(same(*a, *b), "{what} without indices: output {k}: {a:?} vs {b:?}");
                        }
                    }
                }
            }
        }
    }

    /// Adaptive pooling's windows from `h x w` to `oh x ow` (PyTorch's bounds).
    fn adaptive(h: usize, w: usize, oh: usize, ow: usize) -> Vec<LaneWindow> {
        let bounds = |o: usize, out: usize, n: usize| (o * n / out, ((o + 1) * n).div_ceil(out));
        (0..oh * ow)
            .map(|k| {
                let ((h0, h1), (w0, w1)) = (bounds(k / ow, oh, h), bounds(k % ow, ow, w));
                LaneWindow {
                    h: (h0, h1, 1),
                    w: (w0, w1, 1),
                    first: (h0 * w + w0) as i32,
                    div: ((h1 - h0) as f32, (w1 - w0) as f32),
                }
            })
            .collect()
    }

    /// The row registers take the planes at most 8 wide: up to four outputs in one chunk,
    /// more in one chunk per output row (split in fours) where those transpose at most twice
    /// as many rows as the plane has; 7x7 -> 2x2's masks compiled in.
    #[test]
    fn row_registers_apply_where_documented() {
        let takes =
            |layout: LanePlane, windows: Vec<LaneWindow>| PlanePooling::new(layout, windows).row_registers;
        let seven = takes(LanePlane::unpadded(7, 7), adaptive(7, 7, 2, 2)).unwrap();
        assert!(seven.seven_to_two);
        assert_eq!(seven.chunks.len(), 1);
        assert_eq!(seven.chunks[0].columns, SEVEN_TO_TWO_COLUMNS);
        assert_eq!(seven.chunks[0].row_outputs, SEVEN_TO_TWO_ROWS);
        assert!(seven.chunks[0].reciprocals.is_some());
        let narrow = takes(LanePlane::unpadded(5, 3), adaptive(5, 3, 1, 2)).unwrap();
        assert!(narrow.chunks[0].reciprocals.is_none());
        assert!(!takes(LanePlane::unpadded(8, 8), adaptive(8, 8, 2, 2)).unwrap().seven_to_two);
        assert!(takes(LanePlane::unpadded(7, 9), adaptive(7, 9, 2, 2)).is_none());
        // Six outputs in rows of two: three chunks of rows 0..3, 2..5, 4..7 (9 transposes).
        let three_by_two = takes(LanePlane::unpadded(7, 7), adaptive(7, 7, 3, 2)).unwrap();
        let spans: Vec<_> =
            three_by_two.chunks.iter().map(|c| (c.first_output, c.first_row, c.row_outputs.len())).collect();
        assert_eq!(spans, [(0, 0, 3), (2, 2, 3), (4, 4, 3)]);
        // 3x3 stride 2 padding 1 on 7x7: 4x4 outputs, a chunk per output row, the padding
        // row and column left out: rows 0..2, 1..4, 3..6, 5..7 (11 transposes), the first
        // output's columns 0 and 1.
        let (padded, windows) = windowed(7, 7, [3, 2, 1, 1], 0.0);
        let stride_two = takes(padded, windows).unwrap();
        let spans: Vec<_> = stride_two.chunks.iter().map(|c| (c.first_row, c.row_outputs.len())).collect();
        assert_eq!(spans, [(0, 2), (1, 3), (3, 3), (5, 2)]);
        assert_eq!(stride_two.chunks[0].columns, [0b11, 0b1110, 0b11_1000, 0b110_0000]);
        assert_eq!(stride_two.columns, Some(SEVEN_WIDE_3X3_S2_P1_COLUMNS));
        assert_eq!(stride_two.chunks[0].row_outputs, [15, 15]);
        let (unpadded, windows) = windowed(7, 7, [2, 2, 0, 1], 0.0);
        assert_eq!(takes(unpadded, windows).unwrap().columns, Some(SEVEN_WIDE_2X2_S2_COLUMNS));
        // Adaptive 7x7 -> 3x2's rows of two take the same columns; 7x7 -> 2x2 is one chunk.
        assert_eq!(three_by_two.columns, Some([0x0f, 0x78, 0, 0]));
        // 3x3 stride 1 padding 1 on 7x7: 7x7 outputs, chunks of four and three per row, 38
        // transposes for 7 rows: the lanes.
        let (padded, windows) = windowed(7, 7, [3, 1, 1, 1], 0.0);
        assert!(takes(padded, windows).is_none());
        let (unpadded, windows) = windowed(4, 4, [2, 2, 0, 1], 0.0);
        assert!(takes(unpadded, windows).is_some());
    }

    #[test]
    fn every_path_matches_the_plain_loop_bit_for_bit() {
        all::<f32>();
        all::<bf16>();
        all::<half::f16>();
    }
}
