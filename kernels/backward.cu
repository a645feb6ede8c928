// backward.cu: backward passes of every pooling op, as gathers: one thread per run of four
// input elements of a row (NCHW) or per input position and group of `vec` channels (NHWC). Each
// element sums, in ascending (oh, ow) order from zero in the accumulator type, the outputs whose
// windows cover it, and rounds once. No atomics touch data, so results repeat bit for bit; the
// order is the CPU backend's (src/cpu/backward.rs), so both agree bit for bit too.
//
//   avg_pool2d_backward_{nchw,nhwc}            adds g / divisor (PyTorch's rule) per output
//   max_pool2d_backward_{nchw,nhwc}            adds g where indices[o] == h * W + w
//   max_pool2d_backward_audit_{nchw,nhwc}      checks the indices first (below)
//   adaptive_avg_pool2d_backward_{nchw,nhwc}   adds g / (kh * kw)
//   adaptive_max_pool2d_backward_{nchw,nhwc}   as max, over adaptive windows (and its audit)
//   broadcast_divide                           grad_in[i] = grad_out[strided(i)] / divisor
//
// Max backward is a scatter (grad_in[indices[o]] += g, as PyTorch's CPU kernel and the CPU
// backend add): the gather sees only the outputs whose window covers its element, so an index
// outside its output's window would be lost (PyTorch's CUDA kernels lose it). That happens with
// indices a caller made up, and with max_pool2d's own where a dilated window holds no input
// element at all (PyTorch then names the element at its first in-bounds row and column, which
// lies outside the window). So each max backward first runs `*_audit`, one thread per output:
// it stores 1 to `flag` for an index outside [0, H*W), and 1 to `orphans[plane]` for one
// outside its window; the gather's threads in such a plane then scan every output of it, in
// the same ascending order (the same bits). Several threads may store the same 1: a benign
// race on those flags only, never on data.
// Launch planning is in src/cuda/backward.rs; BackwardParams mirrors its #[repr(C)] struct.
#include "common.cuh"

// Mirrors BackwardParams in src/cuda/backward.rs (8-byte fields first, no padding).
struct BackwardParams {
    i64 n, c, h, w, out_h, out_w;
    i64 kh, kw, sh, sw, ph, pw, dh, dw;
    i64 divisor_override;
    i64 total;  // work items: runs of CUPOOL_BWD_RUN elements of a row (NCHW), or input positions x
                // channel groups (NHWC), or outputs (the audits)
    int count_include_pad;
    int has_override;
    int vec;  // NHWC: 4 or 1 channels per thread
    int pad_;
};

// Outputs [lo, hi) whose window (extent `reach` from o * s - pad) contains input coordinate i.
CUPOOL_DEV void window_range(i64 i, i64 s, i64 pad, i64 reach, i64 out, i64& lo, i64& hi) {
    const i64 ip = i + pad;
    lo = ip < reach ? 0 : (ip - reach) / s + 1;
    hi = ip / s + 1;
    if (hi > out) hi = out;
}

// PyTorch's adaptive bounds (as src/ops/adaptive.rs).
CUPOOL_DEV i64 adaptive_start(i64 o, i64 out, i64 in) { return (o / out) * in + ((o % out) * in) / out; }
CUPOOL_DEV i64 adaptive_end(i64 o, i64 out, i64 in) { return 1 + ((o + 1) * in - 1) / out; }

// Outputs [lo, hi) that may cover input coordinate i of an adaptive pool (callers test each).
CUPOOL_DEV void adaptive_range(i64 i, i64 in, i64 out, i64& lo, i64& hi) {
    lo = (i * out) / in;
    hi = ((i + 1) * out + in - 1) / in;
    if (hi > out) hi = out;
}

// PyTorch's avg divisor of output (oh, ow): pool extent counts padding (not ceil overhang).
CUPOOL_DEV i64 avg_divisor(const BackwardParams& p, i64 oh, i64 ow) {
    if (p.has_override) return p.divisor_override;
    i64 hs = oh * p.sh - p.ph, ws = ow * p.sw - p.pw;
    i64 he = hs + p.kh < p.h + p.ph ? hs + p.kh : p.h + p.ph;
    i64 we = ws + p.kw < p.w + p.pw ? ws + p.kw : p.w + p.pw;
    if (p.count_include_pad) return (he - hs) * (we - ws);
    if (hs < 0) hs = 0;
    if (ws < 0) ws = 0;
    if (he > p.h) he = p.h;
    if (we > p.w) we = p.w;
    return (he - hs) * (we - ws);
}

// Which backward a kernel computes.
enum BwdKind { AVG = 0, MAX = 1, ADAPTIVE_AVG = 2, ADAPTIVE_MAX = 3 };

// Outputs [lo, hi) along one axis whose windows may cover input coordinate i, for kind K (the
// adaptive kinds test each candidate): `in` inputs and `out` outputs along the axis, window
// `k`, stride `s`, padding `pad`, dilation `d` (the windowed kinds).
template <int K>
CUPOOL_DEV void covering_axis(i64 i, i64 in, i64 out, i64 k, i64 s, i64 pad, i64 d, i64& lo, i64& hi) {
    if (K == AVG) {
        window_range(i, s, pad, k, out, lo, hi);
    } else if (K == MAX) {
        window_range(i, s, pad, (k - 1) * d + 1, out, lo, hi);
    } else {
        adaptive_range(i, in, out, lo, hi);
    }
}
template <int K>
CUPOOL_DEV void covering_rows(const BackwardParams& p, i64 ih, i64& lo, i64& hi) {
    covering_axis<K>(ih, p.h, p.out_h, p.kh, p.sh, p.ph, p.dh, lo, hi);
}
template <int K>
CUPOOL_DEV void covering_cols(const BackwardParams& p, i64 iw, i64& lo, i64& hi) {
    covering_axis<K>(iw, p.w, p.out_w, p.kw, p.sw, p.pw, p.dw, lo, hi);
}

// The divisor of output (oh, ow) for the average kinds; 0 when (for adaptive) the output's
// window does not cover (ih, iw) along that axis and must be skipped.
template <int K>
CUPOOL_DEV i64 row_factor(const BackwardParams& p, i64 oh, i64 ih) {
    if (K == ADAPTIVE_AVG || K == ADAPTIVE_MAX) {
        const i64 s = adaptive_start(oh, p.out_h, p.h), e = adaptive_end(oh, p.out_h, p.h);
        return (s <= ih && ih < e) ? e - s : 0;
    }
    return 1;
}
template <int K>
CUPOOL_DEV i64 col_factor(const BackwardParams& p, i64 ow, i64 iw) {
    if (K == ADAPTIVE_AVG || K == ADAPTIVE_MAX) {
        const i64 s = adaptive_start(ow, p.out_w, p.w), e = adaptive_end(ow, p.out_w, p.w);
        return (s <= iw && iw < e) ? e - s : 0;
    }
    return 1;
}

// One input element (or `V` channels of one position). `go`/`ind` point at the output plane
// (NCHW, stride 1 per output, `ostride` = 1) or the image's first output channel group (NHWC,
// `ostride` = C). `self_index` = ih * W + iw.
// `scan_all` (max kinds, a plane with an index outside its window): every output of the plane,
// not only the covering ones.
template <class D, int K, int V>
CUPOOL_DEV Lanes<V, typename D::T> gather_one(const BackwardParams& p, const typename D::T* go, const i64* ind, i64 ostride,
                                             i64 ih, i64 iw, bool scan_all) {
    typedef typename D::Acc Acc;
    Acc acc[V];
CUPOOL_UNROLL
    for (int k = 0; k < V; ++k) acc[k] = (Acc)0;
    i64 oh0 = 0, oh1 = p.out_h, ow0 = 0, ow1 = p.out_w;
    if (!scan_all) {
        covering_rows<K>(p, ih, oh0, oh1);
        covering_cols<K>(p, iw, ow0, ow1);
    }
    const i64 self_index = ih * p.w + iw;
    for (i64 oh = oh0; oh < oh1; ++oh) {
        const i64 rf = scan_all ? 1 : row_factor<K>(p, oh, ih);
        if (rf == 0) continue;
        for (i64 ow = ow0; ow < ow1; ++ow) {
            const i64 cf = scan_all ? 1 : col_factor<K>(p, ow, iw);
            if (cf == 0) continue;
            const i64 o = (oh * p.out_w + ow) * ostride;
            const Lanes<V, typename D::T> g = load_lanes<V>(go + o);
            if (K == AVG || K == ADAPTIVE_AVG) {
                const Acc div = K == AVG ? (Acc)avg_divisor(p, oh, ow) : (Acc)(rf * cf);
CUPOOL_UNROLL
                for (int k = 0; k < V; ++k) acc[k] += D::to_acc(g.e[k]) / div;
            } else {
                const Lanes<V, i64> idx = load_lanes<V>(ind + o);
CUPOOL_UNROLL
                for (int k = 0; k < V; ++k) {
                    if (idx.e[k] == self_index) acc[k] += D::to_acc(g.e[k]);
                }
            }
        }
    }
    Lanes<V, typename D::T> r;
CUPOOL_UNROLL
    for (int k = 0; k < V; ++k) r.e[k] = D::from_acc(acc[k]);
    return r;
}

// Input elements per NCHW work item: a run along one row (the planner's NCHW_RUN).
#define CUPOOL_BWD_RUN 4

// Whether output column `ow` (its window's columns) covers input column `iw`, for the average
// kinds; `ws`/`we` are that window's first and one-past-last columns.
CUPOOL_DEV bool covers(i64 ws, i64 we, i64 iw) { return ws <= iw && iw < we; }

// NCHW: one work item per run of up to CUPOOL_BWD_RUN consecutive input elements of one row
// (`p.total` = N * C * H * ceil(W / RUN) items). The run shares the index decode, the output
// rows that cover it, and each output's grad (and index, and divisor) load; each element still
// sums exactly the outputs that cover it, in ascending (oh, ow) order, so the bits are those of
// one element per thread. That version did seven 64-bit divisions per element, and on an H200
// it ran the seed's backward at PyTorch's speed, 5% to 8% of the copy bandwidth, which points at
// index arithmetic rather than memory (this version is not yet timed on a GPU).
// The outputs visited are those covering any element of the run; for the max kinds an output
// adds to element k only where its index names k, which (outside `scan_all` planes, where every
// index lies in its own window) picks out the same outputs as the window test would.
// `orphans`: per plane (n * C + c), nonzero where the audit found an index outside its window;
// null for the average kinds.
template <class D, int K>
CUPOOL_DEV void backward_nchw(const BackwardParams& p, const typename D::T* go, const i64* ind, const i64* orphans,
                              typename D::T* gi) {
    typedef typename D::T T;
    typedef typename D::Acc Acc;
    const i64 runs_per_row = (p.w + CUPOOL_BWD_RUN - 1) / CUPOOL_BWD_RUN;
    const i64 step = (i64)gridDim.x * (i64)blockDim.x;
    for (i64 t = global_thread_index(); t < p.total; t += step) {
        const i64 row = t / runs_per_row;  // plane * H + ih
        const i64 iw0 = (t - row * runs_per_row) * CUPOOL_BWD_RUN;
        const i64 plane = row / p.h;
        const i64 ih = row - plane * p.h;
        const i64 len = p.w - iw0 < CUPOOL_BWD_RUN ? p.w - iw0 : CUPOOL_BWD_RUN;
        const i64 obase = plane * p.out_h * p.out_w;
        const bool scan_all = orphans && gload(orphans + plane) != 0;
        Acc acc[CUPOOL_BWD_RUN];
CUPOOL_UNROLL
        for (int k = 0; k < CUPOOL_BWD_RUN; ++k) acc[k] = (Acc)0;
        i64 oh0 = 0, oh1 = p.out_h, ow0 = 0, ow1 = p.out_w;
        if (!scan_all) {
            // Covering ranges move monotonically with the input column, so the run's union is
            // its first element's start to its last element's end.
            i64 unused;
            covering_rows<K>(p, ih, oh0, oh1);
            covering_cols<K>(p, iw0, ow0, unused);
            covering_cols<K>(p, iw0 + len - 1, unused, ow1);
        }
        const i64 self0 = ih * p.w + iw0;
        for (i64 oh = oh0; oh < oh1; ++oh) {
            const i64 rf = scan_all ? 1 : row_factor<K>(p, oh, ih);
            if (rf == 0) continue;
            const T* go_row = go + obase + oh * p.out_w;
            const i64* ind_row = ind ? ind + obase + oh * p.out_w : ind;
            for (i64 ow = ow0; ow < ow1; ++ow) {
                const Acc g = D::to_acc(gload(go_row + ow));
                if (K == AVG || K == ADAPTIVE_AVG) {
                    // The window's columns, and the divisor every element it covers uses.
                    i64 ws, we;
                    Acc div;
                    if (K == AVG) {
                        ws = ow * p.sw - p.pw;
                        we = ws + p.kw;
                        div = (Acc)avg_divisor(p, oh, ow);
                    } else {
                        ws = adaptive_start(ow, p.out_w, p.w);
                        we = adaptive_end(ow, p.out_w, p.w);
                        div = (Acc)(rf * (we - ws));
                    }
                    // One share for every element of the run it covers (the same quotient
                    // each element computed alone).
                    const Acc share = g / div;
CUPOOL_UNROLL
                    for (int k = 0; k < CUPOOL_BWD_RUN; ++k) {
                        if (k < len && covers(ws, we, iw0 + k)) acc[k] += share;
                    }
                } else {
                    const i64 idx = gload(ind_row + ow);
                    const i64 k = idx - self0;
CUPOOL_UNROLL
                    for (int j = 0; j < CUPOOL_BWD_RUN; ++j) {
                        if (k == j && j < len) acc[j] += g;
                    }
                }
            }
        }
        T* out = gi + row * p.w + iw0;
        Lanes<CUPOOL_BWD_RUN, T> r;
CUPOOL_UNROLL
        for (int k = 0; k < CUPOOL_BWD_RUN; ++k) r.e[k] = D::from_acc(acc[k]);
        if (len == CUPOOL_BWD_RUN && ((unsigned long long)out % sizeof(Pack4<T>)) == 0) {
            store_lanes<CUPOOL_BWD_RUN>(out, r);
        } else {
            for (int k = 0; k < len; ++k) gstore(out + k, r.e[k]);
        }
    }
}

template <class D, int K, int V>
CUPOOL_DEV void backward_nhwc_v(const BackwardParams& p, const typename D::T* go, const i64* ind, const i64* orphans,
                                typename D::T* gi) {
    const i64 groups = p.c / V;
    const i64 step = (i64)gridDim.x * (i64)blockDim.x;
    for (i64 t = global_thread_index(); t < p.total; t += step) {
        const i64 cg = t % groups;
        const i64 pos = t / groups;  // (n, ih, iw)
        const i64 iw = pos % p.w;
        const i64 ih = (pos / p.w) % p.h;
        const i64 n = pos / (p.w * p.h);
        const i64 obase = n * p.out_h * p.out_w * p.c + cg * V;
        bool scan_all = false;
        if (orphans) {
CUPOOL_UNROLL
            for (int k = 0; k < V; ++k) scan_all = scan_all || gload(orphans + n * p.c + cg * V + k) != 0;
        }
        const Lanes<V, typename D::T> r =
            gather_one<D, K, V>(p, go + obase, ind ? ind + obase : ind, p.c, ih, iw, scan_all);
        store_lanes<V>(gi + pos * p.c + cg * V, r);
    }
}

template <class D, int K>
CUPOOL_DEV void backward_nhwc(const BackwardParams& p, const typename D::T* go, const i64* ind, const i64* orphans,
                              typename D::T* gi) {
    if (p.vec == 4) {
        backward_nhwc_v<D, K, 4>(p, go, ind, orphans, gi);
    } else {
        backward_nhwc_v<D, K, 1>(p, go, ind, orphans, gi);
    }
}

// Whether input element `index` (in [0, H*W)) lies in output (oh, ow)'s window: the extent the
// gather's `covering` uses, so exactly the indices it sees.
template <int K>
CUPOOL_DEV bool in_window(const BackwardParams& p, i64 oh, i64 ow, i64 index) {
    const i64 ih = index / p.w, iw = index % p.w;
    if (K == MAX) {
        const i64 hs = oh * p.sh - p.ph, ws = ow * p.sw - p.pw;
        return hs <= ih && ih < hs + (p.kh - 1) * p.dh + 1 && ws <= iw && iw < ws + (p.kw - 1) * p.dw + 1;
    }
    return adaptive_start(oh, p.out_h, p.h) <= ih && ih < adaptive_end(oh, p.out_h, p.h) &&
           adaptive_start(ow, p.out_w, p.w) <= iw && iw < adaptive_end(ow, p.out_w, p.w);
}

// One thread per output element (`p.total` of them, NCHW or NHWC order as `nhwc`): see the
// header. Reads every index once.
template <int K>
CUPOOL_DEV void audit_indices(const BackwardParams& p, bool nhwc, const i64* ind, i64* flag, i64* orphans) {
    const i64 step = (i64)gridDim.x * (i64)blockDim.x;
    const i64 plane_size = p.h * p.w;
    for (i64 t = global_thread_index(); t < p.total; t += step) {
        i64 plane, oh, ow;
        if (nhwc) {
            const i64 c = t % p.c, pos = t / p.c;
            ow = pos % p.out_w;
            oh = (pos / p.out_w) % p.out_h;
            plane = (pos / (p.out_w * p.out_h)) * p.c + c;
        } else {
            ow = t % p.out_w;
            oh = (t / p.out_w) % p.out_h;
            plane = t / (p.out_w * p.out_h);
        }
        const i64 index = gload(ind + t);
        if (index < 0 || index >= plane_size) {
            gstore(flag, (i64)1);
        } else if (!in_window<K>(p, oh, ow, index)) {
            gstore(orphans + plane, (i64)1);
        }
    }
}

#define CUPOOL_AUDIT_KERNEL(name, K, NHWC)                                                                       \
    extern "C" __global__ void CUPOOL_BWD_BOUNDS name(BackwardParams p, const i64* __restrict__ ind, i64* flag, \
                                                      i64* orphans) {                                            \
        audit_indices<K>(p, NHWC, ind, flag, orphans);                                                           \
    }                                                                                                            \
    CUPOOL_REGISTER_KERNEL(name);

// Mirrors BroadcastParams in src/cuda/backward.rs: row-major `shape` (dims merged, size-1 dims
// dropped by the planner), grad_out strides per dim (0 = broadcast).
#define CUPOOL_MAX_BCAST_RANK 8
struct BroadcastParams {
    i64 shape[CUPOOL_MAX_BCAST_RANK];
    i64 strides[CUPOOL_MAX_BCAST_RANK];
    i64 total;
    double divisor;
    int rank;
    int pad_;
};

// Each thread writes four consecutive elements (one 16-byte store for f32): their multi-index is
// decoded once; a run inside one innermost row takes its offsets from that row's stride (one
// load and one division when it is 0), and a run across rows steps the index with carries,
// loading and dividing once per run of equal offsets (a mean over (H, W) repeats each one
// H * W times). Same quotient, same bits as one element per thread.
#define CUPOOL_BCAST_RUN 4
template <class D>
CUPOOL_DEV void broadcast_divide(const BroadcastParams& p, const typename D::T* go, typename D::T* gi) {
    typedef typename D::T T;
    typedef typename D::Acc Acc;
    const Acc div = (Acc)p.divisor;
    const i64 step = (i64)gridDim.x * (i64)blockDim.x * CUPOOL_BCAST_RUN;
    for (i64 t0 = global_thread_index() * CUPOOL_BCAST_RUN; t0 < p.total; t0 += step) {
        // Unrolled over the fixed rank bound (dims past p.rank have size 1, stride 0) so that
        // the multi-index stays in registers.
        i64 idx[CUPOOL_MAX_BCAST_RANK];
        i64 rest = t0, off = 0;
        // The innermost dim's index, size and stride, kept aside (indexing idx[] by the
        // run-time rank would put it in local memory).
        i64 col = 0, row_len = 1, col_stride = 0;
CUPOOL_UNROLL
        for (int d = CUPOOL_MAX_BCAST_RANK - 1; d >= 0; --d) {
            idx[d] = 0;
            if (d < p.rank) {
                idx[d] = rest % p.shape[d];
                rest /= p.shape[d];
                off += idx[d] * p.strides[d];
                if (d == p.rank - 1) {
                    col = idx[d];
                    row_len = p.shape[d];
                    col_stride = p.strides[d];
                }
            }
        }
        Lanes<CUPOOL_BCAST_RUN, T> run;
        if (t0 + CUPOOL_BCAST_RUN <= p.total && col + CUPOOL_BCAST_RUN <= row_len) {
            // The whole run lies in one innermost row (almost every run, where rows are long):
            // its offsets are off + v * col_stride, one value when that stride is 0 (a mean over
            // the innermost dims).
            if (col_stride == 0) {
                const T value = D::from_acc(D::to_acc(gload(go + off)) / div);
CUPOOL_UNROLL
                for (int v = 0; v < CUPOOL_BCAST_RUN; ++v) run.e[v] = value;
            } else {
CUPOOL_UNROLL
                for (int v = 0; v < CUPOOL_BCAST_RUN; ++v) {
                    run.e[v] = D::from_acc(D::to_acc(gload(go + off + v * col_stride)) / div);
                }
            }
        } else {
            i64 loaded = -1;
            T value = T();
CUPOOL_UNROLL
            for (int v = 0; v < CUPOOL_BCAST_RUN; ++v) {
                if (t0 + v < p.total) {
                    if (off != loaded) {
                        value = D::from_acc(D::to_acc(gload(go + off)) / div);
                        loaded = off;
                    }
                    run.e[v] = value;
                    // Step the multi-index by one element, innermost dim first.
                    bool carry = true;
CUPOOL_UNROLL
                    for (int d = CUPOOL_MAX_BCAST_RANK - 1; d >= 0; --d) {
                        if (carry && d < p.rank) {
                            off += p.strides[d];
                            if (++idx[d] < p.shape[d]) {
                                carry = false;
                            } else {
                                off -= p.strides[d] * p.shape[d];
                                idx[d] = 0;
                            }
                        }
                    }
                }
            }
        }
        if (t0 + CUPOOL_BCAST_RUN <= p.total && ((unsigned long long)(gi + t0) % sizeof(Pack4<T>)) == 0) {
            store_lanes<CUPOOL_BCAST_RUN>(gi + t0, run);
        } else {
CUPOOL_UNROLL
            for (int v = 0; v < CUPOOL_BCAST_RUN; ++v) {
                if (t0 + v < p.total) gstore(gi + t0 + v, run.e[v]);
            }
        }
    }
}

// 256 threads per block (the planner's BLOCK). The audit and broadcast kernels ask for four
// blocks per SM (at most 64 registers: 1024 threads in flight), which they fit without
// spilling. The gathers hold a run of four accumulators (and, NHWC, four indices) per thread
// and need up to 80 registers; any bound (even __launch_bounds__(256) alone, which ptxas reads
// as a hint to use 64) makes some of them spill, so they carry none.
#define CUPOOL_BWD_BOUNDS __launch_bounds__(256, 4)
#define CUPOOL_BWD_BOUNDS_GATHER

#define CUPOOL_BACKWARD_KERNELS(sfx, D)                                                                          \
    extern "C" __global__ void CUPOOL_BWD_BOUNDS_GATHER avg_pool2d_backward_nchw_##sfx(BackwardParams p, const D::T* __restrict__ go,     \
                                                              D::T* __restrict__ gi) {                           \
        backward_nchw<D, AVG>(p, go, 0, 0, gi);                                                                  \
    }                                                                                                            \
    CUPOOL_REGISTER_KERNEL(avg_pool2d_backward_nchw_##sfx);                                                      \
    extern "C" __global__ void CUPOOL_BWD_BOUNDS_GATHER avg_pool2d_backward_nhwc_##sfx(BackwardParams p, const D::T* __restrict__ go,     \
                                                              D::T* __restrict__ gi) {                           \
        backward_nhwc<D, AVG>(p, go, 0, 0, gi);                                                                  \
    }                                                                                                            \
    CUPOOL_REGISTER_KERNEL(avg_pool2d_backward_nhwc_##sfx);                                                      \
    extern "C" __global__ void CUPOOL_BWD_BOUNDS_GATHER adaptive_avg_pool2d_backward_nchw_##sfx(                                          \
        BackwardParams p, const D::T* __restrict__ go, D::T* __restrict__ gi) {                                  \
        backward_nchw<D, ADAPTIVE_AVG>(p, go, 0, 0, gi);                                                         \
    }                                                                                                            \
    CUPOOL_REGISTER_KERNEL(adaptive_avg_pool2d_backward_nchw_##sfx);                                             \
    extern "C" __global__ void CUPOOL_BWD_BOUNDS_GATHER adaptive_avg_pool2d_backward_nhwc_##sfx(                                          \
        BackwardParams p, const D::T* __restrict__ go, D::T* __restrict__ gi) {                                  \
        backward_nhwc<D, ADAPTIVE_AVG>(p, go, 0, 0, gi);                                                         \
    }                                                                                                            \
    CUPOOL_REGISTER_KERNEL(adaptive_avg_pool2d_backward_nhwc_##sfx);                                             \
    extern "C" __global__ void CUPOOL_BWD_BOUNDS_GATHER max_pool2d_backward_nchw_##sfx(BackwardParams p, const D::T* __restrict__ go,     \
                                                              const i64* __restrict__ ind,                       \
                                                              const i64* __restrict__ orphans,                   \
                                                              D::T* __restrict__ gi) {                           \
        backward_nchw<D, MAX>(p, go, ind, orphans, gi);                                                          \
    }                                                                                                            \
    CUPOOL_REGISTER_KERNEL(max_pool2d_backward_nchw_##sfx);                                                      \
    extern "C" __global__ void CUPOOL_BWD_BOUNDS_GATHER max_pool2d_backward_nhwc_##sfx(BackwardParams p, const D::T* __restrict__ go,     \
                                                              const i64* __restrict__ ind,                       \
                                                              const i64* __restrict__ orphans,                   \
                                                              D::T* __restrict__ gi) {                           \
        backward_nhwc<D, MAX>(p, go, ind, orphans, gi);                                                          \
    }                                                                                                            \
    CUPOOL_REGISTER_KERNEL(max_pool2d_backward_nhwc_##sfx);                                                      \
    extern "C" __global__ void CUPOOL_BWD_BOUNDS_GATHER adaptive_max_pool2d_backward_nchw_##sfx(                                          \
        BackwardParams p, const D::T* __restrict__ go, const i64* __restrict__ ind,                              \
        const i64* __restrict__ orphans, D::T* __restrict__ gi) {                                                \
        backward_nchw<D, ADAPTIVE_MAX>(p, go, ind, orphans, gi);                                                 \
    }                                                                                                            \
    CUPOOL_REGISTER_KERNEL(adaptive_max_pool2d_backward_nchw_##sfx);                                             \
    extern "C" __global__ void CUPOOL_BWD_BOUNDS_GATHER adaptive_max_pool2d_backward_nhwc_##sfx(                                          \
        BackwardParams p, const D::T* __restrict__ go, const i64* __restrict__ ind,                              \
        const i64* __restrict__ orphans, D::T* __restrict__ gi) {                                                \
        backward_nhwc<D, ADAPTIVE_MAX>(p, go, ind, orphans, gi);                                                 \
    }                                                                                                            \
    CUPOOL_REGISTER_KERNEL(adaptive_max_pool2d_backward_nhwc_##sfx);                                             \
    extern "C" __global__ void CUPOOL_BWD_BOUNDS broadcast_divide_##sfx(BroadcastParams p, const D::T* __restrict__ go,            \
                                                      D::T* __restrict__ gi) {                                   \
        broadcast_divide<D>(p, go, gi);                                                                          \
    }                                                                                                            \
    CUPOOL_REGISTER_KERNEL(broadcast_divide_##sfx);

CUPOOL_FOR_EACH_DTYPE(CUPOOL_BACKWARD_KERNELS)

CUPOOL_AUDIT_KERNEL(max_pool2d_backward_audit_nchw, MAX, false)
CUPOOL_AUDIT_KERNEL(max_pool2d_backward_audit_nhwc, MAX, true)
CUPOOL_AUDIT_KERNEL(adaptive_max_pool2d_backward_audit_nchw, ADAPTIVE_MAX, false)
CUPOOL_AUDIT_KERNEL(adaptive_max_pool2d_backward_audit_nhwc, ADAPTIVE_MAX, true)
