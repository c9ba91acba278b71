"""Convergence on the CPU: the digits MLP and LeNet-5 reach >= 95% test accuracy, the small
VGG trains, and a depth-16 SELU network trains where a depth-16 sigmoid network does not.
Each is sized to take seconds on two cores."""
import numpy as np
import pytest

import pyengine as pe
from pyengine.data import DataLoader, TensorDataset, load_digits
from pyengine.models import MLP, LeNet5, SelfNormalizingMLP, SmallVGG
from pyengine.train import evaluate, fit, split_dataset

pytestmark = pytest.mark.slow


def test_digits_mlp_reaches_95_percent():
    pe.manual_seed(0)
    train, val, test = split_dataset(load_digits(flatten=True), seed=0)
    model = MLP([64, 128, 64, 10])
    history = fit(model, train, val, test, epochs=12, batch_size=32, optimizer="adam", lr=3e-3, verbose=False)
    assert history["test_accuracy"] >= 0.95, history
    assert history["train_loss"][-1] < 0.25 * history["train_loss"][0]


def test_lenet5_reaches_95_percent_on_28x28_digits():
    pe.manual_seed(0)
    train, val, test = split_dataset(load_digits(size=28, normalize=True), seed=0)
    history = fit(LeNet5(), train, val, test, epochs=4, batch_size=64, optimizer="adam", lr=3e-3, verbose=False)
    assert history["test_accuracy"] >= 0.95, history


def test_small_vgg_trains_on_8x8_digits():
    pe.manual_seed(0)
    train, val, test = split_dataset(load_digits(size=8, normalize=True), seed=0)
    model = SmallVGG(channels=(16, 32))
    history = fit(model, train, val, test, epochs=2, batch_size=32, optimizer="adam", lr=3e-3, verbose=False)
    # evaluated in eval mode, so BatchNorm's running statistics are exercised too
    assert history["test_accuracy"] >= 0.9, history


def _standardised_digits():
    """Digits with every pixel standardised over the set (constant pixels left at 0), the
    input statistics self-normalising networks assume."""
    x, y = (t.numpy() for t in load_digits(flatten=True).tensors)
    std = x.std(axis=0)
    x = (x - x.mean(axis=0)) / np.where(std > 0, std, 1)
    return TensorDataset(pe.from_numpy(x.astype(np.float32)), pe.from_numpy(y))


def _activation_variances(model, x):
    """Variance of the output of every SELU of a Sequential, layer by layer."""
    variances = []
    with pe.no_grad():
        for layer in model:
            x = layer(x)
            if isinstance(layer, pe.nn.SELU):
                variances.append(float(x.numpy().var()))
    return variances


def test_selu_depth_16_trains_where_sigmoid_does_not():
    data = _standardised_digits()
    train, val, test = split_dataset(data, seed=1)
    sizes = [64] + [64] * 15 + [10]  # 16 linear layers
    x_all = data.tensors[0]

    pe.manual_seed(0)
    snn = SelfNormalizingMLP(sizes)
    variances = _activation_variances(snn, x_all)
    assert len(variances) == 15
    assert all(0.5 < v < 1.6 for v in variances), variances  # the self-normalising fixed point

    pe.manual_seed(0)
    sigmoid = MLP(sizes, activation="sigmoid")
    runs = {}
    for name, model in (("selu", snn), ("sigmoid", sigmoid)):
        initial = evaluate(model, DataLoader(train, batch_size=512))["loss"]
        history = fit(model, train, val, test, epochs=4, batch_size=32, optimizer="sgd", lr=0.003, verbose=False)
        runs[name] = (initial, history)

    initial, history = runs["selu"]
    assert history["train_loss"][-1] < 0.2 * initial, (initial, history["train_loss"])
    assert history["test_accuracy"] > 0.85
    # after training the variances drift but stay of order one: nothing vanishes or explodes
    variances = _activation_variances(snn.eval(), x_all)
    assert all(0.25 < v < 4 for v in variances), variances

    initial, history = runs["sigmoid"]
    # Gradients vanish through 16 sigmoids: the loss stays at chance level (ln 10 = 2.30).
    assert history["train_loss"][-1] > 0.9 * initial, (initial, history["train_loss"])
    assert history["test_accuracy"] < 0.3
