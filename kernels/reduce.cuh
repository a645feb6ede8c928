// reduce.cuh: deterministic in-block reductions and the finish step, shared by reduce.cu and the
// pooling kernels. Every combine runs in a fixed order (xor-butterfly shuffles, then warps in
// index order), so a given plan gives the same bits on every run. No atomics.
#pragma once
#include "common.cuh"

// Sum over aligned groups of `width` lanes (a power of two <= 32) of a warp; every lane of a
// group ends with the group's sum. All 32 lanes must call it.
template <typename Acc>
CUPOOL_DEV Acc group_sum(Acc v, int width) {
    for (int off = width >> 1; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    return v;
}

// Sum over the whole block (blockDim.x a multiple of 32). The result is valid in thread 0.
// `scratch` is at least 32 Acc of shared memory.
template <typename Acc>
CUPOOL_DEV Acc block_sum(Acc v, Acc* scratch) {
    v = group_sum(v, 32);
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int nwarps = blockDim.x >> 5;
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    Acc r = Acc(0);
    if (warp == 0) {
        r = lane < nwarps ? scratch[lane] : Acc(0);
        r = group_sum(r, 32);
    }
    return r;
}

// The sum of a 16-byte vector's elements, in element order.
template <class D>
CUPOOL_DEV typename D::Acc vec16_sum(const Vec16<typename D::T>& v) {
    typename D::Acc s = D::to_acc(v.e[0]);
CUPOOL_UNROLL
    for (int j = 1; j < (int)(16 / sizeof(typename D::T)); ++j) s += D::to_acc(v.e[j]);
    return s;
}

// This thread's share of the sum of n contiguous elements starting at p: a scalar head up to
// the first 16-byte boundary, then 128-bit loads (four in flight per thread), then a scalar
// tail. The block's threads together cover every element once.
template <class D>
CUPOOL_DEV typename D::Acc thread_segment_sum(const typename D::T* p, i64 n) {
    typedef typename D::T T;
    typedef typename D::Acc Acc;
    const i64 epv = 16 / (i64)sizeof(T);
    const i64 step = (i64)blockDim.x;
    const i64 t = (i64)threadIdx.x;
    i64 head = (i64)(((16u - (unsigned)((unsigned long long)p & 15ull)) & 15u) / sizeof(T));
    if (head > n) head = n;
    Acc a0 = Acc(0), a1 = Acc(0);
    if (t < head) a0 = D::to_acc(gload(p + t));
    const T* body = p + head;
    const i64 nvec = (n - head) / epv;
    i64 k = t;
    for (; k + 3 * step < nvec; k += 4 * step) {
        Vec16<T> v0 = gload_vec16(body + k * epv);
        Vec16<T> v1 = gload_vec16(body + (k + step) * epv);
        Vec16<T> v2 = gload_vec16(body + (k + 2 * step) * epv);
        Vec16<T> v3 = gload_vec16(body + (k + 3 * step) * epv);
        a0 += vec16_sum<D>(v0) + vec16_sum<D>(v2);
        a1 += vec16_sum<D>(v1) + vec16_sum<D>(v3);
    }
    for (; k < nvec; k += step) a0 += vec16_sum<D>(gload_vec16(body + k * epv));
    const i64 tail0 = head + nvec * epv;
    if (tail0 + t < n) a1 += D::to_acc(gload(p + tail0 + t));
    return a0 + a1;
}

// How a reduction's sum becomes its output: as is, or `sum / divisor` (one division in the
// accumulator type), then one rounding to the output type.
template <class D>
CUPOOL_DEV typename D::T finish_sum(typename D::Acc s, int divide, double divisor) {
    typedef typename D::Acc Acc;
    if (divide) s = s / (Acc)divisor;
    return D::from_acc(s);
}
