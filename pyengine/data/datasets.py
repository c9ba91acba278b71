"""Built-in datasets that need no network: handwritten digits and seeded synthetic sets.

Digits: the 1,797 8x8 images of the UCI "Optical Recognition of Handwritten Digits" data
set (E. Alpaydin and C. Kaynak, 1998), the copy that scikit-learn ships, licensed CC BY 4.0
(https://archive.ics.uci.edu/ml/datasets/Optical+Recognition+of+Handwritten+Digits).
``digits.npz`` beside this file holds it as uint8 pixels 0..16 (``images``, shape
(1797, 8, 8)) and int64 labels 0..9 (``labels``); it was extracted once from
scikit-learn's ``digits.csv.gz``, and nothing here imports scikit-learn.

Every function returns a :class:`TensorDataset` of float32 inputs and targets on the CPU
(int64 class indices for classification, float32 (N, 1) for regression).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pyengine.tensor import Tensor

from .dataset import TensorDataset

_DIGITS = Path(__file__).with_name("digits.npz")


def _dataset(*arrays: np.ndarray) -> TensorDataset:
    return TensorDataset(*(Tensor._make(np.ascontiguousarray(a), "cpu") for a in arrays))


def _interp_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights of 1-D linear interpolation with half-pixel centres
    (PyTorch's ``align_corners=False``): output i samples input at (i + 0.5) * n_in/n_out - 0.5."""
    src = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    src = np.clip(src, 0.0, n_in - 1)
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = src - lo
    m = np.zeros((n_out, n_in))
    rows = np.arange(n_out)
    np.add.at(m, (rows, lo), 1.0 - frac)
    np.add.at(m, (rows, hi), frac)
    return m


def resize_bilinear(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of the last two axes of ``images`` to ``size`` = (h, w), as
    ``F.interpolate(mode="bilinear", align_corners=False)`` without antialiasing.

    Bilinear interpolation is separable, so it is two matrix products (rows, then columns)
    over the whole stack at once, in float64.
    """
    images = np.asarray(images)
    if images.ndim < 2:
        raise ValueError(f"resize_bilinear needs at least 2-D images, got shape {images.shape}")
    h, w = size
    if h < 1 or w < 1:
        raise ValueError(f"resize_bilinear size must be positive, got {size}")
    rows = _interp_matrix(images.shape[-2], h)
    cols = _interp_matrix(images.shape[-1], w)
    return rows @ images.astype(np.float64) @ cols.T


def load_digits(size: int = 8, flatten: bool = False, normalize: bool = False) -> TensorDataset:
    """The 1,797 handwritten digits as (images, labels).

    size 8 gives the original images, 28 the bilinear upscale LeNet-5 expects. Pixels are
    scaled to [0, 1]; ``normalize=True`` standardises them instead (mean 0, std 1 over the
    whole set, as ``transforms.Normalize`` with the data's own statistics). Images are
    (N, 1, size, size), or (N, size*size) with ``flatten=True``; labels are int64 0..9.
    """
    if size not in (8, 28):
        raise ValueError(f"load_digits size must be 8 or 28, got {size!r}")
    with np.load(_DIGITS) as f:
        pixels, labels = f["images"], f["labels"]
    x = pixels.astype(np.float64) / 16.0
    if size != 8:
        x = resize_bilinear(x, (size, size))
    if normalize:
        x = (x - x.mean()) / x.std()
    x = x.reshape(len(x), -1) if flatten else x[:, None]
    return _dataset(x.astype(np.float32), labels.astype(np.int64))


def make_xor(n: int = 400, noise: float = 0.15, seed: int = 0) -> TensorDataset:
    """Four Gaussian blobs at (+-1, +-1); the class is 1 where the coordinates' signs differ,
    so no linear model separates it."""
    rng = np.random.default_rng(seed)
    corners = rng.integers(0, 2, size=(n, 2)) * 2 - 1
    x = corners + noise * rng.standard_normal((n, 2))
    y = (corners[:, 0] != corners[:, 1]).astype(np.int64)
    return _dataset(x.astype(np.float32), y)


def make_spirals(n: int = 600, classes: int = 3, noise: float = 0.2, seed: int = 0) -> TensorDataset:
    """``classes`` interleaved spiral arms in the plane, n points in total (the remainder
    goes to the first arms); the angle carries Gaussian noise of std ``noise`` radians."""
    if classes < 2:
        raise ValueError(f"make_spirals needs at least 2 classes, got {classes}")
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    r = rng.uniform(0.05, 1.0, n)
    theta = 4.0 * r + 2 * np.pi * y / classes + noise * rng.standard_normal(n)
    x = np.stack([r * np.cos(theta), r * np.sin(theta)], axis=1)
    return _dataset(x.astype(np.float32), y.astype(np.int64))


def make_regression(n: int = 512, features: int = 8, noise: float = 0.1, seed: int = 0) -> TensorDataset:
    """A tabular regression for MSE: standard-normal features, a target that is linear in
    them plus a smooth nonlinearity in the first two, plus Gaussian noise; targets (N, 1)."""
    if features < 2:
        raise ValueError(f"make_regression needs at least 2 features, got {features}")
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, features))
    w = rng.standard_normal(features) / np.sqrt(features)
    y = x @ w + 0.5 * np.sin(2 * x[:, 0]) * x[:, 1] + noise * rng.standard_normal(n)
    return _dataset(x.astype(np.float32), y[:, None].astype(np.float32))
