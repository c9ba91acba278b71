"""Glue shared by the backends: argument checks and the array-module-generic functions
(batch norm, dropout masks, gradient un-broadcasting) that NumPy and CuPy run alike.

Each function works on NumPy or CuPy arrays; where it needs the array module itself it
takes it from its input (``array_module``), so this module imports without CuPy.
"""
from __future__ import annotations

import sys

import numpy as np


def array_module(a):
    """cupy for a CuPy array, numpy otherwise (CuPy is never imported here: an array of it
    can only exist once something else has)."""
    cp = sys.modules.get("cupy")
    if cp is not None and isinstance(a, cp.ndarray):
        return cp
    return np


# --------------------------------------------------------------------------------------
# dtypes and random masks
# --------------------------------------------------------------------------------------

def np_dtype(dtype):
    """numpy dtype of a numpy dtype, a Python type or a pyengine dtype (which carries .np)."""
    return None if dtype is None else np.dtype(getattr(dtype, "np", dtype))


def float_dtype(dtype, op):
    dt = np.dtype(np.float32) if dtype is None else np_dtype(dtype)
    if dt not in (np.float32, np.float64):
        raise TypeError(f"{op}: dtype must be float32 or float64, got {dt}")
    return dt


def check_randint(low, high):
    if high <= low:
        raise ValueError(f"randint: high ({high}) must be greater than low ({low})")


def dropout_mask(xp, uniform, shape, p, dtype=None):
    """The table's dropout_mask for array module ``xp``; ``uniform(shape)`` draws [0, 1)
    from the backend's generator (not called when p == 1: the generator does not advance)."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got p={p}")
    dt = float_dtype(dtype, "dropout_mask")
    if p == 1.0:
        return xp.zeros(shape, dt)
    keep = uniform(shape) >= p
    return keep.astype(dt) * dt.type(1.0 / (1.0 - p))


# --------------------------------------------------------------------------------------
# Argument checks
# --------------------------------------------------------------------------------------

def check_matmul(a, b):
    """ndim and inner sizes; the batch dimensions are the caller's (NumPy finds out in the
    product itself)."""
    if a.ndim < 2 or b.ndim < 2:
        raise ValueError(f"matmul: both operands need ndim >= 2 (the caller promotes 1-D), "
                         f"got shapes {a.shape} and {b.shape}")
    if a.shape[-1] != b.shape[-2]:
        raise ValueError(f"matmul: shapes {a.shape} and {b.shape} cannot be multiplied "
                         f"({a.shape[-1]} != {b.shape[-2]})")


def check_linear_activation(activation, activations):
    if activation not in activations:
        raise ValueError(f"linear: activation must be one of {list(activations)}, "
                         f"got {activation!r}")


def check_linear_weight(x, w):
    if w.ndim != 2 or x.ndim < 1 or x.shape[-1] != w.shape[1]:
        raise ValueError(f"linear: input {x.shape} does not match weight {w.shape} "
                         f"(expected input (..., {w.shape[-1]}) and weight (out, in))")


def activation_code(name, param, codes):
    """(kernel code, float parameter) of an activation name and its table param, ``codes``
    mapping names to a GPU backend's kernel codes (kernels_core.h ``enum Act``)."""
    if name == "gelu":
        mode = "none" if param is None else param
        if mode not in ("none", "tanh"):
            raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {param!r}")
        return codes["gelu_tanh" if mode == "tanh" else "gelu"], 0.0
    if name not in codes or name == "gelu_tanh":
        raise ValueError(f"unknown activation {name!r}; expected one of relu, leaky_relu, gelu, "
                         f"sigmoid, tanh, selu")
    if name == "leaky_relu":
        return codes[name], 0.01 if param is None else float(param)
    return codes[name], 0.0


def check_linear_bias(b, w):
    if b is not None and b.shape != (w.shape[0],):
        raise ValueError(f"linear: bias {b.shape} does not match weight {w.shape}")


def check_target_shape(logits, target, op):
    if logits.ndim != 2:
        raise ValueError(f"{op}: expected logits of shape (N, C), got {logits.shape}")
    if target.shape != logits.shape[:1]:
        raise ValueError(f"{op}: target {target.shape} does not match logits {logits.shape} "
                         f"(expected ({logits.shape[0]},))")
    if target.dtype.kind not in "iu":
        raise TypeError(f"{op}: target must hold integer class indices, got dtype {target.dtype}")


def first_out_of_range(values, n, skip=None, keep=None):
    """None when every element of the integer array ``values`` is in [0, n) or equals ``skip``,
    else the first (in C order) that is not.

    One elementwise pass when ``skip`` is None or inside [0, n) (those values need no
    exclusion): the largest element read as unsigned, where a negative one is huge; two more
    (a mask, a where) otherwise, or one with ``keep`` (values != skip) given. Then one host
    read: on a GPU, one device sync. Only a failing check pays for finding the first bad
    element."""
    if values.size == 0:
        return None
    v = values
    if skip is not None and not 0 <= skip < n:
        v = array_module(values).where(values != skip if keep is None else keep, values, 0)
    if v.dtype.kind == "i":
        v = v.view(np.dtype(f"u{v.dtype.itemsize}"))
    if int(v.max()) < n:
        return None
    bad = (values < 0) | (values >= n)
    if skip is not None:
        bad &= values != skip
    return int(values[bad].reshape(-1)[0])


def check_classes(target, n_classes, ignore_index, op, keep=None):
    """IndexError naming the first target outside [0, n_classes) that is not ignore_index."""
    value = first_out_of_range(target, n_classes, ignore_index, keep)
    if value is not None:
        raise IndexError(f"{op}: target {value} is out of bounds for {n_classes} classes "
                         f"(valid: 0..{n_classes - 1}, or ignore_index={ignore_index})")


def check_target_bounds(logits, target, ignore_index, op):
    """The mask of rows that count (target != ignore_index), after checking their classes
    (check_classes: one reduction, on a GPU one sync; buys PyTorch's error instead of a NaN
    loss)."""
    valid = target != ignore_index
    check_classes(target, logits.shape[1], ignore_index, op, keep=valid)
    return valid


def check_targets(logits, target, ignore_index, op):
    check_target_shape(logits, target, op)
    return check_target_bounds(logits, target, ignore_index, op)


def check_label_smoothing(label_smoothing):
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")


def check_qkv(q, k, v):
    if q.ndim < 2 or k.ndim < 2 or v.ndim < 2:
        raise ValueError(f"sdpa: q, k, v need ndim >= 2, got {q.shape}, {k.shape}, {v.shape}")
    if q.shape[-1] != k.shape[-1] or k.shape[-2] != v.shape[-2]:
        raise ValueError(f"sdpa: expected q (..., L, E), k (..., S, E), v (..., S, Ev), "
                         f"got {q.shape}, {k.shape}, {v.shape}")


def check_embedding(gy, indices, num_embeddings, check_range=True):
    """The flat int64 indices, after checking them against gy and, with ``check_range``, the
    table size (one reduction and, on a GPU, a device sync)."""
    if gy.shape[:-1] != indices.shape:
        raise ValueError(f"embedding_backward: grad_output {gy.shape} does not match "
                         f"indices {indices.shape} (expected indices.shape + (dim,))")
    idx = indices.reshape(-1).astype(np.int64, copy=False)
    if check_range and first_out_of_range(idx, num_embeddings) is not None:
        raise IndexError(f"embedding_backward: index out of range for {num_embeddings} rows")
    return idx


# --------------------------------------------------------------------------------------
# Gradients of broadcasting, batch norm
# --------------------------------------------------------------------------------------

def _address(a):
    """The device (CuPy) or host (NumPy) address of ``a``'s first element."""
    ptr = getattr(a.data, "ptr", None)
    return a.__array_interface__["data"][0] if ptr is None else ptr


def stacked_slices(parts):
    """The array whose [i] is parts[i], when parts are exactly the consecutive slices
    [0], [1], ... of one C-contiguous array (their common ``.base``); else None."""
    first = parts[0]
    base = first.base
    if (base is None or any(p.base is not base for p in parts) or base.dtype != first.dtype
            or base.shape != (len(parts),) + first.shape or not base.flags.c_contiguous):
        return None
    step, start = first.nbytes, _address(base)
    if all(p.flags.c_contiguous and _address(p) == start + i * step for i, p in enumerate(parts)):
        return base
    return None


def unbroadcast(g, shape):
    """Sum a gradient over the dimensions that broadcasting added or stretched."""
    if g.shape == tuple(shape):
        return g
    extra = g.ndim - len(shape)
    axes = tuple(range(extra)) + tuple(
        extra + i for i, n in enumerate(shape) if n == 1 and g.shape[extra + i] != 1)
    return g.sum(axis=axes, keepdims=True).reshape(shape)


def channel_view(v, ndim):
    """A per-channel vector (C,) shaped to broadcast against (N, C, *)."""
    return v.reshape((1, -1) + (1,) * (ndim - 2))


def batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps):
    if x.ndim < 2:
        raise ValueError(f"batch_norm: expected input (N, C, *), got shape {x.shape}")
    c = x.shape[1]
    for pname, p in (("running_mean", running_mean), ("running_var", running_var),
                     ("weight", weight), ("bias", bias)):
        if p is not None and p.shape != (c,):
            raise ValueError(f"batch_norm: {pname} {p.shape} does not match {c} channels "
                             f"of input {x.shape}")
    axes = (0,) + tuple(range(2, x.ndim))
    count = x.size // c
    if training or running_mean is None:
        if count < 2 and training:
            raise ValueError(f"batch_norm: expected more than 1 value per channel when "
                             f"training, got input size {x.shape}")
        mean = x.mean(axis=axes)
        xc = x - channel_view(mean, x.ndim)
        var = (xc * xc).mean(axis=axes)
        if training and running_mean is not None:
            running_mean *= 1 - momentum
            running_mean += momentum * mean
        if training and running_var is not None:
            running_var *= 1 - momentum
            running_var += momentum * var * (count / (count - 1))
    else:
        # Copies: the caller saves mean for backward while the running buffers may change.
        mean = running_mean.astype(x.dtype)
        var = running_var.astype(x.dtype)
        xc = x - channel_view(mean, x.ndim)
    rstd = 1 / array_module(x).sqrt(var + x.dtype.type(eps))
    y = xc * channel_view(rstd, x.ndim)
    if weight is not None:
        y *= channel_view(weight, x.ndim)
    if bias is not None:
        y += channel_view(bias, x.ndim)
    return y, mean, rstd


def batch_norm_backward(gy, x, weight, mean, rstd, training):
    axes = (0,) + tuple(range(2, x.ndim))
    r = channel_view(rstd, x.ndim)
    xhat = (x - channel_view(mean, x.ndim)) * r
    gw = gb = None
    if weight is not None:
        xp = array_module(gy)
        gw = xp.sum(gy * xhat, axis=axes)
        gb = xp.sum(gy, axis=axes)
        g = gy * channel_view(weight, x.ndim)
    else:
        g = gy
    if not training:
        return g * r, gw, gb
    gx = r * (g - g.mean(axis=axes, keepdims=True)
              - xhat * (g * xhat).mean(axis=axes, keepdims=True))
    return gx, gw, gb
