"""A small VGG-style CNN (Simonyan and Zisserman, 2014) sized for digits."""
from __future__ import annotations

from typing import Sequence

from pyengine import nn


class SmallVGG(nn.Module):
    """Blocks of ``convs_per_block`` 3x3 convolutions (BatchNorm, ReLU), each block ending in
    a 2x2 max pool, one block per entry of ``channels``; then global average pooling and a
    linear classifier, so any input at least 2**len(channels) pixels on a side works.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1,
                 channels: Sequence[int] = (16, 32, 64), convs_per_block: int = 1):
        super().__init__()
        if not channels or convs_per_block < 1:
            raise ValueError(
                f"SmallVGG needs at least one block and one conv per block, got channels={tuple(channels)}, "
                f"convs_per_block={convs_per_block}"
            )
        layers = []
        c_in = in_channels
        for c_out in channels:
            for _ in range(convs_per_block):
                # The bias would be cancelled by BatchNorm's mean subtraction.
                layers += [nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=False),
                           nn.BatchNorm2d(c_out), nn.ReLU()]
                c_in = c_out
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(c_in, num_classes))

    def forward(self, x):
        return self.classifier(self.pool(self.features(x)))
