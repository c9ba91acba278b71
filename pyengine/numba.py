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
           "leaky_relu", "relu", "selu", "sigmoid"]
