"""Max, average and adaptive-average pooling over NCHW images."""
from pyengine.autograd import Function


class MaxPool2d(Function):
    @staticmethod
    def forward(ctx, x, kernel_size, stride, padding, dilation, ceil_mode):
        y, indices = ctx.backend.max_pool2d(x, kernel_size, stride, padding, dilation, ceil_mode)
        ctx.save_for_backward(indices)
        ctx.x_shape = x.shape
        ctx.mark_non_differentiable(indices)
        return y, indices

    @staticmethod
    def backward(ctx, gy, _gindices):
        (indices,) = ctx.saved_tensors
        gx = ctx.backend.max_pool2d_backward(gy, indices, ctx.x_shape)
        return gx, None, None, None, None, None


class AvgPool2d(Function):
    @staticmethod
    def forward(ctx, x, kernel_size, stride, padding, ceil_mode, count_include_pad,
                divisor_override):
        ctx.x_shape = x.shape
        ctx.conf = (kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)
        return ctx.backend.avg_pool2d(x, *ctx.conf)

    @staticmethod
    def backward(ctx, gy):
        gx = ctx.backend.avg_pool2d_backward(gy, ctx.x_shape, *ctx.conf)
        return (gx,) + (None,) * 6


def _averaging_matrix(xp, n_in, n_out, dtype):
    """(n_out, n_in) rows averaging PyTorch's adaptive windows [floor(i*n/o), ceil((i+1)*n/o))."""
    i = xp.arange(n_out)
    start = (i * n_in) // n_out
    end = -((-(i + 1) * n_in) // n_out)
    j = xp.arange(n_in)
    inside = (j[None, :] >= start[:, None]) & (j[None, :] < end[:, None])
    return inside.astype(dtype) / (end - start).astype(dtype)[:, None]


class AdaptiveAvgPool2d(Function):
    """Windows of varying size are two small averaging matrices: y = A_h @ x @ A_w.T.

    That keeps the op on the backend's matmul (one GEMM per side) instead of a Python loop
    over windows, and the backward is the same product with the matrices transposed.
    """

    @staticmethod
    def forward(ctx, x, output_size):
        xp, mm = ctx.backend.xp, ctx.backend.matmul
        a_h = _averaging_matrix(xp, x.shape[-2], output_size[0], x.dtype)
        a_w = _averaging_matrix(xp, x.shape[-1], output_size[1], x.dtype)
        ctx.save_for_backward(a_h, a_w)
        return mm(mm(a_h, x), a_w.T)

    @staticmethod
    def backward(ctx, gy):
        a_h, a_w = ctx.saved_tensors
        mm = ctx.backend.matmul
        return mm(mm(a_h.T, gy), a_w), None
