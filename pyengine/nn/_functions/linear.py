"""y = x @ w.T + b over the last dimension of x."""
from pyengine.autograd import Function


class Linear(Function):
    @staticmethod
    def forward(ctx, x, w, b):
        # The backend GEMM sees one 2-D matrix whatever the leading dims are.
        x2 = x.reshape(-1, x.shape[-1])
        ctx.save_for_backward(x2, w)
        ctx.x_shape = x.shape
        y = ctx.backend.linear(x2, w, b)
        return y.reshape(x.shape[:-1] + (w.shape[0],))

    @staticmethod
    def backward(ctx, gy):
        x2, w = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        gy2 = gy.reshape(-1, gy.shape[-1])
        mm = ctx.backend.matmul
        gx = mm(gy2, w).reshape(ctx.x_shape) if need_x else None
        gw = mm(gy2.T, x2) if need_w else None
        gb = gy2.sum(axis=0) if need_b else None
        return gx, gw, gb
