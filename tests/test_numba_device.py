"""The whole "cuda" device path through the Numba provider: placement, .to() and back,
models forward and backward, an optimizer step, all matching the CPU backend.

Under the CUDA simulator (the default here) NumPy stands in for CuPy and the kernels run on
the CPU, so these run in CI; on a GPU (PYENGINE_DEVICE_TESTS=1) the same tests run there.
Sizes are tiny: the simulator runs one Python thread per CUDA thread.
"""
import copy

import numpy as np
import pytest

import pyengine as pe
import pyengine.nn as nn
from _helpers import cuda_kernels
from pyengine.models import GPT, MLP, LeNet5

pytestmark = pytest.mark.cudasim


@pytest.fixture
def numba_cuda():
    with cuda_kernels("numba"):
        yield


def test_placement_and_round_trip(rng, numba_cuda):
    a = rng.standard_normal((3, 5)).astype(np.float32)
    t = pe.tensor(a)
    c = t.to("cuda")
    assert c.device == "cuda" and t.device == "cpu"
    back = c.cpu()
    assert back.device == "cpu"
    np.testing.assert_array_equal(back.numpy(), a)
    # a transfer is a copy: changing the device tensor leaves the host one alone
    c.data[0, 0] = 42.0
    assert t.numpy()[0, 0] == a[0, 0]
    assert pe.cuda.current_kernels() == "numba"


def _twins(model):
    """The model on the CPU and an identical copy on "cuda"."""
    gpu = copy.deepcopy(model)
    gpu.to("cuda")
    return model, gpu


def _compare(cpu, gpu, inputs, loss_fn, rtol=2e-4):
    out_c = cpu(*inputs)
    out_g = gpu(*(x.to("cuda") for x in inputs))
    assert out_g.device == "cuda"
    np.testing.assert_allclose(out_g.cpu().detach().numpy(), out_c.detach().numpy(),
                               rtol=rtol, atol=rtol * (np.abs(out_c.detach().numpy()).max() + 1e-6))
    loss_fn(out_c).backward()
    loss_fn(out_g).backward()
    for (name, pc), pg in zip(cpu.named_parameters(), gpu.parameters()):
        assert pg.grad is not None and pg.grad.device == "cuda", name
        gc, gg = pc.grad.numpy(), pg.grad.cpu().numpy()
        scale = np.abs(gc).max() + 1e-6
        np.testing.assert_allclose(gg / scale, gc / scale, atol=rtol, err_msg=name)


def test_tiny_mlp_forward_backward_and_sgd_step(rng, numba_cuda):
    pe.manual_seed(0)
    cpu, gpu = _twins(MLP([17, 33, 5], activation="gelu"))
    x = pe.tensor(rng.standard_normal((3, 17)).astype(np.float32))
    target = pe.tensor(np.array([4, 0, 2]))
    loss = lambda out, t=target: nn.functional.cross_entropy(out, t.to(out.device))  # noqa: E731
    _compare(cpu, gpu, (x,), loss)
    opt_c = pe.optim.SGD(cpu.parameters(), lr=0.1, momentum=0.9)
    opt_g = pe.optim.SGD(gpu.parameters(), lr=0.1, momentum=0.9)
    opt_c.step()
    opt_g.step()
    for (name, pc), pg in zip(cpu.named_parameters(), gpu.parameters()):
        np.testing.assert_allclose(pg.cpu().detach().numpy(), pc.detach().numpy(), rtol=1e-5, atol=1e-6,
                                   err_msg=name)


def test_adam_step_on_cuda_matches_cpu(rng, numba_cuda):
    w = rng.standard_normal((3, 17)).astype(np.float32)
    params = {d: pe.tensor(w, device=d, requires_grad=True) for d in ("cpu", "cuda")}
    opts = {d: pe.optim.AdamW([p], lr=0.01, weight_decay=0.1) for d, p in params.items()}
    for _ in range(2):
        g = rng.standard_normal((3, 17)).astype(np.float32)
        for d, p in params.items():
            opts[d].zero_grad()
            (p * pe.tensor(g, device=d)).sum().backward()
            opts[d].step()
    np.testing.assert_allclose(params["cuda"].cpu().detach().numpy(), params["cpu"].detach().numpy(),
                               rtol=1e-5, atol=1e-6)


def test_lenet5_forward_backward(rng, numba_cuda):
    pe.manual_seed(0)
    cpu, gpu = _twins(LeNet5())
    x = pe.tensor(rng.standard_normal((1, 1, 28, 28)).astype(np.float32))
    _compare(cpu, gpu, (x,), lambda out: (out * out).sum(), rtol=5e-4)


def test_tiny_gpt_forward_backward(rng, numba_cuda):
    pe.manual_seed(0)
    cpu, gpu = _twins(GPT(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8))
    idx = pe.tensor(rng.integers(0, 11, (2, 5)))
    _compare(cpu, gpu, (idx,), lambda out: (out * out).mean(), rtol=5e-4)


def test_batch_norm_and_dropout_glue_on_cuda(rng, numba_cuda):
    """The glue the provider borrows (batch norm statistics, dropout masks) on "cuda"."""
    cpu = nn.BatchNorm2d(3)
    gpu = copy.deepcopy(cpu)
    gpu.to("cuda")
    x = rng.standard_normal((4, 3, 5, 2)).astype(np.float32)
    y_c, y_g = cpu(pe.tensor(x)), gpu(pe.tensor(x, device="cuda"))
    np.testing.assert_allclose(y_g.cpu().detach().numpy(), y_c.detach().numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gpu.running_var.cpu().numpy(), cpu.running_var.numpy(), rtol=1e-6)
    d = nn.functional.dropout(pe.tensor(np.ones((50, 40), np.float32), device="cuda"), 0.25)
    assert d.device == "cuda"
    kept = d.cpu().numpy()
    assert set(np.unique(kept)) <= {0.0, np.float32(1 / 0.75)} and abs((kept == 0).mean() - 0.25) < 0.05
