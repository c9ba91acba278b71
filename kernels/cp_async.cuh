// cp.async (sm_80+): global -> shared copies that bypass registers and complete in groups, so
// a kernel can start the next tile's loads and compute on the current one. A copy whose
// source size is 0 writes zeros (the zero fill loads past a matrix edge need), and reads
// nothing from `src`, which must still be a valid pointer.
#pragma once

#include <cuda_runtime.h>

namespace pyengine {

// 16 bytes, both addresses 16-byte aligned; src_bytes 0 or 16 (the rest is zero-filled).
__device__ __forceinline__ void cp_async16(float* dst, const float* src, int src_bytes) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(src), "r"(src_bytes));
}

// One float; src_bytes 0 (write a zero) or 4.
__device__ __forceinline__ void cp_async4(float* dst, const float* src, int src_bytes) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(s), "l"(src), "r"(src_bytes));
}

__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }

// Waits until at most N of this thread's committed groups are still in flight; a
// __syncthreads() after it makes every thread's landed copies visible to the block.
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

}  // namespace pyengine
