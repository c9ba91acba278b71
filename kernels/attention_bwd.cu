// attention_bwd.cu — flash-attention backward, float32. From the forward's saved row
// log-sum-exp the probabilities are recomputed tile by tile, P = exp(scale q k^T + mask - lse):
//   delta = rowsum(dO * O);  dV = P^T dO;  dP = dO V^T;  dS = P * (dP - delta);
//   dQ = scale * dS K;  dK = scale * dS^T Q.
//
// Technique (v3, the default): two launches. (1) a warp per query row computes delta. (2) one
// block per 64 keys keeps K, V and its dK, dV accumulators on chip and walks the query tiles
// (from the diagonal on when causal), the next tile's Q, dO, lse and delta fetched by cp.async
// into a second buffer while this one is computed: S^T, P^T, dV += P^T dO, dP^T, dS^T, dK +=
// dS^T Q, then dS (transposed through the same shared tile) times K added into dQ with
// atomics (dQ zeroed first), so no second pass recomputes S and dP. The mask is evaluated only
// on tiles that need it. dQ's sums run in whatever order the blocks finish: not bitwise
// deterministic from run to run (the float32 rounding differs; tests compare with float64).
// Where the device lacks the shared memory for the second buffer (D = 128 on an A100) the
// same pass runs without the prefetch. The l x s matrix is never in device memory. Rows whose
// keys are all masked get zero gradients (PyTorch gives NaN there, from its NaN forward).
//
// Measured on an H100 80GB HBM3 (driver 580.159.04, B=8 H=16 T=2048 d=64, FLOPs 2.5 x forward):
//   v2 kv pass + separate dQ pass recomputing S and dP, deterministic (ranking version 0, built
//      only with PYENGINE_KERNEL_VARIANTS): 21.4 / 11.1 ms (bench/gpu_bench_nn.py, earlier);
//      20.5 ms = 16.7 TFLOP/s non-causal, 10.8 ms causal (bench/variants/attention.py,
//      2026-11-27 22:09 UTC); torch 2.11 fp32 SDPA backward 10.5 / 5.93 ms.
//   version 1, kv pass with atomic dQ, no prefetch (ranking only): 15.8 / 8.20 ms.
//   v3 = version 2 (default): 14.5 ms = 23.6 TFLOP/s (0.72x torch), causal 7.45 ms (0.80x);
//      max abs error against torch's gradients 2.4e-6 / 1.8e-5. 168 registers at D = 64 (sm_90
//      and sm_80), 201 / 189 at D = 128, no spills; one 256-thread block per SM (122 KB of
//      shared memory at D = 64). Next: 128-key blocks (twice the work per Q/dO load).
#include "attention_tile.cuh"
#include "kernels_variants.h"
#include "nn_rows.cuh"

#include <string>
#include <vector>

namespace pyengine {
namespace {

// delta[r] = sum_c gout[r, c] * out[r, c] over ev columns; a warp per row.
__global__ void attn_delta_kernel(const float* __restrict__ gout, const float* __restrict__ out,
                                  float* __restrict__ delta, long long rows, int ev) {
  const long long row = group_row<32>();
  if (row >= rows) return;
  const int lane = threadIdx.x % 32;
  float s = 0.f;
  for (int c = lane; c < ev; c += 32) s += gout[row * ev + c] * out[row * ev + c];
  s = warp_sum(s);
  if (lane == 0) delta[row] = s;
}

// The steps of one (key tile, query tile) pair that both kv kernels take, with P (the
// transposed probabilities, row i key n0 + ty + 16 i, column j query m0 + tx + 16 j) in p
// and in Ps: dV += P^T dO, dS = P * (dP - delta) into ds, dK += dS^T Q (scaled at the end),
// leaving dS^T in Ps.
template <int D>
__device__ __forceinline__ void attn_bwd_tile_dkdv(const float (&p)[4][4], float (&ds)[4][4], float (&dk)[4][D / 16],
                                                   float (&dv)[4][D / 16], float* Ps, const float* Qs,
                                                   const float* Vs, const float* dOs, const float* delta_s,
                                                   int ty, int tx) {
  __syncthreads();
  attn_frag_pv<D>(dv, Ps, ty, dOs, tx);

  attn_frag_dot<D>(ds, Vs, ty, dOs, tx);
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) ds[i][j] = p[i][j] * (ds[i][j] - delta_s[tx + 16 * j]);
  __syncthreads();  // every thread is done reading P^T
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) Ps[(ty + 16 * i) * kAttnLdP + tx + 16 * j] = ds[i][j];
  __syncthreads();
  attn_frag_pv<D>(dk, Ps, ty, Qs, tx);
}

// This key tile's share of dQ = scale dS K, added into gq (this head's rows, zeroed first)
// with atomics: dS goes through Ps untransposed, rows are queries m0 + ty + 16 i, columns
// the D-dim attn_col(tx, j).
template <int D>
__device__ __forceinline__ void attn_bwd_tile_add_dq(const float (&ds)[4][4], float* Ps, const float* Ks,
                                                     float* __restrict__ gq, const AttnShape& a, int m0, int ty,
                                                     int tx) {
  __syncthreads();  // every thread is done reading dS^T
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) Ps[(tx + 16 * j) * kAttnLdP + ty + 16 * i] = ds[i][j];
  __syncthreads();
  float dq[4][D / 16];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < D / 16; ++j) dq[i][j] = 0.f;
  attn_frag_pv<D>(dq, Ps, ty, Ks, tx);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int gi = m0 + ty + 16 * i;
    if (gi >= a.l) continue;
#pragma unroll
    for (int j = 0; j < D / 16; ++j) {
      const int c = attn_col<D>(tx, j);
      if (c < a.e) atomicAdd(gq + (long long)gi * a.e + c, dq[i][j] * a.scale);
    }
  }
}

// The key tile's dK (scaled) and dV, written out.
template <int D>
__device__ __forceinline__ void attn_bwd_store_dkdv(const float (&dk)[4][D / 16], const float (&dv)[4][D / 16],
                                                    float* __restrict__ gk, float* __restrict__ gv,
                                                    const AttnShape& a, int bh, int n0, int ty, int tx) {
  gk += (long long)bh * a.s * a.e;
  gv += (long long)bh * a.s * a.ev;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int gn = n0 + ty + 16 * i;
    if (gn >= a.s) continue;
#pragma unroll
    for (int j = 0; j < D / 16; ++j) {
      const int c = attn_col<D>(tx, j);
      if (c < a.e) gk[(long long)gn * a.e + c] = dk[i][j] * a.scale;
      if (c < a.ev) gv[(long long)gn * a.ev + c] = dv[i][j];
    }
  }
}

// dK, dV for one 64-key tile. Masked probabilities are set to exactly 0, so a row whose lse
// is -inf (every key masked) contributes nothing instead of NaN. FUSED_DQ (a candidate, see
// attention_backward_variant): also adds this key tile's share of dQ = scale dS K into gq
// (zeroed first) with atomics, so the separate dQ pass and its recomputation go away.
template <int D, bool FUSED_DQ = false>
__global__ void __launch_bounds__(kAttnThreads, 1)
    attn_bwd_kv_kernel(AttnShape a, AttnMask mk, const float* __restrict__ q, const float* __restrict__ k,
                       const float* __restrict__ v, const float* __restrict__ lse,
                       const float* __restrict__ gout, const float* __restrict__ delta,
                       float* __restrict__ gk, float* __restrict__ gv, float* __restrict__ gq = nullptr) {
  extern __shared__ float smem[];
  float* Ks = smem;
  float* Vs = Ks + kAttnTile * attn_ld<D>();
  float* Qs = Vs + kAttnTile * attn_ld<D>();
  float* dOs = Qs + kAttnTile * attn_ld<D>();
  float* Ps = dOs + kAttnTile * attn_ld<D>();
  float* lse_s = Ps + kAttnTile * kAttnLdP;
  float* delta_s = lse_s + kAttnTile;

  const int bh = blockIdx.x;
  const int n0 = blockIdx.y * kAttnTile;
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  q += (long long)bh * a.l * a.e;
  k += (long long)bh * a.s * a.e;
  v += (long long)bh * a.s * a.ev;
  gout += (long long)bh * a.l * a.ev;
  lse += (long long)bh * a.l;
  delta += (long long)bh * a.l;

  attn_load_tile<D>(Ks, k, n0, a.s, a.e);
  attn_load_tile<D>(Vs, v, n0, a.s, a.ev);
  const float scale2 = a.scale * kLog2e;
  float dk[4][D / 16], dv[4][D / 16];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < D / 16; ++j) dk[i][j] = dv[i][j] = 0.f;

  // Causal: queries before n0 see none of these keys.
  const int m_begin = a.causal ? (n0 / kAttnTile) * kAttnTile : 0;
  for (int m0 = m_begin; m0 < a.l; m0 += kAttnTile) {
    __syncthreads();  // the previous query tile's products are done with Qs, dOs, Ps
    attn_load_tile<D>(Qs, q, m0, a.l, a.e);
    attn_load_tile<D>(dOs, gout, m0, a.l, a.ev);
    if (threadIdx.x < kAttnTile) {
      const int gi = m0 + threadIdx.x;
      lse_s[threadIdx.x] = gi < a.l ? lse[gi] * kLog2e : 0.f;
      delta_s[threadIdx.x] = gi < a.l ? delta[gi] : 0.f;
    }
    __syncthreads();

    // Transposed fragments: row i is key n0 + ty + 16 i, column j is query m0 + tx + 16 j.
    float p[4][4];
    attn_frag_dot<D>(p, Ks, ty, Qs, tx);
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const float bias = attn_bias(mk, a, bh, m0 + tx + 16 * j, n0 + ty + 16 * i);
        p[i][j] = bias == -CUDART_INF_F ? 0.f : exp2f(p[i][j] * scale2 + bias - lse_s[tx + 16 * j]);
        Ps[(ty + 16 * i) * kAttnLdP + tx + 16 * j] = p[i][j];
      }
    float ds[4][4];
    attn_bwd_tile_dkdv<D>(p, ds, dk, dv, Ps, Qs, Vs, dOs, delta_s, ty, tx);
    if constexpr (FUSED_DQ) attn_bwd_tile_add_dq<D>(ds, Ps, Ks, gq + (long long)bh * a.l * a.e, a, m0, ty, tx);
  }
  attn_bwd_store_dkdv<D>(dk, dv, gk, gv, a, bh, n0, ty, tx);
}

// Candidate 2: candidate 1 (kv pass with atomic dQ) with the next query tile's Q, dO, lse and
// delta fetched by cp.async into a second buffer while this one is computed, and the mask
// evaluated only on tiles that need it (a mask, the causal diagonal, the matrix edges).
template <int D>
constexpr int attn_bwd_async_smem() {
  return (int)sizeof(float) * (6 * kAttnTile * attn_ld<D>() + kAttnTile * kAttnLdP + 4 * kAttnTile);
}

template <int D>
__global__ void __launch_bounds__(kAttnThreads, 1)
    attn_bwd_kv_async_kernel(AttnShape a, AttnMask mk, const float* __restrict__ q, const float* __restrict__ k,
                             const float* __restrict__ v, const float* __restrict__ lse,
                             const float* __restrict__ gout, const float* __restrict__ delta,
                             float* __restrict__ gk, float* __restrict__ gv, float* __restrict__ gq, bool qvec,
                             bool ovec) {
  constexpr int T = kAttnTile, LD = attn_ld<D>();
  extern __shared__ float smem[];
  float* Ks = smem;
  float* Vs = Ks + T * LD;
  float* Qb = Vs + T * LD;        // two buffers of T * LD each
  float* dOb = Qb + 2 * T * LD;   // two buffers
  float* Ps = dOb + 2 * T * LD;
  float* lse_b = Ps + T * kAttnLdP;  // two buffers of T
  float* delta_b = lse_b + 2 * T;    // two buffers of T

  const int bh = blockIdx.x;
  const int n0 = blockIdx.y * T;
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  q += (long long)bh * a.l * a.e;
  k += (long long)bh * a.s * a.e;
  v += (long long)bh * a.s * a.ev;
  gout += (long long)bh * a.l * a.ev;
  lse += (long long)bh * a.l;
  delta += (long long)bh * a.l;
  gq += (long long)bh * a.l * a.e;

  const auto fetch = [&](int m0, int buf) {
    attn_async_tile<T, D>(Qb + buf * T * LD, q, m0, a.l, a.e, qvec);
    attn_async_tile<T, D>(dOb + buf * T * LD, gout, m0, a.l, a.ev, ovec);
    if (threadIdx.x < T) {
      const int gi = m0 + threadIdx.x;
      const bool in = gi < a.l;
      cp_async4(lse_b + buf * T + threadIdx.x, in ? lse + gi : lse, in ? 4 : 0);
      cp_async4(delta_b + buf * T + threadIdx.x, in ? delta + gi : delta, in ? 4 : 0);
    }
    cp_async_commit();
  };

  // Causal: queries before n0 see none of these keys.
  const int m_begin = a.causal ? (n0 / T) * T : 0;
  if (m_begin < a.l) fetch(m_begin, 0);
  attn_load_tile<D>(Ks, k, n0, a.s, a.e);
  attn_load_tile<D>(Vs, v, n0, a.s, a.ev);
  const float scale2 = a.scale * kLog2e;
  float dk[4][D / 16], dv[4][D / 16];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < D / 16; ++j) dk[i][j] = dv[i][j] = 0.f;

  int buf = 0;
  for (int m0 = m_begin; m0 < a.l; m0 += T, buf ^= 1) {
    cp_async_wait<0>();
    __syncthreads();  // this query tile has landed; the previous one's products are done
    if (m0 + T < a.l) fetch(m0 + T, buf ^ 1);
    const float* Qs = Qb + buf * T * LD;
    const float* dOs = dOb + buf * T * LD;
    const float* lse_s = lse_b + buf * T;
    const float* delta_s = delta_b + buf * T;

    // Transposed fragments: row i is key n0 + ty + 16 i, column j is query m0 + tx + 16 j.
    float p[4][4];
    attn_frag_dot<D>(p, Ks, ty, Qs, tx);
    const bool edge = mk.kind != 0 || m0 + T > a.l || n0 + T > a.s || (a.causal && n0 + T - 1 > m0);
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const float l2 = lse_s[tx + 16 * j] * kLog2e;
        if (edge) {
          const float bias = attn_bias(mk, a, bh, m0 + tx + 16 * j, n0 + ty + 16 * i);
          p[i][j] = bias == -CUDART_INF_F ? 0.f : exp2f(p[i][j] * scale2 + bias - l2);
        } else {
          p[i][j] = exp2f(p[i][j] * scale2 - l2);
        }
        Ps[(ty + 16 * i) * kAttnLdP + tx + 16 * j] = p[i][j];
      }
    float ds[4][4];
    attn_bwd_tile_dkdv<D>(p, ds, dk, dv, Ps, Qs, Vs, dOs, delta_s, ty, tx);
    attn_bwd_tile_add_dq<D>(ds, Ps, Ks, gq, a, m0, ty, tx);
  }
  cp_async_wait<0>();
  attn_bwd_store_dkdv<D>(dk, dv, gk, gv, a, bh, n0, ty, tx);
}

#if PYENGINE_KERNEL_VARIANTS
template <int D>
__global__ void __launch_bounds__(kAttnThreads, 1)
    attn_bwd_q_kernel(AttnShape a, AttnMask mk, const float* __restrict__ q, const float* __restrict__ k,
                      const float* __restrict__ v, const float* __restrict__ lse,
                      const float* __restrict__ gout, const float* __restrict__ delta,
                      float* __restrict__ gq) {
  extern __shared__ float smem[];
  float* Qs = smem;
  float* dOs = Qs + kAttnTile * attn_ld<D>();
  float* Ks = dOs + kAttnTile * attn_ld<D>();
  float* Vs = Ks + kAttnTile * attn_ld<D>();
  float* Ps = Vs + kAttnTile * attn_ld<D>();
  float* lse_s = Ps + kAttnTile * kAttnLdP;
  float* delta_s = lse_s + kAttnTile;

  const int bh = blockIdx.x;
  const int m0 = (gridDim.y - 1 - blockIdx.y) * kAttnTile;  // longest causal rows first
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  q += (long long)bh * a.l * a.e;
  k += (long long)bh * a.s * a.e;
  v += (long long)bh * a.s * a.ev;
  gout += (long long)bh * a.l * a.ev;
  lse += (long long)bh * a.l;
  delta += (long long)bh * a.l;

  attn_load_tile<D>(Qs, q, m0, a.l, a.e);
  attn_load_tile<D>(dOs, gout, m0, a.l, a.ev);
  if (threadIdx.x < kAttnTile) {
    const int gi = m0 + threadIdx.x;
    lse_s[threadIdx.x] = gi < a.l ? lse[gi] * kLog2e : 0.f;
    delta_s[threadIdx.x] = gi < a.l ? delta[gi] : 0.f;
  }
  const float scale2 = a.scale * kLog2e;
  float dq[4][D / 16];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < D / 16; ++j) dq[i][j] = 0.f;

  const int n_end = a.causal ? min(a.s, m0 + kAttnTile) : a.s;
  for (int n0 = 0; n0 < n_end; n0 += kAttnTile) {
    __syncthreads();  // the previous key tile's dS K product is done with Ks and Ps
    attn_load_tile<D>(Ks, k, n0, a.s, a.e);
    attn_load_tile<D>(Vs, v, n0, a.s, a.ev);
    __syncthreads();

    // Row i is query m0 + ty + 16 i, column j is key n0 + tx + 16 j.
    float p[4][4], ds[4][4];
    attn_frag_dot<D>(p, Qs, ty, Ks, tx);
    attn_frag_dot<D>(ds, dOs, ty, Vs, tx);
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const float bias = attn_bias(mk, a, bh, m0 + ty + 16 * i, n0 + tx + 16 * j);
        const float pij = bias == -CUDART_INF_F ? 0.f : exp2f(p[i][j] * scale2 + bias - lse_s[ty + 16 * i]);
        Ps[(ty + 16 * i) * kAttnLdP + tx + 16 * j] = pij * (ds[i][j] - delta_s[ty + 16 * i]);
      }
    __syncthreads();
    attn_frag_pv<D>(dq, Ps, ty, Ks, tx);
  }

  gq += (long long)bh * a.l * a.e;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int gi = m0 + ty + 16 * i;
    if (gi >= a.l) continue;
#pragma unroll
    for (int j = 0; j < D / 16; ++j) {
      const int c = attn_col<D>(tx, j);
      if (c < a.e) gq[(long long)gi * a.e + c] = dq[i][j] * a.scale;
    }
  }
}
#endif  // PYENGINE_KERNEL_VARIANTS

std::string desc(const char* name, const AttnShape& a, const AttnMask& mk) {
  return std::string(name) + " bh=" + std::to_string(a.bh) + " l=" + std::to_string(a.l) +
         " s=" + std::to_string(a.s) + " e=" + std::to_string(a.e) + " ev=" + std::to_string(a.ev) +
         (a.causal ? " causal" : "") + " mask_kind=" + std::to_string(mk.kind);
}

#if PYENGINE_KERNEL_VARIANTS
// Version 0 (v2): the kv pass and a separate dQ pass, deterministic.
void attention_backward_v2(const AttnShape& a, const AttnMask& mask, std::uintptr_t q, std::uintptr_t k,
                           std::uintptr_t v, std::uintptr_t out, std::uintptr_t lse, std::uintptr_t gout,
                           std::uintptr_t delta, std::uintptr_t gq, std::uintptr_t gk, std::uintptr_t gv,
                           std::uintptr_t stream) {
  if (a.bh <= 0 || (a.l <= 0 && a.s <= 0)) return;
  if (a.e > kAttnMaxHeadDim || a.ev > kAttnMaxHeadDim)
    throw std::invalid_argument(desc("attention_backward: head dims over 128 are not supported,", a, mask));
  const cudaStream_t st = as_stream(stream);
  const long long rows = (long long)a.bh * a.l;
  if (rows > 0) {
    attn_delta_kernel<<<(unsigned)ceil_div<long long>(rows, rows_per_block<32>()), row_threads<32>(), 0, st>>>(
        dptr<const float>(gout), dptr<const float>(out), dptr<float>(delta), rows, a.ev);
    check_launch(desc("attention_backward (delta)", a, mask));
  }
  attn_dispatch_d(a.e, a.ev, [&](auto dc) {
    constexpr int D = decltype(dc)::value;
    constexpr int smem = attn_smem_bytes<D>(4, 2);
    if (a.s > 0) {
      CUDA_CHECK(cudaFuncSetAttribute(attn_bwd_kv_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
      attn_bwd_kv_kernel<D><<<dim3(a.bh, ceil_div(a.s, kAttnTile)), kAttnThreads, smem, st>>>(
          a, mask, dptr<const float>(q), dptr<const float>(k), dptr<const float>(v), dptr<const float>(lse),
          dptr<const float>(gout), dptr<const float>(delta), dptr<float>(gk), dptr<float>(gv));
      check_launch(desc("attention_backward (dk, dv)", a, mask));
    }
    if (a.l > 0) {
      CUDA_CHECK(cudaFuncSetAttribute(attn_bwd_q_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
      attn_bwd_q_kernel<D><<<dim3(a.bh, ceil_div(a.l, kAttnTile)), kAttnThreads, smem, st>>>(
          a, mask, dptr<const float>(q), dptr<const float>(k), dptr<const float>(v), dptr<const float>(lse),
          dptr<const float>(gout), dptr<const float>(delta), dptr<float>(gq));
      check_launch(desc("attention_backward (dq)", a, mask));
    }
  });
}
#endif  // PYENGINE_KERNEL_VARIANTS

}  // namespace

void attention_backward(const AttnShape& a, const AttnMask& mask, std::uintptr_t q, std::uintptr_t k,
                        std::uintptr_t v, std::uintptr_t out, std::uintptr_t lse, std::uintptr_t gout,
                        std::uintptr_t delta, std::uintptr_t gq, std::uintptr_t gk, std::uintptr_t gv,
                        std::uintptr_t stream) {
  attention_backward_variant(kAttnBwdDefault, a, mask, q, k, v, out, lse, gout, delta, gq, gk, gv, stream);
}

std::vector<std::string> attention_backward_variant_names() {
  return {"v2 kv + q passes", "kv pass + atomic dq", "kv pass + atomic dq, cp.async Q/dO"};
}

void attention_backward_variant(int variant, const AttnShape& a, const AttnMask& mask, std::uintptr_t q,
                                std::uintptr_t k, std::uintptr_t v, std::uintptr_t out, std::uintptr_t lse,
                                std::uintptr_t gout, std::uintptr_t delta, std::uintptr_t gq, std::uintptr_t gk,
                                std::uintptr_t gv, std::uintptr_t stream) {
  if (variant < 0 || variant > 2)
    throw std::invalid_argument("attention_backward_variant: variant " + std::to_string(variant) +
                                " not in [0, 3)");
  if (!PYENGINE_KERNEL_VARIANTS && variant != kAttnBwdDefault)
    throw std::invalid_argument("attention_backward_variant: version " + std::to_string(variant) +
                                " is ranking-only; build with PYENGINE_KERNEL_VARIANTS=ON");
#if PYENGINE_KERNEL_VARIANTS
  if (variant == 0) return attention_backward_v2(a, mask, q, k, v, out, lse, gout, delta, gq, gk, gv, stream);
#endif
  if (a.bh <= 0 || (a.l <= 0 && a.s <= 0)) return;
  if (a.e > kAttnMaxHeadDim || a.ev > kAttnMaxHeadDim)
    throw std::invalid_argument(desc("attention_backward: head dims over 128 are not supported,", a, mask));
  const cudaStream_t st = as_stream(stream);
  const long long rows = (long long)a.bh * a.l;
  if (rows > 0) {
    CUDA_CHECK(cudaMemsetAsync(dptr<float>(gq), 0, sizeof(float) * rows * a.e, st));
    attn_delta_kernel<<<(unsigned)ceil_div<long long>(rows, rows_per_block<32>()), row_threads<32>(), 0, st>>>(
        dptr<const float>(gout), dptr<const float>(out), dptr<float>(delta), rows, a.ev);
    check_launch(desc("attention_backward (delta)", a, mask));
  }
  if (a.s <= 0) return;
  attn_dispatch_d(a.e, a.ev, [&](auto dc) {
    constexpr int D = decltype(dc)::value;
    constexpr int smem2 = attn_bwd_async_smem<D>();
    if (variant == 2 && smem2 <= max_smem_optin()) {
      CUDA_CHECK(cudaFuncSetAttribute(attn_bwd_kv_async_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                      smem2));
      attn_bwd_kv_async_kernel<D><<<dim3(a.bh, ceil_div(a.s, kAttnTile)), kAttnThreads, smem2, st>>>(
          a, mask, dptr<const float>(q), dptr<const float>(k), dptr<const float>(v), dptr<const float>(lse),
          dptr<const float>(gout), dptr<const float>(delta), dptr<float>(gk), dptr<float>(gv), dptr<float>(gq),
          attn_vec_ok(dptr<const float>(q), a.e), attn_vec_ok(dptr<const float>(gout), a.ev));
      return;
    }
    constexpr int smem = attn_smem_bytes<D>(4, 2);
    CUDA_CHECK(cudaFuncSetAttribute(attn_bwd_kv_kernel<D, true>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    attn_bwd_kv_kernel<D, true><<<dim3(a.bh, ceil_div(a.s, kAttnTile)), kAttnThreads, smem, st>>>(
        a, mask, dptr<const float>(q), dptr<const float>(k), dptr<const float>(v), dptr<const float>(lse),
        dptr<const float>(gout), dptr<const float>(delta), dptr<float>(gk), dptr<float>(gv), dptr<float>(gq));
  });
  check_launch(desc(variant == 2 ? "attention_backward (kv pass + atomic dq, cp.async)"
                                  : "attention_backward (kv pass + atomic dq)",
                    a, mask));
}

}  // namespace pyengine
