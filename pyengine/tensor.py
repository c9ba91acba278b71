"""Tensor: a backend array, its device, and the graph node (``ctx``) that produced it.

Every differentiable method is a Function from ``pyengine/ops``; this file holds the glue:
argument parsing, dtype promotion and the error messages PyTorch users expect.
"""
from __future__ import annotations

import copy
import operator
from collections import namedtuple

import numpy as np

from . import autograd
from .backend import get_backend
from .cuda import check_device
from .ops import arithmetic as A
from .ops import indexing as I
from .ops import reduction as R
from .ops import shape as S
from .ops.broadcast import broadcast_shapes, normalize_dim, normalize_dims
from .ops.conversion import Cast, ToDevice
from .ops.dtypes import DEFAULT_FLOAT, as_dtype, float32, float64, from_np, int64, bool_, promote
from .ops.matmul import Matmul

values_indices = namedtuple("values_indices", ["values", "indices"])

_HELD = frozenset(d.np for d in (float32, float64, int64, bool_))


class _Version:
    """Counts in-place writes; shared by a tensor and its views (PyTorch's version counter)."""
    __slots__ = ("value",)

    def __init__(self):
        self.value = 0


def _sizes(args):
    """Accept f(2, 3), f((2, 3)) and f([2, 3]) as PyTorch does."""
    if len(args) == 1 and isinstance(args[0], (tuple, list)):
        args = tuple(args[0])
    return tuple(int(a) for a in args)


class Tensor:
    """An n-dimensional array on "cpu" or "cuda" that records the ops applied to it.

    ``data`` is the backend array (NumPy or CuPy), ``device`` a string, ``dtype`` a pyengine
    dtype; ``grad`` collects gradients after ``backward()``. The API follows torch.Tensor;
    where it differs (``view`` never requires a viewable layout), the method says so.
    """

    # ndarray (op) Tensor must reach Tensor's reflected operator (and so the graph) instead of
    # NumPy converting the tensor to a plain array.
    __array_ufunc__ = None

    def __init__(self, data, device=None, requires_grad=False, dtype=None):
        """Wrap a backend array without copying; other data is converted as pe.tensor does."""
        if isinstance(data, Tensor):
            device = device or data.device
            data = data.data
        device = check_device(device or "cpu")
        backend = get_backend(device)
        if dtype is not None or not isinstance(data, backend.xp.ndarray):
            data = _to_array(data, dtype, backend)
        self._init(data, device, requires_grad)

    @classmethod
    def _make(cls, data, device, requires_grad=False):
        """Wrap a backend array (or a NumPy scalar a reduction returned) without copying."""
        t = cls.__new__(cls)
        t._init(data, device, requires_grad)
        return t

    def _init(self, data, device, requires_grad):
        if not hasattr(data, "ndim") or isinstance(data, np.generic):
            data = autograd.backend_for(device).xp.asarray(data)
        if data.dtype not in _HELD:
            data = data.astype(from_np(data.dtype).np)
        self._data = data
        self.device = device
        self.grad = None
        self._ctx = None
        self._out_idx = 0
        self._version_counter = _Version()
        self._view_of = None  # the base tensor when this one is a view of its memory
        self._view_fn = None  # (view Function, its other arguments): how to redo the view
        self._view_version = 0  # the base's version when this view's history was taken
        self._requires_grad = False
        if requires_grad:
            self.requires_grad = True

    # ----------------------------------------------------------------- attributes
    def _set_data(self, value):
        """``t.data = other`` as in PyTorch: a Tensor gives its array (same device), so
        ``layer.weight.data = pe.randn(...)`` works; backend arrays are taken as they are."""
        if isinstance(value, Tensor):
            if value.device != self.device:
                raise RuntimeError(f"cannot set .data of a tensor on {self.device} to a tensor on {value.device}")
            value = value._data
        elif not hasattr(value, "dtype") or value.dtype not in _HELD:
            raise TypeError(f".data must be a Tensor or a backend array of a pyengine dtype, got {type(value).__name__}")
        self._data = value

    data = property(operator.attrgetter("_data"), _set_data)  # the getter stays C-fast: every op reads it

    @property
    def requires_grad(self) -> bool:
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, value):
        value = bool(value)
        if value and not self.is_floating_point():
            raise RuntimeError(f"only Tensors of floating point dtype can require gradients, got {self.dtype}")
        if not value and self._ctx is not None:
            raise RuntimeError("you can only change requires_grad flags of leaf variables; "
                               "use detach() to get a tensor that does not require grad")
        self._requires_grad = value

    def requires_grad_(self, requires_grad=True):
        self.requires_grad = requires_grad
        return self

    @property
    def dtype(self):
        return from_np(self.data.dtype)

    @property
    def shape(self) -> tuple:
        return tuple(self.data.shape)

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def is_leaf(self) -> bool:
        return self._ctx is None

    @property
    def grad_fn(self):
        return self._ctx

    @property
    def is_cuda(self) -> bool:
        return self.device == "cuda"

    @property
    def _backend(self):
        return autograd.backend_for(self.device)

    @property
    def _version(self) -> int:
        return self._version_counter.value

    def dim(self) -> int:
        return self.data.ndim

    def size(self, dim=None):
        return self.shape if dim is None else self.shape[normalize_dim(dim, self.ndim)]

    def numel(self) -> int:
        return int(self.data.size)

    def element_size(self) -> int:
        return self.data.dtype.itemsize

    def is_floating_point(self) -> bool:
        return self.data.dtype.kind == "f"

    def __len__(self):
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def __iter__(self):
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(self.shape[0]))

    __hash__ = object.__hash__

    def __deepcopy__(self, memo):
        if self._ctx is not None:
            raise RuntimeError("Only Tensors created explicitly by the user (graph leaves) support "
                               "the deepcopy protocol; detach() it first")
        new = type(self).__new__(type(self))
        memo[id(self)] = new
        new.__dict__.update(copy.deepcopy(self.__dict__, memo))
        return new

    # ----------------------------------------------------------------- host access
    def numpy(self):
        """The data as a NumPy array (shares memory on the CPU), as torch.Tensor.numpy."""
        if self.requires_grad:
            raise RuntimeError("Can't call numpy() on Tensor that requires grad. "
                               "Use tensor.detach().numpy() instead.")
        if self.device != "cpu":
            raise TypeError(f"can't convert {self.device} device type tensor to numpy. "
                            "Use Tensor.cpu() to copy the tensor to host memory first.")
        return self.data

    def _host(self):
        return self.data if self.device == "cpu" else self._backend.to_numpy(self.data)

    def item(self):
        if self.numel() != 1:
            raise RuntimeError(f"a Tensor with {self.numel()} elements cannot be converted to Scalar")
        return self._host().reshape(()).item()

    def tolist(self):
        return self._host().tolist()

    def __array__(self, dtype=None, copy=None):
        arr = self.detach().cpu().numpy()
        return arr if dtype is None else arr.astype(dtype)

    def __bool__(self):
        if self.numel() != 1:
            raise RuntimeError("Boolean value of Tensor with more than one value is ambiguous")
        return bool(self.item())

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __format__(self, spec):
        """A 0-dim tensor formats as its number (``f"{loss:.4f}"``), as in PyTorch."""
        if self.ndim == 0:
            return self.item().__format__(spec)
        return object.__format__(self, spec)

    def __index__(self):
        if self.dtype not in (int64, bool_) or self.numel() != 1:
            raise TypeError("only integer tensors of a single element can be converted to an index")
        return int(self.item())

    def __repr__(self):
        arr = self._host()
        if arr.size == 0:
            body = f"[], size={self.shape}" if self.ndim > 1 else "[]"
        else:
            body = np.array2string(arr, separator=", ", prefix="tensor(", formatter=_float_format(arr))
        extras = []
        if self.device != "cpu":
            extras.append(f"device='{self.device}:0'")
        if self.dtype not in (DEFAULT_FLOAT, int64, bool_):
            extras.append(f"dtype={self.dtype}")
        if self._ctx is not None:
            extras.append(f"grad_fn=<{self._ctx.name}>")
        elif self.requires_grad:
            extras.append("requires_grad=True")
        return "tensor(" + ", ".join([body] + extras) + ")"

    # ----------------------------------------------------------------- autograd
    def backward(self, gradient=None, retain_graph=False):
        autograd.backward(self, gradient, retain_graph)

    def detach(self):
        """The same data, outside the graph (shares the version counter, as PyTorch)."""
        t = Tensor._make(self.data, self.device)
        t._version_counter = self._version_counter
        return t

    def retain_grad(self):
        autograd.retain(self)

    # ----------------------------------------------------------------- devices and dtypes
    def to(self, *args, **kwargs):
        """to(device), to(dtype), to(device, dtype), to(other_tensor); keywords device=, dtype=."""
        device, dtype = kwargs.pop("device", None), kwargs.pop("dtype", None)
        kwargs.pop("non_blocking", None)
        if kwargs:
            raise TypeError(f"to() got unexpected keyword arguments {sorted(kwargs)}")
        for a in args:
            if isinstance(a, Tensor):
                device, dtype = a.device, a.dtype
            elif isinstance(a, str) and a not in ("float32", "float64", "int64", "bool"):
                device = a
            else:
                dtype = a
        out = self
        if device is not None:
            device = check_device(device)
            if device != self.device:
                out = ToDevice.apply(out, device)
        return out._cast(as_dtype(dtype)) if dtype is not None else out

    def cpu(self):
        return self.to("cpu")

    def cuda(self, device=None):
        return self.to("cuda" if device is None else f"cuda:{device}" if isinstance(device, int) else device)

    def _cast(self, dt):
        return self if self.dtype is dt else Cast.apply(self, dt.np)

    def type(self, dtype=None):
        if dtype is None:
            return f"pyengine.{self.dtype.name}"
        return self._cast(as_dtype(dtype))

    def float(self):
        return self._cast(float32)

    def double(self):
        return self._cast(float64)

    def long(self):
        return self._cast(int64)

    def bool(self):
        return self._cast(bool_)

    def new_zeros(self, *size, dtype=None, device=None, requires_grad=False):
        from .ops.creation import zeros
        return zeros(*size, dtype=dtype or self.dtype, device=device or self.device, requires_grad=requires_grad)

    def new_ones(self, *size, dtype=None, device=None, requires_grad=False):
        from .ops.creation import ones
        return ones(*size, dtype=dtype or self.dtype, device=device or self.device, requires_grad=requires_grad)

    def new_full(self, size, fill_value, dtype=None, device=None, requires_grad=False):
        from .ops.creation import full
        return full(size, fill_value, dtype=dtype or self.dtype, device=device or self.device,
                    requires_grad=requires_grad)

    def new_tensor(self, data, dtype=None, device=None, requires_grad=False):
        from .ops.creation import tensor
        return tensor(data, dtype=dtype or self.dtype, device=device or self.device, requires_grad=requires_grad)

    def clone(self):
        return S.Clone.apply(self)

    def contiguous(self):
        return self if self.data.flags.c_contiguous else S.Contiguous.apply(self)

    def is_contiguous(self) -> bool:
        return bool(self.data.flags.c_contiguous)

    # ----------------------------------------------------------------- arithmetic
    def _binary(self, fn, other, name, reverse=False):
        other = self._operand(other)
        dt = promote(self, other)
        if name == "div" and not dt.is_floating_point:
            dt = DEFAULT_FLOAT
        a = self._cast(dt)
        if isinstance(other, Tensor):
            if other.data.shape != self.data.shape:
                broadcast_shapes(name, self.shape, other.shape)
            other = other._cast(dt)
        return fn.apply(other, a) if reverse else fn.apply(a, other)

    def _operand(self, other):
        """Python and NumPy scalars stay scalars (weak type, as in PyTorch); arrays and lists become tensors.

        NumPy scalars go first: ``np.float64`` subclasses ``float``, and kept as is it would make
        NumPy promote a float32 array to float64 (``x / np.sqrt(d)``).
        """
        if isinstance(other, np.generic):
            return other.item()
        if isinstance(other, (Tensor, bool, int, float)):
            return other
        return Tensor(other, device=self.device)

    def __add__(self, o): return self._binary(A.Add, o, "add")
    def __radd__(self, o): return self._binary(A.Add, o, "add", True)
    def __sub__(self, o): return self._binary(A.Sub, o, "sub")
    def __rsub__(self, o): return self._binary(A.Sub, o, "sub", True)
    def __mul__(self, o): return self._binary(A.Mul, o, "mul")
    def __rmul__(self, o): return self._binary(A.Mul, o, "mul", True)
    def __truediv__(self, o): return self._binary(A.Div, o, "div")
    def __rtruediv__(self, o): return self._binary(A.Div, o, "div", True)
    def __pow__(self, o): return self._binary(A.Pow, o, "pow")
    def __rpow__(self, o): return self._binary(A.Pow, o, "pow", True)

    def __neg__(self):
        return A.Neg.apply(self)

    def __pos__(self):
        return self

    def __matmul__(self, other):
        return matmul(self, self._operand(other))

    def __rmatmul__(self, other):
        return matmul(self._operand(other), self)

    add = __add__
    sub = __sub__
    mul = __mul__
    div = __truediv__
    pow = __pow__
    matmul = __matmul__

    def exp(self): return A.Exp.apply(self._as_float())
    def log(self): return A.Log.apply(self._as_float())
    def sqrt(self): return A.Sqrt.apply(self._as_float())
    def abs(self): return A.Abs.apply(self)

    def _as_float(self):
        return self if self.is_floating_point() else self._cast(DEFAULT_FLOAT)

    def clamp(self, min=None, max=None):
        if min is None and max is None:
            raise RuntimeError("clamp: at least one of 'min' or 'max' must not be None")
        return A.Clamp.apply(self, _scalar(min, "min"), _scalar(max, "max"))

    clip = clamp

    def maximum(self, other): return maximum(self, other)
    def minimum(self, other): return minimum(self, other)

    def relu(self):
        from .nn import functional as F
        return F.relu(self)

    def sigmoid(self):
        from .nn import functional as F
        return F.sigmoid(self)

    def tanh(self):
        from .nn import functional as F
        return F.tanh(self)

    def softmax(self, dim):
        from .nn import functional as F
        return F.softmax(self, dim)

    def log_softmax(self, dim):
        from .nn import functional as F
        return F.log_softmax(self, dim)

    # ----------------------------------------------------------------- comparisons, logic
    def _compare(self, op, other, name):
        if other is None:  # ``t == None`` is a plain False, as in PyTorch
            return NotImplemented
        other = self._operand(other)
        if isinstance(other, Tensor):
            broadcast_shapes(name, self.shape, other.shape)
            dt = promote(self, other)
            return A.NonDiff.apply(op, self._cast(dt), other._cast(dt))
        return A.NonDiff.apply(op, self, other)

    def __eq__(self, o): return self._compare(operator.eq, o, "eq")
    def __ne__(self, o): return self._compare(operator.ne, o, "ne")
    def __lt__(self, o): return self._compare(operator.lt, o, "lt")
    def __le__(self, o): return self._compare(operator.le, o, "le")
    def __gt__(self, o): return self._compare(operator.gt, o, "gt")
    def __ge__(self, o): return self._compare(operator.ge, o, "ge")
    def __and__(self, o): return self._compare(operator.and_, o, "and")
    def __or__(self, o): return self._compare(operator.or_, o, "or")
    def __xor__(self, o): return self._compare(operator.xor, o, "xor")

    def __invert__(self):
        if self.dtype is bool_:
            return A.NonDiff.apply(self._backend.xp.logical_not, self)
        if self.dtype is int64:
            return A.NonDiff.apply(operator.invert, self)
        raise TypeError(f"~ (bitwise not) is only defined for bool and integer tensors, got {self.dtype}")

    eq, ne, lt, le, gt, ge = __eq__, __ne__, __lt__, __le__, __gt__, __ge__

    def isnan(self):
        return A.NonDiff.apply(self._backend.xp.isnan, self)

    def isfinite(self):
        return A.NonDiff.apply(self._backend.xp.isfinite, self)

    def all(self, dim=None, keepdim=False):
        return A.NonDiff.apply(lambda x: x.all(axis=normalize_dims(dim, x.ndim), keepdims=keepdim), self)

    def any(self, dim=None, keepdim=False):
        return A.NonDiff.apply(lambda x: x.any(axis=normalize_dims(dim, x.ndim), keepdims=keepdim), self)

    # ----------------------------------------------------------------- reductions
    def sum(self, dim=None, keepdim=False, dtype=None):
        x = self if self.is_floating_point() else self._cast(int64)
        x = x._cast(as_dtype(dtype)) if dtype is not None else x
        return R.Sum.apply(x, normalize_dims(dim, self.ndim), keepdim)

    def mean(self, dim=None, keepdim=False, dtype=None):
        x = self._cast(as_dtype(dtype)) if dtype is not None else self
        if not x.is_floating_point():
            raise RuntimeError("mean(): could not infer output dtype. Input dtype must be a floating "
                               f"point dtype. Got: {x.dtype}")
        return R.Mean.apply(x, normalize_dims(dim, self.ndim), keepdim)

    def var(self, dim=None, unbiased=None, keepdim=False, *, correction=None):
        """Variance; unbiased (correction=1) by default, as PyTorch."""
        return self._spread(R.Var, dim, unbiased, keepdim, correction)

    def _spread(self, fn, dim, unbiased, keepdim, correction):
        if unbiased is not None and correction is not None:
            raise RuntimeError("var/std: pass either unbiased or correction, not both")
        if correction is None:
            correction = 0 if unbiased is False else 1
        if not self.is_floating_point():
            raise RuntimeError(f"var/std need a floating point tensor, got {self.dtype}")
        return fn.apply(self, normalize_dims(dim, self.ndim), correction, keepdim)

    def std(self, dim=None, unbiased=None, keepdim=False, *, correction=None):
        return self._spread(R.Std, dim, unbiased, keepdim, correction)

    def _extreme(self, dim, keepdim, largest, name):
        if isinstance(dim, Tensor):
            return (maximum if largest else minimum)(self, dim)
        if self.numel() == 0:
            raise RuntimeError(f"{name}(): Expected reduction dim to be specified for input.numel() == 0")
        if dim is None:
            return R.AExtreme.apply(self, normalize_dims(None, self.ndim), False, largest)
        d = normalize_dim(dim, self.ndim)
        if self.ndim == 0:
            return values_indices(self.clone(), Tensor._make(self._backend.xp.zeros((), dtype=np.int64), self.device))
        return values_indices(*R.Extreme.apply(self, d, keepdim, largest))

    def max(self, dim=None, keepdim=False):
        """max() -> the largest value; max(dim) -> (values, indices); max(other) -> maximum."""
        return self._extreme(dim, keepdim, True, "max")

    def min(self, dim=None, keepdim=False):
        return self._extreme(dim, keepdim, False, "min")

    def amax(self, dim=None, keepdim=False):
        dims = normalize_dims(None if dim == () else dim, self.ndim)
        return R.AExtreme.apply(self, dims, keepdim, True)

    def amin(self, dim=None, keepdim=False):
        dims = normalize_dims(None if dim == () else dim, self.ndim)
        return R.AExtreme.apply(self, dims, keepdim, False)

    def _arg(self, dim, keepdim, largest):
        def op(x):
            pick = x.argmax if largest else x.argmin
            if dim is None:
                i = pick()
                return i.reshape((1,) * x.ndim) if keepdim else i
            out = pick(axis=normalize_dim(dim, x.ndim))
            return out.reshape([1 if k == normalize_dim(dim, x.ndim) else n
                                for k, n in enumerate(x.shape)]) if keepdim else out
        return A.NonDiff.apply(op, self)

    def argmax(self, dim=None, keepdim=False):
        return self._arg(dim, keepdim, True)

    def argmin(self, dim=None, keepdim=False):
        return self._arg(dim, keepdim, False)

    # ----------------------------------------------------------------- shape
    def reshape(self, *shape):
        shape = _sizes(shape)
        known = int(np.prod([n for n in shape if n != -1]))
        if shape.count(-1) > 1 or any(n < -1 for n in shape) or (
                -1 not in shape and known != self.numel()) or (
                -1 in shape and (known == 0 or self.numel() % known)):
            raise RuntimeError(f"shape '{list(shape)}' is invalid for input of size {self.numel()}")
        return S.Reshape.apply(self, shape)

    def view(self, *shape):
        """As reshape: pyengine does not require a viewable layout (PyTorch's view does)."""
        return self.reshape(*shape)

    def view_as(self, other):
        return self.reshape(other.shape)

    def reshape_as(self, other):
        return self.reshape(other.shape)

    def flatten(self, start_dim=0, end_dim=-1):
        if self.ndim == 0:
            return self.reshape(1)
        s, e = normalize_dim(start_dim, self.ndim), normalize_dim(end_dim, self.ndim)
        if s > e:
            raise RuntimeError("flatten() has invalid args: start_dim cannot come after end_dim")
        shape = self.shape
        return self.reshape(shape[:s] + (int(np.prod(shape[s:e + 1])),) + shape[e + 1:])

    def squeeze(self, dim=None):
        dims = normalize_dims(dim, self.ndim)
        return self.reshape(tuple(n for i, n in enumerate(self.shape) if not (i in dims and n == 1)))

    def unsqueeze(self, dim):
        d = normalize_dim(dim, self.ndim + 1)
        return self.reshape(self.shape[:d] + (1,) + self.shape[d:])

    def permute(self, *dims):
        dims = _sizes(dims)
        if len(dims) != self.ndim:
            raise RuntimeError(f"permute: number of dims {len(dims)} doesn't match the tensor's "
                               f"{self.ndim} dims (shape {self.shape})")
        axes = tuple(normalize_dim(d, self.ndim) for d in dims)
        if len(set(axes)) != len(axes):
            raise RuntimeError(f"permute: repeated dim in {dims}")
        return S.Permute.apply(self, axes)

    def transpose(self, dim0, dim1):
        axes = list(range(self.ndim))
        a, b = normalize_dim(dim0, self.ndim), normalize_dim(dim1, self.ndim)
        axes[a], axes[b] = axes[b], axes[a]
        return S.Permute.apply(self, tuple(axes)) if self.ndim else self

    @property
    def T(self):
        return S.Permute.apply(self, tuple(range(self.ndim))[::-1])

    @property
    def mT(self):
        return self.transpose(-2, -1)

    def t(self):
        if self.ndim > 2:
            raise RuntimeError(f"t() expects a tensor with <= 2 dimensions, but self is {self.ndim}D")
        return self.T

    def expand(self, *sizes):
        sizes = _sizes(sizes)
        if len(sizes) < self.ndim:
            raise RuntimeError(f"expand: the number of sizes provided ({len(sizes)}) must be greater "
                               f"or equal to the number of dimensions in the tensor ({self.ndim})")
        lead = len(sizes) - self.ndim
        target = list(sizes)
        for i, n in enumerate(self.shape):
            want = sizes[lead + i]
            if want == -1:
                target[lead + i] = n
            elif n != 1 and n != want:
                raise RuntimeError(
                    f"The expanded size of the tensor ({want}) must match the existing size ({n}) at "
                    f"non-singleton dimension {lead + i}. Target sizes: {list(sizes)}. "
                    f"Tensor sizes: {list(self.shape)}")
        return S.Expand.apply(self, tuple(target))

    def expand_as(self, other):
        return self.expand(other.shape)

    def repeat(self, *sizes):
        sizes = _sizes(sizes)
        if len(sizes) < self.ndim:
            raise RuntimeError("Number of dimensions of repeat dims can not be smaller than number "
                               f"of dimensions of tensor ({len(sizes)} < {self.ndim})")
        return S.Repeat.apply(self, sizes)

    def split(self, split_size_or_sections, dim=0):
        d = normalize_dim(dim, self.ndim)
        n = self.shape[d]
        if isinstance(split_size_or_sections, int):
            if split_size_or_sections <= 0:
                raise RuntimeError(f"split expects split_size be positive, got {split_size_or_sections}")
            sizes = [min(split_size_or_sections, n - s) for s in range(0, n, split_size_or_sections)]
        else:
            sizes = [int(s) for s in split_size_or_sections]
            if sum(sizes) != n:
                raise RuntimeError(f"split_with_sizes expects split_sizes to sum exactly to {n} "
                                   f"(input tensor's size at dimension {d}), but got split_sizes={sizes}")
        out, start = [], 0
        for s in sizes:
            out.append(self[(slice(None),) * d + (slice(start, start + s),)])
            start += s
        return tuple(out)

    def chunk(self, chunks, dim=0):
        n = self.shape[normalize_dim(dim, self.ndim)]
        return self.split(max(-(-n // chunks), 1), dim)

    def unbind(self, dim=0):
        d = normalize_dim(dim, self.ndim)
        return tuple(self[(slice(None),) * d + (i,)] for i in range(self.shape[d]))

    # ----------------------------------------------------------------- indexing and masks
    def _index(self, index):
        """Tensors and lists inside an index become backend arrays (same device only)."""
        items = index if isinstance(index, tuple) else (index,)
        out = []
        for it in items:
            if isinstance(it, Tensor):
                if it.device != self.device:
                    raise RuntimeError(f"indices are on {it.device} but the indexed tensor is on {self.device}")
                it = it.data
            elif isinstance(it, list) or (isinstance(it, np.ndarray) and self.device != "cpu"):
                # an empty list selects nothing, as in PyTorch; NumPy would read it as a float array
                it = self._backend.xp.asarray(it, dtype=np.int64 if isinstance(it, list) and not it else None)
            out.append(it)
        return tuple(out)

    def __getitem__(self, index):
        index = self._index(index)
        out = I.GetItem.apply(self, index)
        if not all(isinstance(i, (int, np.integer, slice, type(None), type(Ellipsis)))
                   and not isinstance(i, bool) for i in index):
            out._version_counter, out._view_of, out._view_fn = _Version(), None, None  # a copy
        return out

    def __setitem__(self, index, value):
        value = self._operand(value)
        if isinstance(value, Tensor):
            value = value.to(self.device)._cast(self.dtype)
        index = self._index(index)
        self._inplace(lambda: I.SetItem.apply(self, value, index))

    def masked_fill(self, mask, value):
        if not isinstance(mask, Tensor) or mask.dtype is not bool_:
            raise RuntimeError(f"masked_fill only supports boolean masks, got {getattr(mask, 'dtype', type(mask))}")
        broadcast_shapes("masked_fill", mask.shape, self.shape)
        if tuple(np.broadcast_shapes(mask.shape, self.shape)) != self.shape:
            raise RuntimeError(f"masked_fill: mask of shape {mask.shape} does not broadcast to the "
                               f"tensor's shape {self.shape}")
        if isinstance(value, Tensor):
            if value.ndim:
                raise RuntimeError(f"masked_fill only supports a 0-dimensional value tensor, "
                                   f"but got tensor with {value.ndim} dimension(s)")
            value = value._cast(self.dtype)
        return I.MaskedFill.apply(self, mask, value)

    def tril(self, diagonal=0):
        return tril(self, diagonal)

    def triu(self, diagonal=0):
        return triu(self, diagonal)

    # ----------------------------------------------------------------- in place
    def _inplace(self, compute):
        """Run ``compute`` out of place, then write its result into this tensor's memory.

        Under grad mode the result's graph node becomes this tensor's, so autograd sees the
        new value; the version bump makes any backward that saved the old value raise.
        """
        grad_mode = autograd.is_grad_enabled()
        if grad_mode and self.requires_grad and self._ctx is None:
            raise RuntimeError("a leaf Variable that requires grad is being used in an in-place "
                               "operation.")
        out = compute()
        if out.shape != self.shape:
            raise RuntimeError(f"output with shape {list(self.shape)} doesn't match the broadcast "
                               f"shape {list(out.shape)}")
        if out.dtype.category > self.dtype.category:
            raise RuntimeError(f"result type {out.dtype} can't be cast to the desired output type {self.dtype}")
        if not getattr(self.data.flags, "writeable", True):  # CuPy's flags have no writeable
            raise RuntimeError("unsupported operation: this tensor's memory is read-only or shared "
                               "by several of its elements (an expand()); clone() it first")
        if grad_mode and out.requires_grad and self._view_of is not None:
            return self._inplace_view(out)
        self.data[...] = out.data
        self._version_counter.value += 1
        if out.requires_grad:
            self._ctx, self._out_idx, self._requires_grad = out._ctx, out._out_idx, True
        return self

    def _inplace_view(self, out):
        """An in-place write through a view rebases the base's history (PyTorch's CopySlices):
        the base takes ``out`` where the view sits, then the view is redone on the new base."""
        cls, rest = self._view_fn or (None, ())
        base = self._view_of
        if cls is I.GetItem:
            base[rest[0]] = out
        elif cls is S.Reshape:
            base.copy_(out.reshape(base.shape))
        elif cls is S.Permute:
            base.copy_(out.permute(*np.argsort(rest[0]).tolist()))
        else:
            raise RuntimeError("in-place operation on this view while gradients are recorded is not "
                               "supported (an expand(), or a view made under no_grad); use the "
                               "out-of-place op")
        self._refresh_view()
        return self

    def _refresh_view(self):
        cls, rest = self._view_fn
        fresh = cls.apply(self._view_of, *rest)
        self._ctx, self._out_idx, self._requires_grad = fresh._ctx, fresh._out_idx, fresh._requires_grad
        self._view_version = self._version_counter.value

    def add_(self, other, alpha=1):
        return self._inplace(lambda: self + (other * alpha if alpha != 1 else other))

    def sub_(self, other, alpha=1):
        return self._inplace(lambda: self - (other * alpha if alpha != 1 else other))

    def mul_(self, other):
        return self._inplace(lambda: self * other)

    # ``w -= lr * w.grad`` is in place in PyTorch, so these must not fall back to rebinding.
    def __iadd__(self, other): return self.add_(other)
    def __isub__(self, other): return self.sub_(other)
    def __imul__(self, other): return self.mul_(other)
    def __itruediv__(self, other): return self.div_(other)

    def div_(self, other):
        return self._inplace(lambda: self / other)

    def clamp_(self, min=None, max=None):
        return self._inplace(lambda: self.clamp(min, max))

    def masked_fill_(self, mask, value):
        return self._inplace(lambda: self.masked_fill(mask, value))

    def fill_(self, value):
        fill = self._operand(value)
        keep = Tensor._make(self._backend.xp.ones(self.shape, dtype=bool), self.device)
        return self._inplace(lambda: where(keep, fill, self))

    def zero_(self):
        return self.fill_(0)

    def copy_(self, src):
        src = self._operand(src)
        return self._inplace(lambda: src.to(self.device)._cast(self.dtype).expand(self.shape))

    def uniform_(self, a=0.0, b=1.0):
        r = self._backend.rand(self.shape, self.data.dtype)
        return self._inplace(lambda: Tensor._make(r * (b - a) + a, self.device))

    def normal_(self, mean=0.0, std=1.0):
        r = self._backend.randn(self.shape, self.data.dtype)
        return self._inplace(lambda: Tensor._make(r * std + mean, self.device))


def _float_format(arr):
    """PyTorch's print style: ``1.`` when every value is integral, else 4 decimals or 4-digit
    scientific notation when the magnitudes span too much for fixed point; right-aligned."""
    if arr.dtype.kind != "f":
        return None
    finite = np.abs(arr[np.isfinite(arr)])
    nonzero = finite[finite > 0]
    if finite.size == 0 or (finite == np.round(finite)).all() and finite.max() < 1e8:
        fmt = "{:.0f}."
    elif finite.max() >= 1e8 or (nonzero.size and nonzero.min() < 1e-4):
        fmt = "{:.4e}"
    else:
        fmt = "{:.4f}"

    def one(v):
        return fmt.format(v) if np.isfinite(v) else str(v)

    flat = arr.reshape(-1)
    shown = flat if flat.size <= 1000 else np.concatenate([flat[:500], flat[-500:]])  # numpy elides the middle
    width = max(len(one(v)) for v in shown)
    return {"float_kind": lambda v: one(v).rjust(width)}


def _scalar(v, name):
    if isinstance(v, Tensor):
        if v.numel() != 1:
            raise RuntimeError(f"{name} must be a number or a one-element tensor, got shape {v.shape}")
        return v.item()
    return v


def _to_array(data, dtype, backend):
    """Host data (lists, scalars, NumPy arrays, Tensors) -> a backend array of a pyengine dtype.

    Python floats default to float32 and ints to int64, as PyTorch; NumPy arrays keep their
    dtype (mapped to the four pyengine dtypes).
    """
    if isinstance(data, Tensor):
        data = data._host()
    host = np.asarray(data) if not isinstance(data, backend.xp.ndarray) else data
    if dtype is not None:
        dt = as_dtype(dtype)
    elif isinstance(data, (np.ndarray, np.generic)) or isinstance(data, backend.xp.ndarray):
        dt = from_np(host.dtype)
    else:
        dt = DEFAULT_FLOAT if host.dtype.kind == "f" else from_np(host.dtype)
    if host.dtype == object:
        raise TypeError(f"cannot make a tensor from {type(data).__name__} data of mixed or ragged structure")
    return backend.asarray(host.astype(dt.np, copy=False))


def _pair(a, b, name):
    """Two operands of a function form (pe.maximum(a, b), pe.where): promoted, one device."""
    t = a if isinstance(a, Tensor) else b
    a, b = t._operand(a), t._operand(b)
    dt = promote(a, b)
    if isinstance(a, Tensor) and isinstance(b, Tensor):
        broadcast_shapes(name, a.shape, b.shape)
    return (a._cast(dt) if isinstance(a, Tensor) else a), (b._cast(dt) if isinstance(b, Tensor) else b)


def matmul(a, b):
    """``a @ b`` with PyTorch's 1-D rules: a 1-D operand gains a dim that the result drops."""
    if not isinstance(a, Tensor) or not isinstance(b, Tensor):
        raise TypeError(f"matmul expects tensors, got {type(a).__name__} and {type(b).__name__}")
    if a.ndim == 0 or b.ndim == 0:
        raise RuntimeError(f"both arguments to matmul need to be at least 1D, but they are "
                           f"{a.ndim}D and {b.ndim}D")
    if a.dtype is not b.dtype:
        raise RuntimeError(f"expected both matmul operands to have the same dtype, but got "
                           f"{a.dtype} and {b.dtype}")
    ka, kb = a.shape[-1], b.shape[-2] if b.ndim > 1 else b.shape[0]
    if ka != kb:
        raise RuntimeError(f"mat1 and mat2 shapes cannot be multiplied: {a.shape} @ {b.shape} "
                           f"({ka} != {kb})")
    if a.ndim > 2 and b.ndim > 2:
        broadcast_shapes("matmul batch dims", a.shape[:-2], b.shape[:-2])
    a2 = a.unsqueeze(0) if a.ndim == 1 else a
    b2 = b.unsqueeze(-1) if b.ndim == 1 else b
    out = Matmul.apply(a2, b2)
    if b.ndim == 1:
        out = out.squeeze(-1)
    if a.ndim == 1:
        out = out.squeeze(-2 if b.ndim > 1 else -1)
    return out


def maximum(a, b):
    return A.Maximum.apply(*_pair(a, b, "maximum"))


def minimum(a, b):
    return A.Minimum.apply(*_pair(a, b, "minimum"))


def where(condition, input, other):
    if not isinstance(condition, Tensor) or condition.dtype is not bool_:
        raise RuntimeError(f"where expected condition to be a boolean tensor, got "
                           f"{getattr(condition, 'dtype', type(condition).__name__)}")
    if not isinstance(input, Tensor) and not isinstance(other, Tensor):
        input = Tensor._make(condition._backend.xp.asarray(input, dtype=promote(input, other).np),
                             condition.device)
    a, b = _pair(input, other, "where")
    # A scalar becomes a 0-dim array of the result dtype: CuPy's where would widen a Python float.
    ref = a if isinstance(a, Tensor) else b
    a, b = (x if isinstance(x, Tensor) else Tensor._make(ref._backend.xp.asarray(x, dtype=ref.data.dtype),
                                                         ref.device) for x in (a, b))
    broadcast_shapes("where", condition.shape, a.shape, b.shape)
    return A.Where.apply(condition, a, b)


def tril(x, diagonal=0):
    if x.ndim < 2:
        raise RuntimeError(f"tril: input tensor must have at least 2 dimensions, got shape {x.shape}")
    return I.Tri.apply(x, diagonal, False)


def triu(x, diagonal=0):
    if x.ndim < 2:
        raise RuntimeError(f"triu: input tensor must have at least 2 dimensions, got shape {x.shape}")
    return I.Tri.apply(x, diagonal, True)



def _promote_all(tensors, name):
    if not tensors:
        raise RuntimeError(f"{name}(): expected a non-empty list of Tensors")
    for i, t in enumerate(tensors):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name}(): expected a sequence of Tensors, but element {i} is {type(t).__name__}")
    best = tensors[0]
    for t in tensors[1:]:
        if promote(best, t) is t.dtype:
            best = t
    return [t._cast(best.dtype) for t in tensors]


def cat(tensors, dim=0):
    """Join along an existing dim; shapes must match everywhere else."""
    tensors = _promote_all(list(tensors), "cat")
    first = tensors[0]
    d = normalize_dim(dim, first.ndim)
    for i, t in enumerate(tensors):
        if t.ndim != first.ndim or any(a != b for k, (a, b) in enumerate(zip(t.shape, first.shape)) if k != d):
            raise RuntimeError(f"Sizes of tensors must match except in dimension {d}: tensor 0 has "
                               f"shape {first.shape} but tensor {i} has shape {t.shape}")
    return S.Cat.apply(*tensors, dim=d)


def stack(tensors, dim=0):
    """Join along a new dim; every tensor must have the same shape."""
    tensors = _promote_all(list(tensors), "stack")
    for i, t in enumerate(tensors):
        if t.shape != tensors[0].shape:
            raise RuntimeError(f"stack expects each tensor to be equal size, but got {tensors[0].shape} "
                               f"at entry 0 and {t.shape} at entry {i}")
    return S.Stack.apply(*tensors, dim=normalize_dim(dim, tensors[0].ndim + 1))
