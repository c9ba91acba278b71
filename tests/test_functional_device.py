"""nn.functional on device "cuda": every op's output and input gradients equal the CPU
(NumPy backend) ones in float32. On a GPU for each kernel provider (marked gpu); on the CPU
through the Numba kernels under the CUDA simulator at tiny sizes (marked cudasim)."""
import os

import numpy as np
import pytest

import pyengine as pe
import pyengine.nn.functional as F
from _helpers import cuda_kernels


def _f32(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


class Fixed(np.ndarray):
    """A float input that gets no gradient (a class weight): view an array as Fixed."""


def _classes(rng, c, *shape):
    t = rng.integers(0, c, shape)
    t.reshape(-1)[::4] = -100
    return t


# name -> (function of tensors, builder of the NumPy inputs: floats differentiable, ints not)
CASES = {
    "linear": (F.linear, lambda r: (_f32(r, 3, 17, 33), _f32(r, 65, 33), _f32(r, 65))),
    "linear_relu": (lambda x, w, b: F.linear_activation(x, w, b, "relu"),
                    lambda r: (_f32(r, 17, 33), _f32(r, 65, 33), _f32(r, 65))),
    "linear_gelu_tanh": (lambda x, w, b: F.linear_activation(x, w, b, "gelu_tanh"),
                         lambda r: (_f32(r, 2, 17, 33), _f32(r, 65, 33), _f32(r, 65))),
    "conv2d": (lambda x, w, b: F.conv2d(x, w, b, 1, 1, 1, 1),
               lambda r: (_f32(r, 2, 3, 17, 33), _f32(r, 5, 3, 3, 3), _f32(r, 5))),
    "conv2d_strided_grouped_dilated": (
        lambda x, w, b: F.conv2d(x, w, b, (2, 1), (1, 2), (2, 1), 2),
        lambda r: (_f32(r, 3, 4, 17, 13), _f32(r, 6, 2, 3, 2), _f32(r, 6))),
    "conv2d_same_even_kernel": (lambda x, w: F.conv2d(x, w, padding="same"),
                                lambda r: (_f32(r, 1, 3, 9, 7), _f32(r, 4, 3, 2, 4))),
    "max_pool2d_ceil": (lambda x: F.max_pool2d(x, 3, 2, 1, ceil_mode=True),
                        lambda r: (_f32(r, 2, 3, 17, 33),)),
    "max_pool2d_dilated": (lambda x: F.max_pool2d(x, 2, 1, 0, dilation=2),
                           lambda r: (_f32(r, 2, 3, 9, 8),)),
    "avg_pool2d_exclude_pad": (lambda x: F.avg_pool2d(x, 3, 2, 1, True, False),
                               lambda r: (_f32(r, 2, 3, 17, 33),)),
    "avg_pool2d_divisor": (lambda x: F.avg_pool2d(x, 2, divisor_override=3),
                           lambda r: (_f32(r, 2, 3, 17, 33),)),
    "adaptive_avg_pool2d": (lambda x: F.adaptive_avg_pool2d(x, (5, 3)),
                            lambda r: (_f32(r, 2, 3, 17, 13),)),
    "relu": (F.relu, lambda r: (_f32(r, 3, 129),)),
    "leaky_relu": (lambda x: F.leaky_relu(x, 0.1), lambda r: (_f32(r, 3, 129),)),
    "gelu": (F.gelu, lambda r: (_f32(r, 3, 129),)),
    "gelu_tanh": (lambda x: F.gelu(x, approximate="tanh"), lambda r: (_f32(r, 3, 129),)),
    "sigmoid": (F.sigmoid, lambda r: (_f32(r, 3, 129),)),
    "tanh": (F.tanh, lambda r: (_f32(r, 3, 129),)),
    "selu": (F.selu, lambda r: (_f32(r, 3, 129),)),
    "elu": (lambda x: F.elu(x, 0.5), lambda r: (_f32(r, 3, 129),)),
    "softmax": (lambda x: F.softmax(x, -1), lambda r: (_f32(r, 5, 127) * 4,)),
    "log_softmax_dim1": (lambda x: F.log_softmax(x, 1), lambda r: (_f32(r, 5, 33, 3) * 4,)),
    "cross_entropy": (lambda x, t: F.cross_entropy(x, t, label_smoothing=0.1),
                      lambda r: (_f32(r, 65, 17), _classes(r, 17, 65))),
    "cross_entropy_kdim_sum": (lambda x, t: F.cross_entropy(x, t, reduction="sum"),
                               lambda r: (_f32(r, 3, 7, 5, 2), _classes(r, 7, 3, 5, 2))),
    "cross_entropy_weighted": (
        lambda x, t, w: F.cross_entropy(x, t, weight=w, label_smoothing=0.2),
        lambda r: (_f32(r, 33, 7), _classes(r, 7, 33),
                   r.uniform(0.5, 2, 7).astype(np.float32).view(Fixed))),
    "nll_loss": (lambda x, t: F.nll_loss(x, t, reduction="none"),
                 lambda r: (_f32(r, 33, 7), _classes(r, 7, 33))),
    "mse_loss": (F.mse_loss, lambda r: (_f32(r, 3, 129), _f32(r, 3, 129))),
    "l1_loss": (F.l1_loss, lambda r: (_f32(r, 3, 129), _f32(r, 3, 129))),
    "binary_cross_entropy": (
        F.binary_cross_entropy,
        lambda r: (r.uniform(0.05, 0.95, (3, 65)).astype(np.float32),
                   r.uniform(0, 1, (3, 65)).astype(np.float32))),
    "bce_with_logits": (lambda x, t: F.binary_cross_entropy_with_logits(x, t),
                        lambda r: (_f32(r, 3, 65) * 5, r.uniform(0, 1, (3, 65)).astype(np.float32))),
    "layer_norm": (lambda x, w, b: F.layer_norm(x, (129,), w, b),
                   lambda r: (_f32(r, 3, 17, 129) * 2 + 1, _f32(r, 129), _f32(r, 129))),
    "batch_norm_train": (lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True),
                         lambda r: (_f32(r, 3, 5, 17, 9) + 1, _f32(r, 5), _f32(r, 5))),
    "embedding_padding": (lambda i, w: F.embedding(i, w, padding_idx=3),
                          lambda r: (r.integers(0, 33, (5, 17)), _f32(r, 33, 65))),
    "sdpa": (F.scaled_dot_product_attention,
             lambda r: (_f32(r, 2, 3, 17, 33), _f32(r, 2, 3, 65, 33), _f32(r, 2, 3, 65, 17))),
    "sdpa_causal": (lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True),
                    lambda r: (_f32(r, 2, 33, 17), _f32(r, 2, 33, 17), _f32(r, 2, 33, 9))),
    "sdpa_gqa": (lambda q, k, v: F.scaled_dot_product_attention(q, k, v, enable_gqa=True),
                 lambda r: (_f32(r, 2, 6, 17, 16), _f32(r, 2, 2, 33, 16), _f32(r, 2, 2, 33, 16))),
    "pad": (lambda x: F.pad(x, (1, 2, -1, 3), value=0.5), lambda r: (_f32(r, 2, 5, 7),)),
    "pad_reflect": (lambda x: F.pad(x, (3, 2, 1, 4), mode="reflect"),
                    lambda r: (_f32(r, 2, 3, 9, 7),)),
    "pad_circular": (lambda x: F.pad(x, (3, 7), mode="circular"), lambda r: (_f32(r, 2, 3, 7),)),
}


def _to(a, device):
    differentiable = a.dtype.kind == "f" and not isinstance(a, Fixed)
    return pe.tensor(np.asarray(a), device=device, requires_grad=differentiable)


def _compare_devices(fn, arrays, rtol, atol):
    """Run fn forward and backward on "cpu" and "cuda" from the same arrays; compare."""
    results = {}
    for device in ("cpu", "cuda"):
        inputs = [_to(a, device) for a in arrays]
        y = fn(*inputs)
        gy = np.random.default_rng(1).standard_normal(y.shape).astype(np.float32)
        y.backward(pe.tensor(gy, device=device))
        results[device] = (y.detach().cpu().numpy(),
                           [t.grad.cpu().numpy() for t in inputs if t.grad is not None])
    (y_cpu, g_cpu), (y_gpu, g_gpu) = results["cpu"], results["cuda"]
    assert np.isfinite(y_gpu).all()
    np.testing.assert_allclose(y_gpu, y_cpu, rtol=rtol, atol=atol)
    assert len(g_gpu) == len(g_cpu) > 0
    for a, b in zip(g_gpu, g_cpu):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=10 * atol)


@pytest.mark.gpu
@pytest.mark.parametrize("name", sorted(CASES))
def test_gpu_matches_cpu_forward_and_backward(rng, provider, name):
    fn, build = CASES[name]
    _compare_devices(fn, build(rng), rtol=1e-4, atol=1e-5)


# The simulator runs every GPU thread in Python: a few ops at sizes of a handful.
SIM_CASES = {
    "linear": (F.linear, lambda r: (_f32(r, 3, 5), _f32(r, 4, 5), _f32(r, 4))),
    "conv2d": (lambda x, w: F.conv2d(x, w, None, 2, 1, 1, 1),
               lambda r: (_f32(r, 1, 2, 5, 4), _f32(r, 3, 2, 3, 3))),
    "max_pool2d": (lambda x: F.max_pool2d(x, 2, ceil_mode=True), lambda r: (_f32(r, 1, 2, 5, 3),)),
    "avg_pool2d": (lambda x: F.avg_pool2d(x, 3, 2, 1), lambda r: (_f32(r, 1, 2, 5, 3),)),
    "gelu": (F.gelu, lambda r: (_f32(r, 2, 7),)),
    "log_softmax": (lambda x: F.log_softmax(x, -1), lambda r: (_f32(r, 3, 7),)),
    "cross_entropy": (lambda x, t: F.cross_entropy(x, t, label_smoothing=0.1),
                      lambda r: (_f32(r, 5, 3), np.array([0, 2, -100, 1, 2]))),
    "layer_norm": (lambda x, w, b: F.layer_norm(x, 6, w, b),
                   lambda r: (_f32(r, 3, 6), _f32(r, 6), _f32(r, 6))),
    "sdpa_causal": (lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True),
                    lambda r: (_f32(r, 1, 3, 4), _f32(r, 1, 3, 4), _f32(r, 1, 3, 2))),
}


@pytest.fixture
def numba_simulator():
    if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
        pytest.skip("runs only under the CUDA simulator (NUMBA_ENABLE_CUDASIM=1)")
    with cuda_kernels("numba"):
        yield


@pytest.mark.cudasim
@pytest.mark.parametrize("name", sorted(SIM_CASES))
def test_numba_simulator_matches_cpu_forward_and_backward(rng, numba_simulator, name):
    fn, build = SIM_CASES[name]
    _compare_devices(fn, build(rng), rtol=1e-5, atol=1e-6)


@pytest.mark.gpu
def test_gpu_one_hot_and_dropout(rng, provider):
    idx = rng.integers(0, 7, (5, 17))
    np.testing.assert_array_equal(F.one_hot(pe.tensor(idx, device="cuda"), 9).cpu().numpy(),
                                  np.eye(9, dtype=np.int64)[idx])
    x = pe.tensor(rng.uniform(0.5, 1.5, (257, 129)).astype(np.float32), device="cuda")
    y = F.dropout(x, 0.3).cpu().numpy()
    dropped = y == 0
    assert abs(dropped.mean() - 0.3) < 0.01
    np.testing.assert_allclose(y[~dropped], x.cpu().numpy()[~dropped] / 0.7, rtol=1e-6)


@pytest.mark.gpu
def test_gpu_batch_norm_updates_running_stats_like_cpu(rng, provider):
    x = _f32(rng, 7, 5, 3, 3)
    stats = {}
    for device in ("cpu", "cuda"):
        rm = pe.tensor(np.zeros(5, np.float32), device=device)
        rv = pe.tensor(np.ones(5, np.float32), device=device)
        F.batch_norm(pe.tensor(x, device=device), rm, rv, training=True, momentum=0.2)
        stats[device] = (rm.cpu().numpy(), rv.cpu().numpy())
    for a, b in zip(stats["cuda"], stats["cpu"]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.gpu
def test_mixed_devices_raise_naming_both(rng, provider):
    x = pe.tensor(_f32(rng, 3, 5))
    w = pe.tensor(_f32(rng, 2, 5), device="cuda")
    with pytest.raises(RuntimeError, match="cpu and cuda|cuda and cpu"):
        F.linear(x, w)
    # Class weights reach the Function as plain arrays: functional checks their device.
    logits = pe.tensor(_f32(rng, 3, 5), device="cuda")
    with pytest.raises(RuntimeError, match="input is on cuda and weight on cpu"):
        F.cross_entropy(logits, pe.tensor(np.array([0, 4, 2]), device="cuda"),
                        weight=pe.tensor(np.ones(5, np.float32)))
