// reduce.cu: sums and means over the middle axis of [outer, reduce, inner] (GAP, mean, sum).
// Launch planning is in src/cuda/reduce.rs; the params structs mirror its #[repr(C)] structs.
//
// inner == 1 (NCHW GAP, mean over the last dims):
//   reduce_rows_short  rows of <= 256 elements: a block stages a flat, 16-byte aligned span of
//                      many rows in shared memory, then groups of lanes sum one row each.
//   reduce_rows        longer rows: one block per row (or per chunk of a row, `split` > 1, the
//                      chunk sums going to scratch for reduce_combine).
// inner > 1 (NHWC GAP, strided mean):
//   reduce_cols        threads over inner (one 16-byte load of 8 elements for 16-bit types
//                      when inner % 8 == 0, else 4 elements when inner % 4 == 0), the reduce
//                      axis split across the block's thread rows and, with `split` > 1, across
//                      blocks into scratch.
//   reduce_combine     sums the `split` partials of each output in order, finishes, stores.
#include "reduce.cuh"

// Mirrors ReduceRowsParams in src/cuda/reduce.rs.
struct ReduceRowsParams {
    i64 outer;      // rows
    i64 reduce;     // elements per row
    i64 chunk;      // short: rows per block; long: elements per block chunk
    i64 input_len;  // elements in x
    double divisor;
    int split;   // chunks per row (reduce_rows); 1 writes y directly
    int divide;  // 1: divide the sum by `divisor`
    int group;   // reduce_rows_short: lanes per row (power of two <= 32)
    int pad_;
};

// Mirrors ReduceColsParams in src/cuda/reduce.rs.
struct ReduceColsParams {
    i64 outer;
    i64 reduce;
    i64 inner;
    i64 chunk;       // reduce rows per split chunk
    i64 col_blocks;  // blocks along inner
    double divisor;
    int split;           // chunks along reduce (gridDim.y)
    int divide;
    int vec;             // 8 (16-bit types), 4 or 1 elements per thread along inner
    int cols_per_block;  // thread columns (in vec units) per block
};

// Mirrors ReduceCombineParams in src/cuda/reduce.rs.
struct ReduceCombineParams {
    i64 total;  // outputs (outer * inner)
    i64 inner;
    double divisor;
    int split;  // partials per output; 0 gives an empty sum
    int divide;
};

template <class D>
CUPOOL_DEV void reduce_rows_short_body(const ReduceRowsParams& p, const typename D::T* __restrict__ x,
                                       typename D::T* __restrict__ y) {
    typedef typename D::T T;
    typedef typename D::Acc Acc;
    const i64 row0 = (i64)blockIdx.x * p.chunk;
    const i64 row1 = row0 + p.chunk < p.outer ? row0 + p.chunk : p.outer;
    T* s = reinterpret_cast<T*>(dynamic_smem());
    const i64 first = stage_span_to_shared(x, row0 * p.reduce, row1 * p.reduce, p.input_len, s);
    const int g = p.group;
    const i64 gid = threadIdx.x / g;
    const int lane = threadIdx.x % g;
    const i64 ngroups = blockDim.x / g;
    const i64 nrows = row1 - row0;
    // Every lane runs the same number of iterations: the shuffles need the whole warp.
    for (i64 rb = 0; rb < nrows; rb += ngroups) {
        const i64 r = rb + gid;
        Acc a = Acc(0);
        if (r < nrows) {
            const T* row = s + (row0 + r) * p.reduce - first;
            for (i64 j = lane; j < p.reduce; j += g) a += D::to_acc(row[j]);
        }
        a = group_sum(a, g);
        if (r < nrows && lane == 0) gstore(y + row0 + r, finish_sum<D>(a, p.divide, p.divisor));
    }
}

template <class D>
CUPOOL_DEV void reduce_rows_body(const ReduceRowsParams& p, const typename D::T* __restrict__ x,
                                 typename D::T* __restrict__ y, typename D::Acc* __restrict__ scratch) {
    typedef typename D::Acc Acc;
    const i64 row = (i64)blockIdx.x / p.split;
    const i64 c = (i64)blockIdx.x % p.split;
    const i64 b = c * p.chunk;
    i64 e = b + p.chunk;
    if (e > p.reduce) e = p.reduce;
    const i64 n = e > b ? e - b : 0;
    Acc a = thread_segment_sum<D>(x + row * p.reduce + b, n);
    a = block_sum(a, reinterpret_cast<Acc*>(dynamic_smem()));
    if (threadIdx.x == 0) {
        if (p.split == 1) {
            gstore(y + row, finish_sum<D>(a, p.divide, p.divisor));
        } else {
            gstore(scratch + blockIdx.x, a);
        }
    }
}

template <class D, int VEC>
CUPOOL_DEV void reduce_cols_body(const ReduceColsParams& p, const typename D::T* __restrict__ x,
                                 typename D::T* __restrict__ y, typename D::Acc* __restrict__ scratch) {
    typedef typename D::T T;
    typedef typename D::Acc Acc;
    const i64 o = (i64)blockIdx.x / p.col_blocks;
    const i64 cb = (i64)blockIdx.x % p.col_blocks;
    const int cpb = p.cols_per_block;
    const int ty = blockDim.x / cpb;
    const int tcol = threadIdx.x % cpb;
    const int trow = threadIdx.x / cpb;
    const i64 col = cb * cpb + tcol;  // in VEC units
    const i64 ncols = (p.inner + VEC - 1) / VEC;
    const bool active = trow < ty && col < ncols;
    const i64 r0 = (i64)blockIdx.y * p.chunk;
    i64 r1 = r0 + p.chunk;
    if (r1 > p.reduce) r1 = p.reduce;
    Acc a[VEC], b[VEC];
CUPOOL_UNROLL
    for (int v = 0; v < VEC; ++v) a[v] = b[v] = Acc(0);
    if (active) {
        const T* base = x + o * p.reduce * p.inner + col * VEC;
        i64 r = r0 + trow;
        // Two rows per step: two independent loads in flight per thread.
        for (; r + ty < r1; r += 2 * ty) {
            const Lanes<VEC, T> u = load_lanes<VEC>(base + r * p.inner);
            const Lanes<VEC, T> w = load_lanes<VEC>(base + (r + ty) * p.inner);
CUPOOL_UNROLL
            for (int v = 0; v < VEC; ++v) {
                a[v] += D::to_acc(u.e[v]);
                b[v] += D::to_acc(w.e[v]);
            }
        }
        if (r < r1) {
            const Lanes<VEC, T> u = load_lanes<VEC>(base + r * p.inner);
CUPOOL_UNROLL
            for (int v = 0; v < VEC; ++v) a[v] += D::to_acc(u.e[v]);
        }
    }
    // Combine the thread rows in index order through shared memory: [ty][cpb][VEC].
    Acc* s = reinterpret_cast<Acc*>(dynamic_smem());
    if (trow < ty) {
CUPOOL_UNROLL
        for (int v = 0; v < VEC; ++v) s[((i64)trow * cpb + tcol) * VEC + v] = a[v] + b[v];
    }
    __syncthreads();
    if (trow == 0 && active) {
CUPOOL_UNROLL
        for (int v = 0; v < VEC; ++v) {
            Acc t = s[(i64)tcol * VEC + v];
            for (int k = 1; k < ty; ++k) t += s[((i64)k * cpb + tcol) * VEC + v];
            const i64 i = col * VEC + v;
            if (p.split == 1) {
                gstore(y + o * p.inner + i, finish_sum<D>(t, p.divide, p.divisor));
            } else {
                gstore(scratch + (o * p.split + blockIdx.y) * p.inner + i, t);
            }
        }
    }
}

template <class D>
CUPOOL_DEV void reduce_combine_body(const ReduceCombineParams& p, const typename D::Acc* __restrict__ scratch,
                                    typename D::T* __restrict__ y) {
    typedef typename D::Acc Acc;
    const i64 idx = global_thread_index();
    if (idx >= p.total) return;
    const i64 o = idx / p.inner;
    const i64 i = idx % p.inner;
    Acc s = Acc(0);
    for (int k = 0; k < p.split; ++k) s += gload(scratch + (o * p.split + k) * p.inner + i);
    gstore(y + idx, finish_sum<D>(s, p.divide, p.divisor));
}

#define CUPOOL_REDUCE_KERNELS(sfx, D)                                                                     \
    extern "C" __global__ void reduce_rows_short_##sfx(ReduceRowsParams p, const D::T* __restrict__ x,   \
                                                       D::T* __restrict__ y) {                           \
        reduce_rows_short_body<D>(p, x, y);                                                               \
    }                                                                                                     \
    CUPOOL_REGISTER_KERNEL(reduce_rows_short_##sfx);                                                      \
    extern "C" __global__ void reduce_rows_##sfx(ReduceRowsParams p, const D::T* __restrict__ x,         \
                                                 D::T* __restrict__ y, D::Acc* __restrict__ scratch) {   \
        reduce_rows_body<D>(p, x, y, scratch);                                                            \
    }                                                                                                     \
    CUPOOL_REGISTER_KERNEL(reduce_rows_##sfx);                                                            \
    extern "C" __global__ void reduce_cols_##sfx(ReduceColsParams p, const D::T* __restrict__ x,         \
                                                 D::T* __restrict__ y, D::Acc* __restrict__ scratch) {   \
        if (p.vec == 8) {                                                                                 \
            reduce_cols_body<D, sizeof(D::T) == 2 ? 8 : 4>(p, x, y, scratch);                             \
        } else if (p.vec == 4) {                                                                          \
            reduce_cols_body<D, 4>(p, x, y, scratch);                                                     \
        } else {                                                                                          \
            reduce_cols_body<D, 1>(p, x, y, scratch);                                                     \
        }                                                                                                 \
    }                                                                                                     \
    CUPOOL_REGISTER_KERNEL(reduce_cols_##sfx);                                                            \
    extern "C" __global__ void reduce_combine_##sfx(ReduceCombineParams p,                               \
                                                    const D::Acc* __restrict__ scratch,                  \
                                                    D::T* __restrict__ y) {                              \
        reduce_combine_body<D>(p, scratch, y);                                                            \
    }                                                                                                     \
    CUPOOL_REGISTER_KERNEL(reduce_combine_##sfx);

CUPOOL_FOR_EACH_DTYPE(CUPOOL_REDUCE_KERNELS)
