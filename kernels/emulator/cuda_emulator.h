// cupool's host emulator: what the kernel sources in kernels/*.cu need to compile as C++17 with
// the host compiler and run on the host. kernels/common.cuh includes this file when
// CUPOOL_EMULATOR is defined (build/emulator.rs defines it); nvcc and NVRTC never see it.
//
// Model (see kernels/emulator/README.md): a launch runs its blocks one after another on the
// calling OS thread; the threads of a block run as fibers that switch only at __syncthreads(),
// at warp collectives, and when they finish. So between two barriers a thread runs alone, which
// is why atomics here are plain read-modify-writes. Per-launch state (threadIdx, the shared
// memory, the buffer table) is thread_local, so different OS threads may launch at once.
#ifndef CUPOOL_CUDA_EMULATOR_H
#define CUPOOL_CUDA_EMULATOR_H

#include <climits>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <math.h>  // INFINITY, NAN and the C math functions in the global namespace (fmaxf, ...)
#include <type_traits>
#include <utility>

// ---------------------------------------------------------------------------------------------
// Qualifiers.
// ---------------------------------------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
// __restrict__ is a GCC/Clang keyword already.
//
// `__shared__` must make a variable shared by the block's threads, and must parse both as
// `__shared__ T tile[N];` (block-scope static storage) and `extern __shared__ T smem[];`
// (dynamic shared memory). `thread_local` is the one storage class that does both: a block-scope
// thread_local is static, and the fibers of a block all run on one OS thread, so they share it.
// Every `extern __shared__` name is defined by build/emulator.rs as an alias of the emulator's
// one dynamic shared memory buffer (cupool_emu_dynamic_shared), as on a GPU where all
// `extern __shared__` arrays start at the same address.
#define __shared__ thread_local

// ---------------------------------------------------------------------------------------------
// Vector types, laid out (size and alignment) as in CUDA's vector_types.h.
// ---------------------------------------------------------------------------------------------
struct uint3 { unsigned int x, y, z; };
struct int3 { int x, y, z; };
struct float3 { float x, y, z; };
struct dim3 {
    unsigned int x, y, z;
    constexpr dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1) : x(vx), y(vy), z(vz) {}
    constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
    constexpr operator uint3() const { return uint3{x, y, z}; }
};
struct __attribute__((aligned(8))) float2 { float x, y; };
struct __attribute__((aligned(16))) float4 { float x, y, z, w; };
struct __attribute__((aligned(16))) double2 { double x, y; };
struct __attribute__((aligned(8))) int2 { int x, y; };
struct __attribute__((aligned(16))) int4 { int x, y, z, w; };
struct __attribute__((aligned(8))) uint2 { unsigned int x, y; };
struct __attribute__((aligned(16))) uint4 { unsigned int x, y, z, w; };
struct __attribute__((aligned(4))) ushort2 { unsigned short x, y; };
struct __attribute__((aligned(8))) ushort4 { unsigned short x, y, z, w; };
struct __attribute__((aligned(16))) longlong2 { long long x, y; };
struct __attribute__((aligned(16))) ulonglong2 { unsigned long long x, y; };

inline float2 make_float2(float x, float y) { return float2{x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }
inline double2 make_double2(double x, double y) { return double2{x, y}; }
inline int2 make_int2(int x, int y) { return int2{x, y}; }
inline int4 make_int4(int x, int y, int z, int w) { return int4{x, y, z, w}; }
inline uint2 make_uint2(unsigned int x, unsigned int y) { return uint2{x, y}; }
inline uint4 make_uint4(unsigned int x, unsigned int y, unsigned int z, unsigned int w) { return uint4{x, y, z, w}; }
inline ushort2 make_ushort2(unsigned short x, unsigned short y) { return ushort2{x, y}; }
inline ushort4 make_ushort4(unsigned short x, unsigned short y, unsigned short z, unsigned short w) {
    return ushort4{x, y, z, w};
}
inline uint3 make_uint3(unsigned int x, unsigned int y, unsigned int z) { return uint3{x, y, z}; }
inline int3 make_int3(int x, int y, int z) { return int3{x, y, z}; }
inline float3 make_float3(float x, float y, float z) { return float3{x, y, z}; }
inline longlong2 make_longlong2(long long x, long long y) { return longlong2{x, y}; }
inline ulonglong2 make_ulonglong2(unsigned long long x, unsigned long long y) { return ulonglong2{x, y}; }

// ---------------------------------------------------------------------------------------------
// Built-in variables: per OS thread; the scheduler rewrites threadIdx before resuming a fiber.
// ---------------------------------------------------------------------------------------------
extern __thread uint3 threadIdx;
extern __thread uint3 blockIdx;
extern __thread uint3 blockDim;
extern __thread uint3 gridDim;
static constexpr int warpSize = 32;

// ---------------------------------------------------------------------------------------------
// The runtime (kernels/emulator/emulator.cpp). None of these is inline: a call to a barrier must
// look, to the compiler, like it may change any memory, as another thread's writes do.
// ---------------------------------------------------------------------------------------------
namespace cupool_emu {

// Dynamic shared memory a launch may request (DeviceLimits::HOPPER), and the storage behind it:
// the rest is a guard checked at the end of every block.
constexpr std::size_t kMaxDynamicSharedBytes = 48 * 1024;
constexpr std::size_t kDynamicSharedStorageBytes = kMaxDynamicSharedBytes + 1024;

// Checks one global memory access against the launch's buffer table; on a fault it records the
// error and ends the launch (the calling fiber never returns from here).
void check_global_access(const void* address, std::size_t bytes, bool is_write);
// Ends the launch with `message` (from __trap and from the checks).
[[noreturn]] void fault(const char* message);

enum WarpOp : int { kShflIdx, kShflUp, kShflDown, kShflXor, kBallot, kAny, kAll, kSyncWarp };
// One warp collective: waits for every lane in `mask`, then returns this lane's result (a
// shuffled value's bits, or the ballot/any/all answer).
std::uint64_t warp_collective(WarpOp op, unsigned int mask, std::uint64_t value, int lane_arg, int width,
                              const char* what);

enum BlockOp : int { kSyncThreads, kSyncCount, kSyncAnd, kSyncOr };
int block_barrier(BlockOp op, int predicate);

using GenericFn = void (*)();
using Invoker = void (*)(GenericFn fn, void** params);
// Adds a kernel to the registry (called by CUPOOL_REGISTER_KERNEL's static initialiser).
bool register_kernel(const char* name, GenericFn fn, Invoker invoker, const std::size_t* param_sizes,
                     std::size_t param_count);

template <class T>
inline T load_param(void* bytes) {
    static_assert(std::is_trivially_copyable<T>::value, "kernel arguments must be trivially copyable");
    T value;
    std::memcpy(&value, bytes, sizeof(T));
    return value;
}

// Unpacks a cuLaunchKernel-style `void** kernelParams` (params[i] points at argument i's bytes)
// into the kernel's typed arguments.
template <class... Args>
struct KernelInvoker {
    // {0, ...} so that a kernel without arguments still gets a valid array.
    static constexpr std::size_t param_sizes[] = {0, sizeof(Args)...};
    static constexpr std::size_t param_count = sizeof...(Args);
    template <std::size_t... I>
    static void call(void (*fn)(Args...), void** params, std::index_sequence<I...>) {
        (void)params;
        fn(load_param<Args>(params[I])...);
    }
    static void invoke(GenericFn generic, void** params) {
        call(reinterpret_cast<void (*)(Args...)>(generic), params, std::index_sequence_for<Args...>{});
    }
};
template <class... Args>
KernelInvoker<Args...> invoker_for(void (*)(Args...));

template <class T>
inline std::uint64_t to_bits(T value) {
    static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "warp shuffles move up to 8 bytes");
    std::uint64_t bits = 0;
    std::memcpy(&bits, &value, sizeof(T));
    return bits;
}
template <class T>
inline T from_bits(std::uint64_t bits) {
    T value;
    std::memcpy(&value, &bits, sizeof(T));
    return value;
}
template <class T>
inline T bit_cast(const void* source) {
    T value;
    std::memcpy(&value, source, sizeof(T));
    return value;
}

}  // namespace cupool_emu

// Registers an `extern "C" __global__` kernel under its name, with a launcher that unpacks
// cuLaunchKernel's parameter array into its typed arguments.
#define CUPOOL_REGISTER_KERNEL(NAME)                                                               \
    static const bool cupool_emu_registered_##NAME = ::cupool_emu::register_kernel(               \
        #NAME, reinterpret_cast<::cupool_emu::GenericFn>(&NAME),                                 \
        &decltype(::cupool_emu::invoker_for(&NAME))::invoke,                                     \
        decltype(::cupool_emu::invoker_for(&NAME))::param_sizes + 1,                             \
        decltype(::cupool_emu::invoker_for(&NAME))::param_count);

// The global memory hooks common.cuh's load/store helpers call before each access.
#define CUPOOL_GLOBAL_READ(ptr, bytes) \
    ::cupool_emu::check_global_access((const void*)(ptr), (std::size_t)(bytes), false)
#define CUPOOL_GLOBAL_WRITE(ptr, bytes) \
    ::cupool_emu::check_global_access((const void*)(ptr), (std::size_t)(bytes), true)

// ---------------------------------------------------------------------------------------------
// Barriers and warp collectives.
// ---------------------------------------------------------------------------------------------
inline void __syncthreads() { ::cupool_emu::block_barrier(::cupool_emu::kSyncThreads, 0); }
inline int __syncthreads_count(int predicate) { return ::cupool_emu::block_barrier(::cupool_emu::kSyncCount, predicate); }
inline int __syncthreads_and(int predicate) { return ::cupool_emu::block_barrier(::cupool_emu::kSyncAnd, predicate); }
inline int __syncthreads_or(int predicate) { return ::cupool_emu::block_barrier(::cupool_emu::kSyncOr, predicate); }
inline void __syncwarp(unsigned int mask = 0xffffffffu) {
    ::cupool_emu::warp_collective(::cupool_emu::kSyncWarp, mask, 0, 0, 32, "__syncwarp");
}
template <class T>
inline T __shfl_sync(unsigned int mask, T value, int src_lane, int width = 32) {
    return ::cupool_emu::from_bits<T>(::cupool_emu::warp_collective(
        ::cupool_emu::kShflIdx, mask, ::cupool_emu::to_bits(value), src_lane, width, "__shfl_sync"));
}
template <class T>
inline T __shfl_up_sync(unsigned int mask, T value, unsigned int delta, int width = 32) {
    return ::cupool_emu::from_bits<T>(::cupool_emu::warp_collective(
        ::cupool_emu::kShflUp, mask, ::cupool_emu::to_bits(value), (int)delta, width, "__shfl_up_sync"));
}
template <class T>
inline T __shfl_down_sync(unsigned int mask, T value, unsigned int delta, int width = 32) {
    return ::cupool_emu::from_bits<T>(::cupool_emu::warp_collective(
        ::cupool_emu::kShflDown, mask, ::cupool_emu::to_bits(value), (int)delta, width, "__shfl_down_sync"));
}
template <class T>
inline T __shfl_xor_sync(unsigned int mask, T value, int lane_mask, int width = 32) {
    return ::cupool_emu::from_bits<T>(::cupool_emu::warp_collective(
        ::cupool_emu::kShflXor, mask, ::cupool_emu::to_bits(value), lane_mask, width, "__shfl_xor_sync"));
}
inline unsigned int __ballot_sync(unsigned int mask, int predicate) {
    return (unsigned int)::cupool_emu::warp_collective(::cupool_emu::kBallot, mask, predicate != 0, 0, 32,
                                                       "__ballot_sync");
}
inline int __any_sync(unsigned int mask, int predicate) {
    return (int)::cupool_emu::warp_collective(::cupool_emu::kAny, mask, predicate != 0, 0, 32, "__any_sync");
}
inline int __all_sync(unsigned int mask, int predicate) {
    return (int)::cupool_emu::warp_collective(::cupool_emu::kAll, mask, predicate != 0, 0, 32, "__all_sync");
}
// Blocks run one at a time and threads switch only at barriers, so every write is already
// visible to every later read.
inline void __threadfence() { __atomic_signal_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_block() { __atomic_signal_fence(__ATOMIC_SEQ_CST); }
[[noreturn]] inline void __trap() { ::cupool_emu::fault("__trap() called"); }

// ---------------------------------------------------------------------------------------------
// Atomics: plain read-modify-writes (no other thread runs until this one reaches a barrier).
// They do not check the address (they also serve shared memory): common.cuh's atomic helpers
// call CUPOOL_GLOBAL_WRITE first for global memory.
// ---------------------------------------------------------------------------------------------
#define CUPOOL_EMU_ATOMIC_RMW(NAME, T, EXPR) \
    inline T NAME(T* address, T val) {      \
        T old = *address;                   \
        *address = (EXPR);                  \
        return old;                         \
    }
CUPOOL_EMU_ATOMIC_RMW(atomicAdd, int, old + val)
CUPOOL_EMU_ATOMIC_RMW(atomicAdd, unsigned int, old + val)
CUPOOL_EMU_ATOMIC_RMW(atomicAdd, unsigned long long, old + val)
CUPOOL_EMU_ATOMIC_RMW(atomicAdd, float, old + val)
CUPOOL_EMU_ATOMIC_RMW(atomicAdd, double, old + val)
CUPOOL_EMU_ATOMIC_RMW(atomicSub, int, old - val)
CUPOOL_EMU_ATOMIC_RMW(atomicSub, unsigned int, old - val)
CUPOOL_EMU_ATOMIC_RMW(atomicExch, int, val)
CUPOOL_EMU_ATOMIC_RMW(atomicExch, unsigned int, val)
CUPOOL_EMU_ATOMIC_RMW(atomicExch, unsigned long long, val)
CUPOOL_EMU_ATOMIC_RMW(atomicExch, float, val)
CUPOOL_EMU_ATOMIC_RMW(atomicMax, int, old > val ? old : val)
CUPOOL_EMU_ATOMIC_RMW(atomicMax, unsigned int, old > val ? old : val)
CUPOOL_EMU_ATOMIC_RMW(atomicMax, long long, old > val ? old : val)
CUPOOL_EMU_ATOMIC_RMW(atomicMax, unsigned long long, old > val ? old : val)
CUPOOL_EMU_ATOMIC_RMW(atomicMin, int, old < val ? old : val)
CUPOOL_EMU_ATOMIC_RMW(atomicMin, unsigned int, old < val ? old : val)
CUPOOL_EMU_ATOMIC_RMW(atomicMin, long long, old < val ? old : val)
CUPOOL_EMU_ATOMIC_RMW(atomicMin, unsigned long long, old < val ? old : val)
CUPOOL_EMU_ATOMIC_RMW(atomicOr, int, old | val)
CUPOOL_EMU_ATOMIC_RMW(atomicOr, unsigned int, old | val)
CUPOOL_EMU_ATOMIC_RMW(atomicOr, unsigned long long, old | val)
CUPOOL_EMU_ATOMIC_RMW(atomicAnd, int, old & val)
CUPOOL_EMU_ATOMIC_RMW(atomicAnd, unsigned int, old & val)
CUPOOL_EMU_ATOMIC_RMW(atomicAnd, unsigned long long, old & val)
#undef CUPOOL_EMU_ATOMIC_RMW
template <class T>
inline T atomicCAS(T* address, T compare, T val) {
    static_assert(std::is_integral<T>::value, "atomicCAS takes int, unsigned int or unsigned long long");
    T old = *address;
    if (old == compare) *address = val;
    return old;
}

// ---------------------------------------------------------------------------------------------
// Loads, bit casts and integer intrinsics.
// ---------------------------------------------------------------------------------------------
template <class T>
inline T __ldg(const T* address) {
    return *address;
}
inline unsigned int __float_as_uint(float x) { return ::cupool_emu::bit_cast<unsigned int>(&x); }
inline float __uint_as_float(unsigned int x) { return ::cupool_emu::bit_cast<float>(&x); }
inline int __float_as_int(float x) { return ::cupool_emu::bit_cast<int>(&x); }
inline float __int_as_float(int x) { return ::cupool_emu::bit_cast<float>(&x); }
inline long long __double_as_longlong(double x) { return ::cupool_emu::bit_cast<long long>(&x); }
inline double __longlong_as_double(long long x) { return ::cupool_emu::bit_cast<double>(&x); }
inline int __popc(unsigned int x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz((unsigned int)x); }
inline int __clzll(long long x) { return x == 0 ? 64 : __builtin_clzll((unsigned long long)x); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __ffsll(long long x) { return __builtin_ffsll(x); }
inline unsigned int __brev(unsigned int x) {
    x = ((x >> 1) & 0x55555555u) | ((x & 0x55555555u) << 1);
    x = ((x >> 2) & 0x33333333u) | ((x & 0x33333333u) << 2);
    x = ((x >> 4) & 0x0f0f0f0fu) | ((x & 0x0f0f0f0fu) << 4);
    return __builtin_bswap32(x);
}

// CUDA's device min/max overloads (integers, plus the mixed signed/unsigned ones CUDA has).
#define CUPOOL_EMU_MINMAX(R, A, B)                                  \
    inline R min(A a, B b) { return (R)a < (R)b ? (R)a : (R)b; }   \
    inline R max(A a, B b) { return (R)a > (R)b ? (R)a : (R)b; }
CUPOOL_EMU_MINMAX(int, int, int)
CUPOOL_EMU_MINMAX(unsigned int, unsigned int, unsigned int)
CUPOOL_EMU_MINMAX(unsigned int, int, unsigned int)
CUPOOL_EMU_MINMAX(unsigned int, unsigned int, int)
CUPOOL_EMU_MINMAX(long, long, long)
CUPOOL_EMU_MINMAX(unsigned long, unsigned long, unsigned long)
CUPOOL_EMU_MINMAX(long long, long long, long long)
CUPOOL_EMU_MINMAX(unsigned long long, unsigned long long, unsigned long long)
CUPOOL_EMU_MINMAX(unsigned long long, long long, unsigned long long)
CUPOOL_EMU_MINMAX(unsigned long long, unsigned long long, long long)
#undef CUPOOL_EMU_MINMAX
inline float min(float a, float b) { return fminf(a, b); }
inline float max(float a, float b) { return fmaxf(a, b); }
inline double min(double a, double b) { return fmin(a, b); }
inline double max(double a, double b) { return fmax(a, b); }

// ---------------------------------------------------------------------------------------------
// Float intrinsics. The emulator is built with -ffp-contract=off, so `a + b` is one IEEE
// round-to-nearest add, as __fadd_rn promises.
// ---------------------------------------------------------------------------------------------
inline float __fdividef(float a, float b) { return a / b; }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fsqrt_rn(float x) { return sqrtf(x); }
inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dsub_rn(double a, double b) { return a - b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __ddiv_rn(double a, double b) { return a / b; }
inline double __drcp_rn(double x) { return 1.0 / x; }
inline double __fma_rn(double a, double b, double c) { return fma(a, b, c); }
inline float __saturatef(float x) { return x != x ? 0.0f : (x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x)); }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __int2float_rn(int x) { return (float)x; }
inline float __uint2float_rn(unsigned int x) { return (float)x; }
inline double __int2double_rn(int x) { return (double)x; }
inline int __float2int_rz(float x) { return (int)x; }

#endif  // CUPOOL_CUDA_EMULATOR_H
