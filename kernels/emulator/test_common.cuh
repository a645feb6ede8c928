// A minimal stand-in for kernels/common.cuh, for the emulator's own test kernels only
// (test_kernels.cu). It follows the same contract as common.cuh: the emulator header under
// CUPOOL_EMULATOR, empty hooks otherwise, and every global access through a checked helper.
#ifndef CUPOOL_EMU_TEST_COMMON_CUH
#define CUPOOL_EMU_TEST_COMMON_CUH

#ifdef CUPOOL_EMULATOR
#include "emulator/cuda_emulator.h"
#else
#define CUPOOL_REGISTER_KERNEL(NAME)
#define CUPOOL_GLOBAL_READ(ptr, bytes) ((void)0)
#define CUPOOL_GLOBAL_WRITE(ptr, bytes) ((void)0)
#endif

template <class T>
__device__ __forceinline__ T emu_test_load(const T* p) {
    CUPOOL_GLOBAL_READ(p, sizeof(T));
    return *p;
}

template <class T>
__device__ __forceinline__ void emu_test_store(T* p, T value) {
    CUPOOL_GLOBAL_WRITE(p, sizeof(T));
    *p = value;
}

#endif  // CUPOOL_EMU_TEST_COMMON_CUH
