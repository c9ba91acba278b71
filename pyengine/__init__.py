"""pyengine: a teaching tensor engine with PyTorch's API.

``import pyengine as pe`` gives tensors, autograd and device control; ``pe.nn``, ``pe.optim``,
``pe.data`` and ``pe.models`` import on first use, so a broken or missing one of them never
breaks ``import pyengine``.
"""
from __future__ import annotations

import importlib

from . import autograd, backends, cuda
from .cuda import device
from .autograd import enable_grad, inference_mode, is_grad_enabled, no_grad, set_grad_enabled
from .ops.creation import (arange, empty, empty_like, from_numpy, full, full_like, linspace, manual_seed,
                           ones, ones_like, rand, rand_like, randint, randn, randn_like, tensor, zeros,
                           zeros_like)
from .ops.dtypes import bool_ as bool
from .ops.dtypes import dtype, float32, float64, int64
from .serialization import load, save
from .tensor import Tensor, cat, matmul, maximum, minimum, stack, tril, triu, where

float = float32
double = float64
long = int64

# Function forms of Tensor methods, as torch.exp(x) is x.exp().
exp, log, sqrt, abs, clamp = Tensor.exp, Tensor.log, Tensor.sqrt, Tensor.abs, Tensor.clamp
split, chunk, unbind = Tensor.split, Tensor.chunk, Tensor.unbind
sum, mean, var, std = Tensor.sum, Tensor.mean, Tensor.var, Tensor.std
amax, amin, argmax, argmin = Tensor.amax, Tensor.amin, Tensor.argmax, Tensor.argmin
reshape, flatten, squeeze, unsqueeze = Tensor.reshape, Tensor.flatten, Tensor.squeeze, Tensor.unsqueeze
transpose, permute, masked_fill, clone = Tensor.transpose, Tensor.permute, Tensor.masked_fill, Tensor.clone
max, min, isnan, isfinite = Tensor.max, Tensor.min, Tensor.isnan, Tensor.isfinite
is_floating_point, numel = Tensor.is_floating_point, Tensor.numel
sigmoid, tanh, relu, pow = Tensor.sigmoid, Tensor.tanh, Tensor.relu, Tensor.pow
softmax, log_softmax = Tensor.softmax, Tensor.log_softmax

_LAZY = ("nn", "optim", "data", "models")

__version__ = "0.1.0"


def __getattr__(name):
    if name in _LAZY:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
