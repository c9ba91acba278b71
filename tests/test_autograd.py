"""Autograd semantics as PyTorch's: accumulation, freeing, retain_graph, grad modes, in-place
checks, custom Functions, gradcheck and detect_anomaly."""
import gc
import weakref

import numpy as np
import pytest

import pyengine as pe
from pyengine.autograd import Context, Function, GradcheckError, gradcheck


def leaf(rng, *shape, dtype=pe.float32):
    return pe.tensor(rng.standard_normal(shape), dtype=dtype, requires_grad=True)


def test_grads_accumulate_until_zeroed(rng):
    x = leaf(rng, 3)
    (x * 2).sum().backward()
    (x * 3).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [5, 5, 5])
    x.grad = None
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * x.detach().numpy(), rtol=1e-6)


def test_leaves_never_share_a_gradient_array(rng):
    a, b = leaf(rng, 3), leaf(rng, 3)
    g = np.ones(3, np.float32)
    (a + b).backward(pe.from_numpy(g))
    with pe.no_grad():
        a.grad.mul_(5)
    np.testing.assert_array_equal(b.grad.numpy(), np.ones(3))
    np.testing.assert_array_equal(g, np.ones(3))


def test_shared_subexpression_sums_both_paths(rng):
    x = leaf(rng, 4, dtype=pe.float64)
    y = x.exp()
    (y * y + y).sum().backward()
    e = np.exp(x.detach().numpy())
    np.testing.assert_allclose(x.grad.numpy(), 2 * e * e + e, rtol=1e-12)


def test_node_reached_by_paths_of_different_length(rng):
    x = leaf(rng, 3, dtype=pe.float64)
    a = x * 2
    long_path = ((a.exp() * 3).sqrt() + 1) * 0.5
    (a + long_path).sum().backward()
    xv = x.detach().numpy()
    # d/dx [2x + 0.5 * (sqrt(3 e^{2x}) + 1)] = 2 + 0.5 * sqrt(3) * e^x
    np.testing.assert_allclose(x.grad.numpy(), 2 + 0.5 * np.sqrt(3) * np.exp(xv), rtol=1e-12)


def test_backward_on_non_scalar_needs_gradient(rng):
    x = leaf(rng, 2, 3)
    y = x * 2
    with pytest.raises(RuntimeError, match="scalar outputs"):
        y.backward()
    g = rng.standard_normal((2, 3)).astype(np.float32)
    y.backward(pe.tensor(g))
    np.testing.assert_allclose(x.grad.numpy(), 2 * g, rtol=1e-6)
    with pytest.raises(RuntimeError, match=r"\(3,\)"):
        (x * 2).backward(pe.ones(3))


def test_second_backward_raises_unless_retain_graph(rng):
    x = leaf(rng, 3)
    y = (x * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="second time"):
        y.backward()
    x.grad = None
    z = (x.exp() * x).sum()
    z.backward(retain_graph=True)
    first = x.grad.numpy().copy()
    z.backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * first, rtol=1e-6)


def test_backward_without_grad_raises():
    with pytest.raises(RuntimeError, match="does not require grad"):
        pe.ones(3).sum().backward()


def _live(kind):
    return sum(type(o) is kind for o in gc.get_objects())


def test_graph_is_freed_no_growth_over_1000_steps(rng):
    w = leaf(rng, 8, 4)
    x = pe.tensor(rng.standard_normal((5, 8)), dtype=pe.float32)
    nodes = []

    def step(watch):
        loss = ((x @ w).exp() * 0.5 - w.sum()).mean()
        loss.backward()
        if watch:
            nodes.append(weakref.ref(loss.grad_fn))
        with pe.no_grad():
            w.sub_(w.grad * 1e-3)
        w.grad = None

    gc.disable()  # the graph must die by reference counting alone: it holds no cycles
    try:
        step(watch=True)
        before = _live(Context), _live(pe.Tensor)
        for i in range(1000):
            step(watch=i < 10)
        after = _live(Context), _live(pe.Tensor)
    finally:
        gc.enable()
    assert all(r() is None for r in nodes), "graph nodes still alive after their loss went away"
    assert after == before, f"live (graph nodes, tensors) went from {before} to {after}"


def test_saved_arrays_freed_after_backward(rng):
    x = leaf(rng, 3)
    y = x.exp()
    node = y.grad_fn
    y.sum().backward()
    with pytest.raises(RuntimeError, match="second time"):
        node.saved_tensors


def test_no_grad_and_enable_grad(rng):
    x = leaf(rng, 3)
    assert pe.is_grad_enabled()
    with pe.no_grad():
        assert not pe.is_grad_enabled()
        y = x * 2
        with pe.enable_grad():
            z = x * 2
    assert pe.is_grad_enabled()
    assert not y.requires_grad and y.grad_fn is None
    assert z.requires_grad and z.grad_fn is not None

    @pe.no_grad()
    def f(t):
        return t * 3
    assert not f(x).requires_grad and pe.is_grad_enabled()

    @pe.no_grad
    def g(t):
        return t * 3
    assert not g(x).requires_grad and g.__name__ == "g"
    with pe.set_grad_enabled(False):
        assert not (x * 2).requires_grad
    assert pe.is_grad_enabled()


def test_inference_mode_like_torch():
    torch = pytest.importorskip("torch")

    def modes(m):
        x, seen = m.ones(2, requires_grad=True), []
        with m.inference_mode():
            seen.append((x * 2).requires_grad)

        @m.inference_mode()
        def f(t):
            return t * 2

        @m.inference_mode
        def g(t):
            return t * 2
        seen += [f(x).requires_grad, g(x).requires_grad, g.__name__]
        with m.no_grad():
            with m.inference_mode(False):
                seen.append((x * 2).requires_grad)
        return seen + [m.is_grad_enabled()]
    assert modes(pe) == modes(torch) == [False, False, False, "g", True, True]


def test_numpy_operand_on_the_left_keeps_the_graph(rng):
    x = leaf(rng, 3)
    y = np.array([1.0, 2.0, 3.0], np.float32) * x + np.float32(1.0)
    assert isinstance(y, pe.Tensor) and y.requires_grad
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [1.0, 2.0, 3.0])


def test_view_shares_version_counter_outside_the_graph(rng):
    w = leaf(rng, 3)
    x = pe.tensor(rng.standard_normal(3), dtype=pe.float32)
    y = w * x  # saves x for w's gradient
    with pe.no_grad():
        x[1:].mul_(2)  # an in-place write through a view of x
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


def test_requires_grad_rules(rng):
    x = leaf(rng, 3)
    c = pe.tensor([1.0, 2.0, 3.0])
    y = x * c
    assert y.requires_grad and not y.is_leaf and x.is_leaf and c.is_leaf
    assert not (c * 2).requires_grad
    d = y.detach()
    assert not d.requires_grad and d.is_leaf
    np.testing.assert_array_equal(d.numpy(), y.detach().numpy())
    with pytest.raises(RuntimeError, match="floating point"):
        pe.arange(3).requires_grad_()
    with pytest.raises(RuntimeError, match="leaf"):
        y.requires_grad = False
    assert not x.argmax().requires_grad
    assert not (x > 0).requires_grad


def test_retain_grad_keeps_non_leaf_gradient(rng):
    x = leaf(rng, 3)
    y = x * 2
    y.retain_grad()
    (y * y).sum().backward()
    np.testing.assert_allclose(y.grad.numpy(), 2 * y.detach().numpy(), rtol=1e-6)
    assert (x * 2).grad is None


def test_broadcast_gradient_sums_to_input_shape(rng):
    a = leaf(rng, 3, 1, dtype=pe.float64)
    b = leaf(rng, 4, dtype=pe.float64)
    (a * b).sum().backward()
    np.testing.assert_allclose(a.grad.numpy(), np.full((3, 1), b.detach().numpy().sum()), rtol=1e-12)
    np.testing.assert_allclose(b.grad.numpy(), np.full(4, a.detach().numpy().sum()), rtol=1e-12)


# ----------------------------------------------------------------------------- in place
def test_inplace_on_leaf_requiring_grad_raises_but_works_under_no_grad(rng):
    w = leaf(rng, 3)
    with pytest.raises(RuntimeError, match="leaf Variable"):
        w.add_(1.0)
    before = w.detach().numpy().copy()
    version = w._version
    with pe.no_grad():
        w.add_(pe.ones(3), alpha=2).mul_(3).sub_(1).div_(2).clamp_(-1, 1)
    np.testing.assert_allclose(w.detach().numpy(), np.clip(((before + 2) * 3 - 1) / 2, -1, 1), rtol=1e-6)
    assert w._version == version + 5 and w.requires_grad and w.is_leaf


def test_augmented_assignment_is_in_place(rng):
    w = leaf(rng, 3)
    same, before = w, w.detach().numpy().copy()
    (w * w).sum().backward()
    with pe.no_grad():
        w -= 0.1 * w.grad
        w *= 2
        w /= 4
        w += 1
    assert w is same and w.is_leaf and w.requires_grad
    np.testing.assert_allclose(w.detach().numpy(), (before - 0.2 * before) * 2 / 4 + 1, rtol=1e-6)
    with pytest.raises(RuntimeError, match="leaf Variable"):
        w += 1


def test_inplace_on_saved_tensor_raises_at_backward(rng):
    x = leaf(rng, 3)
    y = x.exp()  # Exp saves its output
    y.add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


def test_inplace_on_non_leaf_records_gradient(rng):
    x, w = leaf(rng, 3, dtype=pe.float64), leaf(rng, 3, dtype=pe.float64)
    y = x * 2
    y.mul_(3)
    y.add_(w, alpha=0.5)
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), np.full(3, 6.0))
    np.testing.assert_allclose(w.grad.numpy(), np.full(3, 0.5))


def test_inplace_fill_zero_copy(rng):
    t = pe.tensor(rng.standard_normal((2, 3)), dtype=pe.float32)
    t.fill_(2.5)
    np.testing.assert_array_equal(t.numpy(), np.full((2, 3), 2.5, np.float32))
    t.zero_()
    np.testing.assert_array_equal(t.numpy(), np.zeros((2, 3), np.float32))
    src = rng.standard_normal(3)
    t.copy_(pe.tensor(src, dtype=pe.float64))
    np.testing.assert_allclose(t.numpy(), np.broadcast_to(src, (2, 3)), rtol=1e-6)
    assert t.dtype == pe.float32
    x = leaf(rng, 3)
    y = x * 1
    y.zero_()
    (y + x).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.ones(3))


def test_inplace_shape_and_dtype_errors():
    t = pe.zeros(3)
    with pytest.raises(RuntimeError, match=r"\[3\].*\[2, 3\]"):
        t.add_(pe.ones(2, 3))
    i = pe.zeros(3, dtype=pe.int64)
    with pytest.raises(RuntimeError, match="can't be cast"):
        i.add_(0.5)


def test_inplace_on_expanded_tensor_raises():
    e = pe.ones(1, 3).expand(4, 3)
    with pytest.raises(RuntimeError, match="clone"):
        e.mul_(2)


def test_inplace_through_expand_or_leaf_view_raises(rng):
    y = leaf(rng, 1, 4) * 1
    with pytest.raises(RuntimeError, match="clone"):
        y.expand(3, 4).mul_(2)
    with pytest.raises(RuntimeError, match="leaf Variable"):
        leaf(rng, 3)[0].mul_(2)


def _through_reshape_and_permute(a):
    y = a * 1
    y.reshape(2, 6).mul_(3)
    y.T[1].add_(y[0, 0] * 1)
    return (y * y).sum()


def test_inplace_through_index_view_rebases_the_base(rng):
    x, w = leaf(rng, 3, 4, dtype=pe.float64), leaf(rng, 4, dtype=pe.float64)
    h = leaf(rng, 3, dtype=pe.float64)

    def f(a, b, c):
        y = a * 1
        y[:, 0].mul_(2)  # through a view of y
        row = y[1]
        row.add_(b)
        y[0:2][:, 3].zero_()  # through a view of a view
        out = pe.zeros(4, 3, dtype=pe.float64)
        out[1].copy_(c)  # a base that did not require grad starts to
        return y.exp().sum() + (out * out).sum() * row.sum()

    assert gradcheck(f, (x, w, h))
    assert gradcheck(lambda a: _through_reshape_and_permute(a), (x,))
    xv, wv, hv = (t.detach().numpy() for t in (x, w, h))
    y = xv.copy()
    y[:, 0] *= 2
    y[1] += wv
    y[0:2, 3] = 0
    np.testing.assert_allclose(f(x, w, h).item(), np.exp(y).sum() + (hv * hv).sum() * y[1].sum(), rtol=1e-12)


# ----------------------------------------------------------------------------- custom Function
class Cube(Function):
    calls = []

    @staticmethod
    def forward(ctx, x, scale, *, offset=0.0):
        Cube.calls.append((ctx.needs_input_grad, scale, offset))
        ctx.save_for_backward(x)
        ctx.scale = scale
        return scale * x ** 3 + offset

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * 3 * ctx.scale * x ** 2, None


class SplitHalves(Function):
    @staticmethod
    def forward(ctx, x):
        n = x.shape[0] // 2
        ctx.n = n
        return x[:n] * 2, x[n:] * 3, ctx.backend.xp.argmax(x)

    @staticmethod
    def backward(ctx, ga, gb, gidx):
        return ctx.backend.xp.concatenate([ga * 2, gb * 3])


def test_custom_function_contract(rng):
    x = leaf(rng, 5, dtype=pe.float64)
    y = Cube.apply(x, 2.0, offset=1.0)
    assert Cube.calls[-1] == ((True, False), 2.0, 1.0)
    assert isinstance(y, pe.Tensor) and y.grad_fn.name == "CubeBackward"
    np.testing.assert_allclose(y.detach().numpy(), 2 * x.detach().numpy() ** 3 + 1, rtol=1e-12)
    assert gradcheck(lambda t: Cube.apply(t, 0.7), (x,))
    with pe.no_grad():
        Cube.apply(x, 1.0)
    assert Cube.calls[-1][0] == (False, False)


def test_multi_output_function_unused_output_gets_zero_gradient(rng):
    x = leaf(rng, 6, dtype=pe.float64)
    a, b, idx = SplitHalves.apply(x)
    assert a.requires_grad and b.requires_grad and not idx.requires_grad and idx.dtype == pe.int64
    a.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [2, 2, 2, 0, 0, 0])
    assert gradcheck(lambda t: SplitHalves.apply(t)[:2], (x,))


def test_none_gradient_leaves_upstream_grad_unset(rng):
    class Stop(Function):
        @staticmethod
        def forward(ctx, x):
            return x * 1

        @staticmethod
        def backward(ctx, g):
            return None

    x, w = leaf(rng, 3), leaf(rng, 3)
    (Stop.apply(x.exp()) + w).sum().backward()
    assert x.grad is None
    np.testing.assert_array_equal(w.grad.numpy(), np.ones(3))


def test_mark_non_differentiable(rng):
    class WithMask(Function):
        @staticmethod
        def forward(ctx, x):
            mask = (x > 0).astype(x.dtype)
            ctx.mark_non_differentiable(mask)
            return x * 2, mask

        @staticmethod
        def backward(ctx, g, gmask):
            return g * 2

    y, m = WithMask.apply(leaf(rng, 4))
    assert y.requires_grad and not m.requires_grad


def test_device_mismatch_names_both_devices():
    a = pe.ones(3)
    fake_gpu = pe.Tensor._make(np.ones(3, np.float32), "cuda")
    with pytest.raises(RuntimeError, match="cpu and cuda"):
        a + fake_gpu


def test_wrong_gradient_shape_from_backward_is_named(rng):
    class Bad(Function):
        @staticmethod
        def forward(ctx, x):
            return x * 1

        @staticmethod
        def backward(ctx, g):
            return g[:1]

    with pytest.raises(RuntimeError, match=r"BadBackward.*\(1,\).*\(3,\)"):
        Bad.apply(leaf(rng, 3)).sum().backward()


# ----------------------------------------------------------------------------- gradcheck, anomaly
class WrongGrad(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * x  # should be 2 * g * x


def test_gradcheck_catches_a_wrong_backward(rng):
    x = leaf(rng, 3, 2, dtype=pe.float64)
    with pytest.raises(GradcheckError, match=r"input 0 of shape \(3, 2\) at index"):
        gradcheck(WrongGrad.apply, (x,))
    assert gradcheck(WrongGrad.apply, (x,), raise_exception=False) is False
    assert x.grad is None  # gradcheck leaves .grad as it found it


def test_gradcheck_needs_float64(rng):
    with pytest.raises(TypeError, match="float64"):
        gradcheck(lambda t: t * 2, (leaf(rng, 3),))


def test_detect_anomaly_names_the_function(rng):
    class NanGrad(Function):
        @staticmethod
        def forward(ctx, x):
            return x * 1

        @staticmethod
        def backward(ctx, g):
            return g * float("nan")

    x = leaf(rng, 3)
    NanGrad.apply(x).sum().backward()  # silently NaN outside the context, as PyTorch
    assert np.isnan(x.grad.numpy()).all()
    with pe.autograd.detect_anomaly():
        with pytest.raises(RuntimeError, match="NanGradBackward"):
            NanGrad.apply(x).sum().backward()


@pytest.mark.torch
def test_inplace_and_views_match_torch(rng):
    torch = pytest.importorskip("torch")
    a, b = rng.standard_normal((4, 5)), rng.standard_normal(5)

    def f(x, w, lib):
        y = x * 1
        y[:, 1].mul_(-2)
        y[2] = w * 3
        y.T[0].add_(w[:4])
        v = y.reshape(5, 4)
        v.sub_(0.5)
        y.clamp_(-1.5, 1.5)
        z = y * 2 + 1
        z[z > 2] = 0.0
        return (z * y).sum() + v.sum()

    xo, wo = pe.tensor(a, requires_grad=True), pe.tensor(b, requires_grad=True)
    xt, wt = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
    lo, lt = f(xo, wo, pe), f(xt, wt, torch)
    np.testing.assert_allclose(lo.item(), lt.item(), rtol=1e-12)
    lo.backward()
    lt.backward()
    np.testing.assert_allclose(xo.grad.numpy(), xt.grad.numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(wo.grad.numpy(), wt.grad.numpy(), rtol=1e-12, atol=1e-14)

    for lib, x in ((pe, pe.tensor(a, requires_grad=True)), (torch, torch.tensor(a, requires_grad=True))):
        z = (x * 1).exp()
        z[z > 2] = 0.0  # exp saved its output: both engines refuse the backward
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            z.sum().backward()
