// matmul_tf32.cu — C[b] = act(A[b] @ B[b] + bias) on the tensor cores in TF32
// (10-bit mantissa inputs, float32 accumulation), used when
// pe.backends.cuda.matmul.allow_tf32 is True (off by default, as in PyTorch).
//
// Technique (v2): mma.sync.m16n8k8 (sm_80+, runs on sm_90 too). 128 x 128 x 16 block
// tiles, 8 warps in a 2 x 4 grid, each warp owning 64 x 32 of C as 4 x 4 mma tiles
// (64 float32 accumulators per thread). Operands are rounded to TF32 (cvt.rna) once, when
// stored to shared memory, in k-contiguous rows padded to 20 floats so the fragment reads
// (8 rows x 4 columns per warp) hit 32 distinct banks; v2 reads the fragments with ldmatrix.x4
// (one instruction per 16 x 8 A fragment or pair of B fragments instead of four loads). Global loads reuse matmul's strided
// loader (16-byte where the layout allows), prefetched one tile ahead into registers.
// Not yet: wgmma (sm_90a) and a cp.async/TMA pipeline.
//
// Measured (fill in from bench/device_check.sh; ratio to cuBLAS with TF32 on):
//   v1 (scalar fragment loads) H100 80GB HBM3, 2026-11-27: 1024^3 15.9 TFLOP/s = 0.34 x cuBLAS
//      TF32 (47.3); 4096^3 52.9 TFLOP/s = 0.16 x cuBLAS TF32 (340).
//   v2 (ldmatrix), same card and day: 1024^3 20.1 TFLOP/s = 0.30 x cuBLAS TF32 (67.6);
//      4096^3 55.5 TFLOP/s = 0.15 x cuBLAS TF32 (381): fragment loads were not the limit.
//      Far from the 0.75 target: one 8-warp block per SM (161 registers) and a barrier every
//      32 mma per warp leave the global-load latency exposed. Next: cp.async 3-stage pipeline
//      straight into shared memory (frees the staging registers: 2 blocks/SM), BK = 32,
//      then wgmma on sm_90a.
#include "common.cuh"
#include "kernels_core.h"
#include "matmul_tile.cuh"

#include <string>

namespace pyengine {
namespace {

constexpr int TBM = 128, TBN = 128, TBK = 16, PITCH = TBK + 4, THREADS = 256;

__device__ __forceinline__ float to_tf32(float x) {
  unsigned r;
  asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
  return __uint_as_float(r);
}

__device__ __forceinline__ void mma_tf32(float (&c)[4], const unsigned (&a)[4], const unsigned (&b)[2]) {
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

// Four 8 x 8 b16 (= 8 x 4 float) blocks of shared memory, one row address per lane.
__device__ __forceinline__ void ldmatrix_x4(unsigned (&r)[4], const float* row) {
  const unsigned addr = static_cast<unsigned>(__cvta_generic_to_shared(row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

// A run of 4 into a k-contiguous tile s[ROWS][PITCH], rounded to TF32.
template <class Loader, int ROWS>
__device__ __forceinline__ void store_rowmajor(float (*s)[PITCH], int pass, const float (&v)[4]) {
  using Map = tile::RunCoords<ROWS, TBK, Loader::kAlongK>;
  const int r = Map::row(threadIdx.x, pass), k = Map::k(threadIdx.x, pass);
  if (Loader::kAlongK) {
    *reinterpret_cast<float4*>(&s[r][k]) = make_float4(to_tf32(v[0]), to_tf32(v[1]), to_tf32(v[2]), to_tf32(v[3]));
  } else {
#pragma unroll
    for (int i = 0; i < 4; ++i) s[r + i][k] = to_tf32(v[i]);
  }
}

template <bool A_ALONG_K, bool B_ALONG_K, bool VEC, class Epi>
// (256, 1): at the default 128-register target ptxas spilled in two instances.
__global__ void __launch_bounds__(THREADS, 1)
    tf32_gemm_kernel(int batch, int M, int N, int K, Mat a, Mat b, Epi epi) {
  using LA = tile::StridedLoader<TBM, TBK, A_ALONG_K, VEC>;
  using LB = tile::StridedLoader<TBN, TBK, B_ALONG_K, VEC>;
  static_assert(tile::RunCoords<TBM, TBK, true>::kPasses == 2, "two runs per thread per operand");
  __shared__ __align__(16) float As[2][TBM][PITCH];
  __shared__ __align__(16) float Bs[2][TBN][PITCH];

  const int m0 = blockIdx.y * TBM, n0 = blockIdx.x * TBN;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int wm = warp / 4, wn = warp % 4, g = lane / 4, t = lane % 4;

  for (int z = blockIdx.z; z < batch; z += gridDim.z) {
    const LA la(reinterpret_cast<const float*>(a.ptr) + z * a.bs, a.rs, a.cs, M, K, m0);
    const LB lb(reinterpret_cast<const float*>(b.ptr) + z * b.bs, b.cs, b.rs, N, K, n0);
    Epi e = epi;
    e.c += (long long)z * M * N;

    float va[2][4], vb[2][4];
#pragma unroll
    for (int p = 0; p < 2; ++p) {
      la.load(0, p, va[p]);
      lb.load(0, p, vb[p]);
      store_rowmajor<LA, TBM>(As[0], p, va[p]);
      store_rowmajor<LB, TBN>(Bs[0], p, vb[p]);
    }
    __syncthreads();

    float acc[4][4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j)
#pragma unroll
        for (int q = 0; q < 4; ++q) acc[i][j][q] = 0.f;

    int buf = 0;
    for (int k0 = 0; k0 < K; k0 += TBK) {
      const bool more = k0 + TBK < K;
      if (more) {
#pragma unroll
        for (int p = 0; p < 2; ++p) {
          la.load(k0 + TBK, p, va[p]);
          lb.load(k0 + TBK, p, vb[p]);
        }
      }
#pragma unroll
      for (int kk = 0; kk < TBK; kk += 8) {
        unsigned fa[4][4], fb[4][2];
        // ldmatrix hands each lane word (lane % 4) of row (lane / 4) of four 8 x 4-float
        // blocks: exactly the (g, t) layout of the tf32 A and B fragments.
#pragma unroll
        for (int mt = 0; mt < 4; ++mt)
          ldmatrix_x4(fa[mt], &As[buf][wm * 64 + mt * 16 + lane % 8 + (lane / 8) % 2 * 8][kk + lane / 16 * 4]);
#pragma unroll
        for (int np = 0; np < 2; ++np) {
          unsigned r[4];
          ldmatrix_x4(r, &Bs[buf][wn * 32 + np * 16 + lane % 8 + lane / 16 * 8][kk + (lane / 8) % 2 * 4]);
          fb[2 * np][0] = r[0];
          fb[2 * np][1] = r[1];
          fb[2 * np + 1][0] = r[2];
          fb[2 * np + 1][1] = r[3];
        }
#pragma unroll
        for (int mt = 0; mt < 4; ++mt)
#pragma unroll
          for (int nt = 0; nt < 4; ++nt) mma_tf32(acc[mt][nt], fa[mt], fb[nt]);
      }
      if (more) {
#pragma unroll
        for (int p = 0; p < 2; ++p) {
          store_rowmajor<LA, TBM>(As[buf ^ 1], p, va[p]);
          store_rowmajor<LB, TBN>(Bs[buf ^ 1], p, vb[p]);
        }
      }
      __syncthreads();
      buf ^= 1;
    }

#pragma unroll
    for (int mt = 0; mt < 4; ++mt)
#pragma unroll
      for (int nt = 0; nt < 4; ++nt) {
        const int r = m0 + wm * 64 + mt * 16 + g;
        const int col = n0 + wn * 32 + nt * 8 + 2 * t;
        e.store1(r, col, acc[mt][nt][0]);
        e.store1(r, col + 1, acc[mt][nt][1]);
        e.store1(r + 8, col, acc[mt][nt][2]);
        e.store1(r + 8, col + 1, acc[mt][nt][3]);
      }
    // The next batch item refills the shared tiles: wait until everyone is done reading.
    __syncthreads();
  }
}

template <bool A_ALONG_K, bool B_ALONG_K, class Epi>
void launch(bool vec, dim3 grid, cudaStream_t st, int batch, int m, int n, int k, const Mat& a, const Mat& b,
            const Epi& epi) {
  if (vec)
    tf32_gemm_kernel<A_ALONG_K, B_ALONG_K, true><<<grid, THREADS, 0, st>>>(batch, m, n, k, a, b, epi);
  else
    tf32_gemm_kernel<A_ALONG_K, B_ALONG_K, false><<<grid, THREADS, 0, st>>>(batch, m, n, k, a, b, epi);
}


}  // namespace

void launch_matmul_tf32(int batch, int m, int n, int k, const Mat& a, const Mat& b, std::uintptr_t c,
                        std::uintptr_t bias, int act, float act_param, cudaStream_t st) {
  const bool a_k = a.cs == 1, b_k = b.rs == 1;
  const bool vec = mat_vec_ok(a) && mat_vec_ok(b);
  dim3 grid(ceil_div(n, TBN), ceil_div(m, TBM), batch < 65535 ? batch : 65535);
  with_epilogue_act(act, [&](auto act_c) {
    const MatmulEpilogue<decltype(act_c)::value> epi{dptr<float>(c), dptr<const float>(bias), m, n, act_param, false};
    if (a_k && b_k) launch<true, true>(vec, grid, st, batch, m, n, k, a, b, epi);
    else if (a_k) launch<true, false>(vec, grid, st, batch, m, n, k, a, b, epi);
    else if (b_k) launch<false, true>(vec, grid, st, batch, m, n, k, a, b, epi);
    else launch<false, false>(vec, grid, st, batch, m, n, k, a, b, epi);
  });
  check_launch("tf32_gemm batch=" + std::to_string(batch) + " m=" + std::to_string(m) + " n=" +
               std::to_string(n) + " k=" + std::to_string(k) + " a_along_k=" + std::to_string(a_k) +
               " b_along_k=" + std::to_string(b_k) + " vec=" + std::to_string(vec));
}

}  // namespace pyengine
