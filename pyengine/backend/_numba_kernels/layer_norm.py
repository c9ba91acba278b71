"""Layer norm over the rows of (M, D): one block per row for the forward and for the input
gradient (two block sums each), one thread per column for the weight and bias gradients."""
import math

from numba import cuda, float32

from . import kernel
from .rows import ROW_THREADS, block_sum


@kernel("void(float32[:, :], float32[:], float32[:], int32, int32, float32, "
        "float32[:, :], float32[:], float32[:])")
def forward(x, weight, bias, has_weight, has_bias, eps, y, mean, rstd):
    sh = cuda.shared.array(ROW_THREADS, float32)
    r = cuda.blockIdx.x
    d = x.shape[1]
    s = float32(0)
    for j in range(cuda.threadIdx.x, d, ROW_THREADS):
        s += x[r, j]
    mu = block_sum(sh, s) / float32(d)
    # Two passes: the centred sum of squares does not cancel the way E[x^2] - mu^2 does.
    s = float32(0)
    for j in range(cuda.threadIdx.x, d, ROW_THREADS):
        s += (x[r, j] - mu) * (x[r, j] - mu)
    rs = float32(1) / math.sqrt(block_sum(sh, s) / float32(d) + eps)
    for j in range(cuda.threadIdx.x, d, ROW_THREADS):
        v = (x[r, j] - mu) * rs
        if has_weight:
            v *= weight[j]
        if has_bias:
            v += bias[j]
        y[r, j] = v
    if cuda.threadIdx.x == 0:
        mean[r] = mu
        rstd[r] = rs


@kernel("void(float32[:, :], float32[:, :], float32[:], int32, float32[:], float32[:], float32[:, :])")
def backward_input(gy, x, weight, has_weight, mean, rstd, gx):
    sh = cuda.shared.array(ROW_THREADS, float32)
    r = cuda.blockIdx.x
    d = x.shape[1]
    mu = mean[r]
    rs = rstd[r]
    s1 = float32(0)
    s2 = float32(0)
    for j in range(cuda.threadIdx.x, d, ROW_THREADS):
        g = gy[r, j] * weight[j] if has_weight else gy[r, j]
        s1 += g
        s2 += g * (x[r, j] - mu) * rs
    s1 = block_sum(sh, s1) / float32(d)
    s2 = block_sum(sh, s2) / float32(d)
    for j in range(cuda.threadIdx.x, d, ROW_THREADS):
        g = gy[r, j] * weight[j] if has_weight else gy[r, j]
        gx[r, j] = rs * (g - s1 - (x[r, j] - mu) * rs * s2)


@kernel("void(float32[:, :], float32[:, :], float32[:], float32[:], float32[:], float32[:])")
def backward_params(gy, x, mean, rstd, gw, gb):
    j = cuda.grid(1)
    if j < x.shape[1]:
        sw = float32(0)
        sb = float32(0)
        for r in range(x.shape[0]):
            sw += gy[r, j] * (x[r, j] - mean[r]) * rstd[r]
            sb += gy[r, j]
        gw[j] = sw
        gb[j] = sb
