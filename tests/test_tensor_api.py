"""Tensor API: creation, dtypes and promotion, host access, repr, bad input, devices,
pe.cuda / pe.backends.cuda, pe.save / pe.load, and a few checks against PyTorch."""
import numpy as np
import pytest

import pyengine as pe


# ----------------------------------------------------------------------------- creation
def test_tensor_infers_dtypes_like_torch(rng):
    assert pe.tensor([1.5, 2.0]).dtype == pe.float32
    assert pe.tensor([1, 2]).dtype == pe.int64
    assert pe.tensor([True, False]).dtype == pe.bool
    assert pe.tensor(3.0).shape == ()
    a = rng.standard_normal((3, 2))
    t = pe.tensor(a)
    assert t.dtype == pe.float64
    a[0, 0] = 100.0
    assert t[0, 0].item() != 100.0, "pe.tensor must copy"
    assert pe.tensor(a, dtype=pe.float32).dtype == pe.float32
    src = pe.tensor([1.0, 2.0])
    copy = pe.tensor(src)
    src.add_(1.0)
    assert copy.tolist() == [1.0, 2.0], "pe.tensor(tensor) must copy"
    assert pe.tensor(rng.integers(0, 5, 4).astype(np.int32)).dtype == pe.int64
    t = pe.tensor([[1.0, 2.0]], requires_grad=True)
    assert t.requires_grad and t.is_leaf


def test_non_native_byte_order_keeps_the_width(rng):
    """np.fromfile(f, ">f4") data is float32 (torch refuses it); it became float64, then broke Linear."""
    for dt, want in ((">f4", pe.float32), (">f8", pe.float64), (">i4", pe.int64), (">i8", pe.int64)):
        x = (rng.standard_normal(5) * 10).astype(dt)
        t = pe.tensor(x)
        assert t.dtype == want, dt
        np.testing.assert_array_equal(t.numpy(), x.astype(want.np))
    w = rng.standard_normal((3, 5))
    x = rng.standard_normal((2, 5)).astype(">f4")
    out = pe.nn.functional.linear(pe.tensor(x), pe.tensor(w.astype(np.float32)))
    assert out.dtype == pe.float32
    np.testing.assert_allclose(out.numpy(), x.astype(np.float64) @ w.astype(np.float32).astype(np.float64).T,
                               rtol=1e-5, atol=1e-6)


def test_from_numpy_shares_memory(rng):
    a = rng.standard_normal(4)
    t = pe.from_numpy(a)
    a[1] = 7.0
    assert t[1].item() == 7.0 and t.dtype == pe.float64
    with pytest.raises(TypeError, match="complex128"):
        pe.from_numpy(np.ones(2, np.complex128))


def test_factories():
    assert pe.zeros(2, 3).shape == (2, 3) and pe.zeros((2, 3)).dtype == pe.float32
    np.testing.assert_array_equal(pe.ones([3], dtype=pe.int64).numpy(), [1, 1, 1])
    assert pe.full((2,), 7).dtype == pe.int64
    assert pe.full((2,), 0.5).dtype == pe.float32
    assert pe.full((2,), True).dtype == pe.bool
    np.testing.assert_array_equal(pe.arange(5).numpy(), np.arange(5))
    assert pe.arange(5).dtype == pe.int64
    np.testing.assert_allclose(pe.arange(1, 2, 0.25).numpy(), [1, 1.25, 1.5, 1.75])
    assert pe.arange(0, 1, 0.5).dtype == pe.float32
    np.testing.assert_allclose(pe.linspace(-1, 1, 5).numpy(), np.linspace(-1, 1, 5), rtol=1e-6)
    assert pe.empty(3, 1).shape == (3, 1)
    base = pe.ones(2, 3, dtype=pe.float64)
    for like in (pe.zeros_like, pe.ones_like, pe.empty_like, pe.rand_like, pe.randn_like):
        t = like(base)
        assert t.shape == (2, 3) and t.dtype == pe.float64
    assert pe.full_like(base, 4.0).numpy().tolist() == [[4.0] * 3] * 2
    with pytest.raises(RuntimeError, match="negative dimension"):
        pe.zeros(2, -1)


def test_random_factories_and_seed():
    pe.manual_seed(123)
    a, b = pe.rand(4, 5), pe.randn(6)
    pe.manual_seed(123)
    np.testing.assert_array_equal(pe.rand(4, 5).numpy(), a.numpy())
    np.testing.assert_array_equal(pe.randn(6).numpy(), b.numpy())
    assert ((a.numpy() >= 0) & (a.numpy() < 1)).all() and a.dtype == pe.float32
    r = pe.randint(3, 7, (1000,))
    assert r.dtype == pe.int64 and set(r.numpy().tolist()) == {3, 4, 5, 6}
    assert pe.randint(5, (2, 3)).shape == (2, 3)
    assert pe.randn(2, dtype=pe.float64).dtype == pe.float64
    with pytest.raises(RuntimeError, match="floating point"):
        pe.rand(3, dtype=pe.int64)


# ----------------------------------------------------------------------------- promotion
def test_type_promotion_as_pytorch():
    f32, f64 = pe.ones(2), pe.ones(2, dtype=pe.float64)
    i64, b = pe.ones(2, dtype=pe.int64), pe.ones(2, dtype=pe.bool)
    assert (f32 * 2.5).dtype == pe.float32
    assert (f32 + 1).dtype == pe.float32
    assert (i64 + 1.5).dtype == pe.float32
    assert (i64 + 2).dtype == pe.int64
    assert (f32 + f64).dtype == pe.float64
    assert (f32 + i64).dtype == pe.float32
    assert (i64 / i64).dtype == pe.float32
    assert (b + b).dtype == pe.bool
    assert (b + 1).dtype == pe.int64
    assert (f32 + pe.tensor(1.0, dtype=pe.float64)).dtype == pe.float32, "0-dim loses to dimensioned"
    assert (i64 + pe.tensor(1.0, dtype=pe.float64)).dtype == pe.float64, "higher category wins"
    np.testing.assert_allclose((pe.tensor([1, 2]) / 4).numpy(), [0.25, 0.5])
    assert pe.cat([f32, f64]).dtype == pe.float64


@pytest.mark.parametrize("op", [lambda t, s: t / s, lambda t, s: s / t, lambda t, s: t * s,
                                lambda t, s: s - t, lambda t, s: t ** s, lambda t, s: s ** t])
def test_numpy_scalars_are_weak_like_python_scalars(op):
    """np.float64 subclasses float; ``x / np.sqrt(d)`` must stay float32, as in torch."""
    torch = pytest.importorskip("torch")
    for scalar in (np.float64(1.5), np.float32(1.5), np.int64(2)):
        for data in ([1.0, 2.0], [1, 2]):
            want = op(torch.tensor(data), scalar)
            got = op(pe.tensor(data), scalar)
            assert str(got.dtype).split(".")[1] == str(want.dtype).split(".")[1], (scalar, data)
            np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-6)


def test_conversions():
    t = pe.tensor([1.7, -2.2, 0.0])
    assert t.double().dtype == pe.float64
    np.testing.assert_array_equal(t.long().numpy(), [1, -2, 0])
    np.testing.assert_array_equal(t.bool().numpy(), [True, True, False])
    assert t.long().float().dtype == pe.float32
    assert t.to(pe.float64).dtype == pe.float64 and t.to("cpu") is t
    assert t.type(pe.int64).dtype == pe.int64 and t.type() == "pyengine.float32"
    assert t.to(dtype=pe.float64, device="cpu").dtype == pe.float64
    x = pe.tensor([1.0, 2.0], requires_grad=True)
    x.double().sum().backward()
    assert x.grad.dtype == pe.float32


# ----------------------------------------------------------------------------- host access, repr
def test_item_tolist_numpy_len(rng):
    t = pe.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert t.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    assert t[1, 0].item() == 3.0 and isinstance(t.sum().item(), float)
    assert len(t) == 2 and t.ndim == 2 and t.dim() == 2 and t.numel() == 4 and t.size(-1) == 2
    assert [r.tolist() for r in t] == [[1.0, 2.0], [3.0, 4.0]]
    assert float(t[0, 1]) == 2.0 and int(pe.tensor(5)) == 5
    with pytest.raises(RuntimeError, match="4 elements"):
        t.item()
    with pytest.raises(RuntimeError, match="ambiguous"):
        bool(t)
    with pytest.raises(TypeError, match="0-d"):
        len(pe.tensor(1.0))
    with pytest.raises(RuntimeError, match="detach"):
        pe.tensor([1.0], requires_grad=True).numpy()
    np.testing.assert_array_equal(np.asarray(t), [[1.0, 2.0], [3.0, 4.0]])


def test_deepcopy_leaves_only(rng):
    import copy
    x = pe.tensor(rng.standard_normal(3), requires_grad=True)
    x.grad = pe.ones(3)
    y = copy.deepcopy(x)
    assert y is not x and y.requires_grad and y.grad.tolist() == [1.0, 1.0, 1.0]
    y.data[0] = 99.0
    assert x.data[0] != 99.0
    with pytest.raises(RuntimeError, match="graph leaves"):
        copy.deepcopy(x * 2)


def test_assigning_data_takes_the_tensors_array(rng):
    """``layer.weight.data = t`` (a PyTorch idiom) swaps the values in place, as torch does."""
    torch = pytest.importorskip("torch")
    w, x = rng.standard_normal((2, 3)).astype(np.float32), rng.standard_normal((4, 3)).astype(np.float32)
    layer, tlayer = pe.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    layer.weight.data = pe.tensor(w)
    tlayer.weight.data = torch.tensor(w)
    layer.bias.data = pe.tensor(tlayer.bias.detach().numpy())
    assert isinstance(layer.weight, pe.nn.Parameter) and layer.weight.requires_grad
    np.testing.assert_allclose(layer(pe.tensor(x)).detach().numpy(), tlayer(torch.tensor(x)).detach().numpy(),
                               rtol=1e-5, atol=1e-6)
    with pytest.raises(TypeError, match="Tensor"):
        layer.weight.data = [1.0, 2.0]


def test_format_spec_on_zero_dim_like_torch():
    torch = pytest.importorskip("torch")
    for value, spec in ((2.71828, ".3f"), (2.71828, ""), (7, "d"), (7, "5d"), (0.000123, ".2e")):
        assert f"{pe.tensor(value):{spec}}" == f"{torch.tensor(value):{spec}}"
    assert f"{pe.tensor([1.0, 2.0])}" == "tensor([1., 2.])"
    with pytest.raises(TypeError):
        f"{pe.tensor([1.0, 2.0]):.2f}"


def test_repr_like_torch():
    assert repr(pe.tensor([1.0, 2.5])) == "tensor([1.0000, 2.5000])"
    assert repr(pe.tensor([[1.0, -2.0], [3.0, 4.0]])) == "tensor([[ 1., -2.],\n        [ 3.,  4.]])"
    assert repr(pe.tensor([1e-6, 1.0])) == "tensor([1.0000e-06, 1.0000e+00])"
    assert repr(pe.tensor([1, 2])) == "tensor([1, 2])"
    assert repr(pe.tensor([1.0], dtype=pe.float64)) == "tensor([1.], dtype=pyengine.float64)"
    x = pe.tensor([1.0], requires_grad=True)
    assert repr(x) == "tensor([1.], requires_grad=True)"
    assert repr(x * 2) == "tensor([2.], grad_fn=<MulBackward>)"
    assert repr(pe.tensor(3.0)) == "tensor(3.)"


# ----------------------------------------------------------------------------- bad input
def test_matmul_shape_mismatch_names_both_shapes(rng):
    a, b = pe.randn(3, 4), pe.randn(5, 2)
    with pytest.raises(RuntimeError, match=r"\(3, 4\).*\(5, 2\)"):
        a @ b
    with pytest.raises(RuntimeError, match="dtype"):
        a @ pe.randn(4, 2, dtype=pe.float64)
    with pytest.raises(RuntimeError, match="1D"):
        pe.matmul(pe.tensor(1.0), a)


def test_broadcast_mismatch_names_both_shapes():
    with pytest.raises(RuntimeError, match=r"add: shapes \(2, 3\) and \(4,\)"):
        pe.ones(2, 3) + pe.ones(4)
    with pytest.raises(RuntimeError, match=r"\(2, 3\).*\(2,\)"):
        pe.where(pe.ones(2, 3) > 0, pe.ones(2), 0.0)


def test_shape_errors():
    t = pe.ones(2, 3)
    with pytest.raises(RuntimeError, match="invalid for input of size 6"):
        t.reshape(4, 2)
    with pytest.raises(IndexError, match="Dimension out of range"):
        t.sum(dim=2)
    with pytest.raises(RuntimeError, match="expanded size"):
        t.expand(2, 4)
    with pytest.raises(RuntimeError, match="Sizes of tensors must match"):
        pe.cat([t, pe.ones(3, 2)])
    with pytest.raises(RuntimeError, match="equal size"):
        pe.stack([t, pe.ones(3, 2)])
    with pytest.raises(RuntimeError, match="sum exactly"):
        t.split([1, 1], dim=1)
    with pytest.raises(RuntimeError, match="boolean"):
        t.masked_fill(pe.ones(2, 3), 0.0)
    with pytest.raises(RuntimeError, match="mean"):
        pe.arange(3).mean()


# ----------------------------------------------------------------------------- devices
def test_cuda_unavailable_raises_with_reason():
    if pe.cuda.is_available():
        pytest.skip("a GPU is usable here; the error path is for machines without one")
    reason = pe.cuda.unavailable_reason()
    assert reason
    assert pe.cuda.device_count() == 0
    with pytest.raises(RuntimeError, match="CUDA is not available") as err:
        pe.ones(2).to("cuda")
    assert reason in str(err.value)
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        pe.zeros(2, device="cuda")
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        pe.ones(2).cuda()
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        pe.Tensor(np.ones(2), device="cuda")
    with pytest.raises(RuntimeError, match="unknown device"):
        pe.ones(2).to("tpu")


def test_backend_switches():
    assert pe.cuda.current_kernels() == pe.backends.cuda.get_kernels()
    before = pe.cuda.current_kernels()
    with pe.backends.cuda.kernels("numba"):
        assert pe.cuda.current_kernels() == "numba"
    assert pe.cuda.current_kernels() == before
    with pytest.raises(ValueError, match="'native' or 'numba'"):
        pe.backends.cuda.set_kernels("cublas")
    assert pe.backends.cuda.matmul.allow_tf32 is False


@pytest.mark.gpu
def test_to_cuda_and_back_keeps_values_and_grad(rng):
    a = rng.standard_normal((3, 17)).astype(np.float32)
    x = pe.tensor(a, requires_grad=True)
    y = x.to("cuda")
    assert y.device == "cuda" and pe.cuda.device_count() >= 1 and pe.cuda.get_device_name()
    z = (y * 2).sum(dim=1).cpu()
    pe.cuda.synchronize()
    np.testing.assert_allclose(z.detach().numpy(), 2 * a.sum(axis=1), rtol=1e-5)
    z.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), np.full_like(a, 2.0))


def test_lazy_submodules_are_attributes():
    import importlib.util
    for name in ("nn", "optim", "data", "models"):
        if importlib.util.find_spec(f"pyengine.{name}") is None:
            continue
        assert getattr(pe, name).__name__ == f"pyengine.{name}"
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        pe.nonexistent


# ----------------------------------------------------------------------------- save / load
def test_save_load_roundtrip_nested(tmp_path, rng):
    w = rng.standard_normal((3, 2)).astype(np.float32)
    state = {
        "model": {"fc1.weight": pe.tensor(w), "fc1.bias": pe.zeros(2, dtype=pe.float64),
                  "steps": pe.tensor(5)},
        "optim": {"state": {0: {"step": 3, "exp_avg": rng.standard_normal(2)}},
                  "param_groups": [{"lr": 0.1, "betas": (0.9, 0.999), "params": [0], "name": None}]},
    }
    path = tmp_path / "ckpt.pt"
    pe.save(state, path)
    assert path.exists()
    back = pe.load(path)
    np.testing.assert_array_equal(back["model"]["fc1.weight"].numpy(), w)
    assert back["model"]["fc1.bias"].dtype == pe.float64
    assert back["model"]["steps"].shape == () and back["model"]["steps"].item() == 5
    assert back["optim"]["state"][0]["step"] == 3
    np.testing.assert_array_equal(back["optim"]["state"][0]["exp_avg"], state["optim"]["state"][0]["exp_avg"])
    assert back["optim"]["param_groups"] == [{"lr": 0.1, "betas": (0.9, 0.999), "params": [0], "name": None}]
    with np.load(path, allow_pickle=False) as npz:  # a plain npz with dotted keys, no pickle
        assert "model.fc1.weight" in npz.files and "optim.state.0.exp_avg" in npz.files


def test_load_plain_npz_and_reject_objects(tmp_path):
    path = tmp_path / "plain.npz"
    np.savez(path, **{"layer.weight": np.ones((2, 2), np.float32)})
    back = pe.load(path)
    assert isinstance(back["layer.weight"], pe.Tensor) and back["layer.weight"].shape == (2, 2)
    with pytest.raises(TypeError, match="cannot save"):
        pe.save({"f": lambda: 0}, tmp_path / "bad.pt")
    with pytest.raises(TypeError, match="pickle"):
        pe.save({"o": np.array([object()])}, tmp_path / "bad2.pt")


def test_save_load_a_bare_tensor_like_torch_save(tmp_path, rng):
    x = rng.standard_normal((3, 2)).astype(np.float32)
    pe.save(pe.tensor(x), tmp_path / "t.npz")
    np.testing.assert_array_equal(pe.load(tmp_path / "t.npz").numpy(), x)
    np.save(tmp_path / "a.npy", x)
    np.testing.assert_array_equal(pe.load(tmp_path / "a.npy").numpy(), x)


def test_saving_a_module_or_optimizer_points_to_state_dict(tmp_path):
    model = pe.nn.Linear(2, 2)
    with pytest.raises(TypeError, match=r"the object of type Linear.*save its .state_dict\(\) instead"):
        pe.save(model, tmp_path / "model.npz")
    with pytest.raises(TypeError, match=r"'opt' of type SGD.*state_dict"):
        pe.save({"opt": pe.optim.SGD(model.parameters(), lr=0.1)}, tmp_path / "ckpt.npz")


def test_load_names_files_it_cannot_read(tmp_path):
    (tmp_path / "notes.txt").write_text("not a checkpoint\n")
    with pytest.raises(ValueError, match="not a pe.save checkpoint"):
        pe.load(tmp_path / "notes.txt")
    torch = pytest.importorskip("torch")
    torch.save(torch.nn.Linear(2, 2).state_dict(), tmp_path / "model.pt")
    with pytest.raises(ValueError, match="PyTorch checkpoint"):
        pe.load(tmp_path / "model.pt")


# ----------------------------------------------------------------------------- against torch
@pytest.mark.torch
def test_composite_expression_matches_torch(rng):
    torch = pytest.importorskip("torch")
    a = rng.standard_normal((4, 3))
    b = rng.standard_normal((3, 5))
    c = rng.standard_normal(5)
    ours = [pe.tensor(v, requires_grad=True) for v in (a, b, c)]
    theirs = [torch.tensor(v, requires_grad=True) for v in (a, b, c)]

    def f(x, y, z, lib):
        h = (x @ y + z).clamp(-1.0, 2.0)
        s = lib.where(h > 0.2, h.exp(), h * h)
        m = s.max(dim=1).values + s.amax(0).sum() + s.std(dim=0).sum() + s[[0, 0, 3]].var()
        return (m / (1 + lib.abs(z).sum())).mean() + s.mean(dim=1, keepdim=True).sum()

    lo, lt = f(*ours, pe), f(*theirs, torch)
    lo.backward()
    lt.backward()
    np.testing.assert_allclose(lo.item(), lt.item(), rtol=1e-12)
    for o, t in zip(ours, theirs):
        np.testing.assert_allclose(o.grad.numpy(), t.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.torch
def test_shape_and_indexing_grads_match_torch(rng):
    torch = pytest.importorskip("torch")
    a = rng.standard_normal((3, 4, 5))
    mask = rng.standard_normal((4, 5)) > 0
    x, xt = pe.tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)

    def f(t, lib, m):
        u = t.permute(2, 0, 1).reshape(5, 12)[:, 1::2].unsqueeze(0).expand(2, 5, 6)
        v = lib.cat([u.flatten(1), u.flatten(1) * 2], dim=1)
        w = lib.stack(v.chunk(2, dim=0), dim=2).repeat(1, 2, 1)
        picked = t.transpose(0, 1)[m]
        return ((w * lib.arange(w.shape[1]).reshape(1, -1, 1)).tril().sum()
                + t[1:, [0, 0, 2]].sum() * 3 + (picked * picked).sum())

    mask3 = np.broadcast_to(mask[:, None, :], (4, 3, 5)).copy()
    mo, mt = pe.tensor(mask3), torch.tensor(mask3)
    yo, yt = f(x, pe, mo), f(xt, torch, mt)
    np.testing.assert_allclose(yo.item(), yt.item(), rtol=1e-12)
    yo.backward()
    yt.backward()
    np.testing.assert_allclose(x.grad.numpy(), xt.grad.numpy(), rtol=1e-12)
