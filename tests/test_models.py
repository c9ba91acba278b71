"""The course's models: shapes, parameters and outputs against the same architectures in
PyTorch, the SNN's initialisation, and the registry."""
import math

import numpy as np
import pytest

import pyengine as pe
from pyengine.models import MLP, LeNet5, SelfNormalizingMLP, SmallVGG, get_model, list_models, register_model


def _x(rng, *shape):
    return pe.from_numpy(rng.standard_normal(shape).astype(np.float32))


def _n_params(model):
    return sum(math.prod(p.shape) for p in model.parameters())


# ----- shapes ---------------------------------------------------------------------------

def test_mlp_shapes(rng):
    model = MLP([33, 17, 3, 10], activation="tanh")
    assert model(_x(rng, 3, 33)).shape == (3, 10)
    assert model(_x(rng, 1, 33)).shape == (1, 10)
    assert _n_params(model) == 33 * 17 + 17 + 17 * 3 + 3 + 3 * 10 + 10


def test_lenet5_shapes(rng):
    model = LeNet5()
    assert model(_x(rng, 3, 1, 28, 28)).shape == (3, 10)
    assert model.features(_x(rng, 1, 1, 28, 28)).shape == (1, 16, 5, 5)
    # The classic count for the 28x28 variant: 61,706 parameters.
    assert _n_params(model) == 61706


def test_lenet5_rejects_other_image_sizes(rng):
    with pytest.raises(ValueError, match=r"\(N, C, 28, 28\).*\(2, 1, 32, 32\)"):
        LeNet5()(_x(rng, 2, 1, 32, 32))


@pytest.mark.parametrize("hw", [8, 17, 28])
def test_small_vgg_shapes(rng, hw):
    model = SmallVGG(num_classes=7, channels=(4, 8, 5))
    assert model(_x(rng, 2, 1, hw, hw)).shape == (2, 7)


def test_snn_shapes_and_lecun_init(rng):
    pe.manual_seed(0)
    model = SelfNormalizingMLP([513, 257, 65], dropout=0.1)
    assert model(_x(rng, 5, 513)).shape == (5, 65)
    linears = [m for m in model.modules() if isinstance(m, pe.nn.Linear)]
    assert len(linears) == 2
    for lin in linears:
        w, b = lin.weight.detach().numpy(), lin.bias.detach().numpy()
        # the sample std of n normal draws has relative standard error 1/sqrt(2n); allow 5 of them
        assert abs(w.std() * math.sqrt(lin.in_features) - 1) < 5 / math.sqrt(2 * w.size)
        assert abs(w.mean()) < 4 / math.sqrt(lin.in_features) / math.sqrt(w.size)  # 4 standard errors
        np.testing.assert_array_equal(b, 0)
    kinds = [type(m).__name__ for m in model]
    assert kinds == ["Linear", "SELU", "AlphaDropout", "Linear"]


@pytest.mark.parametrize("kwargs,match", [
    (dict(sizes=[10]), "at least an input and an output"),
    (dict(sizes=[10, 0, 3]), "positive integers"),
    (dict(sizes=[10, 3], activation="swish"), "unknown activation 'swish'"),
])
def test_mlp_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MLP(**kwargs)


def test_snn_rejects_bad_dropout():
    with pytest.raises(ValueError, match="dropout"):
        SelfNormalizingMLP([4, 3], dropout=1.0)


# ----- against PyTorch ------------------------------------------------------------------

def _torch_twins(tnn):
    """The same architectures written in PyTorch, with the same module names."""

    class TorchLeNet5(tnn.Module):
        def __init__(self):
            super().__init__()
            self.features = tnn.Sequential(tnn.Conv2d(1, 6, 5, padding=2), tnn.ReLU(), tnn.MaxPool2d(2),
                                           tnn.Conv2d(6, 16, 5), tnn.ReLU(), tnn.MaxPool2d(2))
            self.classifier = tnn.Sequential(tnn.Flatten(), tnn.Linear(400, 120), tnn.ReLU(),
                                             tnn.Linear(120, 84), tnn.ReLU(), tnn.Linear(84, 10))

        def forward(self, x):
            return self.classifier(self.features(x))

    class TorchVGG(tnn.Module):
        def __init__(self, channels=(4, 6), convs=2):
            super().__init__()
            layers, c_in = [], 1
            for c in channels:
                for _ in range(convs):
                    layers += [tnn.Conv2d(c_in, c, 3, padding=1, bias=False), tnn.BatchNorm2d(c), tnn.ReLU()]
                    c_in = c
                layers.append(tnn.MaxPool2d(2))
            self.features = tnn.Sequential(*layers)
            self.pool = tnn.AdaptiveAvgPool2d(1)
            self.classifier = tnn.Sequential(tnn.Flatten(), tnn.Linear(c_in, 10))

        def forward(self, x):
            return self.classifier(self.pool(self.features(x)))

    return {
        "mlp": (lambda: MLP([64, 33, 17, 10], activation="gelu"),
                lambda: tnn.Sequential(tnn.Linear(64, 33), tnn.GELU(), tnn.Linear(33, 17), tnn.GELU(),
                                       tnn.Linear(17, 10)), (3, 64)),
        "snn": (lambda: SelfNormalizingMLP([64, 33, 17, 10], dropout=0.05),
                lambda: tnn.Sequential(tnn.Linear(64, 33), tnn.SELU(), tnn.AlphaDropout(0.05), tnn.Linear(33, 17),
                                       tnn.SELU(), tnn.AlphaDropout(0.05), tnn.Linear(17, 10)), (3, 64)),
        "lenet5": (LeNet5, TorchLeNet5, (3, 1, 28, 28)),
        "vgg": (lambda: SmallVGG(channels=(4, 6), convs_per_block=2), TorchVGG, (3, 1, 17, 17)),
    }


@pytest.mark.torch
@pytest.mark.parametrize("name", ["mlp", "snn", "lenet5", "vgg"])
def test_models_match_torch_architecture_and_outputs(rng, name):
    torch = pytest.importorskip("torch")
    make_ours, make_theirs, shape = _torch_twins(torch.nn)[name]
    ours, theirs = make_ours(), make_theirs().double()
    ours_sd, theirs_sd = ours.state_dict(), theirs.state_dict()
    assert list(ours_sd) == list(theirs_sd)
    assert [tuple(v.shape) for v in ours_sd.values()] == [tuple(v.shape) for v in theirs_sd.values()]
    assert _n_params(ours) == sum(p.numel() for p in theirs.parameters())

    # Same weights in, same outputs out (eval mode: dropout off, BatchNorm on running stats).
    theirs.eval()
    for m in theirs.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    ours.double().eval()
    ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    x = rng.standard_normal(shape)
    with torch.no_grad():
        expected = theirs(torch.from_numpy(x)).numpy()
    got = ours(pe.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-10)

    # Training mode too for the BatchNorm net: batch statistics, as PyTorch.
    if name == "vgg":
        theirs.train()
        ours.train()
        got = ours(pe.from_numpy(x)).detach().numpy()
        expected = theirs(torch.from_numpy(x)).detach().numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9)


# ----- registry -------------------------------------------------------------------------

def test_registry_builds_the_four_models(rng):
    assert {"mlp", "snn", "lenet5", "vgg"} <= set(list_models())
    assert isinstance(get_model("lenet5"), LeNet5)
    mlp = get_model("mlp")
    assert [m.out_features for m in mlp if isinstance(m, pe.nn.Linear)] == [128, 64, 10]
    narrow = get_model("mlp", sizes=(64, 3, 10))
    assert narrow(_x(rng, 2, 64)).shape == (2, 10)


def test_registry_errors():
    with pytest.raises(ValueError, match="unknown model 'resnet'.*lenet5"):
        get_model("resnet")
    with pytest.raises(ValueError, match="already registered"):
        register_model("mlp", MLP)
