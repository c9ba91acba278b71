// attention_fwd_variants.cu — candidate versions of the flash-attention forward
// (attention_fwd.cu), selectable at run time by attention_forward_variant() so that one GPU
// run ranks them (bench/variants/attention.py). Same contract and results as
// attention_forward: float32 FFMA, causal / bool / additive masks, the row lse.
//
// Technique shared by every candidate: a block of 256 threads owns BR queries and walks the
// keys BC at a time. K and V have their own shared tiles filled with cp.async, so V_j loads
// while S_j = Q K_j^T is computed and K_{j+1} loads while P_j V_j is: two barriers per key
// tile (v2 has four, and waits for every load). Q is loaded once, pre-multiplied by
// scale * log2(e), so scores come out in base 2 (exp2, no multiply). The mask and bounds
// checks run only on tiles that need them (a mask, the causal diagonal, the last partial key
// tile). Thread (tx, ty) = (t % TX, t / TX) owns the RM x RN scores of rows ty + TY i and
// keys tx + TX j, and RM x D/TX outputs; the TX threads of a row sit in one warp and reduce
// it with shuffles.
//
// Candidates (BR x BC, threads TY x TX, scores per thread):
//   1: 64 x 64,  16 x 16, 4 x 4        2: 64 x 64,   8 x 16, 8 x 4
//   3: 128 x 64, 16 x 16, 8 x 4        4: 64 x 128, 16 x 16, 4 x 8
//   5: 128 x 64, 32 x 8,  4 x 8        6: 128 x 128, 16 x 16, 8 x 8
//   7: 128 x 128, 32 x 16, 4 x 8 (as 3 at D = 128, where 512 threads spilled)
//   8: 3 with k loops not unrolled, bound to 2 blocks per SM (D = 64: 128 registers, 96-byte spill)
//   9: 2 with k loops not unrolled, bound to 3 blocks per SM (D = 64: 168 registers)
// ptxas registers per thread at D = 64, sm_90 / sm_80 (no spills unless said): 1: 128 / 128,
// 2: 202 / 204, 3: 175 / 204, 4: 142 / 143, 5: 156 / 158, 6: 234 / 236, 7: 127 / 128,
// 8: 128 + 96-byte spill / 128 + 120-byte spill, 9: 168 / 158. At D = 128 7 spilled (see case 7).
// (a candidate whose shared memory exceeds the device's limit at a head dim runs as 1 there).
// Measured: not yet measured on a GPU.
#include "attention_tile.cuh"
#include "kernels_variants.h"

#include <string>
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

int smem_optin() {
  static int bytes = 0;
  if (bytes == 0) {
    int dev = 0;
    CUDA_CHECK(cudaGetDevice(&dev));
    CUDA_CHECK(cudaDeviceGetAttribute(&bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
  }
  return bytes;
}

template <class C>
void launch(const AttnShape& a, const AttnMask& mk, const float* q, const float* k, const float* v, float* out,
            float* lse, cudaStream_t st) {
  if (C::SMEM > smem_optin()) {
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
      "v2 64x64 sync loads", "async 64x64 256t 4x4",   "async 64x64 128t 8x4",
      "async 128x64 256t 8x4",         "async 64x128 256t 4x8",  "async 128x64 256t(tx8) 4x8",
      "async 128x128 256t 8x8",        "async 128x128 512t 4x8", "async 128x64 256t 8x4 u1 2blk",
      "async 64x64 128t 8x4 u1 3blk"};
  return n;
}

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

}  // namespace

std::vector<std::string> attention_forward_variant_names() { return names(); }

void attention_forward_variant(int variant, const AttnShape& a, const AttnMask& mask, std::uintptr_t q,
                               std::uintptr_t k, std::uintptr_t v, std::uintptr_t out, std::uintptr_t lse,
                               std::uintptr_t stream) {
  if (variant < 0 || variant >= (int)names().size())
    throw std::invalid_argument("attention_forward_variant: variant " + std::to_string(variant) + " not in [0, " +
                                std::to_string(names().size()) + ")");
  if (variant == 0) return attention_forward_v2(a, mask, q, k, v, out, lse, stream);
  if (a.bh <= 0 || a.l <= 0) return;
  if (a.e > kAttnMaxHeadDim || a.ev > kAttnMaxHeadDim)
    throw std::invalid_argument("attention_forward_variant: head dims over 128 are not supported, e=" +
                                std::to_string(a.e) + " ev=" + std::to_string(a.ev));
  attn_dispatch_d(a.e, a.ev, [&](auto dc) {
    launch_variant<decltype(dc)::value>(variant, a, mask, dptr<const float>(q), dptr<const float>(k),
                                        dptr<const float>(v), dptr<float>(out), dptr<float>(lse),
                                        as_stream(stream));
  });
  check_launch("attention_forward_variant " + names()[variant] + " bh=" + std::to_string(a.bh) +
               " l=" + std::to_string(a.l) + " s=" + std::to_string(a.s) + " e=" + std::to_string(a.e) +
               " ev=" + std::to_string(a.ev) + (a.causal ? " causal" : "") +
               " mask_kind=" + std::to_string(mask.kind));
}

}  // namespace pyengine
