"""Reductions over dims: sum, mean, var, std, max/min (values and indices), amax/amin.

``dims`` arrive normalised (a tuple of non-negative axes, see ``broadcast.normalize_dims``).
Backward re-inserts the reduced dims and broadcasts the gradient over them.
"""
from __future__ import annotations

from ..autograd import Function


def _keep(g, dims, keepdim):
    """``g`` with the reduced ``dims`` back as size-1 axes."""
    if keepdim:
        return g
    shape = list(g.shape)
    for d in dims:
        shape.insert(d, 1)
    return g.reshape(shape)


def _count(shape, dims):
    n = 1
    for d in dims:
        n *= shape[d]
    return n


class Sum(Function):
    @staticmethod
    def forward(ctx, x, dims, keepdim):
        ctx.shape, ctx.dims, ctx.keepdim = x.shape, dims, keepdim
        return x.sum(axis=dims, keepdims=keepdim)

    @staticmethod
    def backward(ctx, g):
        g = _keep(g, ctx.dims, ctx.keepdim)
        return ctx.backend.xp.broadcast_to(g, ctx.shape), None, None


class Mean(Function):
    @staticmethod
    def forward(ctx, x, dims, keepdim):
        ctx.shape, ctx.dims, ctx.keepdim = x.shape, dims, keepdim
        return x.mean(axis=dims, keepdims=keepdim)

    @staticmethod
    def backward(ctx, g):
        g = _keep(g, ctx.dims, ctx.keepdim) / _count(ctx.shape, ctx.dims)
        return ctx.backend.xp.broadcast_to(g, ctx.shape), None, None


class Var(Function):
    """Variance with ``correction`` (1 = unbiased, PyTorch's default)."""

    @staticmethod
    def forward(ctx, x, dims, correction, keepdim):
        ctx.dims, ctx.keepdim = dims, keepdim
        ctx.denom = max(_count(x.shape, dims) - correction, 0)
        centred = x - x.mean(axis=dims, keepdims=True)
        ctx.save_for_backward(centred)
        total = (centred * centred).sum(axis=dims, keepdims=keepdim)
        return total / ctx.denom if ctx.denom else total * float("nan")

    @staticmethod
    def backward(ctx, g):
        (centred,) = ctx.saved_tensors
        g = _keep(g, ctx.dims, ctx.keepdim)
        scale = 2.0 / ctx.denom if ctx.denom else float("nan")
        return g * centred * scale, None, None, None


class Std(Function):
    """sqrt of Var; where the std is 0 the gradient is 0 rather than 0/0, as PyTorch."""

    @staticmethod
    def forward(ctx, x, dims, correction, keepdim):
        var = Var.forward(ctx, x, dims, correction, keepdim)
        std = ctx.backend.xp.sqrt(var)
        (centred,) = ctx._saved
        ctx.save_for_backward(centred, std)
        return std

    @staticmethod
    def backward(ctx, g):
        centred, std = ctx.saved_tensors
        xp = ctx.backend.xp
        keep = _keep(std, ctx.dims, ctx.keepdim)
        safe = xp.where(keep == 0, 1, keep)
        scale = _keep(g, ctx.dims, ctx.keepdim) / (safe * ctx.denom) if ctx.denom else float("nan")
        return xp.where(keep == 0, 0, scale * centred), None, None, None


class Extreme(Function):
    """max/min over one dim: (values, indices); the gradient goes to the chosen index."""

    @staticmethod
    def forward(ctx, x, dim, keepdim, largest):
        xp = ctx.backend.xp
        idx = xp.expand_dims((x.argmax if largest else x.argmin)(axis=dim), dim)
        values = xp.take_along_axis(x, idx, axis=dim)
        ctx.dim, ctx.n = dim, x.shape[dim]
        ctx.save_for_backward(idx)
        if not keepdim:
            values, idx = values.squeeze(dim), idx.squeeze(dim)
        return values, idx.astype("int64")

    @staticmethod
    def backward(ctx, g, _gidx):
        (idx,) = ctx.saved_tensors
        xp = ctx.backend.xp
        g = g.reshape(idx.shape)
        where = [1] * idx.ndim
        where[ctx.dim] = ctx.n
        hit = xp.arange(ctx.n).reshape(where) == idx
        return hit * g, None, None, None


class AExtreme(Function):
    """amax/amin (and max()/min() over everything): ties share the gradient evenly."""

    @staticmethod
    def forward(ctx, x, dims, keepdim, largest):
        y = (x.max if largest else x.min)(axis=dims, keepdims=True)
        ctx.dims, ctx.keepdim = dims, keepdim
        ctx.save_for_backward(x == y)
        return y if keepdim else y.reshape([n for i, n in enumerate(y.shape) if i not in dims])

    @staticmethod
    def backward(ctx, g):
        (hit,) = ctx.saved_tensors
        g = _keep(g, ctx.dims, ctx.keepdim)
        return hit * (g / hit.sum(axis=ctx.dims, keepdims=True).astype(g.dtype)), None, None, None
