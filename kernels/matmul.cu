// matmul.cu — float32 C[b] = act(A[b] @ B[b] + bias), batched with arbitrary strides.
//
// Technique (v1): SGEMM in the style of a register-blocked, shared-memory tiled kernel:
// 128 x 128 x 8 block tiles, 256 threads each computing 8 x 8 outputs with FFMAs, operands
// prefetched into registers one tile ahead (double buffering: one barrier per k tile),
// 16-byte loads whenever an operand's contiguous axis, alignment and leading dimension
// allow. NN, NT, TN and TT are template instances chosen from the strides, so transposed
// views (autograd's backward, attention's K^T) are read in place. The batch stride may be
// 0 (broadcast). Arbitrary m, n, k: loads past an edge read zeros, stores are masked.
// Bias and activation are applied in the epilogue (Linear + ReLU/GELU in one kernel).
// pe.backends.cuda.matmul.allow_tf32 routes to matmul_tf32.cu instead.
//
// Measured (fill in from bench/device_check.sh, CUDA events, median, TF32 off on both sides):
//   v1 1024^3: ___ GFLOP/s = ___ x cuBLAS;  4096^3: ___ GFLOP/s = ___ x cuBLAS.  card: ___  date: ___
#include "common.cuh"
#include "kernels_core.h"
#include "matmul_tile.cuh"

#include <stdexcept>
#include <string>

namespace pyengine {
namespace {

using tile::BM;
using tile::BN;
using tile::BK;

template <bool A_ALONG_K, bool B_ALONG_K, bool VEC, class Epi>
// (256, 1): at the default 128-register target ptxas spilled in the fused-relu instance.
__global__ void __launch_bounds__(tile::THREADS, 1)
    sgemm_kernel(int batch, int M, int N, int K, Mat a, Mat b, Epi epi) {
  const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
  for (int z = blockIdx.z; z < batch; z += gridDim.z) {
    // B (K x N) is read as its transpose (N x K): rows are B's columns.
    const tile::StridedLoader<BM, BK, A_ALONG_K, VEC> la(reinterpret_cast<const float*>(a.ptr) + z * a.bs, a.rs, a.cs, M, K,
                                                         m0);
    const tile::StridedLoader<BN, BK, B_ALONG_K, VEC> lb(reinterpret_cast<const float*>(b.ptr) + z * b.bs, b.cs, b.rs, N, K,
                                                         n0);
    Epi e = epi;
    e.c += (long long)z * M * N;
    tile::gemm_tile(la, lb, e, m0, n0, 0, K);
  }
}

template <bool A_ALONG_K, bool B_ALONG_K, class Epi>
void launch_sgemm(bool vec, dim3 grid, cudaStream_t st, int batch, int m, int n, int k, const Mat& a, const Mat& b,
                  const Epi& epi) {
  if (vec)
    sgemm_kernel<A_ALONG_K, B_ALONG_K, true><<<grid, tile::THREADS, 0, st>>>(batch, m, n, k, a, b, epi);
  else
    sgemm_kernel<A_ALONG_K, B_ALONG_K, false><<<grid, tile::THREADS, 0, st>>>(batch, m, n, k, a, b, epi);
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

}  // namespace

void matmul(int batch, int m, int n, int k, Mat a, Mat b, std::uintptr_t c, std::uintptr_t bias, int act,
            float act_param, bool tf32, std::uintptr_t stream) {
  if (batch < 0 || m < 0 || n < 0 || k < 0)
    throw std::invalid_argument("matmul: negative size batch=" + std::to_string(batch) + " m=" +
                                std::to_string(m) + " n=" + std::to_string(n) + " k=" + std::to_string(k));
  if (batch == 0 || m == 0 || n == 0) return;
  const bool a_k = along_k_of(a, true, "A");
  const bool b_k = along_k_of(b, false, "B");
  cudaStream_t st = as_stream(stream);
  if (tf32) {
    launch_matmul_tf32(batch, m, n, k, a, b, c, bias, act, act_param, st);
    return;
  }
  const bool vec = mat_vec_ok(a) && mat_vec_ok(b);
  dim3 grid(ceil_div(n, BN), ceil_div(m, BM), batch < 65535 ? batch : 65535);
  if (grid.y > 65535)
    throw std::invalid_argument("matmul: m=" + std::to_string(m) + " exceeds the grid limit");
  with_epilogue_act(act, [&](auto act_c) {
    const MatmulEpilogue<decltype(act_c)::value> epi{dptr<float>(c), dptr<const float>(bias), m, n, act_param,
                                                     c % 16 == 0 && n % 4 == 0};
    if (a_k && b_k) launch_sgemm<true, true>(vec, grid, st, batch, m, n, k, a, b, epi);
    else if (a_k) launch_sgemm<true, false>(vec, grid, st, batch, m, n, k, a, b, epi);
    else if (b_k) launch_sgemm<false, true>(vec, grid, st, batch, m, n, k, a, b, epi);
    else launch_sgemm<false, false>(vec, grid, st, batch, m, n, k, a, b, epi);
  });
  check_launch("sgemm batch=" + std::to_string(batch) + " m=" + std::to_string(m) + " n=" + std::to_string(n) +
               " k=" + std::to_string(k) + " a_along_k=" + std::to_string(a_k) +
               " b_along_k=" + std::to_string(b_k) + " vec=" + std::to_string(vec));
}

}  // namespace pyengine
