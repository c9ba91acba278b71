"""Broadcasting helpers shared by every Function whose inputs broadcast."""
from __future__ import annotations

import numpy as np


def sum_to_shape(g, shape):
    """Sum a broadcast gradient ``g`` back down to an input's ``shape``.

    Leading dims that broadcasting added are summed away, and so are dims where the input
    had size 1, which is what makes ``(3, 1) + (4,)`` give each input its own gradient.
    """
    shape = tuple(shape)
    if tuple(g.shape) == shape:
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, n in enumerate(shape) if n == 1 and g.shape[lead + i] != 1)
    g = g.sum(axis=axes, keepdims=True) if axes else g
    return g.reshape(shape)


def broadcast_shapes(op: str, *shapes):
    """The broadcast shape, or a RuntimeError naming the op and every operand's shape."""
    try:
        return tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        listed = " and ".join(str(tuple(s)) for s in shapes)
        raise RuntimeError(f"{op}: shapes {listed} cannot be broadcast together") from None


def normalize_dim(dim, ndim: int, name: str = "dim") -> int:
    """A dim in [-ndim, ndim) as a non-negative axis, or an IndexError naming the range."""
    n = max(ndim, 1)
    if not -n <= dim < n:
        raise IndexError(f"Dimension out of range (expected to be in range of [{-n}, {n - 1}], "
                         f"but got {dim}) for {name}")
    return dim % n


def normalize_dims(dim, ndim: int):
    """None -> every axis; an int or a sequence -> a sorted tuple of non-negative axes."""
    if dim is None:
        return tuple(range(ndim))
    dims = (dim,) if isinstance(dim, (int, np.integer)) else tuple(dim)
    out = tuple(sorted({normalize_dim(int(d), ndim) for d in dims}))
    if len(out) != len(dims):
        raise RuntimeError(f"dim {dim} appears multiple times in the list of dims")
    return out if ndim else ()
