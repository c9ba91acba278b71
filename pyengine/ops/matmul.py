"""Matrix product through the backend's matmul kernel family."""
from __future__ import annotations

from ..autograd import Function
from .broadcast import sum_to_shape


class Matmul(Function):
    """``a @ b`` for ndim >= 2 operands (the Tensor layer promotes 1-D ones).

    Backward is two more matmuls on transposed views; batch dims that broadcast are summed
    back to each operand's shape.
    """

    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = (a.shape, b.shape)
        ctx.save_for_backward(a if ctx.needs_input_grad[1] else None,
                              b if ctx.needs_input_grad[0] else None)
        return ctx.backend.matmul(a, b)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        mm = ctx.backend.matmul
        ga = sum_to_shape(mm(g, b.swapaxes(-1, -2)), ctx.shapes[0]) if b is not None else None
        gb = sum_to_shape(mm(a.swapaxes(-1, -2), g), ctx.shapes[1]) if a is not None else None
        return ga, gb
