"""Every core op: forward against NumPy float64, gradient by gradcheck (float64 central differences)."""
import numpy as np
import pytest

import pyengine as pe
from pyengine.autograd import gradcheck


def t64(rng, *shape, positive=False):
    a = rng.standard_normal(shape)
    if positive:
        a = np.abs(a) + 0.5
    return pe.tensor(a, dtype=pe.float64, requires_grad=True)


def off_kinks(a, kinks, margin=1e-3):
    """``a`` with values within ``margin`` of a kink moved to 2 * margin from it: gradcheck's
    central differences (step 1e-6) must not straddle a point where the op has no derivative."""
    for k in kinks:
        a = np.where(np.abs(a - k) < margin, k + np.where(a >= k, 2 * margin, -2 * margin), a)
    return a


def separated(rng, *shape, gap=1e-3):
    """Normal draws, any two at least ``gap`` apart: no near-tie for max/min's central differences."""
    a = rng.standard_normal(shape)
    flat = a.reshape(-1)
    flat[np.argsort(flat)] += gap * np.arange(flat.size)
    return pe.tensor(a, dtype=pe.float64, requires_grad=True)


def close(t, ref, tol=1e-12):
    assert t.shape == tuple(np.shape(ref)), (t.shape, np.shape(ref))
    np.testing.assert_allclose(t.detach().numpy(), ref, rtol=tol, atol=tol)


BINARY = [
    ("add", lambda a, b: a + b, np.add),
    ("sub", lambda a, b: a - b, np.subtract),
    ("mul", lambda a, b: a * b, np.multiply),
    ("div", lambda a, b: a / b, np.divide),
    ("pow", lambda a, b: a ** b, np.power),
    ("maximum", pe.maximum, np.maximum),
    ("minimum", pe.minimum, np.minimum),
]
BROADCAST_SHAPES = [((3, 4), (3, 4)), ((17, 3), (3,)), ((3, 1), (1, 5)), ((2, 1, 3), (4, 1)), ((), (3,))]


@pytest.mark.parametrize("name,op,ref", BINARY, ids=[b[0] for b in BINARY])
@pytest.mark.parametrize("sa,sb", BROADCAST_SHAPES)
def test_binary_forward_and_broadcast_grad(rng, name, op, ref, sa, sb):
    x, y = rng.standard_normal(sa), rng.standard_normal(sb)
    if name == "pow":  # a real power needs a positive base
        x, y = np.abs(x) + 0.5, np.abs(y) + 0.5
    elif name == "div":  # d(a/b)/db = -a/b^2: keep b off the pole (|b| ~ 1e-5 failed, seed 2582)
        y = np.where(y < 0, -1.0, 1.0) * (np.abs(y) + 0.5)
    elif name in ("maximum", "minimum"):  # keep a and b >= 0.005 apart, off the kink a == b
        x, y = np.round(x, 2), np.round(y, 2) + 0.005  # (ties: test_maximum_ties_split_the_gradient)
    a = pe.tensor(x, dtype=pe.float64, requires_grad=True)
    b = pe.tensor(y, dtype=pe.float64, requires_grad=True)
    close(op(a, b), ref(a.detach().numpy(), b.detach().numpy()))
    assert gradcheck(op, (a, b))


@pytest.mark.parametrize("name,op,ref", BINARY[:5], ids=[b[0] for b in BINARY[:5]])
def test_binary_with_python_scalar_both_sides(rng, name, op, ref):
    a = t64(rng, 3, 17, positive=True)
    x = a.detach().numpy()
    close(op(a, 1.7), ref(x, 1.7))
    close(op(2.5, a), ref(2.5, x))
    assert gradcheck(lambda t: op(t, 1.7), (a,))
    assert gradcheck(lambda t: op(2.5, t), (a,))


def test_pow_at_zero_exponent_and_base():
    a = pe.tensor([0.0, 2.0], requires_grad=True)
    b = pe.tensor([0.0, 3.0], requires_grad=True)
    (a ** b).sum().backward()
    np.testing.assert_allclose(a.grad.numpy(), [0.0, 12.0])
    np.testing.assert_allclose(b.grad.numpy(), [0.0, 8 * np.log(2)], rtol=1e-6)
    x = pe.tensor([0.0, 1.5], requires_grad=True)
    (x ** 0).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 0.0])


def test_where_with_two_scalars():
    cond = pe.tensor([True, False])
    out = pe.where(cond, 1.0, 0.0)
    assert out.dtype == pe.float32
    np.testing.assert_array_equal(out.numpy(), [1.0, 0.0])


def test_maximum_ties_split_the_gradient():
    a = pe.tensor([1.0, 2.0, 3.0], requires_grad=True)
    b = pe.tensor([1.0, 5.0, 0.0], requires_grad=True)
    pe.maximum(a, b).sum().backward()
    np.testing.assert_array_equal(a.grad.numpy(), [0.5, 0.0, 1.0])
    np.testing.assert_array_equal(b.grad.numpy(), [0.5, 1.0, 0.0])


UNARY = [
    ("neg", lambda t: -t, np.negative, False),
    ("exp", pe.exp, np.exp, False),
    ("log", pe.log, np.log, True),
    ("sqrt", pe.sqrt, np.sqrt, True),
    ("abs", pe.abs, np.abs, False),
    ("clamp", lambda t: t.clamp(-0.3, 0.4), lambda x: np.clip(x, -0.3, 0.4), False),
    ("clamp_min", lambda t: pe.clamp(t, min=0.1), lambda x: np.maximum(x, 0.1), False),
    ("clamp_max", lambda t: t.clamp(max=0.2), lambda x: np.minimum(x, 0.2), False),
]


KINKS = {"abs": (0.0,), "clamp": (-0.3, 0.4), "clamp_min": (0.1,), "clamp_max": (0.2,)}


@pytest.mark.parametrize("name,op,ref,positive", UNARY, ids=[u[0] for u in UNARY])
def test_unary(rng, name, op, ref, positive):
    a = t64(rng, 3, 17, positive=positive)
    if name in KINKS:  # |x| = 1e-7 failed abs at PYENGINE_TEST_SEED=23339
        a = pe.tensor(off_kinks(a.detach().numpy(), KINKS[name]), dtype=pe.float64, requires_grad=True)
    close(op(a), ref(a.detach().numpy()))
    assert gradcheck(op, (a,))


@pytest.mark.parametrize("name,args", [("sigmoid", ()), ("tanh", ()), ("relu", ()), ("softmax", (1,)),
                                       ("log_softmax", (-1,)), ("pow", (3,))])
def test_function_forms_like_torch(rng, name, args):
    """torch.sigmoid(x), torch.softmax(x, 1), ...: the function forms tutorials write."""
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((4, 5)).astype(np.float32)
    a, t = pe.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    out, ref = getattr(pe, name)(a, *args), getattr(torch, name)(t, *args)
    np.testing.assert_allclose(out.detach().numpy(), ref.detach().numpy(), rtol=1e-5, atol=1e-6)
    g = rng.standard_normal((4, 5)).astype(np.float32)
    out.backward(pe.tensor(g))
    ref.backward(torch.tensor(g))
    np.testing.assert_allclose(a.grad.numpy(), t.grad.numpy(), rtol=1e-5, atol=1e-6)


def test_where(rng):
    a, b = t64(rng, 4, 3), t64(rng, 3)
    cond = pe.tensor(rng.standard_normal((4, 3)) > 0)
    close(pe.where(cond, a, b), np.where(cond.numpy(), a.detach().numpy(), b.detach().numpy()))
    assert gradcheck(lambda x, y: pe.where(cond, x, y), (a, b))
    close(pe.where(cond, a, 0.0), np.where(cond.numpy(), a.detach().numpy(), 0.0))


def test_comparisons_give_bool_without_grad(rng):
    a, b = t64(rng, 3, 4), t64(rng, 4)
    x, y = a.detach().numpy(), b.detach().numpy()
    for got, want in [(a < b, x < y), (a <= b, x <= y), (a > 0.1, x > 0.1), (a >= b, x >= y),
                      (a == a, x == x), (a != b, x != y)]:
        assert got.dtype == pe.bool and not got.requires_grad
        np.testing.assert_array_equal(got.numpy(), want)
    np.testing.assert_array_equal(((a > 0) & (b > 0)).numpy(), (x > 0) & (y > 0))
    np.testing.assert_array_equal((~(a > 0)).numpy(), ~(x > 0))


# ----------------------------------------------------------------------------- reductions
REDUCE_DIMS = [None, 0, 1, -1, (0, 2)]


@pytest.mark.parametrize("dim", REDUCE_DIMS)
@pytest.mark.parametrize("keepdim", [False, True])
def test_sum_mean(rng, dim, keepdim):
    a = t64(rng, 3, 5, 2)
    x = a.detach().numpy()
    close(a.sum(dim, keepdim), x.sum(axis=dim, keepdims=keepdim))
    close(a.mean(dim, keepdim=keepdim), x.mean(axis=dim, keepdims=keepdim))
    assert gradcheck(lambda t: t.sum(dim, keepdim), (a,))
    assert gradcheck(lambda t: t.mean(dim, keepdim=keepdim), (a,))


@pytest.mark.parametrize("dim", [None, 0, 1, (0, 1)])
@pytest.mark.parametrize("correction", [None, 0, 2])
def test_var_std(rng, dim, correction):
    a = t64(rng, 5, 7)
    x = a.detach().numpy()
    ddof = 1 if correction is None else correction
    close(a.var(dim, correction=correction), x.var(axis=dim, ddof=ddof), 1e-10)
    close(a.std(dim, correction=correction, keepdim=True), x.std(axis=dim, ddof=ddof, keepdims=True), 1e-10)
    assert gradcheck(lambda t: t.var(dim, correction=correction), (a,))
    assert gradcheck(lambda t: t.std(dim, correction=correction), (a,))


def test_std_of_constant_has_zero_gradient():
    a = pe.tensor([[2.0, 1.0], [2.0, 3.0]], requires_grad=True)
    a.std(dim=0).sum().backward()
    np.testing.assert_allclose(a.grad.numpy(), [[0.0, -1 / np.sqrt(2)], [0.0, 1 / np.sqrt(2)]], rtol=1e-6)


def test_var_unbiased_flag(rng):
    a = t64(rng, 6)
    x = a.detach().numpy()
    close(a.var(), x.var(ddof=1))
    close(a.var(unbiased=False), x.var())
    close(a.std(0, False), x.std())


@pytest.mark.parametrize("dim", [0, 1, -1])
@pytest.mark.parametrize("keepdim", [False, True])
def test_max_min_dim_return_values_and_indices(rng, dim, keepdim):
    a = separated(rng, 4, 17)  # a top-two gap of 3e-7 failed at PYENGINE_TEST_SEED=2175
    x = a.detach().numpy()
    out = a.max(dim, keepdim)
    assert out.indices.dtype == pe.int64 and not out.indices.requires_grad
    close(out.values, x.max(axis=dim, keepdims=keepdim))
    np.testing.assert_array_equal(out.indices.numpy(), x.argmax(axis=dim, keepdims=keepdim))
    values, indices = a.min(dim=dim, keepdim=keepdim)
    close(values, x.min(axis=dim, keepdims=keepdim))
    np.testing.assert_array_equal(indices.numpy(), x.argmin(axis=dim, keepdims=keepdim))
    assert gradcheck(lambda t: t.max(dim, keepdim).values, (a,))
    assert gradcheck(lambda t: t.min(dim, keepdim)[0], (a,))


def test_full_max_amax_argmax(rng):
    a = separated(rng, 3, 5)
    x = a.detach().numpy()
    close(a.max(), x.max())
    close(a.min(), x.min())
    close(a.amax(dim=1), x.max(axis=1))
    close(a.amin(dim=(0, 1), keepdim=True), x.min(axis=(0, 1), keepdims=True))
    assert a.argmax().item() == x.argmax()
    np.testing.assert_array_equal(a.argmax(dim=0).numpy(), x.argmax(axis=0))
    np.testing.assert_array_equal(a.argmin(dim=1, keepdim=True).numpy(), x.argmin(axis=1)[:, None])
    for fn in (lambda t: t.max(), lambda t: t.amax(0), lambda t: t.amin(-1, keepdim=True)):
        assert gradcheck(fn, (a,))


def test_max_ties_share_gradient_evenly():
    a = pe.tensor([[1.0, 3.0, 3.0], [2.0, 2.0, 0.0]], requires_grad=True)
    a.max().backward()
    np.testing.assert_array_equal(a.grad.numpy(), [[0, 0.5, 0.5], [0, 0, 0]])
    a.grad = None
    a.amax(dim=1).sum().backward()
    np.testing.assert_array_equal(a.grad.numpy(), [[0, 0.5, 0.5], [0.5, 0.5, 0]])


def test_sum_of_int_and_bool_is_int64():
    assert pe.tensor([True, False, True]).sum().item() == 2
    assert pe.tensor([True, True]).sum().dtype == pe.int64
    assert pe.arange(5).sum().item() == 10


# ----------------------------------------------------------------------------- shapes
SHAPE_OPS = [
    ("reshape", lambda t: t.reshape(6, 5), lambda x: x.reshape(6, 5)),
    ("reshape_infer", lambda t: t.reshape(-1, 2), lambda x: x.reshape(-1, 2)),
    ("view", lambda t: t.view(3, 10), lambda x: x.reshape(3, 10)),
    ("flatten", lambda t: t.flatten(), lambda x: x.reshape(-1)),
    ("flatten_1", lambda t: t.flatten(1), lambda x: x.reshape(3, 10)),
    ("unsqueeze", lambda t: t.unsqueeze(1), lambda x: x[:, None]),
    ("unsqueeze_neg", lambda t: t.unsqueeze(-1), lambda x: x[..., None]),
    ("squeeze", lambda t: t.unsqueeze(0).unsqueeze(2).squeeze(), lambda x: x),
    ("squeeze_dim", lambda t: t.unsqueeze(0).squeeze(0), lambda x: x),
    ("transpose", lambda t: t.transpose(0, 2), lambda x: x.transpose(2, 1, 0)),
    ("permute", lambda t: t.permute(2, 0, 1), lambda x: x.transpose(2, 0, 1)),
    ("T", lambda t: t.T, lambda x: x.T),
    ("mT", lambda t: t.mT, lambda x: x.swapaxes(-1, -2)),
    ("expand", lambda t: t[:, :1].expand(3, 4, 2), lambda x: np.broadcast_to(x[:, :1], (3, 4, 2))),
    ("expand_new", lambda t: t.expand(2, -1, -1, -1), lambda x: np.broadcast_to(x, (2,) + x.shape)),
    ("repeat", lambda t: t.repeat(2, 1, 3), lambda x: np.tile(x, (2, 1, 3))),
    ("repeat_lead", lambda t: t.repeat(2, 1, 1, 2), lambda x: np.tile(x, (2, 1, 1, 2))),
    ("contiguous", lambda t: t.T.contiguous(), lambda x: x.T),
    ("clone", lambda t: t.clone(), lambda x: x),
    ("tril", lambda t: t.tril(), lambda x: np.tril(x)),
    ("triu_k", lambda t: pe.triu(t, 1), lambda x: np.triu(x, 1)),
    ("tril_neg", lambda t: pe.tril(t, -1), lambda x: np.tril(x, -1)),
]


@pytest.mark.parametrize("name,op,ref", SHAPE_OPS, ids=[s[0] for s in SHAPE_OPS])
def test_shape_ops(rng, name, op, ref):
    a = t64(rng, 3, 5, 2)
    close(op(a), ref(a.detach().numpy()))
    assert gradcheck(op, (a,))


def test_cat_stack_split_chunk(rng):
    a, b, c = t64(rng, 2, 3), t64(rng, 1, 3), t64(rng, 4, 3)
    xs = [t.detach().numpy() for t in (a, b, c)]
    close(pe.cat([a, b, c]), np.concatenate(xs))
    close(pe.cat([a.T, c.T], dim=1), np.concatenate([xs[0].T, xs[2].T], axis=1))
    assert gradcheck(lambda *t: pe.cat(t, dim=0), (a, b, c))
    d = t64(rng, 2, 3)
    close(pe.stack([a, d], dim=1), np.stack([xs[0], d.detach().numpy()], axis=1))
    assert gradcheck(lambda x, y: pe.stack([x, y], dim=-1), (a, d))
    parts = c.split(3)
    assert [p.shape for p in parts] == [(3, 3), (1, 3)]
    parts = pe.split(c, [1, 3], dim=0)
    close(parts[1], xs[2][1:])
    chunks = c.chunk(3, dim=1)
    assert [p.shape for p in chunks] == [(4, 1)] * 3
    assert gradcheck(lambda t: sum(p.sum() * (i + 1) for i, p in enumerate(t.split([2, 1, 1]))), (c,))
    assert [u.shape for u in c.unbind(1)] == [(4,)] * 3


def test_matmul_shapes_and_grads(rng):
    cases = [((3, 17), (17, 5)), ((2, 3, 4), (4, 1)), ((2, 1, 3, 4), (5, 4, 3)), ((4,), (4, 3)),
             ((3, 4), (4,)), ((4,), (4,)), ((2, 3, 4), (4,))]
    for sa, sb in cases:
        a, b = t64(rng, *sa), t64(rng, *sb)
        close(a @ b, a.detach().numpy() @ b.detach().numpy(), 1e-10)
        assert gradcheck(lambda x, y: x @ y, (a, b)), (sa, sb)


# ----------------------------------------------------------------------------- indexing
INDEXES = [
    ("int", lambda t: t[1]),
    ("neg_int", lambda t: t[-1, 2]),
    ("slice", lambda t: t[1:3, ::2]),
    ("none_ellipsis", lambda t: t[None, ..., 1]),
    ("int_list_repeated", lambda t: t[[0, 2, 0, 0]]),
    ("int_tensor_2d", lambda t: t[:, pe.tensor([[1, 1], [4, 0]])]),
    ("pair_of_arrays", lambda t: t[pe.tensor([0, 0, 3]), pe.tensor([1, 1, 2])]),
    ("bool_mask", lambda t: t[t.detach() > 0]),
    ("bool_rows", lambda t: t[pe.tensor([True, False, True, True])]),
]


@pytest.mark.parametrize("name,op", INDEXES, ids=[i[0] for i in INDEXES])
def test_getitem_forward_and_grad(rng, name, op):
    # off 0, where bool_mask's mask (t > 0) would change under the finite-difference step
    # (an entry of 4e-7 failed at PYENGINE_TEST_SEED=32140)
    a = pe.tensor(off_kinks(rng.standard_normal((4, 5)), (0.0,)), dtype=pe.float64, requires_grad=True)
    x = a.detach().numpy()
    got = op(a)
    ref = op(_NumpyIndexable(x))
    close(got, ref)
    assert gradcheck(op, (a,))


class _NumpyIndexable:
    """Applies the same index expression to a NumPy array, converting pyengine index tensors."""

    def __init__(self, x):
        self.x = x

    def detach(self):
        return self

    def __gt__(self, other):
        return self.x > other

    def __getitem__(self, index):
        items = index if isinstance(index, tuple) else (index,)
        items = tuple(i.numpy() if isinstance(i, pe.Tensor) else i for i in items)
        return self.x[items]


def test_getitem_repeated_indices_accumulate():
    a = pe.tensor([1.0, 2.0, 3.0], requires_grad=True)
    a[[0, 0, 2, 0]].sum().backward()
    np.testing.assert_array_equal(a.grad.numpy(), [3.0, 0.0, 1.0])


def test_getitem_with_an_empty_list_selects_nothing_like_torch(rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    a, t = pe.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    out, ref = a[[]], t[[]]
    assert out.shape == tuple(ref.shape) == (0, 3, 4)
    assert a[:, []].shape == tuple(t[:, []].shape)
    (out.sum() + a[:, []].sum() + a.sum()).backward()
    (ref.sum() + t[:, []].sum() + t.sum()).backward()
    np.testing.assert_array_equal(a.grad.numpy(), t.grad.numpy())


def test_masked_fill(rng):
    a = t64(rng, 3, 4)
    mask = pe.tensor(rng.standard_normal((1, 4)) > 0)
    close(a.masked_fill(mask, -2.0), np.where(mask.numpy(), -2.0, a.detach().numpy()))
    assert gradcheck(lambda t: t.masked_fill(mask, 7.0), (a,))
    v = pe.tensor(0.5, dtype=pe.float64, requires_grad=True)
    assert gradcheck(lambda t, s: t.masked_fill(mask, s), (a, v))


def test_setitem_records_gradient(rng):
    a, v = t64(rng, 4, 3), t64(rng, 3)
    def f(x, y):
        z = x * 1.0
        z[1] = y
        z[z.detach() > 1] = 0.0
        return z
    x, y = a.detach().numpy().copy(), v.detach().numpy()
    x[1] = y
    x[x > 1] = 0.0
    close(f(a, v), x)
    assert gradcheck(f, (a, v))
