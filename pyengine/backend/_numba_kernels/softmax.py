"""Softmax / log-softmax over the last axis of a (rows, cols) array, and the fused
cross-entropy (log-sum-exp, the target's logit and the smoothing mean in one pass per row).
One block per row; see rows.py."""
import math

from numba import cuda, float32

from . import kernel
from .rows import ROW_THREADS, block_max, block_sum


@cuda.jit(device=True)
def _row_lse(sh, x, r):
    """Max-subtracted log-sum-exp of row r (-inf for a row of -inf, NaN follows later)."""
    m = float32(-math.inf)
    for j in range(cuda.threadIdx.x, x.shape[1], ROW_THREADS):
        m = max(m, x[r, j])
    m = block_max(sh, m)
    shift = m if m > float32(-math.inf) else float32(0)
    s = float32(0)
    for j in range(cuda.threadIdx.x, x.shape[1], ROW_THREADS):
        s += math.exp(x[r, j] - shift)
    s = block_sum(sh, s)
    return m, shift + math.log(s) if s > float32(0) else float32(-math.inf)


@kernel("void(float32[:, :], float32[:, :], int32)")
def forward(x, y, log):
    sh = cuda.shared.array(ROW_THREADS, float32)
    r = cuda.blockIdx.x
    m, lse = _row_lse(sh, x, r)
    for j in range(cuda.threadIdx.x, x.shape[1], ROW_THREADS):
        # A row of all -inf gives -inf - -inf = NaN, PyTorch's answer for it.
        y[r, j] = x[r, j] - lse if log else math.exp(x[r, j] - lse)


@kernel("void(float32[:, :], float32[:, :], float32[:, :], int32)")
def backward(gy, y, gx, log):
    sh = cuda.shared.array(ROW_THREADS, float32)
    r = cuda.blockIdx.x
    s = float32(0)
    for j in range(cuda.threadIdx.x, y.shape[1], ROW_THREADS):
        s += gy[r, j] if log else gy[r, j] * y[r, j]
    s = block_sum(sh, s)
    for j in range(cuda.threadIdx.x, y.shape[1], ROW_THREADS):
        if log:
            gx[r, j] = gy[r, j] - math.exp(y[r, j]) * s
        else:
            gx[r, j] = y[r, j] * (gy[r, j] - s)


@kernel("void(float32[:, :], int64[:], float32[:], float32[:], int64, float32)")
def cross_entropy_forward(x, target, loss, lse_out, ignore_index, smoothing):
    sh = cuda.shared.array(ROW_THREADS, float32)
    r = cuda.blockIdx.x
    c = x.shape[1]
    m, lse = _row_lse(sh, x, r)
    total = float32(0)
    for j in range(cuda.threadIdx.x, c, ROW_THREADS):
        total += x[r, j]
    total = block_sum(sh, total)
    if cuda.threadIdx.x == 0:
        lse_out[r] = lse
        t = target[r]
        if t == ignore_index:
            loss[r] = float32(0)
        else:
            # PyTorch: (1 - eps) * nll + eps * mean over classes of -log p_c.
            loss[r] = ((float32(1) - smoothing) * (lse - x[r, t])
                       + smoothing * (lse - total / float32(c)))


@kernel("void(float32[:], float32[:, :], int64[:], float32[:], float32[:, :], int64, float32)")
def cross_entropy_backward(gloss, x, target, lse, gx, ignore_index, smoothing):
    r = cuda.blockIdx.x
    c = x.shape[1]
    t = target[r]
    g = float32(0) if t == ignore_index else gloss[r]
    for j in range(cuda.threadIdx.x, c, ROW_THREADS):
        d = math.exp(x[r, j] - lse[r]) - smoothing / float32(c)
        if j == t:
            d -= float32(1) - smoothing
        gx[r, j] = g * d
