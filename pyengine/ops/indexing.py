"""Indexing: __getitem__ (backward through backend.scatter_add), index assignment,
masked_fill, tril/triu."""
from __future__ import annotations

import numpy as np

from ..autograd import Function
from .broadcast import sum_to_shape


class GetItem(Function):
    """``x[index]`` for any basic/advanced index; repeated indices accumulate in backward."""

    is_view = True

    @staticmethod
    def forward(ctx, x, index):
        ctx.shape, ctx.index = x.shape, index
        return x[index]

    @staticmethod
    def backward(ctx, g):
        return ctx.backend.scatter_add(ctx.shape, ctx.index, g), None


class SetItem(Function):
    """Out-of-place ``x[index] = value``; Tensor.__setitem__ writes the result back."""

    @staticmethod
    def forward(ctx, x, value, index):
        ctx.index, ctx.vshape = index, tuple(np.shape(value))
        out = x.copy()
        out[index] = value
        return out

    @staticmethod
    def backward(ctx, g):
        gx = gv = None
        if ctx.needs_input_grad[0]:
            gx = g.copy()
            gx[ctx.index] = 0
        if ctx.needs_input_grad[1]:
            gv = sum_to_shape(g[ctx.index], ctx.vshape)
        return gx, gv, None


class MaskedFill(Function):
    """``x`` with ``value`` where ``mask`` (broadcastable to x) is True."""

    @staticmethod
    def forward(ctx, x, mask, value):
        xp = ctx.backend.xp
        mask = xp.broadcast_to(mask, x.shape)
        ctx.save_for_backward(mask)
        ctx.vshape = tuple(np.shape(value))
        return xp.where(mask, xp.asarray(value, dtype=x.dtype), x)

    @staticmethod
    def backward(ctx, g):
        (mask,) = ctx.saved_tensors
        gv = g[mask].sum().reshape(ctx.vshape) if ctx.needs_input_grad[2] else None
        return g * ~mask, None, gv


class Tri(Function):
    """tril (upper=False) or triu (upper=True) of the last two dims."""

    @staticmethod
    def forward(ctx, x, diagonal, upper):
        ctx.diagonal, ctx.upper = diagonal, upper
        xp = ctx.backend.xp
        return xp.triu(x, diagonal) if upper else xp.tril(x, diagonal)

    @staticmethod
    def backward(ctx, g):
        xp = ctx.backend.xp
        return (xp.triu(g, ctx.diagonal) if ctx.upper else xp.tril(g, ctx.diagonal)), None, None
