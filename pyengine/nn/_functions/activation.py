"""Pointwise activations: the backend's table for the named ones, ELU as glue."""
from pyengine.autograd import Function


class Activation(Function):
    """Any name of ``pyengine.backend.ACTIVATIONS``; ``param`` as the backend table defines it."""

    @staticmethod
    def forward(ctx, x, name, param):
        y = ctx.backend.activation(name, x, param)
        ctx.save_for_backward(x, y)
        ctx.conf = (name, param)
        return y

    @staticmethod
    def backward(ctx, gy):
        x, y = ctx.saved_tensors
        name, param = ctx.conf
        return ctx.backend.activation_backward(name, gy, x, y, param), None, None


class Elu(Function):
    @staticmethod
    def forward(ctx, x, alpha):
        xp = ctx.backend.xp
        # expm1 only of the non-positive part, so large positive inputs never overflow.
        neg = alpha * xp.expm1(xp.minimum(x, 0))
        y = xp.where(x > 0, x, neg).astype(x.dtype, copy=False)
        ctx.save_for_backward(x, y)
        ctx.alpha = alpha
        return y

    @staticmethod
    def backward(ctx, gy):
        x, y = ctx.saved_tensors
        # d/dx alpha*(e^x - 1) = y + alpha on the negative side.
        slope = ctx.backend.xp.where(x > 0, 1, y + ctx.alpha).astype(gy.dtype, copy=False)
        return gy * slope, None
