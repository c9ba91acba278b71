"""Elementwise losses (MSE, L1, binary cross-entropy) and the reduction they share."""
import math

from pyengine.autograd import Function


def reduce(xp, loss, reduction, denominator=None):
    """Apply 'none' | 'sum' | 'mean'; the mean divides by ``denominator`` (default: loss.size),
    which may be a 0-d device array: the division runs there, no host round trip."""
    if reduction == "none":
        return loss
    total = loss.sum()
    if reduction == "mean":
        # dtype: a float32 loss stays float32 whatever the count's dtype (an int64 one would
        # promote it), in one launch instead of a cast and a division.
        total = xp.divide(total, loss.size if denominator is None else denominator, dtype=loss.dtype)
    return xp.asarray(total, dtype=loss.dtype)


def unreduce(xp, g, shape, reduction, denominator=None):
    """Gradient of ``reduce`` w.r.t. its elementwise loss, as an array of ``shape``: a
    broadcast view of ``g`` for 'sum', for 'mean' the quotient written per element (one
    launch; the class losses hand it to a kernel that reads it per row)."""
    if reduction == "none":
        return g
    if reduction == "mean":
        d = math.prod(shape) if denominator is None else denominator
        return xp.divide(xp.broadcast_to(g, shape), d, dtype=g.dtype)
    return xp.broadcast_to(g, shape)


def _pointwise_forward(ctx, value, x, t, weight, reduction):
    """loss = weight * value(x - t) elementwise; with a weight, 'mean' divides by its sum."""
    xp = ctx.backend.xp
    d = x - t
    loss = value(xp, d)
    denominator = None
    if weight is not None:
        loss = loss * weight
        denominator = weight.sum()
    ctx.save_for_backward(d, weight, denominator)
    ctx.reduction = reduction
    return reduce(xp, loss, reduction, denominator)


def _pointwise_backward(ctx, slope, g):
    """Gradients w.r.t. x and t of ``_pointwise_forward``; slope is value's derivative."""
    d, weight, denominator = ctx.saved_tensors
    xp = ctx.backend.xp
    g = unreduce(xp, g, d.shape, ctx.reduction, denominator)
    if weight is not None:
        g = g * weight
    gd = slope(xp, d) * g
    return gd, -gd, None, None


class MSELoss(Function):
    @staticmethod
    def forward(ctx, x, t, weight, reduction):
        return _pointwise_forward(ctx, lambda xp, d: d * d, x, t, weight, reduction)

    @staticmethod
    def backward(ctx, g):
        return _pointwise_backward(ctx, lambda xp, d: 2 * d, g)


class L1Loss(Function):
    @staticmethod
    def forward(ctx, x, t, weight, reduction):
        return _pointwise_forward(ctx, lambda xp, d: xp.abs(d), x, t, weight, reduction)

    @staticmethod
    def backward(ctx, g):
        return _pointwise_backward(ctx, lambda xp, d: xp.sign(d), g)


# PyTorch clamps log(p) at -100 so p == 0 or 1 gives a finite loss, and floors p*(1-p)
# at 1e-12 in the gradient for the same reason.
_LOG_FLOOR = -100.0
_GRAD_EPS = 1e-12


def _floored_log(xp, v):
    """max(log v, -100) for v >= 0, without taking log(0)."""
    positive = v > 0
    return xp.where(positive, xp.maximum(xp.log(xp.where(positive, v, 1)), _LOG_FLOOR),
                    _LOG_FLOOR)


class BCELoss(Function):
    @staticmethod
    def forward(ctx, p, t, weight, reduction):
        xp = ctx.backend.xp
        log_p, log_q = _floored_log(xp, p), _floored_log(xp, 1 - p)
        loss = -(t * log_p + (1 - t) * log_q)
        if weight is not None:
            loss = loss * weight
        ctx.save_for_backward(p, t, weight, log_p, log_q)
        ctx.reduction = reduction
        return reduce(xp, loss, reduction)

    @staticmethod
    def backward(ctx, g):
        p, t, weight, log_p, log_q = ctx.saved_tensors
        xp = ctx.backend.xp
        g = unreduce(xp, g, p.shape, ctx.reduction)
        if weight is not None:
            g = g * weight
        gp = g * (p - t) / xp.maximum(p * (1 - p), _GRAD_EPS)
        gt = g * (log_q - log_p)
        return gp, gt, None, None


class BCEWithLogitsLoss(Function):
    """loss = (1 - t) x + (1 + (pw - 1) t) softplus(-x), softplus written so it never overflows."""

    @staticmethod
    def forward(ctx, x, t, weight, pos_weight, reduction):
        xp = ctx.backend.xp
        softplus_neg = xp.log1p(xp.exp(-xp.abs(x))) + xp.maximum(-x, 0)
        lw = 1 if pos_weight is None else 1 + (pos_weight - 1) * t
        loss = (1 - t) * x + lw * softplus_neg
        if weight is not None:
            loss = loss * weight
        ctx.save_for_backward(x, t, weight, pos_weight, softplus_neg)
        ctx.reduction = reduction
        return reduce(xp, loss.astype(x.dtype, copy=False), reduction)

    @staticmethod
    def backward(ctx, g):
        x, t, weight, pos_weight, softplus_neg = ctx.saved_tensors
        xp = ctx.backend.xp
        g = unreduce(xp, g, x.shape, ctx.reduction)
        if weight is not None:
            g = g * weight
        # sigmoid(-x) = exp(-x - softplus(-x)): the exponent is <= 0, so it never overflows.
        sig_neg = xp.exp(-x - softplus_neg)
        lw = 1 if pos_weight is None else 1 + (pos_weight - 1) * t
        gx = g * ((1 - t) - lw * sig_neg)
        gt = g * (-x if pos_weight is None else -x + (pos_weight - 1) * softplus_neg)
        return gx, gt, None, None, None
