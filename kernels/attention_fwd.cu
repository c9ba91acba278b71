// attention_fwd.cu — fused scaled-dot-product attention forward (flash attention), float32:
//   out = softmax(scale * q k^T + mask) v  for bh independent (l, e) x (s, e) x (s, ev) problems,
// with causal masking (top-left aligned, as PyTorch's is_causal), a bool or additive mask read
// through broadcast strides, and the row log-sum-exp saved for the backward pass.
//
// Technique: one block per 64 queries of one problem keeps its Q tile in shared memory and
// walks the keys 64 at a time: S = Q K^T into registers (4 x 4 per thread), masking, the
// online softmax update (running row max and sum, rescaling the output accumulator), then
// P (through shared memory) times the V tile, which reuses K's buffer. The l x s matrix is
// never written to device memory; extra memory is the (bh, l) lse. Causal blocks stop at the
// diagonal, and the grid launches the longest (last) query tiles first. FFMA on CUDA cores
// (no tensor cores: the result is full fp32, not TF32).
//
// Measured on an H100 80GB HBM3 (driver 580.159.04, 2026-11-27, bench/gpu_bench_nn.py;
// B=8 H=16 T=2048 d=64, FLOPs 4*b*h*t*t*d, halved when causal):
//   v1 scalar shared-memory reads: not measured (replaced before the first GPU run).
//   v2 float4 shared-memory reads (this file): 5.65 ms = 24.3 TFLOP/s non-causal, 2.75 ms
//      = 25.0 TFLOP/s causal. torch 2.11 fp32 SDPA 4.06 / 2.28 ms (ours 0.72x / 0.83x);
//      unfused cuBLAS + CuPy softmax 15.7 / 18.4 ms (ours 2.78x / 6.7x).
//   v3 tried: 128-query blocks with 8 x 4 fragments (half the Q reads per FFMA, 1 block/SM):
//      5.63 / 2.91 ms against v2's 5.61 / 2.89 in the same run, so shared-memory bandwidth
//      is not the limit; reverted. Next lead: overlap the K/V tile loads with compute
//      (cp.async double buffering) and cut the three barriers per key tile.
//   v4 candidates (attention_fwd_variants.cu: cp.async K/V, two barriers per tile, masks only
//      on edge tiles, tile shapes 64..128 x 64..128): not yet measured on a GPU.
// attention_forward runs version kAttnFwdDefault (kernels_variants.h); 0 is the v2 kernel here.
#include "attention_tile.cuh"
#include "kernels_variants.h"

#include <string>

namespace pyengine {
namespace {

template <int D>
__global__ void __launch_bounds__(kAttnThreads, 1)
    attn_fwd_kernel(AttnShape a, AttnMask mk, const float* __restrict__ q, const float* __restrict__ k,
                    const float* __restrict__ v, float* __restrict__ out, float* __restrict__ lse) {
  extern __shared__ float smem[];
  float* Qs = smem;
  float* KVs = Qs + kAttnTile * attn_ld<D>();
  float* Ps = KVs + kAttnTile * attn_ld<D>();

  const int bh = blockIdx.x;
  const int m0 = (gridDim.y - 1 - blockIdx.y) * kAttnTile;
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  q += (long long)bh * a.l * a.e;
  k += (long long)bh * a.s * a.e;
  v += (long long)bh * a.s * a.ev;
  out += (long long)bh * a.l * a.ev;

  attn_load_tile<D>(Qs, q, m0, a.l, a.e);
  const float scale2 = a.scale * kLog2e;
  float row_max[4], row_sum[4], acc[4][D / 16];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    row_max[i] = -CUDART_INF_F;
    row_sum[i] = 0.f;
#pragma unroll
    for (int j = 0; j < D / 16; ++j) acc[i][j] = 0.f;
  }

  const int n_end = a.causal ? min(a.s, m0 + kAttnTile) : a.s;
  for (int n0 = 0; n0 < n_end; n0 += kAttnTile) {
    __syncthreads();  // the previous tile's P V product is done with KVs and Ps
    attn_load_tile<D>(KVs, k, n0, a.s, a.e);
    __syncthreads();
    float s[4][4];
    attn_frag_dot<D>(s, Qs, ty, KVs, tx);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      float mx = -CUDART_INF_F;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        s[i][j] = s[i][j] * scale2 + attn_bias(mk, a, bh, m0 + ty + 16 * i, n0 + tx + 16 * j);
        mx = fmaxf(mx, s[i][j]);
      }
      const float m_new = fmaxf(row_max[i], half_warp_max(mx));
      // While a row has seen only masked keys its max is -inf; exponentiate against 0 then so
      // the masked scores give exactly 0 instead of -inf - -inf = NaN.
      const float m_ref = m_new == -CUDART_INF_F ? 0.f : m_new;
      const float alpha = exp2f(row_max[i] - m_ref);
      float sum = 0.f;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        s[i][j] = exp2f(s[i][j] - m_ref);
        sum += s[i][j];
      }
      row_sum[i] = row_sum[i] * alpha + half_warp_sum(sum);
      row_max[i] = m_new;
#pragma unroll
      for (int j = 0; j < D / 16; ++j) acc[i][j] *= alpha;
#pragma unroll
      for (int j = 0; j < 4; ++j) Ps[(ty + 16 * i) * kAttnLdP + tx + 16 * j] = s[i][j];
    }
    __syncthreads();  // every thread is done reading K; P is complete
    attn_load_tile<D>(KVs, v, n0, a.s, a.ev);
    __syncthreads();
    attn_frag_pv<D>(acc, Ps, ty, KVs, tx);
  }

#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int gi = m0 + ty + 16 * i;
    if (gi >= a.l) continue;
    // A row with every key masked has sum 0: 0 * inf = NaN, as PyTorch gives.
    const float inv = 1.f / row_sum[i];
#pragma unroll
    for (int j = 0; j < D / 16; ++j) {
      const int c = attn_col<D>(tx, j);
      if (c < a.ev) out[(long long)gi * a.ev + c] = acc[i][j] * inv;
    }
    if (tx == 0)
      lse[(long long)bh * a.l + gi] =
          row_max[i] == -CUDART_INF_F ? -CUDART_INF_F : (row_max[i] + log2f(row_sum[i])) * kLn2;
  }
}

std::string desc(const char* name, const AttnShape& a, const AttnMask& mk) {
  return std::string(name) + " bh=" + std::to_string(a.bh) + " l=" + std::to_string(a.l) +
         " s=" + std::to_string(a.s) + " e=" + std::to_string(a.e) + " ev=" + std::to_string(a.ev) +
         (a.causal ? " causal" : "") + " mask_kind=" + std::to_string(mk.kind);
}

}  // namespace

void attention_forward(const AttnShape& a, const AttnMask& mask, std::uintptr_t q, std::uintptr_t k,
                       std::uintptr_t v, std::uintptr_t out, std::uintptr_t lse, std::uintptr_t stream) {
  if (kAttnFwdDefault != 0) return attention_forward_variant(kAttnFwdDefault, a, mask, q, k, v, out, lse, stream);
  attention_forward_v2(a, mask, q, k, v, out, lse, stream);
}

void attention_forward_v2(const AttnShape& a, const AttnMask& mask, std::uintptr_t q, std::uintptr_t k,
                          std::uintptr_t v, std::uintptr_t out, std::uintptr_t lse, std::uintptr_t stream) {
  if (a.bh <= 0 || a.l <= 0) return;
  if (a.e > kAttnMaxHeadDim || a.ev > kAttnMaxHeadDim)
    throw std::invalid_argument(desc("attention_forward: head dims over 128 are not supported,", a, mask));
  attn_dispatch_d(a.e, a.ev, [&](auto dc) {
    constexpr int D = decltype(dc)::value;
    constexpr int smem = attn_smem_bytes<D>(2, 0);
    CUDA_CHECK(cudaFuncSetAttribute(attn_fwd_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    const dim3 grid(a.bh, ceil_div(a.l, kAttnTile));
    attn_fwd_kernel<D><<<grid, kAttnThreads, smem, as_stream(stream)>>>(
        a, mask, dptr<const float>(q), dptr<const float>(k), dptr<const float>(v), dptr<float>(out),
        dptr<float>(lse));
  });
  check_launch(desc("attention_forward", a, mask));
}

}  // namespace pyengine
