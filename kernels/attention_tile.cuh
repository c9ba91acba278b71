// Tile pieces shared by the flash-attention forward and backward kernels.
//
// A block of 256 threads works on 64 x 64 tiles (64 queries by 64 keys) held in shared memory
// with a row stride of D + 1 floats (65 for the probability tile): a warp's threads then read
// 16 different rows at the same column from 16 different banks. Thread (tx, ty) = (t % 16,
// t / 16) owns the 4 x 4 fragment of rows ty + 16 i and columns tx + 16 j of a 64 x 64 tile,
// and columns tx + 16 j of a 64 x D tile, so the 16 threads sharing a row sit in one half-warp
// and reduce it with four shuffles. Head dims are padded with zeros up to D (16, 32, 64, 128).
// Scores are kept in base 2 (scaled by log2 e) so the exponentials are exp2.
#pragma once

#include "common.cuh"
#include "kernels_nn.h"

#include <math_constants.h>

#include <type_traits>

namespace pyengine {

constexpr int kAttnThreads = 256;
constexpr int kAttnTile = 64;
constexpr int kAttnLdP = kAttnTile + 1;
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

template <int D>
constexpr int attn_ld() { return D + 1; }

// Rows [r0, r0 + 64) of a row-major (n, width) matrix into a 64 x D tile, zeros outside.
template <int D>
__device__ __forceinline__ void attn_load_tile(float* dst, const float* __restrict__ src, int r0, int n,
                                               int width) {
  for (int idx = threadIdx.x; idx < kAttnTile * D; idx += kAttnThreads) {
    const int r = idx / D, c = idx % D, gr = r0 + r;
    dst[r * attn_ld<D>() + c] = (gr < n && c < width) ? src[(long long)gr * width + c] : 0.f;
  }
}

// 0 where query i may attend key j, -inf where it may not (outside the matrix, causal, bool
// mask false), or the additive mask in base-2 units.
__device__ __forceinline__ float attn_bias(const AttnMask& mk, const AttnShape& a, int bh, int i, int j) {
  if (i >= a.l || j >= a.s || (a.causal && j > i)) return -CUDART_INF_F;
  if (mk.kind == 0) return 0.f;
  const long long off = (long long)(bh / mk.heads) * mk.sb + (long long)(bh % mk.heads) * mk.sh +
                        (long long)i * mk.sl + (long long)j * mk.ss;
  if (mk.kind == 1) return reinterpret_cast<const bool*>(mk.ptr)[off] ? 0.f : -CUDART_INF_F;
  return reinterpret_cast<const float*>(mk.ptr)[off] * kLog2e;
}

// s[i][j] = dot(A row (ra + 16 i), B row (rb + 16 j)) over D, both 64 x D tiles.
template <int D>
__device__ __forceinline__ void attn_frag_dot(float (&s)[4][4], const float* A, int ra, const float* B,
                                              int rb) {
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) s[i][j] = 0.f;
#pragma unroll 8
  for (int c = 0; c < D; ++c) {
    float x[4], y[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      x[i] = A[(ra + 16 * i) * attn_ld<D>() + c];
      y[i] = B[(rb + 16 * i) * attn_ld<D>() + c];
    }
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j) s[i][j] = fmaf(x[i], y[j], s[i][j]);
  }
}

// acc[i][j] += sum_n P[ra + 16 i][n] * V[n][cb + 16 j]: P a 64 x 64 tile, V a 64 x D tile.
template <int D>
__device__ __forceinline__ void attn_frag_pv(float (&acc)[4][D / 16], const float* P, int ra, const float* V,
                                             int cb) {
#pragma unroll 4
  for (int n = 0; n < kAttnTile; ++n) {
    float p[4], w[D / 16];
#pragma unroll
    for (int i = 0; i < 4; ++i) p[i] = P[(ra + 16 * i) * kAttnLdP + n];
#pragma unroll
    for (int j = 0; j < D / 16; ++j) w[j] = V[n * attn_ld<D>() + cb + 16 * j];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < D / 16; ++j) acc[i][j] = fmaf(p[i], w[j], acc[i][j]);
  }
}

// Reductions over the 16 threads of a half-warp that share a fragment row.
__device__ __forceinline__ float half_warp_max(float v) {
#pragma unroll
  for (int o = 8; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
__device__ __forceinline__ float half_warp_sum(float v) {
#pragma unroll
  for (int o = 8; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Shared-memory bytes of `tiles` 64 x D tiles plus one 64 x 64 probability tile and `rows`
// per-row floats.
template <int D>
constexpr int attn_smem_bytes(int tiles, int rows) {
  return (int)sizeof(float) * (tiles * kAttnTile * attn_ld<D>() + kAttnTile * kAttnLdP + rows * kAttnTile);
}

// Calls f(std::integral_constant<int, D>) with the padded head dim for max(e, ev) <= 128.
template <typename F>
void attn_dispatch_d(int e, int ev, F&& f) {
  const int d = e > ev ? e : ev;
  if (d <= 16) f(std::integral_constant<int, 16>{});
  else if (d <= 32) f(std::integral_constant<int, 32>{});
  else if (d <= 64) f(std::integral_constant<int, 64>{});
  else f(std::integral_constant<int, 128>{});
}

}  // namespace pyengine
