"""A small GPT: token + position embeddings, pre-norm decoder blocks with causal
scaled-dot-product attention, a final LayerNorm and a head tied to the token embedding.

Submodule names follow the GPT-2 convention (wte, wpe, h.N.ln_1, attn.c_attn, attn.c_proj,
ln_2, mlp.c_fc, mlp.c_proj, ln_f, lm_head), so checkpoints read like GPT-2's.
"""
from __future__ import annotations

import math

import numpy as np

import pyengine as pe
from pyengine import nn
from pyengine.nn import functional as F


class CausalSelfAttention(nn.Module):
    def __init__(self, n_embd: int, n_head: int, dropout: float = 0.0, bias: bool = True):
        super().__init__()
        if n_embd % n_head != 0:
            raise ValueError(f"n_embd ({n_embd}) must be divisible by n_head ({n_head})")
        self.n_head, self.dropout = n_head, dropout
        self.c_attn = nn.Linear(n_embd, 3 * n_embd, bias=bias)
        self.c_proj = nn.Linear(n_embd, n_embd, bias=bias)
        self.resid_dropout = nn.Dropout(dropout)

    def forward(self, x):
        B, T, C = x.shape
        H = self.n_head
        q, k, v = F.split_heads(self.c_attn(x), H)  # (B, H, T, C // H) each
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
        return self.resid_dropout(self.c_proj(y.transpose(1, 2).reshape(B, T, C)))


class FeedForward(nn.Module):
    def __init__(self, n_embd: int, dropout: float = 0.0, bias: bool = True):
        super().__init__()
        self.c_fc = nn.Linear(n_embd, 4 * n_embd, bias=bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * n_embd, n_embd, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    """Pre-norm: x + attn(ln_1(x)), then x + mlp(ln_2(x))."""

    def __init__(self, n_embd: int, n_head: int, dropout: float = 0.0, bias: bool = True):
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd)
        self.attn = CausalSelfAttention(n_embd, n_head, dropout, bias)
        self.ln_2 = nn.LayerNorm(n_embd)
        self.mlp = FeedForward(n_embd, dropout, bias)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


def sample_next(logits, temperature: float = 1.0, top_k: int | None = None):
    """One token id per row of ``logits`` (B, V), as a (B, 1) int64 NumPy array.

    temperature 0 picks the argmax; otherwise logits are divided by it and, with top_k, all
    but the k largest are excluded. The uniform draws come from ``pe.rand`` so
    ``pe.manual_seed`` makes sampling reproducible."""
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    z = logits.detach().cpu().numpy().astype(np.float64)
    if temperature == 0:
        return z.argmax(axis=-1)[:, None]
    z = z / temperature
    if top_k is not None:
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        k = min(top_k, z.shape[-1])
        kth = np.sort(z, axis=-1)[:, -k][:, None]
        z = np.where(z < kth, -np.inf, z)
    p = np.exp(z - z.max(axis=-1, keepdims=True))
    cdf = np.cumsum(p, axis=-1)
    u = pe.rand(z.shape[0], 1).numpy().astype(np.float64) * cdf[:, -1:]
    return np.minimum((cdf < u).sum(axis=-1), z.shape[-1] - 1)[:, None]


class GPT(nn.Module):
    def __init__(self, vocab_size: int = 65, block_size: int = 128, n_layer: int = 4,
                 n_head: int = 4, n_embd: int = 128, dropout: float = 0.0, bias: bool = True):
        super().__init__()
        self.vocab_size, self.block_size = vocab_size, block_size
        self.wte = nn.Embedding(vocab_size, n_embd)
        self.wpe = nn.Embedding(block_size, n_embd)
        self.drop = nn.Dropout(dropout)
        self.h = nn.ModuleList([Block(n_embd, n_head, dropout, bias) for _ in range(n_layer)])
        self.ln_f = nn.LayerNorm(n_embd)
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
        self._init_weights(n_layer)
        self.lm_head.weight = self.wte.weight  # weight tying (Press & Wolf, 2017)

    def _init_weights(self, n_layer):
        # GPT-2's scheme: N(0, 0.02) everywhere, residual projections scaled by 1/sqrt(2L)
        # so the residual stream's variance does not grow with depth.
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(p)
            elif p.ndim == 2:
                std = 0.02 / math.sqrt(2 * n_layer) if name.endswith("c_proj.weight") else 0.02
                nn.init.normal_(p, 0.0, std)

    def forward(self, idx):
        """Logits (B, T, vocab_size) for int64 token ids ``idx`` (B, T)."""
        if idx.ndim != 2:
            raise ValueError(f"GPT expects token ids of shape (B, T), got {tuple(idx.shape)}")
        T = idx.shape[1]
        if T > self.block_size:
            raise ValueError(f"GPT: sequence length {T} exceeds block_size {self.block_size}")
        # The position rows 0..T-1 are a slice of wpe's table (the whole table at full
        # context): the same values and gradient as wpe(arange(T)), without building the
        # positions, a gather and an index check (a device sync on a GPU) every forward.
        w = self.wpe.weight
        x = self.drop(self.wte(idx) + (w if T == w.shape[0] else w[:T]))
        for block in self.h:
            x = block(x)
        return self.lm_head(self.ln_f(x))

    def generate(self, idx, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None):
        """Extend ``idx`` (B, T) by ``max_new_tokens`` sampled tokens, feeding back at most
        the last ``block_size`` of them; returns (B, T + max_new_tokens) int64."""
        was_training = self.training
        self.eval()
        ids = idx.cpu().numpy()
        with pe.no_grad():
            for _ in range(max_new_tokens):
                context = pe.tensor(ids[:, -self.block_size:], device=idx.device)
                logits = self(context)[:, -1, :]
                ids = np.concatenate([ids, sample_next(logits, temperature, top_k)], axis=1)
        self.train(was_training)
        return pe.tensor(ids, device=idx.device)
