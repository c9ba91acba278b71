"""Stateless NN ops under torch.nn.functional's names, signatures and defaults.

Each function checks its arguments (raising an error that names the op, the shapes, the
dtype or the parameter at fault), normalises them (ints to 2-tuples, 'same' padding to
numbers) and applies one autograd Function from ``pyengine.nn._functions``, which computes
through the tensor's backend. Where behaviour differs from PyTorch the docstring says so.
"""
from __future__ import annotations

import math
import warnings

from pyengine.autograd import is_grad_enabled
from pyengine.backend import get_backend
from pyengine.backend._glue import check_classes, first_out_of_range
from pyengine.tensor import Tensor

from ._functions.activation import Activation, Elu
from ._functions.attention import RepeatHeads, ScaledDotProductAttention
from ._functions.conv import Conv2d
from ._functions.dropout_embedding import AlphaDropout, Dropout, Embedding
from ._functions.heads import SplitHeads
from ._functions.linear import Linear
from ._functions.loss import BCELoss, BCEWithLogitsLoss, L1Loss, MSELoss
from ._functions.norm import BatchNorm, LayerNorm
from ._functions.pad import ConstantPad, IndexPad
from ._functions.pool import AdaptiveAvgPool2d, AvgPool2d, MaxPool2d
from ._functions.softmax_loss import CrossEntropy, NLLLoss, Softmax

__all__ = [
    "linear", "linear_activation", "conv2d", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d",
    "relu", "leaky_relu", "gelu", "sigmoid", "tanh", "selu", "elu",
    "softmax", "log_softmax", "cross_entropy", "nll_loss", "mse_loss", "l1_loss",
    "binary_cross_entropy", "binary_cross_entropy_with_logits",
    "layer_norm", "batch_norm", "dropout", "alpha_dropout", "embedding",
    "scaled_dot_product_attention", "split_heads", "one_hot", "pad",
]


# ---------------------------------------------------------------------------- checks

def _tensor(op, name, t):
    if not isinstance(t, Tensor):
        raise TypeError(f"{op}: {name} must be a Tensor, got {type(t).__name__}")
    return t


def _float(op, name, t):
    _tensor(op, name, t)
    if t.dtype.np.kind != "f":
        raise TypeError(f"{op}: {name} must be a floating-point tensor, got dtype {t.dtype}")
    return t


def _integer(op, name, t):
    _tensor(op, name, t)
    if t.dtype.np.kind not in "iu":
        raise TypeError(f"{op}: {name} must be an integer (int64) tensor, got dtype {t.dtype}")
    return t


def _same_dtype(op, a_name, a, b_name, b):
    if a.dtype != b.dtype:
        raise TypeError(f"{op}: {a_name} has dtype {a.dtype} but {b_name} has dtype {b.dtype}")


def _rank(op, t, ranks, layout):
    if t.ndim not in ranks:
        want = " or ".join(f"{r}-D" for r in ranks)
        raise ValueError(f"{op} expected {want} input {layout}, got shape {tuple(t.shape)}")


def _pair(op, name, v, minimum=None):
    """An int or a pair of ints -> (h, w), checked against ``minimum``."""
    if isinstance(v, int):
        v = (v, v)
    v = tuple(v)
    if len(v) != 2 or not all(isinstance(i, int) for i in v):
        raise ValueError(f"{op}: {name} must be an int or a pair of ints, got {v!r}")
    if minimum is not None and min(v) < minimum:
        raise ValueError(f"{op}: {name} must be >= {minimum}, got {v}")
    return v


def _reduction(op, reduction, size_average=None, reduce=None):
    # The deprecated size_average/reduce pair maps onto reduction as in PyTorch.
    if size_average is not None or reduce is not None:
        size_average = True if size_average is None else size_average
        reduce = True if reduce is None else reduce
        reduction = ("mean" if size_average else "sum") if reduce else "none"
    if reduction not in ("none", "mean", "sum"):
        raise ValueError(f"{op}: {reduction!r} is not a valid value for reduction "
                         "(expected 'none', 'mean' or 'sum')")
    return reduction


def _constant(op, name, t, input):
    """A weight-like argument that we do not differentiate: its array, or None.

    It reaches the Function as a plain array, so autograd's device check never sees it:
    check here that it lives with ``input``.
    """
    if t is None:
        return None
    _tensor(op, name, t)
    if t.device != input.device:
        raise RuntimeError(f"{op}: expected all tensors on one device, but input is on "
                           f"{input.device} and {name} on {t.device}")
    if t.requires_grad and is_grad_enabled():
        raise NotImplementedError(f"{op}: gradient with respect to {name} is not supported; "
                                  f"pass {name}.detach()")
    return t.data


# ---------------------------------------------------------------------------- linear, conv

def _check_bias(op, bias, weight, input):
    if bias is None:
        return
    _float(op, "bias", bias)
    if tuple(bias.shape) != (weight.shape[0],):
        raise ValueError(f"{op}: bias of shape {tuple(bias.shape)} does not match weight of "
                         f"shape {tuple(weight.shape)} (need ({weight.shape[0]},))")
    _same_dtype(op, "input", input, "bias", bias)


def _check_linear(op, input, weight, bias):
    _float(op, "input", input)
    _float(op, "weight", weight)
    if input.ndim < 1 or weight.ndim != 2 or input.shape[-1] != weight.shape[1]:
        raise ValueError(f"{op}: input of shape {tuple(input.shape)} and weight of shape "
                         f"{tuple(weight.shape)} cannot be multiplied (need input (..., "
                         f"in) and weight (out, in))")
    _same_dtype(op, "input", input, "weight", weight)
    _check_bias(op, bias, weight, input)


def linear(input, weight, bias=None):
    """y = input @ weight.T + bias, input (..., in), weight (out, in), bias (out,)."""
    _check_linear("linear", input, weight, bias)
    return Linear.apply(input, weight, bias, None)


def linear_activation(input, weight, bias=None, activation="relu"):
    """activation(linear(input, weight, bias)) as one op, so a GPU backend can fuse the bias
    and the activation into the GEMM epilogue. Not in PyTorch: a pyengine extension.
    activation is None, 'relu', 'gelu' (exact) or 'gelu_tanh'."""
    op = "linear_activation"
    if activation not in (None, "relu", "gelu", "gelu_tanh"):
        raise ValueError(f"{op}: activation must be None, 'relu', 'gelu' or 'gelu_tanh', "
                         f"got {activation!r}")
    _check_linear(op, input, weight, bias)
    return Linear.apply(input, weight, bias, activation)


def _same_padding(kernel, dilation):
    """Per dim (before, after) giving 'same' output at stride 1; odd totals pad after more."""
    totals = [d * (k - 1) for k, d in zip(kernel, dilation)]
    return [(t // 2, t - t // 2) for t in totals]


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D cross-correlation over NCHW input (or unbatched CHW), PyTorch's conv2d.

    padding may be an int, a pair, 'valid' (none) or 'same' (stride 1 only; an odd total
    padding puts the extra row/column at the bottom/right, as PyTorch).
    """
    op = "conv2d"
    _float(op, "input", input)
    _float(op, "weight", weight)
    _rank(op, input, (3, 4), "(N, C, H, W)")
    if weight.ndim != 4:
        raise ValueError(f"{op}: weight must be 4-D (out_channels, in_channels/groups, kH, "
                         f"kW), got shape {tuple(weight.shape)}")
    _same_dtype(op, "input", input, "weight", weight)
    if not isinstance(groups, int) or groups < 1:
        raise ValueError(f"{op}: groups must be a positive int, got {groups!r}")
    unbatched = input.ndim == 3
    if unbatched:
        input = input.unsqueeze(0)
    c_in, c_out = input.shape[1], weight.shape[0]
    if c_in != weight.shape[1] * groups:
        raise ValueError(f"{op}: input of shape {tuple(input.shape)} has {c_in} channels but "
                         f"weight of shape {tuple(weight.shape)} with groups={groups} expects "
                         f"{weight.shape[1] * groups}")
    if c_out % groups:
        raise ValueError(f"{op}: out_channels {c_out} (weight {tuple(weight.shape)}) is not "
                         f"divisible by groups={groups}")
    _check_bias(op, bias, weight, input)
    stride = _pair(op, "stride", stride, 1)
    dilation = _pair(op, "dilation", dilation, 1)
    kernel = tuple(weight.shape[2:])
    if isinstance(padding, str):
        if padding == "valid":
            padding = (0, 0)
        elif padding == "same":
            if stride != (1, 1):
                raise ValueError(f"{op}: padding='same' is not supported for strided "
                                 f"convolutions (stride={stride})")
            (top, bottom), (left, right) = _same_padding(kernel, dilation)
            if (top, left) != (bottom, right):
                input = ConstantPad.apply(input, ((0, 0), (0, 0), (0, bottom - top),
                                                  (0, right - left)), 0.0)
            padding = (top, left)
        else:
            raise ValueError(f"{op}: padding must be 'valid', 'same', an int or a pair, "
                             f"got {padding!r}")
    padding = _pair(op, "padding", padding, 0)
    for i, axis in enumerate("HW"):
        span = dilation[i] * (kernel[i] - 1) + 1
        if input.shape[2 + i] + 2 * padding[i] < span:
            raise ValueError(f"{op}: input of shape {tuple(input.shape)} padded by {padding} "
                             f"is smaller than the dilated kernel ({span} along {axis}) of "
                             f"weight {tuple(weight.shape)}")
    y = Conv2d.apply(input, weight, bias, stride, padding, dilation, groups)
    return y.squeeze(0) if unbatched else y


# ---------------------------------------------------------------------------- pooling

def _pool_args(op, input, kernel_size, stride, padding, dilation):
    _float(op, "input", input)
    _rank(op, input, (3, 4), "(N, C, H, W)")
    kernel = _pair(op, "kernel_size", kernel_size, 1)
    stride = kernel if stride is None or stride == [] else _pair(op, "stride", stride, 1)
    padding = _pair(op, "padding", padding, 0)
    dilation = _pair(op, "dilation", dilation, 1)
    if any(p > k // 2 for k, p in zip(kernel, padding)):
        # PyTorch's rule: half the kernel size itself, whatever the dilation.
        raise ValueError(f"{op}: padding {padding} should be at most half of kernel_size "
                         f"{kernel}")
    return kernel, stride, padding, dilation


def _pool_out(n, k, s, p, d, ceil_mode):
    span = d * (k - 1) + 1
    out = (n + 2 * p - span + ((s - 1) if ceil_mode else 0)) // s + 1
    # PyTorch drops a last window that would start entirely inside the right padding.
    if ceil_mode and (out - 1) * s >= n + p:
        out -= 1
    return out


def _check_pool_size(op, input, kernel, stride, padding, dilation, ceil_mode):
    for i in range(2):
        if _pool_out(input.shape[-2 + i], kernel[i], stride[i], padding[i], dilation[i],
                     ceil_mode) < 1:
            raise ValueError(f"{op}: input of shape {tuple(input.shape)} is too small for "
                             f"kernel_size={kernel}, stride={stride}, padding={padding}, "
                             f"dilation={dilation}")


def _batched(input):
    """Pool kernels take NCHW; an unbatched CHW input gets a batch dim of 1 and loses it after."""
    return (input.unsqueeze(0), True) if input.ndim == 3 else (input, False)


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """Max over windows; with return_indices also the flat H*W index of each max (int64)."""
    op = "max_pool2d"
    kernel, stride, padding, dilation = _pool_args(op, input, kernel_size, stride, padding,
                                                   dilation)
    _check_pool_size(op, input, kernel, stride, padding, dilation, ceil_mode)
    x, unbatched = _batched(input)
    y, indices = MaxPool2d.apply(x, kernel, stride, padding, dilation, bool(ceil_mode))
    if unbatched:
        y, indices = y.squeeze(0), indices.squeeze(0)
    return (y, indices) if return_indices else y


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, divisor_override=None):
    op = "avg_pool2d"
    kernel, stride, padding, _ = _pool_args(op, input, kernel_size, stride, padding, 1)
    if divisor_override is not None and (not isinstance(divisor_override, int)
                                         or divisor_override <= 0):
        raise ValueError(f"{op}: divisor_override must be a positive int, got "
                         f"{divisor_override!r}")
    _check_pool_size(op, input, kernel, stride, padding, (1, 1), ceil_mode)
    x, unbatched = _batched(input)
    y = AvgPool2d.apply(x, kernel, stride, padding, bool(ceil_mode), bool(count_include_pad),
                        divisor_override)
    return y.squeeze(0) if unbatched else y


def adaptive_avg_pool2d(input, output_size):
    """Average over PyTorch's adaptive windows; output_size an int, a pair, or None entries
    (None keeps that input size)."""
    op = "adaptive_avg_pool2d"
    _float(op, "input", input)
    _rank(op, input, (3, 4), "(N, C, H, W)")
    if output_size is None or isinstance(output_size, int):
        output_size = (output_size, output_size)
    size = tuple(input.shape[-2 + i] if s is None else s for i, s in enumerate(output_size))
    if len(size) != 2 or not all(isinstance(s, int) and s >= 1 for s in size):
        raise ValueError(f"{op}: output_size must be positive ints (or None), got "
                         f"{output_size!r}")
    return AdaptiveAvgPool2d.apply(input, size)


# ---------------------------------------------------------------------------- activations
# inplace=True is accepted for PyTorch compatibility but computes out of place: the result
# is a new tensor and the input is left unchanged (in-place ops would break autograd here).

def relu(input, inplace=False):
    return Activation.apply(_float("relu", "input", input), "relu", None)


def leaky_relu(input, negative_slope=0.01, inplace=False):
    return Activation.apply(_float("leaky_relu", "input", input), "leaky_relu",
                            float(negative_slope))


def gelu(input, approximate="none"):
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return Activation.apply(_float("gelu", "input", input), "gelu", approximate)


def sigmoid(input):
    return Activation.apply(_float("sigmoid", "input", input), "sigmoid", None)


def tanh(input):
    return Activation.apply(_float("tanh", "input", input), "tanh", None)


def selu(input, inplace=False):
    return Activation.apply(_float("selu", "input", input), "selu", None)


def elu(input, alpha=1.0, inplace=False):
    return Elu.apply(_float("elu", "input", input), float(alpha))


# ---------------------------------------------------------------------------- softmax

def _softmax_dim(op, input, dim):
    if dim is None:
        # PyTorch's deprecated implicit choice.
        dim = 0 if input.ndim in (0, 1, 3) else 1
        warnings.warn(f"Implicit dimension choice for {op} has been deprecated; pass dim=",
                      stacklevel=3)
    if not isinstance(dim, int) or not -max(input.ndim, 1) <= dim < max(input.ndim, 1):
        raise IndexError(f"{op}: dim {dim!r} is out of range for input of shape "
                         f"{tuple(input.shape)}")
    return dim % input.ndim if input.ndim else 0


def _softmax(op, input, dim, dtype, log):
    if dtype is not None:
        input = _tensor(op, "input", input).to(dtype)
    _float(op, "input", input)
    return Softmax.apply(input, _softmax_dim(op, input, dim), log)


def softmax(input, dim=None, _stacklevel=3, dtype=None):
    return _softmax("softmax", input, dim, dtype, log=False)


def log_softmax(input, dim=None, _stacklevel=3, dtype=None):
    return _softmax("log_softmax", input, dim, dtype, log=True)


# ---------------------------------------------------------------------------- class losses

def _class_target(op, input, target, ignore_index, classes=True):
    """Check (N, C, d1, ...) input against (N, d1, ...) class targets, or (C,) against ();
    ``classes``: also that every target is in [0, C) or equals ignore_index (one reduction,
    on a GPU one device sync), else name the first bad one."""
    _float(op, "input", input)
    _integer(op, "target", target)
    expected = () if input.ndim == 1 else (input.shape[0],) + tuple(input.shape[2:])
    if input.ndim == 0 or tuple(target.shape) != expected:
        raise ValueError(f"{op}: input of shape {tuple(input.shape)} needs class-index target "
                         f"of shape {expected} (N, d1, ...), got {tuple(target.shape)}")
    n_classes = input.shape[0 if input.ndim == 1 else 1]
    if classes:
        check_classes(target.data, n_classes, ignore_index, op)
    return n_classes


def _class_weight(op, weight, n_classes, input):
    w = _constant(op, "weight", weight, input)
    if w is not None and (tuple(weight.shape) != (n_classes,) or weight.dtype != input.dtype):
        raise ValueError(f"{op}: weight must be a {input.dtype} tensor of shape ({n_classes},) "
                         f"for input of shape {tuple(input.shape)}, got {weight.dtype} "
                         f"{tuple(weight.shape)}")
    return w


def cross_entropy(input, target, weight=None, size_average=None, ignore_index=-100,
                  reduce=None, reduction="mean", label_smoothing=0.0):
    """Cross-entropy of logits (N, C, d1, ...) or (C,) against class indices or probabilities.

    Class indices: rows whose target equals ignore_index contribute nothing, and 'mean'
    divides by the number (with ``weight``: the summed weight) of the other rows, as PyTorch.
    Probability targets (a float tensor shaped like input) use the plain mean over rows.
    """
    op = "cross_entropy"
    reduction = _reduction(op, reduction, size_average, reduce)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{op}: label_smoothing must be in [0, 1], got {label_smoothing}")
    _tensor(op, "target", target)
    if target.dtype.np.kind == "f":
        return _soft_cross_entropy(input, target, weight, reduction, label_smoothing)
    # Without a weight the backend's cross_entropy checks the classes (every backend does,
    # with the same message): checking here too would cost a second device sync per step.
    n_classes = _class_target(op, input, target, ignore_index, classes=weight is not None)
    w = _class_weight(op, weight, n_classes, input)
    if w is None:
        return CrossEntropy.apply(input, target, ignore_index, float(label_smoothing), reduction)
    dim = 0 if input.ndim == 1 else 1
    return NLLLoss.apply(log_softmax(input, dim), target, w, ignore_index,
                         float(label_smoothing), reduction)


def _soft_cross_entropy(input, target, weight, reduction, label_smoothing):
    op = "cross_entropy"
    _float(op, "input", input)
    if tuple(target.shape) != tuple(input.shape):
        raise ValueError(f"{op}: probability target of shape {tuple(target.shape)} must match "
                         f"input of shape {tuple(input.shape)}")
    dim = 0 if input.ndim == 1 else 1
    n_classes = input.shape[dim]
    if label_smoothing:
        target = target * (1 - label_smoothing) + label_smoothing / n_classes
    if weight is not None:
        _class_weight(op, weight, n_classes, input)
        shape = [1] * input.ndim
        shape[dim] = n_classes
        target = target * weight.detach().reshape(shape)
    loss = -(log_softmax(input, dim) * target).sum(dim=dim)
    if reduction == "mean":
        return loss.mean()
    return loss.sum() if reduction == "sum" else loss


def nll_loss(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None,
             reduction="mean"):
    """Negative log-likelihood of log-probabilities (N, C, d1, ...) at class indices."""
    op = "nll_loss"
    reduction = _reduction(op, reduction, size_average, reduce)
    n_classes = _class_target(op, input, target, ignore_index)
    w = _class_weight(op, weight, n_classes, input)
    return NLLLoss.apply(input, target, w, ignore_index, 0.0, reduction)


# ---------------------------------------------------------------------------- other losses

def _pair_loss_args(op, input, target):
    _float(op, "input", input)
    _float(op, "target", target)
    if tuple(input.shape) != tuple(target.shape):
        # PyTorch broadcasts here with a warning that the result is likely wrong; we refuse.
        raise ValueError(f"{op}: target size {tuple(target.shape)} is different to the "
                         f"input size {tuple(input.shape)}")
    _same_dtype(op, "input", input, "target", target)


def _pointwise_loss(op, fn, input, target, size_average, reduce, reduction, weight):
    _pair_loss_args(op, input, target)
    w = _constant(op, "weight", weight, input)
    if w is not None:
        if tuple(weight.shape) != tuple(input.shape):
            raise ValueError(f"{op}: weight of shape {tuple(weight.shape)} must have the size "
                             f"of input {tuple(input.shape)}")
        _same_dtype(op, "input", input, "weight", weight)
    return fn.apply(input, target, w, _reduction(op, reduction, size_average, reduce))


def mse_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None):
    """Mean squared error; with weight, 'mean' divides by weight.sum(), as PyTorch.
    Unlike PyTorch, input and target of different shapes raise instead of broadcasting."""
    return _pointwise_loss("mse_loss", MSELoss, input, target, size_average, reduce,
                           reduction, weight)


def l1_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None):
    """Mean absolute error; weight and shapes as mse_loss."""
    return _pointwise_loss("l1_loss", L1Loss, input, target, size_average, reduce, reduction,
                           weight)


def _broadcast_weight(op, name, weight, input):
    """The array of an optional weight that must broadcast to input's shape without growing it."""
    w = _constant(op, name, weight, input)
    if w is None:
        return None
    shape = tuple(input.shape)
    ws = tuple(weight.shape)
    ok = len(ws) <= len(shape) and all(a in (1, b) for a, b in zip(ws[::-1], shape[::-1]))
    if not ok:
        raise ValueError(f"{op}: {name} of shape {ws} does not broadcast to input of shape "
                         f"{shape}")
    _same_dtype(op, "input", input, name, weight)
    return w


def binary_cross_entropy(input, target, weight=None, size_average=None, reduce=None,
                         reduction="mean"):
    """BCE of probabilities in [0, 1]; log terms are clamped at -100, as PyTorch."""
    op = "binary_cross_entropy"
    _pair_loss_args(op, input, target)
    p = input.data
    if bool(((p < 0) | (p > 1)).any()):
        raise ValueError(f"{op}: all elements of input should be between 0 and 1")
    w = _broadcast_weight(op, "weight", weight, input)
    return BCELoss.apply(input, target, w, _reduction(op, reduction, size_average, reduce))


def binary_cross_entropy_with_logits(input, target, weight=None, size_average=None,
                                     reduce=None, reduction="mean", pos_weight=None):
    """BCE of logits, computed stably; pos_weight scales the positive term (broadcast over
    the last dim, one value per class)."""
    op = "binary_cross_entropy_with_logits"
    _pair_loss_args(op, input, target)
    w = _broadcast_weight(op, "weight", weight, input)
    pw = _broadcast_weight(op, "pos_weight", pos_weight, input)
    return BCEWithLogitsLoss.apply(input, target, w, pw,
                                   _reduction(op, reduction, size_average, reduce))


# ---------------------------------------------------------------------------- normalisation

def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    op = "layer_norm"
    _float(op, "input", input)
    if isinstance(normalized_shape, int):
        normalized_shape = (normalized_shape,)
    normalized_shape = tuple(normalized_shape)
    n = len(normalized_shape)
    if n == 0 or input.ndim < n or tuple(input.shape[input.ndim - n:]) != normalized_shape:
        raise ValueError(f"{op}: normalized_shape {normalized_shape} does not match the "
                         f"trailing dims of input of shape {tuple(input.shape)}")
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None:
            _float(op, name, t)
            if tuple(t.shape) != normalized_shape:
                raise ValueError(f"{op}: {name} of shape {tuple(t.shape)} must equal "
                                 f"normalized_shape {normalized_shape}")
            _same_dtype(op, "input", input, name, t)
    return LayerNorm.apply(input, weight, bias, n, float(eps))


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5):
    """Normalise over every dim but 1. In training, running_mean/var (if given) are updated in
    place with the unbiased batch variance; in eval they are used as the statistics."""
    op = "batch_norm"
    _float(op, "input", input)
    if input.ndim < 2:
        raise ValueError(f"{op} expected input of at least 2 dims (N, C, ...), got shape "
                         f"{tuple(input.shape)}")
    c = input.shape[1]
    for name, t in (("running_mean", running_mean), ("running_var", running_var),
                    ("weight", weight), ("bias", bias)):
        if t is not None and tuple(_float(op, name, t).shape) != (c,):
            raise ValueError(f"{op}: {name} of shape {tuple(t.shape)} does not match the "
                             f"{c} channels of input of shape {tuple(input.shape)}")
    if not training and (running_mean is None or running_var is None):
        raise ValueError(f"{op}: running_mean and running_var are required when "
                         "training=False")
    if training:
        if math.prod(input.shape) // c <= 1:
            raise ValueError(f"{op}: expected more than 1 value per channel when training, "
                             f"got input of shape {tuple(input.shape)}")
    if not isinstance(momentum, (int, float)):
        # nn.BatchNorm turns momentum=None (cumulative average) into a number before calling.
        raise TypeError(f"{op}: momentum must be a float, got {type(momentum).__name__}")
    rm = _constant(op, "running_mean", running_mean, input)
    rv = _constant(op, "running_var", running_var, input)
    return BatchNorm.apply(input, weight, bias, rm, rv, bool(training),
                           float(momentum), float(eps))


# ---------------------------------------------------------------------------- dropout, embedding

def _dropout_p(op, p):
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{op}: dropout probability has to be between 0 and 1, but got {p}")
    return float(p)


def dropout(input, p=0.5, training=True, inplace=False):
    """Zero each element with probability p and scale the rest by 1/(1-p).
    inplace=True computes out of place (see the activations' note)."""
    p = _dropout_p("dropout", p)
    _float("dropout", "input", input)
    if not training or p == 0.0:
        return input
    return Dropout.apply(input, p)


def alpha_dropout(input, p=0.5, training=False, inplace=False):
    """Dropout for SELU networks: dropped units take SELU's saturation value and an affine
    correction keeps zero mean and unit variance."""
    p = _dropout_p("alpha_dropout", p)
    _float("alpha_dropout", "input", input)
    if not training or p == 0.0:
        return input
    if p == 1.0:
        return input * 0.0
    return AlphaDropout.apply(input, p)


def embedding(input, weight, padding_idx=None, max_norm=None, norm_type=2.0,
              scale_grad_by_freq=False, sparse=False):
    """Rows of weight (num_embeddings, dim) at integer indices of any shape; the row at
    padding_idx receives no gradient."""
    op = "embedding"
    _integer(op, "input (indices)", input)
    _float(op, "weight", weight)
    if weight.ndim != 2:
        raise ValueError(f"{op}: weight must be 2-D (num_embeddings, embedding_dim), got shape "
                         f"{tuple(weight.shape)}")
    if max_norm is not None or scale_grad_by_freq or sparse:
        raise NotImplementedError(f"{op}: max_norm, scale_grad_by_freq and sparse are not "
                                  "supported")
    num = weight.shape[0]
    if padding_idx is not None:
        if not -num <= padding_idx < num:
            raise ValueError(f"{op}: padding_idx {padding_idx} must be within num_embeddings "
                             f"{num}")
        padding_idx %= num
    value = first_out_of_range(input.data, num)  # one reduction; on a GPU, one device sync
    if value is not None:
        raise IndexError(f"{op}: index {value} is out of range for weight of shape "
                         f"{tuple(weight.shape)} (num_embeddings={num})")
    return Embedding.apply(input, weight, padding_idx)


# ---------------------------------------------------------------------------- attention

def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0,
                                 is_causal=False, scale=None, enable_gqa=False):
    """softmax(query @ key^T * scale + mask) @ value over (..., L, E) / (..., S, E) /
    (..., S, Ev). attn_mask: bool (True = may attend) or additive float, broadcastable to
    (..., L, S); is_causal masks keys after each query (top-left aligned, as PyTorch).
    The leading (batch, head) dims of query, key and value must be equal (no broadcasting),
    except that enable_gqa lets key/value have fewer heads (dim -3) dividing query's, each
    serving a group of query heads. attn_mask receives no gradient."""
    op = "scaled_dot_product_attention"
    for name, t in (("query", query), ("key", key), ("value", value)):
        _float(op, name, t)
        if t.ndim < 2:
            raise ValueError(f"{op}: {name} must be at least 2-D (..., seq, dim), got shape "
                             f"{tuple(t.shape)}")
    _same_dtype(op, "query", query, "key", key)
    _same_dtype(op, "query", query, "value", value)
    qs, ks, vs = tuple(query.shape), tuple(key.shape), tuple(value.shape)
    grouped = (enable_gqa and query.ndim >= 3 and key.ndim == value.ndim == query.ndim
               and ks[:-2] == vs[:-2] and ks[-3] > 0 and qs[-3] % ks[-3] == 0)
    if grouped:
        # Grouped-query attention: each key/value head serves qs[-3] // ks[-3] query heads.
        repeat = qs[-3] // ks[-3]
        if repeat > 1:
            key, value = RepeatHeads.apply(key, repeat), RepeatHeads.apply(value, repeat)
            ks, vs = tuple(key.shape), tuple(value.shape)
    if not (qs[:-2] == ks[:-2] == vs[:-2]) or qs[-1] != ks[-1] or ks[-2] != vs[-2]:
        gqa = (" (with enable_gqa, key/value heads must divide query heads)" if enable_gqa
               else "")
        raise ValueError(f"{op}: query {qs}, key {ks} and value {vs} must be (..., L, E), "
                         f"(..., S, E) and (..., S, Ev) with equal leading dims{gqa}")
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"{op}: dropout_p must be in [0, 1), got {dropout_p}")
    mask = None
    if attn_mask is not None:
        if is_causal:
            raise ValueError(f"{op}: attn_mask should not be set when is_causal=True")
        _tensor(op, "attn_mask", attn_mask)
        if attn_mask.dtype.np.kind != "b" and attn_mask.dtype != query.dtype:
            raise TypeError(f"{op}: attn_mask must be bool or the query's dtype "
                            f"{query.dtype}, got {attn_mask.dtype}")
        target = qs[:-2] + (qs[-2], ks[-2])
        ms = tuple(attn_mask.shape)
        if len(ms) > len(target) or not all(a in (1, b) for a, b in zip(ms[::-1], target[::-1])):
            raise ValueError(f"{op}: attn_mask of shape {ms} does not broadcast to the "
                             f"attention weights' shape {target}")
        mask = _constant(op, "attn_mask", attn_mask, query)
    return ScaledDotProductAttention.apply(query, key, value, mask, bool(is_causal),
                                           None if scale is None else float(scale),
                                           float(dropout_p))


def split_heads(qkv, num_heads):
    """q, k, v of shape (B, H, T, D) from a fused projection ``qkv`` (B, T, 3 * H * D) whose
    last dim holds q, k and v one after the other, each as H heads of D: the same as
    ``qkv.reshape(B, T, 3, H, D).permute(2, 0, 3, 1, 4)`` indexed at 0, 1 and 2, with a
    backward that writes the three gradients into one buffer instead of summing three
    zero-padded ones. The outputs share qkv's memory. Not in PyTorch: a pyengine extension."""
    op = "split_heads"
    _float(op, "qkv", qkv)
    if not isinstance(num_heads, int) or num_heads < 1:
        raise ValueError(f"{op}: num_heads must be a positive int, got {num_heads!r}")
    if qkv.ndim != 3 or qkv.shape[-1] % (3 * num_heads):
        raise ValueError(f"{op}: expected qkv of shape (B, T, 3 * num_heads * head_dim) with "
                         f"num_heads={num_heads}, got {tuple(qkv.shape)}")
    return SplitHeads.apply(qkv, num_heads)


# ---------------------------------------------------------------------------- one_hot, pad

def one_hot(tensor, num_classes=-1):
    """int64 tensor of shape (*tensor.shape, num_classes); -1 means max(tensor) + 1."""
    op = "one_hot"
    _integer(op, "tensor", tensor)
    xp = get_backend(tensor.device).xp
    idx = tensor.data
    if idx.size and bool((idx < 0).any()):
        raise ValueError(f"{op}: class values must be non-negative, got "
                         f"{int(idx[idx < 0].reshape(-1)[0])}")
    if num_classes == -1:
        if not idx.size:
            raise ValueError(f"{op}: cannot infer num_classes from an empty tensor")
        num_classes = int(idx.max()) + 1
    elif idx.size and bool((idx >= num_classes).any()):
        raise ValueError(f"{op}: class values must be smaller than num_classes "
                         f"{num_classes}, got {int(idx[idx >= num_classes].reshape(-1)[0])}")
    out = (idx[..., None] == xp.arange(num_classes)).astype(tensor.dtype.np)
    return Tensor._make(out, tensor.device)


_INDEX_PAD_LIMIT = {"reflect": 1, "replicate": None, "circular": 0}


def pad(input, pad, mode="constant", value=None):
    """Pad the last len(pad)//2 dims: pad = (last_before, last_after, prev_before, ...).

    mode 'constant' fills with value (0 by default) and crops where an amount is negative;
    'reflect' mirrors without repeating the edge, 'replicate' repeats it, 'circular' wraps.
    """
    op = "pad"
    _tensor(op, "input", input)
    pad = tuple(pad)
    if len(pad) % 2 or len(pad) > 2 * input.ndim or not all(isinstance(p, int) for p in pad):
        raise ValueError(f"{op}: pad must be an even number of ints, at most 2 per dim of "
                         f"input of shape {tuple(input.shape)}, got {pad}")
    n = len(pad) // 2
    pairs = [(0, 0)] * (input.ndim - n) + [(pad[2 * i], pad[2 * i + 1]) for i in reversed(range(n))]
    if mode == "constant":
        for size, (lo, hi), axis in zip(input.shape, pairs, range(input.ndim)):
            if size + lo + hi < 0:
                raise ValueError(f"{op}: padding {pad} makes dim {axis} of input of shape "
                                 f"{tuple(input.shape)} negative")
        return ConstantPad.apply(input, tuple(pairs), 0.0 if value is None else value)
    if mode not in _INDEX_PAD_LIMIT:
        raise ValueError(f"{op}: mode must be 'constant', 'reflect', 'replicate' or "
                         f"'circular', got {mode!r}")
    if value not in (None, 0, 0.0):
        raise ValueError(f"{op}: value is only used with mode='constant', got {value!r}")
    if min(pad, default=0) < 0:
        raise ValueError(f"{op}: negative padding {pad} is only supported in mode='constant'")
    slack = _INDEX_PAD_LIMIT[mode]
    for size, (lo, hi), axis in zip(input.shape, pairs, range(input.ndim)):
        if slack is not None and max(lo, hi) > size - slack:
            raise ValueError(f"{op}: {mode} padding {(lo, hi)} of dim {axis} must be at most "
                             f"{size - slack} for input of shape {tuple(input.shape)}")
        if size == 0 and (lo or hi):
            raise ValueError(f"{op}: cannot {mode}-pad the empty dim {axis} of input of shape "
                             f"{tuple(input.shape)}")
    return IndexPad.apply(input, tuple(pairs), mode)
