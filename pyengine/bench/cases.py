"""The benchmark cases: kernel families and whole training steps.

Each case builds, for one provider and one size ``n``, a callable ``fn(i)`` that runs the op
once on input set ``i % sets`` (rotated inputs), with its FLOP and byte counts. Inputs are
random normal (never zeros), float32. Builders use only the names of the backend function
table, so pyengine's backends and the vendor adapters share them; ``Case.runs_on`` says
which providers have the op.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from . import flops as F
from .providers import Provider

FAMILIES = ("matmul", "conv2d", "pooling", "activations", "softmax", "layer_norm", "attention", "train")


@dataclass
class Built:
    fn: Callable[[int], object]
    flops: float
    bytes: float
    shape: str                       # what n means here, e.g. "512x512x512"


@dataclass(frozen=True)
class Case:
    family: str
    name: str
    size_label: str                  # the axis of the throughput plot
    quick: tuple[int, ...]
    full: tuple[int, ...]
    build: Callable[[Provider, int, np.random.Generator, int], Built]
    op: str | None                   # the table function timed; None: a pyengine training step

    def sizes(self, quick: bool) -> tuple[int, ...]:
        return self.quick if quick else self.full

    def runs_on(self, p: Provider) -> bool:
        """Whether ``p`` has this op (training steps: pyengine's own backends only)."""
        return p.ours if self.op is None else hasattr(p.ops, self.op)


# On a GPU, rotate through enough input sets that together they exceed the L2 cache (50 MB
# on an H100 or H200), so a repeat cannot find its inputs still cached; capped for tiny ops.
ROTATE_BYTES = 128 << 20
MAX_SETS = 32


def build(case: Case, p: Provider, n: int) -> Built:
    """``case`` at size ``n`` for ``p``, seeded by ``n`` alone so every provider gets the
    same inputs; on the CPU two input sets, on a GPU as many as ROTATE_BYTES asks."""
    sets = 2
    if p.device != "cpu" and case.op is not None:
        probe = case.build(p, n, np.random.default_rng(n), 1)
        sets = min(MAX_SETS, max(3, math.ceil(ROTATE_BYTES / max(probe.bytes, 1))))
    return case.build(p, n, np.random.default_rng(n), sets)


def _randn(rng, shape, sets):
    return [rng.standard_normal(shape, dtype=np.float32) for _ in range(sets)]


def _on(p: Provider, arrays):
    return [p.to_device(a) for a in arrays]


def _matmul(p, n, rng, sets):
    a, b = _on(p, _randn(rng, (n, n), sets)), _on(p, _randn(rng, (n, n), sets))
    return Built(lambda i: p.ops.matmul(a[i % sets], b[i % sets]), F.matmul_flops(n, n, n),
                 F.matmul_bytes(n, n, n), f"{n}x{n}x{n}")


# A LeNet/VGG-sized 3x3 layer: 16 -> 32 channels on 28x28 images, batch n.
_CONV = dict(c=16, k=32, h=28, w=28, r=3)


def _conv2d(p, n, rng, sets):
    c, k, h, w, r = (_CONV[key] for key in ("c", "k", "h", "w", "r"))
    x = _on(p, _randn(rng, (n, c, h, w), sets))
    wt, b = p.to_device(_randn(rng, (k, c, r, r), 1)[0]), p.to_device(_randn(rng, (k,), 1)[0])
    fn = lambda i: p.ops.conv2d(x[i % sets], wt, b, (1, 1), (1, 1), (1, 1), 1)  # noqa: E731
    return Built(fn, F.conv2d_flops(n, c, k, r, r, h, w), F.conv2d_bytes(n, c, h, w, k, r, r, h, w),
                 f"{n}x{c}x{h}x{w} * {k}x{c}x{r}x{r}")


def _conv2d_backward(p, n, rng, sets):
    c, k, h, w, r = (_CONV[key] for key in ("c", "k", "h", "w", "r"))
    x, gy = _on(p, _randn(rng, (n, c, h, w), sets)), _on(p, _randn(rng, (n, k, h, w), sets))
    wt = p.to_device(_randn(rng, (k, c, r, r), 1)[0])
    fn = lambda i: p.ops.conv2d_backward(gy[i % sets], x[i % sets], wt, (1, 1), (1, 1), (1, 1), 1)  # noqa: E731
    # Reads gy, x and w; writes gx, gw and gb: the forward's traffic plus one more image.
    nbytes = F.conv2d_bytes(n, c, h, w, k, r, r, h, w) + 4 * n * c * h * w + 4 * k * c * r * r
    return Built(fn, F.backward_flops(F.conv2d_flops(n, c, k, r, r, h, w)), nbytes,
                 f"{n}x{c}x{h}x{w} * {k}x{c}x{r}x{r}")


def _pooling(p, n, rng, sets):
    c, h = 32, 56
    x = _on(p, _randn(rng, (n, c, h, h), sets))
    out = n * c * (h // 2) ** 2
    # Reads the input, writes the float output and its int64 argmax indices.
    nbytes = 4 * n * c * h * h + 12 * out
    return Built(lambda i: p.ops.max_pool2d(x[i % sets], (2, 2), (2, 2), (0, 0), (1, 1), False),
                 3 * out, nbytes, f"{n}x{c}x{h}x{h} 2x2/2")


def _activation(name, flops_per_element):
    def build(p, n, rng, sets):
        x = _on(p, _randn(rng, (n,), sets))
        return Built(lambda i: p.ops.activation(name, x[i % sets]), flops_per_element * n,
                     F.elementwise_bytes(n), f"{n}")
    return build


_CLASSES = 1000


def _softmax(p, n, rng, sets):
    x = _on(p, _randn(rng, (n, _CLASSES), sets))
    # max, subtract, exp, sum, divide: about 5 operations per element, one read, one write.
    return Built(lambda i: p.ops.softmax(x[i % sets], -1), 5 * n * _CLASSES,
                 F.elementwise_bytes(n * _CLASSES), f"{n}x{_CLASSES}")


def _cross_entropy(p, n, rng, sets):
    x = _on(p, _randn(rng, (n, _CLASSES), sets))
    t = p.to_device(rng.integers(0, _CLASSES, n).astype(np.int64))
    return Built(lambda i: p.ops.cross_entropy(x[i % sets], t), 4 * n * _CLASSES,
                 4 * n * _CLASSES + 12 * n, f"{n}x{_CLASSES}")


_WIDTH = 768


def _layer_norm(p, n, rng, sets):
    x = _on(p, _randn(rng, (n, _WIDTH), sets))
    w, b = (p.to_device(a) for a in _randn(rng, (_WIDTH,), 2))
    # mean, centre, square, sum, scale, shift: about 8 operations per element.
    return Built(lambda i: p.ops.layer_norm(x[i % sets], w, b, 1e-5), 8 * n * _WIDTH,
                 F.elementwise_bytes(n * _WIDTH) + 8 * _WIDTH, f"{n}x{_WIDTH}")


_HEADS, _HEAD_DIM, _ATT_BATCH = 4, 64, 4


def _attention(causal):
    def build(p, n, rng, sets):
        shape = (_ATT_BATCH, _HEADS, n, _HEAD_DIM)
        q, k, v = (_on(p, _randn(rng, shape, sets)) for _ in range(3))
        fn = lambda i: p.ops.sdpa(q[i % sets], k[i % sets], v[i % sets], None, causal, None, 0.0)  # noqa: E731
        return Built(fn, F.attention_flops(_ATT_BATCH, _HEADS, n, n, _HEAD_DIM, causal),
                     F.attention_bytes(_ATT_BATCH, _HEADS, n, n, _HEAD_DIM),
                     f"B{_ATT_BATCH} H{_HEADS} L{n} d{_HEAD_DIM}")
    return build


def _attention_backward(p, n, rng, sets):
    shape = (_ATT_BATCH, _HEADS, n, _HEAD_DIM)
    q, k, v, gout = (_on(p, _randn(rng, shape, sets)) for _ in range(4))
    fwd = [p.ops.sdpa(q[i], k[i], v[i], None, True, None, 0.0) for i in range(sets)]

    def fn(i):
        j = i % sets
        return p.ops.sdpa_backward(gout[j], q[j], k[j], v[j], fwd[j][0], fwd[j][1], None, True, None, 0.0)
    # Reads q, k, v, out and gout, writes gq, gk and gv: eight (B, H, L, d) tensors.
    return Built(fn, F.backward_flops(F.attention_flops(_ATT_BATCH, _HEADS, n, n, _HEAD_DIM, causal=True)),
                 8 * 4 * math.prod(shape), f"B{_ATT_BATCH} H{_HEADS} L{n} d{_HEAD_DIM} causal")


# ---- whole training steps of pyengine's models (ours only: the PyTorch step comparison
# ---- with identical weights is bench/cpu_vs_torch.py)

def _train_step(model, x, y, device):
    import pyengine as pe

    from .training import classification_step, benchmark_optimizer

    model.to(device)
    xt, yt = pe.tensor(x, device=device), pe.tensor(y, device=device)
    step = classification_step(pe, model, xt, yt, benchmark_optimizer(pe, "sgd", model.parameters()))

    def fn(_i):
        step()
    return fn


def _train(model_name):
    def build(p, n, rng, sets):
        import pyengine as pe
        from pyengine.models import get_model, model_spec

        pe.manual_seed(0)
        model, kw = get_model(model_name), model_spec(model_name).defaults
        if model_name == "mlp":
            sizes = kw["sizes"]
            x, y = rng.standard_normal((n, sizes[0]), dtype=np.float32), rng.integers(0, sizes[-1], n)
            fwd, shape = F.linear_flops(n, sizes), f"batch {n}, {'-'.join(map(str, sizes))}"
        elif model_name == "lenet5":
            x, y = rng.standard_normal((n, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, n)
            fwd, shape = F.lenet5_flops(n), f"batch {n}, 1x28x28"
        else:
            vocab, t = model.embed.num_embeddings if model_name == "charrnn" else model.vocab_size, 64
            x, y = rng.integers(0, vocab, (n, t)), rng.integers(0, vocab, (n, t))
            if model_name == "charrnn":
                e, h = kw["embed_dim"], kw["hidden_size"]
                fwd = F.lstm_flops(n, t, e, h) + F.linear_flops(n * t, (h, vocab))
                shape = f"batch {n}, T {t}, LSTM {e}->{h}"
            else:
                fwd = F.gpt_flops(n, t, kw["n_layer"], kw["n_embd"], kw["n_head"], vocab)
                shape = f"batch {n}, T {t}, {kw['n_layer']} layers, d {kw['n_embd']}"
        step = _train_step(model, x, y.astype(np.int64), p.device)
        # Parameter traffic of one step: weights read, gradients written, then weights and
        # momentum read and written by SGD; activations vary by model and are left out.
        params = sum(math.prod(q.shape) for q in model.parameters())
        return Built(step, F.train_step_flops(fwd), 6 * 4 * params, shape)
    return build


CASES = (
    Case("matmul", "sgemm", "n (square)", (64, 256, 512), (64, 128, 256, 512, 1024, 2048), _matmul, "matmul"),
    Case("conv2d", "conv3x3 16->32 28x28", "batch", (4, 16), (4, 16, 64, 128), _conv2d, "conv2d"),
    Case("conv2d", "conv3x3 backward", "batch", (4, 16), (4, 16, 64, 128), _conv2d_backward, "conv2d_backward"),
    Case("pooling", "max_pool2d 2x2", "batch", (4, 16), (4, 16, 64), _pooling, "max_pool2d"),
    Case("activations", "relu", "elements", (1 << 16, 1 << 20), (1 << 16, 1 << 20, 1 << 23), _activation("relu", 1), "activation"),
    Case("activations", "gelu", "elements", (1 << 16, 1 << 20), (1 << 16, 1 << 20, 1 << 23), _activation("gelu", 8), "activation"),
    Case("softmax", "softmax", "rows", (64, 1024), (64, 1024, 8192), _softmax, "softmax"),
    Case("softmax", "cross_entropy", "rows", (64, 1024), (64, 1024, 8192), _cross_entropy, "cross_entropy"),
    Case("layer_norm", "layer_norm", "rows", (64, 1024), (64, 1024, 8192), _layer_norm, "layer_norm"),
    Case("attention", "sdpa", "sequence length", (64, 256), (64, 256, 512, 1024), _attention(False), "sdpa"),
    Case("attention", "sdpa causal", "sequence length", (64, 256), (64, 256, 512, 1024), _attention(True), "sdpa"),
    Case("attention", "sdpa causal backward", "sequence length", (64, 256), (64, 256, 512, 1024),
         _attention_backward, "sdpa_backward"),
    Case("train", "mlp", "batch", (64,), (64, 256, 1024), _train("mlp"), None),
    Case("train", "lenet5", "batch", (16,), (16, 64, 256), _train("lenet5"), None),
    Case("train", "charrnn", "batch", (8,), (8, 32), _train("charrnn"), None),
    Case("train", "gpt", "batch", (4,), (4, 16), _train("gpt"), None),
)


def cases_for(families=FAMILIES) -> list[Case]:
    unknown = sorted(set(families) - set(FAMILIES))
    if unknown:
        raise ValueError(f"unknown families {unknown}; expected some of {', '.join(FAMILIES)}")
    return [c for c in CASES if c.family in families]
