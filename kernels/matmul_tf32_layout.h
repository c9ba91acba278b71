// matmul_tf32_layout.h — every index map of the multi-stage TF32 tensor-core GEMM
// (matmul_tf32_mma.cuh), as plain integer functions with no CUDA dependency, so that the host
// emulator tests/tf32_mma_emulator.cpp runs the very same arithmetic on the CPU (the kernel
// itself can only run on a GPU).
//
// Shared tiles hold BK = 32 k-values of ROWS rows (A: ROWS = BM rows of A; B: ROWS = BN columns
// of B, i.e. rows of B^T) in one of two layouts, chosen by which axis is contiguous in global
// memory so that 16-byte cp.async copies move 4 contiguous floats unchanged:
//   K-major  (k contiguous):    tile[r][k], 32 floats a row; 16-byte chunk (k/4) of row r is
//                               stored at chunk (k/4) ^ ((r/4) % 8).
//   row-major (rows contiguous): tile[k][r], ROWS floats a k; chunk (r/4) of k-row k is stored
//                               at chunk (r/4) ^ (2 * (k % 4)).
// Fragments (mma.m16n8k8 tf32: a0=(g,t) a1=(g+8,t) a2=(g,t+4) a3=(g+8,t+4); b0=(k=t,n=g)
// b1=(k=t+4,n=g); c0,c1=(g,2t..2t+1) c2,c3=(g+8,..); g = lane/4, t = lane%4) are read with
// ldmatrix.x4 from K-major tiles and with 16-byte LDS from row-major ones. For the LDS to be
// 16 bytes, the rows an mma tile calls 0..15 are NOT the warp's rows 0..15: the mma row
// (mt, h*8+g) is warp row a_row(mt, h, g) = 32*(mt/2) + 4*g + 2*(mt%2) + h, and the mma column
// (nt, g) is warp column b_col(nt, g) = 32*(nt/4) + 4*g + nt%4, so lane g's 4 (A) or 4 (B)
// values at one k are 4 adjacent floats. Both layouts use the same maps, and the epilogue
// writes each accumulator to its warp row/column through them (an mma does not care which
// physical row it calls g). With these swizzles every ldmatrix phase, every 16-byte LDS
// quarter-warp and every cp.async warp store touches distinct banks.
#pragma once

#if defined(__CUDACC__)
#define TF32_HD __host__ __device__ __forceinline__
#else
#define TF32_HD inline
#endif

namespace pyengine {
namespace tf32mma {

constexpr int BK = 32;  // k per shared tile (8 chunks of 4 floats per K-major row)

// Offset (floats) of element (r, k) in a K-major tile.
TF32_HD int kmajor_off(int r, int k) { return r * BK + ((((k >> 2) ^ ((r >> 2) & 7))) << 2) + (k & 3); }

// Offset (floats) of element (k, r) in a row-major tile of `rows` (a multiple of 32) rows.
TF32_HD int rmajor_off(int rows, int k, int r) { return k * rows + ((((r >> 2) ^ ((k & 3) << 1))) << 2) + (r & 3); }

// Warp row of mma tile mt's row h*8 + g, and warp column of mma tile nt's column g.
TF32_HD int a_row(int mt, int h, int g) { return ((mt >> 1) << 5) + (g << 2) + ((mt & 1) << 1) + h; }
TF32_HD int b_col(int nt, int g) { return ((nt >> 2) << 5) + (g << 2) + (nt & 3); }

// cp.async chunk i of thread tid (chunks of 4 floats; `threads` per block).
// K-major tile: row and first k of the chunk. 8 chunks per row.
TF32_HD int kmajor_chunk_row(int threads, int tid, int i) { return (tid >> 3) + i * (threads >> 3); }
TF32_HD int kmajor_chunk_k(int tid) { return (tid & 7) << 2; }
// Row-major tile: k and first row of the chunk. rows/4 chunks per k; threads % (rows/4) == 0.
TF32_HD int rmajor_chunk_k(int rows, int threads, int tid, int i) { return tid / (rows >> 2) + i * (threads / (rows >> 2)); }
TF32_HD int rmajor_chunk_row(int rows, int tid) { return (tid % (rows >> 2)) << 2; }

// What thread tid copies for one BK tile of a strided operand whose element (r, k) (rows of A,
// or columns of B) is at p[r * lead + k] (K-major) or p[k * lead + r], p pointing at the
// block's first row, `rows` rows existing from there. Chunk i (of CHUNKS) of the tile at k0
// comes from p + src(k0, i), goes to tile + dst(i), and `n(k0, i)` of its 4 elements exist
// (rows past `rows` and k past K are zeros).
template <int ROWS, int THREADS, bool KMAJOR>
struct TileCopyMap {
  static constexpr int CHUNKS = ROWS * BK / 4 / THREADS;
  // Chunk i starts at row r0 + i * R_STEP, k kofs (K-major) or at k kofs + i * K_STEP,
  // rows r0 .. r0 + 3 (row-major).
  static constexpr int R_STEP = THREADS / 8, K_STEP = THREADS / (ROWS / 4);
  long long lead;
  int r0, kofs, rows_left, K;

  TF32_HD TileCopyMap(int tid, long long lead_, int rows, int K_)
      : lead(lead_),
        r0(KMAJOR ? kmajor_chunk_row(THREADS, tid, 0) : rmajor_chunk_row(ROWS, tid)),
        kofs(KMAJOR ? kmajor_chunk_k(tid) : rmajor_chunk_k(ROWS, THREADS, tid, 0)),
        rows_left(rows - r0),
        K(K_) {}
  TF32_HD long long src(int k0, int i) const {
    return KMAJOR ? (long long)(r0 + i * R_STEP) * lead + (k0 + kofs) : (long long)(k0 + kofs + i * K_STEP) * lead + r0;
  }
  // src(k0, i) == src(k0, 0) + i * step(): the kernel walks the chunks by pointer increments.
  TF32_HD long long step() const { return (KMAJOR ? R_STEP : K_STEP) * lead; }
  TF32_HD int dst(int i) const {
    return KMAJOR ? kmajor_off(r0 + i * R_STEP, kofs) : rmajor_off(ROWS, kofs + i * K_STEP, r0);
  }
  TF32_HD int n(int k0, int i) const {
    const int left = KMAJOR ? K - k0 - kofs : rows_left;
    const bool exists = KMAJOR ? i * R_STEP < rows_left : k0 + kofs + i * K_STEP < K;
    return !exists || left <= 0 ? 0 : left < 4 ? left : 4;
  }
};

// ldmatrix.x4 row address supplied by `lane` (it feeds matrix lane/8, row lane%8), K-major tiles.
// A, mma tile mt, k step kk (a multiple of 8): matrices (h=0,k lo) (h=1,k lo) (h=0,k hi) (h=1,k hi)
// become a0..a3.
TF32_HD int a_ldm_row(int wrow, int mt, int lane) { return wrow + a_row(mt, (lane >> 3) & 1, lane & 7); }
TF32_HD int a_ldm_k(int kk, int lane) { return kk + ((lane >> 4) << 2); }
// B, mma tiles 2p and 2p+1: matrices (2p,k lo) (2p,k hi) (2p+1,k lo) (2p+1,k hi) become
// b[2p][0], b[2p][1], b[2p+1][0], b[2p+1][1].
TF32_HD int b_ldm_col(int wcol, int p, int lane) { return wcol + b_col(2 * p + (lane >> 4), lane & 7); }
TF32_HD int b_ldm_k(int kk, int lane) { return kk + (((lane >> 3) & 1) << 2); }

// Row-major tiles: the 16-byte LDS number `half` at k = kk + t + 4*hi reads warp rows
// (columns) 32*half + 4*g .. +3; value j is A's mma tile mt = 2*half + j/2, register
// (j%2) + 2*hi, or B's mma tile nt = 4*half + j, register hi.
TF32_HD int rm_frag_k(int kk, int lane, int hi) { return kk + (lane & 3) + (hi << 2); }
TF32_HD int rm_frag_r(int wbase, int half, int lane) { return wbase + (half << 5) + ((lane >> 2) << 2); }

// The same fragment offsets split into a per-lane part (computed once), a per-tile immediate
// and the k step, the way the kernel computes them (no per-step swizzle arithmetic). Valid
// for warp bases wbase that are multiples of 32; the emulator checks them against the maps
// above. K-major (ldmatrix): offset = wbase*BK + *_ldm_lane + *_ldm_tile + (*_ldm_x ^ kk).
TF32_HD int a_ldm_lane(int lane) { return a_row(0, (lane >> 3) & 1, lane & 7) * BK; }
TF32_HD int a_ldm_tile(int mt) { return (((mt >> 1) << 5) + ((mt & 1) << 1)) * BK; }
TF32_HD int a_ldm_x(int lane) { return ((lane >> 4) ^ (lane & 7)) << 2; }
TF32_HD int b_ldm_lane(int lane) { return b_col(lane >> 4, lane & 7) * BK; }
TF32_HD int b_ldm_tile(int p) { return (((p >> 1) << 5) + ((p & 1) << 1)) * BK; }
TF32_HD int b_ldm_x(int lane) { return (((lane >> 3) & 1) ^ (lane & 7)) << 2; }
// Row-major (LDS.128): offset = rm_lane + wbase + (kk + 4*hi)*rows + 32*half.
TF32_HD int rm_lane(int rows, int lane) { return (lane & 3) * rows + (((lane >> 2) ^ ((lane & 3) << 1)) << 2); }

// Epilogue: accumulator c[mt][nt][2h + e] of lane (g, t) is C(warp row a_row(mt, h, g),
// warp column b_col(nt, 2t + e)) = column 32*(nt/4) + 8t + 4e + nt%4, so for fixed (mt, h,
// half = nt/4, e) the four nt%4 values are 4 adjacent columns starting at epi_col(half, t, e).
TF32_HD int epi_col(int half, int t, int e) { return (half << 5) + (t << 3) + (e << 2); }

// Block `pid` (row-major over a tiles_m x tiles_n grid) -> its C tile (*tm, *tn): groups of
// GROUP tile rows are walked column by column, so the blocks resident at one time share A
// and B tiles in L2 (a plain row-major walk streams all of B through L2 for every few rows).
constexpr int GROUP = 8;
TF32_HD void block_tile(int pid, int tiles_m, int tiles_n, int* tm, int* tn) {
  const int per_group = GROUP * tiles_n, first = pid / per_group * GROUP;
  const int rows = tiles_m - first < GROUP ? tiles_m - first : GROUP;
  const int in_group = pid % per_group;
  *tm = first + in_group % rows;
  *tn = in_group / rows;
}

}  // namespace tf32mma
}  // namespace pyengine
