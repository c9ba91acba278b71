"""A character-level text corpus that needs no network, and its batching.

The text is the documentation topics that every CPython installation carries in the
standard library (``pydoc_data.topics``: the language reference sections ``help()`` shows,
about 465,000 characters, ~100 distinct characters). Topics are joined in sorted-key order,
so the corpus is the same on every run of one Python version.

Splits are by position (the first 90% train, the next 5% validation, the last 5% test), not
random windows, so no validation character is ever seen in training.
"""
from __future__ import annotations

import functools

import numpy as np

from .dataset import Dataset


def load_text(max_chars: int | None = None) -> str:
    """The bundled corpus, optionally cut to its first ``max_chars`` characters."""
    from pydoc_data.topics import topics

    text = "\n\n".join(topics[k] for k in sorted(topics))
    return text if max_chars is None else text[:max_chars]


class CharTokenizer:
    """Characters <-> int64 ids; the vocabulary is the sorted set of characters seen."""

    def __init__(self, text: str):
        if not text:
            raise ValueError("CharTokenizer needs a non-empty text to build its vocabulary")
        self.chars = sorted(set(text))
        self._index = {c: i for i, c in enumerate(self.chars)}

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        unknown = sorted(set(text) - self._index.keys())
        if unknown:
            raise ValueError(f"CharTokenizer.encode: characters not in the vocabulary: {unknown!r}")
        return np.fromiter((self._index[c] for c in text), dtype=np.int64, count=len(text))

    def decode(self, ids) -> str:
        ids = np.asarray(ids).reshape(-1)
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
            raise ValueError(
                f"CharTokenizer.decode: ids must be in [0, {self.vocab_size}), got range "
                f"[{ids.min()}, {ids.max()}]"
            )
        return "".join(self.chars[i] for i in ids)


def split_by_position(ids: np.ndarray, fractions=(0.9, 0.05, 0.05)):
    """Consecutive (train, val, test) pieces of ``ids`` with the given fractions."""
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-9:
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {fractions}")
    n = len(ids)
    a = int(n * fractions[0])
    b = a + int(n * fractions[1])
    return ids[:a], ids[a:b], ids[b:]


class CharWindows(Dataset):
    """Non-overlapping windows of a token stream: sample i is
    ``(ids[i*T : i*T+T], ids[i*T+1 : i*T+T+1])``, the next-character targets of x."""

    def __init__(self, ids: np.ndarray, block_size: int):
        ids = np.asarray(ids, dtype=np.int64)
        if block_size < 1:
            raise ValueError(f"block_size must be positive, got {block_size}")
        if len(ids) < block_size + 1:
            raise ValueError(
                f"a token stream of length {len(ids)} is shorter than one window of "
                f"block_size + 1 = {block_size + 1}"
            )
        self.ids, self.block_size = ids, block_size

    def __len__(self) -> int:
        return (len(self.ids) - 1) // self.block_size

    def __getitems__(self, indices):
        from pyengine.tensor import Tensor

        idx = np.asarray(indices, dtype=np.int64)
        n = len(self)
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"CharWindows index out of range for {n} windows: {indices!r}")
        starts = (idx % n)[:, None] * self.block_size + np.arange(self.block_size)
        return Tensor._make(self.ids[starts], "cpu"), Tensor._make(self.ids[starts + 1], "cpu")

    def __getitem__(self, index):
        x, y = self.__getitems__([index])
        return x[0], y[0]


def random_windows(ids: np.ndarray, batch_size: int, block_size: int, rng: np.random.Generator):
    """A batch of windows at random offsets (nanoGPT's ``get_batch``), as int64 Tensors."""
    from pyengine.tensor import Tensor

    if len(ids) < block_size + 1:
        raise ValueError(f"stream of length {len(ids)} is shorter than block_size + 1 = {block_size + 1}")
    starts = rng.integers(0, len(ids) - block_size, size=batch_size)[:, None] + np.arange(block_size)
    return Tensor._make(ids[starts], "cpu"), Tensor._make(ids[starts + 1], "cpu")


class TextCorpus:
    """The bundled text, its tokenizer and its train/val/test id streams."""

    def __init__(self, max_chars: int | None = None, fractions=(0.9, 0.05, 0.05)):
        self.text = load_text(max_chars)
        self.tokenizer = CharTokenizer(self.text)
        self.train_ids, self.val_ids, self.test_ids = split_by_position(
            self.tokenizer.encode(self.text), fractions
        )

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    def unigram_loss(self, split: str = "val") -> float:
        """Cross-entropy (nats/char) of the train-set character frequencies on ``split``:
        the baseline a language model must beat. Unseen characters get add-one counts."""
        counts = np.bincount(self.train_ids, minlength=self.vocab_size) + 1.0
        logp = np.log(counts / counts.sum())
        return float(-logp[getattr(self, f"{split}_ids")].mean())

    def windows(self, split: str, block_size: int) -> CharWindows:
        return CharWindows(getattr(self, f"{split}_ids"), block_size)


@functools.lru_cache(maxsize=1)
def default_corpus() -> TextCorpus:
    """The whole bundled corpus, built once per process (the model registry and the CLI
    need its vocabulary size and its windows)."""
    return TextCorpus()


def text_windows(block_size: int = 64) -> CharWindows:
    """Every non-overlapping window of the whole corpus, for ``pyengine train charrnn|gpt``
    (whose loop splits the windows itself; windows never overlap, so no character of a
    validation window is a training input)."""
    corpus = default_corpus()
    return CharWindows(corpus.tokenizer.encode(corpus.text), block_size)


def report_language_model(name: str, history: dict, prompt: str = "The ", max_new_tokens: int = 200,
                          stream=None) -> str:
    """After ``pyengine train charrnn|gpt``: print the validation perplexity of every epoch
    (exp of the loss in nats/char) beside the unigram baseline, then a sample continuing
    ``prompt`` from the saved checkpoint. Returns the sample."""
    import math
    import sys

    import pyengine as pe
    from pyengine.models import get_model

    stream = stream or sys.stdout
    corpus = default_corpus()
    ppl = ", ".join(f"{math.exp(v):.2f}" for v in history["val_loss"])
    stream.write(f"validation perplexity per epoch: {ppl} "
                 f"(unigram baseline {math.exp(corpus.unigram_loss('val')):.2f})\n")
    model = get_model(name)
    if history.get("checkpoint"):
        model.load_state_dict(pe.load(history["checkpoint"]))
    idx = pe.tensor(corpus.tokenizer.encode(prompt)[None], device=history.get("device", "cpu"))
    model.to(idx.device)
    pe.manual_seed(0)
    sample = corpus.tokenizer.decode(model.generate(idx, max_new_tokens, temperature=0.8).numpy()[0])
    stream.write(f"sample:\n{sample}\n")
    return sample
