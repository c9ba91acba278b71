"""Every layer against PyTorch: the torch module's (randomised) state dict, as NumPy, loads
into ours; outputs, input gradients and parameter gradients then agree in float64, and the
state_dict keys, shapes and repr equal torch's."""
import numpy as np
import pytest

import pyengine as pe
from pyengine import nn

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch


def _randomise(tmod, rng):
    """Random parameters and (valid) running statistics, so a wrong copy cannot pass."""
    with torch.no_grad():
        for name, t in tmod.state_dict().items():
            if not t.is_floating_point():
                continue
            values = rng.standard_normal(tuple(t.shape))
            if name.endswith("running_var"):
                values = np.abs(values) + 0.5
            t.copy_(torch.from_numpy(values))


def _pair(ours_ctor, torch_ctor, rng):
    theirs = torch_ctor().double()
    _randomise(theirs, rng)
    ours = ours_ctor().double()
    ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    return ours, theirs


def _check_state_dict_matches(ours, theirs):
    sd, tsd = ours.state_dict(), theirs.state_dict()
    assert list(sd) == list(tsd)
    for k in sd:
        assert tuple(sd[k].shape) == tuple(tsd[k].shape), k
        np.testing.assert_allclose(sd[k].numpy(), tsd[k].numpy(), rtol=1e-12, atol=1e-12, err_msg=k)
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]


def _compare(ours, theirs, inputs, rng, rtol=1e-9, atol=1e-10, grad=True):
    """Forward both on the same float64 input, backward the same random upstream gradient."""
    x = pe.tensor(inputs, requires_grad=grad)
    tx = torch.tensor(inputs, requires_grad=grad)
    y, ty = ours(x), theirs(tx)
    np.testing.assert_allclose(y.detach().numpy(), ty.detach().numpy(), rtol=rtol, atol=atol)
    if not grad:
        return
    gy = rng.standard_normal(tuple(ty.shape))
    y.backward(pe.tensor(gy))
    ty.backward(torch.tensor(gy))
    np.testing.assert_allclose(x.grad.detach().numpy(), tx.grad.numpy(), rtol=rtol, atol=atol)
    for (name, p), (_, tp) in zip(ours.named_parameters(), theirs.named_parameters()):
        np.testing.assert_allclose(p.grad.detach().numpy(), tp.grad.numpy(), rtol=rtol, atol=atol, err_msg=name)


# (id, our constructor, torch constructor, input shape); both sides take the same arguments.
CASES = [
    ("linear", lambda m: m.Linear(5, 3), (4, 5)),
    ("linear_nobias_3d", lambda m: m.Linear(17, 1, bias=False), (2, 3, 17)),
    ("identity", lambda m: m.Identity(3, foo=1), (3, 4)),
    ("flatten", lambda m: m.Flatten(), (2, 3, 4, 5)),
    ("flatten_0_2", lambda m: m.Flatten(0, 2), (2, 3, 4, 5)),
    ("unflatten", lambda m: m.Unflatten(1, (3, 4)), (2, 12, 5)),
    ("unflatten_neg", lambda m: m.Unflatten(-1, (-1, 3)), (2, 5, 9)),
    ("conv", lambda m: m.Conv2d(3, 4, 3, stride=2, padding=1), (2, 3, 9, 7)),
    ("conv_groups_dil", lambda m: m.Conv2d(4, 6, (3, 2), padding=(2, 1), dilation=2, groups=2, bias=False),
     (1, 4, 8, 11)),
    ("conv_same", lambda m: m.Conv2d(2, 5, 3, padding="same"), (3, 2, 5, 6)),
    ("maxpool", lambda m: m.MaxPool2d(2), (2, 3, 9, 7)),
    ("maxpool_ceil", lambda m: m.MaxPool2d(3, stride=2, padding=1, ceil_mode=True), (2, 3, 9, 7)),
    ("avgpool", lambda m: m.AvgPool2d(3, 2, 1, count_include_pad=False), (2, 3, 9, 7)),
    ("avgpool_default", lambda m: m.AvgPool2d(2), (1, 2, 5, 4)),
    ("adaptive_avg", lambda m: m.AdaptiveAvgPool2d((3, 2)), (2, 3, 9, 7)),
    ("adaptive_avg_1", lambda m: m.AdaptiveAvgPool2d(1), (2, 3, 5, 5)),
    ("relu", lambda m: m.ReLU(), (3, 17)),
    ("leaky_relu", lambda m: m.LeakyReLU(0.2), (3, 17)),
    ("gelu", lambda m: m.GELU(), (3, 17)),
    ("gelu_tanh", lambda m: m.GELU(approximate="tanh"), (3, 17)),
    ("sigmoid", lambda m: m.Sigmoid(), (3, 17)),
    ("tanh", lambda m: m.Tanh(), (3, 17)),
    ("selu", lambda m: m.SELU(), (3, 17)),
    ("elu", lambda m: m.ELU(0.7), (3, 17)),
    ("softmax", lambda m: m.Softmax(dim=1), (3, 5, 2)),
    ("log_softmax", lambda m: m.LogSoftmax(dim=-1), (3, 17)),
    ("dropout_eval", lambda m: m.Dropout(0.3).eval(), (3, 17)),
    ("alpha_dropout_eval", lambda m: m.AlphaDropout(0.2).eval(), (3, 17)),
    ("layernorm", lambda m: m.LayerNorm(5), (4, 5)),
    ("layernorm_2d", lambda m: m.LayerNorm((3, 5), eps=1e-3), (2, 4, 3, 5)),
    ("layernorm_noaffine", lambda m: m.LayerNorm(7, elementwise_affine=False), (3, 7)),
    ("batchnorm1d", lambda m: m.BatchNorm1d(5), (7, 5)),
    ("batchnorm1d_3d", lambda m: m.BatchNorm1d(3, momentum=0.3), (4, 3, 6)),
    ("batchnorm1d_eval", lambda m: m.BatchNorm1d(5).eval(), (7, 5)),
    ("batchnorm2d", lambda m: m.BatchNorm2d(3), (4, 3, 5, 6)),
    ("batchnorm2d_eval", lambda m: m.BatchNorm2d(3).eval(), (4, 3, 5, 6)),
    ("batchnorm2d_noaffine", lambda m: m.BatchNorm2d(3, affine=False), (2, 3, 3, 5)),
    ("batchnorm2d_nobias", lambda m: m.BatchNorm2d(3, bias=False), (2, 3, 3, 5)),
    ("layernorm_nobias", lambda m: m.LayerNorm(4, bias=False), (3, 2, 4)),
    ("batchnorm2d_untracked_eval", lambda m: m.BatchNorm2d(3, track_running_stats=False).eval(), (2, 3, 3, 5)),
]


@pytest.mark.parametrize("ctor,shape", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_module_matches_torch(rng, ctor, shape):
    ours, theirs = _pair(lambda: ctor(nn), lambda: ctor(torch.nn), rng)
    _check_state_dict_matches(ours, theirs)
    assert repr(ours) == repr(theirs)
    _compare(ours, theirs, rng.standard_normal(shape), rng)
    # Running statistics and num_batches_tracked move as torch's do (batchnorm in training).
    _check_state_dict_matches(ours, theirs)
    assert ours.training == theirs.training


@pytest.mark.parametrize("momentum", [0.1, None])
def test_batchnorm_running_stats_over_several_batches(rng, momentum):
    ours, theirs = _pair(lambda: nn.BatchNorm2d(3, momentum=momentum),
                         lambda: torch.nn.BatchNorm2d(3, momentum=momentum), rng)
    for _ in range(4):
        _compare(ours, theirs, rng.standard_normal((5, 3, 2, 3)), rng, grad=False)
    _check_state_dict_matches(ours, theirs)
    assert ours.num_batches_tracked.item() == 4
    ours.eval()
    theirs.eval()
    _compare(ours, theirs, rng.standard_normal((2, 3, 4, 1)), rng)


def test_batchnorm_bad_input(rng):
    with pytest.raises(ValueError, match=r"expected 4D input \(got 3D input"):
        nn.BatchNorm2d(3)(pe.tensor(rng.standard_normal((2, 3, 4))))
    with pytest.raises(ValueError, match=r"expected 2D or 3D input \(got 4D input"):
        nn.BatchNorm1d(3)(pe.tensor(rng.standard_normal((2, 3, 4, 5))))
    with pytest.raises(ValueError, match=r"\(2, 4\) has 4 channels .* num_features=3"):
        nn.BatchNorm1d(3)(pe.tensor(rng.standard_normal((2, 4))))


@pytest.mark.parametrize("padding_idx", [None, 2, -1])
def test_embedding_matches_torch(rng, padding_idx):
    ours, theirs = _pair(lambda: nn.Embedding(10, 4, padding_idx=padding_idx),
                         lambda: torch.nn.Embedding(10, 4, padding_idx=padding_idx), rng)
    assert repr(ours) == repr(theirs)
    idx = rng.integers(0, 10, size=(3, 5))
    idx[0, :2] = 2
    idx[1, 0] = 9
    y, ty = ours(pe.tensor(idx)), theirs(torch.tensor(idx))
    np.testing.assert_allclose(y.detach().numpy(), ty.detach().numpy(), rtol=1e-15)
    gy = rng.standard_normal((3, 5, 4))
    y.backward(pe.tensor(gy))
    ty.backward(torch.tensor(gy))
    np.testing.assert_allclose(ours.weight.grad.numpy(), theirs.weight.grad.numpy(), rtol=1e-12, atol=1e-14)


def test_embedding_from_pretrained(rng):
    w = rng.standard_normal((6, 3))
    emb = nn.Embedding.from_pretrained(pe.tensor(w))
    assert not emb.weight.requires_grad
    np.testing.assert_array_equal(emb(pe.tensor(np.array([5, 0]))).numpy(), w[[5, 0]])
    with pytest.raises(ValueError, match="must be 2-D"):
        nn.Embedding.from_pretrained(pe.tensor(w[0]))


def _loss_inputs(rng, kind, n=7, c=5):
    if kind == "class":
        target = rng.integers(0, c, size=n)
        target[2] = 1
        return rng.standard_normal((n, c)), target
    if kind == "prob":
        return 1 / (1 + np.exp(-rng.standard_normal((n, c)))), rng.uniform(size=(n, c))
    if kind == "logit":
        return rng.standard_normal((n, c)), rng.uniform(size=(n, c))
    if kind == "logprob":
        x = rng.standard_normal((n, c))
        return x - np.log(np.exp(x).sum(1, keepdims=True)), rng.integers(0, c, size=n)
    return rng.standard_normal((n, c)), rng.standard_normal((n, c))


LOSSES = [
    ("ce", lambda m, w: m.CrossEntropyLoss(), "class"),
    ("ce_weight_sum", lambda m, w: m.CrossEntropyLoss(weight=w(5), reduction="sum"), "class"),
    ("ce_ignore_smooth", lambda m, w: m.CrossEntropyLoss(ignore_index=1, label_smoothing=0.2), "class"),
    ("ce_none", lambda m, w: m.CrossEntropyLoss(reduction="none", label_smoothing=0.1), "class"),
    ("nll", lambda m, w: m.NLLLoss(), "logprob"),
    ("nll_weight_ignore", lambda m, w: m.NLLLoss(weight=w(5), ignore_index=1), "logprob"),
    ("mse", lambda m, w: m.MSELoss(), "real"),
    ("mse_sum", lambda m, w: m.MSELoss(reduction="sum"), "real"),
    ("l1", lambda m, w: m.L1Loss(), "real"),
    ("l1_none", lambda m, w: m.L1Loss(reduction="none"), "real"),
    ("mse_legacy_reduce", lambda m, w: m.MSELoss(reduce=False), "real"),
    ("nll_legacy_size_average", lambda m, w: m.NLLLoss(w(5), False, 2), "logprob"),
    ("bce", lambda m, w: m.BCELoss(), "prob"),
    ("bce_weight", lambda m, w: m.BCELoss(weight=w(5), reduction="sum"), "prob"),
    ("bce_logits", lambda m, w: m.BCEWithLogitsLoss(), "logit"),
    ("bce_logits_pos", lambda m, w: m.BCEWithLogitsLoss(pos_weight=w(5), weight=w(5)), "logit"),
]


@pytest.mark.filterwarnings("ignore:size_average and reduce")
@pytest.mark.parametrize("ctor,kind", [c[1:] for c in LOSSES], ids=[c[0] for c in LOSSES])
def test_loss_matches_torch(rng, ctor, kind):
    weight = np.abs(rng.standard_normal(5)) + 0.1
    ours = ctor(nn, lambda n: pe.tensor(weight[:n]))
    theirs = ctor(torch.nn, lambda n: torch.tensor(weight[:n]))
    assert repr(ours) == repr(theirs)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    x_np, t_np = _loss_inputs(rng, kind)
    x, tx = pe.tensor(x_np, requires_grad=True), torch.tensor(x_np, requires_grad=True)
    y, ty = ours(x, pe.tensor(t_np)), theirs(tx, torch.tensor(t_np))
    np.testing.assert_allclose(y.detach().numpy(), ty.detach().numpy(), rtol=1e-10, atol=1e-12)
    gy = rng.standard_normal(tuple(ty.shape))
    y.backward(pe.tensor(gy))
    ty.backward(torch.tensor(gy))
    np.testing.assert_allclose(x.grad.detach().numpy(), tx.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_bad_reduction_raises_and_legacy_arguments_warn():
    with pytest.raises(ValueError, match="'average' is not a valid value for reduction"):
        nn.MSELoss(reduction="average")
    with pytest.warns(UserWarning, match="use reduction='sum' instead"):
        assert nn.L1Loss(size_average=False).reduction == "sum"


def test_float32_linear_at_fp32_tolerance(rng):
    theirs = torch.nn.Linear(33, 17)
    ours = nn.Linear(33, 17)
    ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    x = rng.standard_normal((5, 33)).astype(np.float32)
    y = ours(pe.tensor(x))
    assert y.dtype == pe.float32
    np.testing.assert_allclose(y.detach().numpy(), theirs(torch.tensor(x)).detach().numpy(), rtol=1e-5, atol=1e-5)


def test_sequential_of_layers_matches_torch(rng):
    def build(m):
        return m.Sequential(m.Conv2d(3, 4, 3, padding=1), m.BatchNorm2d(4), m.ReLU(), m.MaxPool2d(2),
                            m.Flatten(), m.Linear(4 * 4 * 3, 6), m.GELU(), m.Dropout(0.5), m.Linear(6, 2))
    ours, theirs = _pair(lambda: build(nn), lambda: build(torch.nn), rng)
    ours.eval()
    theirs.eval()
    _check_state_dict_matches(ours, theirs)
    assert repr(ours) == repr(theirs)
    _compare(ours, theirs, rng.standard_normal((2, 3, 9, 7)), rng)


def test_maxpool_return_indices_match_torch(rng):
    x = rng.standard_normal((2, 3, 9, 7))
    y, idx = nn.MaxPool2d(3, stride=2, padding=1, return_indices=True)(pe.tensor(x))
    ty, tidx = torch.nn.MaxPool2d(3, stride=2, padding=1, return_indices=True)(torch.tensor(x))
    np.testing.assert_array_equal(idx.numpy(), tidx.numpy())
    np.testing.assert_array_equal(y.numpy(), ty.numpy())
