"""Datasets and the DataLoader, with PyTorch's names and behaviour.

A dataset is anything with ``__len__`` and ``__getitem__``. Like PyTorch (>= 2.0), a dataset
may also define ``__getitems__(indices)`` returning a whole batch at once; the DataLoader
uses it when present, so ``TensorDataset`` batches with one fancy-index per tensor instead
of stacking ``batch_size`` single samples in Python.

Randomness: ``generator`` may be an int seed or a ``numpy.random.Generator``. With no
generator, a seed is drawn from pyengine's CPU generator, so ``pe.manual_seed`` makes the
shuffle and the split reproducible, as ``torch.manual_seed`` does.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Iterator, Sequence

import numpy as np

from pyengine.backend import get_backend
from pyengine.tensor import Tensor


def _as_generator(generator) -> np.random.Generator:
    if isinstance(generator, np.random.Generator):
        return generator
    if generator is None:
        seed = int(get_backend("cpu").randint(0, 2**31 - 1, ()))
        return np.random.default_rng(seed)
    if isinstance(generator, numbers.Integral) and not isinstance(generator, bool):
        return np.random.default_rng(int(generator))
    raise TypeError(
        f"generator must be an int seed, a numpy.random.Generator or None, got {type(generator).__name__}"
    )


class Dataset:
    """Base class: subclasses define ``__getitem__`` and ``__len__``."""

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__")

    def __len__(self) -> int:
        raise NotImplementedError(f"{type(self).__name__} must define __len__")


class TensorDataset(Dataset):
    """Samples are rows of the given tensors, which must share their first dimension."""

    def __init__(self, *tensors):
        if not tensors:
            raise ValueError("TensorDataset needs at least one tensor")
        for i, t in enumerate(tensors):
            if not isinstance(t, Tensor):
                raise TypeError(f"TensorDataset argument {i} is a {type(t).__name__}, expected a Tensor")
            if t.ndim == 0:
                raise ValueError(f"TensorDataset argument {i} is a 0-d tensor; it needs a first (sample) dimension")
        sizes = [t.shape[0] for t in tensors]
        if len(set(sizes)) != 1:
            shapes = ", ".join(str(tuple(t.shape)) for t in tensors)
            raise ValueError(f"TensorDataset tensors must have the same first dimension, got shapes {shapes}")
        self.tensors = tuple(tensors)

    def __len__(self) -> int:
        return self.tensors[0].shape[0]

    def __getitem__(self, index):
        return tuple(t[index] for t in self.tensors)

    def __getitems__(self, indices: Sequence[int]):
        return tuple(_take_rows(t, indices) for t in self.tensors)


def _take_rows(t, indices):
    """Rows ``indices`` of tensor ``t`` as a new tensor, without building an autograd node
    (a batch of data is a leaf, as PyTorch's collate makes it)."""
    backend = get_backend(t.device)
    idx = backend.asarray(np.asarray(indices, dtype=np.int64))
    return Tensor._make(t.data[idx], t.device)


class Subset(Dataset):
    """The samples of ``dataset`` at ``indices``."""

    def __init__(self, dataset, indices: Sequence[int]):
        self.dataset = dataset
        self.indices = np.asarray(indices, dtype=np.int64)
        n = len(dataset)
        if self.indices.ndim != 1:
            raise ValueError(f"Subset indices must be 1-D, got shape {self.indices.shape}")
        if self.indices.size and (self.indices.min() < -n or self.indices.max() >= n):
            raise IndexError(
                f"Subset indices range [{self.indices.min()}, {self.indices.max()}] is outside a dataset of length {n}"
            )

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index):
        return self.dataset[int(self.indices[index])]

    def __getitems__(self, indices: Sequence[int]):
        mapped = self.indices[np.asarray(indices, dtype=np.int64)]
        inner = getattr(self.dataset, "__getitems__", None)
        if inner is not None:
            return inner(mapped)
        return default_collate([self.dataset[int(i)] for i in mapped])


def random_split(dataset, lengths: Sequence[float], generator=None) -> list[Subset]:
    """Split ``dataset`` into non-overlapping random subsets.

    ``lengths`` are sample counts summing to ``len(dataset)``, or fractions summing to 1
    (PyTorch's rule: floors first, then the remainder spread one by one from the first).
    """
    n = len(dataset)
    lengths = list(lengths)
    if any(x < 0 for x in lengths):
        raise ValueError(f"random_split lengths must be non-negative, got {lengths}")
    if math.isclose(sum(lengths), 1.0) and sum(lengths) <= 1:
        counts = [int(math.floor(n * f)) for f in lengths]
        for i in range(n - sum(counts)):
            counts[i % len(counts)] += 1
        lengths = counts
    elif any(int(x) != x for x in lengths):
        raise ValueError(f"random_split lengths must be integers or fractions summing to 1, got {lengths}")
    if sum(lengths) != n:
        raise ValueError(f"random_split lengths sum to {sum(lengths)}, but the dataset has {n} samples")
    perm = _as_generator(generator).permutation(n)
    bounds = np.cumsum([0] + [int(x) for x in lengths])
    return [Subset(dataset, perm[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]


def default_collate(samples: list) -> Any:
    """Stack a list of samples into a batch: tuples position by position, Tensors and NumPy
    arrays along a new first dimension, Python ints as int64 and floats as float32; strings
    (file names, text labels) stay a list of strings, as in PyTorch."""
    first = samples[0]
    if isinstance(first, (str, bytes)):
        return list(samples)
    if isinstance(first, (tuple, list)):
        return type(first)(default_collate(list(col)) for col in zip(*samples))
    if isinstance(first, dict):
        return {k: default_collate([s[k] for s in samples]) for k in first}
    if isinstance(first, Tensor):
        backend = get_backend(first.device)
        return Tensor._make(backend.xp.stack([s.data for s in samples]), first.device)
    if isinstance(first, np.ndarray):
        return Tensor._make(np.stack(samples), "cpu")
    if isinstance(first, (bool, np.bool_)):
        return Tensor._make(np.asarray(samples, dtype=np.bool_), "cpu")
    if isinstance(first, numbers.Integral):
        return Tensor._make(np.asarray(samples, dtype=np.int64), "cpu")
    if isinstance(first, numbers.Real):
        return Tensor._make(np.asarray(samples, dtype=np.float32), "cpu")
    raise TypeError(f"default_collate cannot batch samples of type {type(first).__name__}")


class DataLoader:
    """Iterate over ``dataset`` in batches.

    ``shuffle=True`` draws a fresh order every epoch from ``generator`` (int seed or
    ``numpy.random.Generator``), so two loaders made with the same seed yield the same
    batches epoch after epoch. ``drop_last`` drops a final incomplete batch.
    """

    def __init__(self, dataset, batch_size: int = 1, shuffle: bool = False, *, drop_last: bool = False,
                 collate_fn=None, generator=None):
        # Keyword-only past shuffle: PyTorch's next positional parameter is ``sampler``.
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.collate_fn = collate_fn
        self._rng = _as_generator(generator) if shuffle else None

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _batches(self) -> Iterator[np.ndarray]:
        n = len(self.dataset)
        order = self._rng.permutation(n) if self.shuffle else np.arange(n)
        for b in range(len(self)):
            yield order[b * self.batch_size:(b + 1) * self.batch_size]

    def __iter__(self):
        many = getattr(self.dataset, "__getitems__", None)
        for idx in self._batches():
            if self.collate_fn is not None:
                yield self.collate_fn([self.dataset[int(i)] for i in idx])
            elif many is not None:
                yield many(idx)
            else:
                yield default_collate([self.dataset[int(i)] for i in idx])
