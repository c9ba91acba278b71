"""Batched matmul, shared-memory tiled, with linear's bias and activation fused in.

c[z] = act(a[z] @ b[z] + bias) for 3-D views of any strides (transposed operands are read
in place, never copied). A batch of size 1 is broadcast against the other operand, which
covers ``x @ w.T`` for every batch without materialising the weight per batch. Each
TILE x TILE block stages a TILE x KT slab of a and a KT x TILE slab of b in shared memory per
step along k (two elements per thread, one barrier pair per KT), so
every element of the inputs is read from global memory once per tile instead of once per
output.
"""
from numba import cuda, float32

from . import SIMULATOR, activation, kernel

# 16x16 blocks on a GPU; 8x8 under the simulator, whose cost grows with the threads
# waiting at each barrier (the tests' sizes are multiples of neither).
TILE = 8 if SIMULATOR else 16
KT = 2 * TILE   # reduction depth staged per barrier: half the syncs of a square tile


@cuda.jit(device=True)
def tile_product(sa, sb, tx, ty, acc):
    """acc plus row ty of the staged a slab times column tx of the b slab, between the
    barriers that wait for the slabs to fill and keep them until every thread has read."""
    cuda.syncthreads()
    for kk in range(KT):
        acc += sa[ty, kk] * sb[kk, tx]
    cuda.syncthreads()
    return acc


@kernel("void(float32[:, :, :], float32[:, :, :], float32[:, :, :], float32[:], int32, int32, float32)")
def gemm(a, b, c, bias, has_bias, act, param):
    sa = cuda.shared.array((TILE, KT), float32)
    sb = cuda.shared.array((KT, TILE), float32)
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    row = cuda.blockIdx.y * TILE + ty
    col = cuda.blockIdx.x * TILE + tx
    z = cuda.blockIdx.z
    za = z if a.shape[0] > 1 else 0
    zb = z if b.shape[0] > 1 else 0
    m = c.shape[1]
    n = c.shape[2]
    kdim = a.shape[2]
    acc = float32(0)
    for k0 in range(0, kdim, KT):
        for h in range(0, KT, TILE):
            ka = k0 + h + tx
            kb = k0 + h + ty
            # Out-of-range lanes stage zeros so the inner loop needs no bounds test.
            sa[ty, h + tx] = a[za, row, ka] if row < m and ka < kdim else float32(0)
            sb[h + ty, tx] = b[zb, kb, col] if kb < kdim and col < n else float32(0)
        acc = tile_product(sa, sb, tx, ty, acc)
    if row < m and col < n:
        if has_bias:
            acc += bias[col]
        c[z, row, col] = activation.apply(act, acc, param)
