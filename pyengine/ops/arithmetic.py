"""Elementwise arithmetic: binary operators, unary math, clamp, maximum/minimum, where.

Binary inputs may be arrays or Python scalars (the Tensor layer has already promoted dtypes);
gradients are summed back to each input's shape because the forward broadcasts.
"""
from __future__ import annotations

import numpy as np

from ..autograd import Function
from .broadcast import sum_to_shape


def _shape(a):
    return getattr(a, "shape", ())


class _Binary(Function):
    @staticmethod
    def _shapes(ctx, a, b):
        ctx.shapes = (_shape(a), _shape(b))

    @staticmethod
    def _reduce(ctx, ga, gb):
        na, nb = ctx.needs_input_grad
        return (sum_to_shape(ga, ctx.shapes[0]) if na else None,
                sum_to_shape(gb, ctx.shapes[1]) if nb else None)


class Add(_Binary):
    @staticmethod
    def forward(ctx, a, b):
        _Binary._shapes(ctx, a, b)
        return a + b

    @staticmethod
    def backward(ctx, g):
        return _Binary._reduce(ctx, g, g)


class Sub(_Binary):
    @staticmethod
    def forward(ctx, a, b):
        _Binary._shapes(ctx, a, b)
        return a - b

    @staticmethod
    def backward(ctx, g):
        return _Binary._reduce(ctx, g, -g if ctx.needs_input_grad[1] else None)


class Mul(_Binary):
    @staticmethod
    def forward(ctx, a, b):
        _Binary._shapes(ctx, a, b)
        # Save only what the wanted gradients read, so in-place ops elsewhere stay legal.
        ctx.save_for_backward(b if ctx.needs_input_grad[0] else None,
                              a if ctx.needs_input_grad[1] else None)
        return a * b

    @staticmethod
    def backward(ctx, g):
        b, a = ctx.saved_tensors
        return _Binary._reduce(ctx, g * b if b is not None else None,
                               g * a if a is not None else None)


class Div(_Binary):
    @staticmethod
    def forward(ctx, a, b):
        _Binary._shapes(ctx, a, b)
        out = a / b
        ctx.save_for_backward(b, out if ctx.needs_input_grad[1] else None)
        return out

    @staticmethod
    def backward(ctx, g):
        b, out = ctx.saved_tensors
        ga = g / b
        return _Binary._reduce(ctx, ga, -ga * out if out is not None else None)


class Pow(_Binary):
    @staticmethod
    def forward(ctx, a, b):
        _Binary._shapes(ctx, a, b)
        out = a ** b
        ctx.save_for_backward(a, b, out)
        return out

    @staticmethod
    def backward(ctx, g):
        a, b, out = ctx.saved_tensors
        xp = ctx.backend.xp
        ga = None
        if ctx.needs_input_grad[0]:
            # b * a**(b-1) is 0 * inf at a == 0, b == 0; PyTorch defines the gradient as 0 there.
            with np.errstate(divide="ignore", invalid="ignore"):
                ga = xp.where(xp.asarray(b) == 0, 0, g * b * a ** (b - 1)).astype(g.dtype)
        gb = None
        if ctx.needs_input_grad[1]:
            # d(a**b)/db = a**b * log(a); PyTorch defines it as 0 where a == 0.
            with np.errstate(divide="ignore", invalid="ignore"):
                gb = g * xp.where(a == 0, 0, out * xp.log(xp.where(a == 0, 1, a)))
        return _Binary._reduce(ctx, ga, gb)


class Neg(Function):
    @staticmethod
    def forward(ctx, x):
        return -x

    @staticmethod
    def backward(ctx, g):
        return -g


class Exp(Function):
    @staticmethod
    def forward(ctx, x):
        y = ctx.backend.xp.exp(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return g * y


class Log(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        with np.errstate(divide="ignore", invalid="ignore"):
            return ctx.backend.xp.log(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g / x


class Sqrt(Function):
    @staticmethod
    def forward(ctx, x):
        with np.errstate(invalid="ignore"):
            y = ctx.backend.xp.sqrt(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        with np.errstate(divide="ignore"):
            return g / (2 * y)


class Abs(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return ctx.backend.xp.abs(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * ctx.backend.xp.sign(x)


class Clamp(Function):
    """clamp(x, min, max) with scalar bounds; the gradient passes where min <= x <= max."""

    @staticmethod
    def forward(ctx, x, lo, hi):
        xp = ctx.backend.xp
        keep = xp.ones(x.shape, dtype=bool)
        y = x
        if lo is not None:
            keep &= x >= lo
            y = xp.maximum(y, xp.asarray(lo, dtype=x.dtype))
        if hi is not None:
            keep &= x <= hi
            y = xp.minimum(y, xp.asarray(hi, dtype=x.dtype))
        ctx.save_for_backward(keep)
        return y if y is not x else x.copy()

    @staticmethod
    def backward(ctx, g):
        (keep,) = ctx.saved_tensors
        return g * keep, None, None


class Maximum(_Binary):
    """maximum(a, b); where a == b each side gets half the gradient, as PyTorch."""

    @staticmethod
    def forward(ctx, a, b):
        _Binary._shapes(ctx, a, b)
        ctx.save_for_backward(a, b)
        return ctx.backend.xp.maximum(a, b)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        share = ((a > b) + 0.5 * (a == b)).astype(g.dtype)
        return _Binary._reduce(ctx, g * share, g * (1 - share))


class Minimum(_Binary):
    @staticmethod
    def forward(ctx, a, b):
        _Binary._shapes(ctx, a, b)
        ctx.save_for_backward(a, b)
        return ctx.backend.xp.minimum(a, b)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        share = ((a < b) + 0.5 * (a == b)).astype(g.dtype)
        return _Binary._reduce(ctx, g * share, g * (1 - share))


class Where(Function):
    @staticmethod
    def forward(ctx, cond, a, b):
        ctx.shapes = (_shape(a), _shape(b))
        ctx.save_for_backward(cond)
        return ctx.backend.xp.where(cond, a, b)

    @staticmethod
    def backward(ctx, g):
        (cond,) = ctx.saved_tensors
        _, na, nb = ctx.needs_input_grad
        zero = g.dtype.type(0)
        return (None,
                sum_to_shape(ctx.backend.xp.where(cond, g, zero), ctx.shapes[0]) if na else None,
                sum_to_shape(ctx.backend.xp.where(cond, zero, g), ctx.shapes[1]) if nb else None)


class NonDiff(Function):
    """Ops whose result carries no gradient (comparisons, logical ops): ``op(*arrays)``."""

    @staticmethod
    def forward(ctx, op, *arrays):
        return op(*arrays)
