"""The four dtypes a Tensor holds and PyTorch's type promotion between them."""
from __future__ import annotations

import numpy as np


class dtype:
    """A pyengine dtype; ``.np`` is the NumPy dtype of the backend arrays."""

    def __init__(self, name: str, np_dtype, category: int):
        self.name = name
        self.np = np.dtype(np_dtype)
        self.category = category  # bool < integer < floating, as promotion orders them
        self.is_floating_point = category == 2

    @property
    def itemsize(self) -> int:
        return self.np.itemsize

    def __repr__(self):
        return f"pyengine.{self.name}"


bool_ = dtype("bool", np.bool_, 0)
int64 = dtype("int64", np.int64, 1)
float32 = dtype("float32", np.float32, 2)
float64 = dtype("float64", np.float64, 2)
DEFAULT_FLOAT = float32

_BY_NP = {d.np: d for d in (bool_, int64, float32, float64)}
_BY_NAME = {"bool": bool_, "int64": int64, "long": int64, "float32": float32, "float": float32,
            "float64": float64, "double": float64}


def from_np(np_dtype) -> dtype:
    """The pyengine dtype for a NumPy dtype (other integer widths map to int64, half to float32;
    a non-native byte order, as in ``np.fromfile(f, ">f4")``, keeps its width)."""
    d = np.dtype(np_dtype)
    found = _BY_NP.get(d)
    if found is not None:
        return found
    if d.kind in "iu":
        return int64
    if d.kind == "f":
        return float32 if d.itemsize <= 4 else float64
    raise TypeError(f"unsupported dtype {d}; pyengine holds float32, float64, int64 and bool")


def as_dtype(d) -> dtype:
    """Accept a pyengine dtype, a NumPy dtype/type, a Python type or a name."""
    if isinstance(d, dtype):
        return d
    if isinstance(d, str) and d in _BY_NAME:
        return _BY_NAME[d]
    if d is float:
        return float32
    if d is int:
        return int64
    if d is bool:
        return bool_
    try:
        return from_np(d)
    except TypeError:
        raise TypeError(f"unknown dtype {d!r}; expected one of float32, float64, int64, bool") from None


def scalar_category(x) -> int:
    if isinstance(x, (bool, np.bool_)):
        return 0
    if isinstance(x, (int, np.integer)):
        return 1
    return 2


def promote(a, b) -> dtype:
    """Result dtype of a binary op on ``a`` and ``b`` (Tensors or Python scalars).

    As PyTorch: a higher category (bool < int < float) wins; within a category a tensor with
    dimensions beats a 0-dim tensor, which beats a Python scalar; a Python float with an
    integer tensor gives the default float32.
    """
    ka, kb = _kind(a), _kind(b)
    if ka[0] != kb[0]:
        hi = ka if ka[0] > kb[0] else kb
        return hi[2] if hi[2] is not None else (DEFAULT_FLOAT if hi[0] == 2 else int64)
    if ka[1] != kb[1]:
        return (ka if ka[1] > kb[1] else kb)[2]
    da, db = ka[2], kb[2]
    if da is None:
        return db if db is not None else (DEFAULT_FLOAT if ka[0] == 2 else int64 if ka[0] == 1 else bool_)
    if db is None or da is db:
        return da
    return float64 if float64 in (da, db) else da


def _kind(x):
    """(category, priority, dtype or None): priority 2 = dimensioned tensor, 1 = 0-dim, 0 = scalar."""
    d = getattr(x, "dtype", None)
    if isinstance(d, dtype):
        return d.category, 2 if x.ndim else 1, d
    return scalar_category(x), 0, None
