// cp.async (sm_80+): global -> shared copies that bypass registers and complete in groups, so
// a kernel can start the next tile's loads and compute on the current one. A copy whose
// source size is 0 writes zeros (the zero fill loads past a matrix edge need), and reads
// nothing from `src`, which must still be a valid pointer.
#pragma once

#include <cuda_runtime.h>

namespace pyengine {

// A generic pointer into shared memory as the 32-bit shared-window address PTX takes.
__device__ __forceinline__ unsigned smem_addr(const void* p) {
  return static_cast<unsigned>(__cvta_generic_to_shared(p));
}

// 16 bytes, both addresses 16-byte aligned; src_bytes 0 to 16 come from src, the rest of the
// 16 are zero-filled.
__device__ __forceinline__ void cp_async16(float* dst, const float* src, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)), "l"(src), "r"(src_bytes));
}

// One float (any alignment); src_bytes 0 (write a zero) or 4.
__device__ __forceinline__ void cp_async4(float* dst, const float* src, int src_bytes) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(smem_addr(dst)), "l"(src), "r"(src_bytes));
}

__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }

// Waits until at most N of this thread's committed groups are still in flight; a
// __syncthreads() after it makes every thread's landed copies visible to the block.
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

}  // namespace pyengine
