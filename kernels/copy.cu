// copy.cu: strided_copy_{dtype}: gathers a strided view (rank <= 8) into a contiguous output;
// used for .contiguous(), to_channels_last() and reshape copies. One thread per output element,
// so writes are coalesced; the index is decoded from the innermost dim outwards in 64 bits.
#include "common.cuh"

// Mirrors StridedCopyParams in src/cuda/copy.rs. Dims beyond `rank` are unused.
struct StridedCopyParams {
    i64 sizes[8];
    i64 strides[8];  // in elements
    i64 offset;      // in elements
    i64 total;       // output elements
    int rank;
    int pad_;
};

template <typename T>
CUPOOL_DEV void strided_copy_body(const StridedCopyParams& p, const T* __restrict__ x, T* __restrict__ y) {
    const i64 idx = global_thread_index();
    if (idx >= p.total) return;
    i64 rest = idx;
    i64 src = p.offset;
    for (int d = p.rank - 1; d >= 0; --d) {
        const i64 i = rest % p.sizes[d];
        rest /= p.sizes[d];
        src += i * p.strides[d];
    }
    gstore(y + idx, gload(x + src));
}

#define CUPOOL_COPY_KERNELS(sfx, D)                                                                    \
    extern "C" __global__ void strided_copy_##sfx(StridedCopyParams p, const D::T* __restrict__ x,    \
                                                  D::T* __restrict__ y) {                             \
        strided_copy_body<D::T>(p, x, y);                                                              \
    }                                                                                                  \
    CUPOOL_REGISTER_KERNEL(strided_copy_##sfx);

// Max-pool indices are copied too (e.g. NCHW indices for a channels-last backward).
struct DtI64 {
    typedef long long T;
};

CUPOOL_FOR_EACH_DTYPE(CUPOOL_COPY_KERNELS)
CUPOOL_COPY_KERNELS(i64, DtI64)
