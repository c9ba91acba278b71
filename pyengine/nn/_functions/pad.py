"""Padding: constant (negative amounts crop, as in PyTorch), reflect, replicate, circular."""
from pyengine.autograd import Function


def _slices(shape, pairs):
    """Where the kept part of the input sits in the input and in the output, per dim.

    ``pairs`` holds (before, after) for each dim of ``shape``, in order.
    """
    src, dst, out_shape = [], [], []
    for n, (lo, hi) in zip(shape, pairs):
        keep = n - max(-lo, 0) - max(-hi, 0)
        src.append(slice(max(-lo, 0), max(-lo, 0) + max(keep, 0)))
        dst.append(slice(max(lo, 0), max(lo, 0) + max(keep, 0)))
        out_shape.append(n + lo + hi)
    return tuple(src), tuple(dst), tuple(out_shape)


class ConstantPad(Function):
    @staticmethod
    def forward(ctx, x, pairs, value):
        src, dst, out_shape = _slices(x.shape, pairs)
        y = ctx.backend.xp.full(out_shape, value, dtype=x.dtype)
        y[dst] = x[src]
        ctx.conf = (x.shape, src, dst)
        return y

    @staticmethod
    def backward(ctx, gy):
        x_shape, src, dst = ctx.conf
        gx = ctx.backend.xp.zeros(x_shape, dtype=gy.dtype)
        gx[src] = gy[dst]
        return gx, None, None


def _source_positions(xp, n, lo, hi, mode):
    """For each output position along one dim, the input position it copies."""
    i = xp.arange(-lo, n + hi)
    if mode == "replicate":
        return xp.clip(i, 0, n - 1)
    if mode == "circular":
        return i % n
    i = xp.abs(i)  # reflect: mirror about the first and the last element
    return xp.where(i > n - 1, 2 * (n - 1) - i, i)


class IndexPad(Function):
    """reflect / replicate / circular padding as one gather; its gradient is a scatter-add,
    so every output copied from the same input element adds into that element."""

    @staticmethod
    def forward(ctx, x, pairs, mode):
        xp = ctx.backend.xp
        # Every dim from the first padded one on gets an index array, so the arrays are
        # adjacent and NumPy keeps the result's dims in place.
        first = next((d for d, p in enumerate(pairs) if p != (0, 0)), x.ndim)
        padded = range(first, x.ndim)
        index = [slice(None)] * x.ndim
        for k, d in enumerate(padded):
            pos = _source_positions(xp, x.shape[d], *pairs[d], mode)
            # Open mesh: each dim's positions on their own axis, so the arrays broadcast.
            index[d] = pos.reshape((-1,) + (1,) * (len(padded) - 1 - k))
        index = tuple(index)
        ctx.conf = (x.shape, index)
        return x[index]

    @staticmethod
    def backward(ctx, gy):
        x_shape, index = ctx.conf
        return ctx.backend.scatter_add(x_shape, index, gy), None, None
