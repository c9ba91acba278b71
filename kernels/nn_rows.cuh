// Row reductions shared by the row-wise nn kernels (softmax, cross-entropy, layer norm).
// A row belongs to a group of G threads: one warp (G == 32, several rows per block) for
// short rows, or the whole block (G == blockDim.x, one row per block) for long ones. Both
// reduce with warp shuffles; a block group adds one step through shared memory.
#pragma once

#include <cuda_runtime.h>

#include <math_constants.h>

#include <type_traits>

namespace pyengine {

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Running max m of a row and the sum s of exp(x - m) over what it has seen: the state of the
// one-pass (online) softmax normaliser.
struct MaxSum {
  float m, s;
};

__device__ __forceinline__ MaxSum maxsum_push(MaxSum a, float x) {
  if (x == -CUDART_INF_F) return a;  // contributes exp(-inf) = 0; avoids -inf - -inf
  if (x > a.m) return {x, a.s * expf(a.m - x) + 1.f};
  return {a.m, a.s + expf(x - a.m)};  // NaN inputs land here and poison s, as they should
}

__device__ __forceinline__ MaxSum maxsum_merge(MaxSum a, MaxSum b) {
  const float m = fmaxf(a.m, b.m);
  // Neither side has seen a value above -inf: each sum is 0, or NaN after a NaN input, which
  // must survive the merge (a NaN-only lane meeting an empty one used to come back as 0).
  if (m == -CUDART_INF_F) return {m, a.s + b.s};
  return {m, a.s * expf(a.m - m) + b.s * expf(b.m - m)};
}

__device__ __forceinline__ MaxSum warp_maxsum(MaxSum v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const MaxSum other{__shfl_xor_sync(0xffffffffu, v.m, o), __shfl_xor_sync(0xffffffffu, v.s, o)};
    v = maxsum_merge(v, other);
  }
  return v;
}

// Scratch a group reduction needs: one slot per warp of the group (two floats for MaxSum).
template <int G>
constexpr int group_scratch() { return G > 32 ? 2 * (G / 32) : 2; }

// Sum over the G threads of a row; every thread gets the total. The leading barrier lets
// callers reuse `scratch` for consecutive reductions.
template <int G>
__device__ __forceinline__ float group_sum(float v, float* scratch) {
  v = warp_sum(v);
  if constexpr (G > 32) {
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = warp_sum(lane < G / 32 ? scratch[lane] : 0.f);
  }
  return v;
}

template <int G>
__device__ __forceinline__ float group_max(float v, float* scratch) {
  v = warp_max(v);
  if constexpr (G > 32) {
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = warp_max(lane < G / 32 ? scratch[lane] : -CUDART_INF_F);
  }
  return v;
}

template <int G>
__device__ __forceinline__ MaxSum group_maxsum(MaxSum v, float* scratch) {
  v = warp_maxsum(v);
  if constexpr (G > 32) {
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    __syncthreads();
    if (lane == 0) {
      scratch[2 * warp] = v.m;
      scratch[2 * warp + 1] = v.s;
    }
    __syncthreads();
    v = lane < G / 32 ? MaxSum{scratch[2 * lane], scratch[2 * lane + 1]} : MaxSum{-CUDART_INF_F, 0.f};
    v = warp_maxsum(v);
  }
  return v;
}

// VEC consecutive floats in one access when VEC is 2 or 4 (caller guarantees alignment).
template <int VEC>
__device__ __forceinline__ void load_vec(const float* p, float (&v)[VEC]) {
  if constexpr (VEC == 4) {
    const float4 q = *reinterpret_cast<const float4*>(p);
    v[0] = q.x; v[1] = q.y; v[2] = q.z; v[3] = q.w;
  } else if constexpr (VEC == 2) {
    const float2 q = *reinterpret_cast<const float2*>(p);
    v[0] = q.x; v[1] = q.y;
  } else {
#pragma unroll
    for (int i = 0; i < VEC; ++i) v[i] = p[i];
  }
}

template <int VEC>
__device__ __forceinline__ void store_vec(float* p, const float (&v)[VEC]) {
  if constexpr (VEC == 4) {
    *reinterpret_cast<float4*>(p) = make_float4(v[0], v[1], v[2], v[3]);
  } else {
#pragma unroll
    for (int i = 0; i < VEC; ++i) p[i] = v[i];
  }
}

// A thread's share of a row held in registers: access k covers columns
// (t + G k) VEC ... + VEC - 1, so a warp's accesses are adjacent. The whole row is read from
// device memory once, every load issued before the first use.
template <int G, int VEC, int NV>
struct RowRegs {
  float v[NV][VEC];

  static __device__ __forceinline__ int col(int t, int k) { return (t + G * k) * VEC; }

  __device__ __forceinline__ void load(const float* row, int cols, int t, float fill) {
#pragma unroll
    for (int k = 0; k < NV; ++k) {
      if (col(t, k) < cols) {
        load_vec<VEC>(row + col(t, k), v[k]);
      } else {
#pragma unroll
        for (int i = 0; i < VEC; ++i) v[k][i] = fill;
      }
    }
  }

  __device__ __forceinline__ void store(float* row, int cols, int t) const {
#pragma unroll
    for (int k = 0; k < NV; ++k)
      if (col(t, k) < cols) store_vec<VEC>(row + col(t, k), v[k]);
  }
};

// Threads per row and rows per block for a row length: a warp per row up to 1024 columns
// (4 rows per 128-thread block), else a 512-thread block per row.
constexpr int kRowWarpMaxCols = 1024;
constexpr int kRowWarpsPerBlock = 4;
constexpr int kRowBlockThreads = 512;

template <int G>
constexpr int row_threads() { return G == 32 ? 32 * kRowWarpsPerBlock : G; }
template <int G>
constexpr int rows_per_block() { return G == 32 ? kRowWarpsPerBlock : 1; }

template <int N>
using IntC = std::integral_constant<int, N>;

// Picks the register-cached row kernel for a row length: calls f(G, VEC, NV) with
// integral_constants and returns true, or returns false for rows over 16384 floats (the
// callers then stream the row through a loop). vec4: cols % 4 == 0 and 16-byte aligned rows.
template <typename F>
bool dispatch_row_regs(int cols, bool vec4, F&& f) {
  constexpr int B = kRowBlockThreads;
  if (vec4) {
    if (cols <= 32 * 4 * 2) return f(IntC<32>{}, IntC<4>{}, IntC<2>{}), true;
    if (cols <= 32 * 4 * 8) return f(IntC<32>{}, IntC<4>{}, IntC<8>{}), true;
    if (cols <= B * 4 * 2) return f(IntC<B>{}, IntC<4>{}, IntC<2>{}), true;
    if (cols <= B * 4 * 8) return f(IntC<B>{}, IntC<4>{}, IntC<8>{}), true;
    return false;
  }
  if (cols <= 32 * 8) return f(IntC<32>{}, IntC<1>{}, IntC<8>{}), true;
  if (cols <= 32 * 32) return f(IntC<32>{}, IntC<1>{}, IntC<32>{}), true;
  if (cols <= B * 8) return f(IntC<B>{}, IntC<1>{}, IntC<8>{}), true;
  if (cols <= B * 32) return f(IntC<B>{}, IntC<1>{}, IntC<32>{}), true;
  return false;
}

// The row this thread's group owns, and the thread's index within the group.
template <int G>
__device__ __forceinline__ long long group_row() {
  return (long long)blockIdx.x * rows_per_block<G>() + threadIdx.x / G;
}

}  // namespace pyengine
