"""A plain multilayer perceptron."""
from __future__ import annotations

from typing import Sequence

from pyengine import nn

# The activations an MLP can be built with, by the name the CLI and get_model accept.
ACTIVATIONS = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "selu": nn.SELU,
}


def activation_module(name: str) -> nn.Module:
    """A fresh activation module from its name (see ``ACTIVATIONS``)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; expected one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


class MLP(nn.Sequential):
    """Linear layers of widths ``sizes`` (input first, output last) with ``activation``
    between them and none after the last, so the output is logits or a regression value.

    It is an ``nn.Sequential``, so its ``state_dict`` keys are those of the equivalent
    PyTorch ``nn.Sequential`` (``0.weight``, ``0.bias``, ``2.weight``, ...).
    """

    def __init__(self, sizes: Sequence[int], activation: str = "relu"):
        sizes = list(sizes)
        if len(sizes) < 2:
            raise ValueError(f"MLP needs at least an input and an output size, got sizes={sizes}")
        if any(int(s) != s or s < 1 for s in sizes):
            raise ValueError(f"MLP sizes must be positive integers, got sizes={sizes}")
        activation_module(activation)  # an unknown name fails here even when no layer needs it
        layers = []
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(nn.Linear(fan_in, fan_out))
            if i < len(sizes) - 2:
                layers.append(activation_module(activation))
        super().__init__(*layers)
