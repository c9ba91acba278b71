"""2-D convolution (cross-correlation, as PyTorch) over NCHW images."""
from pyengine.autograd import Function


class Conv2d(Function):
    @staticmethod
    def forward(ctx, x, w, b, stride, padding, dilation, groups):
        ctx.save_for_backward(x, w)
        ctx.conf = (stride, padding, dilation, groups)
        return ctx.backend.conv2d(x, w, b, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx, gy):
        x, w = ctx.saved_tensors
        needs = tuple(ctx.needs_input_grad[:3])
        gx, gw, gb = ctx.backend.conv2d_backward(gy, x, w, *ctx.conf, needs=needs)
        return gx, gw, gb, None, None, None, None
