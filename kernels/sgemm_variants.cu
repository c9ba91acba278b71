// sgemm_variants.cu — candidate float32 GEMM kernels (FFMA, never TF32), selectable at run
// time by sgemm_variant() so that one GPU run ranks them against matmul.cu's kernel
// (bench/variants/sgemm.py). None beat it (below), so they are ranking-only: built only with
// PYENGINE_KERNEL_VARIANTS=ON; without it sgemm_variant runs version 0 (matmul) only.
// C[b] = A[b] @ B[b], A row-major (along k); B row-major (NN) or column-major (NT, x @ w.T);
// other layouts run matmul() whatever the variant.
//
// Technique: warp tiling with a cp.async multi-stage pipeline. A block of 256 threads (8
// warps, 4 x 2) computes BM x BN; a warp owns a (4 TM) x (8 TN) sub-tile, its lanes a 4 x 8
// grid, each lane TM x TN outputs. Operands go global -> shared by cp.async (no registers),
// STAGES k tiles in flight, one barrier per k tile. A operand stored along k (row-major A,
// column-major B) sits in shared memory as [rows][BK + 4] and is read as float4 along k (4 k
// steps per load): a lane's rows are r * 4 + ly (and g * 16 on top), so the 4 rows a warp
// reads at once are consecutive rows, 16 bytes apart mod 128 — no bank conflicts. B stored
// along n sits as [BK][BN] and is read as float4 along n: a warp reads 8 consecutive float4.
// Per k step and warp: TM / 4 + TN / 4 conflict-free 128-bit loads for TM * TN FFMAs (matmul.cu
// v2: 6 wavefronts for 64). Blocks are rasterised in groups of 8 tile rows so concurrently
// running blocks share A and B panels in L2. Edges: cp.async zero-fills what lies outside
// (src-size 0..16 bytes), 4-byte copies when an operand is not 16-byte aligned.
//
// Candidates (BM x BN x BK, per-lane TM x TN, stages, min blocks per SM):
//   1: 128x128x8,  8x8,  3, 1     2: 128x128x16, 8x8,  3, 1     3: 128x128x16, 8x8, 4, 1
//   4: 128x256x8,  8x16, 3, 1     5: 128x128x8,  8x8,  4, 1     6: 128x64x16,  8x4, 3, 2
//   7: 128x128x8,  8x8,  3, 2, k loop not unrolled   8: 128x128x16, 8x8, 3, 2, not unrolled
//   9: 128x128x8,  8x8,  3, 1, not unrolled             10: 128x128x32, 8x8, 3, 1, not unrolled
// ptxas registers per thread, NN / NT (no spills unless said), sm_90: 1 205/194, 2 219/254,
// 3 221/254, 4 235/246, 5 217/198, 6 123/128 (24-byte spill), 7 and 8 127/128 (NT spills 324
// bytes), 9 and 10 168/202; sm_80: 1 201/200, 2 201/254, 3 194/254, 4 241/250, 5 194/206,
// 6 128/128 (20/68-byte spills), 7 and 8 128/128 (932/348-byte spills), 9 and 10 164/226.
// Unrolled, the 2-block bound on 128x128x8 spilled 880 bytes on sm_90.
// Measured on an H100 80GB HBM3 (2026-11-27 22:09 UTC, bench/variants/sgemm.py, CUDA events,
// median; cuBLAS fp32 through CuPy 2.78 ms at 4096^3 = 49.4 TFLOP/s, 0.087 ms at 1024^3), ms at
// 4096^3 NN / NT / 1024^3 NN: 0 (matmul.cu v2) 3.57 / 3.66 / 0.087 (0.78x cuBLAS);
// 1 4.16 / 4.38 / 0.145; 2 4.01 / 3.97 / 0.140; 3 3.95 / 3.92 / 0.135; 4 4.22 / 3.77 / 0.278;
// 5 4.02 / 4.37 / 0.140; 6 4.05 / 4.19 / 0.088; 7 4.00 / 4.58 / 0.164; 8 3.89 / 4.39 / 0.157;
// 9 4.65 / 4.90 / 0.161; 10 4.05 / 4.09 / 0.141. Every candidate matched cuBLAS bit for bit at
// 4096 (one FFMA chain per output in k order, as cuBLAS). Why they lose is not measured yet (no
// profiler run); suspects: the k-contiguous A tile costs 32 fragment registers (200+ in all,
// one block per SM like v2) and the cp.async issue per 4-float run.
#include "common.cuh"
#include "cp_async.cuh"
#include "kernels_core.h"
#include "kernels_variants.h"
#include "matmul_tile.cuh"

#include <stdexcept>
#include <string>
#include <vector>

namespace pyengine {
namespace {

const std::vector<std::string>& names() {
  static const std::vector<std::string> n = {
      "v2 register prefetch (default)", "async 128x128x8 8x8 s3",  "async 128x128x16 8x8 s3",
      "async 128x128x16 8x8 s4",        "async 128x256x8 8x16 s3", "async 128x128x8 8x8 s4",
      "async 128x64x16 8x4 s3 2blk",    "async 128x128x8 8x8 s3 2blk u1", "async 128x128x16 8x8 s3 2blk u1",
      "async 128x128x8 8x8 s3 u1",      "async 128x128x32 8x8 s3 u1"};
  return n;
}

}  // namespace

#if PYENGINE_KERNEL_VARIANTS
namespace {

template <int BM_, int BN_, int BK_, int TM_, int TN_, int STAGES_, int MINB_, int UNROLL_ = BK_ / 4>
struct GemmCfg {
  static constexpr int BM = BM_, BN = BN_, BK = BK_, TM = TM_, TN = TN_, STAGES = STAGES_, MINB = MINB_;
  static constexpr int UNROLL = UNROLL_;  // of the k4 loop: 1 keeps one 4-k fragment live
  static constexpr int THREADS = 256, LY = 4, LX = 8, WM = LY * TM, WN = LX * TN;
  static_assert(BM % WM == 0 && BN % WN == 0 && (BM / WM) * (BN / WN) == THREADS / 32, "8 warps per block");
  static_assert(TM % 4 == 0 && TN % 4 == 0 && BK % 4 == 0, "4-wide runs");
  static constexpr int LDK = BK + 4;  // row stride of a tile stored along k
  // Floats per stage of an operand: [rows][BK + 4] along k, [BK][rows] along n.
  template <bool ALONG_K, int ROWS>
  static constexpr int tile_floats() { return ALONG_K ? ROWS * LDK : BK * ROWS; }
  template <bool B_K>
  static constexpr int smem_bytes() {
    return (int)sizeof(float) * STAGES * (tile_floats<true, BM>() + tile_floats<B_K, BN>());
  }
};

// One stage of an operand (rows r0.. of `rows`, k0.. of K) by cp.async. ALONG_K: element
// (r, k) at p[r * lead + k], stored [r][k]; else at p[k * lead + r], stored [k][r].
template <int ROWS, int BK, bool ALONG_K>
__device__ __forceinline__ void load_stage(float* s, const float* __restrict__ p, long long lead, int rows,
                                           int K, int r0, int k0, bool vec) {
  constexpr int RUNS = ROWS * BK / 4;
  constexpr int PER = ALONG_K ? BK / 4 : ROWS / 4;  // runs per stored row
  for (int idx = threadIdx.x; idx < RUNS; idx += 256) {
    const int outer = idx / PER, inner = idx % PER * 4;
    const int r = ALONG_K ? outer : inner, k = ALONG_K ? inner : outer;
    const int gr = r0 + r, gk = k0 + k;
    float* dst = ALONG_K ? s + r * (BK + 4) + k : s + k * ROWS + r;
    // Elements left in this run: along k they stop at K, along the rows at `rows`.
    const bool line_ok = ALONG_K ? gr < rows : gk < K;
    int left = ALONG_K ? K - gk : rows - gr;
    left = !line_ok || left < 0 ? 0 : (left > 4 ? 4 : left);
    const float* src = ALONG_K ? p + (long long)gr * lead + gk : p + (long long)gk * lead + gr;
    if (vec) {
      cp_async16(dst, left > 0 ? src : p, left * 4);
    } else {
#pragma unroll
      for (int i = 0; i < 4; ++i) cp_async4(dst + i, i < left ? src + i : p, i < left ? 4 : 0);
    }
  }
}

// A lane's row (or column) g, r of its fragment inside the warp tile. Along k: r * L + l so
// the L lanes reading at once hit consecutive rows; along n: l * 4 + r, a float4 per lane.
template <bool ALONG_K, int L>
__device__ __forceinline__ int frag_line(int g, int r, int l) {
  return ALONG_K ? g * 4 * L + r * L + l : g * 4 * L + l * 4 + r;
}

// x[i][kk] = line i of this lane's fragment at k = k4 + kk, from a tile stored along k.
template <int T, int L, int LDK>
__device__ __forceinline__ void load_frag(float (&x)[T][4], const float* s, int w0, int l, int k4) {
#pragma unroll
  for (int g = 0; g < T / 4; ++g)
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      const float4 t = *reinterpret_cast<const float4*>(s + (w0 + frag_line<true, L>(g, r, l)) * LDK + k4);
      x[4 * g + r][0] = t.x; x[4 * g + r][1] = t.y; x[4 * g + r][2] = t.z; x[4 * g + r][3] = t.w;
    }
}

template <class C, bool B_K, class Epi>
__global__ void __launch_bounds__(256, C::MINB)
    sgemm_var_kernel(int batch, int M, int N, int K, Mat a, Mat b, Epi epi, bool vec) {
  constexpr int BM = C::BM, BN = C::BN, BK = C::BK, TM = C::TM, TN = C::TN, S = C::STAGES;
  constexpr int SA = C::template tile_floats<true, BM>(), SB = C::template tile_floats<B_K, BN>();
  extern __shared__ __align__(16) float smem[];
  float* As = smem;
  float* Bs = smem + S * SA;

  // Grouped rasterisation: 8 tile rows at a time sweep the tile columns.
  const int tiles_n = gridDim.x, tiles_m = gridDim.y;
  const int id = blockIdx.y * tiles_n + blockIdx.x;
  const int group = id / (8 * tiles_n), first_m = group * 8;
  const int rows_in_group = min(tiles_m - first_m, 8);
  const int tm = first_m + (id % (8 * tiles_n)) % rows_in_group;
  const int tn = (id % (8 * tiles_n)) / rows_in_group;
  const int m0 = tm * BM, n0 = tn * BN;

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int wm0 = (warp % (BM / C::WM)) * C::WM, wn0 = (warp / (BM / C::WM)) * C::WN;
  const int ly = lane / C::LX, lx = lane % C::LX;
  const int ktiles = (K + BK - 1) / BK;

  for (int z = blockIdx.z; z < batch; z += gridDim.z) {
    const float* pa = reinterpret_cast<const float*>(a.ptr) + z * a.bs;
    const float* pb = reinterpret_cast<const float*>(b.ptr) + z * b.bs;
    // B (K x N) as seen by load_stage: along k, element (n, k) at n * cs + k * rs (rs == 1);
    // along n, element (n, k) at k * rs + n (cs == 1).
    const long long lb = B_K ? b.cs : b.rs;
    __syncthreads();  // the previous batch item's last tile is no longer read
#pragma unroll
    for (int st = 0; st < S - 1; ++st) {
      if (st < ktiles) {
        load_stage<BM, BK, true>(As + st * SA, pa, a.rs, M, K, m0, st * BK, vec);
        load_stage<BN, BK, B_K>(Bs + st * SB, pb, lb, N, K, n0, st * BK, vec);
      }
      cp_async_commit();
    }

    float acc[TM][TN];
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
      for (int j = 0; j < TN; ++j) acc[i][j] = 0.f;

    for (int kt = 0; kt < ktiles; ++kt) {
      cp_async_wait<S - 2>();
      __syncthreads();  // tile kt has landed; every warp is done with tile kt - 1's stage
      const int next = kt + S - 1;
      if (next < ktiles) {
        load_stage<BM, BK, true>(As + (next % S) * SA, pa, a.rs, M, K, m0, next * BK, vec);
        load_stage<BN, BK, B_K>(Bs + (next % S) * SB, pb, lb, N, K, n0, next * BK, vec);
      }
      cp_async_commit();
      const float* as = As + (kt % S) * SA;
      const float* bs = Bs + (kt % S) * SB;
#pragma unroll C::UNROLL
      for (int k4 = 0; k4 < BK; k4 += 4) {
        float x[TM][4];
        load_frag<TM, C::LY, C::LDK>(x, as, wm0, ly, k4);
        if constexpr (B_K) {
          float y[TN][4];
          load_frag<TN, C::LX, C::LDK>(y, bs, wn0, lx, k4);
#pragma unroll
          for (int kk = 0; kk < 4; ++kk)
#pragma unroll
            for (int i = 0; i < TM; ++i)
#pragma unroll
              for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(x[i][kk], y[j][kk], acc[i][j]);
        } else {
          // B along n: one k row at a time (TN registers, not 4 TN).
#pragma unroll
          for (int kk = 0; kk < 4; ++kk) {
            float y[TN];
#pragma unroll
            for (int g = 0; g < TN / 4; ++g) {
              const float4 t =
                  *reinterpret_cast<const float4*>(bs + (k4 + kk) * BN + wn0 + frag_line<false, C::LX>(g, 0, lx));
              y[4 * g] = t.x; y[4 * g + 1] = t.y; y[4 * g + 2] = t.z; y[4 * g + 3] = t.w;
            }
#pragma unroll
            for (int i = 0; i < TM; ++i)
#pragma unroll
              for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(x[i][kk], y[j], acc[i][j]);
          }
        }
      }
    }
    cp_async_wait<0>();

    Epi e = epi;
    e.c += (long long)z * M * N;
#pragma unroll
    for (int i = 0; i < TM; ++i) {
      const int m = m0 + wm0 + frag_line<true, C::LY>(i / 4, i % 4, ly);
      if (B_K) {
        // Columns of a lane are r * 8 + lx apart: no 4-run is contiguous.
#pragma unroll
        for (int j = 0; j < TN; ++j) e.store1(m, n0 + wn0 + frag_line<true, C::LX>(j / 4, j % 4, lx), acc[i][j]);
      } else {
#pragma unroll
        for (int g = 0; g < TN / 4; ++g) e.store4(m, n0 + wn0 + frag_line<false, C::LX>(g, 0, lx), &acc[i][4 * g]);
      }
    }
  }
}


template <class C, bool B_K, class Epi>
void launch(int batch, int m, int n, int k, const Mat& a, const Mat& b, const Epi& epi, bool vec, cudaStream_t st) {
  constexpr int smem = C::template smem_bytes<B_K>();
  CUDA_CHECK(cudaFuncSetAttribute(sgemm_var_kernel<C, B_K, Epi>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  const dim3 grid(ceil_div(n, C::BN), ceil_div(m, C::BM), batch < 65535 ? batch : 65535);
  sgemm_var_kernel<C, B_K, Epi><<<grid, 256, smem, st>>>(batch, m, n, k, a, b, epi, vec);
}

// Candidate V's configuration.
template <int V> struct Variant;
template <> struct Variant<1> { using type = GemmCfg<128, 128, 8, 8, 8, 3, 1>; };
template <> struct Variant<2> { using type = GemmCfg<128, 128, 16, 8, 8, 3, 1>; };
template <> struct Variant<3> { using type = GemmCfg<128, 128, 16, 8, 8, 4, 1>; };
template <> struct Variant<4> { using type = GemmCfg<128, 256, 8, 8, 16, 3, 1>; };
template <> struct Variant<5> { using type = GemmCfg<128, 128, 8, 8, 8, 4, 1>; };
template <> struct Variant<6> { using type = GemmCfg<128, 64, 16, 8, 4, 3, 2>; };
template <> struct Variant<7> { using type = GemmCfg<128, 128, 8, 8, 8, 3, 2, 1>; };
template <> struct Variant<8> { using type = GemmCfg<128, 128, 16, 8, 8, 3, 2, 1>; };
template <> struct Variant<9> { using type = GemmCfg<128, 128, 8, 8, 8, 3, 1, 1>; };
template <> struct Variant<10> { using type = GemmCfg<128, 128, 32, 8, 8, 3, 1, 1>; };

template <bool B_K, class Epi>
void launch_variant(int variant, int batch, int m, int n, int k, const Mat& a, const Mat& b, const Epi& e, bool vec,
                    cudaStream_t st) {
  switch (variant) {
    case 1: return launch<Variant<1>::type, B_K>(batch, m, n, k, a, b, e, vec, st);
    case 2: return launch<Variant<2>::type, B_K>(batch, m, n, k, a, b, e, vec, st);
    case 3: return launch<Variant<3>::type, B_K>(batch, m, n, k, a, b, e, vec, st);
    case 4: return launch<Variant<4>::type, B_K>(batch, m, n, k, a, b, e, vec, st);
    case 5: return launch<Variant<5>::type, B_K>(batch, m, n, k, a, b, e, vec, st);
    case 6: return launch<Variant<6>::type, B_K>(batch, m, n, k, a, b, e, vec, st);
    case 7: return launch<Variant<7>::type, B_K>(batch, m, n, k, a, b, e, vec, st);
    case 8: return launch<Variant<8>::type, B_K>(batch, m, n, k, a, b, e, vec, st);
    case 9: return launch<Variant<9>::type, B_K>(batch, m, n, k, a, b, e, vec, st);
    default: return launch<Variant<10>::type, B_K>(batch, m, n, k, a, b, e, vec, st);
  }
}

}  // namespace
#endif  // PYENGINE_KERNEL_VARIANTS

std::vector<std::string> sgemm_variant_names() { return names(); }

void sgemm_variant(int variant, int batch, int m, int n, int k, Mat a, Mat b, std::uintptr_t c,
                   std::uintptr_t stream) {
  if (variant < 0 || variant >= (int)names().size())
    throw std::invalid_argument("sgemm_variant: variant " + std::to_string(variant) + " not in [0, " +
                                std::to_string(names().size()) + ")");
  // Row-major A and either B; everything else (and variant 0) is matmul's.
  const bool a_k = a.cs == 1, b_k = b.rs == 1 && b.cs != 1;
  const bool b_n = b.cs == 1;
  if (variant == 0 || !a_k || !(b_k || b_n) || batch <= 0 || m <= 0 || n <= 0 || k <= 0) {
    matmul(batch, m, n, k, a, b, c, 0, ACT_NONE, 0.f, false, stream);
    return;
  }
#if !PYENGINE_KERNEL_VARIANTS
  throw std::invalid_argument("sgemm_variant: version " + std::to_string(variant) + " (" + names()[variant] +
                              ") is ranking-only; build with PYENGINE_KERNEL_VARIANTS=ON");
#else
  if (ceil_div(m, 64) > 65535)
    throw std::invalid_argument("sgemm_variant: m=" + std::to_string(m) + " exceeds the grid limit");
  const bool vec = mat_vec_ok(a) && mat_vec_ok(b);
  const MatmulEpilogue<ACT_NONE> epi{dptr<float>(c), nullptr, m, n, 0.f, c % 16 == 0 && n % 4 == 0};
  if (b_k) launch_variant<true>(variant, batch, m, n, k, a, b, epi, vec, as_stream(stream));
  else launch_variant<false>(variant, batch, m, n, k, a, b, epi, vec, as_stream(stream));
  check_launch("sgemm_variant " + names()[variant] + " batch=" + std::to_string(batch) + " m=" +
               std::to_string(m) + " n=" + std::to_string(n) + " k=" + std::to_string(k) +
               " b_along_k=" + std::to_string(b_k) + " vec=" + std::to_string(vec));
#endif
}

}  // namespace pyengine
