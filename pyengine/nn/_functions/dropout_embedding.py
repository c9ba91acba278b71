"""Dropout, alpha dropout and embedding lookup."""
from pyengine.autograd import Function


class Dropout(Function):
    @staticmethod
    def forward(ctx, x, p):
        if p == 1:
            mask = ctx.backend.xp.zeros_like(x)  # the backend's 1/(1-p) scaling is undefined here
        else:
            mask = ctx.backend.dropout_mask(x.shape, p, x.dtype)
        ctx.save_for_backward(mask)
        return x * mask

    @staticmethod
    def backward(ctx, gy):
        (mask,) = ctx.saved_tensors
        return gy * mask, None


# SELU's negative saturation value, -lambda * alpha: dropped units are set to it so the
# self-normalising mean and variance survive (Klambauer et al. 2017).
_SELU_SATURATION = -1.0507009873554805 * 1.6732632423543772


class AlphaDropout(Function):
    @staticmethod
    def forward(ctx, x, p):
        xp = ctx.backend.xp
        keep = ctx.backend.rand(x.shape, x.dtype) >= p
        a = ((1 - p) * (1 + p * _SELU_SATURATION ** 2)) ** -0.5
        b = -a * _SELU_SATURATION * p
        y = a * xp.where(keep, x, _SELU_SATURATION) + b
        ctx.save_for_backward(keep)
        ctx.a = a
        return y.astype(x.dtype, copy=False)

    @staticmethod
    def backward(ctx, gy):
        (keep,) = ctx.saved_tensors
        return (gy * keep * ctx.a).astype(gy.dtype, copy=False), None


class Embedding(Function):
    @staticmethod
    def forward(ctx, indices, weight, padding_idx):
        ctx.save_for_backward(indices)
        ctx.conf = (weight.shape[0], padding_idx)
        return ctx.backend.xp.take(weight, indices, axis=0)

    @staticmethod
    def backward(ctx, gy):
        (indices,) = ctx.saved_tensors
        num_embeddings, padding_idx = ctx.conf
        gw = ctx.backend.embedding_backward(gy, indices, num_embeddings, padding_idx)
        return None, gw, None
