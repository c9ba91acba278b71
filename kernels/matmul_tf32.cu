// matmul_tf32.cu — C[b] = act(A[b] @ B[b] + bias) on the tensor cores in TF32
// (10-bit mantissa inputs, float32 accumulation), used when
// pe.backends.cuda.matmul.allow_tf32 is True (off by default, as in PyTorch).
//
// Versions, reachable by name through _C.matmul_tf32_variant for side-by-side runs; the ones
// marked "ranking only" are built only with -DPYENGINE_KERNEL_VARIANTS=ON (CMake option):
//   v2 (ranking only): mma.sync.m16n8k8 in 128 x 128 x 16 block tiles, 8 warps of 64 x 32,
//       operands prefetched one tile ahead into registers (matmul_tile's strided loader),
//       rounded to TF32 on the way into padded k-contiguous shared tiles, ldmatrix.x4 fragments.
//   v3 (matmul_tf32_mma.cuh): cp.async 3-stage pipeline straight into swizzled shared tiles
//       that keep each operand's global layout (16-byte copies for NN, NT, TN and TT; 4-byte
//       copies when an operand is unaligned), BK = 32, fragments by ldmatrix.x4 (k-contiguous
//       tiles) or 16-byte LDS (row-contiguous ones), grouped block order for L2 reuse, fp32
//       accumulators, bias/activation epilogue with float4 stores. Block tiles by name:
//       BMxBN, "w4" = 4 warps of 64 x 64 (else 8 warps), "rz" = the float32 operands go to the
//       mma unrounded and the tensor cores truncate them (else each fragment register is
//       rounded with cvt.rna: four instructions each, about one per mma, 20-35% slower),
//       "s4" = 4 stages. The default ("auto"): 128x128w4rz (two blocks per SM) when it gives
//       every SM a block, else 64x128rz (4 warps of 32 x 64); 64x128rz-4byte for unaligned
//       operands. Truncation keeps every product within 2^-9 of itself; measured max error
//       6.8e-5 of |A row| |B col| at 4096^3 (cuBLAS TF32 2.5e-5, as the rounding tiles).
//       Registers (sm_90 and sm_80, ptxas): default tiles 158-247, no spills; ranking tiles
//       up to 255 with 32-76 bytes of spills in the rounding 128x256 x @ w.T instances.
// Not yet: wgmma (sm_90a) and TMA: cuBLAS's 4096^3 runs at ~370 TFLOP/s, beyond what
// mma.sync reached here (183).
//
// Measured (bench/variants/tf32.py, H100 80GB HBM3, 2026-11-27, CUDA events, median; ratio =
// cuBLAS TF32 ms / ours, cuBLAS through CuPy with its TF32 compute type):
//   v1 (scalar fragment loads): 1024^3 15.9 TFLOP/s = 0.34 x cuBLAS TF32 (47.3); 4096^3
//      52.9 TFLOP/s = 0.16 x (340).
//   v2: 4096^3 NN 2.444 ms = 56 TFLOP/s = 0.15 x cuBLAS (0.372 ms), NT 1.697 ms = 0.22 x;
//      2048^3 0.327 ms = 0.22 x; 1024^3 0.0861 ms = 0.44 x; 3001^3 (unaligned) 1.353 ms = 0.42 x.
//   v3, same run:          4096 NN   4096 NT   2048 NN   1024 NN   (ms; x cuBLAS TF32)
//      128x128w4rz (auto)  0.887     0.751     0.1288    0.0524
//                          0.42 x    0.49 x    0.56 x    0.73 x
//      64x128rz (auto)     0.962     0.969     0.1371    0.0377
//                          0.39 x    0.38 x    0.53 x    1.01 x
//      128x256rz           0.860     0.786     0.1256    0.0689   (ranking only)
//      256x128rz           0.901     0.813     0.1306    0.0710   (ranking only)
//      128x256 (rounded)   1.057     1.096     0.1467    0.0801   (ranking only)
//      128x256s4           1.124     1.094     0.1473    0.0795   (ranking only)
//      128x128 / rz        1.260 / 0.993  1.603 / 0.964  0.1755 / 0.1426  0.0529 / 0.0455
//      64x128 (rounded)    1.227     1.464     0.1726    0.0405   (ranking only)
//      64x64 (rounded)     1.460     1.578     0.2030    0.0413   (ranking only)
//      64x128-4byte, rounded (the then default for unaligned operands): 3001^3 0.936 ms = 0.61 x
//      cuBLAS (0.572 ms), 1.45x v2. cuBLAS TF32: 4096 NN 0.372 ms (369 TFLOP/s), NT 0.366,
//      2048 0.0725, 1024 0.0381. Issue #6's target (>= 0.75 x cuBLAS TF32) is met at 1024^3
//      only; at 4096^3 the best tile reaches 0.43-0.49 x.
#include "common.cuh"
#include "kernels_core.h"
#include "matmul_tf32_mma.cuh"
#include "matmul_tile.cuh"

#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

namespace pyengine {
namespace {
#if PYENGINE_KERNEL_VARIANTS
namespace v2 {

constexpr int TBM = 128, TBN = 128, TBK = 16, PITCH = TBK + 4, THREADS = 256;

__device__ __forceinline__ float to_tf32(float x) {
  unsigned r;
  asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
  return __uint_as_float(r);
}

// The m16n8k8 TF32 mma.sync and the ldmatrix x4 load are the production kernel's
// (matmul_tf32_mma.cuh).
using tf32mma::ldmatrix_x4;
using tf32mma::mma;
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
    v2_kernel(int batch, int M, int N, int K, Mat a, Mat b, Epi epi) {
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
          for (int nt = 0; nt < 4; ++nt) mma(acc[mt][nt], fa[mt], fb[nt]);
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

}  // namespace v2
#endif  // PYENGINE_KERNEL_VARIANTS

struct Problem {
  int batch, m, n, k;
  Mat a, b;
  std::uintptr_t c, bias;
  int act;
  float act_param;
  cudaStream_t st;
};

long long tiles(const Problem& p, int bm, int bn) {
  return (long long)ceil_div(p.m, bm) * ceil_div(p.n, bn) * p.batch;
}

// Which fused activations a tile is built with: all (the default's tiles), or none (tiles that
// only the benchmark ranks).
enum Acts { ALL_ACTS, NO_ACT };

// Calls f(a_k, b_k, epi) (a_k, b_k as std::integral_constant<bool, ...>) for the problem's
// layout and epilogue. Fused activations are built for linear()'s layout only (A row-major, B
// column-major), as in matmul.cu, which keeps the number of kernel instances down.
template <Acts ACTS = ALL_ACTS, class F>
void dispatch(const Problem& p, bool cvec, F&& f) {
  using T = std::true_type;
  using N = std::false_type;
  const bool a_k = p.a.cs == 1, b_k = p.b.rs == 1;
  if (a_k && b_k) {
    const auto run = [&](auto act_c) {
      f(T(), T(), MatmulEpilogue<decltype(act_c)::value>{dptr<float>(p.c), dptr<const float>(p.bias), p.m, p.n,
                                                        p.act_param, cvec});
    };
    if (p.act == ACT_NONE) {
      run(std::integral_constant<int, ACT_NONE>());
    } else if constexpr (ACTS == NO_ACT) {
      throw std::invalid_argument("matmul (tf32): this tile has no fused activation ('auto' has)");
    } else {
      with_epilogue_act(p.act, run);
    }
    return;
  }
  if (p.act != ACT_NONE)
    throw std::invalid_argument("matmul (tf32): a fused activation needs A row-major and B column-major (x @ w.T)");
  const MatmulEpilogue<ACT_NONE> epi{dptr<float>(p.c), dptr<const float>(p.bias), p.m, p.n, p.act_param, cvec};
  if (a_k) f(T(), N(), epi);
  else if (b_k) f(N(), T(), epi);
  else f(N(), N(), epi);
}

bool operands_vec(const Problem& p) { return mat_vec_ok(p.a) && mat_vec_ok(p.b); }

#if PYENGINE_KERNEL_VARIANTS
void launch_v2(const Problem& p) {
  const dim3 grid(ceil_div(p.n, v2::TBN), ceil_div(p.m, v2::TBM), p.batch < 65535 ? p.batch : 65535);
  const bool vec = operands_vec(p);
  // v2 stores C one element at a time.
  dispatch(p, false, [&](auto a_k, auto b_k, const auto& epi) {
    constexpr bool AK = decltype(a_k)::value, BK = decltype(b_k)::value;
    if (vec)
      v2::v2_kernel<AK, BK, true><<<grid, v2::THREADS, 0, p.st>>>(p.batch, p.m, p.n, p.k, p.a, p.b, epi);
    else
      v2::v2_kernel<AK, BK, false><<<grid, v2::THREADS, 0, p.st>>>(p.batch, p.m, p.n, p.k, p.a, p.b, epi);
  });
}
#endif  // PYENGINE_KERNEL_VARIANTS

template <class Cfg, bool A_K, bool B_K, bool VEC, class Epi>
void launch_v3_kernel(const Problem& p, const Epi& epi) {
  const auto kernel = tf32mma::gemm_kernel<Cfg, A_K, B_K, VEC, Epi>;
  // Above 48 KiB of dynamic shared memory a kernel must opt in, once per device.
  static unsigned opted_in = 0;
  int dev = 0;
  CUDA_CHECK(cudaGetDevice(&dev));
  if (dev >= 32 || !(opted_in >> dev & 1u)) {
    CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Cfg::SMEM_BYTES));
    if (dev < 32) opted_in |= 1u << dev;
  }
  const dim3 grid(ceil_div(p.n, Cfg::BN), ceil_div(p.m, Cfg::BM), p.batch < 65535 ? p.batch : 65535);
  kernel<<<grid, Cfg::THREADS, Cfg::SMEM_BYTES, p.st>>>(p.batch, p.m, p.n, p.k, p.a, p.b, epi);
}

// One v3 block tile; VEC: instances with 16-byte copies (operands_vec(p) must hold), else
// 4-byte copies (built only for the tile the default uses on unaligned operands).
template <class Cfg, bool VEC, Acts ACTS = ALL_ACTS>
void launch_v3(const Problem& p) {
  if (Cfg::SMEM_BYTES > max_smem_optin())
    throw std::invalid_argument("matmul (tf32): the " + std::to_string(Cfg::BM) + "x" + std::to_string(Cfg::BN) +
                                " tile needs " + std::to_string(Cfg::SMEM_BYTES) +
                                " bytes of shared memory per block, the device allows " +
                                std::to_string(max_smem_optin()));
  if (VEC && !operands_vec(p))
    throw std::invalid_argument("matmul (tf32): this variant needs 16-byte aligned operands with leading and "
                                "batch strides that are multiples of 4 ('auto' takes any)");
  const bool cvec = p.c % 16 == 0 && p.n % 4 == 0;
  dispatch<ACTS>(p, cvec, [&](auto a_k, auto b_k, const auto& epi) {
    launch_v3_kernel<Cfg, decltype(a_k)::value, decltype(b_k)::value, VEC>(p, epi);
  });
}

//                        BM   BN  WM  WN  STAGES  blocks/SM  ROUND
// The default's tiles (measured best, H100, 2026-11-27; see the header).
using T128x128w4rz = tf32mma::Config<128, 128, 64, 64, 3, 2, false>;
using T64x128rz = tf32mma::Config<64, 128, 32, 64, 3, 2, false>;
#if PYENGINE_KERNEL_VARIANTS
// Ranking only (they lost; built with -DPYENGINE_KERNEL_VARIANTS=ON).
using T128x256 = tf32mma::Config<128, 256, 64, 64, 3, 1>;
using T128x256rz = tf32mma::Config<128, 256, 64, 64, 3, 1, false>;
using T128x256s4 = tf32mma::Config<128, 256, 64, 64, 4, 1>;
using T256x128rz = tf32mma::Config<256, 128, 64, 64, 3, 1, false>;
using T128x128 = tf32mma::Config<128, 128, 64, 32, 3, 1>;
using T128x128rz = tf32mma::Config<128, 128, 64, 32, 3, 1, false>;
using T64x128 = tf32mma::Config<64, 128, 32, 64, 3, 2>;
using T64x64 = tf32mma::Config<64, 64, 32, 32, 3, 3>;
#endif

// The default: 128 x 128 tiles of 4 warps (two blocks per SM) when they give every SM a
// block, else 64 x 128 (twice the blocks); unaligned operands take 4-byte copies in 64 x 128.
const char* launch_auto(const Problem& p) {
  if (!operands_vec(p)) {
    launch_v3<T64x128rz, false>(p);
    return "64x128rz-4byte";
  }
  if (tiles(p, 128, 128) >= tile::sm_count()) {
    launch_v3<T128x128w4rz, true>(p);
    return "128x128w4rz";
  }
  launch_v3<T64x128rz, true>(p);
  return "64x128rz";
}

struct Variant {
  const char* name;
  void (*launch)(const Problem&);
};

const Variant kVariants[] = {
    {"128x128w4rz", launch_v3<T128x128w4rz, true>},
    {"64x128rz", launch_v3<T64x128rz, true>},
    {"64x128rz-4byte", launch_v3<T64x128rz, false>},
#if PYENGINE_KERNEL_VARIANTS
    {"v2", launch_v2},
    {"128x256", launch_v3<T128x256, true, NO_ACT>},
    {"128x256rz", launch_v3<T128x256rz, true, NO_ACT>},
    {"128x256s4", launch_v3<T128x256s4, true, NO_ACT>},
    {"256x128rz", launch_v3<T256x128rz, true, NO_ACT>},
    {"128x128", launch_v3<T128x128, true, NO_ACT>},
    {"128x128rz", launch_v3<T128x128rz, true, NO_ACT>},
    {"64x128", launch_v3<T64x128, true, NO_ACT>},
    {"64x128-4byte", launch_v3<T64x128, false, NO_ACT>},
    {"64x64", launch_v3<T64x64, true, NO_ACT>},
#endif
};

std::string describe(const char* kernel, const Problem& p) {
  return std::string("tf32_gemm ") + kernel + " batch=" + std::to_string(p.batch) + " m=" + std::to_string(p.m) +
         " n=" + std::to_string(p.n) + " k=" + std::to_string(p.k) + " a_along_k=" + std::to_string(p.a.cs == 1) +
         " b_along_k=" + std::to_string(p.b.rs == 1) + " vec=" + std::to_string(operands_vec(p)) +
         " act=" + std::to_string(p.act);
}

}  // namespace

void launch_matmul_tf32(int batch, int m, int n, int k, const Mat& a, const Mat& b, std::uintptr_t c,
                        std::uintptr_t bias, int act, float act_param, cudaStream_t st) {
  const Problem p{batch, m, n, k, a, b, c, bias, act, act_param, st};
  const char* used = launch_auto(p);
  check_launch(describe(used, p));
}

std::vector<std::string> matmul_tf32_variants() {
  std::vector<std::string> names{"auto"};
  for (const Variant& v : kVariants) names.emplace_back(v.name);
  return names;
}

void matmul_tf32_variant(const std::string& variant, int batch, int m, int n, int k, Mat a, Mat b, std::uintptr_t c,
                         std::uintptr_t bias, int act, float act_param, std::uintptr_t stream) {
  if (batch < 0 || m < 0 || n < 0 || k < 0)
    throw std::invalid_argument("matmul_tf32_variant: negative size batch=" + std::to_string(batch) + " m=" +
                                std::to_string(m) + " n=" + std::to_string(n) + " k=" + std::to_string(k));
  check_epilogue_act(act);
  if (a.cs != 1 && a.rs != 1)
    throw std::invalid_argument("matmul_tf32_variant: A needs a unit row or column stride, got strides (" +
                                std::to_string(a.rs) + ", " + std::to_string(a.cs) + ")");
  if (b.cs != 1 && b.rs != 1)
    throw std::invalid_argument("matmul_tf32_variant: B needs a unit row or column stride, got strides (" +
                                std::to_string(b.rs) + ", " + std::to_string(b.cs) + ")");
  if (ceil_div(m, 64) > 65535)
    throw std::invalid_argument("matmul_tf32_variant: m=" + std::to_string(m) + " exceeds the grid limit");
  const Variant* chosen = nullptr;
  for (const Variant& v : kVariants)
    if (variant == v.name) chosen = &v;
  if (!chosen && variant != "auto") {
    std::string known = "auto";
    for (const Variant& v : kVariants) known += std::string(", ") + v.name;
    throw std::invalid_argument("matmul_tf32_variant: unknown variant '" + variant + "' (known: " + known + ")");
  }
  if (batch == 0 || m == 0 || n == 0) return;
  const Problem p{batch, m, n, k, a, b, c, bias, act, act_param, as_stream(stream)};
  if (chosen) {
    chosen->launch(p);
    check_launch(describe(chosen->name, p));
  } else {
    check_launch(describe(launch_auto(p), p));
  }
}

}  // namespace pyengine
