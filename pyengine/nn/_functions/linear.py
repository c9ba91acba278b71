"""y = act(x @ w.T + b) over the last dimension of x; act None for a plain affine map.

The activation goes to the backend's ``linear`` so a GPU can apply it in the GEMM epilogue.
Its backward needs the pre-activation z only for GELU: ReLU's derivative is read off the
output (y > 0 exactly where z > 0), and for GELU z is recomputed by one more GEMM rather than
kept alive through the whole forward pass.
"""
from pyengine.autograd import Function

# backend linear() activation name -> (activation table name, its param)
_ACTIVATIONS = {"relu": ("relu", None), "gelu": ("gelu", "none"), "gelu_tanh": ("gelu", "tanh")}


class Linear(Function):
    @staticmethod
    def forward(ctx, x, w, b, activation):
        # The backend GEMM sees one 2-D matrix whatever the leading dims are.
        x2 = x.reshape(-1, x.shape[-1])
        y = ctx.backend.linear(x2, w, b, activation)
        ctx.save_for_backward(x2, w, b, y if activation == "relu" else None)
        ctx.conf = (x.shape, activation)
        return y.reshape(x.shape[:-1] + (w.shape[0],))

    @staticmethod
    def backward(ctx, gy):
        x2, w, b, y = ctx.saved_tensors
        x_shape, activation = ctx.conf
        backend = ctx.backend
        g = gy.reshape(-1, gy.shape[-1])
        if activation == "relu":
            # y stands in for z too: relu(z) > 0 exactly where z > 0, whichever one the
            # backend reads.
            g = backend.activation_backward("relu", g, y, y)
        elif activation is not None:
            name, param = _ACTIVATIONS[activation]
            z = backend.linear(x2, w, b, None)
            g = backend.activation_backward(name, g, z, None, param)
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        gx = backend.matmul(g, w).reshape(x_shape) if need_x else None
        gw = backend.matmul(g.T, x2) if need_w else None
        gb = g.sum(axis=0) if need_b else None
        return gx, gw, gb, None
