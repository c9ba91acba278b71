"""pyengine.numba's device functions called from a user's own @cuda.jit kernel (run under
the CUDA simulator here), against the NumPy backend in float64."""
import numpy as np
import pytest
from numba import cuda

import pyengine.numba as pn
from pyengine.backend import numba_backend as nb
from pyengine.backend import numpy_backend as ref

pytestmark = pytest.mark.cudasim


@cuda.jit
def _bias_gelu(x, b, y):
    i = cuda.grid(1)
    if i < y.size:
        y[i] = pn.gelu(x[i] + b[i % b.size])


@cuda.jit
def _by_code(x, y, code, param, gy, gx):
    i = cuda.grid(1)
    if i < y.size:
        y[i] = pn.apply(code, x[i], param)
        gx[i] = gy[i] * pn.derivative(code, x[i], y[i], param)


def test_user_kernel_fuses_gelu(rng):
    x = rng.uniform(-5, 5, 37).astype(np.float32)
    b = rng.standard_normal(5).astype(np.float32)
    y = nb.xp.empty(37, np.float32)
    _bias_gelu[2, 32](nb.asarray(x), nb.asarray(b), y)
    expected = ref.activation("gelu", x.astype(np.float64) + np.tile(b, 8)[:37].astype(np.float64))
    np.testing.assert_allclose(nb.to_numpy(y), expected, rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("name, param, code", [("selu", None, "selu"), ("leaky_relu", 0.3, "leaky_relu"),
                                               ("gelu", "tanh", "gelu_tanh"), ("sigmoid", None, "sigmoid")])
def test_user_kernel_by_code_forward_and_derivative(rng, name, param, code):
    x = rng.uniform(-4, 4, 33).astype(np.float32)
    gy = rng.standard_normal(33).astype(np.float32)
    y, gx = nb.xp.empty(33, np.float32), nb.xp.empty(33, np.float32)
    p = np.float32(param if isinstance(param, float) else 0)
    _by_code[2, 32](nb.asarray(x), y, pn.CODES[code], p, nb.asarray(gy), gx)
    y64 = ref.activation(name, x.astype(np.float64), param)
    np.testing.assert_allclose(nb.to_numpy(y), y64, rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(nb.to_numpy(gx), ref.activation_backward(name, gy.astype(np.float64),
                                                                       x.astype(np.float64), y64, param),
                               rtol=2e-5, atol=2e-5)
