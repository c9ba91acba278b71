"""nn.init: gains and fans against PyTorch's formulas, sample statistics of large tensors,
and every module's default initialization."""
import math

import numpy as np
import pytest

import pyengine as pe
from pyengine import nn
from pyengine.nn import init


def _t(shape, dtype=None):
    return pe.empty(shape, dtype=dtype or pe.float64)


def _uniform_std(bound):
    return bound / math.sqrt(3)


@pytest.fixture(autouse=True)
def _seed(rng):
    pe.manual_seed(int(rng.integers(2**31)))


def test_calculate_gain_table():
    assert init.calculate_gain("linear") == 1
    assert init.calculate_gain("conv2d") == 1
    assert init.calculate_gain("sigmoid") == 1
    assert init.calculate_gain("tanh") == pytest.approx(5 / 3)
    assert init.calculate_gain("relu") == pytest.approx(math.sqrt(2))
    assert init.calculate_gain("leaky_relu") == pytest.approx(math.sqrt(2 / (1 + 0.01 ** 2)))
    assert init.calculate_gain("leaky_relu", math.sqrt(5)) == pytest.approx(math.sqrt(2 / 6))
    assert init.calculate_gain("selu") == 0.75
    with pytest.raises(ValueError, match="Unsupported nonlinearity softplus"):
        init.calculate_gain("softplus")


@pytest.mark.torch
@pytest.mark.parametrize("name,param", [("linear", None), ("tanh", None), ("relu", None), ("leaky_relu", None),
                                        ("leaky_relu", 0.2), ("selu", None), ("sigmoid", None)])
def test_calculate_gain_matches_torch(name, param):
    torch = pytest.importorskip("torch")
    assert init.calculate_gain(name, param) == pytest.approx(torch.nn.init.calculate_gain(name, param), rel=1e-15)


def test_fan_rules():
    assert init._calculate_fan_in_and_fan_out(_t((7, 5))) == (5, 7)
    assert init._calculate_fan_in_and_fan_out(_t((8, 3, 5, 2))) == (30, 80)
    with pytest.raises(ValueError, match=r"fewer than 2 dimensions \(got shape \(17,\)\)"):
        init.xavier_uniform_(_t((17,)))
    with pytest.raises(ValueError, match="Mode fan_avg not supported"):
        init.kaiming_uniform_(_t((3, 3)), mode="fan_avg")


def _check_stats(t, mean, std, low=None, high=None, tol=0.02):
    a = t.detach().numpy()
    assert np.isfinite(a).all()
    assert abs(a.mean() - mean) < tol * std + 1e-12
    assert a.std() == pytest.approx(std, rel=tol)
    if low is not None:
        assert a.min() >= low and a.max() <= high
        # the samples reach close to both ends: the range is the one asked for, not narrower
        assert a.min() < low + 0.01 * (high - low) and a.max() > high - 0.01 * (high - low)


def test_uniform_and_normal_statistics():
    _check_stats(init.uniform_(_t((301, 333)), -0.5, 1.5), 0.5, _uniform_std(1.0), -0.5, 1.5)
    _check_stats(init.normal_(_t((301, 333)), 0.3, 2.5), 0.3, 2.5)
    t = init.constant_(_t((3, 17)), 0.25)
    np.testing.assert_array_equal(t.detach().numpy(), np.full((3, 17), 0.25))
    np.testing.assert_array_equal(init.zeros_(t).numpy(), np.zeros((3, 17)))
    np.testing.assert_array_equal(init.ones_(t).numpy(), np.ones((3, 17)))


def test_init_keeps_dtype_and_storage_and_returns_the_tensor():
    t = _t((65, 33), pe.float32)
    storage = t.data
    assert init.kaiming_normal_(t) is t
    assert t.data is storage and t.dtype == pe.float32


def test_xavier_statistics():
    fan_in, fan_out = 129 * 9, 65 * 9
    std = 1.5 * math.sqrt(2 / (fan_in + fan_out))
    _check_stats(init.xavier_uniform_(_t((65, 129, 3, 3)), gain=1.5), 0, std, -math.sqrt(3) * std, math.sqrt(3) * std)
    _check_stats(init.xavier_normal_(_t((65, 129, 3, 3)), gain=1.5), 0, std)


@pytest.mark.parametrize("mode", ["fan_in", "fan_out"])
def test_kaiming_statistics(mode):
    shape = (127, 65, 3, 3)
    fan = 65 * 9 if mode == "fan_in" else 127 * 9
    std = math.sqrt(2) / math.sqrt(fan)
    bound = math.sqrt(3) * std
    _check_stats(init.kaiming_uniform_(_t(shape), mode=mode, nonlinearity="relu"), 0, std, -bound, bound)
    leaky_std = math.sqrt(2 / (1 + 0.2 ** 2)) / math.sqrt(fan)
    _check_stats(init.kaiming_normal_(_t(shape), a=0.2, mode=mode), 0, leaky_std)


def test_trunc_normal_statistics():
    mean, std, a, b = 0.5, 2.0, -1.0, 3.0
    t = init.trunc_normal_(_t((333, 301)), mean, std, a, b)
    # Moments of the truncated normal, written from its definition with math.erf.
    alpha, beta = (a - mean) / std, (b - mean) / std
    pdf = lambda z: math.exp(-z * z / 2) / math.sqrt(2 * math.pi)
    cdf = lambda z: (1 + math.erf(z / math.sqrt(2))) / 2
    z = cdf(beta) - cdf(alpha)
    m = mean + std * (pdf(alpha) - pdf(beta)) / z
    var = std ** 2 * (1 + (alpha * pdf(alpha) - beta * pdf(beta)) / z - ((pdf(alpha) - pdf(beta)) / z) ** 2)
    _check_stats(t, m, math.sqrt(var), a, b)
    with pytest.raises(ValueError, match="a < b"):
        init.trunc_normal_(_t((3,)), a=1.0, b=-1.0)


def test_seed_reproduces_init():
    pe.manual_seed(7)
    first = init.normal_(_t((3, 17))).numpy().copy()
    pe.manual_seed(7)
    np.testing.assert_array_equal(init.normal_(_t((3, 17))).numpy(), first)


def _bound_check(p, bound):
    a = p.detach().numpy()
    assert np.abs(a).max() <= bound
    if a.size > 5000:
        assert a.std() == pytest.approx(_uniform_std(bound), rel=0.03)


def test_linear_and_conv_default_init():
    lin = nn.Linear(333, 129)
    # kaiming_uniform_(a=sqrt(5)) gives bound sqrt(6 / ((1 + 5) * fan_in)) = 1/sqrt(fan_in).
    _bound_check(lin.weight, 1 / math.sqrt(333))
    _bound_check(lin.bias, 1 / math.sqrt(333))
    assert lin.weight.requires_grad and lin.weight.dtype == pe.float32
    conv = nn.Conv2d(33, 65, kernel_size=(3, 5), groups=1)
    _bound_check(conv.weight, 1 / math.sqrt(33 * 15))
    _bound_check(conv.bias, 1 / math.sqrt(33 * 15))


def test_norm_and_embedding_default_init():
    ln = nn.LayerNorm((3, 17))
    np.testing.assert_array_equal(ln.weight.detach().numpy(), np.ones((3, 17)))
    np.testing.assert_array_equal(ln.bias.detach().numpy(), np.zeros((3, 17)))
    bn = nn.BatchNorm2d(17)
    np.testing.assert_array_equal(bn.weight.detach().numpy(), np.ones(17))
    np.testing.assert_array_equal(bn.running_mean.numpy(), np.zeros(17))
    np.testing.assert_array_equal(bn.running_var.numpy(), np.ones(17))
    assert bn.num_batches_tracked.item() == 0 and bn.num_batches_tracked.dtype == pe.int64
    emb = nn.Embedding(1000, 65, padding_idx=3)
    w = emb.weight.detach().numpy()
    np.testing.assert_array_equal(w[3], np.zeros(65))
    assert w.std() == pytest.approx(1.0, rel=0.03) and abs(w.mean()) < 0.02
