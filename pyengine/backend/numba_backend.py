"""The "numba" CUDA backend: the kernel families written with ``numba.cuda``.

Same table, same algorithms as the native kernels where it matters (shared-memory tiled
matmul with a fused bias/activation epilogue, implicit-GEMM convolution, online-softmax
flash attention); the kernels live in ``_numba_kernels/``, one module per family, and are
compiled lazily at their first launch. Arrays are CuPy's on a GPU (Numba reads them through
``__cuda_array_interface__`` and launches on CuPy's current stream); under
``NUMBA_ENABLE_CUDASIM=1`` NumPy stands in for CuPy and the same kernels run on the CPU, so
the whole "cuda" device path is testable on a machine without a GPU.

The kernel families take float32 only and raise a TypeError naming the op and dtype
otherwise, as the native backend does. Glue that is not a kernel family (transfers, random
numbers, dropout masks, batch norm, gather gradients) is array arithmetic borrowed from the
native backend (CuPy) or, under the simulator, from the NumPy backend.
"""
from __future__ import annotations

import math

import numpy as np

from . import numpy_backend as _numpy_backend
from ._glue import activation_code as _activation_code
from ._numba_kernels import SIMULATOR, blocks, flat_launch, launch
from ._numba_kernels import activation as _act
from ._numba_kernels import attention as _attn
from ._numba_kernels import conv2d as _conv
from ._numba_kernels import layer_norm as _ln
from ._numba_kernels import matmul as _mm
from ._numba_kernels import optim as _optim
from ._numba_kernels import pool as _pool
from ._numba_kernels import rnn as _rnn
from ._numba_kernels import softmax as _sm
from ._glue import check_target_shape as _check_target_shape
from ._rnn_checks import check_cell as _check_cell
from ._rnn_checks import gate_stride as _gate_stride
from .numpy_backend import (
    _LINEAR_ACTIVATIONS,
    _check_avg_pool_grad,
    _check_conv,
    _check_pool,
    _check_sdpa,
    _check_targets,
    _unbroadcast,
)

if SIMULATOR:
    xp = np
    _glue = _numpy_backend
else:
    try:
        import cupy as xp
    except ImportError:  # available() reports it; the module itself must import anywhere
        xp = None
    from . import cuda_backend as _glue

name = "numba"
device = "cuda"

_availability = None


def _probe():
    if SIMULATOR:
        return True, "Numba CUDA simulator"
    if xp is None:
        return False, "CuPy is not installed (pip install cupy-cuda13x)"
    from numba import cuda
    if not cuda.is_available():
        return False, "numba.cuda finds no usable CUDA driver or device"
    return True, ""


def available():
    """(True, reason) when the Numba kernels can run here, else (False, what is missing)."""
    global _availability
    if _availability is None:
        _availability = _probe()
    return _availability


def device_count():
    return 1 if SIMULATOR else xp.cuda.runtime.getDeviceCount()


def device_name(index=0):
    if SIMULATOR:
        return "Numba CUDA simulator"
    name_ = xp.cuda.runtime.getDeviceProperties(index)["name"]
    return name_.decode() if isinstance(name_, bytes) else str(name_)


def synchronize():
    if not SIMULATOR:
        xp.cuda.Device().synchronize()


# --------------------------------------------------------------------------------------
# Host transfer, random numbers and the other glue
# --------------------------------------------------------------------------------------

if SIMULATOR:
    def asarray(a, dtype=None):
        # A copy, as a real host-to-device transfer: the "cuda" tensor must not alias the host one.
        return np.array(a, dtype=_numpy_backend._np_dtype(dtype), copy=True)

    def to_numpy(a):
        return np.array(a, copy=True)
else:
    asarray = _glue.asarray
    to_numpy = _glue.to_numpy

manual_seed = _glue.manual_seed
rand = _glue.rand
randn = _glue.randn
randint = _glue.randint
dropout_mask = _glue.dropout_mask
batch_norm = _glue.batch_norm
batch_norm_backward = _glue.batch_norm_backward
embedding_backward = _glue.embedding_backward
scatter_add = _glue.scatter_add


# --------------------------------------------------------------------------------------
# Helpers shared by the family wrappers
# --------------------------------------------------------------------------------------

def _f32(a, op, arg, contiguous=True):
    """``a`` as a float32 array of this backend (contiguous unless told), else a TypeError
    naming op, argument and what was wrong."""
    if not isinstance(a, xp.ndarray):
        raise TypeError(f"numba {op}: {arg} must be a {xp.__name__} array on the device, "
                        f"got {type(a).__name__}")
    if a.dtype != np.float32:
        raise TypeError(f"numba {op} supports float32, got {a.dtype} for {arg}")
    return xp.ascontiguousarray(a) if contiguous else a


def _empty(shape, dtype=np.float32):
    """An output buffer for a kernel to fill. Under the simulator it is poisoned (NaN, or -1
    for indices) so the tests catch any element a kernel forgets to write; on a GPU it is
    left uninitialised, as the native backend's."""
    if SIMULATOR:
        return np.full(shape, np.nan if np.dtype(dtype).kind == "f" else -1, dtype)
    return xp.empty(shape, dtype)


def _optional(a, op, arg):
    """A float32 vector for the kernel and whether it is real (kernels take no None)."""
    if a is None:
        return xp.zeros(1, np.float32), 0
    return _f32(a, op, arg).reshape(-1), 1


# --------------------------------------------------------------------------------------
# Matrix products
# --------------------------------------------------------------------------------------

def _batch3(a, batch):
    """a (..., m, k) as a 3-D (B or 1, m, k) array; a view (strides kept) when it can be."""
    mat = a.shape[-2:]
    if all(s == 1 for s in a.shape[:-2]):
        return a.reshape((1,) + mat)
    if a.shape[:-2] == batch:
        return a.reshape((math.prod(batch),) + mat)
    return xp.ascontiguousarray(xp.broadcast_to(a, batch + mat)).reshape((math.prod(batch),) + mat)


def _gemm(a3, b3, bias, code, param, op):
    m, n = a3.shape[1], b3.shape[2]
    z = max(a3.shape[0], b3.shape[0])
    c = _empty((z, m, n), np.float32)
    if c.size:
        bias_v, has_bias = _optional(bias, op, "bias")
        launch(_mm.gemm, (blocks(n, _mm.TILE), blocks(m, _mm.TILE), z), (_mm.TILE, _mm.TILE),
               a3, b3, c, bias_v, has_bias, code, np.float32(param))
    return c


def matmul(a, b):
    a, b = _f32(a, "matmul", "a", False), _f32(b, "matmul", "b", False)
    if a.ndim < 2 or b.ndim < 2 or a.shape[-1] != b.shape[-2]:
        raise ValueError(f"matmul: shapes {a.shape} and {b.shape} cannot be multiplied "
                         f"(need ndim >= 2 and a.shape[-1] == b.shape[-2])")
    try:
        batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except ValueError:
        raise ValueError(f"matmul: batch dimensions of {a.shape} and {b.shape} "
                         f"do not broadcast") from None
    c = _gemm(_batch3(a, batch), _batch3(b, batch), None, _act.NONE, 0.0, "matmul")
    return c.reshape(batch + c.shape[1:])


def linear(x, w, b=None, activation=None):
    if activation not in _LINEAR_ACTIVATIONS:
        raise ValueError(f"linear: activation must be one of {list(_LINEAR_ACTIVATIONS)}, "
                         f"got {activation!r}")
    x, w = _f32(x, "linear", "input", False), _f32(w, "linear", "weight", False)
    if w.ndim != 2 or x.ndim < 1 or x.shape[-1] != w.shape[1]:
        raise ValueError(f"linear: input {x.shape} does not match weight {w.shape} "
                         f"(expected input (..., {w.shape[-1]}) and weight (out, in))")
    if b is not None and b.shape != (w.shape[0],):
        raise ValueError(f"linear: bias {b.shape} does not match weight {w.shape}")
    code = _act.CODES[activation] if activation else _act.NONE
    x3 = x.reshape((1, -1, x.shape[-1]))
    y = _gemm(x3, w.T[None], b, code, 0.0, "linear")
    return y.reshape(x.shape[:-1] + (w.shape[0],))


# --------------------------------------------------------------------------------------
# Convolution (implicit GEMM)
# --------------------------------------------------------------------------------------

def _conv_geometry(stride, padding, dilation, groups):
    return (*map(int, stride), *map(int, padding), *map(int, dilation), int(groups))


def conv2d(x, w, b, stride, padding, dilation, groups):
    x, w = _f32(x, "conv2d", "input"), _f32(w, "conv2d", "weight")
    ho, wo = _check_conv(x, w, None if b is None else _f32(b, "conv2d", "bias"),
                         stride, padding, dilation, groups)
    y = _empty((x.shape[0], w.shape[0], ho, wo), np.float32)
    if y.size:
        bias_v, has_bias = _optional(b, "conv2d", "bias")
        t = _conv.TILE
        launch(_conv.forward, (blocks(x.shape[0] * ho * wo, t), blocks(w.shape[0] // groups, t), groups),
               (t, t), x, w, bias_v, has_bias, y, *_conv_geometry(stride, padding, dilation, groups))
    return y


def conv2d_backward(gy, x, w, stride, padding, dilation, groups, needs=(True, True, True)):
    op = "conv2d_backward"
    gy, x, w = _f32(gy, op, "grad_output"), _f32(x, op, "input"), _f32(w, op, "weight")
    ho, wo = _check_conv(x, w, None, stride, padding, dilation, groups)
    if gy.shape != (x.shape[0], w.shape[0], ho, wo):
        raise ValueError(f"{op}: grad_output {gy.shape} does not match the output shape "
                         f"{(x.shape[0], w.shape[0], ho, wo)} of input {x.shape} and weight {w.shape}")
    geometry = _conv_geometry(stride, padding, dilation, groups)
    t = _conv.TILE
    gx = gw = gb = None
    if needs[0]:
        gx = _empty(x.shape, np.float32)
        if gx.size:
            launch(_conv.backward_data, (blocks(x.shape[0] * x.shape[2] * x.shape[3], t),
                                         blocks(w.shape[1], t), groups), (t, t), gy, w, gx, *geometry)
    if needs[1]:
        gw = _empty(w.shape, np.float32)
        if gw.size:
            launch(_conv.backward_weight, (blocks(w[0].size, t), blocks(w.shape[0] // groups, t), groups),
                   (t, t), gy, x, gw, *geometry)
    if needs[2]:
        gb = gy.sum(axis=(0, 2, 3))
    return gx, gw, gb


# --------------------------------------------------------------------------------------
# Pooling
# --------------------------------------------------------------------------------------

def max_pool2d(x, kernel_size, stride, padding, dilation=(1, 1), ceil_mode=False):
    x = _f32(x, "max_pool2d", "input")
    ho, wo = _check_pool("max_pool2d", x, kernel_size, stride, padding, dilation, ceil_mode)
    y = _empty(x.shape[:2] + (ho, wo), np.float32)
    idx = _empty(y.shape, np.int64)
    if y.size:
        launch(_pool.max_forward, *flat_launch(y.size), x, y, idx,
               *map(int, (*kernel_size, *stride, *padding, *dilation)))
    return y, idx


def max_pool2d_backward(gy, indices, x_shape):
    gy = _f32(gy, "max_pool2d_backward", "grad_output")
    if indices.shape != gy.shape or indices.dtype != np.int64:
        raise ValueError(f"max_pool2d_backward: indices must be int64 of grad_output's shape "
                         f"{gy.shape}, got {indices.dtype} {indices.shape}")
    gx = xp.zeros(tuple(x_shape), np.float32)
    if gy.size:
        launch(_pool.max_backward, *flat_launch(gy.size), gy, xp.ascontiguousarray(indices), gx)
    return gx


def _avg_args(kernel_size, stride, padding, count_include_pad, divisor_override):
    return (*map(int, (*kernel_size, *stride, *padding)), int(bool(count_include_pad)),
            np.float32(divisor_override or 0))


def avg_pool2d(x, kernel_size, stride, padding, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    x = _f32(x, "avg_pool2d", "input")
    ho, wo = _check_pool("avg_pool2d", x, kernel_size, stride, padding, (1, 1), ceil_mode)
    y = _empty(x.shape[:2] + (ho, wo), np.float32)
    if y.size:
        launch(_pool.avg_forward, *flat_launch(y.size), x, y,
               *_avg_args(kernel_size, stride, padding, count_include_pad, divisor_override))
    return y


def avg_pool2d_backward(gy, x_shape, kernel_size, stride, padding, ceil_mode=False,
                        count_include_pad=True, divisor_override=None):
    gy = _f32(gy, "avg_pool2d_backward", "grad_output")
    _check_avg_pool_grad(gy, x_shape, kernel_size, stride, padding, ceil_mode)
    gx = xp.zeros(x_shape, np.float32)
    if gy.size:
        launch(_pool.avg_backward, *flat_launch(gy.size), gy, gx,
               *_avg_args(kernel_size, stride, padding, count_include_pad, divisor_override))
    return gx


# --------------------------------------------------------------------------------------
# Activations
# --------------------------------------------------------------------------------------

def activation(name, x, param=None):
    code, p = _activation_code(name, param, _act.CODES)
    x = _f32(x, name, "input")
    y = _empty(x.shape, np.float32)
    if x.size:
        launch(_act.forward, *flat_launch(x.size), x.reshape(-1), y.reshape(-1), code, np.float32(p))
    return y


def activation_backward(name, gy, x, y, param=None):
    code, p = _activation_code(name, param, _act.CODES)
    op = f"{name}_backward"
    gy = _f32(gy, op, "grad_output")
    # relu, sigmoid and tanh read the output, the others the input; one may be None.
    if y is None and code in (_act.RELU, _act.SIGMOID, _act.TANH):
        if x is None:
            raise ValueError(f"{op} needs the forward input or output, got neither")
        y = activation(name, x, param)
    if x is None and code not in (_act.RELU, _act.SIGMOID, _act.TANH):
        raise ValueError(f"{op} needs the forward input x")
    x = _f32(y if x is None else x, op, "input")
    y = x if y is None else _f32(y, op, "output")
    if x.shape != gy.shape or y.shape != gy.shape:
        raise ValueError(f"{op}: grad_output {gy.shape}, input {x.shape} and output {y.shape} differ")
    gx = _empty(gy.shape, np.float32)
    if gy.size:
        launch(_act.backward, *flat_launch(gy.size), gy.reshape(-1), x.reshape(-1), y.reshape(-1),
               gx.reshape(-1), code, np.float32(p))
    return gx


# --------------------------------------------------------------------------------------
# Softmax and cross-entropy
# --------------------------------------------------------------------------------------

def _rows(a, dim):
    """a with ``dim`` moved last, as a contiguous (rows, cols) array, and the moved shape."""
    moved = xp.moveaxis(a, dim, -1)
    return xp.ascontiguousarray(moved).reshape(-1, moved.shape[-1] if moved.ndim else 1), moved.shape


def _row_launch(kern, rows, *args):
    if rows:
        launch(kern, rows, _sm.ROW_THREADS, *args)


def softmax(x, dim, log=False):
    x = _f32(x, "softmax", "input", False)
    x2, moved = _rows(x, dim)
    y = _empty(x2.shape, np.float32)
    _row_launch(_sm.forward, x2.shape[0] if x2.shape[1] else 0, x2, y, int(bool(log)))
    return xp.moveaxis(y.reshape(moved), -1, dim)


def softmax_backward(gy, y, dim, log=False):
    gy = _f32(gy, "softmax_backward", "grad_output", False)
    y = _f32(y, "softmax_backward", "output", False)
    if gy.shape != y.shape:
        raise ValueError(f"softmax_backward: grad_output {gy.shape} and output {y.shape} differ")
    g2, moved = _rows(gy, dim)
    y2, _ = _rows(y, dim)
    gx = _empty(g2.shape, np.float32)
    _row_launch(_sm.backward, g2.shape[0] if g2.shape[1] else 0, g2, y2, gx, int(bool(log)))
    return xp.moveaxis(gx.reshape(moved), -1, dim)


def cross_entropy(logits, target, ignore_index=-100, label_smoothing=0.0):
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")
    logits = _f32(logits, "cross_entropy", "logits")
    _check_targets(logits, target, ignore_index, "cross_entropy")
    n = logits.shape[0]
    loss, lse = _empty(n, np.float32), _empty(n, np.float32)
    _row_launch(_sm.cross_entropy_forward, n, logits, xp.ascontiguousarray(target, dtype=np.int64),
                loss, lse, int(ignore_index), np.float32(label_smoothing))
    return loss, lse


def cross_entropy_backward(gloss, logits, target, lse, ignore_index=-100, label_smoothing=0.0):
    op = "cross_entropy_backward"
    logits = _f32(logits, op, "logits")
    # Shape and dtype only: the class bounds were checked by the forward (a host sync on the
    # GPU), and the kernel never indexes by the target, so a stray class cannot read out of
    # bounds here.
    _check_target_shape(logits, target, op)
    gloss, lse = _f32(gloss, op, "grad_loss"), _f32(lse, op, "lse")
    if gloss.shape != logits.shape[:1] or lse.shape != logits.shape[:1]:
        raise ValueError(f"{op}: grad_loss {gloss.shape} and lse {lse.shape} must be "
                         f"{logits.shape[:1]} for logits {logits.shape}")
    g = _empty(logits.shape, np.float32)
    _row_launch(_sm.cross_entropy_backward, logits.shape[0], gloss, logits,
                xp.ascontiguousarray(target, dtype=np.int64), lse, g, int(ignore_index),
                np.float32(label_smoothing))
    return g


# --------------------------------------------------------------------------------------
# Layer norm
# --------------------------------------------------------------------------------------

def layer_norm(x, weight, bias, eps):
    x = _f32(x, "layer_norm", "input")
    if x.ndim != 2:
        raise ValueError(f"layer_norm: expected x flattened to (M, D), got {x.shape}")
    for pname, p in (("weight", weight), ("bias", bias)):
        if p is not None and p.shape != (x.shape[1],):
            raise ValueError(f"layer_norm: {pname} {p.shape} does not match input {x.shape}")
    w, has_w = _optional(weight, "layer_norm", "weight")
    b, has_b = _optional(bias, "layer_norm", "bias")
    y = _empty(x.shape, np.float32)
    mean, rstd = _empty(x.shape[0], np.float32), _empty(x.shape[0], np.float32)
    _row_launch(_ln.forward, x.shape[0] if x.shape[1] else 0, x, w, b, has_w, has_b,
                np.float32(eps), y, mean, rstd)
    return y, mean, rstd


def layer_norm_backward(gy, x, weight, mean, rstd):
    op = "layer_norm_backward"
    gy, x = _f32(gy, op, "grad_output"), _f32(x, op, "input")
    mean, rstd = _f32(mean, op, "mean"), _f32(rstd, op, "rstd")
    if gy.shape != x.shape or x.ndim != 2 or mean.shape != x.shape[:1] or rstd.shape != x.shape[:1]:
        raise ValueError(f"{op}: expected grad_output and input (M, D) with mean and rstd (M,), got "
                         f"{gy.shape}, {x.shape}, {mean.shape}, {rstd.shape}")
    w, has_w = _optional(weight, op, "weight")
    gx = _empty(x.shape, np.float32)
    _row_launch(_ln.backward_input, x.shape[0] if x.shape[1] else 0, gy, x, w, has_w, mean, rstd, gx)
    if weight is None:
        return gx, None, None
    gw, gb = _empty(x.shape[1], np.float32), _empty(x.shape[1], np.float32)
    if x.shape[1]:
        launch(_ln.backward_params, *flat_launch(x.shape[1]), gy, x, mean, rstd, gw, gb)
    return gx, gw, gb


# --------------------------------------------------------------------------------------
# Scaled dot-product attention
# --------------------------------------------------------------------------------------

def _sdpa_setup(q, k, v, attn_mask, is_causal, op):
    """Checked float32 q, k, v, the broadcast batch shape, and the additive mask as a
    (..., L, S) float32 array (None without a mask; is_causal is the kernels' flag)."""
    q, k, v = (_f32(a, op, n, False) for a, n in ((q, "q"), (k, "k"), (v, "v")))
    _check_sdpa(q, k, v, attn_mask)
    if is_causal and attn_mask is not None:
        raise ValueError(f"{op}: pass either attn_mask or is_causal=True, not both")
    if max(q.shape[-1], v.shape[-1]) > _attn.MAX_D:
        raise ValueError(f"{op}: the numba kernel takes head dims up to {_attn.MAX_D}, "
                         f"got q {q.shape} and v {v.shape}")
    l, s = q.shape[-2], k.shape[-2]
    lead = np.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2],
                               () if attn_mask is None else attn_mask.shape[:-2])
    if attn_mask is None:
        return q, k, v, lead, None
    if attn_mask.dtype == np.bool_:
        bias = xp.where(attn_mask, np.float32(0), np.float32(-np.inf)).astype(np.float32)
    else:
        bias = attn_mask.astype(np.float32)
    return q, k, v, lead, xp.broadcast_to(bias, bias.shape[:-2] + (l, s))


def _bias3(bias, lead):
    """The kernels' (Zb, L, S) bias (Zb = 1 when it does not vary over the batch) and flag."""
    if bias is None:
        return xp.zeros((1, 1, 1), np.float32), 0
    return _batch3(bias, lead), 1


def _lead3(a, lead):
    return xp.ascontiguousarray(xp.broadcast_to(a, lead + a.shape[-2:])).reshape(
        (math.prod(lead),) + a.shape[-2:])


def _scale(q, scale):
    return np.float32(1 / math.sqrt(q.shape[-1]) if scale is None else scale)


def sdpa(q, k, v, attn_mask=None, is_causal=False, scale=None, dropout_p=0.0):
    """Flash attention; ``saved`` is the (Z, L) row log-sum-exp. With dropout_p > 0 the
    probabilities must exist to be dropped: matmul and softmax kernels instead, and ``saved``
    holds the probabilities and the dropout mask."""
    q, k, v, lead, bias = _sdpa_setup(q, k, v, attn_mask, is_causal, "sdpa")
    if dropout_p > 0:
        return _sdpa_unfused(q, k, v, bias, is_causal, _scale(q, scale), dropout_p)
    bias, has_bias = _bias3(bias, lead)
    q3, k3, v3 = _lead3(q, lead), _lead3(k, lead), _lead3(v, lead)
    z, l = q3.shape[0], q3.shape[1]
    out = _empty((z, l, v3.shape[2]), np.float32)
    lse = _empty((z, l), np.float32)
    if out.size:
        launch(_attn.forward, (blocks(l, _attn.QB), z), _attn.QB, q3, k3, v3, bias, has_bias,
               int(bool(is_causal)), _scale(q, scale), out, lse)
    return out.reshape(lead + out.shape[1:]), (lse,)


def sdpa_backward(gout, q, k, v, out, saved, attn_mask=None, is_causal=False, scale=None,
                  dropout_p=0.0):
    op = "sdpa_backward"
    q, k, v, lead, bias = _sdpa_setup(q, k, v, attn_mask, is_causal, op)
    if dropout_p > 0:
        return _sdpa_unfused_backward(gout, q, k, v, saved, _scale(q, scale))
    bias, has_bias = _bias3(bias, lead)
    (lse,) = saved
    out_shape = lead + (q.shape[-2], v.shape[-1])
    if gout.shape != out_shape or out.shape != out_shape:
        raise ValueError(f"{op}: gout {gout.shape} and out {out.shape} must be {out_shape}")
    q3, k3, v3 = _lead3(q, lead), _lead3(k, lead), _lead3(v, lead)
    out3 = _f32(out, op, "out").reshape((-1,) + out_shape[-2:])
    g3 = _f32(gout, op, "gout").reshape(out3.shape)
    lse = _f32(lse, op, "lse")
    z, l, s = q3.shape[0], q3.shape[1], k3.shape[1]
    gq, gk, gv = _empty(q3.shape, np.float32), _empty(k3.shape, np.float32), _empty(v3.shape, np.float32)
    delta = _empty((z, l), np.float32)
    args = (q3, k3, v3, bias, has_bias, int(bool(is_causal)), _scale(q, scale))
    if z and l:
        launch(_attn.backward_query, (blocks(l, _attn.QB), z), _attn.QB, *args, out3, g3, lse, delta, gq)
    if z and s:
        if not l:
            delta = xp.zeros((z, 1), np.float32)
        launch(_attn.backward_key, (blocks(s, _attn.QB), z), _attn.QB, *args, g3, lse, delta, gk, gv)
    return tuple(_unbroadcast(g.reshape(lead + g.shape[1:]), a.shape)
                 for g, a in ((gq, q), (gk, k), (gv, v)))


def _sdpa_unfused(q, k, v, bias, is_causal, scale, dropout_p):
    scores = matmul(q, xp.swapaxes(k, -1, -2)) * scale
    if is_causal:
        l, s = q.shape[-2], k.shape[-2]
        scores = scores + xp.where(xp.tri(l, s, dtype=bool), np.float32(0), np.float32(-np.inf))
    elif bias is not None:
        scores = scores + bias
    p = softmax(scores, -1)
    mask = dropout_mask(p.shape, dropout_p, np.float32)
    return matmul(p * mask, v), (p, mask)


def _sdpa_unfused_backward(gout, q, k, v, saved, scale):
    p, mask = saved
    gout = _f32(gout, "sdpa_backward", "gout", False)
    gv = _unbroadcast(matmul(xp.swapaxes(p * mask, -1, -2), gout), v.shape)
    gs = softmax_backward(matmul(gout, xp.swapaxes(v, -1, -2)) * mask, p, -1) * scale
    gq = _unbroadcast(matmul(gs, k), q.shape)
    gk = _unbroadcast(matmul(xp.swapaxes(gs, -1, -2), q), k.shape)
    return gq, gk, gv


# --------------------------------------------------------------------------------------
# Optimizer updates (in place)
# --------------------------------------------------------------------------------------

def _flat_state(a, op, arg):
    """A flat view of a state array the kernel updates in place (a copy would lose it)."""
    if not isinstance(a, xp.ndarray) or a.dtype != np.float32 or not a.flags.c_contiguous:
        raise TypeError(f"numba {op}: {arg} must be a contiguous float32 device array updated "
                        f"in place, got {getattr(a, 'dtype', type(a).__name__)}")
    return a.reshape(-1)


def sgd_step(param, grad, buf, lr, momentum, dampening, nesterov, weight_decay, first_step):
    p = _flat_state(param, "sgd_step", "param")
    g = _f32(grad, "sgd_step", "grad").reshape(-1)
    if g.size != p.size:
        raise ValueError(f"sgd_step: grad {grad.shape} does not match param {param.shape}")
    if momentum:
        if buf is None:
            raise ValueError("sgd_step: momentum != 0 needs a momentum buffer, got None")
        b = _flat_state(buf, "sgd_step", "momentum_buffer")
    else:
        b = xp.zeros(1, np.float32)
    if p.size:
        launch(_optim.sgd, *flat_launch(p.size), p, g, b, int(bool(momentum)), np.float32(lr),
               np.float32(momentum), np.float32(dampening), int(bool(nesterov)),
               np.float32(weight_decay), int(bool(first_step)))


def adam_step(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, step, lr, beta1, beta2, eps,
              weight_decay, decoupled, amsgrad):
    op = "adam_step"
    p = _flat_state(param, op, "param")
    g = _f32(grad, op, "grad").reshape(-1)
    if g.size != p.size:
        raise ValueError(f"{op}: grad {grad.shape} does not match param {param.shape}")
    m = _flat_state(exp_avg, op, "exp_avg")
    v = _flat_state(exp_avg_sq, op, "exp_avg_sq")
    if amsgrad:
        if max_exp_avg_sq is None:
            raise ValueError(f"{op}: amsgrad=True needs max_exp_avg_sq, got None")
        vmax = _flat_state(max_exp_avg_sq, op, "max_exp_avg_sq")
    else:
        vmax = xp.zeros(1, np.float32)
    f = np.float32
    if p.size:
        launch(_optim.adam, *flat_launch(p.size), p, g, m, v, vmax, int(bool(amsgrad)), f(lr),
               f(beta1), f(beta2), f(eps), f(weight_decay), f(1 - beta1 ** step),
               f(math.sqrt(1 - beta2 ** step)), int(bool(decoupled)))


# --------------------------------------------------------------------------------------
# Recurrent cells (one time step, written into the caller's buffers)
# --------------------------------------------------------------------------------------

def _cell_outputs(op, outs):
    """Checked float32 outputs and what the kernel writes into. On a GPU Numba writes through
    any strides, so the kernel gets the arrays themselves. The simulator copies every array
    argument in and back out whole, which would drop writes into a strided view and let an
    input passed twice (acts = xg) copy back over the result, so there the kernel writes
    fresh (NaN-poisoned) arrays that are copied into the outputs afterwards."""
    for a, arg in outs:
        _f32(a, op, arg, False)
    if not SIMULATOR:
        return [a for a, _ in outs]
    return [_empty(a.shape) for a, _ in outs]


def _copy_back(outs, written):
    if SIMULATOR:
        for (a, _), w in zip(outs, written):
            a[...] = w


def _cell_launch(kern, op, n, ins, outs):
    written = _cell_outputs(op, outs)
    ins = [_f32(a, op, arg, False) if isinstance(a, xp.ndarray) else a for a, arg in ins]
    if n:
        launch(kern, *flat_launch(n), *ins, *written)
    _copy_back(outs, written)


def _absent(a, shape2):
    """(array, 1) for a given operand, (a dummy, 0) for None: kernels take no None."""
    return (xp.zeros((1, 1), np.float32), 0) if a is None else (a.reshape(shape2), 1)


def lstm_cell(xg, hg, c_prev, acts, c, tanh_c, h):
    op = "lstm_cell"
    _check_cell(op, 4, (xg, hg, acts), (c_prev, c, tanh_c, h))
    _cell_launch(_rnn.lstm_forward, op, c.size,
                 [(xg, "xg"), (hg, "hg"), (c_prev, "c_prev")],
                 [(acts, "acts"), (c, "c"), (tanh_c, "tanh_c"), (h, "h")])


def _flat_gates(a, op, arg):
    """A (G, *S) array as (G, n), a view: each gate's block must be contiguous."""
    if _gate_stride(a) is None:
        raise ValueError(f"{op}: {arg} {tuple(a.shape)} needs each gate's block contiguous, got strides "
                         f"{a.strides}")
    return a.reshape(a.shape[0], -1)


def lstm_cell_factors(acts, c_prev, tanh_c, fac, dc_dh):
    op = "lstm_cell_factors"
    _check_cell(op, 4, (acts, fac), (c_prev, tanh_c, dc_dh))
    if _gate_stride(fac) is None:
        # Gate-major views of a step-major (T, 4, ...) buffer, as the LSTM recurrence passes
        # them: computed into a contiguous array, then copied into the view.
        _f32(fac, op, "fac", False)
        out = _empty(fac.shape)
        lstm_cell_factors(acts, c_prev, tanh_c, out, dc_dh)
        fac[...] = out
        return
    if _gate_stride(acts) is None:
        acts = xp.ascontiguousarray(acts)
    flat = [_flat_gates(acts, op, "acts"), _flat_gates(fac, op, "fac")]
    states = [xp.ascontiguousarray(a).reshape(-1) for a in (c_prev, tanh_c)]
    _f32(dc_dh, op, "dc_dh", False)
    if not dc_dh.flags.c_contiguous:
        raise ValueError(f"{op}: dc_dh {tuple(dc_dh.shape)} is written in place and must be contiguous")
    _cell_launch(_rnn.lstm_factors, op, dc_dh.size,
                 [(flat[0], "acts"), (states[0], "c_prev"), (states[1], "tanh_c")],
                 [(flat[1], "fac"), (dc_dh.reshape(-1), "dc_dh")])


def lstm_cell_backward(gh, dh_parts, dc, f, fac, dc_dh, dgates, dc_prev):
    op = "lstm_cell_backward"
    _check_cell(op, 4, (fac, dgates), (gh, dc, f, dc_dh, dc_prev), dh_parts)
    _cell_launch(_rnn.lstm_backward, op, gh.size,
                 [(gh, "gh"), (dh_parts, "dh_parts"), (dc, "dc"), (f, "f"), (fac, "fac"), (dc_dh, "dc_dh")],
                 [(dgates, "dgates"), (dc_prev, "dc_prev")])


def gru_cell(xg, hg, b_hh, h_prev, acts, hn, h):
    op = "gru_cell"
    _check_cell(op, 3, (xg, hg, acts), (h_prev, hn, h), bias=b_hh)
    if b_hh is not None:
        _f32(b_hh, op, "b_hh", False)
    bias, has_bias = _absent(b_hh, (3, -1))
    _cell_launch(_rnn.gru_forward, op, h.size,
                 [(xg, "xg"), (hg, "hg"), (bias, "b_hh"), (has_bias, ""), (h_prev, "h_prev")],
                 [(acts, "acts"), (hn, "hn"), (h, "h")])


def gru_cell_backward(gh, dh_parts, dh_carry, acts, hn, h_prev, dxg, dhg, dh_carry_out):
    op = "gru_cell_backward"
    _check_cell(op, 3, (acts, dxg, dhg), (gh, hn, h_prev, dh_carry_out), dh_parts, dh_carry)
    carry, has_carry = _absent(dh_carry, gh.shape)
    _cell_launch(_rnn.gru_backward, op, gh.size,
                 [(gh, "gh"), (dh_parts, "dh_parts"), (carry, "dh_carry"), (has_carry, ""), (acts, "acts"),
                  (hn, "hn"), (h_prev, "h_prev")],
                 [(dxg, "dxg"), (dhg, "dhg"), (dh_carry_out, "dh_carry_out")])
