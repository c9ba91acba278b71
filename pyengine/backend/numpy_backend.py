"""The NumPy CPU backend: every name of the backend table, forward and backward.

This is the reference every GPU backend is compared with and the path that trains the
course's models on a laptop, so it is vectorised throughout: convolution is im2col (a
strided view copied once, batch innermost) followed by one GEMM per group, and the only
Python loops over data run over kernel offsets (kh * kw), where a whole-array strided add
beats scattering. Temporaries of the elementwise hot paths (GELU, softmax, attention) are
reused in place, since allocating large arrays costs as much as the arithmetic. Shapes,
dtypes and argument meanings are those documented in ``pyengine/backend/__init__.py``.
"""
from __future__ import annotations

import ctypes
import math
import operator
import os
import platform

import numpy as np
from numpy.lib.stride_tricks import as_strided

from . import _glue
from ._glue import batch_norm, batch_norm_backward
from ._glue import channel_view as _channel_view  # noqa: F401  (still importable from here)
from ._glue import check_targets as _check_targets
from ._glue import float_dtype as _float_dtype
from ._glue import np_dtype as _np_dtype
from ._glue import unbroadcast as _unbroadcast
from ._rnn_checks import check_cell as _check_cell

name = "numpy"
device = "cpu"
xp = np


def _keep_freed_memory():
    """Let glibc's malloc keep freed memory for the next array instead of returning it.

    A training step allocates and frees the same multi-megabyte arrays every step. glibc
    serves a block above its mmap threshold (dynamic, from 128 KiB) with a fresh mmap and
    hands the heap's freed top back to the kernel above its trim threshold, so such an array
    is fresh, page-faulting memory each time: touching it costs more than the arithmetic in
    it, and whether a given size hits that depends on the allocation history (LeNet-5's step
    at one thread measured 5.3 or 10.9 ms from run to run on the 2-core EPYC, 2026-11-27).
    A fixed 32 MiB mmap threshold (glibc's maximum) and a 1 GiB trim threshold keep the
    memory: the process holds on to its peak heap. Applies to the whole process, PyTorch's
    CPU tensors included. Skipped off glibc, when PYENGINE_MALLOC_TUNING=0, or when the user
    set either threshold (MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_, GLIBC_TUNABLES).
    Returns what was done, in words (``pyengine info`` prints it as ``malloc_tuning``)."""
    if os.environ.get("PYENGINE_MALLOC_TUNING", "1") == "0":
        return "off (PYENGINE_MALLOC_TUNING=0)"
    if platform.libc_ver()[0] != "glibc":
        return "off (not glibc)"
    if {"MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"} & os.environ.keys() or \
            "malloc" in os.environ.get("GLIBC_TUNABLES", ""):
        return "off (the environment sets malloc's thresholds)"
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return "off (mallopt not found)"
    m_trim_threshold, m_mmap_threshold = -1, -3
    if mallopt(m_mmap_threshold, 32 << 20) != 1 or mallopt(m_trim_threshold, 1 << 30) != 1:
        return "off (mallopt refused)"
    return "on: glibc mmap threshold 32 MiB, trim threshold 1 GiB (PYENGINE_MALLOC_TUNING=0 turns it off)"


MALLOC_TUNING = _keep_freed_memory()

# --------------------------------------------------------------------------------------
# Host transfer and random numbers
# --------------------------------------------------------------------------------------

_rng = np.random.default_rng()


def asarray(a, dtype=None):
    return np.asarray(a, dtype=_np_dtype(dtype))


def to_numpy(a):
    return np.asarray(a)


def manual_seed(seed):
    global _rng
    _rng = np.random.default_rng(seed)


def rand(shape, dtype=None):
    return _rng.random(shape, dtype=_float_dtype(dtype, "rand"))


def randn(shape, dtype=None):
    return _rng.standard_normal(shape, dtype=_float_dtype(dtype, "randn"))


def randint(low, high, shape):
    _glue.check_randint(low, high)
    return _rng.integers(low, high, size=shape, dtype=np.int64)


def dropout_mask(shape, p, dtype=None):
    return _glue.dropout_mask(np, _rng.random, shape, p, dtype)


# --------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------

def _pad2d(x, top, bottom, left, right, value=0.0):
    """x (N, C, H, W) padded on its last two axes with a constant; x itself when no pad."""
    if not (top or bottom or left or right):
        return x
    n, c, h, w = x.shape
    out = np.full((n, c, h + top + bottom, w + left + right), value, dtype=x.dtype)
    out[:, :, top:top + h, left:left + w] = x
    return out


def _check_same_dtype(op, **arrays):
    items = [(k, a) for k, a in arrays.items() if a is not None]
    dtypes = {a.dtype for _, a in items}
    if len(dtypes) > 1:
        listing = ", ".join(f"{k} {a.dtype}" for k, a in items)
        raise TypeError(f"{op}: expected all inputs to share one dtype, got {listing}")


# --------------------------------------------------------------------------------------
# Matrix products
# --------------------------------------------------------------------------------------

def matmul(a, b):
    _glue.check_matmul(a, b)
    try:
        return np.matmul(a, b)
    except ValueError:
        # Inner sizes agree, so only the batch dimensions can have failed to broadcast.
        raise ValueError(f"matmul: batch dimensions of {a.shape} and {b.shape} "
                         f"do not broadcast") from None


_LINEAR_ACTIVATIONS = {None: None, "relu": ("relu", None), "gelu": ("gelu", "none"),
                       "gelu_tanh": ("gelu", "tanh")}


def linear(x, w, b=None, activation=None):
    _glue.check_linear_activation(activation, _LINEAR_ACTIVATIONS)
    _glue.check_linear_weight(x, w)
    _glue.check_linear_bias(b, w)
    _check_same_dtype("linear", input=x, weight=w, bias=b)
    # One 2-D GEMM against the transposed weight view: BLAS reads w.T without a copy.
    y = np.matmul(x.reshape(-1, x.shape[-1]), w.T).reshape(x.shape[:-1] + (w.shape[0],))
    if b is not None:
        y += b
    if activation is None:
        return y
    act, param = _LINEAR_ACTIVATIONS[activation]
    return _activate(act, y, param)


# --------------------------------------------------------------------------------------
# Convolution: im2col through a strided view, one GEMM per group, col2im by offset loops
# --------------------------------------------------------------------------------------

def _conv_out(size, k, s, p, d):
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def _check_conv(x, w, b, stride, padding, dilation, groups):
    if x.ndim != 4:
        raise ValueError(f"conv2d: expected a 4-D input (N, C, H, W), got shape {x.shape}")
    if w.ndim != 4:
        raise ValueError(f"conv2d: expected a 4-D weight (O, C/groups, kh, kw), got shape {w.shape}")
    if groups < 1 or x.shape[1] % groups or w.shape[0] % groups:
        raise ValueError(f"conv2d: groups={groups} must divide input channels {x.shape[1]} "
                         f"and output channels {w.shape[0]}")
    if x.shape[1] != w.shape[1] * groups:
        raise ValueError(f"conv2d: input {x.shape} has {x.shape[1]} channels but weight "
                         f"{w.shape} with groups={groups} expects {w.shape[1] * groups}")
    if b is not None and b.shape != (w.shape[0],):
        raise ValueError(f"conv2d: bias {b.shape} does not match weight {w.shape}")
    if min(stride) < 1 or min(dilation) < 1 or min(padding) < 0:
        raise ValueError(f"conv2d: stride {stride} and dilation {dilation} must be >= 1, "
                         f"padding {padding} >= 0")
    _check_same_dtype("conv2d", input=x, weight=w, bias=b)
    ho = _conv_out(x.shape[2], w.shape[2], stride[0], padding[0], dilation[0])
    wo = _conv_out(x.shape[3], w.shape[3], stride[1], padding[1], dilation[1])
    if ho < 1 or wo < 1:
        raise ValueError(f"conv2d: input {x.shape} padded by {padding} is smaller than the "
                         f"dilated kernel of weight {w.shape} (dilation {dilation})")
    return ho, wo


def _batch_last(x, ph, pw):
    """x (N, C, H, W) zero-padded and stored as (C, H + 2ph, W + 2pw, N).

    With the batch innermost, a window row of the im2col copy and of the col2im adds is
    one contiguous run of wo * N elements, and every GEMM is a single large one.
    """
    n, c, h, w = x.shape
    alloc = np.zeros if ph or pw else np.empty
    xt = alloc((c, h + 2 * ph, w + 2 * pw, n), dtype=x.dtype)
    xt[:, ph:ph + h, pw:pw + w] = x.transpose(1, 2, 3, 0)
    return xt


def _im2col(x, kh, kw, stride, padding, dilation, groups, ho, wo):
    """Patches of x as (G, C/G * kh * kw, ho * wo * N), contiguous, ready for a GEMM."""
    xt = _batch_last(x, *padding)
    c = x.shape[1]
    cg = c // groups
    sc, sh, sw, sn = xt.strides
    view = as_strided(xt, shape=(groups, cg, kh, kw, ho, wo, x.shape[0]),
                      strides=(cg * sc, sc, sh * dilation[0], sw * dilation[1],
                               sh * stride[0], sw * stride[1], sn), writeable=False)
    return np.ascontiguousarray(view).reshape(groups, cg * kh * kw, -1)


def conv2d(x, w, b, stride, padding, dilation, groups):
    ho, wo = _check_conv(x, w, b, stride, padding, dilation, groups)
    n = x.shape[0]
    o = w.shape[0]
    cols = _im2col(x, w.shape[2], w.shape[3], stride, padding, dilation, groups, ho, wo)
    y = np.matmul(w.reshape(groups, o // groups, -1), cols)      # (G, O/G, ho*wo*N)
    y = y.reshape(o, ho, wo, n).transpose(3, 0, 1, 2)
    # Back to contiguous NCHW in one pass, adding the bias on the way.
    out = np.empty((n, o, ho, wo), dtype=y.dtype)
    if b is None:
        out[...] = y
    else:
        np.add(y, b[:, None, None], out=out)
    return out


def conv2d_backward(gy, x, w, stride, padding, dilation, groups, needs=(True, True, True)):
    ho, wo = _check_conv(x, w, None, stride, padding, dilation, groups)
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    if gy.shape != (n, o, ho, wo):
        raise ValueError(f"conv2d_backward: grad_output {gy.shape} does not match the "
                         f"output shape {(n, o, ho, wo)} of input {x.shape} and weight {w.shape}")
    gyt = np.ascontiguousarray(gy.transpose(1, 2, 3, 0)).reshape(groups, o // groups, -1)
    gx = gw = gb = None
    if needs[2]:
        gb = gy.sum(axis=(0, 2, 3))
    if needs[1]:
        cols = _im2col(x, kh, kw, stride, padding, dilation, groups, ho, wo)
        gw = np.matmul(gyt, cols.swapaxes(-1, -2)).reshape(w.shape)
    if needs[0]:
        wg = w.reshape(groups, o // groups, -1)
        gcols = np.matmul(wg.swapaxes(-1, -2), gyt).reshape(groups, cg, kh, kw, ho, wo, n)
        ph, pw = padding
        gxt = np.zeros((groups, cg, h + 2 * ph, wd + 2 * pw, n), dtype=gcols.dtype)
        hspan = stride[0] * (ho - 1) + 1
        wspan = stride[1] * (wo - 1) + 1
        for i in range(kh):
            for j in range(kw):
                r, q = i * dilation[0], j * dilation[1]
                gxt[:, :, r:r + hspan:stride[0], q:q + wspan:stride[1]] += gcols[:, :, i, j]
        gxt = gxt.reshape(c, h + 2 * ph, wd + 2 * pw, n)[:, ph:ph + h, pw:pw + wd]
        gx = np.ascontiguousarray(gxt.transpose(3, 0, 1, 2))
    return gx, gw, gb


# --------------------------------------------------------------------------------------
# Pooling
# --------------------------------------------------------------------------------------

def _pool_out(size, k, s, p, d, ceil_mode):
    """PyTorch's pooling output size: with ceil_mode the last window must start inside
    the input or its left padding."""
    out = (size + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


def _check_pool(op, x, kernel_size, stride, padding, dilation, ceil_mode):
    if x.ndim != 4:
        raise ValueError(f"{op}: expected a 4-D input (N, C, H, W), got shape {x.shape}")
    if min(kernel_size) < 1 or min(stride) < 1 or min(dilation) < 1 or min(padding) < 0:
        raise ValueError(f"{op}: kernel_size {kernel_size}, stride {stride} and dilation "
                         f"{dilation} must be >= 1 and padding {padding} >= 0")
    if any(p > k // 2 for k, p in zip(kernel_size, padding)):
        raise ValueError(f"{op}: padding {padding} should be at most half of "
                         f"kernel_size {kernel_size}")
    ho = _pool_out(x.shape[2], kernel_size[0], stride[0], padding[0], dilation[0], ceil_mode)
    wo = _pool_out(x.shape[3], kernel_size[1], stride[1], padding[1], dilation[1], ceil_mode)
    if ho < 1 or wo < 1:
        raise ValueError(f"{op}: input {x.shape} is too small for kernel_size {kernel_size}, "
                         f"padding {padding}, dilation {dilation} (output {ho}x{wo})")
    return ho, wo


def _check_avg_pool_grad(gy, x_shape, kernel_size, stride, padding, ceil_mode):
    """(ho, wo) of avg_pool2d over an input of x_shape, after checking that gy has the
    pooled shape."""
    x_shape = tuple(x_shape)
    probe = np.empty((1, 1) + x_shape[2:], dtype=np.float32)
    ho, wo = _check_pool("avg_pool2d_backward", probe, kernel_size, stride, padding, (1, 1),
                         ceil_mode)
    if gy.shape != x_shape[:2] + (ho, wo):
        raise ValueError(f"avg_pool2d_backward: grad_output {gy.shape} does not match the "
                         f"pooled shape {x_shape[:2] + (ho, wo)} of input {x_shape}")
    return ho, wo


def _pool_padded(x, kernel_size, stride, padding, dilation, ho, wo, value):
    """x padded so that every window (including ceil_mode's partial ones) lies inside."""
    h, w = x.shape[2:]
    need_h = (ho - 1) * stride[0] + dilation[0] * (kernel_size[0] - 1) + 1
    need_w = (wo - 1) * stride[1] + dilation[1] * (kernel_size[1] - 1) + 1
    return _pad2d(x, padding[0], max(0, need_h - h - padding[0]),
                  padding[1], max(0, need_w - w - padding[1]), value)


def max_pool2d(x, kernel_size, stride, padding, dilation=(1, 1), ceil_mode=False):
    ho, wo = _check_pool("max_pool2d", x, kernel_size, stride, padding, dilation, ceil_mode)
    w = x.shape[3]
    kh, kw = kernel_size
    xp = _pool_padded(x, kernel_size, stride, padding, dilation, ho, wo, -np.inf)
    hspan = stride[0] * (ho - 1) + 1
    wspan = stride[1] * (wo - 1) + 1
    offsets = [(i * dilation[0], j * dilation[1]) for i in range(kh) for j in range(kw)]
    taps = [xp[:, :, r:r + hspan:stride[0], q:q + wspan:stride[1]] for r, q in offsets]
    # A running max over the kh*kw strided taps: NumPy reduces a short last axis (a window
    # copy plus argmax) several times slower than these whole-array passes.
    y = taps[0].copy()
    for tap in taps[1:]:
        np.maximum(y, tap, out=y)
    # The window's first tap equal to its max, PyTorch's tie rule: arg counts the taps
    # passed over while none matched (bool and int16 passes; the tap number fits int16 for
    # any real kernel).
    arg = np.zeros(y.shape, dtype=np.int16 if len(taps) < 2 ** 15 else np.int64)
    if len(taps) > 1:
        searching = np.not_equal(taps[0], y)
        for k in range(1, len(taps)):
            arg += searching
            if k < len(taps) - 1:
                searching &= np.not_equal(taps[k], y)
    if np.isnan(y.sum()):  # also true for inf - inf; the loop below then changes nothing
        # PyTorch takes a NaN whenever it meets one, so the last NaN of a window wins.
        for k, tap in enumerate(taps):
            arg = np.where(np.isnan(tap), k, arg)
    if padding != (0, 0) or ceil_mode:
        all_neg_inf = y == -np.inf
    if (padding != (0, 0) or ceil_mode) and all_neg_inf.any():
        # A window whose input is all -inf ties with the padding; PyTorch never looks at the
        # padding, so such a window reports its first in-bounds tap.
        rows = np.arange(ho)[:, None] * stride[0] - padding[0]
        cols = np.arange(wo) * stride[1] - padding[1]
        inside = np.stack([(rows + r >= 0) & (rows + r < x.shape[2]) & (cols + q >= 0)
                           & (cols + q < w) for r, q in offsets])
        arg = np.where(all_neg_inf, inside.argmax(axis=0), arg)
    # Flat index into the input plane: window origin plus the chosen tap's offset.
    origin = ((np.arange(ho) * stride[0] - padding[0])[:, None] * w
              + (np.arange(wo) * stride[1] - padding[1]))
    tap_offset = np.array([r * w + q for r, q in offsets], dtype=np.int64)
    return y, origin + tap_offset[arg]


def max_pool2d_backward(gy, indices, x_shape):
    n, c, h, w = x_shape
    if gy.shape != indices.shape:
        raise ValueError(f"max_pool2d_backward: grad_output {gy.shape} and indices "
                         f"{indices.shape} differ")
    # Overlapping windows can pick the same input twice: bincount accumulates repeats.
    plane = np.arange(n * c, dtype=np.int64).reshape(n, c, 1, 1) * (h * w)
    flat = (indices + plane).ravel()
    gx = np.bincount(flat, weights=gy.ravel(), minlength=n * c * h * w)
    return gx.astype(gy.dtype, copy=False).reshape(x_shape)


def _avg_divisor(x_shape, kernel_size, stride, padding, ho, wo, count_include_pad,
                 divisor_override, dtype):
    if divisor_override:
        return dtype.type(divisor_override)
    sizes = []
    for size, k, s, p, o in zip(x_shape[2:], kernel_size, stride, padding, (ho, wo)):
        start = np.arange(o) * s - p
        end = np.minimum(start + k, size + p)
        if count_include_pad:
            sizes.append(end - start)
        else:
            sizes.append(np.minimum(end, size) - np.maximum(start, 0))
    div = (sizes[0][:, None] * sizes[1][None, :]).astype(dtype)
    # A window lying wholly in ceil_mode's overhang sums nothing; keep it 0, not NaN.
    div[div == 0] = 1
    return div


def avg_pool2d(x, kernel_size, stride, padding, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    ho, wo = _check_pool("avg_pool2d", x, kernel_size, stride, padding, (1, 1), ceil_mode)
    xp = _pool_padded(x, kernel_size, stride, padding, (1, 1), ho, wo, 0.0)
    hspan = stride[0] * (ho - 1) + 1
    wspan = stride[1] * (wo - 1) + 1
    total = np.zeros(x.shape[:2] + (ho, wo), dtype=x.dtype)
    for i in range(kernel_size[0]):
        for j in range(kernel_size[1]):
            total += xp[:, :, i:i + hspan:stride[0], j:j + wspan:stride[1]]
    return total / _avg_divisor(x.shape, kernel_size, stride, padding, ho, wo,
                                count_include_pad, divisor_override, x.dtype)


def avg_pool2d_backward(gy, x_shape, kernel_size, stride, padding, ceil_mode=False,
                        count_include_pad=True, divisor_override=None):
    n, c, h, w = x_shape
    ho, wo = _check_avg_pool_grad(gy, x_shape, kernel_size, stride, padding, ceil_mode)
    g = gy / _avg_divisor(x_shape, kernel_size, stride, padding, ho, wo, count_include_pad,
                          divisor_override, gy.dtype)
    ph, pw = padding
    hspan = stride[0] * (ho - 1) + 1
    wspan = stride[1] * (wo - 1) + 1
    # Large enough for every window and for the crop back to the input.
    gxp = np.zeros((n, c, max(hspan - 1 + kernel_size[0], ph + h),
                    max(wspan - 1 + kernel_size[1], pw + w)), dtype=gy.dtype)
    for i in range(kernel_size[0]):
        for j in range(kernel_size[1]):
            gxp[:, :, i:i + hspan:stride[0], j:j + wspan:stride[1]] += g
    return gxp[:, :, ph:ph + h, pw:pw + w]


# --------------------------------------------------------------------------------------
# erf and the normal CDF (NumPy has no erf)
# --------------------------------------------------------------------------------------
# Fitted once at import, by interpolating math.erf / math.erfc at Chebyshev nodes:
#   0 <= a <= 10     erfc(a) = exp(-a^2) * P(t), t = 1 / (1 + a/2): one polynomial in t,
#                    evaluated by in-place Horner (the GELU hot path). Degree 18 gives
#                    float64 erfc to ~6e-14 relative, degree 10 float32 to ~3e-8.
#   10 < a <= 26.5   erfc(a) = exp(-a^2) / a * C(1/a^2), float64 only (float32 is 0 there;
#                    beyond 26.5 float64 erfc is below 1e-306)
#   |x| < 1          erf(x) = x * S(x^2), where 1 - erfc would lose relative accuracy

def _cheb_fit(f, lo, hi, deg):
    nodes = (hi - lo) / 2 * np.cos(np.pi * (np.arange(deg + 1) + 0.5) / (deg + 1)) + (hi + lo) / 2
    return np.polynomial.Chebyshev.fit(nodes, [f(v) for v in nodes], deg, domain=[lo, hi])


def _scaled_erfc_poly(deg, dtype):
    """Coefficients (highest first) of P above, as a plain power series in t."""
    fit = _cheb_fit(lambda t: math.erfc(2 / t - 2) * math.exp((2 / t - 2) ** 2), 1 / 6, 1.0, deg)
    return fit.convert(kind=np.polynomial.Polynomial).coef[::-1].astype(dtype)


_ERFC_POLY = {np.dtype(np.float32): _scaled_erfc_poly(10, np.float32),
              np.dtype(np.float64): _scaled_erfc_poly(18, np.float64)}
_ERFC_TAIL = _cheb_fit(lambda u: math.erfc(u ** -0.5) * math.exp(1 / u) * u ** -0.5,
                       1 / 26.5 ** 2, 1 / 100, 8)
_ERF_SMALL = _cheb_fit(lambda u: math.erf(math.sqrt(u)) / math.sqrt(u) if u > 0
                       else 2 / math.sqrt(math.pi), 0.0, 1.0, 14)


def _erfc_nonneg(a):
    """(erfc(a), exp(-a^2)) for a float32/float64 array a >= 0, both relative-accurate."""
    coef = _ERFC_POLY[a.dtype]
    t = a * a.dtype.type(0.5)
    t += 1
    np.reciprocal(t, out=t)
    p = np.full_like(a, coef[0])
    for c in coef[1:]:
        p *= t
        p += c
    g = a * a
    np.negative(g, out=g)
    np.exp(g, out=g)
    p *= g
    if a.dtype == np.float64:
        far = a > 10
        if far.any():
            af = a[far]
            p[far] = g[far] / af * _ERFC_TAIL(1 / (af * af))
    return p, g


def _float(x):
    x = np.asarray(x)
    return x if x.dtype in _ERFC_POLY else x.astype(np.float64)


def erf(x):
    """Vectorised erf; float32 in, float32 out, anything else in float64."""
    x = _float(x)
    out = np.copysign(1 - _erfc_nonneg(np.abs(x))[0], x)
    small = np.abs(x) < 1
    xs = x[small]
    out[small] = xs * _ERF_SMALL(xs * xs)
    return out


# The exact GELU runs block by block: about 30 array operations (most of them the Horner
# steps of P) over blocks of _BLOCK elements stay in the core's L2 cache, where over a whole
# (2048, 512) activation each operation streams 4 MB through memory: 1M float32 elements
# took 3.2 ms whole and 2.5 ms by blocks of 64K (1 thread, 2-core EPYC).
_BLOCK = 1 << 16
_HALF_ERFC_POLY = {dt: coef * dt.type(0.5) for dt, coef in _ERFC_POLY.items()}
_FAR_TAIL = 10 * math.sqrt(2)  # |x| beyond it: erfc(|x| / sqrt 2) from _ERFC_TAIL (float64)


def _blockwise(fn, out, *arrays):
    """fn(out_block, *blocks, scratch_1, scratch_2) over consecutive blocks of the
    flattened arrays (C-contiguous, out's size), with two scratch blocks reused throughout.
    One thread: sharing the blocks with a second thread (as many as OpenBLAS may use)
    measured no faster in GPT's step at 2 threads (91-93 ms either way, 2-core EPYC), since
    OpenBLAS's worker still spins on the other core after the GEMM before the GELU."""
    flat = [a.reshape(-1) for a in (out,) + arrays]
    n = out.size
    scratch = [np.empty(min(n, _BLOCK), dtype=out.dtype) for _ in range(2)]
    for s in range(0, n, _BLOCK):
        e = min(s + _BLOCK, n)
        fn(*(a[s:e] for a in flat), *(b[:e - s] for b in scratch))
    return out


def _gelu_block(out, x, t, p):
    """out = x * Phi(x), with Phi(-|x|) = P(u) exp(-x^2 / 2) / 2, u = 1 / (1 + |x| / (2 sqrt 2))
    (_erfc_nonneg's polynomial) and Phi(x) = Phi(-|x|) + [x >= 0] (1 - 2 Phi(-|x|))."""
    one = x.dtype.type
    coef = _HALF_ERFC_POLY[x.dtype]
    np.abs(x, out=t)
    t *= one(0.5 / math.sqrt(2))
    t += 1
    np.reciprocal(t, out=t)
    np.multiply(t, coef[0], out=p)
    p += coef[1]
    for c in coef[2:]:
        p *= t
        p += c
    np.multiply(x, x, out=t)
    t *= one(-0.5)
    np.exp(t, out=t)
    p *= t                                              # Phi(-|x|)
    if x.dtype == np.float64:
        far = np.abs(x) > _FAR_TAIL
        if far.any():
            af = np.abs(x[far]) * (1 / math.sqrt(2))
            p[far] = 0.5 * t[far] / af * _ERFC_TAIL(1 / (af * af))
    np.multiply(p, one(-2), out=t)
    t += 1
    t *= x >= 0
    t += p                                              # Phi(x)
    np.multiply(x, t, out=out)


def _gelu_grad_block(out, gy, x, y, t, p):
    """out = gy * (Phi(x) + x pdf(x)), Phi(x) recovered as y / x (1/2 at x = 0), far cheaper
    than erfc again."""
    one = x.dtype.type
    with np.errstate(invalid="ignore", divide="ignore"):
        np.divide(y, x, out=p)
    p[x == 0] = one(0.5)
    np.multiply(x, x, out=t)
    t *= one(-0.5)
    t -= one(0.5 * math.log(2 * math.pi))
    np.exp(t, out=t)                                    # pdf(x)
    t *= x
    t += p
    np.multiply(gy, t, out=out)


def _normal_cdf(x):
    """(Phi(x), exp(-x^2 / 2)) in x's float dtype; Phi keeps its relative accuracy in the
    lower tail, where 0.5 * (1 + erf) would cancel."""
    x = _float(x)
    a = np.abs(x)
    a *= x.dtype.type(1 / math.sqrt(2))
    half_tail, g = _erfc_nonneg(a)
    half_tail *= x.dtype.type(0.5)                # Phi(-|x|)
    # Phi(x) = Phi(-|x|) + [x >= 0] * (1 - 2 Phi(-|x|)), without a slow np.where.
    phi = 1 - 2 * half_tail
    phi *= x >= 0
    phi += half_tail
    return phi, g


# --------------------------------------------------------------------------------------
# Activations
# --------------------------------------------------------------------------------------

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_GELU_TANH_C = 0.044715


def _gelu_mode(param):
    mode = "none" if param is None else param
    if mode not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {param!r}")
    return mode


def activation(name, x, param=None):
    t = x.dtype.type
    if name == "relu":
        return np.maximum(x, t(0))
    if name == "leaky_relu":
        slope = t(0.01 if param is None else param)
        # max/min pick x or slope*x exactly and run far faster than np.where.
        return np.maximum(x, x * slope) if slope <= 1 else np.minimum(x, x * slope)
    if name == "sigmoid":
        # 1 / (1 + e^-x) keeps its relative accuracy on both sides; for x below about -88
        # (float32) e^-x overflows to inf and the result is the correct 0.
        with np.errstate(over="ignore"):
            y = np.exp(-x)
        y += 1
        return np.reciprocal(y, out=y)
    if name == "tanh":
        return np.tanh(x)
    if name == "selu":
        neg = t(SELU_SCALE * SELU_ALPHA) * np.expm1(np.minimum(x, t(0)))
        return np.where(x > 0, t(SELU_SCALE) * x, neg)
    if name == "gelu":
        if _gelu_mode(param) == "tanh":
            inner = t(_SQRT_2_OVER_PI) * (x + t(_GELU_TANH_C) * x * x * x)
            return t(0.5) * x * (1 + np.tanh(inner))
        if x.dtype in _HALF_ERFC_POLY:
            x = np.ascontiguousarray(x)
            return _blockwise(_gelu_block, np.empty_like(x), x)
        return (x * _normal_cdf(x)[0]).astype(x.dtype, copy=False)
    raise ValueError(f"unknown activation {name!r}; expected one of "
                     f"relu, leaky_relu, gelu, sigmoid, tanh, selu")


# linear's ``activation`` argument shadows the table function inside its body.
_activate = activation


def activation_backward(name, gy, x, y, param=None):
    if name in ("relu", "sigmoid", "tanh") and y is None:
        y = activation(name, x, param)
    t = gy.dtype.type
    if name == "relu":
        # A product with the mask is ~20x faster than np.where on this hot path; it differs
        # from PyTorch only for a non-finite gradient on a unit that is off (NaN, not 0).
        return gy * (y > 0)
    if name == "leaky_relu":
        slope = t(0.01 if param is None else param)
        return np.where(x > 0, gy, gy * slope)
    if name == "sigmoid":
        return gy * y * (1 - y)
    if name == "tanh":
        return gy * (1 - y * y)
    if name == "selu":
        return np.where(x > 0, gy * t(SELU_SCALE),
                        gy * t(SELU_SCALE * SELU_ALPHA) * np.exp(np.minimum(x, t(0))))
    if name == "gelu":
        if _gelu_mode(param) == "tanh":
            c = t(_GELU_TANH_C)
            th = np.tanh(t(_SQRT_2_OVER_PI) * (x + c * x * x * x))
            dinner = t(_SQRT_2_OVER_PI) * (1 + 3 * c * x * x)
            return gy * (t(0.5) * (1 + th) + t(0.5) * x * (1 - th * th) * dinner)
        if y is not None and x.dtype in _HALF_ERFC_POLY and gy.dtype == x.dtype == y.dtype \
                and x.shape == y.shape == gy.shape:
            arrays = [np.ascontiguousarray(a) for a in (gy, x, y)]
            return _blockwise(_gelu_grad_block, np.empty(x.shape, dtype=x.dtype), *arrays)
        if y is None:
            phi, g = _normal_cdf(x)
        else:
            # y = x * Phi(x): one division recovers Phi, far cheaper than erfc again
            # (x = 0 divides 0 by 1 and gets Phi(0) = 1/2 added).
            zero = x == 0
            phi = y / (x + zero)
            phi += zero * x.dtype.type(0.5)
            g = x * x
            g *= x.dtype.type(-0.5)
            np.exp(g, out=g)
        g *= x
        g *= g.dtype.type(1 / math.sqrt(2 * math.pi))      # x * pdf(x)
        g += phi
        return (gy * g).astype(gy.dtype, copy=False)
    raise ValueError(f"unknown activation {name!r}; expected one of "
                     f"relu, leaky_relu, gelu, sigmoid, tanh, selu")


# --------------------------------------------------------------------------------------
# Softmax and cross-entropy
# --------------------------------------------------------------------------------------

_ROW_SUM_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_ONES: dict = {}


def _row_sums(a):
    """Sums over the last axis of a C-contiguous float32/float64 array, shape a.shape[:-1]:
    one BLAS matrix-vector product with a vector of ones. NumPy's reduction along a
    contiguous last axis works row by row and is several times slower: for float32
    (2048, 128) 0.06 against 0.011 ms, (2048, 10) 0.031 against 0.005 ms (1 thread)."""
    return np.matmul(a, _ones(a.shape[-1], a.dtype))


def _ones(n, dtype):
    """A read-only vector of n ones, kept for the next call (a few shapes recur every step)."""
    ones = _ONES.get((n, dtype.str))
    if ones is None:
        if len(_ONES) > 64:
            _ONES.clear()
        ones = _ONES[(n, dtype.str)] = np.ones(n, dtype=dtype)
        ones.flags.writeable = False
    return ones


def _fast_rows(a):
    return a.dtype in _ROW_SUM_DTYPES and a.flags.c_contiguous and a.shape[-1] > 0


def _sum_last(a):
    """a.sum(axis=-1, keepdims=True), through _row_sums where it applies."""
    if _fast_rows(a):
        return _row_sums(a)[..., None]
    return np.sum(a, axis=-1, keepdims=True)


# exp(z) is taken without subtracting the row maximum when no z exceeds _EXP_SAFE (e^60 is
# 1.1e26: sums of up to 10^12 such terms fit float32) and every row sum is at least
# _ROW_SUM_FLOOR, so an entry whose exp underflowed (z < -87) has a probability below
# e^-87 / 1e-10 ~ 1e-28. This skips NumPy's row max, which runs at 0.6 ns an element on a
# contiguous last axis (more for short rows), and one pass; the result differs from the
# shifted one by rounding only. Anything else (NaN, inf, large or all-small rows) takes the
# shifted path.
_EXP_SAFE = 60.0
_ROW_SUM_FLOOR = 1e-10


def _exp_row_sums(z, keep=None):
    """z (C-contiguous, last axis the rows) replaced by exp(z), times keep (a 0/1 mask
    broadcasting to z) when given, and its row sums; None, z unchanged, when the unshifted
    exp could overflow, or with z holding the exps, when some row sum is below the floor."""
    if not z.size or not z.max() <= _EXP_SAFE:  # NaN fails too
        return None
    np.exp(z, out=z)
    if keep is not None:
        z *= keep
    sums = _row_sums(z)
    if not sums.min() >= _ROW_SUM_FLOOR:
        return None
    return sums


def _logsumexp(x, axis):
    """Row log-sum-exp, max subtracted; rows of all -inf give -inf (and later NaN)."""
    if _fast_rows(x) and axis in (-1, x.ndim - 1):
        e = np.array(x)
        sums = _exp_row_sums(e)
        if sums is not None:
            return np.log(sums)[..., None]
    m = np.max(x, axis=axis, keepdims=True)
    shift = np.where(np.isfinite(m), m, 0)
    with np.errstate(divide="ignore"):
        return np.log(np.sum(np.exp(x - shift), axis=axis, keepdims=True)) + shift


def _softmax_into(z, dim, log, source=None):
    """Softmax (or log-softmax) of z along dim, computed in z's own buffer. With ``source``
    (a function giving z's values again) a softmax over the last axis may take the
    unshifted path of _exp_row_sums, which overwrites z before it knows."""
    if source is not None and not log and dim in (-1, z.ndim - 1) and _fast_rows(z):
        sums = _exp_row_sums(z)
        if sums is not None:
            z /= sums[..., None]
            return z
        z[...] = source()
    with np.errstate(invalid="ignore", divide="ignore"):
        # A row of all -inf gives -inf - -inf = NaN, PyTorch's answer for it.
        z -= np.max(z, axis=dim, keepdims=True)
        if log:
            z -= np.log(np.sum(np.exp(z), axis=dim, keepdims=True))
            return z
        np.exp(z, out=z)
        z /= np.sum(z, axis=dim, keepdims=True)
        return z


def softmax(x, dim, log=False):
    return _softmax_into(np.array(x, dtype=np.result_type(x, np.float32)), dim, log, source=lambda: x)


def softmax_backward(gy, y, dim, log=False):
    if log:
        g = np.exp(y)
        g *= np.sum(gy, axis=dim, keepdims=True)
        np.subtract(gy, g, out=g)
        return g
    g = gy * y
    g -= y * np.sum(g, axis=dim, keepdims=True)
    return g


def cross_entropy(logits, target, ignore_index=-100, label_smoothing=0.0):
    _glue.check_label_smoothing(label_smoothing)
    valid = _check_targets(logits, target, ignore_index, "cross_entropy")
    lse = _logsumexp(logits, axis=1)[:, 0]
    safe = np.where(valid, target, 0)
    nll = lse - np.take_along_axis(logits, safe[:, None], axis=1)[:, 0]
    if label_smoothing:
        # PyTorch: (1 - eps) * nll + eps * mean over classes of -log p_c.
        smooth = lse - logits.mean(axis=1)
        nll = (1 - label_smoothing) * nll + label_smoothing * smooth
    loss = np.where(valid, nll, 0).astype(logits.dtype, copy=False)
    return loss, lse


def cross_entropy_backward(gloss, logits, target, lse, ignore_index=-100, label_smoothing=0.0):
    valid = _check_targets(logits, target, ignore_index, "cross_entropy_backward")
    n, c = logits.shape
    g = np.exp(logits - lse[:, None])
    if label_smoothing:
        g -= logits.dtype.type(label_smoothing / c)
    rows = np.arange(n)
    safe = np.where(valid, target, 0)
    g[rows, safe] -= logits.dtype.type(1 - label_smoothing)
    g *= np.where(valid, gloss, 0).astype(logits.dtype, copy=False)[:, None]
    return g


# --------------------------------------------------------------------------------------
# Normalisation
# --------------------------------------------------------------------------------------

def _row_means(a):
    """a.mean(axis=1) of a 2-D array, float32/float64 through _row_sums."""
    if _fast_rows(a):
        m = _row_sums(a)
        m *= a.dtype.type(1 / a.shape[1])
        return m
    return a.mean(axis=1)


def _column_sums(a):
    """a.sum(axis=0) of a 2-D array (one BLAS product with ones for float32/float64)."""
    if _fast_rows(a) and a.shape[0] > 0:
        return np.matmul(_ones(a.shape[0], a.dtype), a)
    return a.sum(axis=0)


def layer_norm(x, weight, bias, eps):
    if x.ndim != 2:
        raise ValueError(f"layer_norm: expected x flattened to (M, D), got {x.shape}")
    d = x.shape[1]
    for pname, p in (("weight", weight), ("bias", bias)):
        if p is not None and p.shape != (d,):
            raise ValueError(f"layer_norm: {pname} {p.shape} does not match input {x.shape}")
    x = np.ascontiguousarray(x)
    mean = _row_means(x)
    xc = x - mean[:, None]
    rstd = _row_means(xc * xc)
    rstd += x.dtype.type(eps)
    np.sqrt(rstd, out=rstd)
    np.reciprocal(rstd, out=rstd)
    y = xc
    y *= rstd[:, None]
    if weight is not None:
        y *= weight
    if bias is not None:
        y += bias
    return y, mean, rstd


def layer_norm_backward(gy, x, weight, mean, rstd):
    gy = np.ascontiguousarray(gy)
    xhat = x - mean[:, None]
    xhat *= rstd[:, None]
    gw = gb = None
    if weight is not None:
        gb = _column_sums(gy)
        g = gy * weight
        gw = _column_sums(gy * xhat)
    else:
        g = gy
    # gx = rstd * (g - mean(g) - xhat * mean(g * xhat)), in the buffer of g * xhat
    gx = g * xhat
    m2 = _row_means(gx)
    np.multiply(xhat, m2[:, None], out=gx)
    np.subtract(g, gx, out=gx)
    gx -= _row_means(g)[:, None]
    gx *= rstd[:, None]
    return gx, gw, gb


# --------------------------------------------------------------------------------------
# Gather gradients: embedding and indexing
# --------------------------------------------------------------------------------------

def _sum_rows_into(out, rows, g):
    """out[rows[i]] += g[i] for a zeroed 2-D out, repeats summed, without np.add.at:
    sort the rows and add each run of equal rows with one reduceat."""
    if rows.size == 0:
        return
    order = np.argsort(rows, kind="stable")
    sorted_rows = rows[order]
    starts = np.flatnonzero(np.r_[True, sorted_rows[1:] != sorted_rows[:-1]])
    out[sorted_rows[starts]] = np.add.reduceat(g[order], starts, axis=0)


def embedding_backward(gy, indices, num_embeddings, padding_idx=None):
    idx = _glue.check_embedding(gy, indices, num_embeddings)
    gw = np.zeros((num_embeddings, gy.shape[-1]), dtype=gy.dtype)
    _sum_rows_into(gw, idx, gy.reshape(idx.size, gy.shape[-1]))
    if padding_idx is not None:
        gw[operator.index(padding_idx) % num_embeddings] = 0
    return gw


def _is_basic_index(items):
    """Only ints, slices, None and Ellipsis: no element is selected twice."""
    return all(i is None or i is Ellipsis or isinstance(i, slice)
               or (isinstance(i, (int, np.integer)) and not isinstance(i, (bool, np.bool_)))
               for i in items)


def _leading_rows(items, shape):
    """Flat row numbers when the index is integer/bool arrays on the leading dims followed
    only by full slices (x[idx], x[i, j], x[mask]); None for any other index."""
    arrays = []
    rest = list(items)
    while rest and not (isinstance(rest[0], slice) or rest[0] is Ellipsis or rest[0] is None):
        a = np.asarray(rest.pop(0))
        if a.dtype == np.bool_:
            arrays.extend(a.nonzero())
        elif a.dtype.kind in "iu":
            arrays.append(a)
        else:
            return None
    full = all(i is Ellipsis or (isinstance(i, slice) and i == slice(None)) for i in rest)
    if not arrays or len(arrays) > len(shape) or not full:
        return None
    lead = shape[:len(arrays)]
    arrays = [np.mod(a, n) for a, n in zip(np.broadcast_arrays(*arrays), lead)]
    return np.ravel_multi_index(arrays, lead), len(lead)


def scatter_add(shape, index, values):
    shape = tuple(shape)
    values = np.asarray(values)
    out = np.zeros(shape, dtype=values.dtype)
    items = index if isinstance(index, tuple) else (index,)
    if _is_basic_index(items):
        out[index] = values
        return out
    leading = _leading_rows(items, shape)
    if leading is not None:
        # The common gather (rows picked by arrays): sum whole rows, memory ~ the gradient.
        rows, m = leading
        tail = shape[m:]
        g = np.broadcast_to(values, rows.shape + tail).reshape(rows.size, math.prod(tail))
        _sum_rows_into(out.reshape(math.prod(shape[:m]), -1), rows.reshape(-1), g)
        return out
    # Any other mix: number every element, select the numbers with the same index and let
    # bincount sum the repeats.
    flat = np.arange(out.size, dtype=np.int64).reshape(shape)[index]
    contrib = np.broadcast_to(values, flat.shape)
    summed = np.bincount(flat.ravel(), weights=contrib.ravel(), minlength=out.size)
    return summed.astype(values.dtype, copy=False).reshape(shape)


# --------------------------------------------------------------------------------------
# Scaled dot-product attention
# --------------------------------------------------------------------------------------

def _attention_mask(attn_mask, is_causal, l, s, dtype):
    """(keep, bias) for the mask arguments: keep a 0/1 array multiplying exp(scores) (a bool
    mask or the causal one), bias an additive float mask; each None when absent."""
    if is_causal:
        if attn_mask is not None:
            raise ValueError("sdpa: pass either attn_mask or is_causal=True, not both")
        # Top-left aligned as PyTorch: query i sees keys 0..i.
        return np.tri(l, s, dtype=dtype), None
    if attn_mask is None:
        return None, None
    if attn_mask.dtype == np.bool_:
        return attn_mask.astype(dtype), None
    return None, attn_mask.astype(dtype, copy=False)


def _check_sdpa(q, k, v, attn_mask):
    _glue.check_qkv(q, k, v)
    if attn_mask is not None:
        try:
            np.broadcast_shapes(attn_mask.shape, q.shape[:-1] + (k.shape[-2],))
        except ValueError:
            raise ValueError(f"sdpa: attn_mask {attn_mask.shape} does not broadcast to "
                             f"{q.shape[:-1] + (k.shape[-2],)}") from None


def _sdpa_scale(q, scale):
    return q.dtype.type(1 / math.sqrt(q.shape[-1]) if scale is None else scale)


def _attention_probs(q, k, attn_mask, is_causal, scale):
    """softmax(q k^T * scale + mask) over the keys. The scale multiplies q (L * E products
    instead of L * S); a bool or causal mask multiplies exp(scores) by 0/1 on the unshifted
    path (see _exp_row_sums) and is an additive -inf elsewhere."""
    keep, bias = _attention_mask(attn_mask, is_causal, q.shape[-2], k.shape[-2], q.dtype)

    def scores():
        z = np.matmul(q * _sdpa_scale(q, scale), k.swapaxes(-1, -2))
        if bias is not None:
            if np.broadcast_shapes(z.shape, bias.shape) != z.shape:
                return z + bias                 # a mask with more batch dims than q and k
            z += bias
        return z

    z = scores()
    if keep is not None and np.broadcast_shapes(z.shape, keep.shape) != z.shape:
        z = np.array(np.broadcast_to(z, np.broadcast_shapes(z.shape, keep.shape)))
    if _fast_rows(z):
        sums = _exp_row_sums(z, keep)
        if sums is not None:
            z /= sums[..., None]
            return z
        z[...] = scores()
    if keep is not None:
        with np.errstate(divide="ignore"):
            z += np.log(keep)                     # 0 where kept, -inf where masked
    return _softmax_into(z, -1, False)


def sdpa(q, k, v, attn_mask=None, is_causal=False, scale=None, dropout_p=0.0):
    _check_sdpa(q, k, v, attn_mask)
    p = _attention_probs(q, k, attn_mask, is_causal, scale)
    mask = dropout_mask(p.shape, dropout_p, p.dtype) if dropout_p > 0 else None
    out = np.matmul(p if mask is None else p * mask, v)
    return out, (p, mask)


def sdpa_backward(gout, q, k, v, out, saved, attn_mask=None, is_causal=False, scale=None,
                  dropout_p=0.0):
    p, mask = saved
    pd = p if mask is None else p * mask
    gv = _unbroadcast(np.matmul(pd.swapaxes(-1, -2), gout), v.shape)
    gs = np.matmul(gout, v.swapaxes(-1, -2))          # gradient of the dropped-out probs
    if mask is not None:
        gs *= mask
    # Softmax backward in place: p * (gp - rowsum(gp * p)). Given the output, the row sums
    # are gout . out (out = (p * mask) @ v), as FlashAttention's backward takes them: a pass
    # over the (L, Ev) output instead of the (L, S) scores.
    gs -= _sum_last(gs * p) if out is None else _sum_last(gout * out)
    gs *= p
    c = _sdpa_scale(q, scale)                          # the score scale, on the smaller side
    gq = _unbroadcast(np.matmul(gs, k), q.shape)
    gq *= c
    gk = _unbroadcast(np.matmul(gs.swapaxes(-1, -2), q), k.shape)
    gk *= c
    return gq, gk, gv


# --------------------------------------------------------------------------------------
# Optimizer updates, in place, as torch.optim's single-tensor code paths
# --------------------------------------------------------------------------------------

def sgd_step(param, grad, buf, lr, momentum, dampening, nesterov, weight_decay, first_step):
    if weight_decay:
        grad = grad + weight_decay * param
    if momentum:
        if buf is None:
            raise ValueError("sgd_step: momentum != 0 needs a momentum buffer, got None")
        if first_step:
            buf[...] = grad
        else:
            buf *= momentum
            buf += (1 - dampening) * grad if dampening else grad
        grad = grad + momentum * buf if nesterov else buf
    param -= lr * grad


def adam_step(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, step, lr, beta1, beta2, eps,
              weight_decay, decoupled, amsgrad):
    if weight_decay:
        if decoupled:
            param *= 1 - lr * weight_decay
        else:
            grad = grad + weight_decay * param
    exp_avg += (1 - beta1) * (grad - exp_avg)
    exp_avg_sq *= beta2
    exp_avg_sq += (1 - beta2) * grad * grad
    bias_correction1 = 1 - beta1 ** step
    bias_correction2_sqrt = math.sqrt(1 - beta2 ** step)
    if amsgrad:
        if max_exp_avg_sq is None:
            raise ValueError("adam_step: amsgrad=True needs max_exp_avg_sq, got None")
        np.maximum(max_exp_avg_sq, exp_avg_sq, out=max_exp_avg_sq)
        second = max_exp_avg_sq
    else:
        second = exp_avg_sq
    denom = np.sqrt(second) / bias_correction2_sqrt + eps
    param -= (lr / bias_correction1) * exp_avg / denom


# --------------------------------------------------------------------------------------
# Recurrent cells: one time step's pointwise part, gate-major, written into the caller's
# buffers (the recurrences call these once per step; nothing is allocated per step)
# --------------------------------------------------------------------------------------

def lstm_cell(xg, hg, c_prev, acts, c, tanh_c, h):
    _check_cell("lstm_cell", 4, (xg, hg, acts), (c_prev, c, tanh_c, h))
    np.add(xg, hg, out=acts)
    # sigmoid(z) = 0.5 * tanh(z / 2) + 0.5 for i, f and o, tanh(z) for g: one tanh over all
    # four gates, the halving exact. Scalar operations on the sigmoid gates' blocks (i and f
    # are one) run twice as fast as one broadcast (4, 1, 1) scale and shift over all four.
    half = acts.dtype.type(0.5)
    i_f, o = acts[:2], acts[3]
    i_f *= half
    o *= half
    np.tanh(acts, out=acts)
    for a in (i_f, o):
        a *= half
        a += half
    i, f, g, o = acts
    np.multiply(f, c_prev, out=c)
    np.multiply(i, g, out=h)  # h is scratch until its final value
    c += h
    np.tanh(c, out=tanh_c)
    np.multiply(o, tanh_c, out=h)


def lstm_cell_factors(acts, c_prev, tanh_c, fac, dc_dh):
    _check_cell("lstm_cell_factors", 4, (acts, fac), (c_prev, tanh_c, dc_dh))
    i, f, g, o = acts
    fi, ff, fg, fo = fac
    np.subtract(1, i, out=fi)  # g * i * (1 - i)
    fi *= i
    fi *= g
    np.subtract(1, f, out=ff)  # c_{t-1} * f * (1 - f)
    ff *= f
    ff *= c_prev
    np.multiply(g, g, out=fg)  # i * (1 - g^2)
    np.subtract(1, fg, out=fg)
    fg *= i
    np.subtract(1, o, out=fo)  # tanh(c) * o * (1 - o)
    fo *= o
    fo *= tanh_c
    np.multiply(tanh_c, tanh_c, out=dc_dh)  # o * (1 - tanh(c)^2)
    np.subtract(1, dc_dh, out=dc_dh)
    dc_dh *= o


def lstm_cell_backward(gh, dh_parts, dc, f, fac, dc_dh, dgates, dc_prev):
    _check_cell("lstm_cell_backward", 4, (fac, dgates), (gh, dc, f, dc_dh, dc_prev), dh_parts)
    dh = dc_prev  # dc_prev's block holds dh, then dc_t, then its own value
    if len(dh_parts) == 1:
        np.add(dh_parts[0], gh, out=dh)
    else:
        np.add.reduce(dh_parts, axis=0, out=dh)
        dh += gh
    np.multiply(fac[3], dh, out=dgates[3])
    dh *= dc_dh
    dct = dh
    dct += dc
    np.multiply(fac[:3], dct, out=dgates[:3])
    dct *= f


def gru_cell(xg, hg, b_hh, h_prev, acts, hn, h):
    _check_cell("gru_cell", 3, (xg, hg, acts), (h_prev, hn, h), bias=b_hh)
    rz = acts[:2]
    np.add(xg[:2], hg[:2], out=rz)
    if b_hh is None:
        hn[...] = hg[2]
    else:
        bias = b_hh.reshape(3, 1, -1)
        rz += bias[:2]
        np.add(hg[2], bias[2], out=hn)
    rz *= 0.5  # sigmoid(z) = 0.5 * tanh(z / 2) + 0.5, the halving exact
    np.tanh(rz, out=rz)
    rz *= 0.5
    rz += 0.5
    r, z, n = acts
    np.multiply(r, hn, out=h)  # h is scratch until its final value; n may be xg's block
    np.add(xg[2], h, out=n)
    np.tanh(n, out=n)
    np.subtract(h_prev, n, out=h)  # h = n + z * (h_prev - n) = (1 - z) * n + z * h_prev
    h *= z
    h += n


def gru_cell_backward(gh, dh_parts, dh_carry, acts, hn, h_prev, dxg, dhg, dh_carry_out):
    _check_cell("gru_cell_backward", 3, (acts, dxg, dhg), (gh, hn, h_prev, dh_carry_out),
                     dh_parts, dh_carry)
    r, z, n = acts
    dr, dz, dn = dxg
    dh = dh_carry_out  # holds the total dh until the last line (dh_carry may be it)
    np.add(gh, dh_parts[0] if dh_carry is None else dh_carry, out=dh)
    for part in dh_parts[1:] if dh_carry is None else dh_parts:
        dh += part
    np.subtract(1, z, out=dn)  # dh * (1 - z) * (1 - n^2)
    dn *= dh
    np.multiply(n, n, out=dr)
    np.subtract(1, dr, out=dr)
    dn *= dr
    np.subtract(h_prev, n, out=dz)  # dh * (h_prev - n) * z * (1 - z)
    dz *= dh
    np.subtract(1, z, out=dr)
    dr *= z
    dz *= dr
    np.subtract(1, r, out=dr)  # dn * hn * r * (1 - r)
    dr *= r
    dr *= hn
    dr *= dn
    dhg[:2] = dxg[:2]
    np.multiply(dn, r, out=dhg[2])
    dh *= z
