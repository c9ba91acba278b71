"""Conv2d."""
from __future__ import annotations

import math

import pyengine as pe

from .. import functional as F
from .. import init
from ..parameter import Parameter
from .module import Module


def _pair(v, name: str) -> tuple[int, int]:
    pair = tuple(v) if isinstance(v, (tuple, list)) else (v, v)
    if len(pair) != 2 or not all(isinstance(i, int) for i in pair):
        raise ValueError(f"Conv2d: {name} must be an int or a pair of ints, got {v!r}")
    return pair


class Conv2d(Module):
    """2-D convolution over NCHW input; weight (out_channels, in_channels // groups, kh, kw).

    ``padding`` may be an int, a pair, "valid" or "same". Only ``padding_mode="zeros"`` is
    supported (PyTorch also has reflect, replicate and circular).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = True, padding_mode: str = "zeros", device=None, dtype=None) -> None:
        super().__init__()
        if groups <= 0:
            raise ValueError(f"Conv2d: groups must be a positive integer, got {groups}")
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"Conv2d: in_channels ({in_channels}) and out_channels ({out_channels}) must "
                             f"both be divisible by groups ({groups})")
        if padding_mode != "zeros":
            raise ValueError(f"Conv2d: padding_mode {padding_mode!r} is not supported; only 'zeros' is")
        if isinstance(padding, str):
            if padding not in ("valid", "same"):
                raise ValueError(f"Conv2d: invalid padding string {padding!r}, should be one of 'valid', 'same'")
            if padding == "same" and _pair(stride, "stride") != (1, 1):
                raise ValueError("Conv2d: padding='same' is not supported for strided convolutions")
        else:
            padding = _pair(padding, "padding")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.stride = _pair(stride, "stride")
        self.padding = padding
        self.dilation = _pair(dilation, "dilation")
        self.groups = groups
        self.padding_mode = padding_mode
        weight_shape = (out_channels, in_channels // groups) + self.kernel_size
        self.weight = Parameter(pe.empty(weight_shape, device=device, dtype=dtype))
        self.register_parameter("bias", Parameter(pe.empty(out_channels, device=device, dtype=dtype)) if bias else None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.weight.shape[1] * self.kernel_size[0] * self.kernel_size[1]
            init._fan_in_uniform_(self.bias, fan_in)

    def forward(self, x):
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s
