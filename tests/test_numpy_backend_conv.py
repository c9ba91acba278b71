"""NumPy backend: conv2d and pooling against naive float64 loops and finite differences."""
import numpy as np
import pytest

from _helpers import avg_pool_ref, pool_out
from pyengine.backend import numpy_backend as nb


def numgrad(f, x, gy, eps=1e-6):
    """Central-difference gradient of sum(f(x) * gy) with respect to x (float64)."""
    g = np.zeros_like(x)
    flat, gflat = x.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        up = np.sum(f(x) * gy)
        flat[i] = old - eps
        down = np.sum(f(x) * gy)
        flat[i] = old
        gflat[i] = (up - down) / (2 * eps)
    return g


def conv_ref(x, w, b, stride, padding, dilation, groups):
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    xp = np.zeros((n, c, h + 2 * ph, wd + 2 * pw))
    xp[:, :, ph:ph + h, pw:pw + wd] = x
    ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    wo = (wd + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    og = o // groups
    y = np.zeros((n, o, ho, wo))
    for b_ in range(n):
        for oc in range(o):
            g = oc // og
            for i in range(ho):
                for j in range(wo):
                    acc = 0.0 if b is None else b[oc]
                    for ci in range(cg):
                        for u in range(kh):
                            for v in range(kw):
                                acc += (xp[b_, g * cg + ci, i * sh + u * dh, j * sw + v * dw]
                                        * w[oc, ci, u, v])
                    y[b_, oc, i, j] = acc
    return y


# (N, C, H, W, O, kernel, stride, padding, dilation, groups): odd sizes, every option mixed.
CONV_CASES = [
    (1, 1, 5, 5, 1, (3, 3), (1, 1), (0, 0), (1, 1), 1),
    (3, 2, 7, 6, 3, (3, 2), (2, 1), (1, 1), (1, 1), 1),
    (2, 4, 9, 7, 6, (3, 3), (1, 2), (2, 1), (2, 1), 2),
    (1, 3, 8, 5, 3, (2, 3), (3, 2), (1, 0), (1, 2), 3),
    (2, 4, 6, 6, 4, (1, 1), (2, 2), (0, 0), (1, 1), 4),
    (1, 2, 5, 7, 5, (5, 3), (1, 1), (2, 1), (1, 1), 1),
]


@pytest.mark.parametrize("n,c,h,w,o,k,s,p,d,g", CONV_CASES)
def test_conv2d_forward_matches_loops(rng, n, c, h, w, o, k, s, p, d, g):
    x = rng.standard_normal((n, c, h, w))
    wt = rng.standard_normal((o, c // g) + k)
    b = rng.standard_normal(o)
    np.testing.assert_allclose(nb.conv2d(x, wt, b, s, p, d, g),
                               conv_ref(x, wt, b, s, p, d, g), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(nb.conv2d(x, wt, None, s, p, d, g),
                               conv_ref(x, wt, None, s, p, d, g), rtol=1e-12, atol=1e-12)


def test_conv2d_float32_close_to_float64(rng):
    x = rng.standard_normal((3, 4, 17, 9))
    wt = rng.standard_normal((5, 4, 3, 3))
    b = rng.standard_normal(5)
    y32 = nb.conv2d(x.astype(np.float32), wt.astype(np.float32), b.astype(np.float32),
                    (1, 1), (1, 1), (1, 1), 1)
    assert y32.dtype == np.float32 and y32.flags.c_contiguous
    np.testing.assert_allclose(y32, conv_ref(x, wt, b, (1, 1), (1, 1), (1, 1), 1),
                               rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("n,c,h,w,o,k,s,p,d,g", CONV_CASES)
def test_conv2d_backward_finite_differences(rng, n, c, h, w, o, k, s, p, d, g):
    x = rng.standard_normal((n, c, h, w))
    wt = rng.standard_normal((o, c // g) + k)
    b = rng.standard_normal(o)
    gy = rng.standard_normal(nb.conv2d(x, wt, b, s, p, d, g).shape)
    gx, gw, gb = nb.conv2d_backward(gy, x, wt, s, p, d, g)
    np.testing.assert_allclose(gx, numgrad(lambda a: nb.conv2d(a, wt, b, s, p, d, g), x, gy),
                               rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(gw, numgrad(lambda a: nb.conv2d(x, a, b, s, p, d, g), wt, gy),
                               rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(gb, numgrad(lambda a: nb.conv2d(x, wt, a, s, p, d, g), b, gy),
                               rtol=1e-6, atol=1e-7)


def test_conv2d_backward_respects_needs(rng):
    x = rng.standard_normal((2, 3, 5, 5))
    wt = rng.standard_normal((4, 3, 3, 3))
    gy = rng.standard_normal((2, 4, 3, 3))
    gx, gw, gb = nb.conv2d_backward(gy, x, wt, (1, 1), (0, 0), (1, 1), 1, needs=(False, True, False))
    assert gx is None and gb is None and gw.shape == wt.shape


@pytest.mark.torch
@pytest.mark.parametrize("n,c,h,w,o,k,s,p,d,g", CONV_CASES[1:4])
def test_conv2d_matches_torch(rng, n, c, h, w, o, k, s, p, d, g):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    wt = rng.standard_normal((o, c // g) + k).astype(np.float32)
    b = rng.standard_normal(o).astype(np.float32)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, wt, b))
    ty = torch.nn.functional.conv2d(tx, tw, tb, s, p, d, g)
    gy = rng.standard_normal(tuple(ty.shape)).astype(np.float32)
    ty.backward(torch.tensor(gy))
    np.testing.assert_allclose(nb.conv2d(x, wt, b, s, p, d, g), ty.detach().numpy(),
                               rtol=1e-5, atol=1e-5)
    for ours, theirs in zip(nb.conv2d_backward(gy, x, wt, s, p, d, g), (tx, tw, tb)):
        np.testing.assert_allclose(ours, theirs.grad.numpy(), rtol=1e-4, atol=1e-4)


def test_conv2d_bad_input_names_shapes(rng):
    x = rng.standard_normal((1, 3, 5, 5))
    with pytest.raises(ValueError, match=r"\(1, 3, 5, 5\).*\(4, 2, 3, 3\)"):
        nb.conv2d(x, rng.standard_normal((4, 2, 3, 3)), None, (1, 1), (0, 0), (1, 1), 1)
    with pytest.raises(ValueError, match="groups=2"):
        nb.conv2d(x, rng.standard_normal((4, 1, 3, 3)), None, (1, 1), (0, 0), (1, 1), 2)
    with pytest.raises(ValueError, match="smaller than the dilated kernel"):
        nb.conv2d(x, rng.standard_normal((4, 3, 7, 7)), None, (1, 1), (0, 0), (1, 1), 1)
    with pytest.raises(TypeError, match="float64.*float32"):
        nb.conv2d(x, rng.standard_normal((4, 3, 3, 3)).astype(np.float32), None,
                  (1, 1), (0, 0), (1, 1), 1)


# ------------------------------------------------------------------------------------------
# Pooling
# ------------------------------------------------------------------------------------------

def max_pool_ref(x, k, s, p, d, ceil_mode):
    """Loops over every window; the first maximum among in-bounds taps wins."""
    n, c, h, w = x.shape
    ho, wo = (pool_out(h, k[0], s[0], p[0], d[0], ceil_mode),
              pool_out(w, k[1], s[1], p[1], d[1], ceil_mode))
    y = np.zeros((n, c, ho, wo))
    idx = np.zeros((n, c, ho, wo), dtype=np.int64)
    for a in range(n):
        for ch in range(c):
            for i in range(ho):
                for j in range(wo):
                    best, where = -np.inf, -1
                    for u in range(k[0]):
                        for v in range(k[1]):
                            r, q = i * s[0] - p[0] + u * d[0], j * s[1] - p[1] + v * d[1]
                            if 0 <= r < h and 0 <= q < w and (where < 0 or x[a, ch, r, q] > best):
                                best, where = x[a, ch, r, q], r * w + q
                    y[a, ch, i, j], idx[a, ch, i, j] = best, where
    return y, idx


# (N, C, H, W, kernel, stride, padding, dilation, ceil_mode)
POOL_CASES = [
    (2, 3, 8, 8, (2, 2), (2, 2), (0, 0), (1, 1), False),
    (1, 2, 7, 9, (3, 3), (2, 2), (1, 1), (1, 1), True),
    (2, 1, 9, 5, (3, 2), (1, 2), (1, 1), (2, 1), False),
    (1, 3, 5, 5, (2, 2), (1, 1), (1, 0), (1, 1), True),
    (3, 2, 11, 7, (3, 3), (3, 2), (0, 1), (1, 1), True),
]


@pytest.mark.parametrize("n,c,h,w,k,s,p,d,ceil_mode", POOL_CASES)
def test_max_pool2d_forward_and_indices(rng, n, c, h, w, k, s, p, d, ceil_mode):
    x = rng.standard_normal((n, c, h, w))
    y, idx = nb.max_pool2d(x, k, s, p, d, ceil_mode)
    y_ref, idx_ref = max_pool_ref(x, k, s, p, d, ceil_mode)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(idx, idx_ref)
    assert idx.dtype == np.int64


def test_max_pool2d_ties_pick_first_tap(rng):
    x = np.maximum(rng.standard_normal((2, 3, 6, 6)), 0)   # relu output: many tied zeros
    y, idx = nb.max_pool2d(x, (3, 3), (1, 1), (0, 0))
    np.testing.assert_array_equal(idx, max_pool_ref(x, (3, 3), (1, 1), (0, 0), (1, 1), False)[1])


def test_max_pool2d_propagates_nan(rng):
    x = rng.standard_normal((1, 1, 4, 4))
    x[0, 0, 1, 0] = np.nan
    y, idx = nb.max_pool2d(x, (2, 2), (2, 2), (0, 0))
    assert np.isnan(y[0, 0, 0, 0]) and idx[0, 0, 0, 0] == 4
    assert not np.isnan(y[0, 0, 1, 1])


def test_max_pool2d_all_neg_inf_window_points_inside(rng):
    x = rng.standard_normal((1, 2, 5, 6))
    x[:, :, :2, :] = -np.inf       # windows over the top rows see only -inf and padding
    y, idx = nb.max_pool2d(x, (3, 3), (2, 2), (1, 1), (1, 1), True)
    np.testing.assert_array_equal(idx, max_pool_ref(x, (3, 3), (2, 2), (1, 1), (1, 1), True)[1])
    gx = nb.max_pool2d_backward(np.ones_like(y), idx, x.shape)
    assert gx.sum() == y.size


@pytest.mark.parametrize("n,c,h,w,k,s,p,d,ceil_mode", POOL_CASES)
def test_max_pool2d_backward_finite_differences(rng, n, c, h, w, k, s, p, d, ceil_mode):
    # Values at least 0.05 apart, so no window's top two swap within the difference step.
    x = (rng.permutation(n * c * h * w).reshape(n, c, h, w) + 0.5 * rng.random((n, c, h, w))) * 0.1
    y, idx = nb.max_pool2d(x, k, s, p, d, ceil_mode)
    gy = rng.standard_normal(y.shape)
    gx = nb.max_pool2d_backward(gy, idx, x.shape)
    # Max pooling is piecewise linear, so a step of 1e-3 (well inside the 0.05 gaps) is exact;
    # at 1e-6 the rounding of sums over values up to ~50 reached 2e-7 (seen at seed 3358851483).
    np.testing.assert_allclose(gx, numgrad(lambda a: nb.max_pool2d(a, k, s, p, d, ceil_mode)[0],
                                           x, gy, eps=1e-3), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("n,c,h,w,k,s,p,d,ceil_mode", [c for c in POOL_CASES if c[7] == (1, 1)])
@pytest.mark.parametrize("count_include_pad,divisor_override", [(True, None), (False, None), (True, 5)])
def test_avg_pool2d_forward_and_backward(rng, n, c, h, w, k, s, p, d, ceil_mode,
                                         count_include_pad, divisor_override):
    x = rng.standard_normal((n, c, h, w))
    args = (k, s, p, ceil_mode, count_include_pad, divisor_override)
    y = nb.avg_pool2d(x, *args)
    np.testing.assert_allclose(y, avg_pool_ref(x, *args), rtol=1e-12, atol=1e-12)
    gy = rng.standard_normal(y.shape)
    np.testing.assert_allclose(nb.avg_pool2d_backward(gy, x.shape, *args),
                               numgrad(lambda a: nb.avg_pool2d(a, *args), x, gy),
                               rtol=1e-6, atol=1e-7)


@pytest.mark.torch
@pytest.mark.parametrize("n,c,h,w,k,s,p,d,ceil_mode", POOL_CASES)
def test_pools_match_torch(rng, n, c, h, w, k, s, p, d, ceil_mode):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    ty, tidx = F.max_pool2d(torch.tensor(x), k, s, p, d, ceil_mode, return_indices=True)
    y, idx = nb.max_pool2d(x, k, s, p, d, ceil_mode)
    np.testing.assert_array_equal(y, ty.numpy())
    np.testing.assert_array_equal(idx, tidx.numpy())
    if d == (1, 1):
        for cip in (True, False):
            np.testing.assert_allclose(nb.avg_pool2d(x, k, s, p, ceil_mode, cip, None),
                                       F.avg_pool2d(torch.tensor(x), k, s, p, ceil_mode, cip).numpy(),
                                       rtol=1e-6, atol=1e-6)


def test_pool_bad_input(rng):
    x = rng.standard_normal((1, 2, 5, 5))
    with pytest.raises(ValueError, match="half of kernel_size"):
        nb.max_pool2d(x, (2, 2), (2, 2), (2, 2))
    with pytest.raises(ValueError, match="4-D"):
        nb.avg_pool2d(x[0], (2, 2), (2, 2), (0, 0))
    with pytest.raises(ValueError, match="too small"):
        nb.max_pool2d(x, (7, 7), (1, 1), (0, 0))
