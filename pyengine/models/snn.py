"""A self-normalizing MLP (Klambauer et al., 2017, "Self-Normalizing Neural Networks")."""
from __future__ import annotations

import math
from typing import Sequence

from pyengine import nn


class SelfNormalizingMLP(nn.Sequential):
    """Linear -> SELU -> AlphaDropout blocks, then a final Linear.

    Weights are LeCun-normal (std 1/sqrt(fan_in)) and biases zero: with SELU this keeps each
    layer's activations near mean 0 and variance 1 for standardised inputs, so even deep
    stacks train without normalisation layers. AlphaDropout (not Dropout) keeps that fixed
    point during training. The layer order matches the equivalent PyTorch ``nn.Sequential``.
    """

    def __init__(self, sizes: Sequence[int], dropout: float = 0.0):
        sizes = list(sizes)
        if len(sizes) < 2:
            raise ValueError(f"SelfNormalizingMLP needs at least an input and an output size, got sizes={sizes}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        layers = []
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(nn.Linear(fan_in, fan_out))
            if i < len(sizes) - 2:
                layers.append(nn.SELU())
                if dropout > 0:
                    layers.append(nn.AlphaDropout(dropout))
        super().__init__(*layers)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 1.0 / math.sqrt(m.in_features))
                nn.init.zeros_(m.bias)
