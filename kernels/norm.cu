// norm.cu — layer norm over the last dim of x (rows, d), float32:
//   forward  y = (x - mean) * rstd * w + b,  rstd = 1 / sqrt(var + eps) (biased var), saving
//            mean and rstd per row;
//   backward gx = rstd * (g - mean(g) - xhat * mean(g * xhat)) with g = gy * w, and
//            gw = sum_rows(gy * xhat), gb = sum_rows(gy).
//
// Technique: a warp per row up to 1024 columns (4 rows per block), a 512-thread block beyond,
// with warp-shuffle reductions. The forward takes mean and variance in two sweeps over the
// row (the second reads it back from L1/L2) rather than E[x^2] - E[x]^2, which cancels
// catastrophically when |mean| >> std. gw/gb are column sums over all rows: stage one gives
// each block a 32-column strip of a chunk of rows (threads stride down the rows, then add up
// through shared memory) and writes one partial row per chunk; stage two adds the partials
// per column. No float atomics, so the result is deterministic.
//
// Measured (fill in from bench/device_check.sh; ceiling = measured D2D copy bandwidth):
//   v1 rows x d = 16384 x 1024: forward ___ GB/s (___% of copy, 8 bytes/element),
//   backward input ___ GB/s, params ___ GB/s.   card: ___  date: ___
#include "common.cuh"
#include "kernels_nn.h"
#include "nn_rows.cuh"

#include <algorithm>
#include <string>

namespace pyengine {
namespace {

template <int G>
__global__ void ln_fwd_kernel(const float* __restrict__ x, const float* __restrict__ w,
                              const float* __restrict__ b, float* __restrict__ y, float* __restrict__ mean,
                              float* __restrict__ rstd, long long rows, int d, float eps) {
  __shared__ float scratch[group_scratch<G>()];
  const long long row = group_row<G>();
  if (row >= rows) return;  // only warp groups can be partial, and they never block-sync
  const int t = threadIdx.x % G;
  const float* xr = x + row * d;
  float* yr = y + row * d;

  float s = 0.f;
  for (int c = t; c < d; c += G) s += xr[c];
  const float mu = group_sum<G>(s, scratch) / d;
  float q = 0.f;
  for (int c = t; c < d; c += G) {
    const float v = xr[c] - mu;
    q += v * v;
  }
  const float r = 1.f / sqrtf(group_sum<G>(q, scratch) / d + eps);
  for (int c = t; c < d; c += G) {
    float v = (xr[c] - mu) * r;
    if (w) v *= w[c];
    if (b) v += b[c];
    yr[c] = v;
  }
  if (t == 0) {
    mean[row] = mu;
    rstd[row] = r;
  }
}

template <int G>
__global__ void ln_bwd_input_kernel(const float* __restrict__ gy, const float* __restrict__ x,
                                    const float* __restrict__ w, const float* __restrict__ mean,
                                    const float* __restrict__ rstd, float* __restrict__ gx, long long rows,
                                    int d) {
  __shared__ float scratch[group_scratch<G>()];
  const long long row = group_row<G>();
  if (row >= rows) return;
  const int t = threadIdx.x % G;
  const long long off = row * d;
  const float mu = mean[row], r = rstd[row];

  float sg = 0.f, sgx = 0.f;  // sum(g), sum(g * xhat)
  for (int c = t; c < d; c += G) {
    const float g = w ? __fmul_rn(gy[off + c], w[c]) : gy[off + c];
    sg += g;
    sgx += g * (x[off + c] - mu) * r;
  }
  sg = group_sum<G>(sg, scratch) / d;
  sgx = group_sum<G>(sgx, scratch) / d;
  for (int c = t; c < d; c += G) {
    const float g = w ? __fmul_rn(gy[off + c], w[c]) : gy[off + c];
    const float xhat = (x[off + c] - mu) * r;
    gx[off + c] = r * (g - sg - xhat * sgx);
  }
}

// Stage one of gw/gb: block (32, 8) sums a 32-column strip over one chunk of rows.
constexpr int kColStrip = 32, kColThreadsY = 8, kRowsPerChunk = 128, kMaxChunks = 512;

__global__ void ln_params_partial_kernel(const float* __restrict__ gy, const float* __restrict__ x,
                                         const float* __restrict__ mean, const float* __restrict__ rstd,
                                         float* __restrict__ partial, long long rows, int d,
                                         long long chunk_rows) {
  __shared__ float sw[kColThreadsY][kColStrip + 1], sb[kColThreadsY][kColStrip + 1];
  const int col = blockIdx.x * kColStrip + threadIdx.x;
  const long long r0 = blockIdx.y * chunk_rows;
  const long long r1 = r0 + chunk_rows < rows ? r0 + chunk_rows : rows;
  float aw = 0.f, ab = 0.f;
  if (col < d) {
    for (long long r = r0 + threadIdx.y; r < r1; r += kColThreadsY) {
      const float g = gy[r * d + col];
      aw += g * (x[r * d + col] - mean[r]) * rstd[r];
      ab += g;
    }
  }
  sw[threadIdx.y][threadIdx.x] = aw;
  sb[threadIdx.y][threadIdx.x] = ab;
  __syncthreads();
  if (threadIdx.y == 0 && col < d) {
#pragma unroll
    for (int i = 1; i < kColThreadsY; ++i) {
      aw += sw[i][threadIdx.x];
      ab += sb[i][threadIdx.x];
    }
    partial[blockIdx.y * 2LL * d + col] = aw;
    partial[blockIdx.y * 2LL * d + d + col] = ab;
  }
}

// Stage two: one thread per column adds the chunks' partial rows in a fixed order.
__global__ void ln_params_final_kernel(const float* __restrict__ partial, float* __restrict__ gw,
                                       float* __restrict__ gb, int chunks, int d) {
  const int col = blockIdx.x * blockDim.x + threadIdx.x;
  if (col >= d) return;
  float aw = 0.f, ab = 0.f;
  for (int i = 0; i < chunks; ++i) {
    aw += partial[i * 2LL * d + col];
    ab += partial[i * 2LL * d + d + col];
  }
  gw[col] = aw;
  gb[col] = ab;
}

std::string desc(const char* name, long long rows, int d) {
  return std::string(name) + " rows=" + std::to_string(rows) + " d=" + std::to_string(d);
}

template <int G>
unsigned row_blocks(long long rows) { return (unsigned)ceil_div<long long>(rows, rows_per_block<G>()); }

long long chunk_rows_for(long long rows) {
  return std::max<long long>(kRowsPerChunk, ceil_div<long long>(rows, kMaxChunks));
}

}  // namespace

void layer_norm_forward(std::uintptr_t x, std::uintptr_t weight, std::uintptr_t bias, std::uintptr_t y,
                        std::uintptr_t mean, std::uintptr_t rstd, long long rows, int d, float eps,
                        std::uintptr_t stream) {
  if (rows <= 0 || d <= 0) return;
  const cudaStream_t st = as_stream(stream);
  auto xp = dptr<const float>(x);
  auto wp = dptr<const float>(weight);
  auto bp = dptr<const float>(bias);
  if (d <= kRowWarpMaxCols)
    ln_fwd_kernel<32><<<row_blocks<32>(rows), row_threads<32>(), 0, st>>>(
        xp, wp, bp, dptr<float>(y), dptr<float>(mean), dptr<float>(rstd), rows, d, eps);
  else
    ln_fwd_kernel<kRowBlockThreads><<<row_blocks<kRowBlockThreads>(rows), kRowBlockThreads, 0, st>>>(
        xp, wp, bp, dptr<float>(y), dptr<float>(mean), dptr<float>(rstd), rows, d, eps);
  check_launch(desc("layer_norm_forward", rows, d));
}

void layer_norm_backward_input(std::uintptr_t gy, std::uintptr_t x, std::uintptr_t weight,
                               std::uintptr_t mean, std::uintptr_t rstd, std::uintptr_t gx, long long rows,
                               int d, std::uintptr_t stream) {
  if (rows <= 0 || d <= 0) return;
  const cudaStream_t st = as_stream(stream);
  auto g = dptr<const float>(gy);
  auto xp = dptr<const float>(x);
  auto wp = dptr<const float>(weight);
  auto mp = dptr<const float>(mean);
  auto rp = dptr<const float>(rstd);
  if (d <= kRowWarpMaxCols)
    ln_bwd_input_kernel<32><<<row_blocks<32>(rows), row_threads<32>(), 0, st>>>(
        g, xp, wp, mp, rp, dptr<float>(gx), rows, d);
  else
    ln_bwd_input_kernel<kRowBlockThreads><<<row_blocks<kRowBlockThreads>(rows), kRowBlockThreads, 0, st>>>(
        g, xp, wp, mp, rp, dptr<float>(gx), rows, d);
  check_launch(desc("layer_norm_backward_input", rows, d));
}

int layer_norm_partial_rows(long long rows) {
  return static_cast<int>(ceil_div<long long>(std::max<long long>(rows, 1), chunk_rows_for(rows)));
}

void layer_norm_backward_params(std::uintptr_t gy, std::uintptr_t x, std::uintptr_t mean,
                                std::uintptr_t rstd, std::uintptr_t partial, std::uintptr_t gw,
                                std::uintptr_t gb, long long rows, int d, std::uintptr_t stream) {
  if (d <= 0) return;
  const cudaStream_t st = as_stream(stream);
  const int chunks = layer_norm_partial_rows(rows);
  const dim3 grid(ceil_div(d, kColStrip), chunks), block(kColStrip, kColThreadsY);
  ln_params_partial_kernel<<<grid, block, 0, st>>>(dptr<const float>(gy), dptr<const float>(x),
                                                   dptr<const float>(mean), dptr<const float>(rstd),
                                                   dptr<float>(partial), rows, d, chunk_rows_for(rows));
  check_launch(desc("layer_norm_backward_params (partial)", rows, d));
  ln_params_final_kernel<<<ceil_div(d, 256), 256, 0, st>>>(dptr<const float>(partial), dptr<float>(gw),
                                                           dptr<float>(gb), chunks, d);
  check_launch(desc("layer_norm_backward_params (final)", rows, d));
}

}  // namespace pyengine
