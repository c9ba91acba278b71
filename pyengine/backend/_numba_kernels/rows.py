"""Block-wide reductions for the row kernels (softmax, cross-entropy, layer norm): one block
of ROW_THREADS threads per row, each thread striding over the columns, then a shared-memory
tree. A warp per row keeps the simulator cheap and still saturates short rows on a GPU."""
from numba import cuda

ROW_THREADS = 32


@cuda.jit(device=True)
def _block_reduce(sh, v, take_max):
    t = cuda.threadIdx.x
    sh[t] = v
    cuda.syncthreads()
    s = ROW_THREADS // 2
    while s > 0:
        if t < s:
            sh[t] = max(sh[t], sh[t + s]) if take_max else sh[t] + sh[t + s]
        cuda.syncthreads()
        s //= 2
    r = sh[0]
    # Everyone has read the total before the buffer is reused by the next reduction.
    cuda.syncthreads()
    return r


@cuda.jit(device=True)
def block_sum(sh, v):
    return _block_reduce(sh, v, False)


@cuda.jit(device=True)
def block_max(sh, v):
    return _block_reduce(sh, v, True)
