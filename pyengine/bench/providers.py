"""Who can run a benchmark here, each behind the same small interface.

A provider is "ours" (a pyengine backend: numpy, native, numba) or a "vendor" reference
(PyTorch on CPU or CUDA, CuPy's cuBLAS). The pyengine backends already share the function
table of pyengine/backend/__init__.py; the vendor references get a thin adapter that speaks
the same names for the ops they have, so one case builder serves every provider, and a case
a provider cannot run (``hasattr`` fails) is skipped instead of faked.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from types import SimpleNamespace

from pyengine import backend as _backend

# Fixed order: ours before the vendors, CPU before GPU; reports and plots follow it.
ALL = ("numpy", "native", "numba", "torch-cpu", "torch-cuda", "cupy")


@dataclass(frozen=True)
class Provider:
    name: str
    device: str        # "cpu" | "cuda"
    ours: bool         # a pyengine backend (else a vendor reference)
    ops: object        # the backend module, or an adapter with the same function names

    def to_device(self, a):
        """A host NumPy array on this provider's device."""
        return self.ops.asarray(a)

    @contextlib.contextmanager
    def selected(self):
        """Within the block, ``device="cuda"`` in pyengine means this provider's kernels."""
        if self.name not in ("native", "numba"):
            yield
            return
        before = _backend.get_cuda_kernels()
        _backend.set_cuda_kernels(self.name)
        try:
            yield
        finally:
            _backend.set_cuda_kernels(before)


def _torch_ops(device: str):
    import torch
    import torch.nn.functional as F

    acts = {"relu": F.relu, "gelu": F.gelu, "sigmoid": torch.sigmoid, "tanh": torch.tanh,
            "selu": F.selu, "leaky_relu": F.leaky_relu}

    def max_pool2d(x, kernel_size, stride, padding, dilation=(1, 1), ceil_mode=False):
        return F.max_pool2d(x, kernel_size, stride, padding, dilation, ceil_mode, return_indices=True)

    def softmax(x, dim, log=False):
        return (F.log_softmax if log else F.softmax)(x, dim=dim)

    def cross_entropy(logits, target, ignore_index=-100, label_smoothing=0.0):
        return F.cross_entropy(logits, target, ignore_index=ignore_index, reduction="none",
                               label_smoothing=label_smoothing), None

    def layer_norm(x, weight, bias, eps):
        return F.layer_norm(x, x.shape[-1:], weight, bias, eps), None, None

    def sdpa(q, k, v, attn_mask=None, is_causal=False, scale=None, dropout_p=0.0):
        return F.scaled_dot_product_attention(q, k, v, attn_mask, dropout_p, is_causal, scale=scale), None

    return SimpleNamespace(
        asarray=lambda a, dtype=None: torch.from_numpy(a).to(device),
        matmul=torch.matmul,
        conv2d=lambda x, w, b, stride, padding, dilation, groups: F.conv2d(x, w, b, stride, padding, dilation, groups),
        max_pool2d=max_pool2d,
        activation=lambda name, x, param=None: acts[name](x),
        softmax=softmax, cross_entropy=cross_entropy, layer_norm=layer_norm, sdpa=sdpa)


def _cupy_ops():
    import cupy as cp

    # cuBLAS through CuPy's matmul: the vendor GEMM every GPU matmul is measured against.
    return SimpleNamespace(asarray=lambda a, dtype=None: cp.asarray(a), matmul=cp.matmul)


def _probe(name: str):
    """(Provider, None) when ``name`` can run here, else (None, why not)."""
    if name == "numba" and os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        # The simulator runs kernels in Python on the CPU: timing it would measure nothing real.
        return None, "the Numba CUDA simulator is on (NUMBA_ENABLE_CUDASIM=1); simulated kernels are not timed"
    if name in ("numpy", "native", "numba"):
        try:
            mod = _backend.load(name)
        except Exception as exc:  # a backend that fails to import is simply absent here
            return None, f"pyengine backend {name!r} failed to import: {exc!r}"
        if name != "numpy":
            ok, reason = mod.available()
            if not ok:
                return None, reason
        return Provider(name, mod.device, True, mod), None
    if name in ("torch-cpu", "torch-cuda"):
        try:
            import torch
        except ImportError:
            return None, "PyTorch is not installed"
        device = name.split("-")[1]
        if device == "cuda" and not torch.cuda.is_available():
            return None, "PyTorch sees no CUDA device"
        return Provider(name, device, False, _torch_ops(device)), None
    if name == "cupy":
        try:
            import cupy as cp
            if cp.cuda.runtime.getDeviceCount() < 1:
                return None, "CuPy sees no CUDA device"
        except Exception as exc:  # not installed, no driver, no device
            return None, f"CuPy is unusable here: {exc!r}"
        return Provider("cupy", "cuda", False, _cupy_ops()), None
    raise ValueError(f"unknown provider {name!r}; expected one of {', '.join(ALL)}")


def discover(names=ALL, devices=("cpu", "cuda")) -> tuple[list[Provider], dict[str, str]]:
    """The providers among ``names`` that run here on one of ``devices``, and for each
    other one the reason it is missing (for the report)."""
    present, missing = [], {}
    for name in names:
        provider, reason = _probe(name)
        if provider is None:
            missing[name] = reason
        elif provider.device in devices:
            present.append(provider)
        else:
            missing[name] = f"device {provider.device} not selected"
    return present, missing


def present_devices() -> list[str]:
    """"cpu", plus "cuda" when pyengine's current GPU kernels can run here."""
    from pyengine import cuda

    return ["cpu", "cuda"] if cuda.is_available() else ["cpu"]
