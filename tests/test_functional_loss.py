"""Losses of nn.functional: float64 NumPy references written from the definitions,
gradcheck of every option, PyTorch CPU where marked."""
import numpy as np
import pytest

import pyengine as pe
import pyengine.nn.functional as F
from pyengine.autograd import gradcheck


def leaf(a):
    return pe.tensor(np.asarray(a, dtype=np.float64), requires_grad=True)


def log_softmax_ref(x, axis):
    m = x.max(axis=axis, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=axis, keepdims=True))


def cross_entropy_ref(x, t, weight=None, ignore_index=-100, smoothing=0.0, reduction="mean"):
    """Rows of (N, C, d...) logits; PyTorch's definition, written out per row."""
    c = x.shape[1]
    rows = np.moveaxis(x, 1, -1).reshape(-1, c)
    tr = t.reshape(-1)
    w = np.ones(c) if weight is None else weight
    logp = log_softmax_ref(rows, 1)
    loss, wsum = np.zeros(len(tr)), 0.0
    for r, k in enumerate(tr):
        if k == ignore_index:
            continue
        loss[r] = -(1 - smoothing) * w[k] * logp[r, k] - smoothing / c * (w * logp[r]).sum()
        wsum += w[k]
    if reduction == "none":
        return loss.reshape(t.shape)
    return loss.sum() if reduction == "sum" else loss.sum() / wsum


CE_CASES = [
    # (input shape, ignore_index used, label_smoothing, reduction)
    ((5, 7), False, 0.0, "mean"),
    ((5, 7), True, 0.0, "mean"),
    ((5, 7), True, 0.2, "mean"),
    ((3, 4), False, 0.1, "sum"),
    ((3, 4), True, 0.0, "none"),
    ((2, 3, 4, 5), True, 0.15, "mean"),
    ((2, 3, 5), False, 0.0, "none"),
]


def _targets(rng, shape, with_ignore):
    c = shape[1]
    t = rng.integers(0, c, (shape[0],) + shape[2:])
    if with_ignore:
        t.reshape(-1)[::3] = -100
    return t


@pytest.mark.parametrize("shape, ignore, smoothing, reduction", CE_CASES)
@pytest.mark.parametrize("weighted", [False, True])
def test_cross_entropy_matches_reference_and_gradcheck(rng, shape, ignore, smoothing, reduction,
                                                       weighted):
    x = rng.standard_normal(shape) * 2
    t = _targets(rng, shape, ignore)
    w = rng.uniform(0.2, 2.0, shape[1]) if weighted else None
    wt = None if w is None else pe.tensor(w)
    y = F.cross_entropy(leaf(x), pe.tensor(t), weight=wt, reduction=reduction,
                        label_smoothing=smoothing)
    ref = cross_entropy_ref(x, t, w, -100, smoothing, reduction)
    np.testing.assert_allclose(y.detach().numpy(), ref, rtol=1e-10, atol=1e-12)
    assert gradcheck(lambda a: F.cross_entropy(a, pe.tensor(t), weight=wt, reduction=reduction,
                                               label_smoothing=smoothing), (leaf(x),))


def test_cross_entropy_unbatched_and_custom_ignore_index(rng):
    x = rng.standard_normal(6)
    y = F.cross_entropy(leaf(x), pe.tensor(np.array(4)))
    np.testing.assert_allclose(y.detach().numpy(), -log_softmax_ref(x, 0)[4], rtol=1e-12)
    xs, t = rng.standard_normal((4, 3)), np.array([0, 2, 1, 2])
    y = F.cross_entropy(leaf(xs), pe.tensor(t), ignore_index=2)
    np.testing.assert_allclose(y.detach().numpy(), cross_entropy_ref(xs, t, ignore_index=2), rtol=1e-12)
    assert gradcheck(lambda a: F.cross_entropy(a, pe.tensor(t), ignore_index=2), (leaf(xs),))


def test_cross_entropy_all_ignored_mean_is_nan(rng):
    x = rng.standard_normal((3, 4))
    with np.errstate(invalid="ignore"):
        y = F.cross_entropy(pe.tensor(x), pe.tensor(np.full(3, -100)))
    assert np.isnan(y.item())


@pytest.mark.parametrize("smoothing", [0.0, 0.3])
def test_cross_entropy_probability_targets(rng, smoothing):
    x = rng.standard_normal((4, 5, 3))
    p = rng.uniform(0.1, 1, (4, 5, 3))
    p /= p.sum(axis=1, keepdims=True)
    w = rng.uniform(0.5, 2, 5)
    y = F.cross_entropy(leaf(x), pe.tensor(p), weight=pe.tensor(w), label_smoothing=smoothing)
    q = p * (1 - smoothing) + smoothing / 5
    ref = -(log_softmax_ref(x, 1) * q * w[None, :, None]).sum(axis=1).mean()
    np.testing.assert_allclose(y.detach().numpy(), ref, rtol=1e-12)
    p_small = p[:2, :, :2]
    assert gradcheck(lambda a: F.cross_entropy(a, pe.tensor(p_small), label_smoothing=smoothing),
                     (leaf(x[:2, :, :2]),))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_nll_loss_matches_reference_and_gradcheck(rng, reduction):
    logp = log_softmax_ref(rng.standard_normal((6, 5)), 1)
    t = rng.integers(0, 5, 6)
    t[1] = 3
    w = rng.uniform(0.5, 2, 5)
    y = F.nll_loss(leaf(logp), pe.tensor(t), weight=pe.tensor(w), ignore_index=3,
                   reduction=reduction)
    keep = t != 3
    per_row = np.where(keep, -w[t] * logp[np.arange(6), t], 0.0)
    ref = {"none": per_row, "sum": per_row.sum(), "mean": per_row.sum() / w[t][keep].sum()}
    np.testing.assert_allclose(y.detach().numpy(), ref[reduction], rtol=1e-12)
    assert gradcheck(lambda a: F.nll_loss(a, pe.tensor(t), weight=pe.tensor(w), ignore_index=3,
                                          reduction=reduction), (leaf(logp),))


def test_legacy_size_average_reduce_map_to_reduction(rng):
    x, t = rng.standard_normal((4, 3)), np.array([0, 1, 2, 1])
    full = cross_entropy_ref(x, t, reduction="none")
    np.testing.assert_allclose(F.nll_loss(pe.tensor(log_softmax_ref(x, 1)), pe.tensor(t),
                                          size_average=False).detach().numpy(), full.sum(), rtol=1e-12)
    np.testing.assert_allclose(F.cross_entropy(pe.tensor(x), pe.tensor(t), reduce=False).detach().numpy(),
                               full, rtol=1e-12)


def off_diagonal(x, t, margin=1e-3):
    """``t`` moved to at least ``margin`` from ``x``: l1's |x - t| has a kink at x == t that
    gradcheck's 1e-6 step must not straddle."""
    return np.where(np.abs(x - t) < margin, x + np.where(t >= x, 2 * margin, -2 * margin), t)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_and_l1_match_reference_and_gradcheck(rng, reduction):
    x, t = rng.standard_normal((3, 17)), rng.standard_normal((3, 17))
    t = off_diagonal(x, t)
    red = {"mean": np.mean, "sum": np.sum, "none": lambda a: a}[reduction]
    np.testing.assert_allclose(F.mse_loss(leaf(x), leaf(t), reduction=reduction).detach().numpy(),
                               red((x - t) ** 2), rtol=1e-12)
    np.testing.assert_allclose(F.l1_loss(leaf(x), leaf(t), reduction=reduction).detach().numpy(),
                               red(np.abs(x - t)), rtol=1e-12)
    xs, ts = x[:2, :5], t[:2, :5]
    assert gradcheck(lambda a, b: F.mse_loss(a, b, reduction=reduction), (leaf(xs), leaf(ts)))
    assert gradcheck(lambda a, b: F.l1_loss(a, b, reduction=reduction), (leaf(xs), leaf(ts)))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_weighted_mse_and_l1_mean_divides_by_weight_sum(rng, reduction):
    x, t, w = rng.standard_normal((3, 5)), rng.standard_normal((3, 5)), rng.uniform(0.1, 2, (3, 5))
    t = off_diagonal(x, t)  # |x - t| = 4e-7 failed l1's gradcheck at PYENGINE_TEST_SEED=113203
    red = {"mean": lambda a: a.sum() / w.sum(), "sum": np.sum, "none": lambda a: a}[reduction]
    for fn, f in ((F.mse_loss, lambda d: d * d), (F.l1_loss, np.abs)):
        y = fn(leaf(x), leaf(t), reduction=reduction, weight=pe.tensor(w))
        np.testing.assert_allclose(y.detach().numpy(), red(w * f(x - t)), rtol=1e-12)
        assert gradcheck(lambda a, b: fn(a, b, reduction=reduction, weight=pe.tensor(w)),
                         (leaf(x), leaf(t)))


def test_losses_keep_float32(rng):
    x = pe.tensor(rng.standard_normal((3, 5)).astype(np.float32))
    t = pe.tensor(rng.standard_normal((3, 5)).astype(np.float32))
    assert F.mse_loss(x, t).dtype == pe.float32
    assert F.binary_cross_entropy_with_logits(x, t).dtype == pe.float32
    t = pe.tensor(np.array([0, 4, 2]))
    assert F.cross_entropy(x, t).dtype == pe.float32
    w = pe.tensor(rng.uniform(0.5, 2, 5).astype(np.float32))
    assert F.cross_entropy(x, t, weight=w, label_smoothing=0.1).dtype == pe.float32
    assert F.nll_loss(x, t, weight=w).dtype == pe.float32
    prob = pe.tensor(rng.uniform(0.1, 0.9, (3, 5)).astype(np.float32))
    assert F.binary_cross_entropy(prob, prob).dtype == pe.float32


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_binary_cross_entropy_matches_reference_and_gradcheck(rng, reduction):
    p, t = rng.uniform(0.05, 0.95, (4, 5)), rng.uniform(0, 1, (4, 5))
    w = rng.uniform(0.5, 2, 5)
    red = {"mean": np.mean, "sum": np.sum, "none": lambda a: a}[reduction]
    ref = red(-w * (t * np.log(p) + (1 - t) * np.log(1 - p)))
    y = F.binary_cross_entropy(leaf(p), leaf(t), weight=pe.tensor(w), reduction=reduction)
    np.testing.assert_allclose(y.detach().numpy(), ref, rtol=1e-12)
    assert gradcheck(lambda a, b: F.binary_cross_entropy(a, b, weight=pe.tensor(w),
                                                         reduction=reduction),
                     (leaf(p[:2]), leaf(t[:2])))


def test_binary_cross_entropy_clamps_log_at_minus_100():
    y = F.binary_cross_entropy(pe.tensor(np.array([0.0, 1.0])), pe.tensor(np.array([1.0, 0.0])),
                               reduction="none")
    np.testing.assert_array_equal(y.detach().numpy(), [100.0, 100.0])


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
def test_bce_with_logits_matches_reference_and_gradcheck(rng, reduction, weighted):
    x, t = rng.standard_normal((4, 3)) * 3, rng.uniform(0, 1, (4, 3))
    w = pe.tensor(rng.uniform(0.5, 2, (4, 1))) if weighted else None
    pw = pe.tensor(rng.uniform(0.5, 3, 3)) if weighted else None
    pos = 1 if pw is None else pw.detach().numpy()
    sig = 1 / (1 + np.exp(-x))
    loss = -(pos * t * np.log(sig) + (1 - t) * np.log(1 - sig)) * (1 if w is None else w.detach().numpy())
    red = {"mean": np.mean, "sum": np.sum, "none": lambda a: a}[reduction]
    y = F.binary_cross_entropy_with_logits(leaf(x), leaf(t), weight=w, reduction=reduction,
                                           pos_weight=pw)
    np.testing.assert_allclose(y.detach().numpy(), red(loss), rtol=1e-10)
    assert gradcheck(lambda a, b: F.binary_cross_entropy_with_logits(
        a, b, weight=w, reduction=reduction, pos_weight=pw), (leaf(x), leaf(t)))


def test_bce_with_logits_is_finite_for_huge_logits():
    x, t = np.array([-800.0, 800.0, 50.0]), np.array([1.0, 0.0, 1.0])
    xl = leaf(x)
    y = F.binary_cross_entropy_with_logits(xl, pe.tensor(t), reduction="none")
    np.testing.assert_allclose(y.detach().numpy(), [800.0, 800.0, np.log1p(np.exp(-50.0))], rtol=1e-12)
    y.sum().backward()
    np.testing.assert_allclose(xl.grad.numpy(), [-1.0, 1.0, -1 / (1 + np.exp(50.0))], rtol=1e-12)


@pytest.mark.torch
def test_losses_match_torch_with_grads(rng):
    torch = pytest.importorskip("torch")
    tf = torch.nn.functional
    x = rng.standard_normal((4, 5, 3))
    t = rng.integers(0, 5, (4, 3))
    t[0, 1] = t[2, 2] = -100
    w = rng.uniform(0.5, 2, 5)
    for weight in (None, w):
        for smoothing in (0.0, 0.25):
            ours, theirs = leaf(x), torch.tensor(x, requires_grad=True)
            y = F.cross_entropy(ours, pe.tensor(t), None if weight is None else pe.tensor(weight),
                                label_smoothing=smoothing)
            ty = tf.cross_entropy(theirs, torch.tensor(t),
                                  None if weight is None else torch.tensor(weight),
                                  label_smoothing=smoothing)
            y.backward()
            ty.backward()
            np.testing.assert_allclose(y.detach().numpy(), ty.detach().numpy(), rtol=1e-10)
            np.testing.assert_allclose(ours.grad.numpy(), theirs.grad.numpy(), rtol=1e-9, atol=1e-12)
    p = rng.uniform(0.05, 0.95, (3, 4))
    s = rng.uniform(0, 1, (3, 4))
    w = rng.uniform(0.1, 2, (3, 4))
    for ours, theirs in ((F.mse_loss, tf.mse_loss), (F.l1_loss, tf.l1_loss)):
        for reduction in ("mean", "sum"):
            np.testing.assert_allclose(
                ours(pe.tensor(p), pe.tensor(s), reduction=reduction, weight=pe.tensor(w)).numpy(),
                theirs(torch.tensor(p), torch.tensor(s), reduction=reduction,
                       weight=torch.tensor(w)).numpy(), rtol=1e-12)
    pw = rng.uniform(0.5, 3, 4)
    np.testing.assert_allclose(
        F.binary_cross_entropy(pe.tensor(p), pe.tensor(s)).detach().numpy(),
        tf.binary_cross_entropy(torch.tensor(p), torch.tensor(s)).detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(
        F.binary_cross_entropy_with_logits(pe.tensor(p * 8 - 4), pe.tensor(s),
                                           pos_weight=pe.tensor(pw)).detach().numpy(),
        tf.binary_cross_entropy_with_logits(torch.tensor(p * 8 - 4), torch.tensor(s),
                                            pos_weight=torch.tensor(pw)).detach().numpy(), rtol=1e-12)
