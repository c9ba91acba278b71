// attention_fwd.cu — fused scaled-dot-product attention forward (flash attention), float32:
//   out = softmax(scale * q k^T + mask) v  for bh independent (l, e) x (s, e) x (s, ev) problems,
// with causal masking (top-left aligned, as PyTorch's is_causal), a bool or additive mask read
// through broadcast strides, and the row log-sum-exp saved for the backward pass.
//
// Technique (v4): a block of 256 threads owns BR queries and walks the keys BC at a time. K
// and V have their own shared tiles filled with cp.async, so V_j loads while S_j = Q K_j^T is
// computed and K_{j+1} loads while P_j V_j is: two barriers per key tile. Q is loaded once,
// pre-multiplied by scale * log2(e), so scores come out in base 2 (exp2, no multiply). The mask
// and bounds checks run only on tiles that need them (a mask, the causal diagonal, the last
// partial key tile); causal blocks stop at the diagonal and the longest run first. Thread
// (tx, ty) = (t % TX, t / TX) owns the RM x RN scores of rows ty + TY i and keys tx + TX j and
// RM x D/TX outputs; the TX threads of a row sit in one warp and reduce it with shuffles. P
// passes through shared memory to the P V product. The l x s matrix is never in device
// memory. FFMA on CUDA cores (full fp32, not TF32). Tiles: 128 x 128 with 8 x 8 scores per
// thread for head dims up to 64, 128 x 64 with 8 x 4 at 128 (where 128 x 128 does not fit in
// shared memory), 64 x 64 where the device has less shared memory than those need.
//
// Measured on an H100 80GB HBM3 (driver 580.159.04, 2026-11-27 22:09 UTC,
// bench/variants/attention.py, CUDA events, median; B=8 H=16 T=2048, FLOPs 4*b*h*t*t*d, halved
// when causal; torch 2.11 fp32 SDPA in the same process):
//   v2 64x64, synchronous loads, four barriers a tile (attention_fwd_v2.cu, ranking only):
//      d=64 5.41 ms (25.4 TFLOP/s) / causal 2.75 ms; d=128 11.8 ms. torch 4.05 / 2.23 / 6.00 ms.
//   v3 128-query blocks without the pipeline: 5.63 / 2.91 ms (earlier run), reverted.
//   v4 ranking (attention_forward_variant 1-9; ms at d=64, causal, d=128):
//      1 64x64 256t 4x4: 4.40 / 2.26 / 9.15      2 64x64 128t 8x4: 4.25 / 2.19 / 9.50
//      3 128x64 256t 8x4: 4.20 / 2.24 / 7.41     4 64x128 256t 4x8: 4.70 / 2.51 / 8.35
//      5 128x64 tx8 4x8: 4.15 / 2.20 / 7.57      6 128x128 256t 8x8: 3.90 / 2.08 / 9.22 (64x64 at d=128)
//      7 128x128 512t 4x8: 4.18 / 2.20 / 7.41    8 3 unroll 1, 2 blocks/SM: 4.04 / 2.11 / 7.60
//      9 2 unroll 1, 3 blocks/SM: 4.08 / 2.08 / 10.2
//   v4 default = 6 for d <= 64, 3 at d = 128: d=64 3.90 ms = 35.3 TFLOP/s (1.04x torch), causal
//      2.08 ms = 33.0 TFLOP/s (1.07x torch); d=128 7.41 ms (0.81x torch: next lead, a 128 x 128
//      tile for d=128 needs P out of shared memory or a smaller K/V row stride). Unfused cuBLAS +
//      softmax (bench/gpu_bench_nn.py) 15.9 / 18.3 ms earlier: v4 4.1x / 8.8x.
// ptxas (sm_90 / sm_80) at D = 64: 128x128 234 / 236 registers, 128x64 175 / 204; no spills.
// Versions 0-9 (attention_forward_variant) are built only with PYENGINE_KERNEL_VARIANTS=ON;
// the default build has the default tiles and the 64 x 64 fallback (8 kernels). On an A100
// (163 KB of shared memory a block) the 128 x 128 tile does not fit: 64 x 64 runs there, unmeasured.
#include "attention_tile.cuh"
#include "kernels_variants.h"

#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

namespace pyengine {
namespace {

template <int D_, int BR_, int BC_, int TX_, int THREADS_, int MINB_ = 1, int UNROLL_ = 2>
struct FwdCfg {
  static constexpr int D = D_, BR = BR_, BC = BC_, TX = TX_;
  static constexpr int THREADS = THREADS_, TY = THREADS / TX;
  // Blocks per SM asked of ptxas (D <= 64 only), and the unroll of the two tile products'
  // k loops (1 keeps one step's fragments live: fewer registers).
  static constexpr int MINB = D <= 64 ? MINB_ : 1, UNROLL = UNROLL_;
  static constexpr int RM = BR / TY, RN = BC / TX, CO = D / TX;
  static constexpr int RUN = CO < 4 ? CO : 4;  // adjacent output columns a thread owns
  static constexpr int LD = D + 4, LDP = BC + 4;
  static constexpr int SMEM = (int)sizeof(float) * (BR * LD + 2 * BC * LD + BR * LDP);
  static_assert(BR % TY == 0 && BC % TX == 0 && D % TX == 0 && RM >= 1 && RN >= 1 && CO >= 1,
                "unsupported attention tile");
  __device__ static int col(int tx, int j) { return (j / RUN) * TX * RUN + tx * RUN + j % RUN; }
};

// As attn_async_tile through registers, every element multiplied by mul.
template <int ROWS, int D>
__device__ __forceinline__ void scaled_tile(float* dst, const float* __restrict__ src, int r0, int n, int width,
                                            bool vec, float mul) {
  if (vec) {
    for (int idx = threadIdx.x; idx < ROWS * D / 4; idx += blockDim.x) {
      const int r = idx / (D / 4), c = idx % (D / 4) * 4, gr = r0 + r;
      float4 x = make_float4(0.f, 0.f, 0.f, 0.f);
      if (gr < n && c < width) x = *reinterpret_cast<const float4*>(src + (long long)gr * width + c);
      *reinterpret_cast<float4*>(dst + r * (D + 4) + c) = make_float4(x.x * mul, x.y * mul, x.z * mul, x.w * mul);
    }
  } else {
    for (int idx = threadIdx.x; idx < ROWS * D; idx += blockDim.x) {
      const int r = idx / D, c = idx % D, gr = r0 + r;
      dst[r * (D + 4) + c] = gr < n && c < width ? src[(long long)gr * width + c] * mul : 0.f;
    }
  }
}

template <int TX>
__device__ __forceinline__ float row_max_of(float v) {
#pragma unroll
  for (int o = TX / 2; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
template <int TX>
__device__ __forceinline__ float row_sum_of(float v) {
#pragma unroll
  for (int o = TX / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

template <class C>
__global__ void __launch_bounds__(C::THREADS, C::MINB)
    attn_fwd_var_kernel(AttnShape a, AttnMask mk, const float* __restrict__ q, const float* __restrict__ k,
                        const float* __restrict__ v, float* __restrict__ out, float* __restrict__ lse, bool qvec,
                        bool kvec, bool vvec) {
  constexpr int D = C::D, BR = C::BR, BC = C::BC, TX = C::TX, TY = C::TY, RM = C::RM, RN = C::RN, CO = C::CO;
  constexpr int LD = C::LD, LDP = C::LDP, RUN = C::RUN;
  extern __shared__ __align__(16) float smem[];
  float* Qs = smem;
  float* Ks = Qs + BR * LD;
  float* Vs = Ks + BC * LD;
  float* Ps = Vs + BC * LD;

  const int bh = blockIdx.x;
  const int m0 = (gridDim.y - 1 - blockIdx.y) * BR;  // longest causal rows first
  const int tx = threadIdx.x % TX, ty = threadIdx.x / TX;
  q += (long long)bh * a.l * a.e;
  k += (long long)bh * a.s * a.e;
  v += (long long)bh * a.s * a.ev;
  out += (long long)bh * a.l * a.ev;

  const int n_end = a.causal ? min(a.s, m0 + BR) : a.s;
  if (n_end > 0) attn_async_tile<BC, D>(Ks, k, 0, a.s, a.e, kvec);
  cp_async_commit();
  scaled_tile<BR, D>(Qs, q, m0, a.l, a.e, qvec, a.scale * kLog2e);

  float row_max[RM], row_sum[RM], acc[RM][CO];
#pragma unroll
  for (int i = 0; i < RM; ++i) {
    row_max[i] = -CUDART_INF_F;
    row_sum[i] = 0.f;
#pragma unroll
    for (int j = 0; j < CO; ++j) acc[i][j] = 0.f;
  }

  for (int n0 = 0; n0 < n_end; n0 += BC) {
    cp_async_wait<0>();
    __syncthreads();  // K_j has landed; the previous P V product is done with Vs and Ps
    attn_async_tile<BC, D>(Vs, v, n0, a.s, a.ev, vvec);
    cp_async_commit();

    float s[RM][RN];
#pragma unroll
    for (int i = 0; i < RM; ++i)
#pragma unroll
      for (int j = 0; j < RN; ++j) s[i][j] = 0.f;
#pragma unroll C::UNROLL
    for (int c = 0; c < D; c += 4) {
      float x[RM][4], y[RN][4];
#pragma unroll
      for (int i = 0; i < RM; ++i) load_vec<4>(Qs + (ty + TY * i) * LD + c, x[i]);
#pragma unroll
      for (int j = 0; j < RN; ++j) load_vec<4>(Ks + (tx + TX * j) * LD + c, y[j]);
#pragma unroll
      for (int kk = 0; kk < 4; ++kk)
#pragma unroll
        for (int i = 0; i < RM; ++i)
#pragma unroll
          for (int j = 0; j < RN; ++j) s[i][j] = fmaf(x[i][kk], y[j][kk], s[i][j]);
    }

    // Bounds, causal and mask only where a tile can hold a masked score.
    const bool edge = mk.kind != 0 || n0 + BC > a.s || (a.causal && n0 + BC - 1 > m0);
    if (edge) {
#pragma unroll
      for (int i = 0; i < RM; ++i)
#pragma unroll
        for (int j = 0; j < RN; ++j) s[i][j] += attn_bias(mk, a, bh, m0 + ty + TY * i, n0 + tx + TX * j);
    }
#pragma unroll
    for (int i = 0; i < RM; ++i) {
      float mx = -CUDART_INF_F;
#pragma unroll
      for (int j = 0; j < RN; ++j) mx = fmaxf(mx, s[i][j]);
      const float m_new = fmaxf(row_max[i], row_max_of<TX>(mx));
      // A row that has seen only masked keys has max -inf: exponentiate against 0 so the
      // masked scores give exactly 0 instead of -inf - -inf = NaN.
      const float m_ref = m_new == -CUDART_INF_F ? 0.f : m_new;
      const float alpha = exp2f(row_max[i] - m_ref);
      float sum = 0.f;
#pragma unroll
      for (int j = 0; j < RN; ++j) {
        s[i][j] = exp2f(s[i][j] - m_ref);
        sum += s[i][j];
      }
      row_sum[i] = row_sum[i] * alpha + row_sum_of<TX>(sum);
      row_max[i] = m_new;
#pragma unroll
      for (int j = 0; j < CO; ++j) acc[i][j] *= alpha;
#pragma unroll
      for (int j = 0; j < RN; ++j) Ps[(ty + TY * i) * LDP + tx + TX * j] = s[i][j];
    }

    cp_async_wait<0>();
    __syncthreads();  // V_j has landed, P is complete, every thread is done reading K_j
    if (n0 + BC < n_end) attn_async_tile<BC, D>(Ks, k, n0 + BC, a.s, a.e, kvec);
    cp_async_commit();

#pragma unroll C::UNROLL
    for (int n = 0; n < BC; n += 4) {
      float p[RM][4];
#pragma unroll
      for (int i = 0; i < RM; ++i) load_vec<4>(Ps + (ty + TY * i) * LDP + n, p[i]);
#pragma unroll
      for (int kk = 0; kk < 4; ++kk) {
        float w[CO / RUN][RUN];
#pragma unroll
        for (int g = 0; g < CO / RUN; ++g) load_vec<RUN>(Vs + (n + kk) * LD + g * TX * RUN + tx * RUN, w[g]);
#pragma unroll
        for (int i = 0; i < RM; ++i)
#pragma unroll
          for (int j = 0; j < CO; ++j) acc[i][j] = fmaf(p[i][kk], w[j / RUN][j % RUN], acc[i][j]);
      }
    }
  }
  cp_async_wait<0>();

#pragma unroll
  for (int i = 0; i < RM; ++i) {
    const int gi = m0 + ty + TY * i;
    if (gi >= a.l) continue;
    // A row with every key masked has sum 0: 0 * inf = NaN, as PyTorch gives.
    const float inv = 1.f / row_sum[i];
#pragma unroll
    for (int j = 0; j < CO; ++j) {
      const int c = C::col(tx, j);
      if (c < a.ev) out[(long long)gi * a.ev + c] = acc[i][j] * inv;
    }
    if (tx == 0)
      lse[(long long)bh * a.l + gi] =
          row_max[i] == -CUDART_INF_F ? -CUDART_INF_F : (row_max[i] + log2f(row_sum[i])) * kLn2;
  }
}

template <class C>
void launch(const AttnShape& a, const AttnMask& mk, const float* q, const float* k, const float* v, float* out,
            float* lse, cudaStream_t st) {
  if (C::SMEM > max_smem_optin()) {  // 64 x 64 tiles need 118 KB at D = 128 (an A100 has 163 KB)
    launch<FwdCfg<C::D, 64, 64, 16, 256>>(a, mk, q, k, v, out, lse, st);
    return;
  }
  CUDA_CHECK(cudaFuncSetAttribute(attn_fwd_var_kernel<C>, cudaFuncAttributeMaxDynamicSharedMemorySize, C::SMEM));
  const dim3 grid(a.bh, ceil_div(a.l, C::BR));
  attn_fwd_var_kernel<C><<<grid, C::THREADS, C::SMEM, st>>>(
      a, mk, q, k, v, out, lse, attn_vec_ok(q, a.e), attn_vec_ok(k, a.e), attn_vec_ok(v, a.ev));
}

const std::vector<std::string>& names() {
  static const std::vector<std::string> n = {
      "v2 64x64 sync loads",           "async 64x64 256t 4x4",   "async 64x64 128t 8x4",
      "async 128x64 256t 8x4",         "async 64x128 256t 4x8",  "async 128x64 256t(tx8) 4x8",
      "async 128x128 256t 8x8",        "async 128x128 512t 4x8", "async 128x64 256t 8x4 u1 2blk",
      "async 64x64 128t 8x4 u1 3blk",  "v4 default (6 for d<=64, 3 at d=128)"};
  return n;
}

// The production choice (kAttnFwdDefault): measured fastest at d=64 and at d=128.
template <int D>
void launch_default(const AttnShape& a, const AttnMask& mk, const float* q, const float* k, const float* v,
                    float* out, float* lse, cudaStream_t st) {
  if constexpr (D <= 64) launch<FwdCfg<D, 128, 128, 16, 256>>(a, mk, q, k, v, out, lse, st);
  else launch<FwdCfg<D, 128, 64, 16, 256>>(a, mk, q, k, v, out, lse, st);
}

#if PYENGINE_KERNEL_VARIANTS
template <int D>
void launch_variant(int variant, const AttnShape& a, const AttnMask& mk, const float* q, const float* k,
                    const float* v, float* out, float* lse, cudaStream_t st) {
  switch (variant) {
    case 1: return launch<FwdCfg<D, 64, 64, 16, 256>>(a, mk, q, k, v, out, lse, st);
    case 2: return launch<FwdCfg<D, 64, 64, 16, 128>>(a, mk, q, k, v, out, lse, st);
    case 3: return launch<FwdCfg<D, 128, 64, 16, 256>>(a, mk, q, k, v, out, lse, st);
    case 4: return launch<FwdCfg<D, 64, 128, 16, 256>>(a, mk, q, k, v, out, lse, st);
    case 5: return launch<FwdCfg<D, 128, 64, 8, 256>>(a, mk, q, k, v, out, lse, st);
    case 6: return launch<FwdCfg<D, 128, 128, 16, 256>>(a, mk, q, k, v, out, lse, st);
    case 7:
      // At D = 128 the 512-thread block (128 registers a thread) spilled: 3's tile instead.
      if constexpr (D == 128) return launch<FwdCfg<D, 128, 64, 16, 256>>(a, mk, q, k, v, out, lse, st);
      else return launch<FwdCfg<D, 128, 128, 16, 512>>(a, mk, q, k, v, out, lse, st);
    case 8: return launch<FwdCfg<D, 128, 64, 16, 256, 2, 1>>(a, mk, q, k, v, out, lse, st);
    default: return launch<FwdCfg<D, 64, 64, 16, 128, 3, 1>>(a, mk, q, k, v, out, lse, st);
  }
}
#endif  // PYENGINE_KERNEL_VARIANTS

std::string desc(const char* name, const AttnShape& a, const AttnMask& mk) {
  return std::string(name) + " bh=" + std::to_string(a.bh) + " l=" + std::to_string(a.l) +
         " s=" + std::to_string(a.s) + " e=" + std::to_string(a.e) + " ev=" + std::to_string(a.ev) +
         (a.causal ? " causal" : "") + " mask_kind=" + std::to_string(mk.kind);
}

}  // namespace

std::vector<std::string> attention_forward_variant_names() { return names(); }

void attention_forward(const AttnShape& a, const AttnMask& mask, std::uintptr_t q, std::uintptr_t k,
                       std::uintptr_t v, std::uintptr_t out, std::uintptr_t lse, std::uintptr_t stream) {
  attention_forward_variant(kAttnFwdDefault, a, mask, q, k, v, out, lse, stream);
}

void attention_forward_variant(int variant, const AttnShape& a, const AttnMask& mask, std::uintptr_t q,
                               std::uintptr_t k, std::uintptr_t v, std::uintptr_t out, std::uintptr_t lse,
                               std::uintptr_t stream) {
  if (variant < 0 || variant >= (int)names().size())
    throw std::invalid_argument("attention_forward_variant: variant " + std::to_string(variant) + " not in [0, " +
                                std::to_string(names().size()) + ")");
  if (!PYENGINE_KERNEL_VARIANTS && variant != kAttnFwdDefault)
    throw std::invalid_argument("attention_forward_variant: version " + std::to_string(variant) + " (" +
                                names()[variant] + ") is ranking-only; build with PYENGINE_KERNEL_VARIANTS=ON");
#if PYENGINE_KERNEL_VARIANTS
  if (variant == 0) return attention_forward_v2(a, mask, q, k, v, out, lse, stream);
#endif
  if (a.bh <= 0 || a.l <= 0) return;
  if (a.e > kAttnMaxHeadDim || a.ev > kAttnMaxHeadDim)
    throw std::invalid_argument(desc("attention_forward: head dims over 128 are not supported,", a, mask));
  attn_dispatch_d(a.e, a.ev, [&](auto dc) {
    constexpr int D = decltype(dc)::value;
    const auto args = std::make_tuple(dptr<const float>(q), dptr<const float>(k), dptr<const float>(v),
                                      dptr<float>(out), dptr<float>(lse), as_stream(stream));
    const auto [pq, pk, pv, po, pl, st] = args;
#if PYENGINE_KERNEL_VARIANTS
    if (variant != kAttnFwdDefault) return launch_variant<D>(variant, a, mask, pq, pk, pv, po, pl, st);
#endif
    launch_default<D>(a, mask, pq, pk, pv, po, pl, st);
  });
  check_launch(desc(("attention_forward (" + names()[variant] + ")").c_str(), a, mask));
}

}  // namespace pyengine
