"""``pe.cuda``: is a GPU usable, how many, which, and which kernel provider runs on it.

Everything here asks the GPU backend chosen by ``pe.backends.cuda.set_kernels`` (native
pybind11 kernels or Numba) through its ``available() -> (ok, reason)``; importing this module
never touches a driver.
"""
from __future__ import annotations

from . import backend as _backend


def _probe():
    """(backend module or None, reason it cannot run or None)."""
    name = _backend.get_cuda_kernels()
    try:
        mod = _backend.load(name)
    except Exception as exc:  # a GPU backend must import anywhere; report it if it does not
        return None, f"the {name!r} CUDA backend failed to import: {exc!r}"
    ok, reason = mod.available()
    return (mod, None) if ok else (mod, reason)


def is_available() -> bool:
    return _probe()[1] is None


def unavailable_reason():
    """Why CUDA cannot be used here, or None when it can."""
    return _probe()[1]


class device(str):
    """``pe.device("cuda" if pe.cuda.is_available() else "cpu")``, as torch.device.

    Devices are plain strings in pyengine ("cpu", "cuda"); this is one of them, with
    torch.device's ``type`` and ``index``, so ``x.to(dev)`` and ``x.device == dev`` work.
    Like torch.device it does not check that the device can run here; moving a tensor does.
    """

    def __new__(cls, type, index=None):
        spec = str(type) if index is None else f"{type}:{index}"
        name = {"cuda:0": "cuda", "cpu:0": "cpu"}.get(spec, spec)
        if name not in ("cpu", "cuda"):
            raise RuntimeError(f"unknown device {spec!r}; expected 'cpu' or 'cuda'")
        return super().__new__(cls, name)

    @property
    def type(self) -> str:
        return str(self)

    @property
    def index(self):
        return None

    def __repr__(self):
        return f"device(type={str(self)!r})"


def check_device(device) -> str:
    """Normalise a device spec ("cpu", "cuda", "cuda:0") and make sure it can run here."""
    name = str(device)
    if name == "cuda:0":
        name = "cuda"
    if name not in ("cpu", "cuda"):
        raise RuntimeError(f"unknown device {device!r}; expected 'cpu' or 'cuda'")
    if name == "cuda":
        reason = unavailable_reason()
        if reason is not None:
            raise RuntimeError(f"CUDA is not available ({_backend.get_cuda_kernels()} kernels): {reason}")
    return name


def _usable():
    mod, reason = _probe()
    if reason is not None:
        raise RuntimeError(f"CUDA is not available: {reason}")
    return mod


def device_count() -> int:
    if not is_available():
        return 0
    mod = _usable()
    if hasattr(mod, "device_count"):  # a backend without CuPy (Numba's simulator) says itself
        return int(mod.device_count())
    return int(mod.xp.cuda.runtime.getDeviceCount())


def get_device_name(device: int = 0) -> str:
    mod = _usable()
    if hasattr(mod, "device_name"):
        return str(mod.device_name(device))
    name = mod.xp.cuda.runtime.getDeviceProperties(device)["name"]
    return name.decode() if isinstance(name, bytes) else str(name)


def synchronize() -> None:
    """Wait for every kernel queued on the current device (do this before reading a host clock)."""
    mod = _usable()
    if hasattr(mod, "synchronize"):
        mod.synchronize()
    else:
        mod.xp.cuda.Device().synchronize()


def current_kernels() -> str:
    """The GPU kernel provider in use: "native" or "numba"."""
    return _backend.get_cuda_kernels()


def manual_seed(seed: int) -> None:
    if is_available():
        _backend.get_backend("cuda").manual_seed(seed)
