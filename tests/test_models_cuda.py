"""The models, the DataLoader and the training loop on a GPU (run by bench/device_check.sh;
skipped with the reason where no GPU is usable)."""
import numpy as np
import pytest

import pyengine as pe
from pyengine.data import DataLoader, TensorDataset, load_digits
from pyengine.models import MLP, LeNet5, SmallVGG
from pyengine.train import fit, split_dataset

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("make,shape", [
    (lambda: MLP([64, 33, 17, 10]), (17, 64)),
    (LeNet5, (3, 1, 28, 28)),
    (lambda: SmallVGG(channels=(4, 8)), (3, 1, 17, 17)),
])
def test_model_forward_backward_on_cuda_matches_cpu(rng, make, shape):
    pe.manual_seed(0)
    cpu = make().double()
    gpu = make()
    gpu.load_state_dict(cpu.state_dict())
    gpu.to("cuda")
    x = rng.standard_normal(shape).astype(np.float32)
    out_cpu = cpu(pe.from_numpy(x.astype(np.float64)))
    out_gpu = gpu(pe.from_numpy(x).to("cuda"))
    assert out_gpu.device == "cuda"
    # float32 (possibly TF32) against a float64 reference
    np.testing.assert_allclose(out_gpu.cpu().detach().numpy(), out_cpu.detach().numpy(), rtol=3e-3, atol=3e-3)
    out_cpu.sum().backward()
    out_gpu.sum().backward()
    for (name, p_cpu), p_gpu in zip(cpu.named_parameters(), gpu.parameters()):
        g_cpu, g_gpu = p_cpu.grad.numpy(), p_gpu.grad.cpu().numpy()
        scale = np.abs(g_cpu).max() + 1e-6
        np.testing.assert_allclose(g_gpu / scale, g_cpu / scale, atol=3e-3, err_msg=name)


def test_loader_over_cuda_tensors_yields_cuda_batches(rng):
    x = rng.standard_normal((17, 3)).astype(np.float32)
    ds = TensorDataset(pe.from_numpy(x).to("cuda"), pe.arange(17).to("cuda"))
    for xb, ib in DataLoader(ds, batch_size=5, shuffle=True, generator=0):
        assert xb.device == "cuda" and ib.device == "cuda"
        np.testing.assert_array_equal(xb.cpu().numpy(), x[ib.cpu().numpy()])


def test_fit_on_cuda_learns_digits():
    pe.manual_seed(0)
    train, val, test = split_dataset(load_digits(flatten=True), seed=0)
    history = fit(MLP([64, 128, 64, 10]), train, val, test, epochs=3, batch_size=32, lr=3e-3,
                  device="cuda", verbose=False)
    assert history["device"] == "cuda"
    assert history["test_accuracy"] > 0.9, history
