"""Tensor factories: pe.tensor, zeros/ones/full/arange/linspace/rand*/empty and *_like."""
from __future__ import annotations

import numpy as np

from ..backend import get_backend, load
from ..cuda import check_device
from ..tensor import Tensor, _sizes, _to_array
from .dtypes import DEFAULT_FLOAT, as_dtype, bool_, from_np, int64


def _make(array_fn, size, dtype, device, requires_grad):
    shape = _sizes(size)
    if any(n < 0 for n in shape):
        raise RuntimeError(f"Trying to create tensor with negative dimension: {list(shape)}")
    device = check_device(device or "cpu")  # device=None means the default device, as PyTorch
    data = array_fn(get_backend(device), shape, (dtype or DEFAULT_FLOAT).np)
    return Tensor._make(data, device, requires_grad)


def tensor(data, dtype=None, device=None, requires_grad=False):
    """A new tensor holding a copy of ``data`` (Python floats become float32, ints int64)."""
    device = check_device(device or (data.device if isinstance(data, Tensor) else "cpu"))
    arr = _to_array(data, dtype, get_backend(device))
    src = data._host() if isinstance(data, Tensor) else data
    if isinstance(src, np.ndarray) and isinstance(arr, np.ndarray) and np.shares_memory(arr, src):
        arr = arr.copy()
    return Tensor._make(arr, device, requires_grad)


def from_numpy(array):
    """A CPU tensor sharing memory with ``array`` (float32, float64, int64 or bool)."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"expected np.ndarray (got {type(array).__name__})")
    if from_np(array.dtype).np != array.dtype:
        raise TypeError(f"can't convert np.ndarray of type {array.dtype}; pyengine supports "
                        "float32, float64, int64 and bool")
    return Tensor._make(array, "cpu")


def zeros(*size, dtype=None, device="cpu", requires_grad=False):
    return _make(lambda b, s, d: b.xp.zeros(s, dtype=d), size, _dt(dtype), device, requires_grad)


def ones(*size, dtype=None, device="cpu", requires_grad=False):
    return _make(lambda b, s, d: b.xp.ones(s, dtype=d), size, _dt(dtype), device, requires_grad)


def empty(*size, dtype=None, device="cpu", requires_grad=False):
    return _make(lambda b, s, d: b.xp.empty(s, dtype=d), size, _dt(dtype), device, requires_grad)


def full(size, fill_value, dtype=None, device="cpu", requires_grad=False):
    """dtype follows ``fill_value`` when not given (bool, int64 or float32), as PyTorch."""
    if isinstance(fill_value, Tensor):
        fill_value = fill_value.item()
    if dtype is None:
        dtype = bool_ if isinstance(fill_value, bool) else int64 if isinstance(fill_value, int) else DEFAULT_FLOAT
    return _make(lambda b, s, d: b.xp.full(s, fill_value, dtype=d), size, as_dtype(dtype), device, requires_grad)


def arange(start, end=None, step=1, dtype=None, device="cpu", requires_grad=False):
    if end is None:
        start, end = 0, start
    if step == 0:
        raise RuntimeError("arange: step must be nonzero")
    if dtype is None:
        ints = all(isinstance(v, (int, np.integer)) for v in (start, end, step))
        dtype = int64 if ints else DEFAULT_FLOAT
    dt = as_dtype(dtype)
    device = check_device(device)
    host = np.arange(start, end, step, dtype=np.float64 if dt.is_floating_point else np.int64)
    return Tensor._make(get_backend(device).asarray(host.astype(dt.np)), device, requires_grad)


def linspace(start, end, steps, dtype=None, device="cpu", requires_grad=False):
    if steps < 0:
        raise RuntimeError(f"linspace: number of steps must be non-negative, got {steps}")
    dt = _dt(dtype)
    device = check_device(device)
    host = np.linspace(start, end, steps, dtype=np.float64).astype(dt.np)
    return Tensor._make(get_backend(device).asarray(host), device, requires_grad)


def rand(*size, dtype=None, device="cpu", requires_grad=False):
    """Uniform [0, 1) from the device backend's generator (seeded by pe.manual_seed)."""
    return _make(lambda b, s, d: b.rand(s, d), size, _float(dtype, "rand"), device, requires_grad)


def randn(*size, dtype=None, device="cpu", requires_grad=False):
    return _make(lambda b, s, d: b.randn(s, d), size, _float(dtype, "randn"), device, requires_grad)


def randint(*args, size=None, dtype=None, device="cpu", requires_grad=False):
    """randint(high, size) or randint(low, high, size): int64 in [low, high)."""
    if size is None:
        *bounds, size = args
    else:
        bounds = list(args)
    low, high = (0, bounds[0]) if len(bounds) == 1 else bounds
    if high <= low:
        raise RuntimeError(f"random_ expects 'from' to be less than 'to', but got from={low} >= to={high}")
    t = _make(lambda b, s, d: b.randint(low, high, s), size, int64, device, False)
    return t._cast(as_dtype(dtype)) if dtype is not None else t


def manual_seed(seed: int):
    """Seed the CPU generator and, where a GPU is usable, the GPU backend's."""
    load("numpy").manual_seed(int(seed))
    from .. import cuda
    cuda.manual_seed(int(seed))


def _dt(dtype):
    return as_dtype(dtype) if dtype is not None else DEFAULT_FLOAT


def _float(dtype, name):
    dt = _dt(dtype)
    if not dt.is_floating_point:
        raise RuntimeError(f"{name}: expected a floating point dtype, got {dt}")
    return dt


def _like(factory):
    def like(input, *args, dtype=None, device=None, requires_grad=False):
        return factory(input.shape, *args, dtype=dtype or input.dtype, device=device or input.device,
                       requires_grad=requires_grad)
    like.__name__ = factory.__name__ + "_like"
    like.__doc__ = f"{factory.__name__} with the shape, dtype and device of ``input``."
    return like


zeros_like = _like(zeros)
ones_like = _like(ones)
empty_like = _like(empty)
full_like = _like(full)
rand_like = _like(rand)
randn_like = _like(randn)
