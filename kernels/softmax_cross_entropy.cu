// softmax_cross_entropy.cu — fused log_softmax + NLL per row of logits (rows, classes) with
// int64 targets, as PyTorch's cross_entropy(reduction="none"): with label smoothing eps,
//   loss = (1 - eps) * (lse - x[t]) + eps * (lse - mean(x)),   lse = log(sum(exp(x)))
// and 0 where t == ignore_index. A target outside [0, classes) that is not ignore_index gives
// a NaN loss (the kernel cannot raise; PyTorch's CUDA path asserts on the device instead).
// Backward: glogits = gloss * (exp(x - lse) - eps / classes - (1 - eps) * [j == t]).
//
// Technique: the forward is one pass over the row carrying the online (max, sum of exp) pair
// and the plain sum of x, merged with warp shuffles (a warp per row up to 1024 classes, a
// 512-thread block beyond); the per-row lse is saved so the backward needs no reduction and
// is a single elementwise pass. The probabilities never touch device memory. In the forward,
// threads move float4s when classes % 4 == 0 and the loop is unrolled 4 deep so several loads
// are in flight per thread (v2).
//
// kernel_version 2 (pyengine._C.set_kernel_version; version 1 is v2 below): the forward
// issues 4 loads per thread (float4 when aligned) into registers before folding them in,
// so 64 bytes per thread are in flight, with v1's arithmetic in v1's order; the backward is
// an elementwise pass over the flat rows * classes array (float4 when classes % 4 == 0), as
// the activation kernels that run at copy speed, reading the row's target, gloss and lse
// through the cache.
//
// kernel_version 3 (forward only): each batch of loads folded in with one max and one exp per
// element and no per-element branch (v2's update diverges across lanes while the max moves).
//
// Measured on an H100 80GB HBM3 (driver 580.159.04, 2026-11-27, bench/gpu_bench_nn.py; D2D
// copy 2871-2948 GB/s counting read + write):
//   v1 scalar loads, rows x classes = 8192 x 32000: forward 0.71 ms 1460 GB/s (50% of copy,
//      4 bytes per element read), backward 0.90 ms 2300 GB/s (78-81%, 8 bytes per element).
//   v2 forward float4, unrolled 4: 0.664 ms 1579 GB/s (54% of 2915). The same change in the
//      backward ran slower (1.06 ms against 0.90), so the backward stays v1. (These two are
//      kernel_version 1; a later full run gave forward 0.70 ms (0.52), backward 1.13 ms (0.64).)
//   kernel_version 2, 3: not yet measured on a GPU (bench/variants/membound.py).
#include "common.cuh"
#include "kernels_nn.h"
#include "nn_rows.cuh"

#include <string>

namespace pyengine {
namespace {

template <int G, int VEC>
__global__ void xent_fwd_kernel(const float* __restrict__ logits, const long long* __restrict__ target,
                                float* __restrict__ loss, float* __restrict__ lse, long long rows,
                                int classes, long long ignore_index, float smoothing) {
  __shared__ float scratch[group_scratch<G>()];
  const long long row = group_row<G>();
  if (row >= rows) return;  // only warp groups can be partial, and they never block-sync
  const int t = threadIdx.x % G;
  const float* xr = logits + row * classes;

  MaxSum acc{-CUDART_INF_F, 0.f};
  float sum_x = 0.f;
#pragma unroll 4
  for (int c = t * VEC; c < classes; c += G * VEC) {
    float v[VEC];
    load_vec<VEC>(xr + c, v);
#pragma unroll
    for (int i = 0; i < VEC; ++i) {
      acc = maxsum_push(acc, v[i]);
      sum_x += v[i];
    }
  }
  acc = group_maxsum<G>(acc, scratch);
  sum_x = group_sum<G>(sum_x, scratch);
  if (t != 0) return;
  const float l = acc.m + logf(acc.s);
  const long long tgt = target[row];
  float out;
  if (tgt == ignore_index)
    out = 0.f;
  else if (tgt < 0 || tgt >= classes)
    out = CUDART_NAN_F;
  else
    out = (1.f - smoothing) * (l - xr[tgt]) + smoothing * (l - sum_x / classes);
  loss[row] = out;
  lse[row] = l;
}

template <int G>
__global__ void xent_bwd_kernel(const float* __restrict__ gloss, const float* __restrict__ logits,
                                const long long* __restrict__ target, const float* __restrict__ lse,
                                float* __restrict__ glogits, long long rows, int classes,
                                long long ignore_index, float smoothing) {
  const long long row = group_row<G>();
  if (row >= rows) return;
  const int t = threadIdx.x % G;
  const long long off = row * classes;
  const long long tgt = target[row];
  if (tgt == ignore_index) {
    for (int c = t; c < classes; c += G) glogits[off + c] = 0.f;
    return;
  }
  const float g = (tgt < 0 || tgt >= classes) ? CUDART_NAN_F : gloss[row];
  const float l = lse[row], floor = smoothing / classes, hit = 1.f - smoothing;
  for (int c = t; c < classes; c += G) {
    const float p = expf(logits[off + c] - l);
    glogits[off + c] = g * (p - floor - (c == tgt ? hit : 0.f));
  }
}

// ---- Version 2 (kernel_version 2) ----

// Forward: each thread first issues kXentBatch loads (VEC floats each) into registers, then
// folds them into its (max, sum of exp) pair in v1's order, so kXentBatch * VEC * 4 bytes per
// thread are in flight rather than whatever the compiler hoists out of v1's loop.
constexpr int kXentBatch = 4;
constexpr int kBwdThreads = 256;

// Bounded so that three 512-thread blocks fit an SM (the batch costs registers).
template <int G, int VEC>
__global__ void __launch_bounds__(row_threads<G>(), G == 32 ? 8 : 3)
    xent_fwd_v2(const float* __restrict__ logits, const long long* __restrict__ target, float* __restrict__ loss,
                float* __restrict__ lse, long long rows, int classes, long long ignore_index, float smoothing) {
  __shared__ float scratch[group_scratch<G>()];
  const long long row = group_row<G>();
  if (row >= rows) return;  // only warp groups can be partial, and they never block-sync
  const int t = threadIdx.x % G;
  const float* xr = logits + row * classes;

  MaxSum acc{-CUDART_INF_F, 0.f};
  float sum_x = 0.f;
  for (int c0 = t * VEC; c0 < classes; c0 += G * VEC * kXentBatch) {
    float v[kXentBatch][VEC];
#pragma unroll
    for (int u = 0; u < kXentBatch; ++u) {
      const int c = c0 + u * G * VEC;
      if (c < classes) {
        load_vec<VEC>(xr + c, v[u]);
      } else {
#pragma unroll
        for (int i = 0; i < VEC; ++i) v[u][i] = -CUDART_INF_F;  // pushes nothing
      }
    }
#pragma unroll
    for (int u = 0; u < kXentBatch; ++u)
#pragma unroll
      for (int i = 0; i < VEC; ++i) {
        acc = maxsum_push(acc, v[u][i]);
        if (c0 + u * G * VEC < classes) sum_x += v[u][i];
      }
  }
  acc = group_maxsum<G>(acc, scratch);
  sum_x = group_sum<G>(sum_x, scratch);
  if (t != 0) return;
  const float l = acc.m + logf(acc.s);
  const long long tgt = target[row];
  float out;
  if (tgt == ignore_index)
    out = 0.f;
  else if (tgt < 0 || tgt >= classes)
    out = CUDART_NAN_F;
  else
    out = (1.f - smoothing) * (l - xr[tgt]) + smoothing * (l - sum_x / classes);
  loss[row] = out;
  lse[row] = l;
}

// Forward v3: as v2, but each batch of kXentBatch * VEC values is folded in at once: its max
// m' (with the running max), then s = s * exp(m - m') + sum exp(v - m'). v2's per-element
// update branches on whether the max moved, and lanes that disagree run both sides (two exps);
// here every lane runs the same instructions, one exp per element plus one per batch. A value
// equal to m' contributes exactly 1 (so one +inf gives v1's lse of +inf, not inf - inf = NaN,
// and a second one NaN, as in v1); NaN values are skipped by fmaxf and poison s through exp (or
// directly while the max is -inf), as v1's pushes do.
template <int G, int VEC>
__global__ void __launch_bounds__(row_threads<G>(), G == 32 ? 8 : 3)
    xent_fwd_v3(const float* __restrict__ logits, const long long* __restrict__ target, float* __restrict__ loss,
                float* __restrict__ lse, long long rows, int classes, long long ignore_index, float smoothing) {
  __shared__ float scratch[group_scratch<G>()];
  const long long row = group_row<G>();
  if (row >= rows) return;  // only warp groups can be partial, and they never block-sync
  const int t = threadIdx.x % G;
  const float* xr = logits + row * classes;

  MaxSum acc{-CUDART_INF_F, 0.f};
  float sum_x = 0.f;
  for (int c0 = t * VEC; c0 < classes; c0 += G * VEC * kXentBatch) {
    float v[kXentBatch][VEC];
#pragma unroll
    for (int u = 0; u < kXentBatch; ++u) {
      const int c = c0 + u * G * VEC;
      if (c < classes) {
        load_vec<VEC>(xr + c, v[u]);
      } else {
#pragma unroll
        for (int i = 0; i < VEC; ++i) v[u][i] = -CUDART_INF_F;
      }
    }
    float m = acc.m;
#pragma unroll
    for (int u = 0; u < kXentBatch; ++u)
#pragma unroll
      for (int i = 0; i < VEC; ++i) {
        m = fmaxf(m, v[u][i]);
        if (c0 + u * G * VEC < classes) sum_x += v[u][i];
      }
    if (m == -CUDART_INF_F) {  // only -inf (sum 0) and NaN (sum NaN, as v1's pushes) so far
#pragma unroll
      for (int u = 0; u < kXentBatch; ++u)
#pragma unroll
        for (int i = 0; i < VEC; ++i)
          if (isnan(v[u][i])) acc.s = CUDART_NAN_F;
      continue;
    }
    float s = acc.m == m ? acc.s : acc.s * expf(acc.m - m);
    bool inf_seen = acc.m == CUDART_INF_F;  // v1: a second +inf adds exp(inf - inf) = NaN
#pragma unroll
    for (int u = 0; u < kXentBatch; ++u)
#pragma unroll
      for (int i = 0; i < VEC; ++i) {
        if (v[u][i] == m) {
          s += m == CUDART_INF_F && inf_seen ? CUDART_NAN_F : 1.f;
          inf_seen = inf_seen || m == CUDART_INF_F;
        } else {
          s += expf(v[u][i] - m);
        }
      }
    acc = {m, s};
  }
  acc = group_maxsum<G>(acc, scratch);
  sum_x = group_sum<G>(sum_x, scratch);
  if (t != 0) return;
  const float l = acc.m + logf(acc.s);
  const long long tgt = target[row];
  float out;
  if (tgt == ignore_index)
    out = 0.f;
  else if (tgt < 0 || tgt >= classes)
    out = CUDART_NAN_F;
  else
    out = (1.f - smoothing) * (l - xr[tgt]) + smoothing * (l - sum_x / classes);
  loss[row] = out;
  lse[row] = l;
}

// Backward: an elementwise pass over the flat (rows * classes) array, as the activation
// kernels (which run at copy speed): VEC consecutive elements per step (float4 when classes %
// 4 == 0, so a step never crosses a row), the row's target, gloss and lse read through the
// cache. I is the index type: 32-bit when the size allows.
template <int VEC, typename I>
__global__ void xent_bwd_v2(const float* __restrict__ gloss, const float* __restrict__ logits,
                            const long long* __restrict__ target, const float* __restrict__ lse,
                            float* __restrict__ glogits, I steps, int classes, long long ignore_index,
                            float smoothing) {
  const float floor = smoothing / classes, hit = 1.f - smoothing;
  for (I i = blockIdx.x * (I)blockDim.x + threadIdx.x; i < steps; i += (I)gridDim.x * blockDim.x) {
    const I e = i * VEC, row = e / classes;
    const int c = static_cast<int>(e - row * classes);
    const long long tgt = target[row];
    float v[VEC];
    load_vec<VEC>(logits + e, v);
    if (tgt == ignore_index) {
#pragma unroll
      for (int k = 0; k < VEC; ++k) v[k] = 0.f;
    } else {
      const float g = (tgt < 0 || tgt >= classes) ? CUDART_NAN_F : gloss[row];
      const float l = lse[row];
#pragma unroll
      for (int k = 0; k < VEC; ++k) v[k] = g * (expf(v[k] - l) - floor - (c + k == tgt ? hit : 0.f));
    }
    store_vec<VEC>(glogits + e, v);
  }
}

std::string desc(const char* name, long long rows, int classes) {
  return std::string(name) + " rows=" + std::to_string(rows) + " classes=" + std::to_string(classes);
}

template <int G>
unsigned row_blocks(long long rows) { return (unsigned)ceil_div<long long>(rows, rows_per_block<G>()); }

// Calls f(G, VEC) as integral_constants for the forward: a warp or a block per row, float4 or
// scalar access.
template <typename F>
void dispatch_rows(int classes, bool vec4, F&& f) {
  if (classes <= kRowWarpMaxCols)
    vec4 ? f(IntC<32>{}, IntC<4>{}) : f(IntC<32>{}, IntC<1>{});
  else
    vec4 ? f(IntC<kRowBlockThreads>{}, IntC<4>{}) : f(IntC<kRowBlockThreads>{}, IntC<1>{});
}

}  // namespace

void cross_entropy_forward(std::uintptr_t logits, std::uintptr_t target, std::uintptr_t loss,
                           std::uintptr_t lse, long long rows, int classes, long long ignore_index,
                           float label_smoothing, std::uintptr_t stream) {
  if (rows <= 0) return;
  const cudaStream_t st = as_stream(stream);
  auto x = dptr<const float>(logits);
  auto t = dptr<const long long>(target);
  const int version = kernel_version("cross_entropy_forward");
  dispatch_rows(classes, classes % 4 == 0 && logits % 16 == 0, [&](auto g, auto v) {
    constexpr int G = decltype(g)::value, VEC = decltype(v)::value;
    if (version == 3)
      xent_fwd_v3<G, VEC><<<row_blocks<G>(rows), row_threads<G>(), 0, st>>>(
          x, t, dptr<float>(loss), dptr<float>(lse), rows, classes, ignore_index, label_smoothing);
    else if (version == 2)
      xent_fwd_v2<G, VEC><<<row_blocks<G>(rows), row_threads<G>(), 0, st>>>(
          x, t, dptr<float>(loss), dptr<float>(lse), rows, classes, ignore_index, label_smoothing);
    else
      xent_fwd_kernel<G, VEC><<<row_blocks<G>(rows), row_threads<G>(), 0, st>>>(
          x, t, dptr<float>(loss), dptr<float>(lse), rows, classes, ignore_index, label_smoothing);
  });
  check_launch(desc("cross_entropy_forward", rows, classes));
}

void cross_entropy_backward(std::uintptr_t gloss, std::uintptr_t logits, std::uintptr_t target,
                            std::uintptr_t lse, std::uintptr_t glogits, long long rows, int classes,
                            long long ignore_index, float label_smoothing, std::uintptr_t stream) {
  if (rows <= 0) return;
  const cudaStream_t st = as_stream(stream);
  auto g = dptr<const float>(gloss);
  auto x = dptr<const float>(logits);
  auto t = dptr<const long long>(target);
  auto l = dptr<const float>(lse);
  if (kernel_version("cross_entropy_backward") == 2) {
    const long long total = rows * classes;
    const bool vec4 = classes % 4 == 0 && logits % 16 == 0 && glogits % 16 == 0;
    const long long steps = vec4 ? total / 4 : total;
    auto launch = [&](auto vec, auto n) {
      constexpr int VEC = decltype(vec)::value;
      xent_bwd_v2<VEC><<<grid_for(steps, kBwdThreads, 8 * 1024), kBwdThreads, 0, st>>>(
          g, x, t, l, dptr<float>(glogits), n, classes, ignore_index, label_smoothing);
    };
    // 32-bit index math while every flat element index fits.
    const bool narrow = total < (1LL << 31) - (1LL << 24);
    if (vec4)
      narrow ? launch(IntC<4>{}, (int)steps) : launch(IntC<4>{}, steps);
    else
      narrow ? launch(IntC<1>{}, (int)steps) : launch(IntC<1>{}, steps);
  } else if (classes <= kRowWarpMaxCols) {
    xent_bwd_kernel<32><<<row_blocks<32>(rows), row_threads<32>(), 0, st>>>(
        g, x, t, l, dptr<float>(glogits), rows, classes, ignore_index, label_smoothing);
  } else {
    xent_bwd_kernel<kRowBlockThreads><<<row_blocks<kRowBlockThreads>(rows), kRowBlockThreads, 0, st>>>(
        g, x, t, l, dptr<float>(glogits), rows, classes, ignore_index, label_smoothing);
  }
  check_launch(desc("cross_entropy_backward", rows, classes));
}

}  // namespace pyengine
