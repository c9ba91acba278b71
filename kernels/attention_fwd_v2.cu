// attention_fwd_v2.cu — the v2 flash-attention forward, kept as ranking version 0 of
// attention_forward_variant (bench/variants/attention.py); built only with
// PYENGINE_KERNEL_VARIANTS=ON. attention_fwd.cu's kernel replaced it (see its header).
//
// Technique: one block per 64 queries of one problem keeps its Q tile in shared memory and
// walks the keys 64 at a time: S = Q K^T into registers (4 x 4 per thread), masking, the
// online softmax update, then P (through shared memory) times the V tile, which reuses K's
// buffer; synchronous loads, four barriers per key tile.
// Measured on an H100 80GB HBM3 (B=8 H=16 T=2048 d=64): 5.41 ms non-causal, 2.75 ms causal,
// 11.8 ms at d=128 (bench/variants/attention.py, 2026-11-27 22:09 UTC).
#include "attention_tile.cuh"
#include "kernels_variants.h"

#if PYENGINE_KERNEL_VARIANTS

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

#endif  // PYENGINE_KERNEL_VARIANTS
