// pool.cu — 2D max pooling (with int64 argmax indices) and average pooling over NCHW
// float32 planes, forward and backward, with PyTorch's semantics: padding never wins a max,
// NaN propagates (a NaN tap always wins, as in PyTorch's
// kernels), among equal maxima the first index is kept; average divisors follow
// count_include_pad / divisor_override and ceil_mode's clipped last window.
//
// Technique: one thread per output (forward) or per input (average backward) element,
// grid-stride, consecutive threads on consecutive columns so loads coalesce. Average
// backward gathers from the windows that cover an input (no atomics, deterministic); max
// backward scatters gy to its saved index with atomicAdd into a zeroed gx, because windows
// may overlap and the backward gets only the indices, not the window geometry.
// Memory-bound: floor = (bytes of x + y (+ indices)) / copy bandwidth.
//
// Measured (bench/device_check.sh; ceiling = measured D2D copy bandwidth, 2.8 TB/s):
//   v1 (64-bit index math) H100 80GB HBM3, 2026-11-27, x = (64, 64, 112, 112):
//      max 3x3/2 fwd 1680 GB/s (0.60 of copy), bwd 1822 (0.66); avg 2x2/2 fwd 1906 (0.69), bwd 459 (0.17).
//   v2 (32-bit index math when the size allows): max fwd 1824 GB/s (0.63), bwd 1807 (0.63);
//      avg fwd 2068 (0.72), bwd 515 (0.18): the index width was not what held avg backward back
//      (it writes 4x the bytes it reads, like the forward reads; not understood yet).
//      Likely ALU-bound: per input pixel ~6 integer divisions by run-time strides plus an IEEE
//      division per window (4x the forward's count). v3: __fdividef (2 ulp) for the divisor: ___
#include "common.cuh"
#include "kernels_core.h"

#include <cmath>
#include <stdexcept>
#include <string>

namespace pyengine {
namespace {

constexpr int kThreads = 256;

template <typename I>
__global__ void max_pool_fwd(PoolShape s, const float* __restrict__ x, float* __restrict__ y,
                             long long* __restrict__ idx, I total) {
  for (I i = blockIdx.x * (I)blockDim.x + threadIdx.x; i < total; i += (I)gridDim.x * blockDim.x) {
    const I q = i / s.ow, plane = q / s.oh;
    const int ow = static_cast<int>(i - q * s.ow), oh = static_cast<int>(q - plane * s.oh);
    const float* xp = x + (long long)plane * s.h * s.w;
    const int h0 = oh * s.sh - s.ph, w0 = ow * s.sw - s.pw;
    float best = -INFINITY;
    // PyTorch starts from the window's first in-bounds tap, so an all -inf window still
    // returns a valid index.
    int hs = h0, ws = w0;
    while (hs < 0) hs += s.dh;
    while (ws < 0) ws += s.dw;
    long long arg = (long long)hs * s.w + ws;
    for (int kh = 0; kh < s.kh; ++kh) {
      const int ih = h0 + kh * s.dh;
      if (ih < 0 || ih >= s.h) continue;
      for (int kw = 0; kw < s.kw; ++kw) {
        const int iw = w0 + kw * s.dw;
        if (iw < 0 || iw >= s.w) continue;
        const float v = xp[ih * s.w + iw];
        if (v > best || isnan(v)) {
          best = v;
          arg = (long long)ih * s.w + iw;
        }
      }
    }
    y[i] = best;
    idx[i] = arg;
  }
}

template <typename I>
__global__ void max_pool_bwd(PoolShape s, const float* __restrict__ gy, const long long* __restrict__ idx,
                             float* __restrict__ gx, I total) {
  const I out_plane = (I)s.oh * s.ow;
  const long long in_plane = (long long)s.h * s.w;
  for (I i = blockIdx.x * (I)blockDim.x + threadIdx.x; i < total; i += (I)gridDim.x * blockDim.x) {
    const long long plane = i / out_plane;
    const long long j = idx[i];
    if (j >= 0 && j < in_plane) atomicAdd(gx + plane * in_plane + j, gy[i]);
  }
}

// The divisor of output (oh, ow), as PyTorch's avg_pool2d computes it.
__device__ __forceinline__ float avg_divisor(const PoolShape& s, int oh, int ow, bool include_pad, int override_) {
  if (override_ > 0) return static_cast<float>(override_);
  int h0 = oh * s.sh - s.ph, w0 = ow * s.sw - s.pw;
  int h1 = min(h0 + s.kh, s.h + s.ph), w1 = min(w0 + s.kw, s.w + s.pw);
  if (include_pad) return static_cast<float>((h1 - h0) * (w1 - w0));
  h0 = max(h0, 0); w0 = max(w0, 0);
  h1 = min(h1, s.h); w1 = min(w1, s.w);
  // A ceil_mode window lying wholly in the padding sums nothing: 0, not 0/0.
  return h1 > h0 && w1 > w0 ? static_cast<float>((h1 - h0) * (w1 - w0)) : 1.f;
}

template <typename I>
__global__ void avg_pool_fwd(PoolShape s, bool include_pad, int override_, const float* __restrict__ x,
                             float* __restrict__ y, I total) {
  for (I i = blockIdx.x * (I)blockDim.x + threadIdx.x; i < total; i += (I)gridDim.x * blockDim.x) {
    const I q = i / s.ow, plane = q / s.oh;
    const int ow = static_cast<int>(i - q * s.ow), oh = static_cast<int>(q - plane * s.oh);
    const float* xp = x + (long long)plane * s.h * s.w;
    const int h0 = oh * s.sh - s.ph, w0 = ow * s.sw - s.pw;
    const int hb = max(h0, 0), wb = max(w0, 0), he = min(h0 + s.kh, s.h), we = min(w0 + s.kw, s.w);
    float sum = 0.f;
    for (int ih = hb; ih < he; ++ih)
      for (int iw = wb; iw < we; ++iw) sum += xp[ih * s.w + iw];
    y[i] = __fdividef(sum, avg_divisor(s, oh, ow, include_pad, override_));
  }
}

template <typename I>
__global__ void avg_pool_bwd(PoolShape s, bool include_pad, int override_, const float* __restrict__ gy,
                             float* __restrict__ gx, I total) {
  for (I i = blockIdx.x * (I)blockDim.x + threadIdx.x; i < total; i += (I)gridDim.x * blockDim.x) {
    const I q = i / s.w, plane = q / s.h;
    const int iw = static_cast<int>(i - q * s.w), ih = static_cast<int>(q - plane * s.h);
    const float* gp = gy + (long long)plane * s.oh * s.ow;
    // Windows (oh, ow) with oh*sh - ph <= ih < oh*sh - ph + kh.
    const int oh_lo = max(0, ceil_div(ih + s.ph - s.kh + 1 + s.sh * s.kh, s.sh) - s.kh);
    const int oh_hi = min(s.oh - 1, (ih + s.ph) / s.sh);
    const int ow_lo = max(0, ceil_div(iw + s.pw - s.kw + 1 + s.sw * s.kw, s.sw) - s.kw);
    const int ow_hi = min(s.ow - 1, (iw + s.pw) / s.sw);
    float sum = 0.f;
    for (int oh = oh_lo; oh <= oh_hi; ++oh)
      for (int ow = ow_lo; ow <= ow_hi; ++ow)
        sum += __fdividef(gp[oh * s.ow + ow], avg_divisor(s, oh, ow, include_pad, override_));
    gx[i] = sum;
  }
}

// 32-bit index arithmetic whenever the element count allows: the per-element divisions
// that decompose a flat index cost several times more in 64 bits.
template <class F>
void with_index(long long total, F&& f) {
  if (total < (1LL << 31) - (1LL << 24)) f(static_cast<int>(total));
  else f(total);
}

std::string describe(const char* kernel, const PoolShape& s) {
  return std::string(kernel) + " planes=" + std::to_string(s.nc) + " in=(" + std::to_string(s.h) + "," +
         std::to_string(s.w) + ") out=(" + std::to_string(s.oh) + "," + std::to_string(s.ow) + ") kernel=(" +
         std::to_string(s.kh) + "," + std::to_string(s.kw) + ") stride=(" + std::to_string(s.sh) + "," +
         std::to_string(s.sw) + ") padding=(" + std::to_string(s.ph) + "," + std::to_string(s.pw) +
         ") dilation=(" + std::to_string(s.dh) + "," + std::to_string(s.dw) + ")";
}

void validate(const PoolShape& s, const char* op) {
  const bool ok = s.nc >= 0 && s.h > 0 && s.w > 0 && s.oh > 0 && s.ow > 0 && s.kh > 0 && s.kw > 0 && s.sh > 0 &&
                  s.sw > 0 && s.ph >= 0 && s.pw >= 0 && s.dh > 0 && s.dw > 0;
  if (!ok) throw std::invalid_argument(std::string(op) + ": invalid geometry " + describe(op, s));
}

}  // namespace

void max_pool2d_forward(const PoolShape& s, std::uintptr_t x, std::uintptr_t y, std::uintptr_t idx,
                        std::uintptr_t stream) {
  validate(s, "max_pool2d");
  const long long total = (long long)s.nc * s.oh * s.ow;
  if (total == 0) return;
  with_index(total, [&](auto t) {
    max_pool_fwd<<<grid_for(total, kThreads), kThreads, 0, as_stream(stream)>>>(
        s, dptr<const float>(x), dptr<float>(y), dptr<long long>(idx), t);
  });
  check_launch(describe("max_pool2d_forward", s));
}

void max_pool2d_backward(const PoolShape& s, std::uintptr_t gy, std::uintptr_t idx, std::uintptr_t gx,
                         std::uintptr_t stream) {
  const long long total = (long long)s.nc * s.oh * s.ow;
  cudaStream_t st = as_stream(stream);
  CUDA_CHECK(cudaMemsetAsync(dptr<float>(gx), 0, sizeof(float) * (size_t)s.nc * s.h * s.w, st));
  if (total == 0) return;
  with_index(total, [&](auto t) {
    max_pool_bwd<<<grid_for(total, kThreads), kThreads, 0, st>>>(s, dptr<const float>(gy),
                                                                 dptr<const long long>(idx), dptr<float>(gx), t);
  });
  check_launch(describe("max_pool2d_backward", s));
}

void avg_pool2d_forward(const PoolShape& s, bool count_include_pad, int divisor_override, std::uintptr_t x,
                        std::uintptr_t y, std::uintptr_t stream) {
  validate(s, "avg_pool2d");
  const long long total = (long long)s.nc * s.oh * s.ow;
  if (total == 0) return;
  with_index(total, [&](auto t) {
    avg_pool_fwd<<<grid_for(total, kThreads), kThreads, 0, as_stream(stream)>>>(
        s, count_include_pad, divisor_override, dptr<const float>(x), dptr<float>(y), t);
  });
  check_launch(describe("avg_pool2d_forward", s));
}

void avg_pool2d_backward(const PoolShape& s, bool count_include_pad, int divisor_override, std::uintptr_t gy,
                         std::uintptr_t gx, std::uintptr_t stream) {
  validate(s, "avg_pool2d");
  const long long total = (long long)s.nc * s.h * s.w;
  if (total == 0) return;
  with_index(total, [&](auto t) {
    avg_pool_bwd<<<grid_for(total, kThreads), kThreads, 0, as_stream(stream)>>>(
        s, count_include_pad, divisor_override, dptr<const float>(gy), dptr<float>(gx), t);
  });
  check_launch(describe("avg_pool2d_backward", s));
}

}  // namespace pyengine
