"""The shortcuts that cut a training step's launches and device syncs give the results of the
long way, on the CPU: the one-reduction range check (pyengine/backend/_glue.py), the fused
split of q, k, v (F.split_heads), and the loss reductions (nn/_functions/loss.py).
tests/test_launch_trace.py counts what they save; tests/test_cuda_step_overhead.py runs them
on a GPU."""
import numpy as np
import pytest

import pyengine as pe
from pyengine.autograd import gradcheck
from pyengine.backend import _glue, get_backend
from pyengine.nn import functional as F
from pyengine.nn._functions.heads import SplitHeads


def _first_bad(values, n, skip):
    flat = values.reshape(-1)
    for v in flat:
        if not (0 <= int(v) < n or (skip is not None and int(v) == skip)):
            return int(v)
    return None


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.int16, np.uint8, np.uint64])
@pytest.mark.parametrize("skip", [None, -100, -1, 0, 3, 6, 7, 200])
def test_first_out_of_range_matches_a_plain_scan(rng, dtype, skip):
    n = 7
    info = np.iinfo(dtype)
    for trial in range(40):
        shape = [(0,), (1,), (5,), (3, 4), (2, 3, 5)][trial % 5]
        lo, hi = max(info.min, -12), min(info.max, 12)
        values = rng.integers(lo, hi + 1, size=shape).astype(dtype)
        if trial % 3 == 0:  # mostly valid, so a single bad element has to be found
            values = np.clip(values, 0, n - 1).astype(dtype)
            if values.size and trial % 2:
                values.reshape(-1)[rng.integers(values.size)] = dtype(info.max if trial % 4 else n)
        if skip is not None and info.min <= skip <= info.max and values.size:
            values.reshape(-1)[rng.integers(values.size)] = skip
        s = skip if skip is None or info.min <= skip <= info.max else None
        assert _glue.first_out_of_range(values, n, s) == _first_bad(values, n, s), (values, s)
        keep = None if s is None else values != s
        assert _glue.first_out_of_range(values, n, s, keep) == _first_bad(values, n, s)


def test_first_out_of_range_extremes():
    big = np.array([0, np.iinfo(np.int64).max, 1])
    assert _glue.first_out_of_range(big, 5) == np.iinfo(np.int64).max
    low = np.array([0, np.iinfo(np.int64).min, -100])
    assert _glue.first_out_of_range(low, 5, -100) == np.iinfo(np.int64).min
    assert _glue.first_out_of_range(np.array([-100, 4, -100]), 5, -100) is None
    assert _glue.first_out_of_range(np.array([[4, -3], [9, 0]]), 5, -100) == -3  # C order
    strided = np.arange(12).reshape(3, 4)[:, ::2]  # 0 2 / 4 6 / 8 10, read as unsigned in place
    assert _glue.first_out_of_range(strided, 6) == 6


def test_cross_entropy_checks_classes_once_with_the_full_message(rng):
    """The unweighted path leaves the class check to the backend (one check, not two); its
    message is the one F.cross_entropy gave, for flat and K-dimensional inputs."""
    x = pe.tensor(rng.standard_normal((4, 3)))
    with pytest.raises(IndexError, match=r"target 3 is out of bounds for 3 classes \(valid: 0\.\.2, "
                                         r"or ignore_index=-100\)"):
        F.cross_entropy(x, pe.tensor(np.array([0, 1, 3, 2])))
    with pytest.raises(IndexError, match=r"target -2 is out of bounds for 3 classes"):
        F.cross_entropy(x, pe.tensor(np.array([0, -2, 1, 2])), ignore_index=1)
    x4 = pe.tensor(rng.standard_normal((2, 3, 2, 2)))
    t4 = np.zeros((2, 2, 2), np.int64)
    t4[1, 0, 1] = 5
    with pytest.raises(IndexError, match="target 5 is out of bounds for 3 classes"):
        F.cross_entropy(x4, pe.tensor(t4))
    with pytest.raises(IndexError, match="target 4 is out of bounds"):  # the weighted path checks here
        F.cross_entropy(x, pe.tensor(np.array([0, 4, 1, 2])), weight=pe.tensor(np.ones(3)))
    t4[1, 0, 1] = -7  # ignored rows pass, in or out of [0, C)
    assert np.isfinite(F.cross_entropy(x4, pe.tensor(t4), ignore_index=-7).item())
    assert np.isfinite(F.cross_entropy(x, pe.tensor(np.array([0, 2, 2, 1])), ignore_index=2).item())


@pytest.mark.torch
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_class_and_pointwise_loss_reductions_match_torch(rng, dtype, reduction):
    """The mean divides on the device by an int64 count (cross-entropy with ignored rows) or
    the element count, in the loss's dtype; its gradient is written per element."""
    torch = pytest.importorskip("torch")
    logits = rng.standard_normal((9, 5)).astype(dtype)
    target = rng.integers(0, 5, 9)
    target[[1, 4]] = -100
    x = pe.tensor(logits, requires_grad=True)
    loss = F.cross_entropy(x, pe.tensor(target), reduction=reduction)
    loss.backward()
    tx = torch.tensor(logits, requires_grad=True)
    ref = torch.nn.functional.cross_entropy(tx, torch.tensor(target), reduction=reduction)
    ref.backward()
    tol = 1e-6 if dtype == np.float32 else 1e-12
    assert loss.dtype.np == dtype and x.grad.dtype.np == dtype
    np.testing.assert_allclose(loss.item(), ref.item(), rtol=tol)
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=tol, atol=tol)
    a, b = rng.standard_normal((2, 4, 3)).astype(dtype)
    w = rng.random((4, 3)).astype(dtype)
    for with_w in (False, True):
        pa = pe.tensor(a, requires_grad=True)
        ours = F.mse_loss(pa, pe.tensor(b), reduction=reduction, weight=pe.tensor(w) if with_w else None)
        ours.backward()
        ta = torch.tensor(a, requires_grad=True)
        sq = (ta - torch.tensor(b)) ** 2 * (torch.tensor(w) if with_w else 1)
        theirs = sq.sum() if reduction == "sum" else sq.sum() / (torch.tensor(w).sum() if with_w else sq.numel())
        theirs.backward()
        assert ours.dtype.np == dtype and pa.grad.dtype.np == dtype
        np.testing.assert_allclose(ours.item(), theirs.item(), rtol=tol)
        np.testing.assert_allclose(pa.grad.numpy(), ta.grad.numpy(), rtol=tol, atol=tol)


def _heads_reference(qkv, h):
    """The long way: q, k, v as indexed views of the reshaped, permuted buffer."""
    b, t, c3 = qkv.shape
    parts = qkv.reshape(b, t, 3, h, c3 // (3 * h)).permute(2, 0, 3, 1, 4)
    return parts[0], parts[1], parts[2]


@pytest.mark.parametrize("b,t,h,d", [(2, 5, 3, 4), (1, 1, 1, 1), (3, 7, 2, 6)])
def test_split_heads_equals_indexing_forward_and_backward(rng, b, t, h, d):
    data = rng.standard_normal((b, t, 3 * h * d))
    cot = [rng.standard_normal((b, h, t, d)) for _ in range(3)]
    grads = []
    for split in (F.split_heads, _heads_reference):
        x = pe.tensor(data, requires_grad=True)
        outs = split(x * 1.0, h)  # a non-leaf input, as the projection's output is
        for o, r in zip(outs, _heads_reference(pe.tensor(data), h)):
            np.testing.assert_array_equal(o.detach().numpy(), r.numpy())
        sum((o * pe.tensor(c)).sum() for o, c in zip(outs, cot)).backward()
        grads.append(x.grad.numpy())
    np.testing.assert_array_equal(grads[0], grads[1])


def test_split_heads_gradcheck_and_unused_part(rng):
    x = pe.tensor(rng.standard_normal((2, 3, 12)), requires_grad=True)
    assert gradcheck(lambda a: F.split_heads(a, 2), (x,))
    q, k, v = F.split_heads(x, 2)
    (q * 2).sum().backward()  # k and v get no gradient: autograd hands zeros
    expected = np.zeros((2, 3, 12))
    expected[..., :4] = 2
    np.testing.assert_array_equal(x.grad.numpy(), expected)


def test_split_heads_backward_takes_slices_of_one_buffer_in_place(rng):
    """When the three gradients are the slices of one (3, B, H, T, D) array (the native
    attention backward writes them so), that array is read in place; the result is the
    same as from three separate arrays."""
    b, t, h, d = 2, 5, 3, 4
    whole = rng.standard_normal((3, b, h, t, d))
    ctx = type("Ctx", (), {})()
    ctx.shape, ctx.backend = (b, t, 3 * h * d), get_backend("cpu")
    assert _glue.stacked_slices((whole[0], whole[1], whole[2])) is whole
    assert _glue.stacked_slices((whole[0], whole[2], whole[1])) is None
    assert _glue.stacked_slices((whole[0], whole[1])) is None
    assert _glue.stacked_slices(tuple(whole[:, :1])) is None  # slices of a slice: not the owner's
    fused, _ = SplitHeads.backward(ctx, whole[0], whole[1], whole[2])
    apart, _ = SplitHeads.backward(ctx, *(p.copy() for p in whole))
    expected = whole.transpose(1, 3, 0, 2, 4).reshape(b, t, 3 * h * d)
    np.testing.assert_array_equal(fused, expected)
    np.testing.assert_array_equal(apart, expected)


def test_split_heads_arguments():
    x = pe.zeros(2, 3, 12)
    with pytest.raises(ValueError, match=r"split_heads: expected qkv of shape \(B, T, 3 \* num_heads"):
        F.split_heads(x, 5)
    with pytest.raises(ValueError, match="num_heads must be a positive int"):
        F.split_heads(x, 0)
    with pytest.raises(ValueError, match=r"got \(2, 12\)"):
        F.split_heads(pe.zeros(2, 12), 2)
    with pytest.raises(TypeError, match="floating-point"):
        F.split_heads(pe.zeros(2, 3, 12, dtype=pe.int64), 2)
