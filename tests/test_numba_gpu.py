"""On a real GPU: every Numba kernel family against the native kernel and against the NumPy
backend in float64, at sizes that are not tile multiples and large enough to fill many
blocks; and a model trained with the numba provider. Run by bench/device_check.sh
(PYENGINE_DEVICE_TESTS=1, so the Numba kernels compile for the GPU instead of simulating)."""
import numpy as np
import pytest

import pyengine as pe
from pyengine.backend import numpy_backend as ref

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def backends():
    from pyengine.backend import cuda_backend as native
    from pyengine.backend import numba_backend as nb
    ok, reason = nb.available()
    if not ok or nb.xp is None or nb.xp is np:
        pytest.skip(f"numba kernels need the real GPU path (not the simulator): {reason}")
    return nb, native


def _r(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def _first(result):
    return result[0] if isinstance(result, tuple) else result


CASES = {
    "matmul": (lambda be, a, b: be.matmul(a, b), lambda r: (_r(r, 3, 129, 65), _r(r, 65, 127))),
    "linear_gelu": (lambda be, x, w, b: be.linear(x, w, b, "gelu"),
                    lambda r: (_r(r, 33, 129), _r(r, 65, 129), _r(r, 65))),
    "conv2d": (lambda be, x, w: be.conv2d(x, w, None, (2, 1), (1, 2), (1, 1), 1),
               lambda r: (_r(r, 3, 5, 33, 17), _r(r, 7, 5, 3, 5))),
    "conv2d_grad_input": (lambda be, gy, x, w: be.conv2d_backward(gy, x, w, (1, 1), (1, 1), (1, 1), 2)[0],
                          lambda r: (_r(r, 2, 6, 17, 9), _r(r, 2, 4, 17, 9), _r(r, 6, 2, 3, 3))),
    "conv2d_grad_weight": (lambda be, gy, x, w: be.conv2d_backward(gy, x, w, (1, 1), (1, 1), (1, 1), 2)[1],
                           lambda r: (_r(r, 2, 6, 17, 9), _r(r, 2, 4, 17, 9), _r(r, 6, 2, 3, 3))),
    "max_pool2d": (lambda be, x: be.max_pool2d(x, (3, 3), (2, 2), (1, 1), (1, 1), True),
                   lambda r: (_r(r, 2, 3, 33, 17),)),
    "avg_pool2d": (lambda be, x: be.avg_pool2d(x, (3, 3), (2, 2), (1, 1), True, False, None),
                   lambda r: (_r(r, 2, 3, 33, 17),)),
    "selu": (lambda be, x: be.activation("selu", x), lambda r: (_r(r, 1000, 33),)),
    "gelu_backward": (lambda be, gy, x: be.activation_backward("gelu", gy, x, None),
                      lambda r: (_r(r, 1000, 33), _r(r, 1000, 33))),
    "log_softmax": (lambda be, x: be.softmax(x, -1, True), lambda r: (_r(r, 65, 1025),)),
    "layer_norm": (lambda be, x, w, b: be.layer_norm(x, w, b, 1e-5),
                   lambda r: (_r(r, 65, 769), _r(r, 769), _r(r, 769))),
    "sdpa_causal": (lambda be, q, k, v: be.sdpa(q, k, v, None, True),
                    lambda r: (_r(r, 2, 3, 129, 64), _r(r, 2, 3, 129, 64), _r(r, 2, 3, 129, 64))),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_numba_matches_native_and_numpy(rng, backends, name):
    nb, native = backends
    fn, build = CASES[name]
    host = build(rng)
    expected = _first(fn(ref, *(a.astype(np.float64) for a in host)))
    got = {}
    for be in (nb, native):
        got[be.name] = be.to_numpy(_first(fn(be, *(be.asarray(a) for a in host))))
    scale = np.abs(expected).max() + 1e-6
    for provider, value in got.items():
        np.testing.assert_allclose(value / scale, expected / scale, atol=1e-4, err_msg=provider)
    np.testing.assert_allclose(got["numba"] / scale, got["native"] / scale, atol=1e-4)


def _mlp_task(rng):
    from pyengine.models import MLP
    return MLP([17, 65, 5]), _r(rng, 64, 17), rng.integers(0, 5, 64)


def _lenet_task(rng):
    from pyengine.models import LeNet5
    return LeNet5(), _r(rng, 16, 1, 28, 28), rng.integers(0, 10, 16)


def _gpt_task(rng):
    from pyengine.models import GPT
    idx = rng.integers(0, 11, (8, 17))
    return GPT(vocab_size=11, block_size=17, n_layer=2, n_head=2, n_embd=32), idx, np.roll(idx, -1, 1)


@pytest.mark.parametrize("task", [_mlp_task, _lenet_task, _gpt_task], ids=["mlp", "lenet5", "gpt"])
def test_training_with_numba_provider_lowers_the_loss(rng, backends, task):
    pe.manual_seed(0)
    with pe.backends.cuda.kernels("numba"):
        model, x, y = task(rng)
        model.to("cuda")
        x, y = pe.tensor(x, device="cuda"), pe.tensor(y, device="cuda")
        opt = pe.optim.Adam(model.parameters(), lr=1e-2)
        losses = []
        for _ in range(30):
            opt.zero_grad()
            logits = model(x)
            loss = pe.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
            loss.backward()
            opt.step()
            losses.append(float(loss.item()))
    assert losses[-1] < 0.5 * losses[0], losses


def test_user_kernel_links_native_activation(rng, backends):
    """pyengine.numba.native_activation: the native kernels' CUDA C++ GELU linked into a
    user's Numba kernel, against our Numba device function and NumPy."""
    from numba import cuda, float32

    import pyengine.numba as pn
    nb, _ = backends
    native_gelu = pn.native_activation("gelu")
    native_selu_grad = pn.native_activation("selu", grad=True)

    @cuda.jit
    def both(x, y_native, y_numba, g_native):
        i = cuda.grid(1)
        if i < x.size:
            y_native[i] = native_gelu(x[i], float32(0))
            y_numba[i] = pn.gelu(x[i])
            g_native[i] = native_selu_grad(float32(1), x[i], float32(0), float32(0))

    x = rng.uniform(-5, 5, 1000).astype(np.float32)
    outs = [nb.xp.empty(1000, np.float32) for _ in range(3)]
    both[8, 128](nb.asarray(x), *outs)
    y_native, y_numba, g_native = (nb.to_numpy(o) for o in outs)
    expected = ref.activation("gelu", x.astype(np.float64))
    np.testing.assert_allclose(y_native, expected, rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(y_numba, expected, rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(g_native, ref.activation_backward("selu", np.ones(1000), x.astype(np.float64),
                                                                 None), rtol=2e-5, atol=2e-6)
