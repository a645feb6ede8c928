// pool2d.cu: windowed avg_pool2d / max_pool2d forward, both layouts, exact PyTorch rules.
// Launch planning is in src/cuda/window.rs; WindowParams mirrors its #[repr(C)] struct.
//
//   {avg,max}_pool2d_nchw[_idx]        a block covers `tile_rows` output rows of one plane, or
//                                      `planes_per_block` whole small planes; the input rows they
//                                      need (tile + halo) are one contiguous span, staged in
//                                      shared memory with aligned 128-bit loads.
//   {avg,max}_pool2d_nchw_direct[_idx] one thread per output, reading global memory: planes whose
//                                      rows do not fit in shared memory.
//   {avg,max}_pool2d_nhwc[_idx]        one thread per (n, oh, ow, 4 channels): loads along C.
// Max: start at -inf with the first in-bounds tap's index, update if v > max || isnan(v) (a NaN
// wins, the last NaN's index is kept, ties keep the first). Indices are h * W + w in the plane.
#include "common.cuh"

// Mirrors WindowParams in src/cuda/window.rs.
struct WindowParams {
    i64 n, c, h, w, out_h, out_w;
    i64 kh, kw, sh, sw, ph, pw, dh, dw;
    i64 divisor_override;
    i64 tile_rows;         // output rows per block (tiled NCHW)
    i64 tiles_per_plane;   // blocks per plane (tiled NCHW)
    i64 planes_per_block;  // whole planes per block (tiled NCHW; > 1 only with one tile per plane)
    int count_include_pad;
    int has_override;
    int vec;  // NHWC: 4 or 1 channels per thread
    int pad_;
};

// PyTorch's average window along one axis: clipped [start, end) and the pool extent that counts
// padding but not ceil-mode overhang.
CUPOOL_DEV void avg_axis(i64 o, i64 s, i64 pad, i64 k, i64 size, i64& start, i64& end, i64& pool) {
    i64 st = o * s - pad;
    i64 en = st + k < size + pad ? st + k : size + pad;
    pool = en - st;
    if (st < 0) st = 0;
    if (en > size) en = size;
    if (en < st) en = st;
    start = st;
    end = en;
}

// PyTorch's max taps along one axis: first in-bounds tap and the (exclusive) end, step dil.
CUPOOL_DEV void max_axis(i64 o, i64 s, i64 pad, i64 k, i64 dil, i64 size, i64& start, i64& end) {
    i64 st = o * s - pad;
    i64 en = st + (k - 1) * dil + 1;
    if (en > size) en = size;
    while (st < 0) st += dil;
    if (en < st) en = st;
    start = st;
    end = en;
}

// The divisor of window (oh, ow), and its clipped bounds.
CUPOOL_DEV i64 avg_window(const WindowParams& p, i64 oh, i64 ow, i64& h0, i64& h1, i64& w0, i64& w1) {
    i64 poolh, poolw;
    avg_axis(oh, p.sh, p.ph, p.kh, p.h, h0, h1, poolh);
    avg_axis(ow, p.sw, p.pw, p.kw, p.w, w0, w1, poolw);
    if (p.has_override) return p.divisor_override;
    if (p.count_include_pad) return poolh * poolw;
    return (h1 - h0) * (w1 - w0);
}

// Element (h, w) of a plane staged in shared memory: rows [r0, ...) at s[(h - r0) * W + w - shift].
template <typename T>
struct SharedRows {
    const T* s;
    i64 base;  // s index of (r0, 0)
    i64 r0;
    i64 w;
    CUPOOL_DEV T at(i64 h, i64 x) const { return s[base + (h - r0) * w + x]; }
};

// Element (h, w) of a plane in global memory.
template <typename T>
struct GlobalPlane {
    const T* p;
    i64 w;
    CUPOOL_DEV T at(i64 h, i64 x) const { return gload(p + h * w + x); }
};

template <class D, class Src>
CUPOOL_DEV typename D::T avg_output(const WindowParams& p, const Src& src, i64 oh, i64 ow) {
    typedef typename D::Acc Acc;
    i64 h0, h1, w0, w1;
    const i64 div = avg_window(p, oh, ow, h0, h1, w0, w1);
    if (h0 >= h1 || w0 >= w1) return D::from_acc(Acc(0));  // PyTorch's guard; unreachable when valid
    Acc s = Acc(0);
    for (i64 h = h0; h < h1; ++h)
        for (i64 x = w0; x < w1; ++x) s += D::to_acc(src.at(h, x));
    return D::from_acc(s / (Acc)div);
}

template <class D, class Src>
CUPOOL_DEV typename D::T max_output(const WindowParams& p, const Src& src, i64 oh, i64 ow, i64& index) {
    typedef typename D::Acc Acc;
    i64 h0, h1, w0, w1;
    max_axis(oh, p.sh, p.ph, p.kh, p.dh, p.h, h0, h1);
    max_axis(ow, p.sw, p.pw, p.kw, p.dw, p.w, w0, w1);
    Acc m = neg_infinity<Acc>();
    i64 best = h0 * p.w + w0;
    for (i64 h = h0; h < h1; h += p.dh) {
        for (i64 x = w0; x < w1; x += p.dw) {
            const Acc v = D::to_acc(src.at(h, x));
            if (v > m || is_nan(v)) {
                m = v;
                best = h * p.w + x;
            }
        }
    }
    index = best;
    return D::from_acc(m);
}

// Tiled NCHW: block = (plane, tile of output rows), or a run of `planes_per_block` whole planes
// (small planes: one 7x7 plane has 9 to 49 outputs, far too few for a block of its own).
// IS_MAX selects the op, IDX the index output.
template <class D, bool IS_MAX, bool IDX>
CUPOOL_DEV void pool_nchw_tiled(const WindowParams& p, const typename D::T* __restrict__ x,
                                typename D::T* __restrict__ y, i64* __restrict__ ind) {
    typedef typename D::T T;
    const i64 planes = p.n * p.c;
    const i64 plane0 = (i64)blockIdx.x / p.tiles_per_plane * p.planes_per_block;
    const i64 plane1 = plane0 + p.planes_per_block < planes ? plane0 + p.planes_per_block : planes;
    const i64 tile = (i64)blockIdx.x % p.tiles_per_plane;
    const i64 oh0 = tile * p.tile_rows;
    const i64 oh1 = oh0 + p.tile_rows < p.out_h ? oh0 + p.tile_rows : p.out_h;
    // The input rows the tile's windows touch (the halo included), clipped to the plane.
    i64 r0 = oh0 * p.sh - p.ph;
    if (r0 < 0) r0 = 0;
    i64 r1 = (oh1 - 1) * p.sh - p.ph + (p.kh - 1) * p.dh + 1;
    if (r1 > p.h) r1 = p.h;
    if (r1 < r0) r1 = r0;
    const i64 plane_len = p.h * p.w;
    // Rows [r0, r1) of the first plane to the same rows of the last: one contiguous span.
    const i64 e0 = plane0 * plane_len + r0 * p.w;
    T* s = reinterpret_cast<T*>(dynamic_smem());
    const i64 first = stage_span_to_shared(x, e0, (plane1 - 1) * plane_len + r1 * p.w, planes * plane_len, s);
    // A block's outputs number under 2^31 (the planner checks), so the per-output index
    // arithmetic is 32-bit (nvcc's 64-bit division tests at run time for 32-bit operands, a
    // test and a branch per division this skips).
    const unsigned out_w = (unsigned)p.out_w;
    const unsigned per_plane = (unsigned)((oh1 - oh0) * p.out_w);
    const unsigned count = (unsigned)(plane1 - plane0) * per_plane;
    for (unsigned k = threadIdx.x; k < count; k += blockDim.x) {
        const unsigned q = k / per_plane;  // plane offset within the block
        const unsigned rem = k - q * per_plane;
        const i64 oh = oh0 + rem / out_w;
        const i64 ow = rem % out_w;
        const i64 out = ((plane0 + q) * p.out_h + oh) * p.out_w + ow;
        SharedRows<T> src;
        src.s = s;
        src.base = e0 - first + (i64)q * plane_len;
        src.r0 = r0;
        src.w = p.w;
        if (IS_MAX) {
            i64 index;
            gstore(y + out, max_output<D>(p, src, oh, ow, index));
            if (IDX) gstore(ind + out, index);
        } else {
            gstore(y + out, avg_output<D>(p, src, oh, ow));
        }
    }
}

// Direct NCHW: one thread per output.
template <class D, bool IS_MAX, bool IDX>
CUPOOL_DEV void pool_nchw_direct(const WindowParams& p, const typename D::T* __restrict__ x,
                                 typename D::T* __restrict__ y, i64* __restrict__ ind) {
    const i64 out = global_thread_index();
    if (out >= p.n * p.c * p.out_h * p.out_w) return;
    const i64 ow = out % p.out_w;
    const i64 oh = (out / p.out_w) % p.out_h;
    const i64 plane = out / (p.out_w * p.out_h);
    GlobalPlane<typename D::T> src;
    src.p = x + plane * p.h * p.w;
    src.w = p.w;
    if (IS_MAX) {
        i64 index;
        gstore(y + out, max_output<D>(p, src, oh, ow, index));
        if (IDX) gstore(ind + out, index);
    } else {
        gstore(y + out, avg_output<D>(p, src, oh, ow));
    }
}

// NHWC: one thread per (n, oh, ow, group of VEC channels); loads run along C.
template <class D, bool IS_MAX, bool IDX, int VEC>
CUPOOL_DEV void pool_nhwc(const WindowParams& p, const typename D::T* __restrict__ x, typename D::T* __restrict__ y,
                          i64* __restrict__ ind) {
    typedef typename D::T T;
    typedef typename D::Acc Acc;
    const i64 ncv = p.c / VEC;
    const i64 idx = global_thread_index();
    if (idx >= p.n * p.out_h * p.out_w * ncv) return;
    const i64 c = (idx % ncv) * VEC;
    i64 rest = idx / ncv;
    const i64 ow = rest % p.out_w;
    rest /= p.out_w;
    const i64 oh = rest % p.out_h;
    const i64 n = rest / p.out_h;
    const T* xn = x + n * p.h * p.w * p.c + c;
    const i64 out = ((n * p.out_h + oh) * p.out_w + ow) * p.c + c;
    Acc acc[VEC];
    i64 best[VEC];
    Lanes<VEC, T> res;
    if (IS_MAX) {
        i64 h0, h1, w0, w1;
        max_axis(oh, p.sh, p.ph, p.kh, p.dh, p.h, h0, h1);
        max_axis(ow, p.sw, p.pw, p.kw, p.dw, p.w, w0, w1);
        nhwc_window<D, true, VEC>(xn, p.w, p.c, h0, h1, p.dh, w0, w1, p.dw, acc, best);
CUPOOL_UNROLL
        for (int v = 0; v < VEC; ++v) {
            res.e[v] = D::from_acc(acc[v]);
            if (IDX) gstore(ind + out + v, best[v]);
        }
    } else {
        i64 h0, h1, w0, w1;
        const i64 div = avg_window(p, oh, ow, h0, h1, w0, w1);
        nhwc_window<D, false, VEC>(xn, p.w, p.c, h0, h1, 1, w0, w1, 1, acc, best);
        const bool empty = h0 >= h1 || w0 >= w1;  // PyTorch's guard; unreachable when valid
CUPOOL_UNROLL
        for (int v = 0; v < VEC; ++v) res.e[v] = D::from_acc(empty ? Acc(0) : acc[v] / (Acc)div);
    }
    store_lanes(y + out, res);
}

template <class D, bool IS_MAX, bool IDX>
CUPOOL_DEV void pool_nhwc_dispatch(const WindowParams& p, const typename D::T* x, typename D::T* y, i64* ind) {
    if (p.vec == 4) {
        pool_nhwc<D, IS_MAX, IDX, 4>(p, x, y, ind);
    } else {
        pool_nhwc<D, IS_MAX, IDX, 1>(p, x, y, ind);
    }
}

#define CUPOOL_POOL_KERNELS(sfx, D)                                                                               \
    extern "C" __global__ void avg_pool2d_nchw_##sfx(WindowParams p, const D::T* __restrict__ x,                 \
                                                     D::T* __restrict__ y) {                                     \
        pool_nchw_tiled<D, false, false>(p, x, y, 0);                                                             \
    }                                                                                                             \
    CUPOOL_REGISTER_KERNEL(avg_pool2d_nchw_##sfx);                                                                \
    extern "C" __global__ void avg_pool2d_nchw_direct_##sfx(WindowParams p, const D::T* __restrict__ x,          \
                                                            D::T* __restrict__ y) {                              \
        pool_nchw_direct<D, false, false>(p, x, y, 0);                                                            \
    }                                                                                                             \
    CUPOOL_REGISTER_KERNEL(avg_pool2d_nchw_direct_##sfx);                                                         \
    extern "C" __global__ void avg_pool2d_nhwc_##sfx(WindowParams p, const D::T* __restrict__ x,                 \
                                                     D::T* __restrict__ y) {                                     \
        pool_nhwc_dispatch<D, false, false>(p, x, y, 0);                                                          \
    }                                                                                                             \
    CUPOOL_REGISTER_KERNEL(avg_pool2d_nhwc_##sfx);                                                                \
    extern "C" __global__ void max_pool2d_nchw_##sfx(WindowParams p, const D::T* __restrict__ x,                 \
                                                     D::T* __restrict__ y) {                                     \
        pool_nchw_tiled<D, true, false>(p, x, y, 0);                                                              \
    }                                                                                                             \
    CUPOOL_REGISTER_KERNEL(max_pool2d_nchw_##sfx);                                                                \
    extern "C" __global__ void max_pool2d_nchw_idx_##sfx(WindowParams p, const D::T* __restrict__ x,             \
                                                         D::T* __restrict__ y, i64* __restrict__ ind) {          \
        pool_nchw_tiled<D, true, true>(p, x, y, ind);                                                             \
    }                                                                                                             \
    CUPOOL_REGISTER_KERNEL(max_pool2d_nchw_idx_##sfx);                                                            \
    extern "C" __global__ void max_pool2d_nchw_direct_##sfx(WindowParams p, const D::T* __restrict__ x,          \
                                                            D::T* __restrict__ y) {                              \
        pool_nchw_direct<D, true, false>(p, x, y, 0);                                                             \
    }                                                                                                             \
    CUPOOL_REGISTER_KERNEL(max_pool2d_nchw_direct_##sfx);                                                         \
    extern "C" __global__ void max_pool2d_nchw_direct_idx_##sfx(WindowParams p, const D::T* __restrict__ x,      \
                                                                D::T* __restrict__ y, i64* __restrict__ ind) {   \
        pool_nchw_direct<D, true, true>(p, x, y, ind);                                                            \
    }                                                                                                             \
    CUPOOL_REGISTER_KERNEL(max_pool2d_nchw_direct_idx_##sfx);                                                     \
    extern "C" __global__ void max_pool2d_nhwc_##sfx(WindowParams p, const D::T* __restrict__ x,                 \
                                                     D::T* __restrict__ y) {                                     \
        pool_nhwc_dispatch<D, true, false>(p, x, y, 0);                                                           \
    }                                                                                                             \
    CUPOOL_REGISTER_KERNEL(max_pool2d_nhwc_##sfx);                                                                \
    extern "C" __global__ void max_pool2d_nhwc_idx_##sfx(WindowParams p, const D::T* __restrict__ x,             \
                                                         D::T* __restrict__ y, i64* __restrict__ ind) {          \
        pool_nhwc_dispatch<D, true, true>(p, x, y, ind);                                                          \
    }                                                                                                             \
    CUPOOL_REGISTER_KERNEL(max_pool2d_nhwc_idx_##sfx);

CUPOOL_FOR_EACH_DTYPE(CUPOOL_POOL_KERNELS)
