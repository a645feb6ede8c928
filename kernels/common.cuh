#ifdef CUPOOL_EMULATOR
#include "emulator/cuda_emulator.h"
#else
#define CUPOOL_REGISTER_KERNEL(name)
#define CUPOOL_GLOBAL_READ(ptr, bytes)
#define CUPOOL_GLOBAL_WRITE(ptr, bytes)
#endif

// common.cuh: what every cupool kernel shares. Header-free on purpose (NVRTC ships no
// cuda_fp16.h): f16/bf16 travel as `unsigned short` and are converted here, bit-exactly, with
// round-to-nearest-even. Every global memory access goes through gload/gstore so the emulator
// can bounds- and alignment-check it.
#pragma once

// Fallbacks for spellings a host compiler may lack (the emulator build); nvcc/NVRTC define them.
#ifndef __forceinline__
#define __forceinline__ inline __attribute__((always_inline))
#endif
#ifndef __align__
#define __align__(n) __attribute__((aligned(n)))
#endif

#define CUPOOL_DEV __device__ __forceinline__

// `#pragma unroll` for nvcc/NVRTC only: a host compiler (the emulator build) warns on it.
#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define CUPOOL_UNROLL _Pragma("unroll")
#else
#define CUPOOL_UNROLL
#endif

typedef long long i64;

// ---------------------------------------------------------------------------------------------
// Bit casts and 16-bit float conversions.
// ---------------------------------------------------------------------------------------------

// f16 bits -> float, exact (every f16 is a float). NaN stays NaN (payload shifted, quiet bit kept).
CUPOOL_DEV float f16_bits_to_float(unsigned short h) {
#if defined(__CUDA_ARCH__)
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
#else
    unsigned int sign = ((unsigned int)h & 0x8000u) << 16;
    unsigned int e = ((unsigned int)h >> 10) & 0x1fu;
    unsigned int m = (unsigned int)h & 0x3ffu;
    if (e == 0x1fu) return __uint_as_float(sign | 0x7f800000u | (m << 13));
    if (e == 0u) {
        // Zero or subnormal: m * 2^-24 is exact in float (a normal float for m != 0).
        float v = (float)m * 5.9604644775390625e-8f;
        return __uint_as_float(__float_as_uint(v) | sign);
    }
    return __uint_as_float(sign | ((e + 112u) << 23) | (m << 13));
#endif
}

// float -> f16 bits, round to nearest even; overflow to inf; NaN stays a quiet NaN.
CUPOOL_DEV unsigned short float_to_f16_bits(float f) {
    unsigned int x = __float_as_uint(f);
    unsigned int sign = (x >> 16) & 0x8000u;
    unsigned int ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) return (unsigned short)(sign | 0x7e00u | ((ax >> 13) & 0x3ffu));
    unsigned int e = ax >> 23;
    if (e >= 143u) return (unsigned short)(sign | 0x7c00u);  // >= 2^16 (or inf): inf
    if (e < 113u) {
        // Below 2^-14: an f16 subnormal (or zero). value = m * 2^(e-150); units of 2^-24.
        if (e < 102u) return (unsigned short)sign;  // < 2^-25: rounds to zero
        unsigned int m = (ax & 0x7fffffu) | 0x800000u;
        unsigned int shift = 126u - e;  // 14..24
        unsigned int r = m >> shift;
        unsigned int rem = m & ((1u << shift) - 1u);
        unsigned int half = 1u << (shift - 1u);
        if (rem > half || (rem == half && (r & 1u))) r += 1u;  // may carry into the smallest normal
        return (unsigned short)(sign | r);
    }
    unsigned int r = ((e - 112u) << 10) | ((ax >> 13) & 0x3ffu);
    unsigned int rem = ax & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (r & 1u))) r += 1u;  // a carry may reach inf: correct
    return (unsigned short)(sign | r);
}

CUPOOL_DEV float bf16_bits_to_float(unsigned short h) { return __uint_as_float((unsigned int)h << 16); }

// float -> bf16 bits, round to nearest even; NaN stays a quiet NaN.
CUPOOL_DEV unsigned short float_to_bf16_bits(float f) {
    unsigned int x = __float_as_uint(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (unsigned short)((x >> 16) | 0x40u);
    return (unsigned short)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

// ---------------------------------------------------------------------------------------------
// Dtype traits: storage type T, accumulator Acc, and the conversions between them.
// Accumulate in float for f16/bf16/f32, double for f64 (PyTorch's acc_type).
// ---------------------------------------------------------------------------------------------

struct DtF32 {
    typedef float T;
    typedef float Acc;
    static CUPOOL_DEV Acc to_acc(T v) { return v; }
    static CUPOOL_DEV T from_acc(Acc a) { return a; }
};
struct DtF64 {
    typedef double T;
    typedef double Acc;
    static CUPOOL_DEV Acc to_acc(T v) { return v; }
    static CUPOOL_DEV T from_acc(Acc a) { return a; }
};
struct DtF16 {
    typedef unsigned short T;
    typedef float Acc;
    static CUPOOL_DEV Acc to_acc(T v) { return f16_bits_to_float(v); }
    static CUPOOL_DEV T from_acc(Acc a) { return float_to_f16_bits(a); }
};
struct DtBF16 {
    typedef unsigned short T;
    typedef float Acc;
    static CUPOOL_DEV Acc to_acc(T v) { return bf16_bits_to_float(v); }
    static CUPOOL_DEV T from_acc(Acc a) { return float_to_bf16_bits(a); }
};

template <typename Acc>
CUPOOL_DEV Acc neg_infinity();
template <>
CUPOOL_DEV float neg_infinity<float>() { return __uint_as_float(0xff800000u); }
template <>
CUPOOL_DEV double neg_infinity<double>() { return (double)__uint_as_float(0xff800000u); }

template <typename Acc>
CUPOOL_DEV bool is_nan(Acc v) { return v != v; }

// ---------------------------------------------------------------------------------------------
// Global memory access. Every kernel reads and writes global memory only through these, so the
// emulator sees (and checks) each access with its size before it happens.
// ---------------------------------------------------------------------------------------------

template <typename T>
CUPOOL_DEV T gload(const T* p) {
    CUPOOL_GLOBAL_READ(p, sizeof(T));
    return *p;
}

template <typename T>
CUPOOL_DEV void gstore(T* p, T v) {
    CUPOOL_GLOBAL_WRITE(p, sizeof(T));
    *p = v;
}

// 16 bytes of elements: one 128-bit load. The address must be 16-byte aligned.
template <typename T>
struct __align__(16) Vec16 {
    T e[16 / sizeof(T)];
};

template <typename T>
CUPOOL_DEV Vec16<T> gload_vec16(const T* p) {
    CUPOOL_GLOBAL_READ(p, 16);
    return *reinterpret_cast<const Vec16<T>*>(p);
}

// Four consecutive elements in one load (8, 16 or 32 bytes): vectorising along channels.
// The address must be aligned to 4 * sizeof(T).
template <typename T>
struct __align__(4 * sizeof(T)) Pack4 {
    T e[4];
};

template <typename T>
CUPOOL_DEV Pack4<T> gload_pack4(const T* p) {
    CUPOOL_GLOBAL_READ(p, 4 * sizeof(T));
    return *reinterpret_cast<const Pack4<T>*>(p);
}

template <typename T>
CUPOOL_DEV void gstore_pack4(T* p, const Pack4<T>& v) {
    CUPOOL_GLOBAL_WRITE(p, 4 * sizeof(T));
    *reinterpret_cast<Pack4<T>*>(p) = v;
}

// Loads / stores `V` consecutive elements (V = 4: one vector access; V = 8 of a 16-bit type:
// one 16-byte load; aligned by the planner).
template <int V, typename T>
struct Lanes {
    T e[V];
};
template <int V, typename T>
CUPOOL_DEV Lanes<V, T> load_lanes(const T* p) {
    Lanes<V, T> r;
    if (V == 8 && sizeof(T) == 2) {
        const Vec16<T> v = gload_vec16(p);
CUPOOL_UNROLL
        for (int k = 0; k < V; ++k) r.e[k] = v.e[k % (16 / sizeof(T))];
    } else if (V == 4) {
        Pack4<T> v = gload_pack4(p);
CUPOOL_UNROLL
        for (int k = 0; k < V; ++k) r.e[k] = v.e[k & 3];
    } else {
CUPOOL_UNROLL
        for (int k = 0; k < V; ++k) r.e[k] = gload(p + k);
    }
    return r;
}
template <int V, typename T>
CUPOOL_DEV void store_lanes(T* p, const Lanes<V, T>& r) {
    if (V == 4) {
        Pack4<T> v;
CUPOOL_UNROLL
        for (int k = 0; k < 4; ++k) v.e[k] = r.e[k & (V - 1)];
        gstore_pack4(p, v);
    } else {
CUPOOL_UNROLL
        for (int k = 0; k < V; ++k) gstore(p + k, r.e[k]);
    }
}

// Reduces one channels-last window for V consecutive channels at `xn` (the image's first pixel,
// offset to the channel): taps (h, w) for h in [h0, h1) step dh, w in [w0, w1) step dw, scanned h
// then w. Max: init -inf, index of the first tap, update if v > max || isnan(v) (NaN wins, the
// last NaN's index, ties keep the first). Avg: the plain sum. Windowed and adaptive pooling
// share it, so their NHWC scans are the same code.
template <class D, bool IS_MAX, int V>
CUPOOL_DEV void nhwc_window(const typename D::T* xn, i64 width, i64 channels, i64 h0, i64 h1, i64 dh, i64 w0,
                            i64 w1, i64 dw, typename D::Acc (&acc)[V], i64 (&best)[V]) {
    typedef typename D::Acc Acc;
CUPOOL_UNROLL
    for (int v = 0; v < V; ++v) {
        acc[v] = IS_MAX ? neg_infinity<Acc>() : Acc(0);
        best[v] = h0 * width + w0;
    }
    for (i64 h = h0; h < h1; h += dh) {
        for (i64 w = w0; w < w1; w += dw) {
            const Lanes<V, typename D::T> e = load_lanes<V>(xn + (h * width + w) * channels);
CUPOOL_UNROLL
            for (int v = 0; v < V; ++v) {
                const Acc a = D::to_acc(e.e[v]);
                if (IS_MAX) {
                    if (a > acc[v] || is_nan(a)) {
                        acc[v] = a;
                        best[v] = h * width + w;
                    }
                } else {
                    acc[v] += a;
                }
            }
        }
    }
}

// The block's dynamic (`extern __shared__`) shared memory, sized by the launch planner.
CUPOOL_DEV unsigned char* dynamic_smem() {
    extern __shared__ __align__(16) unsigned char cupool_dynamic_smem[];
    return cupool_dynamic_smem;
}

// Stages elements [e0, e1) of `x` (a buffer of `len` elements, 16-byte aligned base) into shared
// memory `s` as aligned 128-bit chunks: chunk k of the staged range holds elements
// [(c0 + k) * EPV, (c0 + k + 1) * EPV) where c0 = e0 / EPV. Element e lands at s[e - c0 * EPV];
// the function returns c0 * EPV. Each thread keeps four independent 128-bit loads in flight.
// A chunk that runs past the end of the buffer is read element by element. Ends with a barrier.
template <typename T>
CUPOOL_DEV i64 stage_span_to_shared(const T* x, i64 e0, i64 e1, i64 len, T* s) {
    const i64 epv = 16 / (i64)sizeof(T);
    const i64 c0 = e0 / epv;
    const i64 nchunks = (e1 + epv - 1) / epv - c0;
    const i64 full = len / epv;  // chunks wholly inside the buffer
    Vec16<T>* sv = reinterpret_cast<Vec16<T>*>(s);
    const i64 step = (i64)blockDim.x;
    // Chunks wholly inside the buffer: 128-bit loads, four in flight per thread.
    const i64 nfull = full - c0 < nchunks ? full - c0 : nchunks;
    for (i64 base = threadIdx.x; base < nfull; base += 4 * step) {
        Vec16<T> v[4];
CUPOOL_UNROLL
        for (int u = 0; u < 4; ++u) {
            if (base + u * step < nfull) v[u] = gload_vec16(x + (c0 + base + u * step) * epv);
        }
CUPOOL_UNROLL
        for (int u = 0; u < 4; ++u) {
            if (base + u * step < nfull) sv[base + u * step] = v[u];
        }
    }
    // At most one chunk (the buffer's last, partial one) is read element by element.
    if (nfull < nchunks) {
        const i64 e = (c0 + nfull) * epv + threadIdx.x;
        if ((i64)threadIdx.x < epv && e < len) s[nfull * epv + threadIdx.x] = gload(x + e);
    }
    __syncthreads();
    return c0 * epv;
}

// The global thread index as 64 bits: grids can hold more than 2^31 threads.
CUPOOL_DEV i64 global_thread_index() {
    return (i64)blockIdx.x * (i64)blockDim.x + (i64)threadIdx.x;
}

// Stamps `extern "C"` entry points for the four float dtypes: `MACRO(name_suffix, DtType)`.
#define CUPOOL_FOR_EACH_DTYPE(MACRO) \
    MACRO(f32, DtF32)                \
    MACRO(f64, DtF64)                \
    MACRO(f16, DtF16)                \
    MACRO(bf16, DtBF16)
