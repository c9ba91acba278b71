"""The NumPy backend's fast paths and the inputs that must leave them: softmax, attention
and log-sum-exp without the row max (exp(z) / row sum while that cannot overflow or lose a
row), row and column sums through BLAS (layer norm), and the exact GELU by cache-sized
blocks. References are float64 NumPy (or PyTorch, for what it defines)."""
import math

import numpy as np
import pytest
import torch

from pyengine.backend import numpy_backend as nb


def _softmax64(z, axis=-1):
    z = np.asarray(z, dtype=np.float64)
    m = np.max(z, axis=axis, keepdims=True)
    e = np.exp(z - m)
    return e / e.sum(axis=axis, keepdims=True)


def _rng():
    return np.random.default_rng()


@pytest.mark.parametrize("shift,spread", [(0.0, 1.0),      # the unshifted path
                                          (500.0, 3.0),    # exp would overflow: row max path
                                          (-300.0, 3.0),   # every exp underflows: row max path
                                          (0.0, 40.0)])    # wide rows, some sums near the floor
def test_softmax_matches_float64_on_both_paths(shift, spread):
    z = (_rng().standard_normal((33, 65)) * spread + shift).astype(np.float32)
    np.testing.assert_allclose(nb.softmax(z, -1), _softmax64(z), rtol=2e-5, atol=1e-30)
    np.testing.assert_allclose(nb.softmax(z, 1), _softmax64(z), rtol=2e-5, atol=1e-30)


def test_softmax_keeps_nan_and_all_minus_inf_rows_as_pytorch():
    z = _rng().standard_normal((4, 7)).astype(np.float32)
    z[1, 3] = np.nan
    z[2] = -np.inf
    z[3, 0] = np.inf
    ours = nb.softmax(z, -1)
    ref = torch.softmax(torch.from_numpy(z), -1).numpy()
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(ref))
    np.testing.assert_allclose(ours[0], ref[0], rtol=1e-6)


@pytest.mark.parametrize("shift", [0.0, 200.0, -200.0])
def test_cross_entropy_log_sum_exp_on_both_paths(shift):
    rng = _rng()
    logits = (rng.standard_normal((129, 10)) * 3 + shift).astype(np.float32)
    target = rng.integers(0, 10, 129)
    loss, lse = nb.cross_entropy(logits, target)
    x = logits.astype(np.float64)
    m = x.max(axis=1)
    lse_ref = np.log(np.exp(x - m[:, None]).sum(axis=1)) + m
    np.testing.assert_allclose(lse, lse_ref, rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(loss, lse_ref - x[np.arange(129), target], rtol=1e-4, atol=1e-5)


def _sdpa64(q, k, v, keep, scale):
    s = np.matmul(q.astype(np.float64), np.swapaxes(k, -1, -2).astype(np.float64)) * scale
    s = np.where(keep, s, -np.inf)
    with np.errstate(invalid="ignore"):
        p = _softmax64(s)
    return np.matmul(p, v.astype(np.float64))


@pytest.mark.parametrize("scale", [None, 60.0, 1e-3])  # 60: scores far above the exp limit
@pytest.mark.parametrize("causal", [True, False])
def test_sdpa_matches_float64_on_both_paths(scale, causal):
    rng = _rng()
    q, k, v = (rng.standard_normal((2, 3, 17, 8)).astype(np.float32) for _ in range(3))
    out, _ = nb.sdpa(q, k, v, None, causal, scale)
    keep = np.tri(17, 17, dtype=bool) if causal else np.ones((17, 17), dtype=bool)
    c = 1 / math.sqrt(8) if scale is None else scale
    np.testing.assert_allclose(out, _sdpa64(q, k, v, keep, c), rtol=1e-4, atol=1e-5)


def test_sdpa_bool_mask_with_a_fully_masked_row_gives_nan_there_only():
    rng = _rng()
    q, k, v = (rng.standard_normal((2, 5, 4)).astype(np.float32) for _ in range(3))
    mask = rng.random((5, 5)) < 0.6
    mask[:, 0] = True
    mask[2] = False
    out, _ = nb.sdpa(q, k, v, mask)
    assert np.isnan(out[:, 2]).all() and not np.isnan(np.delete(out, 2, axis=1)).any()
    rows = [0, 1, 3, 4]
    ref = _sdpa64(q, k, v, mask, 0.5)
    np.testing.assert_allclose(out[:, rows], ref[:, rows], rtol=1e-5, atol=1e-6)


def test_sdpa_backward_row_sums_from_the_output_equal_those_from_the_scores():
    rng = _rng()
    q, k, v, gout = (rng.standard_normal((2, 2, 9, 4)).astype(np.float64) for _ in range(4))
    out, saved = nb.sdpa(q, k, v, None, True, None)
    with_out = nb.sdpa_backward(gout, q, k, v, out, saved, None, True, None)
    without = nb.sdpa_backward(gout, q, k, v, None, saved, None, True, None)
    for a, b in zip(with_out, without):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    tq, tk, tv = (torch.tensor(a, requires_grad=True) for a in (q, k, v))
    torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, is_causal=True).backward(torch.tensor(gout))
    for a, t in zip(with_out, (tq, tk, tv)):
        np.testing.assert_allclose(a, t.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("offset", [0.0, 1e3])
def test_layer_norm_and_backward_as_accurate_as_pytorch_float32(offset):
    """Errors against float64 at most twice PyTorch float32's (at offset 1000 both are
    ~3e-4: x itself carries 6e-5 of rounding around its mean)."""
    rng = _rng()
    x = (rng.standard_normal((65, 129)) + offset).astype(np.float32)
    w, b = (rng.standard_normal(129).astype(np.float32) for _ in range(2))
    gy = rng.standard_normal(x.shape).astype(np.float32)
    y, mean, rstd = nb.layer_norm(x, w, b, 1e-5)
    gx, gw, gb = nb.layer_norm_backward(gy, x, w, mean, rstd)
    results = {}
    for dt in (torch.float64, torch.float32):
        tx, tw, tb = (torch.tensor(a, dtype=dt, requires_grad=True) for a in (x, w, b))
        ty = torch.nn.functional.layer_norm(tx, (129,), tw, tb, 1e-5)
        ty.backward(torch.tensor(gy, dtype=dt))
        results[dt] = [t.detach().numpy().astype(np.float64) for t in (ty, tx.grad, tw.grad, tb.grad)]
    for ours, ref, t32 in zip((y, gx, gw, gb), results[torch.float64], results[torch.float32]):
        scale = np.abs(ref).max()
        assert np.abs(ours - ref).max() <= 2 * np.abs(t32 - ref).max() + 1e-6 * scale


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gelu_by_blocks_across_block_edges_and_strides(dtype):
    rng = _rng()
    n = 2 * nb._BLOCK + 17
    base = (rng.standard_normal((2, n)) * 6).astype(dtype)
    x = base[:, ::2]                                    # not contiguous
    x[0, :5] = [0.0, -0.0, 25.0, -25.0, 40.0]         # 0, and the float64 far tail
    y = nb.activation("gelu", x)
    x64 = x.astype(np.float64)
    erfc = np.vectorize(math.erfc)
    ref = x64 * 0.5 * erfc(-x64 / math.sqrt(2))
    # float32: results below its normal range (x < -13) keep only their absolute accuracy
    tiny = np.finfo(dtype).tiny
    np.testing.assert_allclose(y, ref, rtol=2e-5 if dtype == np.float32 else 1e-12, atol=tiny)
    gy = rng.standard_normal(x.shape).astype(dtype)
    g = nb.activation_backward("gelu", gy, x, y)
    pdf = np.exp(-x64 * x64 / 2) / math.sqrt(2 * math.pi)
    gref = gy * (0.5 * erfc(-x64 / math.sqrt(2)) + x64 * pdf)
    np.testing.assert_allclose(g, gref, rtol=1e-4 if dtype == np.float32 else 1e-10,
                               atol=1e-6 * np.abs(gref).max())
