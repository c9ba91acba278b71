"""The "native" CUDA backend: CuPy owns device memory and streams, our kernels compute.

The kernel families (matmul, linear, conv2d, pooling, activations) run the hand-written
kernels of ``pyengine._C`` on CuPy arrays: inputs made contiguous float32, outputs allocated
here with ``cupy.empty`` (the kernels never allocate, and an element a kernel forgets stays
garbage instead of a plausible zero), raw pointers and CuPy's current stream passed in. The
nn families (softmax, cross-entropy, layer norm, attention, optimizer steps) come from
``_cuda_nn``. Glue that is not a kernel family (transfers, random numbers, dropout masks,
gather gradients, batch norm) is CuPy arithmetic.

The families take float32 only and raise a TypeError naming the op and dtype otherwise
("native conv2d supports float32, got float64"); the glue accepts float64 too.

This module imports on any machine; ``available()`` says whether it can run here and, if
not, which piece is missing. Each family function also takes ``out=``, a contiguous float32
array of the result's shape to write into (tests pass one poisoned with NaN).
"""
from __future__ import annotations

import numpy as np

from . import _glue
from ._cuda_common import _contiguous, _f32, _f32_view, _ptr, _stream, cp
from ._cuda_nn import (  # the nn families, wrapped by the CUDA-nn half of the kernels
    adam_step,
    adam_step_multi,
    cross_entropy,
    cross_entropy_backward,
    layer_norm,
    layer_norm_backward,
    sdpa,
    sdpa_backward,
    sgd_step,
    sgd_step_multi,
    softmax,
    softmax_backward,
)
from ._glue import batch_norm, batch_norm_backward
from ._glue import channel_view as _channel_view  # noqa: F401  (still importable from here)
from ._glue import float_dtype as _float_dtype
from ._glue import np_dtype as _np_dtype
from .numpy_backend import _LINEAR_ACTIVATIONS, _check_avg_pool_grad, _check_conv, _check_pool

try:
    from pyengine import _C
except ImportError as exc:  # installed without nvcc: CMake skipped the extension
    _C = None
    _C_ERROR = repr(exc)
else:
    _C_ERROR = None

name = "native"
device = "cuda"
xp = cp

# Activation codes of kernels/kernels_core.h (enum Act).
_ACT_CODES = {"relu": 1, "leaky_relu": 2, "gelu": 3, "gelu_tanh": 4, "sigmoid": 5, "tanh": 6, "selu": 7}
_LINEAR_CODES = {None: 0, "relu": 1, "gelu": 3, "gelu_tanh": 4}

_availability = None


def _probe():
    if _C is None:
        return False, (f"pyengine._C is not importable: not built here (pip install . compiles it; "
                       f"CMake skips it without nvcc) ({_C_ERROR})")
    if not getattr(_C, "cuda_built", False):
        return False, "pyengine._C was built without CUDA (no nvcc at build time)"
    if cp is None:
        return False, "CuPy is not installed (pip install cupy-cuda13x)"
    if _C.device_count() == 0:
        err = _C.runtime_error_string()
        if not err or "NoDevice" in err:
            return False, f"no CUDA device ({err or 'the driver reports none'})"
        return False, f"no CUDA driver ({err})"
    return True, ""


def available():
    """(True, "") when the native kernels can run here, else (False, what is missing)."""
    global _availability
    if _availability is None:
        _availability = _probe()
    return _availability


# --------------------------------------------------------------------------------------
# Helpers shared by the family wrappers (_stream, _ptr, _f32, _f32_view: _cuda_common)
# --------------------------------------------------------------------------------------

def _out(out, shape, op, dtype=np.float32):
    """A fresh result array, or the caller's ``out`` after checking it can be written whole."""
    if out is None:
        return cp.empty(shape, dtype=dtype)
    if tuple(out.shape) != tuple(shape) or out.dtype != dtype or not out.flags.c_contiguous:
        raise ValueError(f"native {op}: out must be a contiguous {np.dtype(dtype)} array of shape "
                         f"{tuple(shape)}, got {out.dtype} {tuple(out.shape)}")
    return out


def _allow_tf32():
    # Read at every call, as PyTorch does; imported lazily because pyengine imports backends.
    from pyengine.backends import cuda as cuda_settings
    return bool(cuda_settings.matmul.allow_tf32)


# --------------------------------------------------------------------------------------
# Host transfer and random numbers (glue)
# --------------------------------------------------------------------------------------

def asarray(a, dtype=None):
    return cp.asarray(a, dtype=_np_dtype(dtype))


def to_numpy(a):
    return cp.asnumpy(a)


def manual_seed(seed):
    cp.random.seed(seed)


def rand(shape, dtype=None):
    return cp.random.random(shape, dtype=_float_dtype(dtype, "rand"))


def randn(shape, dtype=None):
    return cp.random.standard_normal(shape, dtype=_float_dtype(dtype, "randn"))


def randint(low, high, shape):
    _glue.check_randint(low, high)
    return cp.random.randint(low, high, size=shape, dtype=cp.int64)


def _uniform_f32(shape):
    return cp.random.random(shape, dtype=cp.float32)


def dropout_mask(shape, p, dtype=None):
    return _glue.dropout_mask(cp, _uniform_f32, shape, p, dtype)


# --------------------------------------------------------------------------------------
# Matrix products
# --------------------------------------------------------------------------------------

def _batch_stride(x, batch_shape):
    """x broadcast to batch_shape + its matrix shape, and one stride (elements) that steps
    through its flattened batch; a copy when the batch axes cannot be flattened in place."""
    x = cp.broadcast_to(x, tuple(batch_shape) + x.shape[-2:])
    item = x.itemsize
    dims = [(n, s // item) for n, s in zip(x.shape[:-2], x.strides[:-2]) if n > 1]
    if not dims:
        return x, 0
    if all(s0 == s1 * n1 for (_, s0), (n1, s1) in zip(dims, dims[1:])) and dims[-1][1] >= 0:
        return x, dims[-1][1]
    x = cp.ascontiguousarray(x)
    return x, x.shape[-2] * x.shape[-1]


def _matrix_strides(x):
    """(x, (row, col) strides in elements) when one axis has unit stride and the other a
    positive one (the kernel's layouts), else (None, (None, None)): the caller copies (a
    broadcast scalar, strides (0, 0), is such a case)."""
    rows, cols = x.shape[-2:]
    if x.size == 0:  # k == 0: nothing is read, any layout will do
        return x, (max(cols, 1), 1)
    rs, cs = x.strides[-2] // x.itemsize, x.strides[-1] // x.itemsize
    if (cs == 1 or cols == 1) and (rows == 1 or rs > 0):
        return x, (rs if rows > 1 else cols, 1)
    if (rs == 1 or rows == 1) and (cols == 1 or cs > 0):
        return x, (1, cs if cols > 1 else rows)
    return None, (None, None)


def _operand_2d(x):
    """(x or a contiguous copy, its (batch, row, col) strides) for one 2-D GEMM operand."""
    view, (rs, cs) = _matrix_strides(x)
    if view is None:
        view, (rs, cs) = _matrix_strides(cp.ascontiguousarray(x))
    return view, (0, rs, cs)


def _gemm(a, b, op, out=None):
    """a @ b over broadcast batch axes through _C.matmul; a (..., m, k), b (..., k, n)."""
    if a.ndim == 2 and b.ndim == 2:  # most calls (linear's backward): no batch axes to fold
        m, n = a.shape[0], b.shape[1]
        y = _out(out, (m, n), op)
        if y.size:
            (av, ast), (bv, bst) = _operand_2d(a), _operand_2d(b)
            _C.matmul(1, m, n, a.shape[1], av.data.ptr, ast, bv.data.ptr, bst, y.data.ptr, 0, 0, 0.0,
                      _allow_tf32(), _stream())
        return y
    batch_shape = tuple(np.broadcast_shapes(a.shape[:-2], b.shape[:-2]))
    m, k = a.shape[-2:]
    n = b.shape[-1]
    y = _out(out, batch_shape + (m, n), op)
    batch = int(np.prod(batch_shape, dtype=np.int64))
    if y.size == 0:
        return y
    operands = []
    for x in (a, b):
        x, bs = _batch_stride(x, batch_shape)
        view, (rs, cs) = _matrix_strides(x)
        if view is None or bs < 0:
            x = cp.ascontiguousarray(x)
            bs = 0 if batch == 1 else x.shape[-2] * x.shape[-1]
            view, (rs, cs) = _matrix_strides(x)
        operands.append((view, (bs, rs, cs)))
    (av, ast), (bv, bst) = operands
    _C.matmul(batch, m, n, k, av.data.ptr, ast, bv.data.ptr, bst, y.data.ptr, 0, 0, 0.0, _allow_tf32(),
              _stream())
    return y


def _check_matmul(a, b):
    _glue.check_matmul(a, b)
    try:
        np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except ValueError:
        raise ValueError(f"matmul: batch dimensions of {a.shape} and {b.shape} do not broadcast") from None


def matmul(a, b, out=None):
    a, b = _f32_view(a, "matmul", "a"), _f32_view(b, "matmul", "b")
    _check_matmul(a, b)
    return _gemm(a, b, "matmul", out)


def linear(x, w, b=None, activation=None, out=None):
    _glue.check_linear_activation(activation, _LINEAR_ACTIVATIONS)
    # _f32_view keeps strides: the GEMM reads transposed and broadcast views in place.
    x, w = _f32_view(x, "linear", "input"), _f32_view(w, "linear", "weight")
    _glue.check_linear_weight(x, w)
    if b is not None:
        b = _f32(b, "linear", "bias")
        _glue.check_linear_bias(b, w)
    lead, (n, k) = x.shape[:-1], w.shape
    # The fused epilogue is built for one layout: x row-major (m, k) and w row-major (n, k),
    # read as the column-major k x n matrix w.T.
    x2 = _contiguous(x.reshape(-1, k))
    w = _contiguous(w)
    y = _out(out, lead + (n,), "linear")
    if y.size:
        _C.matmul(1, x2.shape[0], n, k, x2.data.ptr, (0, k, 1), w.data.ptr, (0, 1, k), y.data.ptr, _ptr(b),
                  _LINEAR_CODES[activation], 0.0, _allow_tf32(), _stream())
    return y


# --------------------------------------------------------------------------------------
# Convolution
# --------------------------------------------------------------------------------------

def conv2d(x, w, b, stride, padding, dilation, groups, out=None):
    x, w = _f32(x, "conv2d", "input"), _f32(w, "conv2d", "weight")
    b = None if b is None else _f32(b, "conv2d", "bias")
    ho, wo = _check_conv(x, w, b, stride, padding, dilation, groups)
    y = _out(out, (x.shape[0], w.shape[0], ho, wo), "conv2d")
    _C.conv2d_forward(x.shape, w.shape, y.shape, tuple(stride), tuple(padding), tuple(dilation), groups,
                      x.data.ptr, w.data.ptr, _ptr(b), y.data.ptr, _stream())
    return y


def conv2d_backward(gy, x, w, stride, padding, dilation, groups, needs=(True, True, True),
                    out=(None, None)):
    """out: optional (gx, gw) buffers, as for the forward's out."""
    gy = _f32(gy, "conv2d_backward", "grad_output")
    x, w = _f32(x, "conv2d_backward", "input"), _f32(w, "conv2d_backward", "weight")
    ho, wo = _check_conv(x, w, None, stride, padding, dilation, groups)
    yshape = (x.shape[0], w.shape[0], ho, wo)
    if gy.shape != yshape:
        raise ValueError(f"conv2d_backward: grad_output {gy.shape} does not match the output shape "
                         f"{yshape} of input {x.shape} and weight {w.shape}")
    geometry = (x.shape, w.shape, yshape, tuple(stride), tuple(padding), tuple(dilation), groups)
    gx = gw = gb = None
    if needs[0]:
        gx = _out(out[0], x.shape, "conv2d_backward")
        _C.conv2d_backward_data(*geometry, gy.data.ptr, w.data.ptr, gx.data.ptr, _stream())
    if needs[1]:
        gw = _out(out[1], w.shape, "conv2d_backward")
        _C.conv2d_backward_weight(*geometry, gy.data.ptr, x.data.ptr, gw.data.ptr, _stream())
    if needs[2]:
        gb = gy.sum(axis=(0, 2, 3))
    return gx, gw, gb


# --------------------------------------------------------------------------------------
# Pooling
# --------------------------------------------------------------------------------------

def max_pool2d(x, kernel_size, stride, padding, dilation=(1, 1), ceil_mode=False, out=None):
    x = _f32(x, "max_pool2d", "input")
    ho, wo = _check_pool("max_pool2d", x, kernel_size, stride, padding, dilation, ceil_mode)
    shape = x.shape[:2] + (ho, wo)
    y = _out(out, shape, "max_pool2d")
    idx = cp.empty(shape, dtype=cp.int64)
    _C.max_pool2d_forward(x.shape, shape, tuple(kernel_size), tuple(stride), tuple(padding), tuple(dilation),
                          x.data.ptr, y.data.ptr, idx.data.ptr, _stream())
    return y, idx


def max_pool2d_backward(gy, indices, x_shape, out=None):
    gy = _f32(gy, "max_pool2d_backward", "grad_output")
    if indices.shape != gy.shape or indices.dtype != cp.int64:
        raise ValueError(f"max_pool2d_backward: indices must be int64 of grad_output's shape {gy.shape}, "
                         f"got {indices.dtype} {indices.shape}")
    indices = _contiguous(indices)
    gx = _out(out, tuple(x_shape), "max_pool2d_backward")
    _C.max_pool2d_backward(tuple(x_shape), gy.shape, gy.data.ptr, indices.data.ptr, gx.data.ptr, _stream())
    return gx


def avg_pool2d(x, kernel_size, stride, padding, ceil_mode=False, count_include_pad=True,
               divisor_override=None, out=None):
    x = _f32(x, "avg_pool2d", "input")
    ho, wo = _check_pool("avg_pool2d", x, kernel_size, stride, padding, (1, 1), ceil_mode)
    shape = x.shape[:2] + (ho, wo)
    y = _out(out, shape, "avg_pool2d")
    _C.avg_pool2d_forward(x.shape, shape, tuple(kernel_size), tuple(stride), tuple(padding),
                          bool(count_include_pad), int(divisor_override or 0), x.data.ptr, y.data.ptr,
                          _stream())
    return y


def avg_pool2d_backward(gy, x_shape, kernel_size, stride, padding, ceil_mode=False,
                        count_include_pad=True, divisor_override=None, out=None):
    gy = _f32(gy, "avg_pool2d_backward", "grad_output")
    x_shape = tuple(x_shape)
    _check_avg_pool_grad(gy, x_shape, kernel_size, stride, padding, ceil_mode)
    gx = _out(out, x_shape, "avg_pool2d_backward")
    _C.avg_pool2d_backward(x_shape, gy.shape, tuple(kernel_size), tuple(stride), tuple(padding),
                           bool(count_include_pad), int(divisor_override or 0), gy.data.ptr, gx.data.ptr,
                           _stream())
    return gx


# --------------------------------------------------------------------------------------
# Activations
# --------------------------------------------------------------------------------------

def activation(name, x, param=None, out=None):
    code, p = _glue.activation_code(name, param, _ACT_CODES)
    x = _f32(x, name, "input")
    y = _out(out, x.shape, name)
    _C.activation_forward(code, p, x.data.ptr, y.data.ptr, x.size, _stream())
    return y


def activation_backward(name, gy, x, y, param=None, out=None):
    code, p = _glue.activation_code(name, param, _ACT_CODES)
    op = f"{name}_backward"
    gy = _f32(gy, op, "grad_output")
    # The kernel reads one of x, y (sigmoid and tanh: y; the rest: x); pass it for both.
    if name in ("sigmoid", "tanh"):
        if y is None:
            y = activation(name, x, param)
        src, arg = _f32(y, op, "output"), "output"
    elif x is not None:
        src, arg = _f32(x, op, "input"), "input"
    elif name == "relu" and y is not None:
        src, arg = _f32(y, op, "output"), "output"  # y > 0 exactly where x > 0
    else:
        raise ValueError(f"{op} needs the forward input x")
    if src.shape != gy.shape:
        raise ValueError(f"{op}: grad_output {gy.shape} and {arg} {src.shape} differ")
    gx = _out(out, gy.shape, op)
    _C.activation_backward(code, p, gy.data.ptr, src.data.ptr, src.data.ptr, gx.data.ptr, gy.size, _stream())
    return gx


# --------------------------------------------------------------------------------------
# Glue: gather gradients (CuPy arithmetic, float32 or float64; batch norm is _glue's)
# --------------------------------------------------------------------------------------

def embedding_backward(gy, indices, num_embeddings, padding_idx=None):
    """The range of ``indices`` is the caller's to check (F.embedding checks it in the
    forward): here it would cost a device sync every step. CuPy's indexing does not check
    bounds (it wraps an out-of-range index), so a bad index cannot write out of bounds."""
    d = gy.shape[-1]
    idx = _glue.check_embedding(gy, indices, num_embeddings, check_range=False)
    gw = cp.zeros((num_embeddings, d), dtype=gy.dtype)
    cp.add.at(gw, idx, gy.reshape(-1, d))
    if padding_idx is not None:
        gw[int(padding_idx) % num_embeddings] = 0
    return gw


def _basic(index):
    """Whether ``index`` is a basic one (ints, slices, None, Ellipsis): it names each element
    at most once, so a plain copy can scatter into it."""
    items = index if isinstance(index, tuple) else (index,)
    return all(i is None or i is Ellipsis or isinstance(i, slice)
               or (isinstance(i, (int, np.integer)) and not isinstance(i, (bool, np.bool_))) for i in items)


def scatter_add(shape, index, values):
    values = cp.asarray(values)
    out = cp.zeros(tuple(shape), dtype=values.dtype)
    if _basic(index):
        out[index] = values  # a strided copy; add.at's atomic scatter is for repeated indices
    else:
        # add.at sums repeated advanced indices (plain setitem would keep only one).
        cp.add.at(out, index, values)
    return out


from ._cuda_rnn import (  # noqa: E402,F401  (the recurrent cells)
    gru_cell, gru_cell_backward, lstm_cell, lstm_cell_backward, lstm_cell_factors)
