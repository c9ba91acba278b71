"""The native core kernels (matmul, linear, conv2d, pooling, activations) on a real GPU,
against the NumPy backend run in float64 on the same float32 inputs, and matmul against
cuBLAS through CuPy. Every output is written into a buffer poisoned with NaN first (the
family functions take ``out=``), so an element a kernel forgets to write fails.

All tests are marked ``gpu`` and skip with the reason where no GPU is.
"""
import numpy as np
import pytest

import pyengine as pe
from pyengine.backend import numpy_backend as nb

from _helpers import check_close

pytestmark = pytest.mark.gpu

cp = pytest.importorskip("cupy", reason="the native kernels need CuPy")

from pyengine.backend import cuda_backend as cb  # noqa: E402

ODD = [1, 3, 17, 33, 65, 127, 129]


def f32(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def dev(a):
    return cp.asarray(np.ascontiguousarray(a))


def poisoned(shape, dtype=np.float32):
    return cp.full(shape, np.nan, dtype=dtype)


def check(got, ref, tol=2e-5, what="", scale=0.0):
    """_helpers.check_close; scale: a floor for the reference norm, for outputs that are small
    differences of O(scale) terms (float32 cannot give those to a relative tol)."""
    check_close(got, ref, tol, what, floor=scale)


@pytest.fixture
def tf32():
    prev = pe.backends.cuda.matmul.allow_tf32
    pe.backends.cuda.matmul.allow_tf32 = True
    yield
    pe.backends.cuda.matmul.allow_tf32 = prev


# --------------------------------------------------------------------------------------
# matmul
# --------------------------------------------------------------------------------------

def _layout(a, transposed):
    """a on the device, as a transposed view of a contiguous array when asked."""
    if transposed:
        return cp.ascontiguousarray(dev(a).swapaxes(-1, -2)).swapaxes(-1, -2)
    return dev(a)


MNK = [(m, n, k) for m, n, k in zip(ODD, ODD[::-1], ODD[2:] + ODD[:2])] + [(128, 128, 128), (256, 64, 512)]


@pytest.mark.parametrize("ta,tb", [(False, False), (False, True), (True, False), (True, True)],
                         ids=["NN", "NT", "TN", "TT"])
@pytest.mark.parametrize("m,n,k", MNK)
def test_matmul_layouts_vs_numpy_float64(rng, m, n, k, ta, tb):
    a, b = f32(rng, m, k), f32(rng, k, n)
    out = poisoned((m, n))
    got = cb.matmul(_layout(a, ta), _layout(b, tb), out=out)
    assert got is out
    check(got, a.astype(np.float64) @ b.astype(np.float64), what=f"matmul {m}x{n}x{k} ta={ta} tb={tb}")


@pytest.mark.parametrize("offset", [1, 2, 3])
def test_matmul_misaligned_views_take_the_scalar_path(rng, offset):
    # A view starting 1-3 floats into its buffer defeats 16-byte loads; results must not change.
    m, n, k = 33, 65, 17
    abuf, bbuf = f32(rng, m * k + offset), f32(rng, k * n + offset)
    a, b = abuf[offset:].reshape(m, k), bbuf[offset:].reshape(k, n)
    got = cb.matmul(dev(abuf)[offset:].reshape(m, k), dev(bbuf)[offset:].reshape(k, n), out=poisoned((m, n)))
    check(got, a.astype(np.float64) @ b.astype(np.float64), what=f"offset {offset}")


@pytest.mark.parametrize("ashape,bshape", [
    ((3, 17, 33), (3, 33, 5)),
    ((2, 1, 9, 4), (1, 3, 4, 7)),      # batch broadcast both ways
    ((5, 17, 8), (8, 3)),              # b shared by every batch (stride 0)
    ((4, 1, 65), (65, 1)),
])
def test_matmul_batched_and_broadcast(rng, ashape, bshape):
    a, b = f32(rng, *ashape), f32(rng, *bshape)
    ref = np.matmul(a.astype(np.float64), b.astype(np.float64))
    check(cb.matmul(dev(a), dev(b), out=poisoned(ref.shape)), ref, what=f"{ashape} @ {bshape}")


def test_matmul_attention_style_transposed_batch(rng):
    # q @ k^T over (B, H, T, d) without copying k: the backward and attention use this.
    q, k = f32(rng, 2, 3, 33, 17), f32(rng, 2, 3, 65, 17)
    ref = q.astype(np.float64) @ k.astype(np.float64).swapaxes(-1, -2)
    check(cb.matmul(dev(q), dev(k).swapaxes(-1, -2), out=poisoned(ref.shape)), ref)


@pytest.mark.parametrize("size", [256, 1024])
def test_matmul_vs_cublas(rng, size):
    a, b = cp.random.standard_normal((size, size), dtype=cp.float32), cp.random.standard_normal(
        (size, size), dtype=cp.float32)
    ours = cb.matmul(a, b, out=poisoned((size, size)))
    ref = cp.asnumpy(a).astype(np.float64) @ cp.asnumpy(b).astype(np.float64)
    check(ours, ref, what="ours vs float64")
    check(ours, cp.asnumpy(a @ b), tol=2e-5, what="ours vs cuBLAS")


@pytest.mark.parametrize("batch,m,n,k", [
    (3, 1024, 1024, 64),   # 64 x 128 x 16 tiles on a 132-SM H100
    (3, 1100, 1300, 96),   # 128 x 128 x 8 tiles (>= 2 blocks per SM), ragged edges
    (70000, 2, 3, 5),      # more batch items than a grid's z dimension holds
])
def test_matmul_every_tile_shape_and_long_batches(batch, m, n, k):
    a = cp.random.standard_normal((batch, m, k), dtype=cp.float32)
    b = cp.random.standard_normal((batch, k, n), dtype=cp.float32)
    got = cb.matmul(a, b, out=poisoned((batch, m, n)))
    ref = cp.matmul(a.astype(cp.float64), b.astype(cp.float64))  # FP64 on the device: no TF32
    check(got, cp.asnumpy(ref), what=f"batch={batch} {m}x{n}x{k}")


def test_matmul_k_zero_gives_zeros(rng):
    got = cb.matmul(cp.empty((3, 0), cp.float32), cp.empty((0, 5), cp.float32), out=poisoned((3, 5)))
    assert (cp.asnumpy(got) == 0).all()


@pytest.mark.parametrize("ta,tb", [(False, False), (False, True), (True, False)], ids=["NN", "NT", "TN"])
@pytest.mark.parametrize("m,n,k", [(1, 1, 1), (17, 33, 65), (129, 127, 33), (256, 256, 256)])
def test_matmul_tf32(rng, tf32, m, n, k, ta, tb):
    a, b = f32(rng, m, k), f32(rng, k, n)
    got = cb.matmul(_layout(a, ta), _layout(b, tb), out=poisoned((m, n)))
    check(got, a.astype(np.float64) @ b.astype(np.float64), tol=3e-3, what="tf32")


def test_matmul_tf32_is_really_tf32(rng, tf32):
    # Rounding inputs to 10 mantissa bits leaves an error far above float32's: proof the
    # tensor-core path ran (and that allow_tf32 is read at each call).
    a, b = f32(rng, 256, 256), f32(rng, 256, 256)
    ref = a.astype(np.float64) @ b.astype(np.float64)
    got = cp.asnumpy(cb.matmul(dev(a), dev(b)))
    err = np.linalg.norm(got - ref) / np.linalg.norm(ref)
    assert 1e-5 < err < 3e-3, err


def test_matmul_tf32_batched_vs_cublas_tf32(rng, tf32):
    a, b = f32(rng, 3, 65, 129), f32(rng, 3, 129, 33)
    ref = np.matmul(a.astype(np.float64), b.astype(np.float64))
    check(cb.matmul(dev(a), dev(b), out=poisoned(ref.shape)), ref, tol=3e-3)


@pytest.mark.parametrize("activation", [None, "relu", "gelu", "gelu_tanh"])
@pytest.mark.parametrize("xshape,out_features", [((2, 17), 33), ((3, 5, 65), 127), ((129, 33), 1)])
def test_linear_fused_bias_activation(rng, activation, xshape, out_features):
    x, w, b = f32(rng, *xshape), f32(rng, out_features, xshape[-1]), f32(rng, out_features)
    ref = nb.linear(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), activation)
    got = cb.linear(dev(x), dev(w), dev(b), activation, out=poisoned(ref.shape))
    check(got, ref, what=f"linear {activation}")


def test_linear_without_bias(rng):
    x, w = f32(rng, 9, 33), f32(rng, 17, 33)
    ref = x.astype(np.float64) @ w.astype(np.float64).T
    check(cb.linear(dev(x), dev(w), None, None), ref)


def test_matmul_rejects_float64_and_bad_shapes(rng):
    with pytest.raises(TypeError, match="native matmul supports float32, got float64"):
        cb.matmul(cp.ones((2, 3)), cp.ones((3, 2)))
    with pytest.raises(ValueError, match=r"\(2, 3\) and \(2, 2\)"):
        cb.matmul(cp.ones((2, 3), cp.float32), cp.ones((2, 2), cp.float32))


# --------------------------------------------------------------------------------------
# conv2d
# --------------------------------------------------------------------------------------

CONVS = [
    # (N, C, H, W), (O, kh, kw), stride, padding, dilation, groups
    ((1, 1, 1, 1), (1, 1, 1), (1, 1), (0, 0), (1, 1), 1),
    ((2, 3, 17, 9), (5, 3, 3), (1, 1), (1, 1), (1, 1), 1),
    ((3, 4, 33, 17), (6, 5, 3), (2, 1), (2, 0), (1, 2), 2),
    ((2, 6, 13, 15), (6, 3, 3), (2, 2), (1, 1), (2, 1), 6),   # depthwise
    ((1, 3, 65, 33), (17, 4, 4), (3, 2), (0, 3), (1, 1), 1),
    ((4, 16, 12, 12), (129, 1, 1), (1, 1), (0, 0), (1, 1), 1),  # 1x1, O past one tile
    ((2, 130, 7, 7), (33, 3, 3), (1, 1), (1, 1), (1, 1), 1),    # C*kh*kw past many k tiles
]


def _conv_case(rng, xshape, wshape, groups):
    n, c, h, w = xshape
    o, kh, kw = wshape
    return f32(rng, n, c, h, w), f32(rng, o, c // groups, kh, kw), f32(rng, o)


@pytest.mark.parametrize("xshape,wshape,stride,padding,dilation,groups", CONVS)
def test_conv2d_forward_vs_numpy_float64(rng, xshape, wshape, stride, padding, dilation, groups):
    x, w, b = _conv_case(rng, xshape, wshape, groups)
    ref = nb.conv2d(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), stride, padding,
                    dilation, groups)
    got = cb.conv2d(dev(x), dev(w), dev(b), stride, padding, dilation, groups, out=poisoned(ref.shape))
    check(got, ref, what="conv2d forward")
    nobias = cb.conv2d(dev(x), dev(w), None, stride, padding, dilation, groups)
    check(nobias, ref - b.astype(np.float64)[:, None, None], what="conv2d forward without bias")


@pytest.mark.parametrize("xshape,wshape,stride,padding,dilation,groups", CONVS)
def test_conv2d_backward_vs_numpy_float64(rng, xshape, wshape, stride, padding, dilation, groups):
    x, w, _ = _conv_case(rng, xshape, wshape, groups)
    y = nb.conv2d(x, w, None, stride, padding, dilation, groups)
    gy = f32(rng, *y.shape)
    ref = nb.conv2d_backward(gy.astype(np.float64), x.astype(np.float64), w.astype(np.float64), stride,
                             padding, dilation, groups)
    outs = (poisoned(x.shape), poisoned(w.shape))
    got = cb.conv2d_backward(dev(gy), dev(x), dev(w), stride, padding, dilation, groups, out=outs)
    assert got[0] is outs[0] and got[1] is outs[1]
    for g, r, what in zip(got, ref, ("grad_input", "grad_weight", "grad_bias")):
        check(g, r, tol=3e-5, what=what)


def test_conv2d_backward_weight_split_k_long_batch(rng):
    # batch x pixels >> one k tile: several split-K blocks add into gw atomically.
    x, w = f32(rng, 16, 8, 32, 32), f32(rng, 16, 8, 3, 3)
    gy = f32(rng, 16, 16, 32, 32)
    ref = nb.conv2d_backward(gy.astype(np.float64), x.astype(np.float64), w.astype(np.float64), (1, 1),
                             (1, 1), (1, 1), 1, needs=(False, True, False))[1]
    got = cb.conv2d_backward(dev(gy), dev(x), dev(w), (1, 1), (1, 1), (1, 1), 1, needs=(False, True, False),
                             out=(None, poisoned(w.shape)))[1]
    check(got, ref, tol=3e-5)


def test_conv2d_vs_torch_cpu(rng):
    torch = pytest.importorskip("torch")
    x, w, b = _conv_case(rng, (2, 4, 17, 19), (6, 3, 3), 2)
    ref = torch.nn.functional.conv2d(torch.from_numpy(x).double(), torch.from_numpy(w).double(),
                                     torch.from_numpy(b).double(), stride=(2, 1), padding=(1, 2),
                                     dilation=(1, 2), groups=2).numpy()
    check(cb.conv2d(dev(x), dev(w), dev(b), (2, 1), (1, 2), (1, 2), 2), ref)


def test_conv2d_rejects_float64():
    with pytest.raises(TypeError, match="native conv2d supports float32, got float64"):
        cb.conv2d(cp.ones((1, 1, 3, 3)), cp.ones((1, 1, 3, 3)), None, (1, 1), (0, 0), (1, 1), 1)


# --------------------------------------------------------------------------------------
# pooling
# --------------------------------------------------------------------------------------

POOLS = [
    # (N, C, H, W), kernel, stride, padding, dilation, ceil_mode
    ((1, 1, 1, 1), (1, 1), (1, 1), (0, 0), (1, 1), False),
    ((2, 3, 17, 33), (2, 2), (2, 2), (0, 0), (1, 1), False),
    ((2, 3, 17, 33), (3, 3), (2, 2), (1, 1), (1, 1), True),
    ((1, 5, 65, 17), (3, 2), (1, 2), (1, 0), (2, 1), False),
    ((3, 2, 129, 127), (4, 4), (3, 3), (2, 1), (1, 1), True),
    ((2, 3, 16, 32), (3, 3), (2, 2), (1, 1), (2, 2), False),  # compiled 3x3 taps, dilated; planes % 4 == 0
    ((1, 2, 260, 260), (2, 2), (2, 2), (0, 0), (1, 1), False),  # a plane larger than shared memory
]

@pytest.fixture(params=[2, 3], ids=["gather", "disjoint"])
def avg_bwd_version(request):
    """Average-pool backward at kernel_version 2 (the 4-column gather for every window shape)
    or 3 (the default: the 8-column kernel where windows do not overlap)."""
    from pyengine import _C
    _C.set_kernel_version("avg_pool2d_backward", request.param)
    yield request.param
    _C.set_kernel_version("avg_pool2d_backward", 0)


@pytest.mark.parametrize("xshape,kernel,stride,padding,dilation,ceil_mode", POOLS)
def test_max_pool2d_forward_backward(rng, xshape, kernel, stride, padding, dilation, ceil_mode):
    x = f32(rng, *xshape)
    y_ref, i_ref = nb.max_pool2d(x.astype(np.float64), kernel, stride, padding, dilation, ceil_mode)
    y, idx = cb.max_pool2d(dev(x), kernel, stride, padding, dilation, ceil_mode, out=poisoned(y_ref.shape))
    check(y, y_ref, tol=1e-7, what="max_pool2d")
    assert idx.dtype == cp.int64
    np.testing.assert_array_equal(cp.asnumpy(idx), i_ref)
    gy = f32(rng, *y_ref.shape)
    g_ref = nb.max_pool2d_backward(gy.astype(np.float64), i_ref, x.shape)
    check(cb.max_pool2d_backward(dev(gy), idx, x.shape, out=poisoned(x.shape)), g_ref, what="max backward")


def test_max_pool2d_nan_and_ties_as_pytorch(rng):
    x = np.zeros((1, 1, 4, 4), np.float32) + 1.0  # ties everywhere: the first index wins
    x[0, 0, 1, 2] = np.nan                         # NaN wins its window
    y_ref, i_ref = nb.max_pool2d(x, (2, 2), (2, 2), (0, 0))
    y, idx = cb.max_pool2d(dev(x), (2, 2), (2, 2), (0, 0))
    np.testing.assert_array_equal(cp.asnumpy(y), y_ref)
    np.testing.assert_array_equal(cp.asnumpy(idx), i_ref)


@pytest.mark.parametrize("kernel", [(2, 2), (3, 3), (2, 3)])
def test_max_pool2d_nan_inf_and_padding_as_pytorch(rng, kernel):
    """NaN taps win (the last NaN of a window, as v1 and PyTorch), an all -inf window returns its
    first in-bounds tap, and padding never wins; the backward routes gy to those indices."""
    x = f32(rng, 2, 3, 9, 11)
    x[0, 0, 2, 3] = x[0, 1, 4, 4] = x[1, 2, 0, 0] = np.nan
    x[0, 2, :4, :4] = -np.inf
    x[1, 0, 5, 6] = np.inf
    args = (kernel, (2, 2), (1, 1), (1, 1), True)
    y_ref, i_ref = nb.max_pool2d(x.astype(np.float64), *args)
    y, idx = cb.max_pool2d(dev(x), *args, out=poisoned(y_ref.shape))
    np.testing.assert_array_equal(cp.asnumpy(y), y_ref.astype(np.float32))
    np.testing.assert_array_equal(cp.asnumpy(idx), i_ref)
    gy = f32(rng, *y_ref.shape)
    g_ref = nb.max_pool2d_backward(gy.astype(np.float64), i_ref, x.shape)
    check(cb.max_pool2d_backward(dev(gy), idx, x.shape, out=poisoned(x.shape)), g_ref, what="max backward")


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("divisor_override", [None, 3])
@pytest.mark.parametrize("xshape,kernel,stride,padding,ceil_mode", [
    ((2, 3, 17, 33), (2, 2), (2, 2), (0, 0), False),
    ((2, 3, 17, 33), (3, 3), (2, 2), (1, 1), True),
    ((1, 2, 65, 127), (5, 3), (3, 2), (2, 1), True),
    ((1, 1, 1, 1), (1, 1), (1, 1), (0, 0), False),
    ((2, 3, 16, 32), (2, 2), (2, 2), (0, 0), False),  # W % 4 == 0: float4 stores in the backward
    ((1, 2, 20, 36), (3, 3), (2, 2), (1, 1), True),
    ((2, 3, 20, 36), (2, 2), (2, 2), (1, 1), True),   # disjoint windows, padded, W % 8 == 4
    ((1, 2, 9, 10), (2, 1), (3, 3), (1, 0), True),    # gaps between windows: uncovered inputs get 0
    ((1, 3, 19, 37), (2, 3), (3, 4), (1, 1), True),
])
def test_avg_pool2d_forward_backward(rng, xshape, kernel, stride, padding, ceil_mode, count_include_pad,
                                     divisor_override, avg_bwd_version):
    x = f32(rng, *xshape)
    args = (kernel, stride, padding, ceil_mode, count_include_pad, divisor_override)
    y_ref = nb.avg_pool2d(x.astype(np.float64), *args)
    check(cb.avg_pool2d(dev(x), *args, out=poisoned(y_ref.shape)), y_ref, what="avg_pool2d")
    gy = f32(rng, *y_ref.shape)
    g_ref = nb.avg_pool2d_backward(gy.astype(np.float64), x.shape, *args)
    check(cb.avg_pool2d_backward(dev(gy), x.shape, *args, out=poisoned(x.shape)), g_ref, what="avg backward")


# --------------------------------------------------------------------------------------
# activations
# --------------------------------------------------------------------------------------

ACTS = [("relu", None), ("leaky_relu", 0.1), ("gelu", "none"), ("gelu", "tanh"), ("sigmoid", None),
        ("tanh", None), ("selu", None)]


@pytest.mark.parametrize("name,param", ACTS, ids=[f"{a}-{p}" for a, p in ACTS])
@pytest.mark.parametrize("n", ODD + [1024, 4099])
def test_activation_forward_backward(rng, name, param, n):
    x, gy = f32(rng, n) * 3, f32(rng, n)
    x64 = x.astype(np.float64)
    y_ref = nb.activation(name, x64, param)
    y = cb.activation(name, dev(x), param, out=poisoned((n,)))
    check(y, y_ref, tol=2e-6, what=f"{name} forward")
    g_ref = nb.activation_backward(name, gy.astype(np.float64), x64, y_ref, param)
    gx = cb.activation_backward(name, dev(gy), dev(x), y, param, out=poisoned((n,)))
    # sigmoid' = y(1-y) and tanh' = 1-y^2 from a float32 y near saturation cancel: measure
    # the error against |gy| (every derivative here is O(1)), not against the tiny product.
    check(gx, g_ref, tol=2e-6, what=f"{name} backward", scale=float(np.linalg.norm(gy)))


@pytest.mark.parametrize("offset", [1, 2, 3])
def test_activation_unaligned_view(rng, offset):
    # Offsets of 1-3 floats take the scalar path; a 2-D non-contiguous view is copied first.
    buf = f32(rng, 1000 + offset)
    x = dev(buf)[offset:]
    check(cb.activation("gelu", x, "tanh", out=poisoned((1000,))),
          nb.activation("gelu", buf[offset:].astype(np.float64), "tanh"), tol=2e-6)
    m = f32(rng, 33, 17)
    check(cb.activation("selu", dev(m).T), nb.activation("selu", m.T.astype(np.float64)), tol=2e-6)


def test_activation_backward_from_output_only(rng):
    x, gy = f32(rng, 65), f32(rng, 65)
    y = cb.activation("relu", dev(x))
    check(cb.activation_backward("relu", dev(gy), None, y), gy * (x > 0))
    ys = cb.activation("sigmoid", dev(x))
    s = 1 / (1 + np.exp(-x.astype(np.float64)))
    check(cb.activation_backward("sigmoid", dev(gy), None, ys), gy * s * (1 - s), tol=2e-6)


def test_activation_errors():
    with pytest.raises(TypeError, match="float32"):
        cb.activation("relu", cp.ones(3))
    with pytest.raises(ValueError, match="unknown activation"):
        cb.activation("swish", cp.ones(3, cp.float32))


# --------------------------------------------------------------------------------------
# glue and the whole table on the device
# --------------------------------------------------------------------------------------

def test_glue_ops_match_numpy(rng):
    gy, idx = f32(rng, 4, 7, 5), rng.integers(0, 11, (4, 7))
    check(cb.embedding_backward(dev(gy), dev(idx), 11, 0),
          nb.embedding_backward(gy.astype(np.float64), idx, 11, 0))
    vals = f32(rng, 6, 3)
    rows = np.array([0, 2, 2, 4, 0, 1])
    check(cb.scatter_add((5, 3), (dev(rows),), dev(vals)), nb.scatter_add((5, 3), (rows,), vals.astype(np.float64)))
    x = f32(rng, 6, 3, 5, 5)
    rm, rv = np.zeros(3, np.float32), np.ones(3, np.float32)
    y_ref, m_ref, r_ref = nb.batch_norm(x.astype(np.float64), rm.astype(np.float64), rv.astype(np.float64),
                                        None, None, True, 0.1, 1e-5)
    drm, drv = dev(rm), dev(rv)
    y, m, r = cb.batch_norm(dev(x), drm, drv, None, None, True, 0.1, 1e-5)
    check(y, y_ref, tol=1e-5)
    check(drv, rv * 0.9 + 0.1 * x.astype(np.float64).var(axis=(0, 2, 3), ddof=1), tol=1e-5)
