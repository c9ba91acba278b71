"""nn.Module's machinery: registration, traversal, state_dict/load_state_dict (incl. bad
input), train/eval, zero_grad, to(), apply, repr, and the containers."""
from collections import OrderedDict

import numpy as np
import pytest

import pyengine as pe
from pyengine import nn


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 4)
        self.bn = nn.BatchNorm1d(4)
        self.scale = nn.Parameter(pe.ones(4))
        self.register_buffer("steps", pe.zeros(1))
        self.register_buffer("cache", pe.zeros(2), persistent=False)

    def forward(self, x):
        return self.bn(self.fc(x)) * self.scale


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(Block(), nn.ReLU())
        self.heads = nn.ModuleDict({"a": nn.Linear(4, 2), "b": nn.Linear(4, 1, bias=False)})
        self.extra = nn.ModuleList([nn.Linear(2, 2)])

    def forward(self, x):
        h = self.body(x)
        return self.extra[0](self.heads["a"](h)), self.heads["b"](h)


NET_KEYS = ["body.0.scale", "body.0.steps", "body.0.fc.weight", "body.0.fc.bias", "body.0.bn.weight",
            "body.0.bn.bias", "body.0.bn.running_mean", "body.0.bn.running_var", "body.0.bn.num_batches_tracked",
            "heads.a.weight", "heads.a.bias", "heads.b.weight", "extra.0.weight", "extra.0.bias"]


def test_state_dict_order_and_names():
    net = Net()
    assert list(net.state_dict()) == NET_KEYS
    assert [n for n, _ in net.named_parameters()] == [k for k in NET_KEYS if "running" not in k and "steps" not in k
                                                      and "num_batches" not in k]
    assert [n for n, _ in net.named_buffers()] == ["body.0.steps", "body.0.cache", "body.0.bn.running_mean",
                                                   "body.0.bn.running_var", "body.0.bn.num_batches_tracked"]
    assert [n for n, _ in net.named_children()] == ["body", "heads", "extra"]
    assert [n for n, _ in net.named_modules()] == ["", "body", "body.0", "body.0.fc", "body.0.bn", "body.1",
                                                   "heads", "heads.a", "heads.b", "extra", "extra.0"]
    assert len(list(net.parameters(recurse=False))) == 0
    assert net.get_submodule("body.0.bn") is net.body[0].bn


@pytest.mark.torch
def test_state_dict_keys_equal_torch_for_the_same_structure():
    torch = pytest.importorskip("torch")

    def build(m):
        return m.Sequential(OrderedDict(conv=m.Conv2d(1, 2, 3), bn=m.BatchNorm2d(2), act=m.ReLU(),
                                        heads=m.ModuleList([m.Linear(2, 2), m.Linear(2, 3)]),
                                        named=m.ModuleDict({"x": m.Embedding(5, 2), "y": m.LayerNorm(2)})))
    ours, theirs = build(nn).state_dict(), build(torch.nn).state_dict()
    assert list(ours) == list(theirs)
    assert [tuple(v.shape) for v in ours.values()] == [tuple(v.shape) for v in theirs.values()]
    assert repr(build(nn)) == repr(build(torch.nn))
    # a torch state dict loads as it is (CPU torch tensors convert through np.asarray)
    model = build(nn)
    model.load_state_dict(theirs)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), theirs[k].numpy(), err_msg=k)


def test_shared_parameters_are_listed_once():
    lin = nn.Linear(3, 3)
    seq = nn.Sequential(lin, nn.ReLU(), lin)
    assert len(list(seq.parameters())) == 2
    assert [n for n, _ in seq.named_modules()] == ["", "0", "1"]


def test_state_dict_is_detached_and_shares_storage():
    net = Net()
    sd = net.state_dict()
    w = sd["body.0.fc.weight"]
    assert not w.requires_grad
    assert w.data is net.body[0].fc.weight.data
    assert net.state_dict(keep_vars=True)["body.0.fc.weight"] is net.body[0].fc.weight


def test_load_state_dict_round_trip_numpy_and_tensors(rng):
    src, dst = Net(), Net()
    as_numpy = {k: rng.standard_normal(v.shape).astype(v.dtype.np) for k, v in src.state_dict().items()}
    as_numpy["body.0.bn.num_batches_tracked"] = np.array(7)
    result = dst.load_state_dict(as_numpy)
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert repr(result) == "<All keys matched successfully>"
    for k, v in dst.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), as_numpy[k])
    assert dst.body[0].bn.num_batches_tracked.dtype == pe.int64
    # values are copied in, not aliased
    as_numpy["heads.a.bias"][...] = 0
    assert np.all(dst.heads.a.bias.detach().numpy() != 0)
    # Tensors (e.g. another module's state dict) load too, float64 cast to the float32 params
    dst.load_state_dict({k: pe.tensor(v.numpy().astype(np.float64) if v.is_floating_point() else v.numpy())
                         for k, v in src.state_dict().items()})
    assert dst.body[0].fc.weight.dtype == pe.float32
    x = pe.tensor(rng.standard_normal((5, 3)).astype(np.float32))
    for a, b in zip(src.eval()(x), dst.eval()(x)):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-6)


def test_load_state_dict_errors_name_the_key_and_shapes():
    net = Net()
    sd = {k: v.numpy() for k, v in net.state_dict().items()}
    missing = dict(sd)
    del missing["heads.b.weight"]
    with pytest.raises(RuntimeError, match=r'Missing key\(s\) in state_dict: "heads.b.weight"'):
        net.load_state_dict(missing)
    with pytest.raises(RuntimeError, match=r'Unexpected key\(s\) in state_dict: "heads.c.weight"'):
        net.load_state_dict({**sd, "heads.c.weight": np.zeros(2)})
    wrong = {**sd, "body.0.fc.weight": np.zeros((3, 4), np.float32)}
    with pytest.raises(RuntimeError, match=r"size mismatch for body.0.fc.weight: copying a param with shape "
                                           r"\(3, 4\) from checkpoint, the shape in current model is \(4, 3\)"):
        net.load_state_dict(wrong)
    # shape mismatches raise even when not strict; nothing is half-loaded
    before = net.body[0].fc.bias.detach().numpy().copy()
    with pytest.raises(RuntimeError, match="size mismatch for body.0.fc.weight"):
        net.load_state_dict({**wrong, "body.0.fc.bias": np.ones(4, np.float32)}, strict=False)
    np.testing.assert_array_equal(net.body[0].fc.bias.detach().numpy(), before)
    with pytest.raises(RuntimeError, match='"heads.a.bias", expected a Tensor or NumPy array, got str'):
        net.load_state_dict({**sd, "heads.a.bias": "zeros"})
    with pytest.raises(TypeError, match="Expected state_dict to be dict-like"):
        net.load_state_dict([1, 2])


def test_load_state_dict_non_strict_reports_keys():
    net = Net()
    sd = {k: v.numpy() for k, v in net.state_dict().items() if not k.startswith("extra")}
    sd["stray"] = np.zeros(1)
    result = net.load_state_dict(sd, strict=False)
    assert result.missing_keys == ["extra.0.weight", "extra.0.bias"]
    assert result.unexpected_keys == ["stray"]
    assert result == (["extra.0.weight", "extra.0.bias"], ["stray"])


def test_train_eval_propagates_and_switches_dropout(rng):
    net = nn.Sequential(nn.Linear(3, 3), nn.Sequential(nn.Dropout(0.5), nn.BatchNorm1d(3)))
    assert all(m.training for m in net.modules())
    assert net.eval() is net
    assert not any(m.training for m in net.modules())
    x = pe.tensor(rng.standard_normal((4000, 3)))
    drop = net[1][0]
    np.testing.assert_array_equal(drop(x).numpy(), x.numpy())
    net.train()
    y = drop(x).numpy()
    kept = y != 0
    assert 0.47 < kept.mean() < 0.53
    np.testing.assert_allclose(y[kept], 2 * x.numpy()[kept])
    with pytest.raises(ValueError, match="training mode is expected to be boolean"):
        net.train("no")


def test_alpha_dropout_keeps_mean_and_variance_in_training(rng):
    x = pe.tensor(rng.standard_normal((400, 300)))
    y = nn.AlphaDropout(0.2).train()(x).numpy()
    assert abs(y.mean()) < 0.02 and y.std() == pytest.approx(1.0, abs=0.02)
    # Dropped units all take the value a * alpha' + b (Klambauer et al., 2017, eq. 15 ff.).
    alpha_p = -1.0507009873554805 * 1.6732632423543772
    a = ((1 - 0.2) * (1 + 0.2 * alpha_p ** 2)) ** -0.5
    values, counts = np.unique(y, return_counts=True)
    assert values[counts.argmax()] == pytest.approx(a * alpha_p - a * alpha_p * 0.2, rel=1e-6)
    assert 0.18 < counts.max() / y.size < 0.22
    with pytest.raises(ValueError, match="between 0 and 1, but got 1.5"):
        nn.Dropout(1.5)


def test_batchnorm_uses_running_stats_only_in_eval(rng):
    bn = nn.BatchNorm1d(3, momentum=None)
    batches = [rng.standard_normal((6, 3)) * 2 + 1 for _ in range(3)]
    for b in batches:
        bn(pe.tensor(b.astype(np.float32)))
    # momentum=None: the running stats are the plain average of the batch statistics
    np.testing.assert_allclose(bn.running_mean.numpy(), np.mean([b.mean(0) for b in batches], 0), rtol=1e-5)
    np.testing.assert_allclose(bn.running_var.numpy(), np.mean([b.var(0, ddof=1) for b in batches], 0), rtol=1e-5)
    assert bn.num_batches_tracked.item() == 3
    bn.eval()
    x = rng.standard_normal((2, 3)).astype(np.float32)
    expected = (x - bn.running_mean.numpy()) / np.sqrt(bn.running_var.numpy() + 1e-5)
    np.testing.assert_allclose(bn(pe.tensor(x)).detach().numpy(), expected, rtol=1e-5, atol=1e-6)
    assert bn.num_batches_tracked.item() == 3


def test_zero_grad_and_requires_grad(rng):
    lin = nn.Linear(3, 2)
    lin(pe.tensor(rng.standard_normal((4, 3)).astype(np.float32))).sum().backward()
    assert lin.weight.grad is not None
    lin.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(lin.weight.grad.numpy(), np.zeros((2, 3)))
    lin.zero_grad()
    assert lin.weight.grad is None and lin.bias.grad is None
    lin.requires_grad_(False)
    assert not any(p.requires_grad for p in lin.parameters())


def test_to_dtype_keeps_parameter_identity_and_integer_buffers():
    net = Net()
    w = net.body[0].fc.weight
    assert net.double() is net
    assert net.body[0].fc.weight is w and w.dtype == pe.float64 and w.requires_grad
    assert net.body[0].bn.running_mean.dtype == pe.float64
    assert net.body[0].bn.num_batches_tracked.dtype == pe.int64
    net.to(pe.float32)
    assert w.dtype == pe.float32
    net.to(dtype=pe.float64, device="cpu")
    assert w.dtype == pe.float64 and w.device == "cpu"
    with pytest.raises(TypeError, match="only accepts floating point dtypes"):
        net.to(pe.int64)


@pytest.mark.skipif(pe.cuda.is_available(), reason="checks the error raised where no GPU is")
def test_to_cuda_without_gpu_raises_clearly():
    with pytest.raises(RuntimeError, match="(?i)cuda"):
        nn.Linear(2, 2).cuda()


def test_setattr_registration_rules():
    m = nn.Module()
    m.w = nn.Parameter(pe.ones(2))
    m.sub = nn.Linear(1, 1)
    m.plain = 3
    assert "w" in m._parameters and "sub" in m._modules and m.plain == 3
    with pytest.raises(TypeError, match="cannot assign 'Tensor' as parameter 'w'"):
        m.w = pe.ones(2)
    m.w = None
    assert m.w is None and [id(p) for p in m.parameters()] == [id(p) for p in m.sub.parameters()]
    with pytest.raises(TypeError, match="pyengine.nn.Parameter or None required"):
        m.register_parameter("v", pe.ones(1))
    with pytest.raises(KeyError, match="empty or contain"):
        m.register_buffer("a.b", pe.ones(1))
    with pytest.raises(KeyError, match="attribute 'plain' already exists"):
        m.register_buffer("plain", pe.ones(1))
    with pytest.raises(AttributeError, match="'Module' object has no attribute 'nothing'"):
        m.nothing
    del m.sub
    assert "sub" not in m._modules

    class NoInit(nn.Module):
        def __init__(self):
            self.w = nn.Parameter(pe.ones(1))

    with pytest.raises(AttributeError, match="before Module.__init__"):
        NoInit()
    with pytest.raises(NotImplementedError, match='missing the required "forward"'):
        nn.Module()(1)


def test_apply_visits_children_first():
    net = nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.ReLU()))
    seen = []
    net.apply(lambda m: seen.append(type(m).__name__))
    assert seen == ["Linear", "ReLU", "Sequential", "Sequential"]


def test_sequential_indexing_slicing_and_growth(rng):
    a, b, c = nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)
    seq = nn.Sequential(a, b, c)
    assert len(seq) == 3 and seq[0] is a and seq[-1] is c
    head = seq[:2]
    assert isinstance(head, nn.Sequential) and list(head) == [a, b]
    x = pe.tensor(rng.standard_normal((5, 3)).astype(np.float32))
    np.testing.assert_allclose(seq(x).detach().numpy(), c(b(a(x))).detach().numpy())
    named = nn.Sequential(OrderedDict(first=a, act=b, last=c))
    assert list(named.state_dict()) == ["first.weight", "first.bias", "last.weight", "last.bias"]
    assert list(dict(named[1:].named_children())) == ["act", "last"]
    seq.append(nn.Tanh())
    assert len(seq) == 4 and isinstance(seq[3], nn.Tanh)
    seq.insert(-1, nn.Identity())
    assert isinstance(seq[3], nn.Identity) and isinstance(seq[4], nn.Tanh)
    del seq[1]
    assert [type(m).__name__ for m in seq] == ["Linear", "Linear", "Identity", "Tanh"]
    seq[1] = nn.Sigmoid()  # replacing keeps the position (and so the forward order)
    assert [type(m).__name__ for m in seq] == ["Linear", "Sigmoid", "Identity", "Tanh"]
    assert list(dict(seq.named_children())) == ["0", "1", "2", "3"]
    with pytest.raises(IndexError, match="index 7 is out of range for Sequential of length 4"):
        seq[7]


def test_module_list_and_dict():
    layers = nn.ModuleList([nn.Linear(2, 2) for _ in range(3)])
    layers.append(nn.ReLU())
    layers += [nn.Tanh()]
    assert len(layers) == 5 and isinstance(layers[-1], nn.Tanh)
    assert isinstance(layers[1:3], nn.ModuleList) and len(layers[1:3]) == 2
    assert list(layers.state_dict())[:2] == ["0.weight", "0.bias"]
    layers[1] = nn.GELU()
    assert isinstance(layers[1], nn.GELU) and isinstance(layers[2], nn.Linear)
    layers.insert(0, nn.Identity())
    assert isinstance(layers[0], nn.Identity) and list(dict(layers.named_children()))[-1] == "5"
    with pytest.raises(TypeError, match="should be called with an iterable"):
        layers.extend(3)
    heads = nn.ModuleDict({"b": nn.Linear(1, 1)})
    heads["a"] = nn.Linear(1, 2)
    assert list(heads.keys()) == ["b", "a"] and "a" in heads and len(heads) == 2
    assert list(heads.state_dict()) == ["b.weight", "b.bias", "a.weight", "a.bias"]
    assert isinstance(heads.pop("b"), nn.Linear) and list(heads) == ["a"]
    with pytest.raises(NotImplementedError):
        heads(1)


def test_repr_nested_like_torch():
    text = repr(Net())
    assert text.startswith("Net(\n  (body): Sequential(\n    (0): Block(\n      (fc): Linear(in_features=3, "
                           "out_features=4, bias=True)\n")
    assert "  (heads): ModuleDict(\n    (a): Linear(in_features=4, out_features=2, bias=True)\n" in text
    assert text.endswith("  (extra): ModuleList(\n    (0): Linear(in_features=2, out_features=2, bias=True)\n  )\n)")


def test_parameter_repr_and_type():
    p = nn.Parameter(pe.tensor([1.0, 2.0]))
    assert repr(p).startswith("Parameter containing:\ntensor([1., 2.]")
    assert p.requires_grad and isinstance(p, pe.Tensor)
    assert not isinstance(p * 2, nn.Parameter)
    with pytest.raises(TypeError, match="Parameter expects a pyengine Tensor, got list"):
        nn.Parameter([1.0])


def test_layer_argument_errors():
    with pytest.raises(ValueError, match="divisible by groups"):
        nn.Conv2d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="padding_mode 'reflect' is not supported"):
        nn.Conv2d(3, 3, 3, padding_mode="reflect")
    with pytest.raises(ValueError, match="approximate must be 'none' or 'tanh'"):
        nn.GELU("fast")
    with pytest.raises(ValueError, match="dim is None"):
        nn.Softmax()(pe.ones(2, 3))
    with pytest.raises(RuntimeError, match=r"sizes \(5, 2\) don't multiply to the size 12"):
        nn.Unflatten(1, (5, 2))(pe.ones(2, 12))
    with pytest.raises(ValueError, match="padding_idx 10 must be within num_embeddings"):
        nn.Embedding(10, 3, padding_idx=10)


def test_deepcopy_gives_independent_parameters(rng):
    import copy
    net = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    twin = copy.deepcopy(net)
    assert isinstance(twin[0].weight, nn.Parameter) and twin[0].weight is not net[0].weight
    twin[0].weight.data[...] = 0
    assert np.any(net[0].weight.detach().numpy() != 0)
    assert list(twin.state_dict()) == list(net.state_dict())


def test_absent_optional_parameters_are_registered_as_none():
    for m in (nn.Linear(2, 2, bias=False), nn.Conv2d(1, 1, 1, bias=False), nn.LayerNorm(2, bias=False),
              nn.BatchNorm1d(2, affine=False)):
        assert m.bias is None and "bias" in m._parameters
        m.bias = nn.Parameter(pe.zeros(2 if not isinstance(m, nn.Conv2d) else 1))
        assert "bias" in dict(m.named_parameters())


def test_every_exported_name_resolves():
    from pyengine import optim
    for name in nn.__all__:
        assert getattr(nn, name) is not None, name
    for name in optim.__all__:
        assert getattr(optim, name) is not None, name
    assert issubclass(nn.LSTM, nn.Module) and issubclass(nn.TransformerEncoderLayer, nn.Module)
