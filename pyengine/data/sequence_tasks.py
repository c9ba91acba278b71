"""Seeded synthetic sequence tasks, small enough to learn in seconds on the CPU.

``make_task(name, n, length, vocab, seed)`` gives ``(src, tgt)`` int64 arrays:

copy     tgt = src                                   src (n, length), tokens < vocab
reverse  tgt = src reversed
sort     tgt = src sorted ascending
add      src = the ``length`` digits of a, then those of b (most significant first);
         tgt = the length + 1 digits of a + b, least significant first (the order in
         which carries propagate, so a left-to-right model can emit it). vocab is 10.

``as_language_model(src, tgt, sep)`` turns a pair into next-token prediction for a causal
model: the input is ``src, sep, tgt`` without its last token, and the target is the input
shifted by one with the prompt positions set to ``IGNORE_INDEX`` so only answers are scored.

``make_majority(n, length, vocab, seed)`` is a sequence classification task for the encoder
classifier: the label is the token that occurs most often (ties are redrawn).
"""
from __future__ import annotations

import numpy as np

from .dataset import TensorDataset

TASKS = ("copy", "reverse", "sort", "add")
IGNORE_INDEX = -100


def _digits(values: np.ndarray, width: int) -> np.ndarray:
    """(n, width) decimal digits of ``values``, most significant first."""
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    return (values[:, None] // powers) % 10


def make_task(name: str, n: int, length: int = 6, vocab: int = 10, seed: int = 0):
    """``n`` random examples of task ``name`` as (src, tgt) int64 arrays."""
    if name not in TASKS:
        raise ValueError(f"unknown sequence task {name!r}; expected one of {TASKS}")
    if n < 1 or length < 1 or vocab < 2:
        raise ValueError(f"need n >= 1, length >= 1, vocab >= 2; got n={n}, length={length}, vocab={vocab}")
    rng = np.random.default_rng(seed)
    if name == "add":
        if vocab != 10:
            raise ValueError(f"the add task works in decimal digits: vocab must be 10, got {vocab}")
        if length > 17:
            raise ValueError(f"add: length {length} overflows int64 sums; use at most 17 digits")
        a, b = (rng.integers(0, 10**length, size=n, dtype=np.int64) for _ in range(2))
        src = np.concatenate([_digits(a, length), _digits(b, length)], axis=1)
        return src, _digits(a + b, length + 1)[:, ::-1].copy()
    src = rng.integers(0, vocab, size=(n, length), dtype=np.int64)
    if name == "copy":
        return src, src.copy()
    if name == "reverse":
        return src, src[:, ::-1].copy()
    return src, np.sort(src, axis=1)


def as_language_model(src: np.ndarray, tgt: np.ndarray, sep: int):
    """(x, y) for a causal model: x = [src, sep, tgt[:-1]], y = [ignored..., tgt]."""
    if src.shape[0] != tgt.shape[0]:
        raise ValueError(f"src {src.shape} and tgt {tgt.shape} must have the same number of rows")
    n, ls = src.shape
    full = np.concatenate([src, np.full((n, 1), sep, dtype=np.int64), tgt], axis=1)
    x, y = full[:, :-1].copy(), full[:, 1:].copy()
    y[:, :ls] = IGNORE_INDEX
    return x, y


def task_dataset(name: str, n: int, length: int = 6, vocab: int = 10, seed: int = 0):
    """The task in language-model form as a TensorDataset; its vocabulary is vocab + 1
    (the separator is token ``vocab``)."""
    from pyengine.tensor import Tensor

    x, y = as_language_model(*make_task(name, n, length, vocab, seed), sep=vocab)
    return TensorDataset(Tensor._make(x, "cpu"), Tensor._make(y, "cpu"))


def make_majority(n: int, length: int = 16, vocab: int = 4, seed: int = 0):
    """(x (n, length), label (n,)) where label is the most frequent token of each row."""
    if n < 1 or length < 1 or vocab < 2:
        raise ValueError(f"need n >= 1, length >= 1, vocab >= 2; got n={n}, length={length}, vocab={vocab}")
    rng = np.random.default_rng(seed)
    rows, labels = [], []
    while sum(len(r) for r in rows) < n:
        x = rng.integers(0, vocab, size=(2 * n, length), dtype=np.int64)
        counts = (x[:, :, None] == np.arange(vocab)).sum(axis=1)
        top = np.sort(counts, axis=1)
        unique = top[:, -1] > top[:, -2]
        rows.append(x[unique])
        labels.append(counts[unique].argmax(axis=1))
    return np.concatenate(rows)[:n], np.concatenate(labels)[:n].astype(np.int64)


def majority_dataset(n: int = 2000, length: int = 16, vocab: int = 4, seed: int = 0):
    from pyengine.tensor import Tensor

    x, y = make_majority(n, length, vocab, seed)
    return TensorDataset(Tensor._make(x, "cpu"), Tensor._make(y, "cpu"))
