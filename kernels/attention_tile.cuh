// Tile pieces shared by the flash-attention forward and backward kernels.
//
// A block of 256 threads works on 64 x 64 tiles (64 queries by 64 keys) held in shared memory
// with a row stride of D + 4 floats (68 for the probability tile), so rows stay 16-byte
// aligned for float4 accesses and 8 consecutive rows start in 8 different bank groups.
// Thread (tx, ty) = (t % 16, t / 16) owns the 4 x 4 fragment of rows ty + 16 i and columns
// tx + 16 j of a 64 x 64 tile: the 16 threads sharing a row sit in one half-warp and reduce
// it with four shuffles. In a 64 x D tile it owns rows ty + 16 i and the D / 16 columns
// attn_col(tx, j), runs of up to 4 adjacent columns so they load as one float4. Both tile
// products read shared memory 4 floats at a time (float4 along the reduced dim), a quarter
// of the load instructions of scalar reads per FFMA. Head dims are padded with zeros up to D
// (16, 32, 64, 128). Scores are kept in base 2 (scaled by log2 e) so exponentials are exp2.
#pragma once

#include "common.cuh"
#include "cp_async.cuh"
#include "kernels_nn.h"
#include "nn_rows.cuh"

#include <math_constants.h>

#include <type_traits>

namespace pyengine {

constexpr int kAttnThreads = 256;
constexpr int kAttnTile = 64;
constexpr int kAttnLdP = kAttnTile + 4;
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

template <int D>
constexpr int attn_ld() { return D + 4; }

// Adjacent D-dim columns per run in a thread's slice of a 64 x D tile (float4 when D >= 64).
template <int D>
constexpr int attn_run() { return D / 16 < 4 ? D / 16 : 4; }

// The D-dim column of a thread's accumulator slot j (j < D / 16).
template <int D>
__device__ __forceinline__ int attn_col(int tx, int j) {
  constexpr int R = attn_run<D>();
  return (j / R) * 16 * R + tx * R + j % R;
}

// Rows [r0, r0 + 64) of a row-major (n, width) matrix into a 64 x D tile, zeros outside;
// float4 global loads when every row starts 16-byte aligned.
template <int D>
__device__ __forceinline__ void attn_load_tile(float* dst, const float* __restrict__ src, int r0, int n,
                                               int width) {
  if (width % 4 == 0 && reinterpret_cast<std::uintptr_t>(src) % 16 == 0) {
    for (int idx = threadIdx.x; idx < kAttnTile * D / 4; idx += kAttnThreads) {
      const int r = idx / (D / 4), c = idx % (D / 4) * 4, gr = r0 + r;
      const float4 v = (gr < n && c < width) ? *reinterpret_cast<const float4*>(src + (long long)gr * width + c)
                                             : make_float4(0.f, 0.f, 0.f, 0.f);
      *reinterpret_cast<float4*>(dst + r * attn_ld<D>() + c) = v;
    }
    return;
  }
  for (int idx = threadIdx.x; idx < kAttnTile * D; idx += kAttnThreads) {
    const int r = idx / D, c = idx % D, gr = r0 + r;
    dst[r * attn_ld<D>() + c] = (gr < n && c < width) ? src[(long long)gr * width + c] : 0.f;
  }
}

// Rows [r0, r0 + ROWS) of a row-major (n, width) matrix into a ROWS x D tile (row stride
// D + 4) by cp.async, zeros outside. vec: width % 4 == 0 and src 16-byte aligned.
template <int ROWS, int D>
__device__ __forceinline__ void attn_async_tile(float* dst, const float* __restrict__ src, int r0, int n,
                                                int width, bool vec) {
  if (vec) {
    for (int idx = threadIdx.x; idx < ROWS * D / 4; idx += blockDim.x) {
      const int r = idx / (D / 4), c = idx % (D / 4) * 4, gr = r0 + r;
      const bool ok = gr < n && c < width;
      cp_async16(dst + r * (D + 4) + c, ok ? src + (long long)gr * width + c : src, ok ? 16 : 0);
    }
  } else {
    for (int idx = threadIdx.x; idx < ROWS * D; idx += blockDim.x) {
      const int r = idx / D, c = idx % D, gr = r0 + r;
      const bool ok = gr < n && c < width;
      cp_async4(dst + r * (D + 4) + c, ok ? src + (long long)gr * width + c : src, ok ? 4 : 0);
    }
  }
}

// Rows of `width` floats from p can be copied 16 bytes at a time.
inline bool attn_vec_ok(const float* p, int width) {
  return width % 4 == 0 && reinterpret_cast<std::uintptr_t>(p) % 16 == 0;
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
#pragma unroll 1
  for (int c = 0; c < D; c += 4) {
    float x[4][4], y[4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      load_vec<4>(A + (ra + 16 * i) * attn_ld<D>() + c, x[i]);
      load_vec<4>(B + (rb + 16 * i) * attn_ld<D>() + c, y[i]);
    }
#pragma unroll
    for (int k = 0; k < 4; ++k)
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) s[i][j] = fmaf(x[i][k], y[j][k], s[i][j]);
  }
}

// acc[i][j] += sum_n P[ra + 16 i][n] * V[n][attn_col(tx, j)]: P a 64 x 64 tile, V a 64 x D tile.
template <int D>
__device__ __forceinline__ void attn_frag_pv(float (&acc)[4][D / 16], const float* P, int ra, const float* V,
                                             int tx) {
  constexpr int R = attn_run<D>();
#pragma unroll 1
  for (int n = 0; n < kAttnTile; n += 4) {
    float p[4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i) load_vec<4>(P + (ra + 16 * i) * kAttnLdP + n, p[i]);
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      float w[D / 16 / R][R];
#pragma unroll
      for (int g = 0; g < D / 16 / R; ++g) load_vec<R>(V + (n + k) * attn_ld<D>() + g * 16 * R + tx * R, w[g]);
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < D / 16; ++j) acc[i][j] = fmaf(p[i][k], w[j / R][j % R], acc[i][j]);
    }
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
