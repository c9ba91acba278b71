"""q, k, v heads out of one fused projection (B, T, 3 * H * D), as three views (B, H, T, D).

Indexing the fused buffer three times (``qkv[0]``, ``qkv[1]``, ``qkv[2]``) costs, in the
backward, a zero-filled copy of the whole buffer per part, a scatter into each and two
additions (8 launches per attention layer on a GPU, counted by pyengine.bench.launch_trace).
Here the three gradients go into one buffer laid out as the input: no copy when the backend's
attention backward wrote them as the three slices of one (3, B, H, T, D) array (the native
one does, for q, k, v split from one buffer), else one strided copy per part.
"""
from pyengine.autograd import Function
from pyengine.backend._glue import stacked_slices


class SplitHeads(Function):
    """The outputs share the input's memory but are not marked as views of it (a Function
    with three outputs cannot be re-applied to one): an in-place change to one of them is
    not tracked against the fused buffer."""

    @staticmethod
    def forward(ctx, x, heads):
        b, t, c3 = x.shape
        ctx.shape = x.shape
        parts = x.reshape(b, t, 3, heads, c3 // (3 * heads)).transpose(2, 0, 3, 1, 4)
        return parts[0], parts[1], parts[2]

    @staticmethod
    def backward(ctx, gq, gk, gv):
        b, t, c3 = ctx.shape
        xp = ctx.backend.xp
        whole = stacked_slices((gq, gk, gv))
        if whole is not None:  # (3, B, H, T, D): one copy into the input's layout
            return whole.transpose(1, 3, 0, 2, 4).reshape(b, t, c3), None
        g = xp.empty((b, t, 3) + gq.shape[1::2], dtype=gq.dtype)  # (B, T, 3, H, D)
        for i, part in enumerate((gq, gk, gv)):
            g[:, :, i] = part.transpose(0, 2, 1, 3)
        return g.reshape(b, t, c3), None
