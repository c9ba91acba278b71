"""nn.utils: gradient clipping against PyTorch and by hand, parameters <-> vector."""
import math

import numpy as np
import pytest

import pyengine as pe
from pyengine import nn
from pyengine.nn import utils

SHAPES = [(3, 17), (33,), (1,)]


def _params_with_grads(rng, scale=1.0):
    params = [nn.Parameter(pe.tensor(rng.standard_normal(s))) for s in SHAPES]
    grads = [rng.standard_normal(s) * scale for s in SHAPES]
    for p, g in zip(params, grads):
        p.grad = pe.tensor(g)
    return params, grads


@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.5, math.inf])
@pytest.mark.parametrize("max_norm", [0.5, 1e3])
def test_clip_grad_norm_by_hand(rng, norm_type, max_norm):
    params, grads = _params_with_grads(rng)
    flat = np.concatenate([g.ravel() for g in grads])
    total = np.abs(flat).max() if norm_type == math.inf else (np.abs(flat) ** norm_type).sum() ** (1 / norm_type)
    out = utils.clip_grad_norm_(params, max_norm, norm_type)
    assert out.item() == pytest.approx(total, rel=1e-12)
    coef = min(max_norm / (total + 1e-6), 1.0)
    for p, g in zip(params, grads):
        np.testing.assert_allclose(p.grad.numpy(), g * coef, rtol=1e-12)


@pytest.mark.torch
@pytest.mark.parametrize("norm_type", [2.0, math.inf])
def test_clip_grad_norm_matches_torch(rng, norm_type):
    torch = pytest.importorskip("torch")
    params, grads = _params_with_grads(rng, scale=3.0)
    tparams = [torch.nn.Parameter(torch.zeros(s, dtype=torch.float64)) for s in SHAPES]
    for tp, g in zip(tparams, grads):
        tp.grad = torch.tensor(g)
    total = utils.clip_grad_norm_(params, 1.3, norm_type)
    ttotal = torch.nn.utils.clip_grad_norm_(tparams, 1.3, norm_type)
    assert total.item() == pytest.approx(ttotal.item(), rel=1e-12)
    for p, tp in zip(params, tparams):
        np.testing.assert_allclose(p.grad.numpy(), tp.grad.numpy(), rtol=1e-12)


def test_clip_grad_norm_edge_cases(rng):
    params, _ = _params_with_grads(rng)
    params[0].grad = None
    utils.clip_grad_norm_(params, 1.0)  # a parameter without a grad is skipped
    assert utils.clip_grad_norm_([nn.Parameter(pe.ones(2))], 1.0).item() == 0.0
    single = nn.Parameter(pe.ones(4, dtype=pe.float64))
    single.grad = pe.full((4,), 2.0, dtype=pe.float64)
    assert utils.clip_grad_norm_(single, 100.0).item() == pytest.approx(4.0)
    params[1].grad = pe.tensor(np.array([np.nan] + [1.0] * 32))
    with pytest.raises(RuntimeError, match="non-finite"):
        utils.clip_grad_norm_(params, 1.0, error_if_nonfinite=True)


def test_clip_grad_value(rng):
    params, grads = _params_with_grads(rng)
    utils.clip_grad_value_(params, 0.5)
    for p, g in zip(params, grads):
        np.testing.assert_array_equal(p.grad.numpy(), np.clip(g, -0.5, 0.5))


def test_parameters_to_vector_and_back(rng):
    params, _ = _params_with_grads(rng)
    vec = utils.parameters_to_vector(params)
    np.testing.assert_array_equal(vec.detach().numpy(),
                                  np.concatenate([p.detach().numpy().ravel() for p in params]))
    # differentiable: d(sum(v * c))/dp = c reshaped
    c = rng.standard_normal(vec.shape)
    for p in params:
        p.grad = None
    (vec * pe.tensor(c)).sum().backward()
    np.testing.assert_allclose(np.concatenate([p.grad.numpy().ravel() for p in params]), c)
    new = rng.standard_normal(vec.shape)
    utils.vector_to_parameters(pe.tensor(new), params)
    np.testing.assert_array_equal(utils.parameters_to_vector(params).detach().numpy(), new)
    with pytest.raises(ValueError, match="vec has 3 elements, the parameters 85"):
        utils.vector_to_parameters(pe.tensor(new[:3]), params)
