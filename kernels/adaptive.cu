// adaptive.cu: adaptive_avg_pool2d / adaptive_max_pool2d forward, both layouts.
// Window bounds are PyTorch's integer ones in 64 bits: start = (o/O)*I + ((o%O)*I)/O,
// end = 1 + ((o+1)*I - 1)/O. Avg is sum / (kh*kw), one division in the accumulator type.
// Max: -inf start, first tap's index, update if v > max || isnan(v); index h * W + w.
// A [1, 1] adaptive avg never gets here: src/cuda/adaptive.rs sends it to the reduction.
//   adaptive_{avg,max}_pool2d_nchw[_idx]  one thread per output, rows of its window in order.
//   adaptive_{avg,max}_pool2d_nhwc[_idx]  one thread per (n, oh, ow, 4 channels), loads along C.
#include "common.cuh"

// Mirrors AdaptiveParams in src/cuda/adaptive.rs.
struct AdaptiveParams {
    i64 n, c, h, w, out_h, out_w;
    int vec;  // NHWC: 4 or 1 channels per thread
    int pad_;
};

CUPOOL_DEV i64 adaptive_start(i64 o, i64 out, i64 in) { return (o / out) * in + ((o % out) * in) / out; }
CUPOOL_DEV i64 adaptive_end(i64 o, i64 out, i64 in) { return 1 + ((o + 1) * in - 1) / out; }

template <class D, bool IS_MAX, bool IDX>
CUPOOL_DEV void adaptive_nchw(const AdaptiveParams& p, const typename D::T* __restrict__ x,
                              typename D::T* __restrict__ y, i64* __restrict__ ind) {
    typedef typename D::T T;
    typedef typename D::Acc Acc;
    const i64 out = global_thread_index();
    if (out >= p.n * p.c * p.out_h * p.out_w) return;
    const i64 ow = out % p.out_w;
    const i64 oh = (out / p.out_w) % p.out_h;
    const i64 plane = out / (p.out_w * p.out_h);
    const i64 h0 = adaptive_start(oh, p.out_h, p.h), h1 = adaptive_end(oh, p.out_h, p.h);
    const i64 w0 = adaptive_start(ow, p.out_w, p.w), w1 = adaptive_end(ow, p.out_w, p.w);
    const T* xp = x + plane * p.h * p.w;
    if (IS_MAX) {
        Acc m = neg_infinity<Acc>();
        i64 best = h0 * p.w + w0;
        for (i64 h = h0; h < h1; ++h) {
            for (i64 w = w0; w < w1; ++w) {
                const Acc v = D::to_acc(gload(xp + h * p.w + w));
                if (v > m || is_nan(v)) {
                    m = v;
                    best = h * p.w + w;
                }
            }
        }
        gstore(y + out, D::from_acc(m));
        if (IDX) gstore(ind + out, best);
    } else {
        Acc s = Acc(0);
        for (i64 h = h0; h < h1; ++h)
            for (i64 w = w0; w < w1; ++w) s += D::to_acc(gload(xp + h * p.w + w));
        gstore(y + out, D::from_acc(s / (Acc)((h1 - h0) * (w1 - w0))));
    }
}

template <class D, bool IS_MAX, bool IDX, int VEC>
CUPOOL_DEV void adaptive_nhwc(const AdaptiveParams& p, const typename D::T* __restrict__ x,
                              typename D::T* __restrict__ y, i64* __restrict__ ind) {
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
    const i64 h0 = adaptive_start(oh, p.out_h, p.h), h1 = adaptive_end(oh, p.out_h, p.h);
    const i64 w0 = adaptive_start(ow, p.out_w, p.w), w1 = adaptive_end(ow, p.out_w, p.w);
    const T* xn = x + n * p.h * p.w * p.c + c;
    const i64 out = ((n * p.out_h + oh) * p.out_w + ow) * p.c + c;
    Acc acc[VEC];
    i64 best[VEC];
    nhwc_window<D, IS_MAX, VEC>(xn, p.w, p.c, h0, h1, 1, w0, w1, 1, acc, best);
    const Acc div = (Acc)((h1 - h0) * (w1 - w0));
    Lanes<VEC, T> res;
CUPOOL_UNROLL
    for (int v = 0; v < VEC; ++v) {
        res.e[v] = D::from_acc(IS_MAX ? acc[v] : acc[v] / div);
        if (IS_MAX && IDX) gstore(ind + out + v, best[v]);
    }
    store_lanes(y + out, res);
}

template <class D, bool IS_MAX, bool IDX>
CUPOOL_DEV void adaptive_nhwc_dispatch(const AdaptiveParams& p, const typename D::T* x, typename D::T* y, i64* ind) {
    if (p.vec == 4) {
        adaptive_nhwc<D, IS_MAX, IDX, 4>(p, x, y, ind);
    } else {
        adaptive_nhwc<D, IS_MAX, IDX, 1>(p, x, y, ind);
    }
}

#define CUPOOL_ADAPTIVE_KERNELS(sfx, D)                                                                          \
    extern "C" __global__ void adaptive_avg_pool2d_nchw_##sfx(AdaptiveParams p, const D::T* __restrict__ x,     \
                                                              D::T* __restrict__ y) {                          \
        adaptive_nchw<D, false, false>(p, x, y, 0);                                                              \
    }                                                                                                            \
    CUPOOL_REGISTER_KERNEL(adaptive_avg_pool2d_nchw_##sfx);                                                      \
    extern "C" __global__ void adaptive_avg_pool2d_nhwc_##sfx(AdaptiveParams p, const D::T* __restrict__ x,     \
                                                              D::T* __restrict__ y) {                          \
        adaptive_nhwc_dispatch<D, false, false>(p, x, y, 0);                                                     \
    }                                                                                                            \
    CUPOOL_REGISTER_KERNEL(adaptive_avg_pool2d_nhwc_##sfx);                                                      \
    extern "C" __global__ void adaptive_max_pool2d_nchw_##sfx(AdaptiveParams p, const D::T* __restrict__ x,     \
                                                              D::T* __restrict__ y) {                          \
        adaptive_nchw<D, true, false>(p, x, y, 0);                                                               \
    }                                                                                                            \
    CUPOOL_REGISTER_KERNEL(adaptive_max_pool2d_nchw_##sfx);                                                      \
    extern "C" __global__ void adaptive_max_pool2d_nchw_idx_##sfx(AdaptiveParams p, const D::T* __restrict__ x, \
                                                                  D::T* __restrict__ y, i64* __restrict__ ind) { \
        adaptive_nchw<D, true, true>(p, x, y, ind);                                                              \
    }                                                                                                            \
    CUPOOL_REGISTER_KERNEL(adaptive_max_pool2d_nchw_idx_##sfx);                                                  \
    extern "C" __global__ void adaptive_max_pool2d_nhwc_##sfx(AdaptiveParams p, const D::T* __restrict__ x,     \
                                                              D::T* __restrict__ y) {                          \
        adaptive_nhwc_dispatch<D, true, false>(p, x, y, 0);                                                      \
    }                                                                                                            \
    CUPOOL_REGISTER_KERNEL(adaptive_max_pool2d_nhwc_##sfx);                                                      \
    extern "C" __global__ void adaptive_max_pool2d_nhwc_idx_##sfx(AdaptiveParams p, const D::T* __restrict__ x, \
                                                                  D::T* __restrict__ y, i64* __restrict__ ind) { \
        adaptive_nhwc_dispatch<D, true, true>(p, x, y, ind);                                                     \
    }                                                                                                            \
    CUPOOL_REGISTER_KERNEL(adaptive_max_pool2d_nhwc_idx_##sfx);

CUPOOL_FOR_EACH_DTYPE(CUPOOL_ADAPTIVE_KERNELS)
