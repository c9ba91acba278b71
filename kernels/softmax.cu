// softmax.cu — row softmax and log_softmax over the last dim of a (rows, cols) float32 array,
// forward y = exp(x - max) / sum and y = x - max - log(sum), and backward from the output y:
// softmax gx = y * (gy - sum(gy * y)), log_softmax gx = gy - exp(y) * sum(gy).
//
// Technique: a warp owns a row up to 1024 columns (4 rows per block), a 512-thread block
// beyond; reductions are warp shuffles (plus one shared-memory step for a block). Rows up to
// 16384 floats are held in registers (v2): every load is issued up front, the row is read
// from device memory once, and max and sum are exact two-level reductions. Longer rows stream
// twice: one pass keeps the online (max, sum of exp) pair per thread, a second writes (v1).
// When cols % 4 == 0 every row starts 16-byte aligned and threads move float4s.
// Memory-bound: the floor is 8 bytes per element (read x once, write y once) over the copy
// bandwidth; backward 12.
//
// Measured on an H100 80GB HBM3 (driver 580.159.04, 2026-11-27, bench/gpu_bench_nn.py; D2D
// copy 2948 GB/s counting read + write):
//   v1 streaming, online max+sum: 16384 x 1024 forward 0.079 ms 1709 GB/s (58% of copy),
//      backward 0.118 ms (58%); 4096 x 16384 forward 0.274 ms (67%), backward 0.448 ms (61%).
//   v2 register-cached rows (copy 2871 GB/s that run): 16384 x 1024 forward 0.064 ms 2108 GB/s
//      (73%), backward 0.092 ms (76%); 4096 x 16384 forward 0.209 ms (90%), backward 0.299 ms
//      (94%). Short rows stay under 80%: a warp per 4 KB row leaves few bytes in flight.
//   The same v2 on 2026-11-27 22:09 (bench/variants/membound.py, D2D 2886 GB/s), kernel time as
//      10 calls back to back / 10: 16384 x 1024 forward 0.048 ms (0.97 of copy), 4096 x 16384
//      0.183 ms (1.02). One call between events (as gpu_bench.py) took 0.059 ms (0.79) at
//      16384 x 1024: the gap to the numbers above is the Python wrapper's host time (~11 us:
//      moveaxis, ascontiguousarray, empty_like), not the kernel or the bytes in flight.
#include "common.cuh"
#include "kernels_nn.h"
#include "nn_rows.cuh"

#include <string>

namespace pyengine {
namespace {

template <int G, int VEC, int NV, bool LOG>
__global__ void softmax_fwd_regs(const float* __restrict__ x, float* __restrict__ y, long long rows, int cols) {
  __shared__ float scratch[group_scratch<G>()];
  const long long row = group_row<G>();
  if (row >= rows) return;  // only warp groups can be partial, and they never block-sync
  const int t = threadIdx.x % G;
  RowRegs<G, VEC, NV> r;
  r.load(x + row * cols, cols, t, -CUDART_INF_F);
  float m = -CUDART_INF_F;
#pragma unroll
  for (int k = 0; k < NV; ++k)
#pragma unroll
    for (int i = 0; i < VEC; ++i) m = fmaxf(m, r.v[k][i]);
  m = group_max<G>(m, scratch);
  float s = 0.f;
#pragma unroll
  for (int k = 0; k < NV; ++k)
#pragma unroll
    for (int i = 0; i < VEC; ++i) {
      const float e = expf(r.v[k][i] - m);  // padding holds -inf: e = 0
      s += e;
      if (!LOG) r.v[k][i] = e;
    }
  s = group_sum<G>(s, scratch);
  const float inv = 1.f / s, shift = m + logf(s);
#pragma unroll
  for (int k = 0; k < NV; ++k)
#pragma unroll
    for (int i = 0; i < VEC; ++i) r.v[k][i] = LOG ? r.v[k][i] - shift : r.v[k][i] * inv;
  r.store(y + row * cols, cols, t);
}

// Bounded to the block size: a 512-thread block must fit its registers (128 per thread).
template <int G, int VEC, int NV, bool LOG>
__global__ void __launch_bounds__(row_threads<G>())
    softmax_bwd_regs(const float* __restrict__ gy, const float* __restrict__ y, float* __restrict__ gx,
                     long long rows, int cols) {
  __shared__ float scratch[group_scratch<G>()];
  const long long row = group_row<G>();
  if (row >= rows) return;
  const int t = threadIdx.x % G;
  RowRegs<G, VEC, NV> g, o;
  g.load(gy + row * cols, cols, t, 0.f);
  o.load(y + row * cols, cols, t, 0.f);
  float dot = 0.f;  // sum(gy * y) for softmax, sum(gy) for log_softmax
#pragma unroll
  for (int k = 0; k < NV; ++k)
#pragma unroll
    for (int i = 0; i < VEC; ++i) dot += LOG ? g.v[k][i] : g.v[k][i] * o.v[k][i];
  dot = group_sum<G>(dot, scratch);
#pragma unroll
  for (int k = 0; k < NV; ++k)
#pragma unroll
    for (int i = 0; i < VEC; ++i)
      g.v[k][i] = LOG ? g.v[k][i] - expf(o.v[k][i]) * dot : o.v[k][i] * (g.v[k][i] - dot);
  g.store(gx + row * cols, cols, t);
}

// Streaming kernels (v1) for rows too long to cache: G threads per row.
template <int G, int VEC, bool LOG>
__global__ void softmax_fwd_kernel(const float* __restrict__ x, float* __restrict__ y, long long rows,
                                   int cols) {
  __shared__ float scratch[group_scratch<G>()];
  const long long row = group_row<G>();
  if (row >= rows) return;  // only warp groups can be partial, and they never block-sync
  const int t = threadIdx.x % G;
  const float* xr = x + row * cols;
  float* yr = y + row * cols;

  MaxSum acc{-CUDART_INF_F, 0.f};
  for (int c = t * VEC; c < cols; c += G * VEC) {
    float v[VEC];
    load_vec<VEC>(xr + c, v);
#pragma unroll
    for (int i = 0; i < VEC; ++i) acc = maxsum_push(acc, v[i]);
  }
  acc = group_maxsum<G>(acc, scratch);
  const float inv = 1.f / acc.s, shift = acc.m + logf(acc.s);
  for (int c = t * VEC; c < cols; c += G * VEC) {
    float v[VEC];
    load_vec<VEC>(xr + c, v);
#pragma unroll
    for (int i = 0; i < VEC; ++i) v[i] = LOG ? v[i] - shift : expf(v[i] - acc.m) * inv;
    store_vec<VEC>(yr + c, v);
  }
}

template <int G, int VEC, bool LOG>
__global__ void softmax_bwd_kernel(const float* __restrict__ gy, const float* __restrict__ y,
                                   float* __restrict__ gx, long long rows, int cols) {
  __shared__ float scratch[group_scratch<G>()];
  const long long row = group_row<G>();
  if (row >= rows) return;
  const int t = threadIdx.x % G;
  const long long off = row * cols;

  float dot = 0.f;  // sum(gy * y) for softmax, sum(gy) for log_softmax
  for (int c = t * VEC; c < cols; c += G * VEC) {
    float g[VEC], o[VEC];
    load_vec<VEC>(gy + off + c, g);
    if (!LOG) load_vec<VEC>(y + off + c, o);
#pragma unroll
    for (int i = 0; i < VEC; ++i) dot += LOG ? g[i] : g[i] * o[i];
  }
  dot = group_sum<G>(dot, scratch);
  for (int c = t * VEC; c < cols; c += G * VEC) {
    float g[VEC], o[VEC];
    load_vec<VEC>(gy + off + c, g);
    load_vec<VEC>(y + off + c, o);
#pragma unroll
    for (int i = 0; i < VEC; ++i) g[i] = LOG ? g[i] - expf(o[i]) * dot : o[i] * (g[i] - dot);
    store_vec<VEC>(gx + off + c, g);
  }
}

template <int G, int VEC>
void launch_fwd(const float* x, float* y, long long rows, int cols, bool log, cudaStream_t st) {
  const int threads = row_threads<G>();
  const long long blocks = ceil_div<long long>(rows, rows_per_block<G>());
  if (log)
    softmax_fwd_kernel<G, VEC, true><<<(unsigned)blocks, threads, 0, st>>>(x, y, rows, cols);
  else
    softmax_fwd_kernel<G, VEC, false><<<(unsigned)blocks, threads, 0, st>>>(x, y, rows, cols);
}

template <int G, int VEC>
void launch_bwd(const float* gy, const float* y, float* gx, long long rows, int cols, bool log,
                cudaStream_t st) {
  const int threads = row_threads<G>();
  const long long blocks = ceil_div<long long>(rows, rows_per_block<G>());
  if (log)
    softmax_bwd_kernel<G, VEC, true><<<(unsigned)blocks, threads, 0, st>>>(gy, y, gx, rows, cols);
  else
    softmax_bwd_kernel<G, VEC, false><<<(unsigned)blocks, threads, 0, st>>>(gy, y, gx, rows, cols);
}

std::string desc(const char* name, long long rows, int cols, bool log) {
  return std::string(name) + (log ? " (log)" : "") + " rows=" + std::to_string(rows) +
         " cols=" + std::to_string(cols);
}

}  // namespace

void softmax_forward(std::uintptr_t x, std::uintptr_t y, long long rows, int cols, bool log,
                     std::uintptr_t stream) {
  if (rows <= 0 || cols <= 0) return;
  const float* xp = dptr<const float>(x);
  float* yp = dptr<float>(y);
  const bool vec = cols % 4 == 0 && x % 16 == 0 && y % 16 == 0;
  const cudaStream_t st = as_stream(stream);
  const bool cached = dispatch_row_regs(cols, vec, [&](auto g, auto v, auto nv) {
    constexpr int G = decltype(g)::value, VEC = decltype(v)::value, NV = decltype(nv)::value;
    const unsigned blocks = (unsigned)ceil_div<long long>(rows, rows_per_block<G>());
    if (log)
      softmax_fwd_regs<G, VEC, NV, true><<<blocks, row_threads<G>(), 0, st>>>(xp, yp, rows, cols);
    else
      softmax_fwd_regs<G, VEC, NV, false><<<blocks, row_threads<G>(), 0, st>>>(xp, yp, rows, cols);
  });
  if (!cached)
    vec ? launch_fwd<kRowBlockThreads, 4>(xp, yp, rows, cols, log, st)
        : launch_fwd<kRowBlockThreads, 1>(xp, yp, rows, cols, log, st);
  check_launch(desc("softmax_forward", rows, cols, log));
}

void softmax_backward(std::uintptr_t gy, std::uintptr_t y, std::uintptr_t gx, long long rows, int cols,
                      bool log, std::uintptr_t stream) {
  if (rows <= 0 || cols <= 0) return;
  const float* gp = dptr<const float>(gy);
  const float* yp = dptr<const float>(y);
  float* gxp = dptr<float>(gx);
  const bool vec = cols % 4 == 0 && gy % 16 == 0 && y % 16 == 0 && gx % 16 == 0;
  const cudaStream_t st = as_stream(stream);
  const bool cached = dispatch_row_regs(cols, vec, [&](auto g, auto v, auto nv) {
    constexpr int G = decltype(g)::value, VEC = decltype(v)::value, NV = decltype(nv)::value;
    const unsigned blocks = (unsigned)ceil_div<long long>(rows, rows_per_block<G>());
    if (log)
      softmax_bwd_regs<G, VEC, NV, true><<<blocks, row_threads<G>(), 0, st>>>(gp, yp, gxp, rows, cols);
    else
      softmax_bwd_regs<G, VEC, NV, false><<<blocks, row_threads<G>(), 0, st>>>(gp, yp, gxp, rows, cols);
  });
  if (!cached)
    vec ? launch_bwd<kRowBlockThreads, 4>(gp, yp, gxp, rows, cols, log, st)
        : launch_bwd<kRowBlockThreads, 1>(gp, yp, gxp, rows, cols, log, st);
  check_launch(desc("softmax_backward", rows, cols, log));
}

}  // namespace pyengine
