// conv2d.cu — NCHW float32 convolution: forward, backward-data and backward-weight, with
// stride, padding, dilation and groups, as PyTorch's conv2d (cross-correlation).
//
// Technique (v2): implicit GEMM on matmul's register-blocked tile (matmul_tile.cuh;
// v2: 64 x 128 x 16 when a group has <= 64 output channels, 128 x 128 x 8 otherwise); the im2col matrix is never built: its loaders compute each element's
// image address on the fly, the pixel half once per thread and the (channel, kh, kw) half
// once per k tile. Per group (blockIdx.z):
//   forward   Y[oc, (n,oh,ow)]  = W[oc, (c,kh,kw)]   @ X~[(c,kh,kw), (n,oh,ow)]
//   bwd data  GX[c, (n,ih,iw)]  = W^T[c, (oc,kh,kw)] @ GY~[(oc,kh,kw), (n,ih,iw)]
//             (a tap contributes only where (ih + ph - kh*dh) divides by the stride)
//   bwd wt    GW[oc, (c,kh,kw)] = GY[oc, (n,oh,ow)]  @ X~^T[(n,oh,ow), (c,kh,kw)]
// Backward-weight has a long k (batch x pixels) and few output tiles, so k is split across
// blocks (split-K) and partial tiles are added with atomicAdd into a zeroed gw.
//
// Measured (fill in from bench/device_check.sh; ResNet 3x3, batch 64, 64 -> 64 channels,
// 56 x 56, stride 1, pad 1; ratio to cuDNN fp32 through PyTorch, TF32 off):
//   v1 (128x128x8) H100 80GB HBM3, 2026-11-27: forward 1.01 ms = 0.42 x cuDNN (0.43 ms);
//      backward data+weight 3.69 ms = 0.24 x cuDNN (0.88 ms); bwd-data 1.88 ms, bwd-weight 1.90 ms.
//   v2 (64 x 128 x 16 tile for 64 channels), same card and day: forward 0.56 ms = 0.78 x cuDNN
//      (0.44 ms); backward data+weight 1.93 ms = 0.46 x cuDNN (0.89 ms): bwd-data 1.01 ms,
//      bwd-weight 0.93 ms.
#include "common.cuh"
#include "kernels_core.h"
#include "matmul_tile.cuh"

#include <stdexcept>
#include <string>
#include <type_traits>

namespace pyengine {
namespace {

// An index no pixel reaches: added to any tap offset it stays negative, so the load is masked.
constexpr int kOutside = -(1 << 29);

__device__ __forceinline__ bool inside(int i, int n) { return static_cast<unsigned>(i) < static_cast<unsigned>(n); }

// Forward B^T (rows = output pixels (n, oh, ow), k = (c, kh, kw)): X~ gathered from x.
template <int ROWS, int TBK>
struct Im2colLoader {
  static constexpr bool kAlongK = false;
  using Map = tile::RunCoords<ROWS, TBK, false>;
  const float* x;
  int H, W, KW, KHW, dh, dw, K, kofs;
  long long base[4];
  int ih0[4], iw0[4];

  __device__ Im2colLoader(const float* x_, const ConvShape& s, int group, int n0) : x(x_) {
    const int cg = s.c / s.groups, ohw = s.oh * s.ow, npix = s.n * ohw;
    H = s.h; W = s.w; KW = s.kw; KHW = s.kh * s.kw; dh = s.dh; dw = s.dw; K = cg * KHW;
    kofs = Map::k(threadIdx.x, 0);
    const int r = n0 + Map::row(threadIdx.x, 0);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int p = r + i;
      if (p < npix) {
        const int b = p / ohw, q = p - b * ohw, oh = q / s.ow, ow = q - oh * s.ow;
        base[i] = ((long long)b * s.c + (long long)group * cg) * H * W;
        ih0[i] = oh * s.sh - s.ph;
        iw0[i] = ow * s.sw - s.pw;
      } else {
        base[i] = 0; ih0[i] = kOutside; iw0[i] = kOutside;
      }
    }
  }

  __device__ void load(int k0, int pass, float (&v)[4]) const {
    const int k = k0 + kofs + pass * Map::kKPerPass;
    if (k >= K) { v[0] = v[1] = v[2] = v[3] = 0.f; return; }
    const int c = k / KHW, rr = k - c * KHW, kh = rr / KW, kw = rr - kh * KW;
    const long long off = (long long)c * H * W;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int ih = ih0[i] + kh * dh, iw = iw0[i] + kw * dw;
      v[i] = inside(ih, H) && inside(iw, W) ? x[base[i] + off + ih * W + iw] : 0.f;
    }
  }
};

// Backward-data A (rows = input channel c of the group, k = (oc, kh, kw)): W transposed.
template <int ROWS, int TBK>
struct WeightTLoader {
  static constexpr bool kAlongK = true;
  using Map = tile::RunCoords<ROWS, TBK, true>;
  const float* w;
  int cg, KHW, K, row, kofs;

  __device__ WeightTLoader(const float* w_, const ConvShape& s, int group, int m0) {
    cg = s.c / s.groups;
    KHW = s.kh * s.kw;
    const int ocg = s.oc / s.groups;
    K = ocg * KHW;
    w = w_ + (long long)group * ocg * cg * KHW;
    row = m0 + Map::row(threadIdx.x, 0);
    kofs = Map::k(threadIdx.x, 0);
  }

  __device__ void load(int k0, int pass, float (&v)[4]) const {
    const int r = row + pass * Map::kRowsPerPass;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int k = k0 + kofs + i;
      if (r < cg && k < K) {
        const int oc = k / KHW;
        v[i] = w[((long long)oc * cg + r) * KHW + (k - oc * KHW)];
      } else {
        v[i] = 0.f;
      }
    }
  }
};

// Backward-data B^T (rows = input pixels (n, ih, iw), k = (oc, kh, kw)): GY~ gathered from gy.
template <int ROWS, int TBK>
struct GradColsLoader {
  static constexpr bool kAlongK = false;
  using Map = tile::RunCoords<ROWS, TBK, false>;
  const float* gy;
  int OH, OW, KW, KHW, sh, sw, dh, dw, K, kofs;
  long long base[4];
  int th0[4], tw0[4];

  __device__ GradColsLoader(const float* gy_, const ConvShape& s, int group, int n0) : gy(gy_) {
    const int ocg = s.oc / s.groups, hw = s.h * s.w, npix = s.n * hw;
    OH = s.oh; OW = s.ow; KW = s.kw; KHW = s.kh * s.kw; sh = s.sh; sw = s.sw; dh = s.dh; dw = s.dw;
    K = ocg * KHW;
    kofs = Map::k(threadIdx.x, 0);
    const int r = n0 + Map::row(threadIdx.x, 0);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int p = r + i;
      if (p < npix) {
        const int b = p / hw, q = p - b * hw, ih = q / s.w, iw = q - ih * s.w;
        base[i] = ((long long)b * s.oc + (long long)group * ocg) * OH * OW;
        th0[i] = ih + s.ph;
        tw0[i] = iw + s.pw;
      } else {
        base[i] = 0; th0[i] = kOutside; tw0[i] = kOutside;
      }
    }
  }

  __device__ void load(int k0, int pass, float (&v)[4]) const {
    const int k = k0 + kofs + pass * Map::kKPerPass;
    if (k >= K) { v[0] = v[1] = v[2] = v[3] = 0.f; return; }
    const int oc = k / KHW, rr = k - oc * KHW, kh = rr / KW, kw = rr - kh * KW;
    const long long off = (long long)oc * OH * OW;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int th = th0[i] - kh * dh, tw = tw0[i] - kw * dw;
      float val = 0.f;
      if (th >= 0 && tw >= 0) {
        const int oh = th / sh, ow = tw / sw;
        if (oh * sh == th && ow * sw == tw && oh < OH && ow < OW) val = gy[base[i] + off + oh * OW + ow];
      }
      v[i] = val;
    }
  }
};

// Backward-weight A (rows = output channel oc of the group, k = (n, oh, ow)): GY as a matrix.
template <int ROWS, int TBK>
struct GradRowsLoader {
  static constexpr bool kAlongK = true;
  using Map = tile::RunCoords<ROWS, TBK, true>;
  const float* gy;
  int ohw, K, row, rows, kofs;
  long long batch_stride;

  __device__ GradRowsLoader(const float* gy_, const ConvShape& s, int group, int m0) {
    const int ocg = s.oc / s.groups;
    ohw = s.oh * s.ow;
    K = s.n * ohw;
    rows = ocg;
    row = m0 + Map::row(threadIdx.x, 0);
    kofs = Map::k(threadIdx.x, 0);
    batch_stride = (long long)s.oc * ohw;
    gy = gy_ + ((long long)group * ocg + row) * ohw;
  }

  __device__ void load(int k0, int pass, float (&v)[4]) const {
    const int k = k0 + kofs, dr = pass * Map::kRowsPerPass;
    const float* g = gy + (long long)dr * ohw;
    int b = k / ohw, p = k - b * ohw;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      v[i] = row + dr < rows && k + i < K ? g[b * batch_stride + p] : 0.f;
      if (++p == ohw) { p = 0; ++b; }
    }
  }
};

// Backward-weight B^T (rows = (c, kh, kw), k = (n, oh, ow)): X~ transposed, gathered from x.
template <int ROWS, int TBK>
struct ImageRowsLoader {
  static constexpr bool kAlongK = false;
  using Map = tile::RunCoords<ROWS, TBK, false>;
  const float* x;
  int H, W, OW, ohw, sh, sw, ph, pw, K, kofs;
  long long batch_stride;
  long long coff[4];
  int khd[4], kwd[4];

  __device__ ImageRowsLoader(const float* x_, const ConvShape& s, int group, int n0) : x(x_) {
    const int cg = s.c / s.groups, khw = s.kh * s.kw, ncols = cg * khw;
    H = s.h; W = s.w; OW = s.ow; ohw = s.oh * s.ow; sh = s.sh; sw = s.sw; ph = s.ph; pw = s.pw;
    K = s.n * ohw;
    batch_stride = (long long)s.c * H * W;
    kofs = Map::k(threadIdx.x, 0);
    const int r = n0 + Map::row(threadIdx.x, 0);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int col = r + i;
      if (col < ncols) {
        const int c = col / khw, q = col - c * khw, kh = q / s.kw, kw = q - kh * s.kw;
        coff[i] = ((long long)group * cg + c) * H * W;
        khd[i] = kh * s.dh;
        kwd[i] = kw * s.dw;
      } else {
        coff[i] = 0; khd[i] = kOutside; kwd[i] = kOutside;
      }
    }
  }

  __device__ void load(int k0, int pass, float (&v)[4]) const {
    const int k = k0 + kofs + pass * Map::kKPerPass;
    if (k >= K) { v[0] = v[1] = v[2] = v[3] = 0.f; return; }
    const int b = k / ohw, q = k - b * ohw, oh = q / OW, ow = q - oh * OW;
    const int ih0 = oh * sh - ph, iw0 = ow * sw - pw;
    const float* xb = x + b * batch_stride;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int ih = ih0 + khd[i], iw = iw0 + kwd[i];
      v[i] = inside(ih, H) && inside(iw, W) ? xb[coff[i] + ih * W + iw] : 0.f;
    }
  }
};

// Writes a (channel-of-group, pixel) tile into an NCHW tensor: forward's y (plus bias) and
// backward-data's gx have the same shape of epilogue.
struct NchwEpilogue {
  float* out;
  const float* bias;
  int rows, channels, ch0, plane, npix;

  __device__ void store4(int m, int n, const float* v) const {
    if (m >= rows) return;
    const float add = bias ? bias[ch0 + m] : 0.f;
    int b = n / plane, p = n - b * plane;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      if (n + j < npix) out[((long long)b * channels + ch0 + m) * plane + p] = v[j] + add;
      if (++p == plane) { p = 0; ++b; }
    }
  }
};

// gw rows of one group; split-K partial tiles are added atomically into a zeroed gw.
struct WeightGradEpilogue {
  float* gw;
  int rows, cols;
  bool atomic;

  __device__ void store4(int m, int n, const float* v) const {
    if (m >= rows) return;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      if (n + j >= cols) break;
      float* dst = gw + (long long)m * cols + n + j;
      if (atomic) atomicAdd(dst, v[j]);
      else *dst = v[j];
    }
  }
};

template <int TBM, int TBN, int TBK, bool VEC>
__global__ void __launch_bounds__(tile::THREADS)
    conv_fwd_kernel(ConvShape s, const float* __restrict__ x, const float* __restrict__ w,
                    const float* __restrict__ bias, float* __restrict__ y) {
  const int g = blockIdx.z, cg = s.c / s.groups, ocg = s.oc / s.groups, K = cg * s.kh * s.kw;
  const int m0 = blockIdx.y * TBM, n0 = blockIdx.x * TBN;
  const tile::StridedLoader<TBM, TBK, true, VEC> la(w + (long long)g * ocg * K, K, 1, ocg, K, m0);
  const Im2colLoader<TBN, TBK> lb(x, s, g, n0);
  const NchwEpilogue epi{y, bias, ocg, s.oc, g * ocg, s.oh * s.ow, s.n * s.oh * s.ow};
  tile::gemm_tile<TBM, TBN, TBK>(la, lb, epi, m0, n0, 0, K);
}

template <int TBM, int TBN, int TBK>
__global__ void __launch_bounds__(tile::THREADS)
    conv_bwd_data_kernel(ConvShape s, const float* __restrict__ gy, const float* __restrict__ w,
                         float* __restrict__ gx) {
  const int g = blockIdx.z, cg = s.c / s.groups, K = (s.oc / s.groups) * s.kh * s.kw;
  const int m0 = blockIdx.y * TBM, n0 = blockIdx.x * TBN;
  const WeightTLoader<TBM, TBK> la(w, s, g, m0);
  const GradColsLoader<TBN, TBK> lb(gy, s, g, n0);
  const NchwEpilogue epi{gx, nullptr, cg, s.c, g * cg, s.h * s.w, s.n * s.h * s.w};
  tile::gemm_tile<TBM, TBN, TBK>(la, lb, epi, m0, n0, 0, K);
}

template <int TBM, int TBN, int TBK>
__global__ void __launch_bounds__(tile::THREADS)
    conv_bwd_weight_kernel(ConvShape s, int splits, int chunk, const float* __restrict__ gy,
                           const float* __restrict__ x, float* __restrict__ gw) {
  const int g = blockIdx.z / splits, split = blockIdx.z % splits;
  const int ocg = s.oc / s.groups, cols = (s.c / s.groups) * s.kh * s.kw, K = s.n * s.oh * s.ow;
  const int m0 = blockIdx.y * TBM, n0 = blockIdx.x * TBN;
  const int kbegin = split * chunk, kend = min(K, kbegin + chunk);
  const GradRowsLoader<TBM, TBK> la(gy, s, g, m0);
  const ImageRowsLoader<TBN, TBK> lb(x, s, g, n0);
  const WeightGradEpilogue epi{gw + (long long)g * ocg * cols, ocg, cols, splits > 1};
  tile::gemm_tile<TBM, TBN, TBK>(la, lb, epi, m0, n0, kbegin, kend);
}

// Tiles: 64 x 128 x 16 when the GEMM's M (channels of a group) fits 64 rows, so a 64-channel
// layer does not compute a half-empty 128-row tile; 128 x 128 x 8 otherwise.
template <class F>
void with_conv_tile(int rows, F&& f) {
  if (rows <= 64) f(std::integral_constant<int, 64>(), std::integral_constant<int, 16>());
  else f(std::integral_constant<int, 128>(), std::integral_constant<int, 8>());
}

std::string describe(const char* kernel, const ConvShape& s) {
  return std::string(kernel) + " x=(" + std::to_string(s.n) + "," + std::to_string(s.c) + "," +
         std::to_string(s.h) + "," + std::to_string(s.w) + ") w=(" + std::to_string(s.oc) + "," +
         std::to_string(s.c / (s.groups > 0 ? s.groups : 1)) + "," + std::to_string(s.kh) + "," +
         std::to_string(s.kw) + ") y=(" + std::to_string(s.oh) + "," + std::to_string(s.ow) + ") stride=(" +
         std::to_string(s.sh) + "," + std::to_string(s.sw) + ") padding=(" + std::to_string(s.ph) + "," +
         std::to_string(s.pw) + ") dilation=(" + std::to_string(s.dh) + "," + std::to_string(s.dw) +
         ") groups=" + std::to_string(s.groups);
}

void validate(const ConvShape& s) {
  const bool sizes = s.n >= 0 && s.c > 0 && s.h > 0 && s.w > 0 && s.oc > 0 && s.kh > 0 && s.kw > 0;
  const bool params = s.sh > 0 && s.sw > 0 && s.ph >= 0 && s.pw >= 0 && s.dh > 0 && s.dw > 0 && s.groups > 0;
  if (!sizes || !params) throw std::invalid_argument("conv2d: invalid geometry " + describe("conv2d", s));
  if (s.c % s.groups || s.oc % s.groups)
    throw std::invalid_argument("conv2d: channels must divide by groups: " + describe("conv2d", s));
  const int oh = (s.h + 2 * s.ph - s.dh * (s.kh - 1) - 1) / s.sh + 1;
  const int ow = (s.w + 2 * s.pw - s.dw * (s.kw - 1) - 1) / s.sw + 1;
  if (oh != s.oh || ow != s.ow || oh <= 0 || ow <= 0)
    throw std::invalid_argument("conv2d: output size should be (" + std::to_string(oh) + "," +
                                std::to_string(ow) + "): " + describe("conv2d", s));
  if (s.groups > 65535) throw std::invalid_argument("conv2d: too many groups: " + describe("conv2d", s));
}

}  // namespace

void conv2d_forward(const ConvShape& s, std::uintptr_t x, std::uintptr_t w, std::uintptr_t bias, std::uintptr_t y,
                    std::uintptr_t stream) {
  validate(s);
  if (s.n == 0) return;
  const int ocg = s.oc / s.groups, k = (s.c / s.groups) * s.kh * s.kw;
  const bool vec = w % 16 == 0 && k % 4 == 0;
  cudaStream_t st = as_stream(stream);
  with_conv_tile(ocg, [&](auto bm, auto bk) {
    constexpr int TBM = decltype(bm)::value, TBK = decltype(bk)::value, TBN = 128;
    const dim3 grid(ceil_div(s.n * s.oh * s.ow, TBN), ceil_div(ocg, TBM), s.groups);
    if (vec)
      conv_fwd_kernel<TBM, TBN, TBK, true><<<grid, tile::THREADS, 0, st>>>(
          s, dptr<const float>(x), dptr<const float>(w), dptr<const float>(bias), dptr<float>(y));
    else
      conv_fwd_kernel<TBM, TBN, TBK, false><<<grid, tile::THREADS, 0, st>>>(
          s, dptr<const float>(x), dptr<const float>(w), dptr<const float>(bias), dptr<float>(y));
  });
  check_launch(describe("conv2d_forward", s));
}

void conv2d_backward_data(const ConvShape& s, std::uintptr_t gy, std::uintptr_t w, std::uintptr_t gx,
                          std::uintptr_t stream) {
  validate(s);
  if (s.n == 0) return;
  const int cg = s.c / s.groups;
  with_conv_tile(cg, [&](auto bm, auto bk) {
    constexpr int TBM = decltype(bm)::value, TBK = decltype(bk)::value, TBN = 128;
    const dim3 grid(ceil_div(s.n * s.h * s.w, TBN), ceil_div(cg, TBM), s.groups);
    conv_bwd_data_kernel<TBM, TBN, TBK><<<grid, tile::THREADS, 0, as_stream(stream)>>>(
        s, dptr<const float>(gy), dptr<const float>(w), dptr<float>(gx));
  });
  check_launch(describe("conv2d_backward_data", s));
}

void conv2d_backward_weight(const ConvShape& s, std::uintptr_t gy, std::uintptr_t x, std::uintptr_t gw,
                            std::uintptr_t stream) {
  validate(s);
  const int ocg = s.oc / s.groups, cols = (s.c / s.groups) * s.kh * s.kw, k = s.n * s.oh * s.ow;
  cudaStream_t st = as_stream(stream);
  with_conv_tile(ocg, [&](auto bm, auto bk) {
    constexpr int TBM = decltype(bm)::value, TBK = decltype(bk)::value, TBN = 128;
    // Enough blocks for two waves; each split keeps at least 32 k tiles so atomics stay rare.
    const long long tiles = (long long)ceil_div(cols, TBN) * ceil_div(ocg, TBM) * s.groups;
    long long splits = (2LL * tile::sm_count() + tiles - 1) / tiles;
    const long long max_splits = (k + 32 * TBK - 1) / (32 * TBK);
    if (splits > max_splits) splits = max_splits;
    if (splits * s.groups > 65535) splits = 65535 / s.groups;
    if (splits < 1) splits = 1;
    const int chunk = ceil_div<int>(ceil_div<int>(k, (int)splits), TBK) * TBK;
    splits = chunk > 0 ? ceil_div<int>(k, chunk) : 1;
    if (splits < 1) splits = 1;
    if (splits > 1 || k == 0)
      CUDA_CHECK(cudaMemsetAsync(dptr<float>(gw), 0, sizeof(float) * (size_t)s.oc * cols, st));
    if (k == 0) return;
    const dim3 grid(ceil_div(cols, TBN), ceil_div(ocg, TBM), (unsigned)(splits * s.groups));
    conv_bwd_weight_kernel<TBM, TBN, TBK><<<grid, tile::THREADS, 0, st>>>(
        s, (int)splits, chunk, dptr<const float>(gy), dptr<const float>(x), dptr<float>(gw));
    check_launch(describe("conv2d_backward_weight", s) + " splits=" + std::to_string(splits));
  });
}

}  // namespace pyengine
