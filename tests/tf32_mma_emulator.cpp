// Host emulation of the v3 TF32 GEMM's data movement (kernels/matmul_tf32_mma.cuh), built by
// tests/test_cuda_tf32.py with g++ and run on the CPU. It drives the kernel's own index maps
// (kernels/matmul_tf32_layout.h) through the same steps as the kernel: block order, cp.async
// chunks into swizzled shared tiles (zero-filled past the edges), ldmatrix.x4 / 16-byte LDS
// fragment reads, mma.m16n8k8 fragment semantics as the PTX ISA defines them, and the
// epilogue's row/column maps, in float64 without TF32 rounding. It checks that every shared
// element holds the operand element it should, that every fragment read is 16-byte aligned and
// inside the tile, that each C element is written exactly once, and that C = A @ B.
// What it cannot check: the PTX instructions themselves, barriers and the pipeline's timing.
// Prints "ok <cases>" and exits 0, or prints the first failure and exits 1.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <random>
#include <vector>

#include "../kernels/matmul_tf32_layout.h"

using namespace pyengine::tf32mma;

namespace {

struct Operand {  // element (z, r, c) at data[z*bs + r*rs + c*cs] (A: r = m, c = k; B: r = k, c = n)
  std::vector<float> data;
  long long bs, rs, cs;
  float at(int z, int r, int c) const { return data[z * bs + r * rs + c * cs]; }
};

int failures = 0;
#define CHECK(cond, ...)                                    \
  do {                                                      \
    if (!(cond)) {                                          \
      std::printf("FAIL %s:%d: ", __FILE__, __LINE__);      \
      std::printf(__VA_ARGS__);                             \
      std::printf("\n");                                    \
      std::exit(1);                                         \
    }                                                       \
  } while (0)

// A strided operand of rows x cols per batch item; k_contig picks which axis has stride 1, the
// other stride is padded by `pad` elements, batch items are `gap` elements apart beyond that.
Operand make(std::mt19937& rng, int batch, int rows, int cols, bool col_contig, int pad, int gap) {
  Operand o;
  const long long lead = (col_contig ? cols : rows) + pad;
  o.rs = col_contig ? lead : 1;
  o.cs = col_contig ? 1 : lead;
  const long long item = lead * (col_contig ? rows : cols);
  o.bs = item + gap;
  o.data.resize(o.bs * batch + 1);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  for (float& v : o.data) v = u(rng);
  return o;
}

template <int BM, int BN, int WM, int WN, bool A_K, bool B_K>
void run_case(std::mt19937& rng, int batch, int M, int N, int K, int pad, int gap) {
  constexpr int THREADS = (BM / WM) * (BN / WN) * 32, WARPS_N = BN / WN, MT = WM / 16, NT = WN / 8;
  // A (M x K): A_K means k (its columns) contiguous. B (K x N): B_K means k (its rows) contiguous.
  const Operand A = make(rng, batch, M, K, A_K, pad, gap);
  const Operand B = make(rng, batch, K, N, !B_K, pad, gap);
  const long long a_lead = A_K ? A.rs : A.cs, b_lead = B_K ? B.cs : B.rs;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  std::vector<double> C((size_t)batch * M * N, nan);

  const int tiles_m = (M + BM - 1) / BM, tiles_n = (N + BN - 1) / BN;
  std::vector<int> seen(tiles_m * tiles_n);
  std::vector<float> As(BM * BK), Bs(BN * BK);
  std::vector<int> hits_a(BM * BK), hits_b(BN * BK);
  // acc[warp][lane][mt][nt][q]
  std::vector<double> acc((size_t)THREADS * MT * NT * 4);
  auto accq = [&](int w, int l, int mt, int nt, int q) -> double& {
    return acc[((((size_t)w * 32 + l) * MT + mt) * NT + nt) * 4 + q];
  };

  for (int z = 0; z < batch; ++z) {
    std::fill(seen.begin(), seen.end(), 0);
    for (int pid = 0; pid < tiles_m * tiles_n; ++pid) {
      int tm, tn;
      block_tile(pid, tiles_m, tiles_n, &tm, &tn);
      CHECK(tm >= 0 && tm < tiles_m && tn >= 0 && tn < tiles_n, "block_tile(%d) = (%d, %d) outside %d x %d", pid, tm,
            tn, tiles_m, tiles_n);
      CHECK(!seen[tm * tiles_n + tn]++, "block_tile gives tile (%d, %d) twice", tm, tn);
      const int m0 = tm * BM, n0 = tn * BN;
      const float* pa = A.data.data() + z * A.bs + (A_K ? m0 * a_lead : m0);
      const float* pb = B.data.data() + z * B.bs + (B_K ? n0 * b_lead : n0);
      std::fill(acc.begin(), acc.end(), 0.0);

      for (int k0 = 0; k0 < K; k0 += BK) {
        // cp.async: every thread's chunks.
        std::fill(As.begin(), As.end(), std::nanf(""));
        std::fill(Bs.begin(), Bs.end(), std::nanf(""));
        std::fill(hits_a.begin(), hits_a.end(), 0);
        std::fill(hits_b.begin(), hits_b.end(), 0);
        auto copy = [&](auto map, const float* p, float* tile, int* hits, int tile_size) {
          for (int i = 0; i < map.CHUNKS; ++i) {
            const int n = map.n(k0, i);
            const long long src = map.src(k0, i);
            CHECK(src == map.src(k0, 0) + i * map.step(), "chunk %d: src walk", i);
            const int dst = map.dst(i);
            CHECK(dst % 4 == 0 && dst >= 0 && dst + 4 <= tile_size, "chunk %d: dst %d", i, dst);
            for (int e = 0; e < 4; ++e) {
              tile[dst + e] = e < n ? p[src + e] : 0.f;
              ++hits[dst + e];
            }
          }
        };
        for (int tid = 0; tid < THREADS; ++tid) {
          copy(TileCopyMap<BM, THREADS, A_K>(tid, a_lead, M - m0, K), pa, As.data(), hits_a.data(), BM * BK);
          copy(TileCopyMap<BN, THREADS, B_K>(tid, b_lead, N - n0, K), pb, Bs.data(), hits_b.data(), BN * BK);
        }
        // Every shared element written once, holding the operand element (or 0 past an edge).
        for (int r = 0; r < BM; ++r)
          for (int k = 0; k < BK; ++k) {
            const int off = A_K ? kmajor_off(r, k) : rmajor_off(BM, k, r);
            CHECK(hits_a[off] == 1, "A tile (%d, %d) written %d times", r, k, hits_a[off]);
            const float want = m0 + r < M && k0 + k < K ? A.at(z, m0 + r, k0 + k) : 0.f;
            CHECK(As[off] == want, "A tile (%d, %d) = %g, want %g", r, k, As[off], want);
          }
        for (int c = 0; c < BN; ++c)
          for (int k = 0; k < BK; ++k) {
            const int off = B_K ? kmajor_off(c, k) : rmajor_off(BN, k, c);
            CHECK(hits_b[off] == 1, "B tile (%d, %d) written %d times", c, k, hits_b[off]);
            const float want = n0 + c < N && k0 + k < K ? B.at(z, k0 + k, n0 + c) : 0.f;
            CHECK(Bs[off] == want, "B tile (%d, %d) = %g, want %g", c, k, Bs[off], want);
          }

        for (int warp = 0; warp < THREADS / 32; ++warp) {
          const int wrow = (warp / WARPS_N) * WM, wcol = (warp % WARPS_N) * WN;
          int a_lane[32], b_lane[32], a_x[32], b_x[32];
          for (int lane = 0; lane < 32; ++lane) {
            a_lane[lane] = A_K ? wrow * BK + a_ldm_lane(lane) : wrow + rm_lane(BM, lane);
            b_lane[lane] = B_K ? wcol * BK + b_ldm_lane(lane) : wcol + rm_lane(BN, lane);
            a_x[lane] = a_ldm_x(lane);
            b_x[lane] = b_ldm_x(lane);
          }
          auto lds4 = [&](const std::vector<float>& tile, int off, float* v) {
            CHECK(off % 4 == 0 && off >= 0 && off + 4 <= (int)tile.size(), "16-byte read at %d", off);
            for (int j = 0; j < 4; ++j) v[j] = tile[off + j];
          };
          // Bank conflicts: each ldmatrix matrix (8 lanes' rows) and each quarter-warp of a
          // 16-byte LDS must touch 8 distinct 16-byte bank groups.
          auto distinct_groups = [&](const int* offs, const char* what) {
            int mask = 0;
            for (int i = 0; i < 8; ++i) mask |= 1 << (offs[i] / 4 % 8);
            CHECK(mask == 0xff, "%s: bank conflict", what);
          };
          for (int kk = 0; kk < BK; kk += 8)
            for (int u = 0; u < 4; ++u)
              for (int q = 0; q < 4; ++q) {
                int oa[8], ob[8];
                for (int i = 0; i < 8; ++i) {
                  const int l = q * 8 + i;
                  oa[i] = A_K ? a_lane[l] + a_ldm_tile(u < MT ? u : 0) + (a_x[l] ^ kk)
                              : a_lane[l] + (kk + 4 * (u & 1)) * BM + 32 * ((u >> 1) % (MT / 2));
                  ob[i] = B_K ? b_lane[l] + b_ldm_tile(u < NT / 2 ? u : 0) + (b_x[l] ^ kk)
                              : b_lane[l] + (kk + 4 * (u & 1)) * BN + 32 * ((u >> 1) % (NT / 4));
                }
                distinct_groups(oa, "A fragment read");
                distinct_groups(ob, "B fragment read");
              }
          for (int kk = 0; kk < BK; kk += 8) {
            float fa[32][MT][4], fb[32][NT][2];
            if (A_K) {
              for (int mt = 0; mt < MT; ++mt) {
                float rows[32][4];  // ldmatrix: lane l's 16-byte row feeds matrix l/8, row l%8
                for (int l = 0; l < 32; ++l) lds4(As, a_lane[l] + a_ldm_tile(mt) + (a_x[l] ^ kk), rows[l]);
                for (int L = 0; L < 32; ++L)
                  for (int j = 0; j < 4; ++j) fa[L][mt][j] = rows[j * 8 + L / 4][L % 4];
              }
            } else {
              for (int L = 0; L < 32; ++L)
                for (int hi = 0; hi < 2; ++hi)
                  for (int half = 0; half < MT / 2; ++half) {
                    float v[4];
                    lds4(As, a_lane[L] + (kk + 4 * hi) * BM + 32 * half, v);
                    fa[L][2 * half][2 * hi] = v[0];
                    fa[L][2 * half][2 * hi + 1] = v[1];
                    fa[L][2 * half + 1][2 * hi] = v[2];
                    fa[L][2 * half + 1][2 * hi + 1] = v[3];
                  }
            }
            if (B_K) {
              for (int p = 0; p < NT / 2; ++p) {
                float rows[32][4];
                for (int l = 0; l < 32; ++l) lds4(Bs, b_lane[l] + b_ldm_tile(p) + (b_x[l] ^ kk), rows[l]);
                for (int L = 0; L < 32; ++L) {
                  fb[L][2 * p][0] = rows[0 * 8 + L / 4][L % 4];
                  fb[L][2 * p][1] = rows[1 * 8 + L / 4][L % 4];
                  fb[L][2 * p + 1][0] = rows[2 * 8 + L / 4][L % 4];
                  fb[L][2 * p + 1][1] = rows[3 * 8 + L / 4][L % 4];
                }
              }
            } else {
              for (int L = 0; L < 32; ++L)
                for (int hi = 0; hi < 2; ++hi)
                  for (int half = 0; half < NT / 4; ++half) {
                    float v[4];
                    lds4(Bs, b_lane[L] + (kk + 4 * hi) * BN + 32 * half, v);
                    for (int j = 0; j < 4; ++j) fb[L][4 * half + j][hi] = v[j];
                  }
            }
            // mma.m16n8k8 (PTX ISA): A[g][t]=a0 A[g+8][t]=a1 A[g][t+4]=a2 A[g+8][t+4]=a3,
            // B[t][g]=b0 B[t+4][g]=b1, D[g][2t+e]=c_e D[g+8][2t+e]=c_{2+e}; g = lane/4, t = lane%4.
            for (int mt = 0; mt < MT; ++mt)
              for (int nt = 0; nt < NT; ++nt) {
                double Am[16][8], Bm[8][8];
                for (int L = 0; L < 32; ++L) {
                  const int g = L / 4, t = L % 4;
                  Am[g][t] = fa[L][mt][0];
                  Am[g + 8][t] = fa[L][mt][1];
                  Am[g][t + 4] = fa[L][mt][2];
                  Am[g + 8][t + 4] = fa[L][mt][3];
                  Bm[t][g] = fb[L][nt][0];
                  Bm[t + 4][g] = fb[L][nt][1];
                }
                for (int L = 0; L < 32; ++L) {
                  const int g = L / 4, t = L % 4;
                  for (int q = 0; q < 4; ++q) {
                    const int row = g + 8 * (q / 2), col = 2 * t + q % 2;
                    double s = 0;
                    for (int k = 0; k < 8; ++k) s += Am[row][k] * Bm[k][col];
                    accq(warp, L, mt, nt, q) += s;
                  }
                }
              }
          }
        }
      }

      // Epilogue.
      for (int warp = 0; warp < THREADS / 32; ++warp) {
        const int wrow = (warp / WARPS_N) * WM, wcol = (warp % WARPS_N) * WN;
        for (int L = 0; L < 32; ++L) {
          const int g = L >> 2, t = L & 3;
          for (int mt = 0; mt < MT; ++mt)
            for (int h = 0; h < 2; ++h) {
              const int row = m0 + wrow + a_row(mt, h, g);
              for (int half = 0; half < NT / 4; ++half)
                for (int eo = 0; eo < 2; ++eo) {
                  const int col = n0 + wcol + epi_col(half, t, eo);
                  for (int j = 0; j < 4; ++j) {
                    if (row >= M || col + j >= N) continue;
                    double& c = C[((size_t)z * M + row) * N + col + j];
                    CHECK(std::isnan(c), "C(%d, %d, %d) written twice", z, row, col + j);
                    c = accq(warp, L, mt, 4 * half + j, 2 * h + eo);
                  }
                }
            }
        }
      }
    }
  }

  for (int z = 0; z < batch; ++z)
    for (int i = 0; i < M; ++i)
      for (int j = 0; j < N; ++j) {
        double ref = 0;
        for (int k = 0; k < K; ++k) ref += (double)A.at(z, i, k) * B.at(z, k, j);
        const double got = C[((size_t)z * M + i) * N + j];
        CHECK(!std::isnan(got), "C(%d, %d, %d) never written", z, i, j);
        CHECK(std::fabs(got - ref) <= 1e-9 * (1 + std::fabs(ref)), "C(%d, %d, %d) = %.17g, want %.17g", z, i, j, got,
              ref);
      }
}

template <int BM, int BN, int WM, int WN>
int run_config(std::mt19937& rng) {
  struct P {
    int batch, m, n, k, pad, gap;
  };
  const P problems[] = {
      {1, 1, 1, 1, 0, 0},     {1, 17, 33, 65, 3, 0},  {2, 129, 127, 33, 0, 5}, {1, 33, 300, 40, 1, 0},
      {1, 3, 129, 127, 2, 0}, {2, 65, 17, 96, 4, 8},  {1, 1100, 70, 36, 0, 0}, {1, 256, 256, 64, 0, 0},
  };
  int cases = 0;
  for (const P& p : problems) {
    run_case<BM, BN, WM, WN, true, true>(rng, p.batch, p.m, p.n, p.k, p.pad, p.gap);
    run_case<BM, BN, WM, WN, true, false>(rng, p.batch, p.m, p.n, p.k, p.pad, p.gap);
    run_case<BM, BN, WM, WN, false, true>(rng, p.batch, p.m, p.n, p.k, p.pad, p.gap);
    run_case<BM, BN, WM, WN, false, false>(rng, p.batch, p.m, p.n, p.k, p.pad, p.gap);
    cases += 4;
  }
  return cases;
}

}  // namespace

int main(int argc, char** argv) {
  std::mt19937 rng(argc > 1 ? std::atoi(argv[1]) : 1234);
  // Fast forms of the fragment offsets against the maps they abbreviate.
  for (int wbase = 0; wbase < 256; wbase += 32)
    for (int lane = 0; lane < 32; ++lane)
      for (int kk = 0; kk < BK; kk += 8) {
        for (int mt = 0; mt < 4; ++mt)
          CHECK(wbase * BK + a_ldm_lane(lane) + a_ldm_tile(mt) + (a_ldm_x(lane) ^ kk) ==
                    kmajor_off(a_ldm_row(wbase, mt, lane), a_ldm_k(kk, lane)),
                "a_ldm fast form wbase=%d lane=%d kk=%d mt=%d", wbase, lane, kk, mt);
        for (int p = 0; p < 4; ++p)
          CHECK(wbase * BK + b_ldm_lane(lane) + b_ldm_tile(p) + (b_ldm_x(lane) ^ kk) ==
                    kmajor_off(b_ldm_col(wbase, p, lane), b_ldm_k(kk, lane)),
                "b_ldm fast form wbase=%d lane=%d kk=%d p=%d", wbase, lane, kk, p);
        for (int rows = 64; rows <= 256; rows *= 2)
          for (int hi = 0; hi < 2; ++hi)
            for (int half = 0; half < 2; ++half)
              if (wbase + 64 <= rows)
                CHECK(rm_lane(rows, lane) + wbase + (kk + 4 * hi) * rows + 32 * half ==
                          rmajor_off(rows, rm_frag_k(kk, lane, hi), rm_frag_r(wbase, half, lane)),
                      "rm fast form rows=%d wbase=%d lane=%d", rows, wbase, lane);
      }
  int cases = 0;
  cases += run_config<128, 256, 64, 64>(rng);
  cases += run_config<128, 128, 64, 32>(rng);
  cases += run_config<64, 128, 32, 64>(rng);
  cases += run_config<64, 64, 32, 32>(rng);
  cases += run_config<128, 128, 64, 64>(rng);
  cases += run_config<256, 128, 64, 64>(rng);
  std::printf("ok %d\n", cases);
  return failures ? 1 : 0;
}
