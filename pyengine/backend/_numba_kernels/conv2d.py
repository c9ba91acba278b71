"""Convolution as implicit GEMM: the im2col matrix is never stored, each tile of it is
gathered from the image straight into shared memory.

Per group g (grid z), with r = (c, i, j) running over a filter and q = (n, ho, wo) over
output pixels:
  forward      y[o, q]  = sum_r  w[o, r]  * col[r, q]       col[r, q] = x[n, c, h, w] or 0
  bwd-data     gx[c, p] = sum_(o,i,j) w[o, c, i, j] * gy[n, o, ho, wo], p = (n, h, w), with
               ho = (h + pad - i*dil) / stride where that division is exact and in range
  bwd-weight   gw[o, r] = sum_q  gy[o, q] * col[r, q]
Each is the tiled GEMM of matmul.py with a different gather for its two operand tiles.
"""
from numba import cuda, float32

from . import SIMULATOR, kernel

# 16x16 blocks on a GPU; 8x8 under the simulator, whose cost grows with the threads
# waiting at each barrier (the tests' sizes are multiples of neither).
TILE = 8 if SIMULATOR else 16
KT = 2 * TILE   # reduction depth staged per barrier: half the syncs of a square tile

_SIG4 = "float32[:, :, :, :]"


@kernel(f"void({_SIG4}, {_SIG4}, float32[:], int32, {_SIG4}, "
        "int32, int32, int32, int32, int32, int32, int32)")
def forward(x, w, bias, has_bias, y, sh, sw, ph, pw, dh, dw, groups):
    sa = cuda.shared.array((TILE, KT), float32)
    sb = cuda.shared.array((KT, TILE), float32)
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    g = cuda.blockIdx.z
    n_img, _, h_in, w_in = x.shape
    o_pg = w.shape[0] // groups
    c_pg, kh, kw = w.shape[1], w.shape[2], w.shape[3]
    ho_n, wo_n = y.shape[2], y.shape[3]
    red = c_pg * kh * kw
    ncols = n_img * ho_n * wo_n
    o = cuda.blockIdx.y * TILE + ty             # output row this thread accumulates
    q = cuda.blockIdx.x * TILE + tx             # output pixel this thread accumulates
    # The pixel whose column this thread gathers for the b tile (same q as its output).
    qn = q // (ho_n * wo_n)
    qho = (q // wo_n) % ho_n
    qwo = q % wo_n
    acc = float32(0)
    for r0 in range(0, red, KT):
        for h in range(0, KT, TILE):
            ra = r0 + h + tx
            if o < o_pg and ra < red:
                sa[ty, h + tx] = w[g * o_pg + o, ra // (kh * kw), (ra // kw) % kh, ra % kw]
            else:
                sa[ty, h + tx] = float32(0)
            rb = r0 + h + ty
            val = float32(0)
            if rb < red and q < ncols:
                c = rb // (kh * kw)
                hi = qho * sh - ph + ((rb // kw) % kh) * dh
                wi = qwo * sw - pw + (rb % kw) * dw
                if 0 <= hi < h_in and 0 <= wi < w_in:
                    val = x[qn, g * c_pg + c, hi, wi]
            sb[h + ty, tx] = val
        cuda.syncthreads()
        for kk in range(KT):
            acc += sa[ty, kk] * sb[kk, tx]
        cuda.syncthreads()
    if o < o_pg and q < ncols:
        if has_bias:
            acc += bias[g * o_pg + o]
        y[qn, g * o_pg + o, qho, qwo] = acc


@kernel(f"void({_SIG4}, {_SIG4}, {_SIG4}, int32, int32, int32, int32, int32, int32, int32)")
def backward_data(gy, w, gx, sh, sw, ph, pw, dh, dw, groups):
    sa = cuda.shared.array((TILE, KT), float32)
    sb = cuda.shared.array((KT, TILE), float32)
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    g = cuda.blockIdx.z
    n_img, _, h_in, w_in = gx.shape
    o_pg = w.shape[0] // groups
    c_pg, kh, kw = w.shape[1], w.shape[2], w.shape[3]
    ho_n, wo_n = gy.shape[2], gy.shape[3]
    red = o_pg * kh * kw
    ncols = n_img * h_in * w_in
    c = cuda.blockIdx.y * TILE + ty
    p = cuda.blockIdx.x * TILE + tx
    pn = p // (h_in * w_in)
    ph_ = (p // w_in) % h_in
    pw_ = p % w_in
    acc = float32(0)
    for r0 in range(0, red, KT):
        for h in range(0, KT, TILE):
            ra = r0 + h + tx
            if c < c_pg and ra < red:
                sa[ty, h + tx] = w[g * o_pg + ra // (kh * kw), c, (ra // kw) % kh, ra % kw]
            else:
                sa[ty, h + tx] = float32(0)
            rb = r0 + h + ty
            val = float32(0)
            if rb < red and p < ncols:
                th = ph_ + ph - ((rb // kw) % kh) * dh
                tw = pw_ + pw - (rb % kw) * dw
                if th >= 0 and tw >= 0 and th % sh == 0 and tw % sw == 0:
                    ho = th // sh
                    wo = tw // sw
                    if ho < ho_n and wo < wo_n:
                        val = gy[pn, g * o_pg + rb // (kh * kw), ho, wo]
            sb[h + ty, tx] = val
        cuda.syncthreads()
        for kk in range(KT):
            acc += sa[ty, kk] * sb[kk, tx]
        cuda.syncthreads()
    if c < c_pg and p < ncols:
        gx[pn, g * c_pg + c, ph_, pw_] = acc


@kernel(f"void({_SIG4}, {_SIG4}, {_SIG4}, int32, int32, int32, int32, int32, int32, int32)")
def backward_weight(gy, x, gw, sh, sw, ph, pw, dh, dw, groups):
    sa = cuda.shared.array((TILE, KT), float32)
    sb = cuda.shared.array((KT, TILE), float32)
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    g = cuda.blockIdx.z
    n_img, _, h_in, w_in = x.shape
    o_pg = gw.shape[0] // groups
    c_pg, kh, kw = gw.shape[1], gw.shape[2], gw.shape[3]
    ho_n, wo_n = gy.shape[2], gy.shape[3]
    red = n_img * ho_n * wo_n
    ncols = c_pg * kh * kw
    o = cuda.blockIdx.y * TILE + ty
    r = cuda.blockIdx.x * TILE + tx
    rc = r // (kh * kw)
    ri = (r // kw) % kh
    rj = r % kw
    acc = float32(0)
    for q0 in range(0, red, KT):
        for h in range(0, KT, TILE):
            qa = q0 + h + tx
            if o < o_pg and qa < red:
                sa[ty, h + tx] = gy[qa // (ho_n * wo_n), g * o_pg + o, (qa // wo_n) % ho_n, qa % wo_n]
            else:
                sa[ty, h + tx] = float32(0)
            qb = q0 + h + ty
            val = float32(0)
            if qb < red and r < ncols:
                hi = ((qb // wo_n) % ho_n) * sh - ph + ri * dh
                wi = (qb % wo_n) * sw - pw + rj * dw
                if 0 <= hi < h_in and 0 <= wi < w_in:
                    val = x[qb // (ho_n * wo_n), g * c_pg + rc, hi, wi]
            sb[h + ty, tx] = val
        cuda.syncthreads()
        for kk in range(KT):
            acc += sa[ty, kk] * sb[kk, tx]
        cuda.syncthreads()
    if o < o_pg and r < ncols:
        gw[g * o_pg + o, rc, ri, rj] = acc
