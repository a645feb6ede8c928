// Test-only kernels for the emulator's own tests (tests/emulator_faults.rs): correct kernels
// whose answers are known, and deliberately broken ones whose faults the emulator must report.
// Compiled into the emulator only; never part of the fatbin.
#include "emulator/test_common.cuh"

// Sums `n` floats into out[0] with one block: strided partial sums into dynamic shared memory
// (blockDim.x floats, blockDim.x a power of two), then a tree reduction.
extern "C" __global__ void emu_test_block_sum(const float* __restrict__ in, float* __restrict__ out, unsigned n) {
    extern __shared__ float emu_test_smem[];
    unsigned t = threadIdx.x;
    float partial = 0.0f;
    for (unsigned i = t; i < n; i += blockDim.x) partial += emu_test_load(in + i);
    emu_test_smem[t] = partial;
    __syncthreads();
    for (unsigned stride = blockDim.x / 2; stride > 0; stride /= 2) {
        if (t < stride) emu_test_smem[t] += emu_test_smem[t + stride];
        __syncthreads();
    }
    if (t == 0) emu_test_store(out, emu_test_smem[0]);
}
CUPOOL_REGISTER_KERNEL(emu_test_block_sum)

// The same reduction with every __syncthreads() removed: a race the emulator must expose (a
// thread reads its neighbours' slots before they are written, so it sees the NaN poison).
extern "C" __global__ void emu_test_block_sum_nosync(const float* __restrict__ in, float* __restrict__ out,
                                                     unsigned n) {
    extern __shared__ float emu_test_smem[];
    unsigned t = threadIdx.x;
    float partial = 0.0f;
    for (unsigned i = t; i < n; i += blockDim.x) partial += emu_test_load(in + i);
    emu_test_smem[t] = partial;
    for (unsigned stride = blockDim.x / 2; stride > 0; stride /= 2) {
        if (t < stride) emu_test_smem[t] += emu_test_smem[t + stride];
    }
    if (t == 0) emu_test_store(out, emu_test_smem[0]);
}
CUPOOL_REGISTER_KERNEL(emu_test_block_sum_nosync)

// Writes one float past the dynamic shared memory it was given (blockDim.x floats).
extern "C" __global__ void emu_test_shared_overrun(float* out) {
    extern __shared__ float emu_test_smem[];
    emu_test_smem[threadIdx.x + 1] = 1.0f;  // thread blockDim.x - 1 writes one past the end
    __syncthreads();
    if (threadIdx.x == 0) emu_test_store(out, emu_test_smem[1]);
}
CUPOOL_REGISTER_KERNEL(emu_test_shared_overrun)

// out[i] = in[i + offset] for i < n: reads past `in` when offset > 0 and n is its length.
extern "C" __global__ void emu_test_copy_offset(const float* __restrict__ in, float* __restrict__ out, unsigned n,
                                                int offset) {
    unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) emu_test_store(out + i, emu_test_load(in + (int)i + offset));
}
CUPOOL_REGISTER_KERNEL(emu_test_copy_offset)

// Thread 0 writes 1.0 at out[index]: past the end when index >= the buffer's length.
extern "C" __global__ void emu_test_write_at(float* out, unsigned index) {
    if (threadIdx.x == 0 && blockIdx.x == 0) emu_test_store(out + index, 1.0f);
}
CUPOOL_REGISTER_KERNEL(emu_test_write_at)

// Writes into its (read-only) input: a kernel bug the emulator must report.
extern "C" __global__ void emu_test_write_input(const float* in, float* out) {
    if (threadIdx.x == 0) {
        emu_test_store(const_cast<float*>(in) + 3, 2.0f);
        emu_test_store(out, 1.0f);
    }
}
CUPOOL_REGISTER_KERNEL(emu_test_write_input)

// A 16-byte load from in + 1: misaligned (a float4 needs 16-byte alignment).
extern "C" __global__ void emu_test_misaligned_read(const float* in, float* out) {
    if (threadIdx.x == 0) {
        float4 v = emu_test_load(reinterpret_cast<const float4*>(in + 1));
        emu_test_store(out, v.x + v.y + v.z + v.w);
    }
}
CUPOOL_REGISTER_KERNEL(emu_test_misaligned_read)

// Per thread i (global index, whole warps): down[i] = in[lane+delta within the warp, else own],
// xor[i] = in[lane ^ 5], idx[i] = in[src lane of the warp], ballot[i] = ballot of (in > 0),
// sum[i] = the warp's sum (xor butterfly in double), up16[i] = up-shuffle by 3 in 16-lane segments.
extern "C" __global__ void emu_test_shuffles(const float* __restrict__ in, float* __restrict__ down,
                                             float* __restrict__ xor_out, float* __restrict__ idx,
                                             unsigned* __restrict__ ballot, double* __restrict__ sum,
                                             float* __restrict__ up16, int src_lane) {
    unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
    float v = emu_test_load(in + i);
    const unsigned full = 0xffffffffu;
    emu_test_store(down + i, __shfl_down_sync(full, v, 3));
    emu_test_store(xor_out + i, __shfl_xor_sync(full, v, 5));
    emu_test_store(idx + i, __shfl_sync(full, v, src_lane));
    emu_test_store(ballot + i, __ballot_sync(full, v > 0.0f));
    double s = v;
    for (int m = 16; m > 0; m /= 2) s += __shfl_xor_sync(full, s, m);
    emu_test_store(sum + i, s);
    emu_test_store(up16 + i, __shfl_up_sync(full, v, 3, 16));
}
CUPOOL_REGISTER_KERNEL(emu_test_shuffles)

// A params struct passed by value, as cupool's kernels take theirs (no implicit padding).
struct EmuTestAffine {
    unsigned n;
    float scale;
    float bias;
    unsigned reserved;
};

// out[i] = in[i] * p.scale + p.bias, grid-stride, through 16-byte loads where aligned; also
// exercises a static __shared__ tile shared by the block's threads.
extern "C" __global__ void emu_test_affine(const float* __restrict__ in, float* __restrict__ out, EmuTestAffine p) {
    __shared__ float coefficients[2];
    if (threadIdx.x == 0) {
        coefficients[0] = p.scale;
        coefficients[1] = p.bias;
    }
    __syncthreads();
    unsigned vectors = p.n / 4;
    for (unsigned v = blockIdx.x * blockDim.x + threadIdx.x; v < vectors; v += gridDim.x * blockDim.x) {
        float4 x = emu_test_load(reinterpret_cast<const float4*>(in) + v);
        x.x = x.x * coefficients[0] + coefficients[1];
        x.y = x.y * coefficients[0] + coefficients[1];
        x.z = x.z * coefficients[0] + coefficients[1];
        x.w = x.w * coefficients[0] + coefficients[1];
        emu_test_store(reinterpret_cast<float4*>(out) + v, x);
    }
    for (unsigned i = vectors * 4 + blockIdx.x * blockDim.x + threadIdx.x; i < p.n; i += gridDim.x * blockDim.x) {
        emu_test_store(out + i, emu_test_load(in + i) * coefficients[0] + coefficients[1]);
    }
}
CUPOOL_REGISTER_KERNEL(emu_test_affine)

// Threads with threadIdx.x >= n exit before a full-mask shuffle: a bug (lanes of the mask gone).
extern "C" __global__ void emu_test_exited_lane_shuffle(const float* in, float* out, unsigned n) {
    unsigned i = threadIdx.x;
    if (i >= n) return;
    float v = __shfl_down_sync(0xffffffffu, emu_test_load(in + i), 1);
    emu_test_store(out + i, v);
}
CUPOOL_REGISTER_KERNEL(emu_test_exited_lane_shuffle)

// Counts, with __syncthreads_count and an atomicAdd on shared memory, the positive inputs.
extern "C" __global__ void emu_test_count_positive(const float* in, unsigned* out) {
    __shared__ unsigned counter;
    if (threadIdx.x == 0) counter = 0;
    __syncthreads();
    float v = emu_test_load(in + threadIdx.x);
    if (v > 0.0f) atomicAdd(&counter, 1u);
    int count = __syncthreads_count(v > 0.0f);
    if (threadIdx.x == 0) {
        emu_test_store(out, counter);
        emu_test_store(out + 1, (unsigned)count);
    }
}
CUPOOL_REGISTER_KERNEL(emu_test_count_positive)
