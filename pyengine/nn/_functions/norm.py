"""Layer and batch normalisation."""
import math

from pyengine.autograd import Function


class LayerNorm(Function):
    """Normalises over the trailing ``n_norm`` dims, flattened to one row of D per sample."""

    @staticmethod
    def forward(ctx, x, weight, bias, n_norm, eps):
        d = math.prod(x.shape[x.ndim - n_norm:])
        rows = x.reshape(-1, d)
        w = None if weight is None else weight.reshape(d)
        b = None if bias is None else bias.reshape(d)
        y, mean, rstd = ctx.backend.layer_norm(rows, w, b, eps)
        ctx.save_for_backward(rows, w, mean, rstd)
        ctx.shapes = (x.shape, None if weight is None else weight.shape,
                      None if bias is None else bias.shape)
        return y.reshape(x.shape)

    @staticmethod
    def backward(ctx, gy):
        rows, w, mean, rstd = ctx.saved_tensors
        x_shape, w_shape, b_shape = ctx.shapes
        g_rows = gy.reshape(rows.shape)
        gx, gw, gb = ctx.backend.layer_norm_backward(g_rows, rows, w, mean, rstd)
        if b_shape is not None and gb is None:
            # The backend reports gb only alongside gw; a bias without a weight still needs it.
            gb = g_rows.sum(axis=0)
        gw = None if w_shape is None else gw.reshape(w_shape)
        gb = None if b_shape is None else gb.reshape(b_shape)
        return gx.reshape(x_shape), gw, gb, None, None


class BatchNorm(Function):
    """Statistics over every dim but 1; the running buffers are updated in place by the backend."""

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, training, momentum, eps):
        y, mean, rstd = ctx.backend.batch_norm(
            x, running_mean, running_var, weight, bias, training, momentum, eps)
        ctx.save_for_backward(x, weight, mean, rstd)
        ctx.training = training
        ctx.has_bias = bias is not None
        return y

    @staticmethod
    def backward(ctx, gy):
        x, weight, mean, rstd = ctx.saved_tensors
        gx, gw, gb = ctx.backend.batch_norm_backward(gy, x, weight, mean, rstd, ctx.training)
        if ctx.has_bias and gb is None:
            axes = (0,) + tuple(range(2, gy.ndim))
            gb = gy.sum(axis=axes)
        return gx, gw, (gb if ctx.has_bias else None), None, None, None, None, None
