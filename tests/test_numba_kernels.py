"""Every Numba kernel family against the NumPy backend run in float64 (or plain NumPy).

Under the CUDA simulator (the default here, see conftest.py) the kernels run on the CPU:
sizes stay <= 64 and are not multiples of any tile (16 for the GEMMs, 32 for row and
attention blocks), so the edge guards are exercised, and the simulator raises IndexError on
any out-of-bounds access a guard would miss. Arrays go through the backend's own
asarray/to_numpy, so on a real GPU (PYENGINE_DEVICE_TESTS=1) the same tests run on CuPy.
"""
import time

import numpy as np
import pytest
from numba import cuda, float32

from pyengine.backend import check_table
from pyengine.backend import numba_backend as nb
from pyengine.backend import numpy_backend as ref

pytestmark = pytest.mark.cudasim

RTOL, ATOL = 2e-5, 2e-5


def dev(a):
    return nb.asarray(np.asarray(a, np.float32))


def host(a):
    return nb.to_numpy(a)


def f64(*arrays):
    return [np.asarray(a, np.float64) for a in arrays]


def rand(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def close(actual, expected, rtol=RTOL, atol=ATOL):
    actual = host(actual)
    assert actual.dtype == np.float32
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)


def test_table_complete_and_simulator_available():
    check_table(nb)
    ok, reason = nb.available()
    assert ok, reason
    assert nb.name == "numba" and nb.device == "cuda"


def test_transfer_copies(rng):
    a = rand(rng, 3, 5)
    d = nb.asarray(a)
    a[0, 0] = 7
    assert host(d)[0, 0] != 7
    np.testing.assert_array_equal(host(nb.asarray(a, np.float64)), a.astype(np.float64))


def test_simulator_block_shares_one_shared_array():
    """Every thread of a block gets the same cuda.shared.array even when threads switch while
    it is allocated. Numba's simulator looked the array up and inserted it without a lock; one
    CI run under load saw row 0 of a linear's gemm tile read another (uninitialised) slab."""
    from pyengine.backend._numba_kernels import SIMULATOR, launch
    if not SIMULATOR:
        pytest.skip("a CUDA simulator property")

    class SlowDim:
        def __index__(self):
            time.sleep(0.002)  # the allocating thread is switched out, as under load
            return 32

    shape = (SlowDim(),)

    @cuda.jit
    def reverse(out):
        s = cuda.shared.array(shape, float32)
        t = cuda.threadIdx.x
        s[t] = t
        cuda.syncthreads()
        out[t] = s[31 - t]

    out = np.zeros(32, np.float32)
    launch(reverse, 1, 32, out)
    np.testing.assert_array_equal(out, np.arange(31, -1, -1, dtype=np.float32))


# -------------------------------------------------------------------------- matmul/linear

@pytest.mark.parametrize("sa, sb", [((1, 1), (1, 1)), ((17, 33), (33, 3)), ((2, 17, 33), (33, 5)),
                                    ((2, 1, 5, 3), (1, 3, 3, 18)), ((2, 0, 4), (4, 3))])
def test_matmul(rng, sa, sb):
    a, b = rand(rng, *sa), rand(rng, *sb)
    close(nb.matmul(dev(a), dev(b)), np.matmul(*f64(a, b)))


def test_matmul_reads_transposed_views(rng):
    a, b = rand(rng, 33, 17), rand(rng, 2, 3, 33)
    at, bt = dev(a).T, nb.xp.swapaxes(dev(b), -1, -2)
    close(nb.matmul(at, bt), np.matmul(a.T.astype(np.float64), np.swapaxes(b, -1, -2)))


@pytest.mark.parametrize("activation", [None, "relu", "gelu", "gelu_tanh"])
def test_linear_fuses_bias_and_activation(rng, activation):
    x, w, b = rand(rng, 2, 3, 19), rand(rng, 17, 19), rand(rng, 17)
    expected = ref.linear(*f64(x, w, b), activation=activation)
    close(nb.linear(dev(x), dev(w), dev(b), activation), expected)
    close(nb.linear(dev(x), dev(w), None, activation), ref.linear(*f64(x, w), None, activation))


def test_family_errors_name_op_dtype_and_shapes(rng):
    with pytest.raises(TypeError, match="numba matmul supports float32, got float64 for a"):
        nb.matmul(nb.asarray(rng.standard_normal((2, 3))), dev(rand(rng, 3, 2)))
    with pytest.raises(ValueError, match=r"\(2, 3\) and \(4, 2\)"):
        nb.matmul(dev(rand(rng, 2, 3)), dev(rand(rng, 4, 2)))
    with pytest.raises(ValueError, match="batch dimensions"):
        nb.matmul(dev(rand(rng, 2, 2, 3)), dev(rand(rng, 3, 3, 2)))
    with pytest.raises(ValueError, match="head dims up to"):
        q = dev(rand(rng, 1, 2, 129))
        nb.sdpa(q, q, q)
    with pytest.raises(TypeError, match="numba sgd_step: param must be a contiguous float32"):
        p = dev(rand(rng, 4, 3)).T
        nb.sgd_step(p, p, None, 0.1, 0.0, 0.0, False, 0.0, True)


# -------------------------------------------------------------------------- convolution

CONV_CASES = [  # x shape, w shape, stride, padding, dilation, groups
    ((2, 3, 7, 5), (4, 3, 3, 3), (1, 1), (1, 1), (1, 1), 1),
    ((1, 4, 9, 8), (6, 2, 3, 2), (2, 1), (1, 0), (1, 2), 2),
    ((3, 1, 6, 6), (17, 1, 1, 1), (1, 1), (0, 0), (1, 1), 1),
    ((1, 2, 5, 7), (3, 2, 5, 5), (3, 2), (2, 2), (1, 1), 1),
]


@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: f"x{c[0]}w{c[1]}s{c[2]}p{c[3]}d{c[4]}g{c[5]}")
def test_conv2d_forward_and_backward(rng, case):
    xs, ws, stride, padding, dilation, groups = case
    x, w, b = rand(rng, *xs), rand(rng, *ws), rand(rng, ws[0])
    geo = (stride, padding, dilation, groups)
    y = ref.conv2d(*f64(x, w, b), *geo)
    close(nb.conv2d(dev(x), dev(w), dev(b), *geo), y, atol=1e-4)
    gy = rand(rng, *y.shape)
    gx, gw, gb = ref.conv2d_backward(*f64(gy, x, w), *geo)
    ngx, ngw, ngb = nb.conv2d_backward(dev(gy), dev(x), dev(w), *geo)
    close(ngx, gx, atol=1e-4)
    close(ngw, gw, atol=1e-4)
    close(ngb, gb, atol=1e-4)
    none = nb.conv2d_backward(dev(gy), dev(x), dev(w), *geo, needs=(False, True, False))
    assert none[0] is None and none[2] is None


# -------------------------------------------------------------------------- pooling

@pytest.mark.parametrize("k, s, p, d, ceil", [((3, 3), (2, 2), (1, 1), (1, 1), True),
                                              ((2, 3), (1, 2), (0, 1), (2, 1), False),
                                              ((3, 3), (1, 1), (1, 1), (1, 1), False)])
def test_max_pool(rng, k, s, p, d, ceil):
    x = rand(rng, 2, 3, 7, 9)
    y, idx = ref.max_pool2d(x, k, s, p, d, ceil)
    ny, nidx = nb.max_pool2d(dev(x), k, s, p, d, ceil)
    close(ny, y, rtol=0, atol=0)
    np.testing.assert_array_equal(host(nidx), idx)
    gy = rand(rng, *y.shape)
    close(nb.max_pool2d_backward(dev(gy), nidx, x.shape),
          ref.max_pool2d_backward(gy.astype(np.float64), idx, x.shape))


@pytest.mark.parametrize("k, s, p, ceil, include, div", [((3, 3), (2, 2), (1, 1), True, True, None),
                                                         ((3, 2), (2, 1), (1, 1), True, False, None),
                                                         ((2, 2), (1, 3), (0, 1), False, True, 3),
                                                         ((3, 3), (1, 1), (0, 0), False, False, None)])
def test_avg_pool(rng, k, s, p, ceil, include, div):
    x = rand(rng, 2, 3, 7, 8)
    args = (k, s, p, ceil, include, div)
    y = ref.avg_pool2d(x.astype(np.float64), *args)
    close(nb.avg_pool2d(dev(x), *args), y)
    gy = rand(rng, *y.shape)
    close(nb.avg_pool2d_backward(dev(gy), x.shape, *args),
          ref.avg_pool2d_backward(gy.astype(np.float64), x.shape, *args))


# -------------------------------------------------------------------------- activations

ACTS = [("relu", None), ("leaky_relu", None), ("leaky_relu", 0.2), ("gelu", None),
        ("gelu", "tanh"), ("sigmoid", None), ("tanh", None), ("selu", None)]


@pytest.mark.parametrize("name, param", ACTS)
def test_activation_forward_and_backward(rng, name, param):
    x = rng.uniform(-4, 4, (3, 37)).astype(np.float32)
    gy = rand(rng, 3, 37)
    y = ref.activation(name, x.astype(np.float64), param)
    ny = nb.activation(name, dev(x), param)
    close(ny, y)
    expected = ref.activation_backward(name, *f64(gy, x), y, param)
    close(nb.activation_backward(name, dev(gy), dev(x), ny, param), expected)
    close(nb.activation_backward(name, dev(gy), dev(x), None, param), expected)


def test_activation_rejects_unknown(rng):
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        nb.activation("swish", dev(rand(rng, 3)))


# -------------------------------------------------------------------------- softmax / CE

@pytest.mark.parametrize("shape, dim", [((3, 17), -1), ((33, 2), 0), ((2, 3, 5), 1), ((1,), 0)])
@pytest.mark.parametrize("log", [False, True])
def test_softmax_forward_and_backward(rng, shape, dim, log):
    x, gy = rand(rng, *shape) * 3, rand(rng, *shape)
    y = ref.softmax(x.astype(np.float64), dim, log)
    ny = nb.softmax(dev(x), dim, log)
    close(ny, y)
    close(nb.softmax_backward(dev(gy), ny, dim, log), ref.softmax_backward(gy.astype(np.float64), y, dim, log))


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # -inf - -inf, on purpose
def test_softmax_row_of_minus_inf_is_nan(rng):
    x = rand(rng, 2, 5)
    x[1] = -np.inf
    y = host(nb.softmax(dev(x), -1))
    assert np.isnan(y[1]).all() and np.isfinite(y[0]).all()


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_cross_entropy_forward_and_backward(rng, smoothing):
    logits = rand(rng, 5, 33) * 2
    target = np.array([0, 32, -100, 7, 3])
    loss, lse = ref.cross_entropy(logits.astype(np.float64), target, -100, smoothing)
    nloss, nlse = nb.cross_entropy(dev(logits), nb.asarray(target), -100, smoothing)
    close(nloss, loss)
    close(nlse, lse)
    gloss = rand(rng, 5)
    expected = ref.cross_entropy_backward(gloss.astype(np.float64), logits.astype(np.float64),
                                          target, lse, -100, smoothing)
    close(nb.cross_entropy_backward(dev(gloss), dev(logits), nb.asarray(target), nlse, -100, smoothing),
          expected)


def test_cross_entropy_target_out_of_range(rng):
    with pytest.raises(IndexError, match="target 5 is out of bounds for 5 classes"):
        nb.cross_entropy(dev(rand(rng, 2, 5)), nb.asarray(np.array([1, 5])))


# -------------------------------------------------------------------------- layer norm

@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("m, d", [(3, 17), (1, 65), (33, 1)])
def test_layer_norm_forward_and_backward(rng, affine, m, d):
    x, gy = rand(rng, m, d) + 3, rand(rng, m, d)
    w, b = (rand(rng, d), rand(rng, d)) if affine else (None, None)
    wd, bd = (dev(w), dev(b)) if affine else (None, None)
    w64, b64 = (w.astype(np.float64), b.astype(np.float64)) if affine else (None, None)
    y, mean, rstd = ref.layer_norm(x.astype(np.float64), w64, b64, 1e-5)
    ny, nmean, nrstd = nb.layer_norm(dev(x), wd, bd, 1e-5)
    close(ny, y, atol=1e-4)
    close(nmean, mean)
    close(nrstd, rstd, rtol=1e-4)
    expected = ref.layer_norm_backward(gy.astype(np.float64), x.astype(np.float64), w64, mean, rstd)
    got = nb.layer_norm_backward(dev(gy), dev(x), wd, nmean, nrstd)
    for g, e in zip(got, expected):
        if e is None:
            assert g is None
        else:
            close(g, e, rtol=1e-4, atol=1e-4)


# -------------------------------------------------------------------------- attention

def _sdpa_check(rng, q, k, v, mask=None, causal=False, scale=None):
    out, (p, _) = ref.sdpa(*f64(q, k, v), mask, causal, scale)
    nout, saved = nb.sdpa(dev(q), dev(k), dev(v), None if mask is None else nb.asarray(mask), causal, scale)
    close(nout, out)
    gout = rand(rng, *out.shape)
    expected = ref.sdpa_backward(gout.astype(np.float64), *f64(q, k, v), out, (p, None), mask, causal, scale)
    got = nb.sdpa_backward(dev(gout), dev(q), dev(k), dev(v), nout, saved,
                           None if mask is None else nb.asarray(mask), causal, scale)
    for g, e, a in zip(got, expected, (q, k, v)):
        assert g.shape == a.shape
        close(g, e, atol=1e-4)


@pytest.mark.parametrize("causal", [False, True])
def test_sdpa_flash_forward_and_backward(rng, causal):
    q, k, v = rand(rng, 2, 3, 17, 5), rand(rng, 2, 3, 33, 5), rand(rng, 2, 3, 33, 3)
    _sdpa_check(rng, q, k, v, causal=causal, scale=0.3)


def test_sdpa_masks_and_broadcast_batch(rng):
    q, k, v = rand(rng, 2, 1, 3, 4), rand(rng, 1, 2, 33, 4), rand(rng, 1, 2, 33, 6)
    mask = rng.random((3, 33)) < 0.6
    mask[:, 0] = True
    _sdpa_check(rng, q, k, v, mask=mask)
    _sdpa_check(rng, q, k, v, mask=rand(rng, 2, 1, 3, 33))


def test_sdpa_fully_masked_row_is_nan(rng):
    q, k, v = rand(rng, 3, 4), rand(rng, 5, 4), rand(rng, 5, 2)
    mask = np.ones((3, 5), bool)
    mask[1] = False
    out = host(nb.sdpa(dev(q), dev(k), dev(v), nb.asarray(mask))[0])
    assert np.isnan(out[1]).all() and np.isfinite(out[[0, 2]]).all()


def test_sdpa_dropout_path_uses_its_mask(rng):
    q, k, v = rand(rng, 2, 7, 4), rand(rng, 2, 9, 4), rand(rng, 2, 9, 3)
    nout, saved = nb.sdpa(dev(q), dev(k), dev(v), None, True, None, 0.5)
    p, mask = (host(a).astype(np.float64) for a in saved)
    ref_out, (ref_p, _) = ref.sdpa(*f64(q, k, v), None, True)
    np.testing.assert_allclose(p, ref_p, rtol=RTOL, atol=ATOL)
    assert set(np.unique(mask)) <= {0.0, 2.0} and 0 < (mask == 0).mean() < 1
    close(nout, np.matmul(p * mask, v.astype(np.float64)))
    gout = rand(rng, *nout.shape)
    expected = ref.sdpa_backward(gout.astype(np.float64), *f64(q, k, v), None, (p, mask), None, True,
                                 None, 0.5)
    got = nb.sdpa_backward(dev(gout), dev(q), dev(k), dev(v), nout, saved, None, True, None, 0.5)
    for g, e in zip(got, expected):
        close(g, e, atol=1e-4)


# -------------------------------------------------------------------------- optimizers

@pytest.mark.parametrize("momentum, nesterov, wd", [(0.0, False, 0.0), (0.9, False, 0.01), (0.9, True, 0.0)])
def test_sgd_step(rng, momentum, nesterov, wd):
    p, g1, g2 = rand(rng, 3, 17), rand(rng, 3, 17), rand(rng, 3, 17)
    cp_, cbuf = p.copy(), np.zeros_like(p)
    dp, dbuf = dev(p), dev(np.zeros_like(p))
    for step, g in enumerate((g1, g2)):
        ref.sgd_step(cp_, g, cbuf if momentum else None, 0.1, momentum, 0.1, nesterov, wd, step == 0)
        nb.sgd_step(dp, dev(g), dbuf if momentum else None, 0.1, momentum, 0.1, nesterov, wd, step == 0)
    close(dp, cp_, rtol=1e-6, atol=1e-6)
    if momentum:
        close(dbuf, cbuf, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("decoupled, amsgrad", [(False, False), (True, True)])
def test_adam_step(rng, decoupled, amsgrad):
    p = rand(rng, 33)
    state = [np.zeros_like(p) for _ in range(3)]
    dstate = [dev(s) for s in state]
    dp = dev(p)
    for step in (1, 2, 3):
        g = rand(rng, 33)
        ref.adam_step(p, g, *state[:2], state[2] if amsgrad else None, step, 1e-2, 0.9, 0.999,
                      1e-8, 0.1, decoupled, amsgrad)
        nb.adam_step(dp, dev(g), *dstate[:2], dstate[2] if amsgrad else None, step, 1e-2, 0.9, 0.999,
                     1e-8, 0.1, decoupled, amsgrad)
    close(dp, p, rtol=1e-5, atol=1e-6)
    close(dstate[1], state[1], rtol=1e-5, atol=1e-7)


def test_numpy_without_row_stack_gets_the_alias_numba_cuda_needs(monkeypatch):
    # numba-cuda registers an overload for np.row_stack when its array support loads; NumPy
    # 2.5 removed the alias, and every launch on the H100's image failed until this shim.
    import numpy as np
    from pyengine.backend import _numba_kernels
    monkeypatch.delattr(np, "row_stack", raising=False)
    assert not hasattr(np, "row_stack")
    _numba_kernels._numpy_compat()
    assert np.row_stack is np.vstack
