"""The native nn kernels (softmax, cross-entropy, layer norm, flash attention, optimizer
updates) on a real GPU, against the NumPy backend run in float64 on the same float32 inputs
and, where PyTorch sees the GPU, against PyTorch on the device.

Every test here is marked ``gpu`` and skips with the reason elsewhere. Outputs come from
CuPy's memory pool, which is filled with NaN before each test, so an element a kernel forgets
to write stays NaN and fails the comparison.
"""
import math

import numpy as np
import pytest

pytestmark = pytest.mark.gpu

cp = pytest.importorskip("cupy", reason="the native kernels need CuPy")

from pyengine.backend import _cuda_nn as nn  # noqa: E402
from pyengine.backend import numpy_backend as nb  # noqa: E402

from _helpers import check_close  # noqa: E402

ODD = [1, 3, 17, 33, 65, 127, 129]
ALIGNED = [128, 1024]
LONG = [1031, 4096, 8191]  # past a warp per row: a block per row
STREAMED = [16389, 20480]  # past 16384 floats a row no longer fits in registers


@pytest.fixture(autouse=True)
def nan_pool():
    """Fill CuPy's pool with NaN so the outputs the wrappers allocate start as NaN."""
    pool = cp.get_default_memory_pool()
    pool.free_all_blocks()
    poison = cp.full((64 << 20) // 4, cp.nan, dtype=cp.float32)
    del poison
    yield


def to_dev(a):
    return cp.asarray(np.ascontiguousarray(a))


def f32(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def check(got, ref, tol=2e-5, what=""):
    """_helpers.check_close with the norm floored at 1e-2 per entry (inputs here are O(1)), so
    a reference that is exactly zero (S = 1 makes dQ vanish) asks for rounding-level agreement."""
    finite = np.count_nonzero(np.isfinite(np.asarray(ref, dtype=np.float64)))
    check_close(got, ref, tol, what, floor=1e-2 * math.sqrt(max(finite, 1)))


def torch_cuda():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("PyTorch does not see a CUDA device")
    return torch


# --------------------------------------------------------------------------------------
# softmax / log_softmax
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("cols", ODD + ALIGNED + LONG)
@pytest.mark.parametrize("log", [False, True])
def test_softmax_rows(rng, cols, log):
    rows = 37
    x = f32(rng, rows, cols) * 4
    x[0, :] += 80  # a large shift: the max must be subtracted
    gy = f32(rng, rows, cols)
    y = nn.softmax(to_dev(x), -1, log)
    check(y, nb.softmax(x.astype(np.float64), -1, log), what="softmax forward")
    gx = nn.softmax_backward(to_dev(gy), y, -1, log)
    y64 = nb.softmax(x.astype(np.float64), -1, log)
    check(gx, nb.softmax_backward(gy.astype(np.float64), y64, -1, log), tol=1e-4, what="softmax backward")


@pytest.mark.parametrize("cols", STREAMED)
@pytest.mark.parametrize("log", [False, True])
def test_softmax_streamed_rows(rng, cols, log):
    x, gy = f32(rng, 3, cols) * 4, f32(rng, 3, cols)
    y = nn.softmax(to_dev(x), -1, log)
    y64 = nb.softmax(x.astype(np.float64), -1, log)
    check(y, y64, what="softmax forward, streamed")
    gx = nn.softmax_backward(to_dev(gy), y, -1, log)
    check(gx, nb.softmax_backward(gy.astype(np.float64), y64, -1, log), tol=1e-4, what="softmax backward, streamed")


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_softmax_moves_dim_last(rng, dim):
    x = f32(rng, 17, 33, 5)
    y = nn.softmax(to_dev(x), dim)
    assert y.shape == x.shape
    check(y, nb.softmax(x.astype(np.float64), dim), what=f"softmax dim={dim}")


def test_softmax_masked_entries_and_all_masked_row(rng):
    x = f32(rng, 5, 65)
    x[1, ::2] = -np.inf
    x[3, :] = -np.inf  # PyTorch gives NaN for a row with nothing left
    y = cp.asnumpy(nn.softmax(to_dev(x), -1))
    assert np.isnan(y[3]).all()
    keep = [0, 1, 2, 4]
    check(y[keep], nb.softmax(x[keep].astype(np.float64), -1), what="softmax with -inf")


@pytest.mark.torch
def test_softmax_matches_torch_on_device(rng):
    torch = torch_cuda()
    x = to_dev(f32(rng, 129, 3000))
    got = cp.asnumpy(nn.softmax(x, -1, log=True))
    ref = torch.log_softmax(torch.as_tensor(x, device="cuda"), -1).cpu().numpy()
    check(got, ref, what="log_softmax vs torch")


# --------------------------------------------------------------------------------------
# cross-entropy
# --------------------------------------------------------------------------------------

def _at_version(families, version):
    from pyengine import _C
    for family in families:
        _C.set_kernel_version(family, version)


def test_kernel_version_selection_is_checked():
    from pyengine import _C
    with pytest.raises(ValueError, match="unknown family 'softmax'"):
        _C.set_kernel_version("softmax", 1)
    with pytest.raises(ValueError, match=r"versions 1\.\.2"):
        _C.set_kernel_version("layer_norm_backward", 3)
    _C.set_kernel_version("layer_norm_backward", 1)
    assert _C.kernel_version("layer_norm_backward") == 1
    _C.set_kernel_version("layer_norm_backward", 0)
    assert _C.kernel_version("layer_norm_backward") == 2


@pytest.mark.parametrize("classes", [9, 1024, 1031, 4100])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_cross_entropy_masked_nan_and_empty_rows(rng, classes, smoothing):
    """-inf logits (masked classes) add nothing, a NaN logit makes its row NaN, and a row of
    nothing but -inf gives lse = -inf and a NaN loss, as the NumPy reference."""
    n = 5
    logits = f32(rng, n, classes) * 3
    target = rng.integers(0, classes // 2, n) * 2 + 1  # odd classes: never masked
    logits[0, ::2] = -np.inf
    logits[1, classes // 3] = np.nan
    logits[2, :] = -np.inf
    logits[3, 1::3] = -np.inf
    logits[3, 1] = 5.0
    with np.errstate(all="ignore"):
        ref_loss, ref_lse = nb.cross_entropy(logits.astype(np.float64), target, -100, smoothing)
        ref_g = nb.cross_entropy_backward(np.ones(n), logits.astype(np.float64), target, ref_lse, -100, smoothing)
    loss, lse = nn.cross_entropy(to_dev(logits), to_dev(target), -100, smoothing)
    check(loss, ref_loss, what="loss with masked / NaN / empty rows")
    check(lse, ref_lse, what="lse with masked / NaN / empty rows")
    g = nn.cross_entropy_backward(cp.ones(n, dtype=cp.float32), to_dev(logits), to_dev(target), lse, -100, smoothing)
    check(g, ref_g, tol=1e-4, what="backward with masked / NaN / empty rows")


@pytest.mark.parametrize("classes", ODD + ALIGNED + LONG)
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_cross_entropy(rng, classes, smoothing):
    n = 33
    logits = f32(rng, n, classes) * 3
    target = rng.integers(0, classes, n)
    target[::5] = -100
    gloss = f32(rng, n)
    loss, lse = nn.cross_entropy(to_dev(logits), to_dev(target), -100, smoothing)
    l64 = logits.astype(np.float64)
    ref_loss, ref_lse = nb.cross_entropy(l64, target, -100, smoothing)
    check(loss, ref_loss, what="cross_entropy loss")
    check(lse, ref_lse, what="cross_entropy lse")
    g = nn.cross_entropy_backward(to_dev(gloss), to_dev(logits), to_dev(target), lse, -100, smoothing)
    ref_g = nb.cross_entropy_backward(gloss.astype(np.float64), l64, target, ref_lse, -100, smoothing)
    check(g, ref_g, tol=1e-4, what="cross_entropy backward")
    assert not cp.asnumpy(g)[::5].any(), "ignored rows must get zero gradient"


def test_cross_entropy_custom_ignore_index_and_scalar_gloss(rng):
    logits = f32(rng, 17, 9)
    target = rng.integers(0, 9, 17)
    target[3] = 4
    loss, lse = nn.cross_entropy(to_dev(logits), to_dev(target), 4, 0.0)
    ref_loss, ref_lse = nb.cross_entropy(logits.astype(np.float64), target, 4, 0.0)
    check(loss, ref_loss, what="loss with ignore_index=4")
    g = nn.cross_entropy_backward(cp.asarray(0.5, dtype=cp.float32), to_dev(logits), to_dev(target), lse, 4, 0.0)
    ref = nb.cross_entropy_backward(np.full(17, 0.5), logits.astype(np.float64), target, ref_lse, 4, 0.0)
    check(g, ref, tol=1e-4, what="backward with a broadcast gloss")


@pytest.mark.torch
def test_cross_entropy_matches_torch_on_device(rng):
    torch = torch_cuda()
    logits, target = f32(rng, 65, 1031), rng.integers(0, 1031, 65)
    target[7] = -100
    loss, _ = nn.cross_entropy(to_dev(logits), to_dev(target), -100, 0.2)
    ref = torch.nn.functional.cross_entropy(torch.tensor(logits, device="cuda"), torch.tensor(target, device="cuda"),
                                            reduction="none", label_smoothing=0.2)
    check(loss, ref.cpu().numpy(), what="cross_entropy vs torch")


def test_cross_entropy_bad_input(rng):
    logits = to_dev(f32(rng, 4, 5))
    with pytest.raises(IndexError, match="out of bounds for 5 classes"):
        nn.cross_entropy(logits, to_dev(np.array([0, 1, 5, 2])), -100, 0.0)
    with pytest.raises(TypeError, match="float32"):
        nn.cross_entropy(logits.astype(cp.float64), to_dev(np.array([0, 1, 2, 3])), -100, 0.0)
    with pytest.raises(ValueError, match=r"\(4,\)"):
        nn.cross_entropy(logits, to_dev(np.array([0, 1])), -100, 0.0)


# --------------------------------------------------------------------------------------
# layer norm
# --------------------------------------------------------------------------------------

@pytest.fixture(params=[1, 2], ids=["v1", "v2"])
def ln_version(request):
    """The layer norm backward at kernel version 1 (two kernels) or 2 (fused, d <= 16384)."""
    _at_version(("layer_norm_backward",), request.param)
    yield request.param
    _at_version(("layer_norm_backward",), 0)


@pytest.mark.parametrize("d", ODD + ALIGNED + LONG + [6144, 16384] + STREAMED)
@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm(rng, d, affine, ln_version):
    m = 65 if d < 16384 else 3
    x = f32(rng, m, d) * 2 + 30  # an offset far larger than the spread
    w = f32(rng, d) if affine else None
    b = f32(rng, d) if affine else None
    gy = f32(rng, m, d)
    y, mean, rstd = nn.layer_norm(to_dev(x), None if w is None else to_dev(w), None if b is None else to_dev(b), 1e-5)
    x64 = x.astype(np.float64)
    w64 = None if w is None else w.astype(np.float64)
    b64 = None if b is None else b.astype(np.float64)
    ry, rmean, rrstd = nb.layer_norm(x64, w64, b64, 1e-5)
    check(y, ry, tol=1e-4, what="layer_norm y")
    check(mean, rmean, what="layer_norm mean")
    check(rstd, rrstd, tol=1e-4, what="layer_norm rstd")
    gx, gw, gb = nn.layer_norm_backward(to_dev(gy), to_dev(x), None if w is None else to_dev(w), mean, rstd)
    rgx, rgw, rgb = nb.layer_norm_backward(gy.astype(np.float64), x64, w64, rmean, rrstd)
    check(gx, rgx, tol=2e-4, what="layer_norm gx")
    if affine:
        check(gw, rgw, tol=2e-4, what="layer_norm gw")
        check(gb, rgb, tol=1e-5, what="layer_norm gb")
    else:
        assert gw is None and gb is None


def test_layer_norm_params_reduce_over_many_rows(rng, ln_version):
    m, d = 70001, 33  # several chunks of rows in the two-stage column reduction
    x, gy, w = f32(rng, m, d), f32(rng, m, d), f32(rng, d)
    y, mean, rstd = nn.layer_norm(to_dev(x), to_dev(w), None, 1e-5)
    _, gw, gb = nn.layer_norm_backward(to_dev(gy), to_dev(x), to_dev(w), mean, rstd)
    _, rmean, rrstd = nb.layer_norm(x.astype(np.float64), None, None, 1e-5)
    _, rgw, rgb = nb.layer_norm_backward(gy.astype(np.float64), x.astype(np.float64), w.astype(np.float64),
                                         rmean, rrstd)
    check(gw, rgw, tol=1e-4, what="gw over 70001 rows")
    check(gb, rgb, tol=1e-4, what="gb over 70001 rows")


@pytest.mark.torch
def test_layer_norm_matches_torch_on_device(rng):
    torch = torch_cuda()
    x, w, b = f32(rng, 127, 768), f32(rng, 768), f32(rng, 768)
    y, _, _ = nn.layer_norm(to_dev(x), to_dev(w), to_dev(b), 1e-5)
    ref = torch.nn.functional.layer_norm(torch.tensor(x, device="cuda"), (768,), torch.tensor(w, device="cuda"),
                                         torch.tensor(b, device="cuda"), 1e-5)
    check(y, ref.cpu().numpy(), tol=1e-5, what="layer_norm vs torch")


# --------------------------------------------------------------------------------------
# flash attention
# --------------------------------------------------------------------------------------

def run_sdpa(rng, q, k, v, mask=None, causal=False, scale=None, tol=(5e-5, 2e-4)):
    """Forward and backward on the GPU vs the NumPy backend in float64."""
    out_shape = np.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2]) + (q.shape[-2], v.shape[-1])
    gout = f32(rng, *out_shape)
    dmask = None if mask is None else to_dev(mask)
    out, saved = nn.sdpa(to_dev(q), to_dev(k), to_dev(v), dmask, causal, scale, 0.0)
    up = [a.astype(np.float64) for a in (q, k, v)]
    rmask = mask.astype(np.float64) if mask is not None and mask.dtype != bool else mask
    rout, rsaved = nb.sdpa(*up, rmask, causal, scale, 0.0)
    check(out, rout, tol=tol[0], what="sdpa out")
    grads = nn.sdpa_backward(to_dev(gout), to_dev(q), to_dev(k), to_dev(v), out, saved, dmask, causal, scale, 0.0)
    rgrads = nb.sdpa_backward(gout.astype(np.float64), *up, rout, rsaved, rmask, causal, scale, 0.0)
    for name, g, r, a in zip("qkv", grads, rgrads, (q, k, v)):
        assert g.shape == a.shape
        check(g, r, tol=tol[1], what=f"sdpa grad {name}")
    return out


@pytest.mark.parametrize("l,s", [(1, 1), (3, 17), (17, 3), (33, 65), (65, 64), (127, 129), (257, 257), (64, 128)])
@pytest.mark.parametrize("e", [16, 32, 64, 128])
def test_sdpa_shapes(rng, l, s, e):
    b, h = 2, 3
    run_sdpa(rng, f32(rng, b, h, l, e), f32(rng, b, h, s, e), f32(rng, b, h, s, e))


@pytest.mark.parametrize("e,ev", [(8, 8), (24, 40), (80, 80), (100, 128), (128, 3)])
def test_sdpa_padded_head_dims(rng, e, ev):
    run_sdpa(rng, f32(rng, 2, 65, e), f32(rng, 2, 33, e), f32(rng, 2, 33, ev), scale=0.3)


@pytest.mark.parametrize("l,s", [(1, 1), (17, 17), (65, 65), (129, 129), (257, 257), (33, 100), (100, 33)])
@pytest.mark.parametrize("e", [32, 64])
def test_sdpa_causal(rng, l, s, e):
    run_sdpa(rng, f32(rng, 2, 2, l, e), f32(rng, 2, 2, s, e), f32(rng, 2, 2, s, e), causal=True)


def test_sdpa_bool_mask_broadcast_over_heads(rng):
    b, h, l, s, e = 3, 4, 65, 129, 64
    mask = rng.random((b, 1, 1, s)) < 0.7  # key padding, shared by heads and queries
    mask[..., 0] = True
    run_sdpa(rng, f32(rng, b, h, l, e), f32(rng, b, h, s, e), f32(rng, b, h, s, e), mask=mask)


def test_sdpa_bool_mask_per_query(rng):
    l, s = 129, 65
    mask = rng.random((l, s)) < 0.5
    mask[:, 3] = True
    run_sdpa(rng, f32(rng, 2, 3, l, 32), f32(rng, 2, 3, s, 32), f32(rng, 2, 3, s, 32), mask=mask)


def test_sdpa_additive_mask_full_and_batch_broadcast(rng):
    b, h, l, s = 2, 3, 33, 257
    add = f32(rng, b, h, l, s)
    run_sdpa(rng, f32(rng, b, h, l, 64), f32(rng, b, h, s, 64), f32(rng, b, h, s, 64), mask=add)
    add = f32(rng, h, l, s)  # broadcast over the batch
    add[0, 1, 5] = -np.inf
    run_sdpa(rng, f32(rng, b, h, l, 64), f32(rng, b, h, s, 64), f32(rng, b, h, s, 64), mask=add)


def test_sdpa_three_batch_dims_and_shared_kv(rng):
    q = f32(rng, 2, 3, 2, 17, 32)
    k, v = f32(rng, 2, 1, 1, 33, 32), f32(rng, 2, 1, 1, 33, 16)
    mask = rng.random((2, 1, 2, 17, 33)) < 0.8
    mask[..., 0] = True
    run_sdpa(rng, q, k, v, mask=mask)


def test_sdpa_all_masked_row_is_nan(rng):
    q, k, v = f32(rng, 1, 5, 16), f32(rng, 1, 7, 16), f32(rng, 1, 7, 16)
    mask = np.ones((5, 7), dtype=bool)
    mask[2] = False
    out, _ = nn.sdpa(to_dev(q), to_dev(k), to_dev(v), to_dev(mask), False, None, 0.0)
    out = cp.asnumpy(out)
    assert np.isnan(out[0, 2]).all()
    rout, _ = nb.sdpa(q.astype(np.float64), k.astype(np.float64), v.astype(np.float64), mask, False, None, 0.0)
    check(np.delete(out, 2, axis=1), np.delete(rout, 2, axis=1), tol=5e-5, what="rows beside the masked one")


def test_sdpa_dropout_takes_the_unfused_path(rng):
    q, k, v, gout = f32(rng, 2, 17, 16), f32(rng, 2, 33, 16), f32(rng, 2, 33, 8), f32(rng, 2, 17, 8)
    mask = rng.random((17, 33)) < 0.8
    mask[:, 0] = True
    out, saved = nn.sdpa(to_dev(q), to_dev(k), to_dev(v), to_dev(mask), False, None, 0.3)
    p, keep = (cp.asnumpy(a).astype(np.float64) for a in saved)
    assert np.isin(keep, [0.0, np.float32(1 / 0.7)]).all() and 0 < np.count_nonzero(keep) < keep.size
    up = [a.astype(np.float64) for a in (q, k, v)]
    _, (rp, _) = nb.sdpa(*up, mask, False, None, 0.0)
    check(p, rp, what="probabilities of the unfused path")
    check(out, np.matmul(rp * keep, up[2]), what="dropped-out attention output")
    grads = nn.sdpa_backward(to_dev(gout), to_dev(q), to_dev(k), to_dev(v), out, saved, to_dev(mask), False,
                             None, 0.3)
    rgrads = nb.sdpa_backward(gout.astype(np.float64), *up, None, (rp, keep), mask, False, None, 0.3)
    for name, g, r in zip("qkv", grads, rgrads):
        check(g, r, tol=1e-4, what=f"unfused sdpa grad {name}")


def test_sdpa_memory_is_linear_in_t(rng):
    t, e = 4096, 64
    q, k, v, gout = (to_dev(f32(rng, 1, 1, t, e)) for _ in range(4))
    pool = cp.get_default_memory_pool()
    cp.cuda.get_current_stream().synchronize()
    pool.free_all_blocks()
    before = pool.total_bytes()
    out, saved = nn.sdpa(q, k, v, None, True, None, 0.0)
    grads = nn.sdpa_backward(gout, q, k, v, out, saved, None, True, None, 0.0)
    cp.cuda.get_current_stream().synchronize()
    grown = pool.total_bytes() - before
    assert grown < t * t * 4 // 8, f"attention took {grown} bytes; a T x T float buffer is {t * t * 4}"
    assert all(bool(cp.isfinite(g).all()) for g in grads)


@pytest.mark.torch
@pytest.mark.parametrize("causal", [False, True])
def test_sdpa_matches_torch_on_device(rng, causal):
    torch = torch_cuda()
    q, k, v = (f32(rng, 2, 4, 257, 64) for _ in range(3))
    out, _ = nn.sdpa(to_dev(q), to_dev(k), to_dev(v), None, causal, None, 0.0)
    tq, tk, tv = (torch.tensor(a, device="cuda", dtype=torch.float64) for a in (q, k, v))
    ref = torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, is_causal=causal)
    check(out, ref.cpu().numpy(), tol=5e-5, what="sdpa vs torch (float64 on the device)")


def test_sdpa_bad_input(rng):
    q = to_dev(f32(rng, 2, 5, 129))
    with pytest.raises(ValueError, match="head dims up to 128"):
        nn.sdpa(q, q, q, None, False, None, 0.0)
    q = to_dev(f32(rng, 2, 5, 16))
    with pytest.raises(ValueError, match="does not broadcast"):
        nn.sdpa(q, q, q, to_dev(np.ones((4, 5), dtype=bool)), False, None, 0.0)
    with pytest.raises(ValueError, match="not both"):
        nn.sdpa(q, q, q, to_dev(np.ones((5, 5), dtype=bool)), True, None, 0.0)
    with pytest.raises(TypeError, match="float32"):
        nn.sdpa(q.astype(cp.float64), q, q, None, False, None, 0.0)


# --------------------------------------------------------------------------------------
# optimizer updates
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 17, 129, 100003])
@pytest.mark.parametrize("momentum,dampening,nesterov,wd", [
    (0.0, 0.0, False, 0.0), (0.9, 0.0, False, 0.0), (0.9, 0.1, False, 1e-2), (0.8, 0.0, True, 1e-3)])
def test_sgd_steps(rng, n, momentum, dampening, nesterov, wd):
    p = f32(rng, n)
    p64, dp = p.astype(np.float64), to_dev(p)
    buf64 = np.zeros(n) if momentum else None
    dbuf = cp.zeros(n, dtype=cp.float32) if momentum else None
    for step in range(4):
        g = f32(rng, n)
        nb.sgd_step(p64, g.astype(np.float64), buf64, 0.1, momentum, dampening, nesterov, wd, step == 0)
        nn.sgd_step(dp, to_dev(g), dbuf, 0.1, momentum, dampening, nesterov, wd, step == 0)
    check(dp, p64, tol=1e-5, what="sgd param")
    if momentum:
        check(dbuf, buf64, tol=1e-5, what="sgd buf")


@pytest.mark.parametrize("n", [1, 33, 127, 100003])
@pytest.mark.parametrize("decoupled,amsgrad,wd", [(False, False, 0.0), (False, True, 1e-2), (True, False, 1e-2),
                                                  (True, True, 0.1)])
def test_adam_steps(rng, n, decoupled, amsgrad, wd):
    p = f32(rng, n)
    p64, dp = p.astype(np.float64), to_dev(p)
    m64, v64 = np.zeros(n), np.zeros(n)
    mx64 = np.zeros(n) if amsgrad else None
    dm, dv = cp.zeros(n, dtype=cp.float32), cp.zeros(n, dtype=cp.float32)
    dmx = cp.zeros(n, dtype=cp.float32) if amsgrad else None
    for step in range(1, 6):
        g = f32(rng, n) * (0.1 if step % 2 else 1.0)  # shrinking gradients exercise amsgrad's max
        nb.adam_step(p64, g.astype(np.float64), m64, v64, mx64, step, 1e-2, 0.9, 0.999, 1e-8, wd, decoupled, amsgrad)
        nn.adam_step(dp, to_dev(g), dm, dv, dmx, step, 1e-2, 0.9, 0.999, 1e-8, wd, decoupled, amsgrad)
    check(dp, p64, tol=1e-6, what="adam param")
    check(dm, m64, tol=1e-5, what="adam exp_avg")
    check(dv, v64, tol=1e-5, what="adam exp_avg_sq")
    if amsgrad:
        check(dmx, mx64, tol=1e-5, what="adam max_exp_avg_sq")


@pytest.mark.torch
def test_adamw_matches_torch_on_device(rng):
    torch = torch_cuda()
    p0 = f32(rng, 1000)
    tp = torch.tensor(p0, device="cuda", requires_grad=True)
    opt = torch.optim.AdamW([tp], lr=1e-2, weight_decay=0.05, amsgrad=True)
    dp = to_dev(p0)
    dm, dv, dmx = (cp.zeros(1000, dtype=cp.float32) for _ in range(3))
    for step in range(1, 4):
        g = f32(rng, 1000)
        tp.grad = torch.tensor(g, device="cuda")
        opt.step()
        nn.adam_step(dp, to_dev(g), dm, dv, dmx, step, 1e-2, 0.9, 0.999, 1e-8, 0.05, True, True)
    check(dp, tp.detach().cpu().numpy(), tol=1e-6, what="adamw vs torch")


def test_optimizer_bad_input(rng):
    p = to_dev(f32(rng, 8))
    with pytest.raises(ValueError, match="momentum buffer"):
        nn.sgd_step(p, p, None, 0.1, 0.9, 0.0, False, 0.0, True)
    with pytest.raises(ValueError, match=r"grad \(7,\) does not match param \(8,\)"):
        nn.sgd_step(p, p[:7], None, 0.1, 0.0, 0.0, False, 0.0, True)
    with pytest.raises(ValueError, match="contiguous"):
        nn.adam_step(p, p, cp.zeros(8, dtype=cp.float32), cp.zeros(16, dtype=cp.float32)[::2], None, 1, 1e-3,
                     0.9, 0.999, 1e-8, 0.0, False, False)
