"""Python wrappers of the native nn kernels (softmax, cross-entropy, layer norm, attention,
optimizer updates), re-exported by cuda_backend.

Each function has the signature of the backend table (pyengine/backend/__init__.py). Inputs are
CuPy arrays; the kernels take contiguous float32 (int64 targets, bool or float32 masks), so a
strided input is copied to a contiguous one first and any other float dtype raises a TypeError
naming the op. Outputs are allocated here with CuPy (the kernels never allocate) and every
launch goes to CuPy's current stream.
"""
from __future__ import annotations

import math

import numpy as np

from . import _cuda_common, _glue
from ._cuda_common import _ptr, _stream, cp
from ._glue import unbroadcast as _unbroadcast

# The nn half words a wrong operand as "softmax: the native CUDA kernels take float32 only, ...".
_NOT_CUPY = "{op}: {arg} must be a CuPy array on the GPU, got {kind}"
_NOT_F32 = "{op}: the native CUDA kernels take float32 only, got {arg} of dtype {dtype}"


def _kernels():
    from pyengine import _C  # only reached once cuda_backend.available() has vetted the extension
    return _C


def _f32(a, op, name):
    """``a`` as a contiguous float32 CuPy array, or a TypeError naming the op and dtype."""
    return _cuda_common._f32(a, op, name, _NOT_CUPY, _NOT_F32)


def _vector(a, n, op, name):
    """A (n,) float32 parameter, or None."""
    if a is None:
        return None
    if a.shape != (n,):
        raise ValueError(f"{op}: {name} {a.shape} does not match the normalised size ({n},)")
    return _f32(a, op, name)


def _dim(dim, ndim, op):
    if not -max(ndim, 1) <= dim < max(ndim, 1):
        raise IndexError(f"{op}: dim {dim} is out of range for a {ndim}-d input")
    return dim % max(ndim, 1)


def _rows_last(a, dim):
    """``a`` with ``dim`` moved last, contiguous, and its (rows, cols) view."""
    a = a.reshape(1) if a.ndim == 0 else a
    moved = _cuda_common._contiguous(a if dim == a.ndim - 1 else cp.moveaxis(a, dim, -1))
    cols = moved.shape[-1]
    rows = moved.size // cols if cols else 0
    return moved, rows, cols


def _rows_back(y, dim, shape):
    return (y if dim == len(shape) - 1 else cp.moveaxis(y, -1, dim)).reshape(shape)


# --------------------------------------------------------------------------------------
# Softmax and cross-entropy
# --------------------------------------------------------------------------------------

def softmax(x, dim, log=False):
    x = _f32(x, "softmax", "x")
    dim = _dim(dim, x.ndim, "softmax")
    xm, rows, cols = _rows_last(x, dim)
    y = cp.empty_like(xm)
    _kernels().softmax_forward(xm.data.ptr, y.data.ptr, rows, cols, bool(log), _stream())
    return _rows_back(y, dim, x.shape)


def softmax_backward(gy, y, dim, log=False):
    if gy.shape != y.shape:
        raise ValueError(f"softmax_backward: gy {gy.shape} and y {y.shape} must have the same shape")
    gy = _f32(gy, "softmax_backward", "gy")
    y = _f32(y, "softmax_backward", "y")
    dim = _dim(dim, y.ndim, "softmax_backward")
    gm, rows, cols = _rows_last(gy, dim)
    ym, _, _ = _rows_last(y, dim)
    gx = cp.empty_like(gm)
    _kernels().softmax_backward(gm.data.ptr, ym.data.ptr, gx.data.ptr, rows, cols, bool(log), _stream())
    return _rows_back(gx, dim, y.shape)


def _check_targets(logits, target, ignore_index, op, bounds=True):
    """The targets as contiguous int64, checked against logits; ``bounds`` also checks each
    class (_glue.check_classes: three launches and one device sync, the only check of the
    targets on the way from F.cross_entropy). The backward leaves it out: its targets are the
    forward's, and a row whose class is out of range gets a NaN gradient there."""
    _glue.check_target_shape(logits, target, op)
    if target.dtype != cp.int64 or not target.flags.c_contiguous:
        target = cp.ascontiguousarray(target, dtype=cp.int64)
    if bounds:
        _glue.check_classes(target, logits.shape[1], ignore_index, op)
    return target


def cross_entropy(logits, target, ignore_index=-100, label_smoothing=0.0):
    _glue.check_label_smoothing(label_smoothing)
    target = _check_targets(logits, target, ignore_index, "cross_entropy")
    logits = _f32(logits, "cross_entropy", "logits")
    n, c = logits.shape
    loss = cp.empty(n, dtype=cp.float32)
    lse = cp.empty(n, dtype=cp.float32)
    _kernels().cross_entropy_forward(logits.data.ptr, target.data.ptr, loss.data.ptr, lse.data.ptr, n, c,
                                     int(ignore_index), float(label_smoothing), _stream())
    return loss, lse


def cross_entropy_backward(gloss, logits, target, lse, ignore_index=-100, label_smoothing=0.0):
    target = _check_targets(logits, target, ignore_index, "cross_entropy_backward", bounds=False)
    logits = _f32(logits, "cross_entropy_backward", "logits")
    n, c = logits.shape
    gloss = _f32(cp.broadcast_to(gloss, (n,)), "cross_entropy_backward", "gloss")
    lse = _f32(lse, "cross_entropy_backward", "lse")
    if lse.shape != (n,):
        raise ValueError(f"cross_entropy_backward: lse {lse.shape} does not match logits {logits.shape}")
    g = cp.empty_like(logits)
    _kernels().cross_entropy_backward(gloss.data.ptr, logits.data.ptr, target.data.ptr, lse.data.ptr,
                                      g.data.ptr, n, c, int(ignore_index), float(label_smoothing),
                                      _stream())
    return g


# --------------------------------------------------------------------------------------
# Layer norm
# --------------------------------------------------------------------------------------

def layer_norm(x, weight, bias, eps):
    if x.ndim != 2:
        raise ValueError(f"layer_norm: expected x flattened to (M, D), got {x.shape}")
    x = _f32(x, "layer_norm", "x")
    m, d = x.shape
    weight = _vector(weight, d, "layer_norm", "weight")
    bias = _vector(bias, d, "layer_norm", "bias")
    y = cp.empty_like(x)
    mean = cp.empty(m, dtype=cp.float32)
    rstd = cp.empty(m, dtype=cp.float32)
    _kernels().layer_norm_forward(x.data.ptr, _ptr(weight), _ptr(bias), y.data.ptr, mean.data.ptr,
                                  rstd.data.ptr, m, d, float(eps), _stream())
    return y, mean, rstd


def layer_norm_backward(gy, x, weight, mean, rstd):
    if gy.shape != x.shape or x.ndim != 2:
        raise ValueError(f"layer_norm_backward: gy {gy.shape} and x {x.shape} must be the same (M, D)")
    op = "layer_norm_backward"
    gy, x = _f32(gy, op, "gy"), _f32(x, op, "x")
    m, d = x.shape
    mean, rstd = _f32(mean, op, "mean"), _f32(rstd, op, "rstd")
    if mean.shape != (m,) or rstd.shape != (m,):
        raise ValueError(f"{op}: mean {mean.shape} / rstd {rstd.shape} do not match x {x.shape}")
    weight = _vector(weight, d, op, "weight")
    C, st = _kernels(), _stream()
    gx = cp.empty_like(x)
    fused = C.layer_norm_fused_partial_rows(m, d) if weight is not None else 0
    if fused:
        partial = cp.empty((fused, 2, d), dtype=cp.float32)
        gw = cp.empty(d, dtype=cp.float32)
        gb = cp.empty(d, dtype=cp.float32)
        C.layer_norm_backward_fused(gy.data.ptr, x.data.ptr, weight.data.ptr, mean.data.ptr, rstd.data.ptr,
                                    gx.data.ptr, partial.data.ptr, gw.data.ptr, gb.data.ptr, m, d, st)
        return gx, gw, gb
    C.layer_norm_backward_input(gy.data.ptr, x.data.ptr, _ptr(weight), mean.data.ptr, rstd.data.ptr,
                                gx.data.ptr, m, d, st)
    if weight is None:
        return gx, None, None
    partial = cp.empty((C.layer_norm_partial_rows(m), 2, d), dtype=cp.float32)
    gw = cp.empty(d, dtype=cp.float32)
    gb = cp.empty(d, dtype=cp.float32)
    C.layer_norm_backward_params(gy.data.ptr, x.data.ptr, mean.data.ptr, rstd.data.ptr, partial.data.ptr,
                                 gw.data.ptr, gb.data.ptr, m, d, st)
    return gx, gw, gb


# --------------------------------------------------------------------------------------
# Scaled dot-product attention
# --------------------------------------------------------------------------------------

def _check_sdpa(q, k, v, attn_mask, is_causal):
    _glue.check_qkv(q, k, v)
    if is_causal and attn_mask is not None:
        raise ValueError("sdpa: pass either attn_mask or is_causal=True, not both")
    try:
        lead = np.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    except ValueError:
        raise ValueError(f"sdpa: batch dims of q {q.shape}, k {k.shape}, v {v.shape} "
                         f"do not broadcast") from None
    return tuple(lead)


def _scale(q, scale):
    return 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)


def _mask_args(attn_mask, lead, l, s):
    """(kind, heads, sb, sh, sl, ss, array) for the kernels: the mask broadcast to
    lead + (l, s) without copying, read at b*sb + h*sh + i*sl + j*ss for problem b*heads + h
    (strides in elements). The outer batch dims must fold into one stride; a mask whose
    broadcast strides do not is copied whole (rare: it needs three or more batch dims)."""
    heads = lead[-1] if lead else 1
    if attn_mask is None:
        return 0, heads, 0, 0, 0, 0, None
    kind = 1 if attn_mask.dtype == cp.bool_ else 2
    if kind == 2 and attn_mask.dtype.kind != "f":
        raise TypeError(f"sdpa: attn_mask must be bool or floating, got dtype {attn_mask.dtype}")
    mask = attn_mask if kind == 1 else attn_mask.astype(cp.float32, copy=False)
    try:
        mask = cp.broadcast_to(mask, lead + (l, s))
    except ValueError:
        raise ValueError(f"sdpa: attn_mask {attn_mask.shape} does not broadcast to "
                         f"{lead + (l, s)}") from None
    for _ in range(2):
        st = [x // mask.itemsize for x in mask.strides]
        outer = [(n, st[i]) for i, n in enumerate(lead[:-1]) if n != 1]
        if all(a[1] == b[1] * b[0] for a, b in zip(outer, outer[1:])):
            sb = outer[-1][1] if outer else 0
            sh = st[len(lead) - 1] if lead else 0
            return kind, heads, sb, sh, st[-2], st[-1], mask
        mask = cp.ascontiguousarray(mask)
    raise AssertionError("a contiguous mask always folds")


def _attention_args(q, k, v, attn_mask, is_causal, scale, lead):
    l, e = q.shape[-2:]
    s, ev = v.shape[-2:]
    kind, heads, sb, sh, sl, ss, mask = _mask_args(attn_mask, lead, l, s)
    bh = int(np.prod(lead, dtype=np.int64)) if lead else 1
    args = dict(bh=bh, l=l, s=s, e=e, ev=ev, scale=_scale(q, scale), causal=bool(is_causal),
                mask=_ptr(mask), mask_kind=kind, heads=heads, sb=sb, sh=sh, sl=sl, ss=ss)
    return args, mask


def _contig(a, lead, op, name):
    return _f32(cp.broadcast_to(a, lead + a.shape[-2:]), op, name)


def _qkv_contig(q, k, v, lead, op):
    """Contiguous float32 q, k, v. When they are equally spaced views of one buffer with one
    layout (a fused qkv projection split into heads, as the GPT does), one copy of the three
    (a strided view over them) replaces three."""
    shape = lead + q.shape[-2:]
    if (isinstance(q, cp.ndarray) and isinstance(k, cp.ndarray) and isinstance(v, cp.ndarray)
            and q.dtype == k.dtype == v.dtype == cp.float32 and q.shape == k.shape == v.shape == shape
            and q.strides == k.strides == v.strides and not q.flags.c_contiguous
            and q.base is not None and q.base is k.base is v.base):
        delta = k.data.ptr - q.data.ptr
        if delta and v.data.ptr - k.data.ptr == delta and delta % q.itemsize == 0:
            c = cp.ascontiguousarray(cp.lib.stride_tricks.as_strided(q, (3,) + shape, (delta,) + q.strides))
            return c[0], c[1], c[2]
    return tuple(_contig(a, lead, op, n) for a, n in ((q, "q"), (k, "k"), (v, "v")))


def sdpa(q, k, v, attn_mask=None, is_causal=False, scale=None, dropout_p=0.0):
    """Fused flash attention (float32, head dims up to 128). ``saved`` is the (..., L) row
    log-sum-exp. With dropout_p > 0 it takes the unfused path instead: our matmul and
    softmax kernels materialise the (..., L, S) probabilities, and ``saved`` holds them with
    the dropout mask."""
    lead = _check_sdpa(q, k, v, attn_mask, is_causal)
    if dropout_p > 0:
        return _sdpa_unfused(q, k, v, attn_mask, is_causal, scale, dropout_p)
    C = _kernels()
    if max(q.shape[-1], v.shape[-1]) > C.attention_max_head_dim:
        raise ValueError(f"sdpa: the native kernel takes head dims up to {C.attention_max_head_dim}, "
                         f"got q {q.shape} and v {v.shape}")
    qc, kc, vc = _qkv_contig(q, k, v, lead, "sdpa")
    args, mask = _attention_args(q, k, v, attn_mask, is_causal, scale, lead)
    out = cp.empty(lead + (q.shape[-2], v.shape[-1]), dtype=cp.float32)
    lse = cp.empty(lead + (q.shape[-2],), dtype=cp.float32)
    C.attention_forward(**args, q=qc.data.ptr, k=kc.data.ptr, v=vc.data.ptr, out=out.data.ptr,
                        lse=lse.data.ptr, stream=_stream())
    del mask  # queued before the free: CuPy's pool reuses memory in stream order
    # The contiguous q, k, v go to the backward too: a model's q, k, v are usually head-split
    # views, and copying them again there costs three launches per attention call.
    return out, (lse, qc, kc, vc)


def sdpa_backward(gout, q, k, v, out, saved, attn_mask=None, is_causal=False, scale=None,
                  dropout_p=0.0):
    lead = _check_sdpa(q, k, v, attn_mask, is_causal)
    if dropout_p > 0:
        return _sdpa_unfused_backward(gout, q, k, v, saved, scale)
    lse, *contig = saved
    op = "sdpa_backward"
    if len(contig) == 3 and all(c.shape == lead + a.shape[-2:] for c, a in zip(contig, (q, k, v))):
        qc, kc, vc = contig
    else:
        qc, kc, vc = _qkv_contig(q, k, v, lead, op)
    out_shape = lead + (q.shape[-2], v.shape[-1])
    if gout.shape != out_shape or out.shape != out_shape:
        raise ValueError(f"{op}: gout {gout.shape} and out {out.shape} must be {out_shape}")
    gout, out, lse = _f32(gout, op, "gout"), _f32(out, op, "out"), _f32(lse, op, "lse")
    args, mask = _attention_args(q, k, v, attn_mask, is_causal, scale, lead)
    if _glue.stacked_slices((qc, kc, vc)) is not None:
        # q, k, v came from one buffer (_qkv_contig): their gradients go to the three slices of
        # one too, which the split's backward (nn/_functions/heads.py) takes without a copy.
        grads = cp.empty((3,) + qc.shape, dtype=cp.float32)
        gq, gk, gv = grads[0], grads[1], grads[2]
    else:
        gq, gk, gv = cp.empty_like(qc), cp.empty_like(kc), cp.empty_like(vc)
    delta = cp.empty(lse.shape, dtype=cp.float32)
    _kernels().attention_backward(**args, q=qc.data.ptr, k=kc.data.ptr, v=vc.data.ptr, out=out.data.ptr,
                                  lse=lse.data.ptr, gout=gout.data.ptr, delta=delta.data.ptr,
                                  gq=gq.data.ptr, gk=gk.data.ptr, gv=gv.data.ptr, stream=_stream())
    del mask
    return _unbroadcast(gq, q.shape), _unbroadcast(gk, k.shape), _unbroadcast(gv, v.shape)


def _score_bias(attn_mask, is_causal, l, s):
    """The additive (0 / -inf / float) bias of the unfused path, or None."""
    if is_causal:
        return cp.where(cp.tri(l, s, dtype=bool), cp.float32(0), cp.float32(-np.inf))
    if attn_mask is None:
        return None
    if attn_mask.dtype == cp.bool_:
        return cp.where(attn_mask, cp.float32(0), cp.float32(-np.inf))
    return attn_mask.astype(cp.float32, copy=False)


def _sdpa_unfused(q, k, v, attn_mask, is_causal, scale, dropout_p):
    from . import cuda_backend as be  # matmul and dropout masks are the core kernels' side

    q, k, v = (_f32(a, "sdpa", n) for a, n in ((q, "q"), (k, "k"), (v, "v")))
    scores = be.matmul(q, k.swapaxes(-1, -2)) * cp.float32(_scale(q, scale))
    bias = _score_bias(attn_mask, is_causal, q.shape[-2], k.shape[-2])
    if bias is not None:
        scores = scores + bias
    p = softmax(scores, -1)
    keep = be.dropout_mask(p.shape, dropout_p, cp.float32)
    return be.matmul(p * keep, v), (p, keep)


def _sdpa_unfused_backward(gout, q, k, v, saved, scale):
    from . import cuda_backend as be

    q, k, v = (_f32(a, "sdpa_backward", n) for a, n in ((q, "q"), (k, "k"), (v, "v")))
    p, keep = saved
    gv = be.matmul((p * keep).swapaxes(-1, -2), gout)
    gs = softmax_backward(be.matmul(gout, v.swapaxes(-1, -2)) * keep, p, -1) * cp.float32(_scale(q, scale))
    gq = be.matmul(gs, k)
    gk = be.matmul(gs.swapaxes(-1, -2), q)
    return _unbroadcast(gq, q.shape), _unbroadcast(gk, k.shape), _unbroadcast(gv, v.shape)


# --------------------------------------------------------------------------------------
# Optimizer updates (in place)
# --------------------------------------------------------------------------------------

def _state(a, like, op, name):
    """An in-place operand: float32, contiguous (it cannot be copied), the parameter's shape."""
    _cuda_common._f32_view(a, op, name, _NOT_CUPY, _NOT_F32)
    if a.shape != like.shape:
        raise ValueError(f"{op}: {name} {a.shape} does not match param {like.shape}")
    if not a.flags.c_contiguous:
        raise ValueError(f"{op}: {name} must be contiguous to be updated in place (shape {a.shape}, "
                         f"strides {a.strides})")
    return a


def sgd_step(param, grad, buf, lr, momentum, dampening, nesterov, weight_decay, first_step):
    op = "sgd_step"
    _state(param, param, op, "param")
    grad = _f32(grad, op, "grad")
    if grad.shape != param.shape:
        raise ValueError(f"{op}: grad {grad.shape} does not match param {param.shape}")
    if momentum:
        if buf is None:
            raise ValueError(f"{op}: momentum != 0 needs a momentum buffer, got None")
        _state(buf, param, op, "buf")
    _kernels().sgd_step(param.data.ptr, grad.data.ptr, _ptr(buf) if momentum else 0, param.size, float(lr),
                        float(momentum), float(dampening), bool(nesterov), float(weight_decay),
                        bool(first_step), _stream())


def adam_step(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, step, lr, beta1, beta2, eps,
              weight_decay, decoupled, amsgrad):
    op = "adam_step"
    _state(param, param, op, "param")
    grad = _f32(grad, op, "grad")
    if grad.shape != param.shape:
        raise ValueError(f"{op}: grad {grad.shape} does not match param {param.shape}")
    _state(exp_avg, param, op, "exp_avg")
    _state(exp_avg_sq, param, op, "exp_avg_sq")
    if amsgrad:
        if max_exp_avg_sq is None:
            raise ValueError(f"{op}: amsgrad=True needs max_exp_avg_sq, got None")
        _state(max_exp_avg_sq, param, op, "max_exp_avg_sq")
    if step < 1:
        raise ValueError(f"{op}: step is the 1-based count after increment, got {step}")
    _kernels().adam_step(param.data.ptr, grad.data.ptr, exp_avg.data.ptr, exp_avg_sq.data.ptr,
                         _ptr(max_exp_avg_sq) if amsgrad else 0, param.size, int(step), float(lr),
                         float(beta1), float(beta2), float(eps), float(weight_decay), bool(decoupled),
                         bool(amsgrad), _stream())


# Multi-tensor ("foreach") updates: every parameter of a list in one launch per 48 tensors.
# Not part of the backend table (the optimizers use them when every parameter is a float32
# CuPy array on the native backend); the per-tensor *_step functions above stay the contract.

def _lists(op, params, grads, **states):
    """(sizes, pointer lists) after checking every operand as the single-tensor path does."""
    if len(grads) != len(params):
        raise ValueError(f"{op}: {len(params)} params but {len(grads)} grads")
    ptrs = {"params": [], "grads": []}
    for name, arrays in states.items():
        if arrays is not None and len(arrays) != len(params):
            raise ValueError(f"{op}: {len(params)} params but {len(arrays)} {name}")
        ptrs[name] = []
    for i, (p, g) in enumerate(zip(params, grads)):
        _state(p, p, op, f"params[{i}]")
        _cuda_common._f32_view(g, op, f"grads[{i}]", _NOT_CUPY, _NOT_F32)
        if g.shape != p.shape:
            raise ValueError(f"{op}: grads[{i}] {g.shape} does not match params[{i}] {p.shape}")
        if not g.flags.c_contiguous:
            raise ValueError(f"{op}: grads[{i}] must be contiguous (shape {g.shape}, strides {g.strides})")
        ptrs["params"].append(p.data.ptr)
        ptrs["grads"].append(g.data.ptr)
        for name, arrays in states.items():
            if arrays is not None:
                ptrs[name].append(_state(arrays[i], p, op, f"{name}[{i}]").data.ptr)
    return [p.size for p in params], ptrs


def sgd_step_multi(params, grads, bufs, lr, momentum, dampening, nesterov, weight_decay, first_step,
                   maximize=False):
    """sgd_step over lists (bufs None when momentum == 0); grads must be contiguous (the
    caller copies a strided one: this updates in place and returns nothing to copy back)."""
    op = "sgd_step_multi"
    if momentum and bufs is None:
        raise ValueError(f"{op}: momentum != 0 needs momentum buffers, got None")
    sizes, ptrs = _lists(op, params, grads, bufs=bufs if momentum else None)
    _kernels().sgd_step_multi(ptrs["params"], ptrs["grads"], ptrs.get("bufs", []), sizes, float(lr),
                              float(momentum), float(dampening), bool(nesterov), float(weight_decay),
                              bool(first_step), bool(maximize), _stream())


def adam_step_multi(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, step, lr, beta1, beta2, eps,
                    weight_decay, decoupled, amsgrad, maximize=False):
    """adam_step over lists of parameters that share ``step``."""
    op = "adam_step_multi"
    if amsgrad and max_exp_avg_sqs is None:
        raise ValueError(f"{op}: amsgrad=True needs max_exp_avg_sqs, got None")
    if step < 1:
        raise ValueError(f"{op}: step is the 1-based count after increment, got {step}")
    sizes, ptrs = _lists(op, params, grads, exp_avgs=exp_avgs, exp_avg_sqs=exp_avg_sqs,
                         max_exp_avg_sqs=max_exp_avg_sqs if amsgrad else None)
    _kernels().adam_step_multi(ptrs["params"], ptrs["grads"], ptrs["exp_avgs"], ptrs["exp_avg_sqs"],
                               ptrs.get("max_exp_avg_sqs", []), sizes, int(step), float(lr), float(beta1),
                               float(beta2), float(eps), float(weight_decay), bool(decoupled), bool(amsgrad),
                               bool(maximize), _stream())
