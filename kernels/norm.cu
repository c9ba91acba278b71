// norm.cu — layer norm over the last dim of x (rows, d), float32:
//   forward  y = (x - mean) * rstd * w + b,  rstd = 1 / sqrt(var + eps) (biased var), saving
//            mean and rstd per row;
//   backward gx = rstd * (g - mean(g) - xhat * mean(g * xhat)) with g = gy * w, and
//            gw = sum_rows(gy * xhat), gb = sum_rows(gy).
//
// Technique: a warp per row up to 1024 columns (4 rows per block), a 512-thread block beyond,
// with warp-shuffle reductions. Rows up to 16384 floats are held in registers (v2, float4
// when d % 4 == 0), so x (and gy) are read from device memory once; longer rows stream
// through loops (v1). Mean and variance take two sweeps (over the registers, or the row
// again) rather than E[x^2] - E[x]^2, which cancels catastrophically when |mean| >> std. gw/gb are column sums over all rows: stage one gives
// each block a 32-column strip of a chunk of rows (threads stride down the rows, then add up
// through shared memory) and writes one partial row per chunk; stage two adds the partials
// per column. No float atomics, so the result is deterministic.
//
// Measured on an H100 80GB HBM3 (driver 580.159.04, 2026-11-27, bench/gpu_bench_nn.py; D2D
// copy 2948 GB/s counting read + write; backward counts gy, x read and gx written):
//   v1 streaming: 16384 x 1024 forward 0.098 ms (47% of copy), backward (input + params)
//      0.190 ms (36%); 4096 x 16384 forward 0.325 ms (56%), backward 0.661 ms (41%).
//   v2 register-cached rows (copy 2871 GB/s that run): 16384 x 1024 forward 0.082 ms (57%),
//      backward 0.155 ms (45%); 4096 x 16384 forward 0.218 ms (86%), backward 0.505 ms (55%).
//      The backward's gw/gb stage re-reads gy and x column-wise: the next lead is to fold
//      it into the row kernel's pass (per-block partial sums).
//   kernel_version 2 of the backward (layer_norm_backward_fused, the default for d <= 16384 with
//      a weight): a resident grid of row groups computes gx and keeps each column's running sums
//      of gy * xhat and gy in registers (in shared memory past 4096 columns), one partial row per
//      block, then a small column sum: gy and x are read once. kernel_version 1 (the v2 input
//      kernel + two-stage column reduction above) stays for d > 16384, for no weight, and for
//      pyengine._C.set_kernel_version("layer_norm_backward", 1).
//   2026-11-27 22:09, bench/variants/membound.py (D2D 2886 GB/s; kernel time = 10 calls back to
//      back / 10; the one-call time adds the wrapper's ~15-20 us): backward version 1 -> 2:
//      16384 x 1024 0.134 -> 0.090 ms (0.52 -> 0.78 of copy), 4096 x 16384 0.470 -> 0.348 ms
//      (0.59 -> 0.80), 65536 x 256 0.152 -> 0.085 ms (0.46 -> 0.82), 1000 x 1001 0.033 ->
//      0.030 ms. Forward (unchanged): 16384 x 1024 0.053 ms (0.88; one call 0.068 ms, 0.68),
//      4096 x 16384 0.188 ms (0.99).
#include "common.cuh"
#include "kernels_nn.h"
#include "nn_rows.cuh"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace pyengine {
namespace {

template <int G, int VEC, int NV>
__global__ void ln_fwd_regs(const float* __restrict__ x, const float* __restrict__ w, const float* __restrict__ b,
                            float* __restrict__ y, float* __restrict__ mean, float* __restrict__ rstd,
                            long long rows, int d, float eps) {
  __shared__ float scratch[group_scratch<G>()];
  const long long row = group_row<G>();
  if (row >= rows) return;  // only warp groups can be partial, and they never block-sync
  const int t = threadIdx.x % G;
  RowRegs<G, VEC, NV> r;
  r.load(x + row * d, d, t, 0.f);
  float s = 0.f;
#pragma unroll
  for (int k = 0; k < NV; ++k)
#pragma unroll
    for (int i = 0; i < VEC; ++i) s += r.v[k][i];
  const float mu = group_sum<G>(s, scratch) / d;
  float q = 0.f;
#pragma unroll
  for (int k = 0; k < NV; ++k)
    if (r.col(t, k) < d)  // padding is not part of the row
#pragma unroll
      for (int i = 0; i < VEC; ++i) q += (r.v[k][i] - mu) * (r.v[k][i] - mu);
  const float rs = 1.f / sqrtf(group_sum<G>(q, scratch) / d + eps);
#pragma unroll
  for (int k = 0; k < NV; ++k) {
    const int c = r.col(t, k);
    if (c >= d) continue;
    float wv[VEC], bv[VEC];
    if (w) load_vec<VEC>(w + c, wv);
    if (b) load_vec<VEC>(b + c, bv);
#pragma unroll
    for (int i = 0; i < VEC; ++i) r.v[k][i] = (r.v[k][i] - mu) * rs * (w ? wv[i] : 1.f) + (b ? bv[i] : 0.f);
  }
  r.store(y + row * d, d, t);
  if (t == 0) {
    mean[row] = mu;
    rstd[row] = rs;
  }
}

// Bounded to the block size: a 512-thread block must fit its registers (128 per thread).
template <int G, int VEC, int NV>
__global__ void __launch_bounds__(row_threads<G>())
    ln_bwd_input_regs(const float* __restrict__ gy, const float* __restrict__ x, const float* __restrict__ w,
                      const float* __restrict__ mean, const float* __restrict__ rstd, float* __restrict__ gx,
                      long long rows, int d) {
  __shared__ float scratch[group_scratch<G>()];
  const long long row = group_row<G>();
  if (row >= rows) return;
  const int t = threadIdx.x % G;
  const float mu = mean[row], rs = rstd[row];
  RowRegs<G, VEC, NV> g, xh;
  g.load(gy + row * d, d, t, 0.f);  // zero padding adds nothing to either sum
  xh.load(x + row * d, d, t, 0.f);
  float sg = 0.f, sgx = 0.f;
#pragma unroll
  for (int k = 0; k < NV; ++k) {
    float wv[VEC];
    if (w && g.col(t, k) < d) load_vec<VEC>(w + g.col(t, k), wv);
#pragma unroll
    for (int i = 0; i < VEC; ++i) {
      if (w) g.v[k][i] = g.col(t, k) < d ? __fmul_rn(g.v[k][i], wv[i]) : 0.f;
      xh.v[k][i] = (xh.v[k][i] - mu) * rs;
      sg += g.v[k][i];
      sgx += g.v[k][i] * xh.v[k][i];
    }
  }
  sg = group_sum<G>(sg, scratch) / d;
  sgx = group_sum<G>(sgx, scratch) / d;
#pragma unroll
  for (int k = 0; k < NV; ++k)
#pragma unroll
    for (int i = 0; i < VEC; ++i) g.v[k][i] = rs * (g.v[k][i] - sg - xh.v[k][i] * sgx);
  g.store(gx + row * d, d, t);
}

// Streaming kernels (v1) for rows too long to cache: G threads per row.
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

// ---- Version 2 (kernel_version 2): the whole backward in one pass over gy and x ----

// Each group (a warp, or the 512-thread block) walks rows r, r + stride, ... of a grid sized
// to stay resident, computes gx as ln_bwd_input_regs does, and keeps its columns' running sums
// of gy * xhat and gy in registers; the block then writes them as one partial row
// (a block's warps add theirs through shared memory in warp order: deterministic), and
// ln_params_sum adds the partial rows per column. gy and x are read once, where version 1's
// ln_params_partial_kernel read both again column-wise.
// Whether a thread's running sums (2 * NV * VEC floats) stay in registers beside its share of
// the two rows; past that (a block per row over 4096 columns) they live in shared memory,
// (2, d) floats, each column touched only by the thread that owns it (no barrier, no atomics).
template <int G, int VEC, int NV>
constexpr bool sums_in_regs() { return G == 32 ? NV * VEC <= 32 : NV * VEC <= 8; }

template <int G, int VEC, int NV>
__global__ void __launch_bounds__(row_threads<G>(), sums_in_regs<G, VEC, NV>() && G != 32 ? 2 : 1)
    ln_bwd_fused(const float* __restrict__ gy, const float* __restrict__ x, const float* __restrict__ w,
                 const float* __restrict__ mean, const float* __restrict__ rstd, float* __restrict__ gx,
                 float* __restrict__ partial, long long rows, int d) {
  __shared__ float scratch[group_scratch<G>()];
  __shared__ float sums[G == 32 ? 2 * kRowWarpMaxCols : 1];
  extern __shared__ float sums_big[];  // (2, d) when !sums_in_regs
  constexpr bool kRegs = sums_in_regs<G, VEC, NV>();
  const int t = threadIdx.x % G;
  float aw[NV][VEC] = {}, ab[NV][VEC] = {};
  if constexpr (!kRegs) {
#pragma unroll
    for (int k = 0; k < NV; ++k)
#pragma unroll
      for (int i = 0; i < VEC; ++i) {
        const int c = RowRegs<G, VEC, NV>::col(t, k) + i;
        if (c < d) sums_big[c] = sums_big[d + c] = 0.f;
      }
  }
  for (long long row = group_row<G>(); row < rows; row += (long long)gridDim.x * rows_per_block<G>()) {
    const float mu = mean[row], rs = rstd[row];
    RowRegs<G, VEC, NV> g, xh;
    g.load(gy + row * d, d, t, 0.f);  // zero padding adds nothing to any sum
    xh.load(x + row * d, d, t, 0.f);
    float sg = 0.f, sgx = 0.f;
#pragma unroll
    for (int k = 0; k < NV; ++k) {
      float wv[VEC];
      if (w && g.col(t, k) < d) load_vec<VEC>(w + g.col(t, k), wv);
#pragma unroll
      for (int i = 0; i < VEC; ++i) {
        xh.v[k][i] = (xh.v[k][i] - mu) * rs;
        if constexpr (kRegs) {
          aw[k][i] += g.v[k][i] * xh.v[k][i];
          ab[k][i] += g.v[k][i];
        } else if (g.col(t, k) < d) {
          sums_big[g.col(t, k) + i] += g.v[k][i] * xh.v[k][i];
          sums_big[d + g.col(t, k) + i] += g.v[k][i];
        }
        if (w) g.v[k][i] = g.col(t, k) < d ? __fmul_rn(g.v[k][i], wv[i]) : 0.f;
        sg += g.v[k][i];
        sgx += g.v[k][i] * xh.v[k][i];
      }
    }
    sg = group_sum<G>(sg, scratch) / d;
    sgx = group_sum<G>(sgx, scratch) / d;
#pragma unroll
    for (int k = 0; k < NV; ++k)
#pragma unroll
      for (int i = 0; i < VEC; ++i) g.v[k][i] = rs * (g.v[k][i] - sg - xh.v[k][i] * sgx);
    g.store(gx + row * d, d, t);
  }
  float* out = partial + blockIdx.x * 2LL * d;
  if constexpr (G == 32) {
    const int warp = threadIdx.x / 32;
    for (int wi = 0; wi < kRowWarpsPerBlock; ++wi) {
      if (warp == wi) {
#pragma unroll
        for (int k = 0; k < NV; ++k)
#pragma unroll
          for (int i = 0; i < VEC; ++i) {
            const int c = RowRegs<G, VEC, NV>::col(t, k) + i;
            if (c < d) {
              sums[c] = wi ? sums[c] + aw[k][i] : aw[k][i];
              sums[d + c] = wi ? sums[d + c] + ab[k][i] : ab[k][i];
            }
          }
      }
      __syncthreads();
    }
    for (int c = threadIdx.x; c < 2 * d; c += blockDim.x) out[c] = sums[c];
  } else {
#pragma unroll
    for (int k = 0; k < NV; ++k)
#pragma unroll
      for (int i = 0; i < VEC; ++i) {
        const int c = RowRegs<G, VEC, NV>::col(t, k) + i;
        if (c < d) {
          out[c] = kRegs ? aw[k][i] : sums_big[c];
          out[d + c] = kRegs ? ab[k][i] : sums_big[d + c];
        }
      }
  }
}

// gw, gb from `chunks` partial rows: a block (32 columns, kSumThreadsY) strides down the
// chunks, then adds its kSumThreadsY sums in a fixed order (v1's final kernel walked every
// chunk with one thread per column).
constexpr int kSumThreadsY = 16;

__global__ void ln_params_sum(const float* __restrict__ partial, float* __restrict__ gw, float* __restrict__ gb,
                              int chunks, int d) {
  __shared__ float sw[kSumThreadsY][kColStrip + 1], sb[kSumThreadsY][kColStrip + 1];
  const int col = blockIdx.x * kColStrip + threadIdx.x;
  float aw = 0.f, ab = 0.f;
  if (col < d)
    for (int i = threadIdx.y; i < chunks; i += kSumThreadsY) {
      aw += partial[i * 2LL * d + col];
      ab += partial[i * 2LL * d + d + col];
    }
  sw[threadIdx.y][threadIdx.x] = aw;
  sb[threadIdx.y][threadIdx.x] = ab;
  __syncthreads();
  if (threadIdx.y == 0 && col < d) {
    for (int i = 1; i < kSumThreadsY; ++i) {
      aw += sw[i][threadIdx.x];
      ab += sb[i][threadIdx.x];
    }
    gw[col] = aw;
    gb[col] = ab;
  }
}

// The fused kernel takes the rows the register-cached kernels take.
constexpr int kFusedMaxCols = 32 * kRowBlockThreads;

int sm_count() {
  static const int sms = device_attribute_or(cudaDevAttrMultiProcessorCount, 132);
  return sms;
}

// The caller's scratch bounds the fused grid at this many blocks per SM; the launch takes
// what the kernel's occupancy allows (one resident wave), at most that.
constexpr int kFusedMaxBlocksPerSm = 16;

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
  const bool vec = d % 4 == 0 && x % 16 == 0 && weight % 16 == 0 && bias % 16 == 0 && y % 16 == 0;
  const bool cached = dispatch_row_regs(d, vec, [&](auto g, auto v, auto nv) {
    constexpr int G = decltype(g)::value, VEC = decltype(v)::value, NV = decltype(nv)::value;
    ln_fwd_regs<G, VEC, NV><<<row_blocks<G>(rows), row_threads<G>(), 0, st>>>(
        xp, wp, bp, dptr<float>(y), dptr<float>(mean), dptr<float>(rstd), rows, d, eps);
  });
  if (!cached)
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
  const bool vec = d % 4 == 0 && gy % 16 == 0 && x % 16 == 0 && weight % 16 == 0 && gx % 16 == 0;
  const bool cached = dispatch_row_regs(d, vec, [&](auto gc, auto v, auto nv) {
    constexpr int G = decltype(gc)::value, VEC = decltype(v)::value, NV = decltype(nv)::value;
    ln_bwd_input_regs<G, VEC, NV><<<row_blocks<G>(rows), row_threads<G>(), 0, st>>>(
        g, xp, wp, mp, rp, dptr<float>(gx), rows, d);
  });
  if (!cached)
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

namespace pyengine {

int layer_norm_fused_partial_rows(long long rows, int d) {
  if (rows <= 0 || d <= 0 || d > kFusedMaxCols || kernel_version("layer_norm_backward") != 2) return 0;
  const long long blocks = d <= kRowWarpMaxCols ? row_blocks<32>(rows) : row_blocks<kRowBlockThreads>(rows);
  return static_cast<int>(std::min<long long>(blocks, (long long)sm_count() * kFusedMaxBlocksPerSm));
}

void layer_norm_backward_fused(std::uintptr_t gy, std::uintptr_t x, std::uintptr_t weight,
                               std::uintptr_t mean, std::uintptr_t rstd, std::uintptr_t gx,
                               std::uintptr_t partial, std::uintptr_t gw, std::uintptr_t gb, long long rows,
                               int d, std::uintptr_t stream) {
  const int cap = layer_norm_fused_partial_rows(rows, d);
  if (cap == 0)
    throw std::invalid_argument("layer_norm_backward_fused: not available for" + desc("", rows, d) +
                                " (layer_norm_fused_partial_rows is 0): use the two-kernel path");
  const cudaStream_t st = as_stream(stream);
  const bool vec = d % 4 == 0 && gy % 16 == 0 && x % 16 == 0 && weight % 16 == 0 && gx % 16 == 0;
  int blocks = cap;
  dispatch_row_regs(d, vec, [&](auto gc, auto v, auto nv) {
    constexpr int G = decltype(gc)::value, VEC = decltype(v)::value, NV = decltype(nv)::value;
    {
      const int smem = sums_in_regs<G, VEC, NV>() ? 0 : 2 * d * (int)sizeof(float);
      if (smem > 0)  // the static scratch counts too: opt in at 48 KB of dynamic already
        CUDA_CHECK(cudaFuncSetAttribute(ln_bwd_fused<G, VEC, NV>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
      int per_sm = 0;
      CUDA_CHECK(
          cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, ln_bwd_fused<G, VEC, NV>, row_threads<G>(), smem));
      blocks = std::max(1, std::min(cap, per_sm * sm_count()));
      ln_bwd_fused<G, VEC, NV><<<blocks, row_threads<G>(), smem, st>>>(
          dptr<const float>(gy), dptr<const float>(x), dptr<const float>(weight), dptr<const float>(mean),
          dptr<const float>(rstd), dptr<float>(gx), dptr<float>(partial), rows, d);
    }
  });
  check_launch(desc("layer_norm_backward_fused", rows, d));
  ln_params_sum<<<ceil_div(d, kColStrip), dim3(kColStrip, kSumThreadsY), 0, st>>>(
      dptr<const float>(partial), dptr<float>(gw), dptr<float>(gb), blocks, d);
  check_launch(desc("layer_norm_backward_fused (sum)", rows, d));
}

}  // namespace pyengine
