"""The course's MLP and LeNet-5 train on "cuda" with the native kernels and track the CPU:
same initial weights, same batches, the loss after each step agrees with the CPU's to
float32 accuracy (compounded over a few steps). Runs only where a CUDA GPU is."""
import numpy as np
import pytest

import pyengine as pe
from _helpers import cuda_kernels
from pyengine import nn, optim
from pyengine.data import load_digits
from pyengine.models import MLP, LeNet5

pytestmark = pytest.mark.gpu


@pytest.fixture(autouse=True)
def native():
    with cuda_kernels("native"):
        yield


def _losses(model, device, batches, steps, opt_name):
    model = model.to(device)
    params = list(model.parameters())
    opt = optim.Adam(params, lr=3e-3) if opt_name == "adam" else optim.SGD(params, lr=0.05, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    losses = []
    for step in range(steps):
        x, y = batches[step % len(batches)]
        opt.zero_grad()
        loss = loss_fn(model(pe.tensor(x, device=device)), pe.tensor(y, device=device))
        loss.backward()
        opt.step()
        losses.append(float(loss.item()))
    return np.array(losses)


def _digits_batches(flatten, size, batch):
    x, y = (t.numpy() for t in load_digits(flatten=flatten, size=size, normalize=True).tensors)
    x = x.astype(np.float32)
    return [(x[i:i + batch], y[i:i + batch]) for i in range(0, 4 * batch, batch)]


@pytest.mark.parametrize("model_fn,flatten,size,opt_name", [
    (lambda: MLP([64, 129, 33, 10]), True, 8, "sgd"),
    (lambda: LeNet5(), False, 28, "adam"),
], ids=["mlp", "lenet5"])
def test_model_trains_on_cuda_tracking_cpu(model_fn, flatten, size, opt_name):
    batches = _digits_batches(flatten, size, 33)
    pe.manual_seed(0)
    cpu = model_fn()
    gpu = model_fn()
    gpu.load_state_dict(cpu.state_dict())
    steps = 8
    l_cpu = _losses(cpu, "cpu", batches, steps, opt_name)
    l_gpu = _losses(gpu, "cuda", batches, steps, opt_name)
    assert np.isfinite(l_gpu).all(), l_gpu
    np.testing.assert_allclose(l_gpu, l_cpu, rtol=2e-3, atol=1e-4)
    assert l_gpu[-1] < l_gpu[0], l_gpu
    assert all(p.device == "cuda" for p in gpu.parameters())
