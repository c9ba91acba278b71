"""scaled_dot_product_attention against a plain float64 NumPy softmax(q k^T) v, gradcheck of
every masking option, PyTorch CPU where marked."""
import math

import numpy as np
import pytest

import pyengine as pe
import pyengine.nn.functional as F
from pyengine.autograd import gradcheck


def leaf(a):
    return pe.tensor(np.asarray(a, dtype=np.float64), requires_grad=True)


def sdpa_ref(q, k, v, mask=None, is_causal=False, scale=None):
    """mask: bool (True = may attend) or additive; causal is top-left aligned, as PyTorch."""
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    s = q @ np.swapaxes(k, -1, -2) * scale
    L, S = s.shape[-2:]
    if is_causal:
        s = np.where(np.tril(np.ones((L, S), dtype=bool)), s, -np.inf)
    if mask is not None:
        s = np.where(mask, s, -np.inf) if mask.dtype == bool else s + mask
    p = np.exp(s - s.max(axis=-1, keepdims=True))
    return (p / p.sum(axis=-1, keepdims=True)) @ v


def qkv(rng, batch, L, S, E, Ev):
    return (rng.standard_normal(batch + (L, E)), rng.standard_normal(batch + (S, E)),
            rng.standard_normal(batch + (S, Ev)))


@pytest.mark.parametrize("batch", [(), (3,), (2, 3)])
def test_sdpa_plain_matches_reference(rng, batch):
    q, k, v = qkv(rng, batch, 5, 7, 4, 3)
    y = F.scaled_dot_product_attention(pe.tensor(q), pe.tensor(k), pe.tensor(v))
    np.testing.assert_allclose(y.detach().numpy(), sdpa_ref(q, k, v), rtol=1e-10, atol=1e-12)


def _masks(rng, L, S):
    """A bool mask with at least one allowed key per query, and an additive float mask."""
    allowed = rng.uniform(size=(L, S)) < 0.6
    allowed[np.arange(L), rng.integers(0, S, L)] = True
    return allowed, rng.standard_normal((1, L, S))


@pytest.mark.parametrize("option", ["none", "bool", "additive", "causal", "causal_long_keys", "scale"])
def test_sdpa_options_match_reference_and_gradcheck(rng, option):
    L, S = (4, 6) if option == "causal_long_keys" else (5, 5) if option == "causal" else (3, 5)
    q, k, v = qkv(rng, (2,), L, S, 3, 2)
    bool_mask, add_mask = _masks(rng, L, S)
    kwargs, ref_kwargs = {}, {}
    if option == "bool":
        kwargs["attn_mask"], ref_kwargs["mask"] = pe.tensor(bool_mask), bool_mask
    elif option == "additive":
        kwargs["attn_mask"], ref_kwargs["mask"] = pe.tensor(add_mask), add_mask
    elif option.startswith("causal"):
        kwargs["is_causal"] = ref_kwargs["is_causal"] = True
    elif option == "scale":
        kwargs["scale"] = ref_kwargs["scale"] = 0.37
    y = F.scaled_dot_product_attention(leaf(q), leaf(k), leaf(v), **kwargs)
    np.testing.assert_allclose(y.detach().numpy(), sdpa_ref(q, k, v, **ref_kwargs), rtol=1e-10, atol=1e-12)
    assert gradcheck(lambda a, b, c: F.scaled_dot_product_attention(a, b, c, **kwargs),
                     (leaf(q), leaf(k), leaf(v)))


def test_sdpa_grouped_query_heads_share_key_value_heads(rng):
    q, k, v = rng.standard_normal((2, 6, 3, 4)), rng.standard_normal((2, 2, 5, 4)), rng.standard_normal((2, 2, 5, 3))
    y = F.scaled_dot_product_attention(leaf(q), leaf(k), leaf(v), is_causal=True, enable_gqa=True)
    # Query heads 0-2 read key/value head 0, heads 3-5 head 1.
    ref = sdpa_ref(q, np.repeat(k, 3, axis=1), np.repeat(v, 3, axis=1), is_causal=True)
    np.testing.assert_allclose(y.detach().numpy(), ref, rtol=1e-10, atol=1e-12)
    assert gradcheck(lambda a, b, c: F.scaled_dot_product_attention(a, b, c, enable_gqa=True),
                     (leaf(q[:1, :4, :2]), leaf(k[:1, :, :3]), leaf(v[:1, :, :3])))


def test_sdpa_fully_masked_row_is_nan(rng):
    q, k, v = qkv(rng, (1,), 2, 3, 4, 4)
    mask = np.ones((2, 3), dtype=bool)
    mask[1] = False
    y = F.scaled_dot_product_attention(pe.tensor(q), pe.tensor(k), pe.tensor(v),
                                       attn_mask=pe.tensor(mask)).detach().numpy()
    assert np.isnan(y[0, 1]).all() and np.isfinite(y[0, 0]).all()


def test_sdpa_dropout_is_random_and_differentiable(rng):
    q, k, v = qkv(rng, (2,), 3, 4, 3, 2)
    plain = sdpa_ref(q, k, v)
    pe.manual_seed(0)
    y = F.scaled_dot_product_attention(pe.tensor(q), pe.tensor(k), pe.tensor(v), dropout_p=0.5)
    assert not np.allclose(y.detach().numpy(), plain)

    def reseeded(a, b, c):
        pe.manual_seed(11)  # one dropout mask for every finite-difference evaluation
        return F.scaled_dot_product_attention(a, b, c, dropout_p=0.3)
    assert gradcheck(reseeded, (leaf(q), leaf(k), leaf(v)))


@pytest.mark.torch
def test_sdpa_gqa_matches_torch(rng):
    torch = pytest.importorskip("torch")
    q, k, v = rng.standard_normal((2, 4, 3, 5)), rng.standard_normal((2, 2, 6, 5)), rng.standard_normal((2, 2, 6, 3))
    y = F.scaled_dot_product_attention(pe.tensor(q), pe.tensor(k), pe.tensor(v), enable_gqa=True)
    ty = torch.nn.functional.scaled_dot_product_attention(
        torch.tensor(q), torch.tensor(k), torch.tensor(v), enable_gqa=True)
    np.testing.assert_allclose(y.numpy(), ty.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.torch
@pytest.mark.parametrize("option", ["none", "bool", "additive", "causal"])
def test_sdpa_matches_torch_with_grads(rng, option):
    torch = pytest.importorskip("torch")
    q, k, v = qkv(rng, (2, 3), 5, 7, 4, 6)
    bool_mask, add_mask = _masks(rng, 5, 7)
    ours_kw, torch_kw = {}, {}
    if option == "bool":
        ours_kw["attn_mask"], torch_kw["attn_mask"] = pe.tensor(bool_mask), torch.tensor(bool_mask)
    elif option == "additive":
        ours_kw["attn_mask"], torch_kw["attn_mask"] = pe.tensor(add_mask), torch.tensor(add_mask)
    elif option == "causal":
        ours_kw["is_causal"] = torch_kw["is_causal"] = True
    ours = [leaf(a) for a in (q, k, v)]
    theirs = [torch.tensor(a, requires_grad=True) for a in (q, k, v)]
    y = F.scaled_dot_product_attention(*ours, **ours_kw)
    ty = torch.nn.functional.scaled_dot_product_attention(*theirs, **torch_kw)
    gy = rng.standard_normal(y.shape)
    y.backward(pe.tensor(gy))
    ty.backward(torch.tensor(gy))
    np.testing.assert_allclose(y.detach().numpy(), ty.detach().numpy(), rtol=1e-10, atol=1e-12)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-9, atol=1e-12)
