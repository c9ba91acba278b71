"""dtype casts and device transfers, differentiable like any other op."""
from __future__ import annotations

from ..autograd import Function
from ..backend import get_backend


class Cast(Function):
    @staticmethod
    def forward(ctx, x, np_dtype):
        ctx.src = x.dtype
        return x.astype(np_dtype)

    @staticmethod
    def backward(ctx, g):
        return g.astype(ctx.src), None


class ToDevice(Function):
    """Copy to another device through the host (backend.to_numpy, then asarray)."""

    @staticmethod
    def forward(ctx, x, device):
        ctx.out_device = device
        return get_backend(device).asarray(ctx.backend.to_numpy(x))

    @staticmethod
    def backward(ctx, g):
        return ctx.backend.asarray(get_backend(ctx.out_device).to_numpy(g)), None
