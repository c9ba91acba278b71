"""LeNet-5 (LeCun et al., 1998) for 1x28x28 images."""
from __future__ import annotations

from pyengine import nn


class LeNet5(nn.Module):
    """conv5(6) - pool - conv5(16) - pool - fc120 - fc84 - fc(num_classes).

    The original takes 32x32 inputs; padding=2 on the first convolution is the usual 28x28
    variant and gives the same 16x5x5 feature map before the classifier. ReLU and max
    pooling replace the original's scaled tanh and trainable subsampling, as in most
    modern renditions.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, kernel_size=5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, kernel_size=5), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(16 * 5 * 5, 120), nn.ReLU(),
            nn.Linear(120, 84), nn.ReLU(),
            nn.Linear(84, num_classes),
        )

    def forward(self, x):
        if x.ndim != 4 or tuple(x.shape[-2:]) != (28, 28):
            raise ValueError(f"LeNet5 expects input of shape (N, C, 28, 28), got {tuple(x.shape)}")
        return self.classifier(self.features(x))
