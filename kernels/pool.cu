// pool.cu — 2D max pooling (with int64 argmax indices) and average pooling over NCHW
// float32 planes, forward and backward, with PyTorch's semantics: padding never wins a max,
// NaN propagates (a NaN tap always wins, as in PyTorch's
// kernels), among equal maxima the first index is kept; average divisors follow
// count_include_pad / divisor_override and ceil_mode's clipped last window.
//
// Technique, kernel_version 1 (as of 2026-11-27): one thread per output (forward) or per
// input (average backward) element, grid-stride, consecutive threads on consecutive columns
// so loads coalesce, window loops with run-time bounds. Average backward gathers from the
// windows that cover an input (no atomics, deterministic); max backward zero-fills gx, then
// scatters gy to its saved index with global atomicAdd (windows may overlap, and the backward
// gets only the indices, not the window geometry).
// kernel_version 2: forward windows of 2x2 and 3x3 taps compiled, so every tap's load issues
// before the first comparison; average backward with a thread per 4 input columns of a row
// (the row's window span and the index decomposition once per 4 elements; float4 stores when
// W % 4 == 0; where windows do not overlap, the four loads issue together); max backward with
// a block per plane accumulating gy in shared memory (shared-memory atomics at the saved
// indices), then writing the plane once: no zero fill, no global atomics. Planes over the
// shared memory of a block (56K floats on an H100) take v1.
// kernel_version 3 (forward only): a block per band of up to 8 output rows of a plane copies
// the input rows the band covers into shared memory (float4 loads when W % 4 == 0, coalesced,
// each element read once), then reads its taps from there. Rows over 48 KB take v2.
// pyengine._C.set_kernel_version picks a version per family (kernel_versions.cpp).
// Memory-bound: floor = (bytes of x + y (+ indices)) / copy bandwidth; max backward reads gy
// and the indices and writes gx once.
//
// Measured (bench/device_check.sh; ceiling = measured D2D copy bandwidth, 2.8 TB/s), one call
// between CUDA events including the Python wrapper:
//   v1 (64-bit index math) H100 80GB HBM3, 2026-11-27, x = (64, 64, 112, 112):
//      max 3x3/2 fwd 1680 GB/s (0.60 of copy), bwd 1822 (0.66); avg 2x2/2 fwd 1906 (0.69), bwd 459 (0.17).
//   v1 (32-bit index math when the size allows): max fwd 1824 GB/s (0.63), bwd 1807 (0.63);
//      avg fwd 2068 (0.72), bwd 515 (0.18). __fdividef for the divisor: avg bwd 506 GB/s (0.18).
//      (max bwd counted gx twice then, for the zero fill: 0.60 there is 0.38 by the minimum.)
//   v2, v3: not yet measured on a GPU (bench/variants/membound.py compares them with v1).
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

// ---- Version 2 (kernel_version 2): fewer index divisions, unrolled taps, no zero fill ----

// A window of KH x KW taps (0: the run-time s.kh / s.kw). Compile-time sizes let every tap's
// load issue before the first comparison, where a run-time loop waits for each in turn.
template <int K>
__device__ __forceinline__ int taps(int runtime) { return K > 0 ? K : runtime; }

template <int KH, int KW, typename I>
__global__ void max_pool_fwd_v2(PoolShape s, const float* __restrict__ x, float* __restrict__ y,
                                long long* __restrict__ idx, I total) {
  const int kh = taps<KH>(s.kh), kw = taps<KW>(s.kw);
  for (I i = blockIdx.x * (I)blockDim.x + threadIdx.x; i < total; i += (I)gridDim.x * blockDim.x) {
    const I q = i / s.ow, plane = q / s.oh;
    const int ow = static_cast<int>(i - q * s.ow), oh = static_cast<int>(q - plane * s.oh);
    const float* xp = x + (long long)plane * s.h * s.w;
    const int h0 = oh * s.sh - s.ph, w0 = ow * s.sw - s.pw;
    int hs = h0, ws = w0;  // the first in-bounds tap, as v1 and PyTorch
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
__global__ void avg_pool_fwd_v2(PoolShape s, bool include_pad, int override_, const float* __restrict__ x,
                                float* __restrict__ y, I total) {
  const int kh = taps<KH>(s.kh), kw = taps<KW>(s.kw);
  for (I i = blockIdx.x * (I)blockDim.x + threadIdx.x; i < total; i += (I)gridDim.x * blockDim.x) {
    const I q = i / s.ow, plane = q / s.oh;
    const int ow = static_cast<int>(i - q * s.ow), oh = static_cast<int>(q - plane * s.oh);
    const float* xp = x + (long long)plane * s.h * s.w;
    const int h0 = oh * s.sh - s.ph, w0 = ow * s.sw - s.pw;
    float sum = 0.f;
    if constexpr (KH > 0 && KW > 0) {
      float v[KH][KW];  // taps in the padding read as 0 and add nothing, in v1's order
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

// Forward v3 (kernel_version 3): a block owns a band of up to kBandRows output rows of one
// plane; it first copies the input rows the band's windows cover into shared memory (float4
// loads when W % 4 == 0, each input element read from device memory once per band, coalesced),
// then each thread takes outputs of the band and reads its taps from shared memory. MAX picks
// max pooling's rules, else average's (v2's order and divisor).
constexpr int kBandRows = 8, kTileThreads = 256, kTileMaxBytes = 48 * 1024;

template <bool MAX, int KH, int KW>
__global__ void __launch_bounds__(kTileThreads)
    pool_fwd_tile(PoolShape s, int band, int rows_in, bool vec4, bool include_pad, int override_,
                  const float* __restrict__ x, float* __restrict__ y, long long* __restrict__ idx) {
  extern __shared__ float4 tile4[];
  float* tile = reinterpret_cast<float*>(tile4);
  const int bands = (s.oh + band - 1) / band;
  const long long plane = blockIdx.x / bands;
  const int oh0 = static_cast<int>(blockIdx.x - plane * bands) * band;
  const int r0 = oh0 * s.sh - s.ph;  // input row of the tile's first row (may be padding)
  const float* xp = x + plane * s.h * s.w;
  if (vec4) {
    const int w4 = s.w / 4;
    for (int e = threadIdx.x; e < rows_in * w4; e += blockDim.x) {
      const int r = e / w4, ih = r0 + r;
      if (ih >= 0 && ih < s.h) tile4[e] = reinterpret_cast<const float4*>(xp + (long long)ih * s.w)[e - r * w4];
    }
  } else {
    for (int e = threadIdx.x; e < rows_in * s.w; e += blockDim.x) {
      const int r = e / s.w, ih = r0 + r;
      if (ih >= 0 && ih < s.h) tile[e] = xp[(long long)ih * s.w + (e - r * s.w)];
    }
  }
  __syncthreads();
  const int kh = taps<KH>(s.kh), kw = taps<KW>(s.kw);
  const int n_out = (min(oh0 + band, s.oh) - oh0) * s.ow;
  float* yp = y + (plane * s.oh + oh0) * s.ow;
  for (int e = threadIdx.x; e < n_out; e += blockDim.x) {
    const int r = e / s.ow, ow = e - r * s.ow, oh = oh0 + r;
    const int h0 = oh * s.sh - s.ph, w0 = ow * s.sw - s.pw;
    float acc = MAX ? -INFINITY : 0.f;
    int arg = 0;
    if constexpr (MAX) {
      int hs = h0, ws = w0;  // the first in-bounds tap, as v1 and PyTorch
      while (hs < 0) hs += s.dh;
      while (ws < 0) ws += s.dw;
      arg = hs * s.w + ws;
    }
    for (int a = 0; a < kh; ++a) {
      const int ih = h0 + a * s.dh;
      if (ih < 0 || ih >= s.h) continue;
      const float* trow = tile + (ih - r0) * s.w;
#pragma unroll
      for (int b = 0; b < (KW > 0 ? KW : 1); ++b) {
        for (int bb = b; bb < (KW > 0 ? b + 1 : kw); ++bb) {  // KW == 0: the run-time loop
          const int iw = w0 + bb * s.dw;
          if (iw < 0 || iw >= s.w) continue;
          const float v = trow[iw];
          if constexpr (MAX) {
            if (v > acc || isnan(v)) {
              acc = v;
              arg = ih * s.w + iw;
            }
          } else {
            acc += v;
          }
        }
      }
    }
    if constexpr (MAX) {
      yp[e] = acc;
      idx[(plane * s.oh + oh0) * s.ow + e] = arg;
    } else {
      yp[e] = __fdividef(acc, avg_divisor(s, oh, ow, include_pad, override_));
    }
  }
}

// The band for v3: up to kBandRows output rows whose input rows fit kTileMaxBytes; 0 when not
// even one row's does (then v2 runs).
int tile_band(const PoolShape& s, int* rows_in) {
  for (int band = std::min(kBandRows, s.oh); band >= 1; --band) {
    const long long rows = (long long)(band - 1) * s.sh + (long long)(s.kh - 1) * s.dh + 1;
    if (rows * s.w * 4 <= kTileMaxBytes) {
      *rows_in = static_cast<int>(rows);
      return band;
    }
  }
  return 0;
}

template <bool MAX>
bool launch_tile(const PoolShape& s, bool include_pad, int override_, std::uintptr_t x, std::uintptr_t y,
                 std::uintptr_t idx, cudaStream_t st) {
  int rows_in = 0;
  const int band = tile_band(s, &rows_in);
  const long long blocks = (long long)s.nc * ceil_div(s.oh, band);
  if (band == 0 || blocks > 0x7fffffffLL) return false;
  const bool vec4 = s.w % 4 == 0 && x % 16 == 0;
  const size_t smem = (size_t)rows_in * s.w * sizeof(float);
  auto go = [&](auto kh, auto kw) {
    pool_fwd_tile<MAX, decltype(kh)::value, decltype(kw)::value><<<(unsigned)blocks, kTileThreads, smem, st>>>(
        s, band, rows_in, vec4, include_pad, override_, dptr<const float>(x), dptr<float>(y), dptr<long long>(idx));
  };
  if (s.kh == 2 && s.kw == 2) go(std::integral_constant<int, 2>{}, std::integral_constant<int, 2>{});
  else if (s.kh == 3 && s.kw == 3) go(std::integral_constant<int, 3>{}, std::integral_constant<int, 3>{});
  else go(std::integral_constant<int, 0>{}, std::integral_constant<int, 0>{});
  return true;
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
// elements (v1 spent six run-time divisions per element), and writes a float4 when aligned.
constexpr int kAvgCols = 4;

// ONE: windows do not overlap (kh <= sh, kw <= sw), so at most one covers an element and the
// four columns' loads are independent, issued together rather than one window loop at a time.
template <bool ONE, typename I>
__global__ void avg_pool_bwd_v2(PoolShape s, bool include_pad, int override_, const float* __restrict__ gy,
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

// Max backward without a zero fill or global atomics: a block owns one plane, adds gy into
// the plane held in shared memory at the saved indices (shared-memory atomics: windows may
// overlap), then writes the plane once, float4 when aligned. Planes larger than shared memory
// take v1's path.
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
  static const int bytes = [] {
    int dev = 0, v = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) != cudaSuccess)
      v = 48 * 1024;
    return v;
  }();
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
    const int version = kernel_version("max_pool2d_forward");
    if (version == 1) {
      max_pool_fwd<<<blocks, kThreads, 0, st>>>(s, dptr<const float>(x), dptr<float>(y), dptr<long long>(idx), t);
      return;
    }
    if (version == 3 && launch_tile<true>(s, false, 0, x, y, idx, st)) return;
    with_window(s, [&](auto kh, auto kw) {
      max_pool_fwd_v2<decltype(kh)::value, decltype(kw)::value><<<blocks, kThreads, 0, st>>>(
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
  if (kernel_version("max_pool2d_backward") == 2 && s.nc > 0 && in_plane > 0 && smem <= max_shared_bytes()) {
    if (smem > 48 * 1024)
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
  const cudaStream_t st = as_stream(stream);
  const int blocks = grid_for(total, kThreads);
  with_index(total, [&](auto t) {
    const int version = kernel_version("avg_pool2d_forward");
    if (version == 1) {
      avg_pool_fwd<<<blocks, kThreads, 0, st>>>(s, count_include_pad, divisor_override, dptr<const float>(x),
                                                dptr<float>(y), t);
      return;
    }
    if (version == 3 && launch_tile<false>(s, count_include_pad, divisor_override, x, y, 0, st)) return;
    with_window(s, [&](auto kh, auto kw) {
      avg_pool_fwd_v2<decltype(kh)::value, decltype(kw)::value><<<blocks, kThreads, 0, st>>>(
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
  if (kernel_version("avg_pool2d_backward") == 1) {
    with_index(total, [&](auto t) {
      avg_pool_bwd<<<grid_for(total, kThreads), kThreads, 0, st>>>(s, count_include_pad, divisor_override,
                                                                   dptr<const float>(gy), dptr<float>(gx), t);
    });
  } else {
    const long long chunks = (long long)s.nc * s.h * ceil_div(s.w, kAvgCols);
    const bool vec4 = s.w % kAvgCols == 0 && gx % 16 == 0;
    const bool one = s.kh <= s.sh && s.kw <= s.sw;
    with_index(chunks, [&](auto t) {
      if (one)
        avg_pool_bwd_v2<true><<<grid_for(chunks, kThreads), kThreads, 0, st>>>(
            s, count_include_pad, divisor_override, dptr<const float>(gy), dptr<float>(gx), t, vec4);
      else
        avg_pool_bwd_v2<false><<<grid_for(chunks, kThreads), kThreads, 0, st>>>(
            s, count_include_pad, divisor_override, dptr<const float>(gy), dptr<float>(gx), t, vec4);
    });
  }
  check_launch(describe("avg_pool2d_backward", s));
}

}  // namespace pyengine
