"""nn.MultiheadAttention with PyTorch's parameters, masks and return values.

With ``need_weights=False`` the heads go through ``F.scaled_dot_product_attention`` (the
backend's fused kernel); with ``need_weights=True`` (PyTorch's default) the probabilities
are formed explicitly with ``F.softmax`` because they are part of the result.

Mask conventions are PyTorch's MultiheadAttention ones, which are the opposite of SDPA's:
a True in a boolean ``attn_mask`` or ``key_padding_mask`` means "do not attend". Both masks
are merged into one additive float mask before the attention.

Differences from PyTorch: ``add_bias_kv`` and ``add_zero_attn`` are not supported; with
``is_causal=True`` and no ``attn_mask`` the causal mask is built here instead of raising.
"""
from __future__ import annotations

import math

import numpy as np

import pyengine as pe

from .. import functional as F
from .. import init
from ..parameter import Parameter
from .linear import Linear
from .module import Module


def _additive(mask, dtype, name):
    """A boolean "ignore" mask as 0 / -inf floats; a float mask is returned as given."""
    if mask.dtype == pe.bool:
        return pe.zeros(*mask.shape, dtype=dtype, device=mask.device).masked_fill(
            mask, float("-inf")
        )
    if mask.dtype not in (pe.float32, pe.float64):
        raise TypeError(f"MultiheadAttention: {name} must be bool or float, got {mask.dtype}")
    return mask


def causal_mask(L, S, dtype=None, device="cpu"):
    """Additive (L, S) mask with -inf where key j comes after query i (float32 by default)."""
    allowed = np.tril(np.ones((L, S), dtype=bool))
    return pe.tensor(np.where(allowed, 0.0, -np.inf), dtype=dtype or pe.float32, device=device)


class MultiheadAttention(Module):
    def __init__(self, embed_dim, num_heads, dropout=0.0, bias=True, add_bias_kv=False,
                 add_zero_attn=False, kdim=None, vdim=None, batch_first=False):
        super().__init__()
        if embed_dim <= 0 or num_heads <= 0:
            raise ValueError(
                f"MultiheadAttention: embed_dim and num_heads must be positive, got "
                f"embed_dim={embed_dim}, num_heads={num_heads}"
            )
        if embed_dim % num_heads != 0:
            raise ValueError(
                f"MultiheadAttention: embed_dim ({embed_dim}) must be divisible by "
                f"num_heads ({num_heads})"
            )
        if add_bias_kv or add_zero_attn:
            raise NotImplementedError("MultiheadAttention: add_bias_kv/add_zero_attn")
        self.embed_dim = embed_dim
        self.kdim = kdim if kdim is not None else embed_dim
        self.vdim = vdim if vdim is not None else embed_dim
        self._qkv_same_embed_dim = self.kdim == embed_dim and self.vdim == embed_dim
        self.num_heads = num_heads
        self.dropout = float(dropout)
        self.batch_first = batch_first
        self.head_dim = embed_dim // num_heads
        E = embed_dim
        if self._qkv_same_embed_dim:
            self.in_proj_weight = Parameter(pe.empty(3 * E, E))
            self.q_proj_weight = self.k_proj_weight = self.v_proj_weight = None
        else:
            self.q_proj_weight = Parameter(pe.empty(E, E))
            self.k_proj_weight = Parameter(pe.empty(E, self.kdim))
            self.v_proj_weight = Parameter(pe.empty(E, self.vdim))
            self.in_proj_weight = None
        self.in_proj_bias = Parameter(pe.empty(3 * E)) if bias else None
        self.out_proj = Linear(E, E, bias=bias)
        self._reset_parameters()

    def _reset_parameters(self):
        if self._qkv_same_embed_dim:
            init.xavier_uniform_(self.in_proj_weight)
        else:
            for w in (self.q_proj_weight, self.k_proj_weight, self.v_proj_weight):
                init.xavier_uniform_(w)
        if self.in_proj_bias is not None:
            init.constant_(self.in_proj_bias, 0.0)
            init.constant_(self.out_proj.bias, 0.0)

    def _project(self, query, key, value):
        """q, k, v split into heads: (N, H, L, d), (N, H, S, d), (N, H, S, d)."""
        E, b, H = self.embed_dim, self.in_proj_bias, self.num_heads
        if self._qkv_same_embed_dim:
            w = self.in_proj_weight
            if query is key and key is value:
                # Self-attention: one matmul for all three, split without copies.
                return F.split_heads(F.linear(query, w, b), H)
            wq, wk, wv = w[:E], w[E : 2 * E], w[2 * E :]
        else:
            wq, wk, wv = self.q_proj_weight, self.k_proj_weight, self.v_proj_weight
        bq, bk, bv = (None, None, None) if b is None else (b[:E], b[E : 2 * E], b[2 * E :])
        return tuple(F.linear(x, wx, bx).reshape(x.shape[0], x.shape[1], H, self.head_dim).transpose(1, 2)
                     for x, wx, bx in ((query, wq, bq), (key, wk, bk), (value, wv, bv)))

    def _check_inputs(self, query, key, value):
        if query.ndim not in (2, 3) or key.ndim != query.ndim or value.ndim != query.ndim:
            raise ValueError(
                "MultiheadAttention: query, key and value must all be 2-D (unbatched) or "
                f"3-D, got {tuple(query.shape)}, {tuple(key.shape)}, {tuple(value.shape)}"
            )
        for name, t, dim in (("query", query, self.embed_dim), ("key", key, self.kdim),
                             ("value", value, self.vdim)):
            if t.shape[-1] != dim:
                raise RuntimeError(
                    f"MultiheadAttention: {name} of shape {tuple(t.shape)} has last dim "
                    f"{t.shape[-1]}, expected {dim}"
                )
        if key.shape[:-1] != value.shape[:-1]:
            raise RuntimeError(
                f"MultiheadAttention: key shape {tuple(key.shape)} does not match value "
                f"shape {tuple(value.shape)}"
            )
        if query.ndim == 3:
            nb = 0 if self.batch_first else 1
            if query.shape[nb] != key.shape[nb]:
                raise RuntimeError(
                    f"MultiheadAttention: batch size of query {tuple(query.shape)} and key "
                    f"{tuple(key.shape)} differ (batch_first={self.batch_first})"
                )

    def _merged_mask(self, attn_mask, key_padding_mask, is_causal, N, L, S, dtype, device):
        """One additive mask broadcastable to (N, H, L, S), or None."""
        H = self.num_heads
        mask = None
        if attn_mask is None and is_causal:
            attn_mask = causal_mask(L, S, dtype, device)
        if attn_mask is not None:
            ok = {2: (L, S), 3: (N * H, L, S)}.get(attn_mask.ndim)
            if tuple(attn_mask.shape) != ok:
                raise RuntimeError(
                    f"MultiheadAttention: attn_mask of shape {tuple(attn_mask.shape)} should "
                    f"be (L, S) = {(L, S)} or (N * num_heads, L, S) = {(N * H, L, S)}"
                )
            mask = _additive(attn_mask, dtype, "attn_mask")
            if mask.ndim == 3:
                mask = mask.reshape(N, H, L, S)
        if key_padding_mask is not None:
            if tuple(key_padding_mask.shape) != (N, S):
                raise RuntimeError(
                    f"MultiheadAttention: key_padding_mask of shape "
                    f"{tuple(key_padding_mask.shape)} should be (N, S) = {(N, S)}"
                )
            pad = _additive(key_padding_mask, dtype, "key_padding_mask").reshape(N, 1, 1, S)
            mask = pad if mask is None else mask + pad
        return mask

    def forward(self, query, key, value, key_padding_mask=None, need_weights=True,
                attn_mask=None, average_attn_weights=True, is_causal=False):
        self._check_inputs(query, key, value)
        batched = query.ndim == 3
        if not batched:
            query, key, value = (t.unsqueeze(0) for t in (query, key, value))
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.unsqueeze(0)
        elif not self.batch_first:
            same_kv = key is value
            same_qk = query is key
            query = query.transpose(0, 1)
            key = query if same_qk else key.transpose(0, 1)
            value = key if same_kv else value.transpose(0, 1)
        N, L, _ = query.shape
        S = key.shape[1]
        d = self.head_dim
        q, k, v = self._project(query, key, value)
        mask = self._merged_mask(attn_mask, key_padding_mask, is_causal, N, L, S,
                                 query.dtype, query.device)
        p = self.dropout if self.training else 0.0
        weights = None
        if need_weights:
            scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(d))
            if mask is not None:
                scores = scores + mask
            weights = F.softmax(scores, dim=-1)
            if p > 0:
                weights = F.dropout(weights, p=p, training=True)
            out = weights @ v
            if average_attn_weights:
                weights = weights.mean(dim=1)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        out = self.out_proj(out.transpose(1, 2).reshape(N, L, self.embed_dim))
        if not batched:
            out = out.squeeze(0)
            weights = weights.squeeze(0) if weights is not None else None
        elif not self.batch_first:
            out = out.transpose(0, 1)
        return out, weights
