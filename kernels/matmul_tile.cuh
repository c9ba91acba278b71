// The register-blocked, double-buffered shared-memory GEMM tile shared by matmul.cu and
// conv2d.cu, and the strided-operand loader both matmul kernels use.
//
// A block computes a BM x BN tile of C = A (M x K) @ B (K x N). Operands come through
// loader objects, so a plain strided matrix and an implicit im2col view of an image
// (conv2d.cu) share one kernel body. Each k step, every thread fetches 4 consecutive
// elements of A and 4 of B (one float4 where the operand allows it) into registers for
// the NEXT tile while the block multiplies the CURRENT tile from shared memory: one
// __syncthreads per k tile. Each thread accumulates an 8 x 8 piece of C in registers,
// split in two 4-wide halves 64 apart so that a warp's float4 reads of shared memory touch
// 32 distinct banks.
#pragma once
#include "activation.cuh"
#include "common.cuh"
#include "kernels_core.h"

#include <stdexcept>
#include <string>
#include <type_traits>

namespace pyengine {
namespace tile {

constexpr int BM = 128, BN = 128, BK = 8, THREADS = 256;

// Where a thread's 4-element run sits in a tile of `rows` x bk: a run along k covers
// k..k+3 of one row; a run along the rows covers rows r..r+3 at one k. `pass` selects the
// next slab when a tile needs more than one run per thread (bk > 8).
template <int ROWS, int TBK, bool ALONG_K>
struct RunCoords {
  static constexpr int kPerRow = TBK / 4;                 // runs per row when along k
  static constexpr int kRowsPerPass = THREADS / kPerRow;  // along k
  static constexpr int kRunsPerK = ROWS / 4;              // runs per k when along rows
  static constexpr int kKPerPass = THREADS / kRunsPerK;   // along rows
  static constexpr int kPasses = ROWS * TBK / (4 * THREADS);
  __device__ static int row(int tid, int pass) {
    return ALONG_K ? tid / kPerRow + pass * kRowsPerPass : (tid % kRunsPerK) * 4;
  }
  __device__ static int k(int tid, int pass) {
    return ALONG_K ? (tid % kPerRow) * 4 : tid / kRunsPerK + pass * kKPerPass;
  }
};

// A strided (rows x K) operand: element (r, k) at p[r*rs + k*ks], with ks == 1 (ALONG_K:
// runs go along k) or rs == 1 (runs go along the rows). B (K x N) is passed as its transpose
// (N x K). VEC: the pointer is 16-byte aligned and the non-unit stride a multiple of 4, so an
// in-bounds run is one float4 load.
template <int ROWS, int TBK, bool ALONG_K, bool VEC>
struct StridedLoader {
  using Map = RunCoords<ROWS, TBK, ALONG_K>;
  static constexpr bool kAlongK = ALONG_K;
  const float* q;   // this thread's first element (row r0, k offset kofs)
  long long lead;   // the non-unit stride
  int rows_left;    // rows - r0: how many rows from this thread's first row are in bounds
  int k_left;       // K - kofs: load(k0) is in bounds while k0 (+ i) < k_left

  __device__ StridedLoader(const float* base, long long rs, long long ks, int rows, int K, int tile_r0) {
    const int r0 = tile_r0 + Map::row(threadIdx.x, 0), kofs = Map::k(threadIdx.x, 0);
    lead = ALONG_K ? rs : ks;
    q = base + (ALONG_K ? r0 * rs + kofs : kofs * ks + r0);
    rows_left = rows - r0;
    k_left = K - kofs;
  }

  __device__ void load(int k0, int pass, float (&v)[4]) const {
    if (ALONG_K) {
      const int dr = pass * Map::kRowsPerPass;
      const float* p = q + dr * lead + k0;
      if (dr >= rows_left) {
        v[0] = v[1] = v[2] = v[3] = 0.f;
      } else if (VEC && k0 + 3 < k_left) {
        const float4 t = *reinterpret_cast<const float4*>(p);
        v[0] = t.x; v[1] = t.y; v[2] = t.z; v[3] = t.w;
      } else {
#pragma unroll
        for (int i = 0; i < 4; ++i) v[i] = k0 + i < k_left ? p[i] : 0.f;
      }
    } else {
      const int k = k0 + pass * Map::kKPerPass;
      const float* p = q + k * lead;
      if (k >= k_left) {
        v[0] = v[1] = v[2] = v[3] = 0.f;
      } else if (VEC && 3 < rows_left) {
        const float4 t = *reinterpret_cast<const float4*>(p);
        v[0] = t.x; v[1] = t.y; v[2] = t.z; v[3] = t.w;
      } else {
#pragma unroll
        for (int i = 0; i < 4; ++i) v[i] = i < rows_left ? p[i] : 0.f;
      }
    }
  }
};

// Store a thread's run into a k-major tile s[BK][ROWS] (what the FFMA tile reads).
template <class Loader, int ROWS>
__device__ __forceinline__ void store_kmajor(float (*s)[ROWS], const float (&v)[4]) {
  using Map = RunCoords<ROWS, BK, Loader::kAlongK>;
  const int r = Map::row(threadIdx.x, 0), k = Map::k(threadIdx.x, 0);
  if (Loader::kAlongK) {
#pragma unroll
    for (int i = 0; i < 4; ++i) s[k + i][r] = v[i];
  } else {
    *reinterpret_cast<float4*>(&s[k][r]) = make_float4(v[0], v[1], v[2], v[3]);
  }
}

// One BM x BN tile of C over k in [kbegin, kend) (kbegin a multiple of BK; loaders return
// zeros past K). epi.store4(m, n, v) receives C[m][n..n+3] and does its own bounds checks.
template <class ALoader, class BLoader, class Epi>
__device__ __forceinline__ void gemm_tile(const ALoader& a, const BLoader& b, const Epi& epi, int m0, int n0,
                                          int kbegin, int kend) {
  __shared__ __align__(16) float As[2][BK][BM];
  __shared__ __align__(16) float Bs[2][BK][BN];
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;

  float va[4], vb[4];
  a.load(kbegin, 0, va);
  b.load(kbegin, 0, vb);
  store_kmajor<ALoader, BM>(As[0], va);
  store_kmajor<BLoader, BN>(Bs[0], vb);
  __syncthreads();

  float acc[8][8];
#pragma unroll
  for (int i = 0; i < 8; ++i)
#pragma unroll
    for (int j = 0; j < 8; ++j) acc[i][j] = 0.f;

  int buf = 0;
  for (int k0 = kbegin; k0 < kend; k0 += BK) {
    const bool more = k0 + BK < kend;
    if (more) {
      a.load(k0 + BK, 0, va);
      b.load(k0 + BK, 0, vb);
    }
#pragma unroll
    for (int kk = 0; kk < BK; ++kk) {
      float ra[8], rb[8];
      const float4 a0 = *reinterpret_cast<const float4*>(&As[buf][kk][ty * 4]);
      const float4 a1 = *reinterpret_cast<const float4*>(&As[buf][kk][64 + ty * 4]);
      const float4 b0 = *reinterpret_cast<const float4*>(&Bs[buf][kk][tx * 4]);
      const float4 b1 = *reinterpret_cast<const float4*>(&Bs[buf][kk][64 + tx * 4]);
      ra[0] = a0.x; ra[1] = a0.y; ra[2] = a0.z; ra[3] = a0.w;
      ra[4] = a1.x; ra[5] = a1.y; ra[6] = a1.z; ra[7] = a1.w;
      rb[0] = b0.x; rb[1] = b0.y; rb[2] = b0.z; rb[3] = b0.w;
      rb[4] = b1.x; rb[5] = b1.y; rb[6] = b1.z; rb[7] = b1.w;
#pragma unroll
      for (int i = 0; i < 8; ++i)
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[i][j] = fmaf(ra[i], rb[j], acc[i][j]);
    }
    if (more) {
      store_kmajor<ALoader, BM>(As[buf ^ 1], va);
      store_kmajor<BLoader, BN>(Bs[buf ^ 1], vb);
    }
    __syncthreads();
    buf ^= 1;
  }

#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const int m = m0 + (i < 4 ? ty * 4 + i : 64 + ty * 4 + i - 4);
    epi.store4(m, n0 + tx * 4, acc[i]);
    epi.store4(m, n0 + 64 + tx * 4, acc[i] + 4);
  }
}

}  // namespace tile

// C = act(A @ B + bias) written to a contiguous (M x N) matrix; shared by both matmul kernels.
// ACT is a template argument: a run-time switch over every activation in the epilogue costs
// the main loop registers (ptxas spilled), so only the fused set linear() uses is built.
template <int ACT>
struct MatmulEpilogue {
  float* c;
  const float* bias;
  int M, N;
  float param;
  bool vec;  // c 16-byte aligned and N % 4 == 0: in-bounds 4-runs are one float4 store

  __device__ float finish(float v, int n) const {
    if (bias) v += bias[n];
    return ACT == ACT_NONE ? v : act_forward(ACT, v, param);
  }
  __device__ void store1(int m, int n, float v) const {
    if (m < M && n < N) c[(long long)m * N + n] = finish(v, n);
  }
  __device__ void store4(int m, int n, const float* v) const {
    if (m >= M) return;
    if (vec && n + 3 < N) {
      *reinterpret_cast<float4*>(c + (long long)m * N + n) =
          make_float4(finish(v[0], n), finish(v[1], n + 1), finish(v[2], n + 2), finish(v[3], n + 3));
    } else {
#pragma unroll
      for (int j = 0; j < 4; ++j)
        if (n + j < N) c[(long long)m * N + n + j] = finish(v[j], n + j);
    }
  }
};

// Calls f(std::integral_constant<int, ACT>) for the activations the GEMM epilogue fuses.
template <class F>
void with_epilogue_act(int act, F&& f) {
  switch (act) {
    case ACT_NONE: return f(std::integral_constant<int, ACT_NONE>());
    case ACT_RELU: return f(std::integral_constant<int, ACT_RELU>());
    case ACT_GELU: return f(std::integral_constant<int, ACT_GELU>());
    case ACT_GELU_TANH: return f(std::integral_constant<int, ACT_GELU_TANH>());
    default:
      throw std::invalid_argument("matmul: the fused epilogue supports none, relu, gelu and gelu_tanh, got code " +
                                  std::to_string(act));
  }
}

// 16-byte operand loads need an aligned base and non-unit strides that keep every run aligned.
inline bool mat_vec_ok(const Mat& x) {
  const long long lead = x.rs == 1 ? x.cs : x.rs;
  return x.ptr % 16 == 0 && lead % 4 == 0 && x.bs % 4 == 0;
}

// The TF32 tensor-core kernel's launcher (matmul_tf32.cu), called by matmul() in matmul.cu.
void launch_matmul_tf32(int batch, int m, int n, int k, const Mat& a, const Mat& b, std::uintptr_t c,
                        std::uintptr_t bias, int act, float act_param, cudaStream_t stream);

}  // namespace pyengine
