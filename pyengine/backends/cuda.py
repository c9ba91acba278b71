"""``pe.backends.cuda``: which GPU kernels run ("native" pybind11 or "numba") and TF32.

    pe.backends.cuda.set_kernels("numba")
    with pe.backends.cuda.kernels("native"):
        ...
    pe.backends.cuda.matmul.allow_tf32 = True   # GPU backends read this at each matmul
"""
from __future__ import annotations

import contextlib

from .. import backend as _backend


def set_kernels(name: str) -> None:
    """Choose the GPU kernel provider for this process ("native" or "numba")."""
    _backend.set_cuda_kernels(name)


def get_kernels() -> str:
    return _backend.get_cuda_kernels()


@contextlib.contextmanager
def kernels(name: str):
    """Run the block with ``name``'s kernels, restoring the previous provider after."""
    prev = _backend.get_cuda_kernels()
    _backend.set_cuda_kernels(name)
    try:
        yield
    finally:
        _backend.set_cuda_kernels(prev)


class _MatmulSettings:
    """TF32 tensor-core matmuls trade ~3e-4 relative error for speed; off by default (PyTorch's)."""

    def __init__(self):
        self.allow_tf32 = False

    def __repr__(self):
        return f"matmul(allow_tf32={self.allow_tf32})"


matmul = _MatmulSettings()
