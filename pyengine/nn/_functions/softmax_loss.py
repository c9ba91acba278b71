"""softmax / log_softmax and the class-index losses built on them (cross-entropy, NLL).

Inputs of shape (N, C, d1, ...) are handled as (N*d1*..., C) rows: C is moved last and the
rest flattened, as PyTorch defines the K-dimensional losses; (C,) is one row.
"""
from pyengine.autograd import Function

from .loss import reduce, unreduce


def _rows(xp, a):
    """(N, C, d1, ...) -> (N*d1*..., C), and (C,) -> (1, C)."""
    if a.ndim == 1:
        return a.reshape(1, -1)
    return xp.moveaxis(a, 1, -1).reshape(-1, a.shape[1])


def _unrows(xp, g, shape):
    """Inverse of ``_rows`` for a gradient of the original ``shape``."""
    if len(shape) == 1:
        return g.reshape(shape)
    g = g.reshape((shape[0],) + tuple(shape[2:]) + (shape[1],))
    return xp.moveaxis(g, -1, 1)


class Softmax(Function):
    @staticmethod
    def forward(ctx, x, dim, log):
        y = ctx.backend.softmax(x, dim, log=log)
        ctx.save_for_backward(y)
        ctx.conf = (dim, log)
        return y

    @staticmethod
    def backward(ctx, gy):
        (y,) = ctx.saved_tensors
        dim, log = ctx.conf
        return ctx.backend.softmax_backward(gy, y, dim, log=log), None, None


class CrossEntropy(Function):
    """The fused backend path: log-softmax and the picked/smoothed log-likelihood in one op."""

    @staticmethod
    def forward(ctx, logits, target, ignore_index, label_smoothing, reduction):
        xp = ctx.backend.xp
        rows, t = _rows(xp, logits), target.reshape(-1)
        loss, lse = ctx.backend.cross_entropy(rows, t, ignore_index, label_smoothing)
        count = (t != ignore_index).sum()
        ctx.save_for_backward(rows, t, lse, count)
        ctx.conf = (logits.shape, ignore_index, label_smoothing, reduction)
        if reduction == "none":
            return loss.reshape(target.shape)
        return reduce(xp, loss, reduction, count)

    @staticmethod
    def backward(ctx, g):
        rows, t, lse, count = ctx.saved_tensors
        shape, ignore_index, label_smoothing, reduction = ctx.conf
        xp = ctx.backend.xp
        g_rows = unreduce(xp, g.reshape(-1), t.shape, reduction, count)
        g_logits = ctx.backend.cross_entropy_backward(
            xp.ascontiguousarray(g_rows), rows, t, lse, ignore_index, label_smoothing)
        return _unrows(xp, g_logits, shape), None, None, None, None


class NLLLoss(Function):
    """Negative log-likelihood of log-probabilities, with optional class weights and label
    smoothing (the latter so cross_entropy with ``weight`` can be log_softmax + this).

    Per row r with target t_r (rows where t_r == ignore_index count for nothing):
        loss_r = (1 - eps) * w[t_r] * (-logp[r, t_r]) + eps / C * sum_c w[c] * (-logp[r, c])
    and 'mean' divides the sum by sum_r w[t_r], PyTorch's rule.
    """

    @staticmethod
    def forward(ctx, logp, target, weight, ignore_index, label_smoothing, reduction):
        xp = ctx.backend.xp
        rows, t = _rows(xp, logp), target.reshape(-1)
        n_classes = rows.shape[1]
        valid = t != ignore_index
        t_safe = xp.where(valid, t, 0)
        w_class = xp.ones(n_classes, dtype=rows.dtype) if weight is None else weight
        w_rows = w_class[t_safe] * valid
        picked = xp.take_along_axis(rows, t_safe[:, None], axis=1)[:, 0]
        loss = (1 - label_smoothing) * w_rows * -picked
        if label_smoothing:
            spread = -(rows * w_class).sum(axis=1) * valid
            loss = loss + label_smoothing / n_classes * spread
        loss = loss.astype(rows.dtype, copy=False)
        denominator = w_rows.sum()
        ctx.save_for_backward(t_safe, valid, w_class, w_rows, denominator)
        ctx.conf = (logp.shape, rows.shape, label_smoothing, reduction)
        if reduction == "none":
            return loss.reshape(target.shape)
        return reduce(xp, loss, reduction, denominator)

    @staticmethod
    def backward(ctx, g):
        t_safe, valid, w_class, w_rows, denominator = ctx.saved_tensors
        shape, rows_shape, label_smoothing, reduction = ctx.conf
        xp = ctx.backend.xp
        n_classes = rows_shape[1]
        g_rows = unreduce(xp, g.reshape(-1), t_safe.shape, reduction, denominator)
        hit = xp.arange(n_classes)[None, :] == t_safe[:, None]
        g_logp = hit * (-(1 - label_smoothing) * w_rows * g_rows)[:, None]
        if label_smoothing:
            g_logp = g_logp - (label_smoothing / n_classes) * w_class * (valid * g_rows)[:, None]
        g_logp = g_logp.astype(w_class.dtype, copy=False)
        return _unrows(xp, g_logp, shape), None, None, None, None, None
