"""Scaled dot-product attention: softmax(q k^T * scale + mask) v, optionally with dropout."""
from pyengine.autograd import Function


class ScaledDotProductAttention(Function):
    @staticmethod
    def forward(ctx, q, k, v, attn_mask, is_causal, scale, dropout_p):
        conf = (attn_mask, is_causal, scale, dropout_p)
        out, saved = ctx.backend.sdpa(q, k, v, *conf)
        ctx.save_for_backward(q, k, v, out)
        ctx.saved = saved  # opaque to us: whatever this backend's sdpa_backward wants back
        ctx.conf = conf
        return out

    @staticmethod
    def backward(ctx, gout):
        q, k, v, out = ctx.saved_tensors
        gq, gk, gv = ctx.backend.sdpa_backward(gout, q, k, v, out, ctx.saved, *ctx.conf)
        return gq, gk, gv, None, None, None, None


class RepeatHeads(Function):
    """Each of the Hkv key/value heads (dim -3) repeated ``r`` times in a row, so Hkv heads
    serve Hkv * r query heads (grouped-query attention); the gradient sums each group."""

    @staticmethod
    def forward(ctx, x, r):
        ctx.r = r
        return ctx.backend.xp.repeat(x, r, axis=-3)

    @staticmethod
    def backward(ctx, g):
        grouped = g.reshape(g.shape[:-3] + (g.shape[-3] // ctx.r, ctx.r) + g.shape[-2:])
        return grouped.sum(axis=-3), None
