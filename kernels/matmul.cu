// matmul.cu — float32 C[b] = act(A[b] @ B[b] + bias), batched with arbitrary strides.
//
// Technique (v2): SGEMM in the style of a register-blocked, shared-memory tiled kernel:
// 128 x 128 x 8 block tiles, 256 threads each computing 8 x 8 outputs with FFMAs (v2: 64 x 128
// x 16 or 64 x 64 x 16 tiles when the big one would not fill every SM twice), operands
// prefetched into registers one tile ahead (double buffering: one barrier per k tile),
// 16-byte loads whenever an operand's contiguous axis, alignment and leading dimension
// allow. NN, NT, TN and TT are template instances chosen from the strides, so transposed
// views (autograd's backward, attention's K^T) are read in place. The batch stride may be
// 0 (broadcast). Arbitrary m, n, k: loads past an edge read zeros, stores are masked.
// Bias and activation are applied in the epilogue (Linear + ReLU/GELU in one kernel).
// pe.backends.cuda.matmul.allow_tf32 routes to matmul_tf32.cu instead.
//
// Measured (fill in from bench/device_check.sh, CUDA events, median, TF32 off on both sides):
//   v1 (128x128x8 only) H100 80GB HBM3, 2026-11-27: 1024^3 12.9 TFLOP/s = 0.50 x cuBLAS (26.1);
//      4096^3 37.9 TFLOP/s = 0.75 x cuBLAS (50.3). 1024^3 made only 64 blocks for 132 SMs.
//   v2 (tile chosen by SM fill), same card and day: 1024^3 20.6 TFLOP/s = 0.68 x cuBLAS (30.2);
//      4096^3 38.5 TFLOP/s = 0.75 x cuBLAS (51.5). Target 0.9 / 0.8 not met yet: next, a
//      cp.async multi-stage pipeline and 2 blocks per SM at 4096 (now 1 block, ~150 registers).
//   Same card, 2026-11-27 22:09 UTC (bench/variants/sgemm.py, cuBLAS 2.78 ms): v2 4096^3 3.57 ms
//      = 38.6 TFLOP/s = 0.78x cuBLAS; 1024^3 0.087 ms = 1.00x. v3 candidates (sgemm_variants.cu:
//      warp tiling, cp.async 3-4 stages, grouped rasterisation, 2 blocks per SM, 128x256 and
//      BK 8-32) all lost at 4096 (3.89-4.65 ms); kept ranking-only, v2 stays.
#include "common.cuh"
#include "kernels_core.h"
#include "matmul_tile.cuh"

#include <stdexcept>
#include <string>

namespace pyengine {
namespace {

template <int TBM, int TBN, int TBK, bool A_ALONG_K, bool B_ALONG_K, bool VEC, class Epi>
// (256, 1): at the default 128-register target ptxas spilled in the fused-relu instance.
__global__ void __launch_bounds__(tile::THREADS, 1)
    sgemm_kernel(int batch, int M, int N, int K, Mat a, Mat b, Epi epi) {
  const int m0 = blockIdx.y * TBM, n0 = blockIdx.x * TBN;
  for (int z = blockIdx.z; z < batch; z += gridDim.z) {
    // B (K x N) is read as its transpose (N x K): rows are B's columns.
    const tile::StridedLoader<TBM, TBK, A_ALONG_K, VEC> la(reinterpret_cast<const float*>(a.ptr) + z * a.bs, a.rs,
                                                           a.cs, M, K, m0);
    const tile::StridedLoader<TBN, TBK, B_ALONG_K, VEC> lb(reinterpret_cast<const float*>(b.ptr) + z * b.bs, b.cs,
                                                           b.rs, N, K, n0);
    Epi e = epi;
    e.c += (long long)z * M * N;
    tile::gemm_tile<TBM, TBN, TBK>(la, lb, e, m0, n0, 0, K);
  }
}

struct Problem {
  int batch, m, n, k;
  Mat a, b;
  std::uintptr_t c, bias;
  float act_param;
  cudaStream_t st;
};

template <int TBM, int TBN, int TBK, bool A_ALONG_K, bool B_ALONG_K, class Epi>
void launch_layout(bool vec, const Problem& p, const Epi& epi) {
  const dim3 grid(ceil_div(p.n, TBN), ceil_div(p.m, TBM), p.batch < 65535 ? p.batch : 65535);
  if (vec)
    sgemm_kernel<TBM, TBN, TBK, A_ALONG_K, B_ALONG_K, true>
        <<<grid, tile::THREADS, 0, p.st>>>(p.batch, p.m, p.n, p.k, p.a, p.b, epi);
  else
    sgemm_kernel<TBM, TBN, TBK, A_ALONG_K, B_ALONG_K, false>
        <<<grid, tile::THREADS, 0, p.st>>>(p.batch, p.m, p.n, p.k, p.a, p.b, epi);
}

// The fused activations are built for linear()'s layout only (x row-major, w.T column-major),
// which keeps the number of kernel instances (and the build time) down.
template <int TBM, int TBN, int TBK>
void launch_tile(bool a_k, bool b_k, bool vec, int act, const Problem& p) {
  const bool cvec = p.c % 16 == 0 && p.n % 4 == 0;
  if (a_k && b_k) {
    with_epilogue_act(act, [&](auto act_c) {
      const MatmulEpilogue<decltype(act_c)::value> epi{dptr<float>(p.c), dptr<const float>(p.bias), p.m, p.n,
                                                       p.act_param, cvec};
      launch_layout<TBM, TBN, TBK, true, true>(vec, p, epi);
    });
    return;
  }
  if (act != ACT_NONE)
    throw std::invalid_argument("matmul: a fused activation needs A row-major and B column-major (x @ w.T)");
  const MatmulEpilogue<ACT_NONE> epi{dptr<float>(p.c), dptr<const float>(p.bias), p.m, p.n, p.act_param, cvec};
  if (a_k) launch_layout<TBM, TBN, TBK, true, false>(vec, p, epi);
  else if (b_k) launch_layout<TBM, TBN, TBK, false, true>(vec, p, epi);
  else launch_layout<TBM, TBN, TBK, false, false>(vec, p, epi);
}

// Row-major (cs == 1) or column-major (rs == 1); anything else must be copied by the caller.
bool along_k_of(const Mat& x, bool is_a, const char* name) {
  const long long k_stride = is_a ? x.cs : x.rs;
  const long long other = is_a ? x.rs : x.cs;
  if (k_stride == 1) return true;
  if (other == 1) return false;
  throw std::invalid_argument(std::string("matmul: operand ") + name + " needs a unit stride on one of its "
                              "last two axes, got strides (" + std::to_string(x.rs) + ", " +
                              std::to_string(x.cs) + ")");
}

long long tiles(int batch, int m, int n, int bm, int bn) {
  return (long long)ceil_div(m, bm) * ceil_div(n, bn) * batch;
}

}  // namespace

void matmul(int batch, int m, int n, int k, Mat a, Mat b, std::uintptr_t c, std::uintptr_t bias, int act,
            float act_param, bool tf32, std::uintptr_t stream) {
  if (batch < 0 || m < 0 || n < 0 || k < 0)
    throw std::invalid_argument("matmul: negative size batch=" + std::to_string(batch) + " m=" +
                                std::to_string(m) + " n=" + std::to_string(n) + " k=" + std::to_string(k));
  check_epilogue_act(act);
  if (batch == 0 || m == 0 || n == 0) return;
  if (ceil_div(m, 64) > 65535)
    throw std::invalid_argument("matmul: m=" + std::to_string(m) + " exceeds the grid limit");
  const bool a_k = along_k_of(a, true, "A");
  const bool b_k = along_k_of(b, false, "B");
  cudaStream_t st = as_stream(stream);
  if (tf32) {
    launch_matmul_tf32(batch, m, n, k, a, b, c, bias, act, act_param, st);
    return;
  }
  const bool vec = mat_vec_ok(a) && mat_vec_ok(b);
  const Problem p{batch, m, n, k, a, b, c, bias, act_param, st};
  // The big tile when it fills every SM twice over; smaller tiles keep SMs busy otherwise.
  const long long enough = 2LL * tile::sm_count();
  const char* shape = "128x128x8";
  if (tiles(batch, m, n, 128, 128) >= enough) {
    launch_tile<128, 128, 8>(a_k, b_k, vec, act, p);
  } else if (tiles(batch, m, n, 64, 128) >= enough) {
    launch_tile<64, 128, 16>(a_k, b_k, vec, act, p);
    shape = "64x128x16";
  } else {
    launch_tile<64, 64, 16>(a_k, b_k, vec, act, p);
    shape = "64x64x16";
  }
  check_launch(std::string("sgemm ") + shape + " batch=" + std::to_string(batch) + " m=" + std::to_string(m) +
               " n=" + std::to_string(n) + " k=" + std::to_string(k) + " a_along_k=" + std::to_string(a_k) +
               " b_along_k=" + std::to_string(b_k) + " vec=" + std::to_string(vec) + " act=" + std::to_string(act));
}

}  // namespace pyengine
