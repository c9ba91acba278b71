"""Constant padding; negative amounts crop, as in PyTorch."""
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
