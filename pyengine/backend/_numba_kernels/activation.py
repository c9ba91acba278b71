"""Activations: device functions (forward value and derivative) and the elementwise kernels.

The device functions are float32 in and out, every constant cast to float32 so nothing is
promoted to double on the GPU. ``apply`` and ``derivative`` dispatch on the integer codes of
the native kernels (kernels/kernels_core.h ``enum Act``), so matmul's epilogue can fuse them.
"""
import math

from numba import cuda, float32

from . import device_function, kernel

NONE, RELU, LEAKY_RELU, GELU, GELU_TANH, SIGMOID, TANH, SELU = range(8)
CODES = {"relu": RELU, "leaky_relu": LEAKY_RELU, "gelu": GELU, "gelu_tanh": GELU_TANH,
         "sigmoid": SIGMOID, "tanh": TANH, "selu": SELU}

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
_INV_SQRT2 = 1 / math.sqrt(2)
_INV_SQRT_2PI = 1 / math.sqrt(2 * math.pi)
_SQRT_2_OVER_PI = math.sqrt(2 / math.pi)
_GELU_TANH_C = 0.044715


@device_function("float32(float32)")
def relu(x):
    return x if x > float32(0) else float32(0)


@device_function("float32(float32, float32)")
def leaky_relu(x, slope):
    return x if x > float32(0) else x * slope


@device_function("float32(float32)")
def gelu(x):
    """Exact GELU, x * Phi(x). Phi through erfc, not 1 + erf: for x << 0 the sum cancels
    and loses every digit of the tail (the native kernels make the same choice)."""
    return float32(0.5) * x * math.erfc(-x * float32(_INV_SQRT2))


@device_function("float32(float32)")
def gelu_tanh(x):
    inner = float32(_SQRT_2_OVER_PI) * (x + float32(_GELU_TANH_C) * x * x * x)
    return float32(0.5) * x * (float32(1) + math.tanh(inner))


@device_function("float32(float32)")
def sigmoid(x):
    # exp(-x) overflows to inf below about -88 and the quotient is the right 0.
    return float32(1) / (float32(1) + math.exp(-x))


@device_function("float32(float32)")
def selu(x):
    if x > float32(0):
        return float32(SELU_SCALE) * x
    return float32(SELU_SCALE * SELU_ALPHA) * math.expm1(x)


@device_function("float32(int32, float32, float32)")
def apply(code, x, param):
    if code == RELU:
        return relu(x)
    if code == LEAKY_RELU:
        return leaky_relu(x, param)
    if code == GELU:
        return gelu(x)
    if code == GELU_TANH:
        return gelu_tanh(x)
    if code == SIGMOID:
        return sigmoid(x)
    if code == TANH:
        return math.tanh(x)
    if code == SELU:
        return selu(x)
    return x


@device_function("float32(float32)")
def gelu_grad(x):
    pdf = float32(_INV_SQRT_2PI) * math.exp(float32(-0.5) * x * x)
    return float32(0.5) * math.erfc(-x * float32(_INV_SQRT2)) + x * pdf


@device_function("float32(float32)")
def gelu_tanh_grad(x):
    c = float32(_GELU_TANH_C)
    th = math.tanh(float32(_SQRT_2_OVER_PI) * (x + c * x * x * x))
    dinner = float32(_SQRT_2_OVER_PI) * (float32(1) + float32(3) * c * x * x)
    return float32(0.5) * (float32(1) + th) + float32(0.5) * x * (float32(1) - th * th) * dinner


@device_function("float32(int32, float32, float32, float32)")
def derivative(code, x, y, param):
    """d y / d x from the input x or the output y, whichever the activation needs."""
    if code == RELU:
        return float32(1) if y > float32(0) else float32(0)
    if code == LEAKY_RELU:
        return float32(1) if x > float32(0) else param
    if code == GELU:
        return gelu_grad(x)
    if code == GELU_TANH:
        return gelu_tanh_grad(x)
    if code == SIGMOID:
        return y * (float32(1) - y)
    if code == TANH:
        return float32(1) - y * y
    if code == SELU:
        if x > float32(0):
            return float32(SELU_SCALE)
        return float32(SELU_SCALE * SELU_ALPHA) * math.exp(x)
    return float32(1)


@kernel("void(float32[:], float32[:], int32, float32)")
def forward(x, y, code, param):
    i = cuda.grid(1)
    while i < x.size:
        y[i] = apply(code, x[i], param)
        i += cuda.gridsize(1)


@kernel("void(float32[:], float32[:], float32[:], float32[:], int32, float32)")
def backward(gy, x, y, gx, code, param):
    i = cuda.grid(1)
    while i < gy.size:
        gx[i] = gy[i] * derivative(code, x[i], y[i], param)
        i += cuda.gridsize(1)
