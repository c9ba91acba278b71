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

from . import kernel
from .matmul import KT, TILE, tile_product

_SIG4 = "float32[:, :, :, :]"


# The helpers below are inlined in Numba's IR (inline="always"): compiled on their own, their
# index arithmetic no longer sees that the extents are non-negative, and every floor
# division in the staging loops gains a sign fix-up.
@cuda.jit(device=True, inline="always")
def _split(t, b, c):
    """The flat index t over an (a, b, c) block as its three indices."""
    return t // (b * c), (t // c) % b, t % c


@cuda.jit(device=True, inline="always")
def _geometry(x, w, y, groups):
    """(N, H, W, O/groups, C/groups, kh, kw, Ho, Wo) of input x, weight w and output y, or
    of their gradients."""
    return (x.shape[0], x.shape[2], x.shape[3], w.shape[0] // groups, w.shape[1], w.shape[2],
            w.shape[3], y.shape[2], y.shape[3])


@cuda.jit(device=True, inline="always")
def _col(x, n, c, ho, wo, i, j, sh, sw, ph, pw, dh, dw):
    """col[(c, i, j), (n, ho, wo)]: the pixel of x under tap (i, j) of output pixel
    (ho, wo), 0 in the padding."""
    hi = ho * sh - ph + i * dh
    wi = wo * sw - pw + j * dw
    if 0 <= hi < x.shape[2] and 0 <= wi < x.shape[3]:
        return x[n, c, hi, wi]
    return float32(0)


@kernel(f"void({_SIG4}, {_SIG4}, float32[:], int32, {_SIG4}, "
        "int32, int32, int32, int32, int32, int32, int32)")
def forward(x, w, bias, has_bias, y, sh, sw, ph, pw, dh, dw, groups):
    sa = cuda.shared.array((TILE, KT), float32)
    sb = cuda.shared.array((KT, TILE), float32)
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    g = cuda.blockIdx.z
    n_img, _, _, o_pg, c_pg, kh, kw, ho_n, wo_n = _geometry(x, w, y, groups)
    red = c_pg * kh * kw
    ncols = n_img * ho_n * wo_n
    o = cuda.blockIdx.y * TILE + ty             # output row this thread accumulates
    q = cuda.blockIdx.x * TILE + tx             # output pixel this thread accumulates
    # The pixel whose column this thread gathers for the b tile (same q as its output).
    qn, qho, qwo = _split(q, ho_n, wo_n)
    acc = float32(0)
    for r0 in range(0, red, KT):
        for h in range(0, KT, TILE):
            ra = r0 + h + tx
            c, i, j = _split(ra, kh, kw)
            sa[ty, h + tx] = w[g * o_pg + o, c, i, j] if o < o_pg and ra < red else float32(0)
            rb = r0 + h + ty
            c, i, j = _split(rb, kh, kw)
            in_range = rb < red and q < ncols
            sb[h + ty, tx] = (_col(x, qn, g * c_pg + c, qho, qwo, i, j, sh, sw, ph, pw, dh, dw)
                              if in_range else float32(0))
        acc = tile_product(sa, sb, tx, ty, acc)
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
    n_img, h_in, w_in, o_pg, c_pg, kh, kw, ho_n, wo_n = _geometry(gx, w, gy, groups)
    red = o_pg * kh * kw
    ncols = n_img * h_in * w_in
    c = cuda.blockIdx.y * TILE + ty
    p = cuda.blockIdx.x * TILE + tx
    pn, ph_, pw_ = _split(p, h_in, w_in)
    acc = float32(0)
    for r0 in range(0, red, KT):
        for h in range(0, KT, TILE):
            ra = r0 + h + tx
            o, i, j = _split(ra, kh, kw)
            sa[ty, h + tx] = w[g * o_pg + o, c, i, j] if c < c_pg and ra < red else float32(0)
            rb = r0 + h + ty
            val = float32(0)
            if rb < red and p < ncols:
                o, i, j = _split(rb, kh, kw)
                th = ph_ + ph - i * dh
                tw = pw_ + pw - j * dw
                if th >= 0 and tw >= 0 and th % sh == 0 and tw % sw == 0:
                    ho = th // sh
                    wo = tw // sw
                    if ho < ho_n and wo < wo_n:
                        val = gy[pn, g * o_pg + o, ho, wo]
            sb[h + ty, tx] = val
        acc = tile_product(sa, sb, tx, ty, acc)
    if c < c_pg and p < ncols:
        gx[pn, g * c_pg + c, ph_, pw_] = acc


@kernel(f"void({_SIG4}, {_SIG4}, {_SIG4}, int32, int32, int32, int32, int32, int32, int32)")
def backward_weight(gy, x, gw, sh, sw, ph, pw, dh, dw, groups):
    sa = cuda.shared.array((TILE, KT), float32)
    sb = cuda.shared.array((KT, TILE), float32)
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    g = cuda.blockIdx.z
    n_img, _, _, o_pg, c_pg, kh, kw, ho_n, wo_n = _geometry(x, gw, gy, groups)
    red = n_img * ho_n * wo_n
    ncols = c_pg * kh * kw
    o = cuda.blockIdx.y * TILE + ty
    r = cuda.blockIdx.x * TILE + tx
    rc, ri, rj = _split(r, kh, kw)
    acc = float32(0)
    for q0 in range(0, red, KT):
        for h in range(0, KT, TILE):
            qa = q0 + h + tx
            n, ho, wo = _split(qa, ho_n, wo_n)
            sa[ty, h + tx] = gy[n, g * o_pg + o, ho, wo] if o < o_pg and qa < red else float32(0)
            qb = q0 + h + ty
            n, ho, wo = _split(qb, ho_n, wo_n)
            in_range = qb < red and r < ncols
            sb[h + ty, tx] = (_col(x, n, g * c_pg + rc, ho, wo, ri, rj, sh, sw, ph, pw, dh, dw)
                              if in_range else float32(0))
        acc = tile_product(sa, sb, tx, ty, acc)
    if o < o_pg and r < ncols:
        gw[g * o_pg + o, rc, ri, rj] = acc
