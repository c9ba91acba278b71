// matmul_tf32_mma.cuh — the multi-stage TF32 tensor-core GEMM (v3 of matmul_tf32.cu).
//
// A block computes a BM x BN tile of C[z] = A[z] (M x K) @ B[z] (K x N) with (BM/WM) x (BN/WN)
// warps, each owning WM x WN of C as (WM/16) x (WN/8) mma.sync.m16n8k8 tiles (fp32
// accumulators in registers). Operands go global -> shared with cp.async (16-byte .cg copies
// when the operand is 16-byte aligned with a leading dimension that is a multiple of 4,
// zero-filled past the edges; 4-byte copies otherwise) into a STAGES-deep ring of BK = 32
// tiles: one barrier per k tile, the copies of tile kt + STAGES - 1 in flight while tile kt is
// multiplied. Each operand keeps its global layout in shared memory (K-major or row-major, see
// matmul_tf32_layout.h for the swizzles and fragment maps), so NN, NT, TN and TT all use 16-byte
// copies. Config::ROUND: fragments rounded to TF32 (cvt.rna) in registers, as the v2 kernel
// rounded them on the way into shared memory; the default's tiles do not round (the tensor
// cores truncate; 20-35% faster, see matmul_tf32.cu's measurements). Epilogue: bias, activation, float4 stores where C allows.
#pragma once
#include "common.cuh"
#include "cp_async.cuh"
#include "kernels_core.h"
#include "matmul_tf32_layout.h"
#include "matmul_tile.cuh"

namespace pyengine {
namespace tf32mma {

// ROUND: fragments rounded to nearest TF32 (cvt.rna: four instructions a register, about as
// many as the mma themselves); else the float32 bits go to the mma as they are and the tensor
// cores ignore the low 13 bits (truncation, as CUTLASS's round_toward_zero tf32 conversion).
template <int BM_, int BN_, int WM_, int WN_, int STAGES_, int MIN_BLOCKS_, bool ROUND_ = true>
struct Config {
  static constexpr int BM = BM_, BN = BN_, WM = WM_, WN = WN_, STAGES = STAGES_, MIN_BLOCKS = MIN_BLOCKS_;
  static constexpr bool ROUND = ROUND_;
  static constexpr int WARPS_N = BN / WN;
  static constexpr int THREADS = (BM / WM) * WARPS_N * 32;
  static constexpr int MT = WM / 16, NT = WN / 8;
  static constexpr int A_TILE = BM * BK, B_TILE = BN * BK;  // floats per stage
  static constexpr int SMEM_BYTES = STAGES * (A_TILE + B_TILE) * 4;
  static_assert(WM % 32 == 0 && WN % 32 == 0, "warp tiles are multiples of 32 x 32 (the fragment maps)");
  static_assert(BM % WM == 0 && BN % WN == 0, "block tile is a grid of warp tiles");
  static_assert(BM * BK / 4 % THREADS == 0 && BN * BK / 4 % THREADS == 0, "whole chunks per thread");
  static_assert(THREADS % (BM / 4) == 0 && THREADS % (BN / 4) == 0, "row-major chunk map");
  static_assert(STAGES >= 2, "a pipeline needs two stages");
};

// smem_addr and the cp.async copies (cp_async16 / cp_async4 / commit / wait): cp_async.cuh.

template <bool ROUND>
__device__ __forceinline__ unsigned to_tf32(unsigned x) {
  if (!ROUND) return x;
  unsigned r;
  asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(__uint_as_float(x)));
  return r;
}

__device__ __forceinline__ void ldmatrix_x4(unsigned (&r)[4], const float* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(row)));
}

__device__ __forceinline__ void mma(float (&c)[4], const unsigned (&a)[4], const unsigned (&b)[2]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#else
  __trap();
#endif
}

// Copies one BK tile of an operand into shared memory (TileCopyMap says what goes where).
// VEC: p is 16-byte aligned and lead % 4 == 0, so every chunk is one 16-byte copy (a partial
// one at an edge: cp.async zero-fills past its source size); else 4-byte copies.
template <int ROWS, int THREADS, bool KMAJOR, bool VEC>
struct TileCopy {
  TileCopyMap<ROWS, THREADS, KMAJOR> map;
  const float* p;

  __device__ void load(float* tile, int k0) const {
    const float* src = p + map.src(k0, 0);
#pragma unroll
    for (int i = 0; i < map.CHUNKS; ++i, src += map.step()) {
      const int n = map.n(k0, i);
      float* dst = tile + map.dst(i);
      if (VEC) {
        cp_async16(dst, n > 0 ? src : p, 4 * n);
      } else {
#pragma unroll
        for (int e = 0; e < 4; ++e) cp_async4(dst + e, e < n ? src + e : p, e < n ? 4 : 0);
      }
    }
  }
};

// Fragments of k step kk (0, 8, 16, 24) for this warp's rows of A or columns of B; `lane_tile`
// is the tile's stage base plus the warp base plus the lane's part (see the fast forms in
// matmul_tf32_layout.h), x the lane's swizzle term (K-major only).
template <int MT, int ROWS, bool KMAJOR>
__device__ __forceinline__ void load_a(unsigned (&fa)[MT][4], const float* lane_tile, int x, int kk) {
  if (KMAJOR) {
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) ldmatrix_x4(fa[mt], lane_tile + a_ldm_tile(mt) + (x ^ kk));
  } else {
#pragma unroll
    for (int hi = 0; hi < 2; ++hi)
#pragma unroll
      for (int half = 0; half < MT / 2; ++half) {
        const float4 v = *reinterpret_cast<const float4*>(lane_tile + (kk + 4 * hi) * ROWS + 32 * half);
        fa[2 * half][2 * hi] = __float_as_uint(v.x);
        fa[2 * half][2 * hi + 1] = __float_as_uint(v.y);
        fa[2 * half + 1][2 * hi] = __float_as_uint(v.z);
        fa[2 * half + 1][2 * hi + 1] = __float_as_uint(v.w);
      }
  }
}

template <int NT, int ROWS, bool KMAJOR>
__device__ __forceinline__ void load_b(unsigned (&fb)[NT][2], const float* lane_tile, int x, int kk) {
  if (KMAJOR) {
#pragma unroll
    for (int p = 0; p < NT / 2; ++p) {
      unsigned r[4];
      ldmatrix_x4(r, lane_tile + b_ldm_tile(p) + (x ^ kk));
      fb[2 * p][0] = r[0];
      fb[2 * p][1] = r[1];
      fb[2 * p + 1][0] = r[2];
      fb[2 * p + 1][1] = r[3];
    }
  } else {
#pragma unroll
    for (int hi = 0; hi < 2; ++hi)
#pragma unroll
      for (int half = 0; half < NT / 4; ++half) {
        const float4 v = *reinterpret_cast<const float4*>(lane_tile + (kk + 4 * hi) * ROWS + 32 * half);
        fb[4 * half][hi] = __float_as_uint(v.x);
        fb[4 * half + 1][hi] = __float_as_uint(v.y);
        fb[4 * half + 2][hi] = __float_as_uint(v.z);
        fb[4 * half + 3][hi] = __float_as_uint(v.w);
      }
  }
}

// C[z] = act(A[z] @ B[z] + bias). A_K: A's k stride is 1 (else its row stride is); B_K: B's k
// stride is 1 (else its column stride is). VEC: both operands allow 16-byte copies.
template <class Cfg, bool A_K, bool B_K, bool VEC, class Epi>
__global__ void __launch_bounds__(Cfg::THREADS, Cfg::MIN_BLOCKS)
    gemm_kernel(int batch, int M, int N, int K, Mat a, Mat b, Epi epi) {
  constexpr int MT = Cfg::MT, NT = Cfg::NT, STAGES = Cfg::STAGES;
  extern __shared__ __align__(16) float smem[];
  float* const As = smem;
  float* const Bs = smem + STAGES * Cfg::A_TILE;

  int tm, tn;
  block_tile(blockIdx.y * gridDim.x + blockIdx.x, gridDim.y, gridDim.x, &tm, &tn);
  const int m0 = tm * Cfg::BM, n0 = tn * Cfg::BN;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int wrow = (warp / Cfg::WARPS_N) * Cfg::WM, wcol = (warp % Cfg::WARPS_N) * Cfg::WN;
  const int ktiles = (K + BK - 1) / BK;
  const long long a_lead = A_K ? a.rs : a.cs, b_lead = B_K ? b.cs : b.rs;
  // Per-lane parts of the fragment offsets (matmul_tf32_layout.h, fast forms).
  const int a_lane = A_K ? wrow * BK + a_ldm_lane(lane) : wrow + rm_lane(Cfg::BM, lane);
  const int b_lane = B_K ? wcol * BK + b_ldm_lane(lane) : wcol + rm_lane(Cfg::BN, lane);
  const int a_x = a_ldm_x(lane), b_x = b_ldm_x(lane);

  for (int z = blockIdx.z; z < batch; z += gridDim.z) {
    const float* pa = reinterpret_cast<const float*>(a.ptr) + z * a.bs + (A_K ? m0 * a_lead : m0);
    const float* pb = reinterpret_cast<const float*>(b.ptr) + z * b.bs + (B_K ? n0 * b_lead : n0);
    const TileCopy<Cfg::BM, Cfg::THREADS, A_K, VEC> ca{{(int)threadIdx.x, a_lead, M - m0, K}, pa};
    const TileCopy<Cfg::BN, Cfg::THREADS, B_K, VEC> cb{{(int)threadIdx.x, b_lead, N - n0, K}, pb};

#pragma unroll
    for (int s = 0; s < STAGES - 1; ++s) {
      if (s < ktiles) {
        ca.load(As + s * Cfg::A_TILE, s * BK);
        cb.load(Bs + s * Cfg::B_TILE, s * BK);
      }
      cp_async_commit();
    }

    float acc[MT][NT][4];
#pragma unroll
    for (int i = 0; i < MT; ++i)
#pragma unroll
      for (int j = 0; j < NT; ++j)
#pragma unroll
        for (int q = 0; q < 4; ++q) acc[i][j][q] = 0.f;

    for (int kt = 0; kt < ktiles; ++kt) {
      // Tile kt has landed (this thread's copies) and everyone's copies are visible; everyone
      // is also done with tile kt - 1, whose stage the next copy overwrites.
      cp_async_wait<STAGES - 2>();
      __syncthreads();
      const int next = kt + STAGES - 1;
      if (next < ktiles) {
        ca.load(As + (next % STAGES) * Cfg::A_TILE, next * BK);
        cb.load(Bs + (next % STAGES) * Cfg::B_TILE, next * BK);
      }
      cp_async_commit();

      const float* as = As + (kt % STAGES) * Cfg::A_TILE + a_lane;
      const float* bs = Bs + (kt % STAGES) * Cfg::B_TILE + b_lane;
#pragma unroll
      for (int kk = 0; kk < BK; kk += 8) {
        unsigned fa[MT][4], fb[NT][2];
        load_a<MT, Cfg::BM, A_K>(fa, as, a_x, kk);
        load_b<NT, Cfg::BN, B_K>(fb, bs, b_x, kk);
#pragma unroll
        for (int i = 0; i < MT; ++i)
#pragma unroll
          for (int q = 0; q < 4; ++q) fa[i][q] = to_tf32<Cfg::ROUND>(fa[i][q]);
#pragma unroll
        for (int j = 0; j < NT; ++j)
#pragma unroll
          for (int q = 0; q < 2; ++q) fb[j][q] = to_tf32<Cfg::ROUND>(fb[j][q]);
#pragma unroll
        for (int i = 0; i < MT; ++i)
#pragma unroll
          for (int j = 0; j < NT; ++j) mma(acc[i][j], fa[i], fb[j]);
      }
    }

    Epi e = epi;
    e.c += (long long)z * M * N;
    const int g = lane >> 2, t = lane & 3;
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int row = m0 + wrow + a_row(mt, h, g);
#pragma unroll
        for (int half = 0; half < NT / 4; ++half)
#pragma unroll
          for (int eo = 0; eo < 2; ++eo) {
            const float v[4] = {acc[mt][4 * half][2 * h + eo], acc[mt][4 * half + 1][2 * h + eo],
                                acc[mt][4 * half + 2][2 * h + eo], acc[mt][4 * half + 3][2 * h + eo]};
            e.store4(row, n0 + wcol + epi_col(half, t, eo), v);
          }
      }
    // The next batch item's first copies overwrite stages other warps may still be reading.
    __syncthreads();
  }
}

}  // namespace tf32mma
}  // namespace pyengine
