"""Shape ops: reshape, permute, expand, repeat, contiguous, clone, cat, stack.

Reshape, permute and expand return views where the backend can (``is_view``), so they share
their input's version counter: an in-place change through the view is seen by both.
"""
from __future__ import annotations

import numpy as np

from ..autograd import Function
from .broadcast import sum_to_shape


class Reshape(Function):
    is_view = True

    @staticmethod
    def forward(ctx, x, shape):
        ctx.shape = x.shape
        return x.reshape(shape)

    @staticmethod
    def backward(ctx, g):
        return g.reshape(ctx.shape), None


class Permute(Function):
    is_view = True

    @staticmethod
    def forward(ctx, x, dims):
        ctx.inverse = tuple(int(i) for i in np.argsort(dims))
        return x.transpose(dims)

    @staticmethod
    def backward(ctx, g):
        return g.transpose(ctx.inverse), None


class Expand(Function):
    is_view = True

    @staticmethod
    def forward(ctx, x, shape):
        ctx.shape = x.shape
        return ctx.backend.xp.broadcast_to(x, shape)

    @staticmethod
    def backward(ctx, g):
        return sum_to_shape(g, ctx.shape), None


class Repeat(Function):
    """Tile ``x`` (left-padded with size-1 dims to len(reps)) ``reps`` times per dim."""

    @staticmethod
    def forward(ctx, x, reps):
        ctx.orig = x.shape
        x = x.reshape((1,) * (len(reps) - x.ndim) + x.shape)
        ctx.shape, ctx.reps = x.shape, reps
        return ctx.backend.xp.tile(x, reps)

    @staticmethod
    def backward(ctx, g):
        split = [n for pair in zip(ctx.reps, ctx.shape) for n in pair]
        g = g.reshape(split).sum(axis=tuple(range(0, len(split), 2)))
        return g.reshape(ctx.orig), None


class Contiguous(Function):
    @staticmethod
    def forward(ctx, x):
        return ctx.backend.xp.ascontiguousarray(x)

    @staticmethod
    def backward(ctx, g):
        return g


class Clone(Function):
    @staticmethod
    def forward(ctx, x):
        return x.copy()

    @staticmethod
    def backward(ctx, g):
        return g


class Cat(Function):
    @staticmethod
    def forward(ctx, *xs, dim):
        ctx.dim = dim
        ctx.bounds = np.cumsum([x.shape[dim] for x in xs])[:-1].tolist()
        return ctx.backend.xp.concatenate(xs, axis=dim)

    @staticmethod
    def backward(ctx, g):
        return tuple(ctx.backend.xp.split(g, ctx.bounds, axis=ctx.dim))


class Stack(Function):
    @staticmethod
    def forward(ctx, *xs, dim):
        ctx.dim, ctx.n = dim, len(xs)
        return ctx.backend.xp.stack(xs, axis=dim)

    @staticmethod
    def backward(ctx, g):
        return tuple(g.take(i, axis=ctx.dim) for i in range(ctx.n))
