"""Our activation device functions, for users' own Numba kernels.

    from numba import cuda
    import pyengine.numba as pn

    @cuda.jit
    def bias_gelu(x, b, y):                 # fuse our GELU into your kernel
        i = cuda.grid(1)
        if i < y.size:
            y[i] = pn.gelu(x[i] + b[i % b.size])

These are the very functions the "numba" provider's kernels call (``_numba_kernels/
activation.py``): float32 in, float32 out, compiled into the caller's kernel. They also run
under ``NUMBA_ENABLE_CUDASIM=1``. Forward: relu, leaky_relu(x, slope), gelu (exact),
gelu_tanh, sigmoid, selu, plus ``apply(code, x, param)`` with the codes in ``CODES``.
Derivatives: gelu_grad, gelu_tanh_grad, ``derivative(code, x, y, param)``.

On a GPU, ``native_activation(name)`` links the native kernels' own CUDA C++ activation into
your kernel instead (``cuda.declare_device`` with ``link=``); see below.
"""
from pyengine.backend._numba_kernels.activation import (
    CODES,
    apply,
    derivative,
    gelu,
    gelu_grad,
    gelu_tanh,
    gelu_tanh_grad,
    leaky_relu,
    relu,
    selu,
    sigmoid,
)

__all__ = ["CODES", "apply", "derivative", "gelu", "gelu_grad", "gelu_tanh", "gelu_tanh_grad",
           "leaky_relu", "relu", "selu", "sigmoid", "native_activation", "native_source"]


# --------------------------------------------------------------------------------------
# The native kernels' own activation code, linked into a user's kernel
# --------------------------------------------------------------------------------------
# kernels/activation.cuh holds the scalar activations the native GEMM epilogue and
# elementwise kernels use. ``native_activation("gelu")`` declares an extern "C" wrapper around
# it (cuda.declare_device with link=), so a user's Numba kernel computes bit-for-bit what the
# native kernels do. The two headers are installed as pyengine/_kernels (CMakeLists.txt); from
# a source checkout they are read from kernels/. Running needs a real GPU: foreign device
# functions do not run under the simulator.

_ACT_ENUM = {"relu": "ACT_RELU", "leaky_relu": "ACT_LEAKY_RELU", "gelu": "ACT_GELU",
             "gelu_tanh": "ACT_GELU_TANH", "sigmoid": "ACT_SIGMOID", "tanh": "ACT_TANH",
             "selu": "ACT_SELU"}


def _kernels_dir():
    from pathlib import Path
    here = Path(__file__).resolve().parent
    for path in (here / "_kernels", here.parent / "kernels"):
        if (path / "activation.cuh").is_file():
            return path
    raise FileNotFoundError(f"pyengine.numba.native_*: kernels/activation.cuh is neither installed in "
                            f"{here / '_kernels'} nor in a source checkout at {here.parent / 'kernels'}")


def native_source(name: str, grad: bool = False) -> str:
    """CUDA C++ of one extern "C" device function over kernels/activation.cuh: forward
    ``float pyengine_<name>(float x, float param)`` or, with grad, ``float
    pyengine_<name>_grad(float gy, float x, float y, float param)``. The headers are inlined
    so NVRTC needs no include path."""
    if name not in _ACT_ENUM:
        raise ValueError(f"native activation must be one of {sorted(_ACT_ENUM)}, got {name!r}")
    import re
    kdir = _kernels_dir()
    # Only the Act enum of kernels_core.h: the rest declares host launchers and needs
    # <cstdint>, which NVRTC cannot find.
    enum_def = re.search(r"enum Act\b.*?};", (kdir / "kernels_core.h").read_text(), re.S)
    if enum_def is None:
        raise RuntimeError(f"pyengine.numba: no 'enum Act' in {kdir / 'kernels_core.h'}")
    core = f"namespace pyengine {{\n{enum_def.group(0)}\n}}\n"
    act = (kdir / "activation.cuh").read_text()
    act = act.replace('#include "kernels_core.h"', "").replace("#pragma once", "")
    enum = f"pyengine::{_ACT_ENUM[name]}"
    if grad:
        wrapper = (f'extern "C" __device__ float pyengine_{name}_grad(float gy, float x, float y, float p) '
                   f"{{ return pyengine::act_backward({enum}, gy, x, y, p); }}\n")
    else:
        wrapper = (f'extern "C" __device__ float pyengine_{name}(float x, float p) '
                   f"{{ return pyengine::act_forward({enum}, x, p); }}\n")
    return f"{core}\n{act}\n{wrapper}"


_declared = {}


def native_activation(name: str, grad: bool = False):
    """The native kernels' activation as a device function for a user's @cuda.jit kernel:
    ``f(x, param)`` (param: leaky_relu's slope, else ignored) or, with grad,
    ``f(gy, x, y, param)`` returning gy times the derivative."""
    key = (name, grad)
    if key not in _declared:
        from numba import cuda
        sig = "float32(float32, float32, float32, float32)" if grad else "float32(float32, float32)"
        symbol = f"pyengine_{name}_grad" if grad else f"pyengine_{name}"
        _declared[key] = cuda.declare_device(
            symbol, sig, link=[cuda.CUSource(native_source(name, grad), name=f"{symbol}.cu")], abi="c")
    return _declared[key]
