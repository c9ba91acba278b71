// The register-blocked, double-buffered shared-memory GEMM tile shared by matmul.cu and
// conv2d.cu, and the strided-operand loader both matmul kernels use.
//
// A block computes a TBM x TBN tile of C = A (M x K) @ B (K x N). Operands come through
// loader objects, so a plain strided matrix and an implicit im2col view of an image
// (conv2d.cu) share one kernel body. Each k step, every thread fetches runs of 4
// consecutive elements of A and of B (one float4 where the operand allows it) into
// registers for the NEXT tile while the block multiplies the CURRENT tile from shared
// memory: one __syncthreads per k tile. Each thread accumulates up to 8 x 8 outputs in
// registers, in 4-wide groups 64 apart so that a warp's float4 reads of shared memory
// touch 32 distinct banks.
#pragma once
#include "activation.cuh"
#include "common.cuh"
#include "kernels_core.h"

#include <stdexcept>
#include <string>
#include <type_traits>

namespace pyengine {
namespace tile {

constexpr int THREADS = 256;

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

// Store a thread's run into a k-major tile s[TBK][ROWS] (what the FFMA tile reads).
template <class Loader, int ROWS, int TBK>
__device__ __forceinline__ void store_kmajor(float (*s)[ROWS], int pass, const float (&v)[4]) {
  using Map = RunCoords<ROWS, TBK, Loader::kAlongK>;
  const int r = Map::row(threadIdx.x, pass), k = Map::k(threadIdx.x, pass);
  if (Loader::kAlongK) {
#pragma unroll
    for (int i = 0; i < 4; ++i) s[k + i][r] = v[i];
  } else {
    *reinterpret_cast<float4*>(&s[k][r]) = make_float4(v[0], v[1], v[2], v[3]);
  }
}

// One TBM x TBN tile of C over k in [kbegin, kend) (loaders return zeros past K; a split-K
// range must start at a multiple of TBK). 256 threads in a 16 x 16 grid, each owning
// (TBM/16) x (TBN/16) outputs in 4-wide groups 64 apart. Tiles: 128x128x8 for large
// problems, 64x128x16 and 64x64x16 when the big tile would leave SMs idle (or waste rows).
// epi.store4(m, n, v) receives C[m][n..n+3] and does its own bounds checks.
template <int TBM, int TBN, int TBK, class ALoader, class BLoader, class Epi>
__device__ __forceinline__ void gemm_tile(const ALoader& a, const BLoader& b, const Epi& epi, int m0, int n0,
                                          int kbegin, int kend) {
  constexpr int TM = TBM / 16, TN = TBN / 16;
  constexpr int PA = RunCoords<TBM, TBK, ALoader::kAlongK>::kPasses;
  constexpr int PB = RunCoords<TBN, TBK, BLoader::kAlongK>::kPasses;
  static_assert(TM % 4 == 0 && TN % 4 == 0 && PA >= 1 && PB >= 1, "unsupported tile shape");
  __shared__ __align__(16) float As[2][TBK][TBM];
  __shared__ __align__(16) float Bs[2][TBK][TBN];
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;

  float va[PA][4], vb[PB][4];
#pragma unroll
  for (int p = 0; p < PA; ++p) {
    a.load(kbegin, p, va[p]);
    store_kmajor<ALoader, TBM, TBK>(As[0], p, va[p]);
  }
#pragma unroll
  for (int p = 0; p < PB; ++p) {
    b.load(kbegin, p, vb[p]);
    store_kmajor<BLoader, TBN, TBK>(Bs[0], p, vb[p]);
  }
  __syncthreads();

  float acc[TM][TN];
#pragma unroll
  for (int i = 0; i < TM; ++i)
#pragma unroll
    for (int j = 0; j < TN; ++j) acc[i][j] = 0.f;

  int buf = 0;
  for (int k0 = kbegin; k0 < kend; k0 += TBK) {
    const bool more = k0 + TBK < kend;
    if (more) {
#pragma unroll
      for (int p = 0; p < PA; ++p) a.load(k0 + TBK, p, va[p]);
#pragma unroll
      for (int p = 0; p < PB; ++p) b.load(k0 + TBK, p, vb[p]);
    }
#pragma unroll
    for (int kk = 0; kk < TBK; ++kk) {
      float ra[TM], rb[TN];
#pragma unroll
      for (int g = 0; g < TM / 4; ++g) {
        const float4 t = *reinterpret_cast<const float4*>(&As[buf][kk][g * 64 + ty * 4]);
        ra[4 * g] = t.x; ra[4 * g + 1] = t.y; ra[4 * g + 2] = t.z; ra[4 * g + 3] = t.w;
      }
#pragma unroll
      for (int g = 0; g < TN / 4; ++g) {
        const float4 t = *reinterpret_cast<const float4*>(&Bs[buf][kk][g * 64 + tx * 4]);
        rb[4 * g] = t.x; rb[4 * g + 1] = t.y; rb[4 * g + 2] = t.z; rb[4 * g + 3] = t.w;
      }
#pragma unroll
      for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(ra[i], rb[j], acc[i][j]);
    }
    if (more) {
#pragma unroll
      for (int p = 0; p < PA; ++p) store_kmajor<ALoader, TBM, TBK>(As[buf ^ 1], p, va[p]);
#pragma unroll
      for (int p = 0; p < PB; ++p) store_kmajor<BLoader, TBN, TBK>(Bs[buf ^ 1], p, vb[p]);
    }
    __syncthreads();
    buf ^= 1;
  }

#pragma unroll
  for (int i = 0; i < TM; ++i) {
    const int m = m0 + (i / 4) * 64 + ty * 4 + i % 4;
#pragma unroll
    for (int g = 0; g < TN / 4; ++g) epi.store4(m, n0 + g * 64 + tx * 4, &acc[i][4 * g]);
  }
}

// Number of SMs of the current device (read once).
inline int sm_count() {
  static const int count = device_attribute(cudaDevAttrMultiProcessorCount);
  return count;
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

// The activations the GEMM epilogue fuses; checked before any CUDA call.
inline void check_epilogue_act(int act) {
  if (act != ACT_NONE && act != ACT_RELU && act != ACT_GELU && act != ACT_GELU_TANH)
    throw std::invalid_argument("matmul: the fused epilogue supports none, relu, gelu and gelu_tanh, got code " +
                                std::to_string(act));
}

// Calls f(std::integral_constant<int, ACT>) for the fused activation `act`.
template <class F>
void with_epilogue_act(int act, F&& f) {
  check_epilogue_act(act);
  switch (act) {
    case ACT_RELU: return f(std::integral_constant<int, ACT_RELU>());
    case ACT_GELU: return f(std::integral_constant<int, ACT_GELU>());
    case ACT_GELU_TANH: return f(std::integral_constant<int, ACT_GELU_TANH>());
    default: return f(std::integral_constant<int, ACT_NONE>());
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
