"""Sequence models: pyengine's NumPy CPU backend against PyTorch CPU, side by side in one run.

Times one training step (forward, cross-entropy over every position, backward, SGD with
momentum) of

  * an LSTM (input 32, hidden 128, seq 64, batch 32) with a linear head (10 classes)
  * a GPT (4 layers, 4 heads, d 128, context 128, batch 16, vocab 65)

with the same weights and inputs in both frameworks, and prints the median step time of each
and the ratio pyengine/PyTorch (target: <= 1.5). The timing and command-line helpers are
cpu_vs_torch.py's.

    python bench/cpu_vs_torch_seq.py [--models lstm gpt] [--repeats N] [--threads N] [--json FILE]

Exits 0 with a message when PyTorch is not installed.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

from cpu_vs_torch import blas_kernels, cli, machine_line, median_step_ms, pyengine_step, torch_step

LSTM_CASE = dict(batch=32, seq=64, input=32, hidden=128, classes=10)
GPT_CASE = dict(batch=16, block_size=128, n_layer=4, n_head=4, n_embd=128, vocab=65)


def torch_gpt(vocab, block_size, n_layer, n_head, n_embd):
    """PyTorch twin of ``pyengine.models.GPT`` (same submodule names, so the same
    state-dict keys; the head is tied to the token embedding)."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    d = n_embd

    class Attn(nn.Module):
        def __init__(self):
            super().__init__()
            self.c_attn, self.c_proj = nn.Linear(d, 3 * d), nn.Linear(d, d)

        def forward(self, x):
            B, T, _ = x.shape
            q, k, v = (t.reshape(B, T, n_head, -1).transpose(1, 2) for t in self.c_attn(x).split(d, -1))
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            return self.c_proj(y.transpose(1, 2).reshape(B, T, d))

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.c_fc, self.gelu, self.c_proj = nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d)

        def forward(self, x):
            return self.c_proj(self.gelu(self.c_fc(x)))

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1, self.attn, self.ln_2, self.mlp = nn.LayerNorm(d), Attn(), nn.LayerNorm(d), MLP()

        def forward(self, x):
            x = x + self.attn(self.ln_1(x))
            return x + self.mlp(self.ln_2(x))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte, self.wpe = nn.Embedding(vocab, d), nn.Embedding(block_size, d)
            self.h = nn.ModuleList([Block() for _ in range(n_layer)])
            self.ln_f = nn.LayerNorm(d)
            self.lm_head = nn.Linear(d, vocab, bias=False)
            self.lm_head.weight = self.wte.weight

        def forward(self, idx):
            x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1], device=idx.device))
            for block in self.h:
                x = block(x)
            return self.lm_head(self.ln_f(x))

    return GPT()


def _flat_logits(module_cls):
    """A wrapper class whose forward gives (B*T, C) logits, the shape cross_entropy and the
    shared step functions expect."""

    class Flat(module_cls):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            out = self.inner(x)
            return out.reshape(-1, out.shape[-1])

    return Flat


def build_lstm():
    import torch
    import pyengine as pe

    c = LSTM_CASE

    class TorchLSTM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = torch.nn.LSTM(c["input"], c["hidden"], batch_first=True)
            self.head = torch.nn.Linear(c["hidden"], c["classes"])

        def forward(self, x):
            return self.head(self.rnn(x)[0]).reshape(-1, c["classes"])

    class OurLSTM(pe.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = pe.nn.LSTM(c["input"], c["hidden"], batch_first=True)
            self.head = pe.nn.Linear(c["hidden"], c["classes"])

        def forward(self, x):
            return self.head(self.rnn(x)[0]).reshape(-1, c["classes"])

    return OurLSTM(), TorchLSTM()


def build_gpt():
    import torch
    import pyengine as pe
    from pyengine.models import GPT

    c = GPT_CASE
    theirs = torch_gpt(c["vocab"], c["block_size"], c["n_layer"], c["n_head"], c["n_embd"])
    ours = GPT(vocab_size=c["vocab"], block_size=c["block_size"], n_layer=c["n_layer"],
               n_head=c["n_head"], n_embd=c["n_embd"])
    return _flat_logits(pe.nn.Module)(ours), _flat_logits(torch.nn.Module)(theirs)


def inputs(name, rng):
    if name == "lstm":
        c = LSTM_CASE
        x = rng.standard_normal((c["batch"], c["seq"], c["input"])).astype(np.float32)
        return x, rng.integers(0, c["classes"], c["batch"] * c["seq"]).astype(np.int64)
    c = GPT_CASE
    x = rng.integers(0, c["vocab"], (c["batch"], c["block_size"])).astype(np.int64)
    return x, rng.integers(0, c["vocab"], c["batch"] * c["block_size"]).astype(np.int64)


MODELS = ("lstm", "gpt")


def run(torch, repeats: int, warmup: int, models=MODELS) -> list[dict]:
    """Time the models; prints one row per model and returns the rows."""
    rng = np.random.default_rng(0)
    rows = []
    print(machine_line(torch))
    print(f"{'model':<6} {'pyengine ms':>12} {'torch ms':>10} {'ratio':>7}")
    for name, build in (("lstm", build_lstm), ("gpt", build_gpt)):
        if name not in models:
            continue
        ours, theirs = build()
        ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
        x, y = inputs(name, rng)
        ms_ours, ms_torch = median_step_ms([pyengine_step(ours, x, y), torch_step(theirs, x, y)],
                                           repeats, warmup)
        rows.append({"model": name, "pyengine_ms": ms_ours, "torch_ms": ms_torch, "ratio": ms_ours / ms_torch,
                     "torch_threads": torch.get_num_threads(), "blas_kernels": blas_kernels()})
        print(f"{name:<6} {ms_ours:>12.3f} {ms_torch:>10.3f} {ms_ours / ms_torch:>6.2f}x")
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    ours, rest = parser.parse_known_args(argv)
    return cli(rest, __doc__, "cpu_vs_torch_seq", lambda *a: run(*a, models=ours.models), repeats=20, warmup=3,
               cases={name: case for name, case in (("lstm", LSTM_CASE), ("gpt", GPT_CASE))
                      if name in ours.models})


if __name__ == "__main__":
    sys.exit(main())
