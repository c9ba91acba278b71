// softmax_cross_entropy.cu — fused log_softmax + NLL per row of logits (rows, classes) with
// int64 targets, as PyTorch's cross_entropy(reduction="none"): with label smoothing eps,
//   loss = (1 - eps) * (lse - x[t]) + eps * (lse - mean(x)),   lse = log(sum(exp(x)))
// and 0 where t == ignore_index. A target outside [0, classes) that is not ignore_index gives
// a NaN loss (the kernel cannot raise; PyTorch's CUDA path asserts on the device instead).
// Backward: glogits = gloss * (exp(x - lse) - eps / classes - (1 - eps) * [j == t]).
//
// Technique: the forward is one pass over the row carrying the online (max, sum of exp) pair
// and the plain sum of x, merged with warp shuffles (a warp per row up to 1024 classes, a
// 512-thread block beyond); the per-row lse is saved so the backward needs no reduction. The
// probabilities never touch device memory. Forward: each thread issues 4 loads (float4 when
// classes % 4 == 0) into registers, then folds the batch in with one max and one exp per
// element and no per-element branch. Backward: an elementwise pass over the flat
// rows * classes array (float4 when classes % 4 == 0), as the activation kernels.
//
// Measured on an H100 80GB HBM3 (D2D copy 2871-2948 GB/s counting read + write):
//   v1 (2026-11-27, bench/gpu_bench_nn.py, one call including the wrapper) rows x classes =
//      8192 x 32000: scalar loads, forward 0.71 ms (50% of copy, 4 bytes per element read),
//      backward 0.90 ms (78-81%, 8 bytes per element); forward float4 unrolled 4 deep 0.664 ms
//      (54%); a later full run gave forward 0.70 ms (0.52), backward (a block per row) 1.13 ms.
//   2026-11-27 22:09, bench/variants/membound.py (D2D 2886 GB/s; "kernel" = 10 calls back to
//      back / 10, which still holds the wrapper's synchronous target-bounds check), 8192 x 32000,
//      smoothing 0.1: forward v1 0.428 ms (0.85), batched loads 0.413 (0.88), batched loads +
//      one max and one exp per element (now the only forward) 0.402 (0.90); backward as a block
//      per row 0.684 ms (1.06), flat elementwise (now the only backward) 0.673 (1.08); 16384 x
//      1000 backward 0.051 -> 0.047 ms. The losing versions are deleted.
#include "common.cuh"
#include "kernels_nn.h"
#include "nn_rows.cuh"

#include <string>

namespace pyengine {
namespace {

// Forward: each thread first issues kXentBatch loads (VEC floats each) into registers, so
// kXentBatch * VEC * 4 bytes per thread are in flight.
constexpr int kXentBatch = 4;
constexpr int kBwdThreads = 256;

// Each batch of kXentBatch * VEC values is folded in at once: its max m' (with the running
// max), then s = s * exp(m - m') + sum exp(v - m'). A per-element update (maxsum_push) branches
// on whether the max moved, and lanes that disagree run both sides (two exps); here every lane
// runs the same instructions, one exp per element plus one per batch. The special values give
// maxsum_push's results: a value equal to m' contributes exactly 1 (so one +inf gives an lse of
// +inf, not inf - inf = NaN; a second +inf gives NaN); NaN values are skipped by fmaxf and
// poison s through exp (or directly while the max is -inf).
template <int G, int VEC>
__global__ void __launch_bounds__(row_threads<G>(), G == 32 ? 8 : 3)
    xent_fwd_kernel(const float* __restrict__ logits, const long long* __restrict__ target, float* __restrict__ loss,
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
    if (m == -CUDART_INF_F) {  // only -inf (sum 0) and NaN (sum NaN) so far
#pragma unroll
      for (int u = 0; u < kXentBatch; ++u)
#pragma unroll
        for (int i = 0; i < VEC; ++i)
          if (isnan(v[u][i])) acc.s = CUDART_NAN_F;
      continue;
    }
    float s = acc.m == m ? acc.s : acc.s * expf(acc.m - m);
    bool inf_seen = acc.m == CUDART_INF_F;  // a second +inf adds exp(inf - inf) = NaN
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
  else  // the smoothing term only when asked for: with -inf logits it is inf, and 0 * inf NaN
    out = (1.f - smoothing) * (l - xr[tgt]) + (smoothing != 0.f ? smoothing * (l - sum_x / classes) : 0.f);
  loss[row] = out;
  lse[row] = l;
}

// Backward: an elementwise pass over the flat (rows * classes) array, as the activation
// kernels (which run at copy speed): VEC consecutive elements per step (float4 when classes %
// 4 == 0, so a step never crosses a row), the row's target, gloss and lse read through the
// cache. I is the index type: 32-bit when the size allows.
template <int VEC, typename I>
__global__ void xent_bwd_kernel(const float* __restrict__ gloss, const float* __restrict__ logits,
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
  dispatch_rows(classes, classes % 4 == 0 && logits % 16 == 0, [&](auto g, auto v) {
    constexpr int G = decltype(g)::value, VEC = decltype(v)::value;
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
  const long long total = rows * classes;
  const bool vec4 = classes % 4 == 0 && logits % 16 == 0 && glogits % 16 == 0;
  const long long steps = vec4 ? total / 4 : total;
  auto launch = [&](auto vec, auto n) {
    constexpr int VEC = decltype(vec)::value;
    xent_bwd_kernel<VEC><<<grid_for(steps, kBwdThreads, 8 * 1024), kBwdThreads, 0, st>>>(
        g, x, t, l, dptr<float>(glogits), n, classes, ignore_index, label_smoothing);
  };
  // 32-bit index math while every flat element index fits.
  const bool narrow = total < (1LL << 31) - (1LL << 24);
  if (vec4)
    narrow ? launch(IntC<4>{}, (int)steps) : launch(IntC<4>{}, steps);
  else
    narrow ? launch(IntC<1>{}, (int)steps) : launch(IntC<1>{}, steps);
  check_launch(desc("cross_entropy_backward", rows, classes));
}

}  // namespace pyengine
