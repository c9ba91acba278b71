// pool.cu — 2D max pooling (with int64 argmax indices) and average pooling over NCHW
// float32 planes, forward and backward, with PyTorch's semantics: padding never wins a max,
// NaN propagates (a NaN tap always wins, as in PyTorch's
// kernels), among equal maxima the first index is kept; average divisors follow
// count_include_pad / divisor_override and ceil_mode's clipped last window.
//
// Technique: grid-stride loops, consecutive threads on consecutive columns so loads coalesce,
// 32-bit index math when the size allows.
//   Forward: a thread per output; 2x2 and 3x3 windows are compiled, so every tap's load issues
//     before the first comparison (a run-time window loop waits for each load in turn).
//   Max backward: a block per plane accumulates gy in shared memory at the saved indices
//     (shared-memory atomics: windows may overlap, and the backward gets only the indices),
//     then writes the plane once: no zero fill, no global atomics. Planes over a block's shared
//     memory (56K floats on an H100) zero gx and scatter with global atomicAdd instead.
//   Average backward gathers from the windows that cover an input (no atomics, deterministic).
//     Where windows do not overlap (kh <= sh, kw <= sw: the usual case) a thread owns 8
//     columns of a row and steps from window to window without a division per element
//     (kernel_version 3, the default); otherwise a thread owns 4 columns and loops over the
//     windows (kernel_version 2: pyengine._C.set_kernel_version("avg_pool2d_backward", 2) sends
//     the disjoint case there too, for a side-by-side run).
// Memory-bound: floor = (bytes of x + y (+ indices)) / copy bandwidth; max backward reads gy
// and the indices and writes gx once.
//
// Measured on an H100 80GB HBM3, x = (64, 64, 112, 112), ratio = GB/s over the D2D copy's:
//   v1 (2026-11-27, bench/device_check.sh, one call including the wrapper): a thread per output
//      with run-time window loops, max backward zero fill + global atomics, average backward a
//      thread per input with six run-time divisions: max 3x3/2 fwd 0.60-0.63, bwd 0.63-0.66
//      (counting gx twice: 0.40 by the minimum); avg 2x2/2 fwd 0.69-0.72, bwd 0.17-0.18.
//   2026-11-27 22:09, bench/variants/membound.py (D2D 2886 GB/s; kernel time = 10 calls back to
//      back / 10), v1 -> now: max 3x3/2 fwd 0.183 -> 0.134 ms (0.68 -> 0.93), bwd 0.299 ->
//      0.140 ms (0.42 -> 0.89); avg 2x2/2 fwd 0.112 -> 0.092 ms (0.80 -> 0.97), bwd 0.460 ->
//      0.251 ms (0.19 -> 0.35) with the 4-column gather (kernel_version 2; still ALU-bound: ~12
//      run-time divisions per 4 elements). A band-of-rows forward staged in shared memory ran
//      slower (max 0.176 ms, avg 0.116 ms) and is deleted. The 8-column disjoint average
//      backward (kernel_version 3, 4 divisions per 8 elements): not yet measured on a GPU.
#include "common.cuh"
#include "kernels_core.h"
#include "kernels_nn.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <type_traits>

namespace pyengine {
namespace {

constexpr int kThreads = 256;

template <typename I>
__global__ void max_pool_bwd_atomic(PoolShape s, const float* __restrict__ gy, const long long* __restrict__ idx,
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

// A window of KH x KW taps (0: the run-time s.kh / s.kw). Compile-time sizes let every tap's
// load issue before the first comparison, where a run-time loop waits for each in turn.
template <int K>
__device__ __forceinline__ int taps(int runtime) { return K > 0 ? K : runtime; }

template <int KH, int KW, typename I>
__global__ void max_pool_fwd(PoolShape s, const float* __restrict__ x, float* __restrict__ y,
                                long long* __restrict__ idx, I total) {
  const int kh = taps<KH>(s.kh), kw = taps<KW>(s.kw);
  for (I i = blockIdx.x * (I)blockDim.x + threadIdx.x; i < total; i += (I)gridDim.x * blockDim.x) {
    const I q = i / s.ow, plane = q / s.oh;
    const int ow = static_cast<int>(i - q * s.ow), oh = static_cast<int>(q - plane * s.oh);
    const float* xp = x + (long long)plane * s.h * s.w;
    const int h0 = oh * s.sh - s.ph, w0 = ow * s.sw - s.pw;
    int hs = h0, ws = w0;  // the first in-bounds tap, as PyTorch
    while (hs < 0) hs += s.dh;
    while (ws < 0) ws += s.dw;
    int arg = hs * s.w + ws;
    float best = -INFINITY;
    if constexpr (KH > 0 && KW > 0) {
      // Out-of-bounds taps read as -inf, which neither beats best nor is NaN: skipped.
      float v[KH][KW];
#pragma unroll
      for (int a = 0; a < KH; ++a)
#pragma unroll
        for (int b = 0; b < KW; ++b) {
          const int ih = h0 + a * s.dh, iw = w0 + b * s.dw;
          v[a][b] = (ih >= 0 && ih < s.h && iw >= 0 && iw < s.w) ? xp[ih * s.w + iw] : -INFINITY;
        }
#pragma unroll
      for (int a = 0; a < KH; ++a)
#pragma unroll
        for (int b = 0; b < KW; ++b)
          if (v[a][b] > best || isnan(v[a][b])) {
            best = v[a][b];
            arg = (h0 + a * s.dh) * s.w + w0 + b * s.dw;
          }
    } else {
      for (int a = 0; a < kh; ++a) {
        const int ih = h0 + a * s.dh;
        if (ih < 0 || ih >= s.h) continue;
        for (int b = 0; b < kw; ++b) {
          const int iw = w0 + b * s.dw;
          if (iw < 0 || iw >= s.w) continue;
          const float v = xp[ih * s.w + iw];
          if (v > best || isnan(v)) {
            best = v;
            arg = ih * s.w + iw;
          }
        }
      }
    }
    y[i] = best;
    idx[i] = arg;
  }
}

template <int KH, int KW, typename I>
__global__ void avg_pool_fwd(PoolShape s, bool include_pad, int override_, const float* __restrict__ x,
                                float* __restrict__ y, I total) {
  const int kh = taps<KH>(s.kh), kw = taps<KW>(s.kw);
  for (I i = blockIdx.x * (I)blockDim.x + threadIdx.x; i < total; i += (I)gridDim.x * blockDim.x) {
    const I q = i / s.ow, plane = q / s.oh;
    const int ow = static_cast<int>(i - q * s.ow), oh = static_cast<int>(q - plane * s.oh);
    const float* xp = x + (long long)plane * s.h * s.w;
    const int h0 = oh * s.sh - s.ph, w0 = ow * s.sw - s.pw;
    float sum = 0.f;
    if constexpr (KH > 0 && KW > 0) {
      float v[KH][KW];  // taps in the padding read as 0 and add nothing, in the loop's order
#pragma unroll
      for (int a = 0; a < KH; ++a)
#pragma unroll
        for (int b = 0; b < KW; ++b) {
          const int ih = h0 + a, iw = w0 + b;
          v[a][b] = (ih >= 0 && ih < s.h && iw >= 0 && iw < s.w) ? xp[ih * s.w + iw] : 0.f;
        }
#pragma unroll
      for (int a = 0; a < KH; ++a)
#pragma unroll
        for (int b = 0; b < KW; ++b) sum += v[a][b];
    } else {
      const int hb = max(h0, 0), wb = max(w0, 0), he = min(h0 + kh, s.h), we = min(w0 + kw, s.w);
      for (int ih = hb; ih < he; ++ih)
        for (int iw = wb; iw < we; ++iw) sum += xp[ih * s.w + iw];
    }
    y[i] = __fdividef(sum, avg_divisor(s, oh, ow, include_pad, override_));
  }
}

// First and last window index (lo, hi) covering input coordinate a along one axis: windows
// o with o*stride - pad <= a < o*stride - pad + k. Floor division: a + pad - k may be negative.
struct Span {
  int lo, hi;
};
__device__ __forceinline__ Span covering(int a, int k, int stride, int pad, int n_out) {
  const int top = a + pad, bottom = top - k;
  const int below = bottom >= 0 ? bottom / stride : -((-bottom + stride - 1) / stride);
  return {max(0, below + 1), min(n_out - 1, top / stride)};
}

// Average backward, gathered: a thread owns kAvgCols consecutive input columns of one row, so
// the row's window span and the flat-index decomposition are computed once per kAvgCols
// elements (a thread per element spent six run-time divisions on each), and writes a float4
// when aligned.
constexpr int kAvgCols = 4;

// ONE: windows do not overlap (kh <= sh, kw <= sw), so at most one covers an element and the
// four columns' loads are independent, issued together rather than one window loop at a time.
template <bool ONE, typename I>
__global__ void avg_pool_bwd_gather(PoolShape s, bool include_pad, int override_, const float* __restrict__ gy,
                                float* __restrict__ gx, I total_chunks, bool vec4) {
  const int chunks = (s.w + kAvgCols - 1) / kAvgCols;
  for (I i = blockIdx.x * (I)blockDim.x + threadIdx.x; i < total_chunks; i += (I)gridDim.x * blockDim.x) {
    const I row = i / chunks;  // plane * h + ih
    const I plane = row / s.h;
    const int ih = static_cast<int>(row - plane * s.h), iw0 = static_cast<int>(i - row * chunks) * kAvgCols;
    const float* gp = gy + (long long)plane * s.oh * s.ow;
    const Span hs = covering(ih, s.kh, s.sh, s.ph, s.oh);
    float out[kAvgCols];
#pragma unroll
    for (int c = 0; c < kAvgCols; ++c) {
      const int iw = iw0 + c;
      float sum = 0.f;
      if (iw < s.w) {
        const Span ws = covering(iw, s.kw, s.sw, s.pw, s.ow);
        if constexpr (ONE) {
          if (hs.lo <= hs.hi && ws.lo <= ws.hi)
            sum = __fdividef(gp[hs.lo * s.ow + ws.lo], avg_divisor(s, hs.lo, ws.lo, include_pad, override_));
        } else {
          for (int oh = hs.lo; oh <= hs.hi; ++oh)
            for (int ow = ws.lo; ow <= ws.hi; ++ow)
              sum += __fdividef(gp[oh * s.ow + ow], avg_divisor(s, oh, ow, include_pad, override_));
        }
      }
      out[c] = sum;
    }
    float* dst = gx + (long long)row * s.w + iw0;
    if (vec4) {
      *reinterpret_cast<float4*>(dst) = make_float4(out[0], out[1], out[2], out[3]);
    } else {
#pragma unroll
      for (int c = 0; c < kAvgCols; ++c)
        if (iw0 + c < s.w) dst[c] = out[c];
    }
  }
}

// Average backward where windows do not overlap (kh <= sh, kw <= sw), the usual case: at most
// one window covers an element, found without a division per element. A thread owns
// kDisjointCols consecutive columns of one input row: one division places the row in its window
// row, one the first column, and the next columns step the (window, offset) pair along; the
// divisor is the product of the window's row and column extents, as avg_divisor computes it.
// Four run-time divisions per 8 elements (the gather kernel spends 12 per 4: it was ALU-bound).
constexpr int kDisjointCols = 8;

// Rows (or columns) of window o that count toward its divisor: avg_divisor's factor.
__device__ __forceinline__ int window_extent(int o, int k, int stride, int pad, int n, bool include_pad) {
  const int a0 = o * stride - pad, a1 = min(a0 + k, n + pad);
  return include_pad ? a1 - a0 : min(a1, n) - max(a0, 0);
}

template <typename I>
__global__ void avg_pool_bwd_disjoint(PoolShape s, bool include_pad, int override_, const float* __restrict__ gy,
                                      float* __restrict__ gx, I total_chunks, bool vec4) {
  const int chunks = (s.w + kDisjointCols - 1) / kDisjointCols;
  for (I i = blockIdx.x * (I)blockDim.x + threadIdx.x; i < total_chunks; i += (I)gridDim.x * blockDim.x) {
    const I row = i / chunks;  // plane * h + ih
    const I plane = row / s.h;
    const int ih = static_cast<int>(row - plane * s.h);
    const int iw0 = static_cast<int>(i - row * chunks) * kDisjointCols;
    const int th = ih + s.ph, oh = th / s.sh;
    const bool row_hit = th - oh * s.sh < s.kh && oh < s.oh;
    float out[kDisjointCols];
    if (row_hit) {
      const float* gp = gy + ((long long)plane * s.oh + oh) * s.ow;
      const int eh = window_extent(oh, s.kh, s.sh, s.ph, s.h, include_pad);
      const int tw = iw0 + s.pw;
      int ow = tw / s.sw, r = tw - ow * s.sw;  // column iw0 + c is at offset r of window ow
#pragma unroll
      for (int c = 0; c < kDisjointCols; ++c) {
        const bool hit = iw0 + c < s.w && r < s.kw && ow < s.ow;
        const float g = hit ? gp[ow] : 0.f;
        int div = override_;
        if (div <= 0) {
          const int ew = window_extent(ow, s.kw, s.sw, s.pw, s.w, include_pad);
          div = include_pad || (eh > 0 && ew > 0) ? eh * ew : 1;
        }
        out[c] = hit ? __fdividef(g, static_cast<float>(div)) : 0.f;
        if (++r == s.sw) {
          r = 0;
          ++ow;
        }
      }
    } else {
#pragma unroll
      for (int c = 0; c < kDisjointCols; ++c) out[c] = 0.f;
    }
    float* dst = gx + (long long)row * s.w + iw0;
    if (vec4) {  // W % 4 == 0: the chunk's first 4 columns exist, the next 4 unless W ends there
      *reinterpret_cast<float4*>(dst) = make_float4(out[0], out[1], out[2], out[3]);
      if (iw0 + 4 < s.w) *reinterpret_cast<float4*>(dst + 4) = make_float4(out[4], out[5], out[6], out[7]);
    } else {
#pragma unroll
      for (int c = 0; c < kDisjointCols; ++c)
        if (iw0 + c < s.w) dst[c] = out[c];
    }
  }
}

// Max backward without a zero fill or global atomics: a block owns one plane, adds gy into
// the plane held in shared memory at the saved indices (shared-memory atomics: windows may
// overlap), then writes the plane once, float4 when aligned. Planes larger than shared memory
// take max_pool_bwd_atomic (a zero fill, then global atomics).
constexpr int kPlaneThreads = 512;

__global__ void max_pool_bwd_plane(int in_plane, int out_plane, const float* __restrict__ gy,
                                   const long long* __restrict__ idx, float* __restrict__ gx, bool vec4) {
  extern __shared__ float4 acc4[];  // float4: the plane is read back 16 bytes at a time
  float* acc = reinterpret_cast<float*>(acc4);
  const long long plane = blockIdx.x;
  for (int j = threadIdx.x; j < in_plane; j += blockDim.x) acc[j] = 0.f;
  __syncthreads();
  const float* gp = gy + plane * out_plane;
  const long long* ip = idx + plane * out_plane;
#pragma unroll 4
  for (int i = threadIdx.x; i < out_plane; i += blockDim.x) {
    const long long j = ip[i];
    if (j >= 0 && j < in_plane) atomicAdd(acc + j, gp[i]);
  }
  __syncthreads();
  float* dst = gx + plane * in_plane;
  if (vec4) {
    for (int j = threadIdx.x; j < in_plane / 4; j += blockDim.x)
      reinterpret_cast<float4*>(dst)[j] = acc4[j];
  } else {
    for (int j = threadIdx.x; j < in_plane; j += blockDim.x) dst[j] = acc[j];
  }
}

// Shared memory one block may use (opt-in above 48 KB), asked once.
int max_shared_bytes() {
  static const int bytes = device_attribute_or(cudaDevAttrMaxSharedMemoryPerBlockOptin, 48 * 1024);
  return bytes;
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

// Calls f(KH, KW) as integral_constants: 2x2 and 3x3 windows compiled, others at run time (0).
template <int N>
using IntC = std::integral_constant<int, N>;

template <class F>
void with_window(const PoolShape& s, F&& f) {
  if (s.kh == 2 && s.kw == 2) f(IntC<2>{}, IntC<2>{});
  else if (s.kh == 3 && s.kw == 3) f(IntC<3>{}, IntC<3>{});
  else f(IntC<0>{}, IntC<0>{});
}

}  // namespace

void max_pool2d_forward(const PoolShape& s, std::uintptr_t x, std::uintptr_t y, std::uintptr_t idx,
                        std::uintptr_t stream) {
  validate(s, "max_pool2d");
  const long long total = (long long)s.nc * s.oh * s.ow;
  if (total == 0) return;
  const cudaStream_t st = as_stream(stream);
  const int blocks = grid_for(total, kThreads);
  with_index(total, [&](auto t) {
    with_window(s, [&](auto kh, auto kw) {
      max_pool_fwd<decltype(kh)::value, decltype(kw)::value><<<blocks, kThreads, 0, st>>>(
          s, dptr<const float>(x), dptr<float>(y), dptr<long long>(idx), t);
    });
  });
  check_launch(describe("max_pool2d_forward", s));
}

void max_pool2d_backward(const PoolShape& s, std::uintptr_t gy, std::uintptr_t idx, std::uintptr_t gx,
                         std::uintptr_t stream) {
  const long long total = (long long)s.nc * s.oh * s.ow;
  const long long in_plane = (long long)s.h * s.w;
  cudaStream_t st = as_stream(stream);
  const long long smem = 4 * in_plane;
  if (s.nc > 0 && in_plane > 0 && smem <= max_shared_bytes()) {
    CUDA_CHECK(cudaFuncSetAttribute(max_pool_bwd_plane, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    const int threads = (int)std::min<long long>(kPlaneThreads, ceil_div<long long>(in_plane, 32) * 32);
    const bool vec4 = in_plane % 4 == 0 && gx % 16 == 0;
    max_pool_bwd_plane<<<s.nc, threads, (size_t)smem, st>>>((int)in_plane, s.oh * s.ow, dptr<const float>(gy),
                                                            dptr<const long long>(idx), dptr<float>(gx), vec4);
    check_launch(describe("max_pool2d_backward (plane in shared memory)", s));
    return;
  }
  CUDA_CHECK(cudaMemsetAsync(dptr<float>(gx), 0, sizeof(float) * (size_t)s.nc * s.h * s.w, st));
  if (total == 0) return;
  with_index(total, [&](auto t) {
    max_pool_bwd_atomic<<<grid_for(total, kThreads), kThreads, 0, st>>>(
        s, dptr<const float>(gy), dptr<const long long>(idx), dptr<float>(gx), t);
  });
  check_launch(describe("max_pool2d_backward", s));
}

void avg_pool2d_forward(const PoolShape& s, bool count_include_pad, int divisor_override, std::uintptr_t x,
                        std::uintptr_t y, std::uintptr_t stream) {
  validate(s, "avg_pool2d");
  const long long total = (long long)s.nc * s.oh * s.ow;
  if (total == 0) return;
  const cudaStream_t st = as_stream(stream);
  const int blocks = grid_for(total, kThreads);
  with_index(total, [&](auto t) {
    with_window(s, [&](auto kh, auto kw) {
      avg_pool_fwd<decltype(kh)::value, decltype(kw)::value><<<blocks, kThreads, 0, st>>>(
          s, count_include_pad, divisor_override, dptr<const float>(x), dptr<float>(y), t);
    });
  });
  check_launch(describe("avg_pool2d_forward", s));
}

void avg_pool2d_backward(const PoolShape& s, bool count_include_pad, int divisor_override, std::uintptr_t gy,
                         std::uintptr_t gx, std::uintptr_t stream) {
  validate(s, "avg_pool2d");
  const long long total = (long long)s.nc * s.h * s.w;
  if (total == 0) return;
  const cudaStream_t st = as_stream(stream);
  const bool disjoint = s.kh <= s.sh && s.kw <= s.sw;
  if (disjoint && kernel_version("avg_pool2d_backward") == 3) {
    const long long chunks = (long long)s.nc * s.h * ceil_div(s.w, kDisjointCols);
    const bool vec4 = s.w % 4 == 0 && gx % 16 == 0;
    with_index(chunks, [&](auto t) {
      avg_pool_bwd_disjoint<<<grid_for(chunks, kThreads), kThreads, 0, st>>>(
          s, count_include_pad, divisor_override, dptr<const float>(gy), dptr<float>(gx), t, vec4);
    });
  } else {
    const long long chunks = (long long)s.nc * s.h * ceil_div(s.w, kAvgCols);
    const bool vec4 = s.w % kAvgCols == 0 && gx % 16 == 0;
    with_index(chunks, [&](auto t) {
      if (disjoint)
        avg_pool_bwd_gather<true><<<grid_for(chunks, kThreads), kThreads, 0, st>>>(
            s, count_include_pad, divisor_override, dptr<const float>(gy), dptr<float>(gx), t, vec4);
      else
        avg_pool_bwd_gather<false><<<grid_for(chunks, kThreads), kThreads, 0, st>>>(
            s, count_include_pad, divisor_override, dptr<const float>(gy), dptr<float>(gx), t, vec4);
    });
  }
  check_launch(describe("avg_pool2d_backward", s));
}

}  // namespace pyengine
