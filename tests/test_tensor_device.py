"""Device logic of the core without a GPU: a stand-in "cuda" backend (the NumPy backend's
functions under device "cuda") exercises transfers, gradients across devices, device checks
and pe.cuda. Real GPUs are covered by tests/test_tensor_gpu.py (marked gpu)."""
import sys
import types

import numpy as np
import pytest

import pyengine as pe
from pyengine.backend import numpy_backend


@pytest.fixture
def fake_cuda(monkeypatch):
    fake = types.ModuleType("fake_cuda_backend")
    fake.__dict__.update({k: v for k, v in vars(numpy_backend).items() if not k.startswith("__")})
    fake.name, fake.device = "numba", "cuda"
    fake.available = lambda: (True, "")
    fake.device_count = lambda: 1
    fake.device_name = lambda i: f"stand-in GPU {i}"
    fake.synchronize = lambda: None
    # the "numba" provider is swapped for the stand-in only inside this fixture
    monkeypatch.setitem(sys.modules, "pyengine.backend.numba_backend", fake)
    with pe.backends.cuda.kernels("numba"):
        yield fake


def test_pe_cuda_reports_the_backend(fake_cuda):
    assert pe.cuda.is_available() and pe.cuda.unavailable_reason() is None
    assert pe.cuda.device_count() == 1
    assert pe.cuda.get_device_name() == "stand-in GPU 0"
    assert pe.cuda.current_kernels() == "numba"
    pe.cuda.synchronize()


def test_gradient_flows_back_across_devices(rng, fake_cuda):
    a = rng.standard_normal((3, 4))
    w = rng.standard_normal((4, 2))
    x = pe.tensor(a, requires_grad=True)
    wc = pe.tensor(w, device="cuda", requires_grad=True)
    h = x.to("cuda") @ wc
    assert h.device == "cuda" and h.grad_fn is not None
    loss = (h.exp().cpu() * 2).sum()
    assert loss.device == "cpu"
    loss.backward()
    e = np.exp(a @ w)
    assert x.grad.device == "cpu" and wc.grad.device == "cuda"
    np.testing.assert_allclose(x.grad.numpy(), 2 * e @ w.T, rtol=1e-12)
    np.testing.assert_allclose(wc.grad.cpu().numpy(), 2 * a.T @ e, rtol=1e-12)


def test_device_rules_on_cuda(rng, fake_cuda):
    c = pe.randn(2, 3, device="cuda")
    assert c.device == "cuda" and c.is_cuda
    for t in (pe.zeros(2, device="cuda"), pe.arange(3, device="cuda"), pe.zeros_like(c),
              pe.tensor([1.0], device="cuda"), c.new_zeros(4), pe.ones(2).cuda()):
        assert t.device == "cuda"
    with pytest.raises(RuntimeError, match="cpu and cuda"):
        pe.ones(2, 3) * c
    with pytest.raises(RuntimeError, match="cuda and cpu"):
        pe.cat([c, pe.ones(2, 3)])
    with pytest.raises(TypeError, match="cuda device type tensor to numpy"):
        c.numpy()
    assert "device='cuda:0'" in repr(c)
    assert c.sum().item() == pytest.approx(float(np.sum(c.cpu().numpy())), rel=1e-6)
    assert c.to("cuda") is c


def test_save_load_across_devices(tmp_path, fake_cuda):
    c = pe.tensor([[1.0, 2.0]], device="cuda")
    pe.save({"w": c}, tmp_path / "w.pt")
    assert pe.load(tmp_path / "w.pt")["w"].device == "cpu"
    back = pe.load(tmp_path / "w.pt", map_location="cuda")["w"]
    assert back.device == "cuda" and back.tolist() == [[1.0, 2.0]]


def test_pe_device_idiom_like_torch_device(rng, fake_cuda):
    """dev = pe.device("cuda" if pe.cuda.is_available() else "cpu"), then .to(dev) everywhere."""
    torch = pytest.importorskip("torch")
    for name in ("cpu", "cuda"):
        dev, ref = pe.device(name), torch.device(name)
        assert (dev.type, dev.index) == (ref.type, ref.index) and repr(dev) == repr(ref)
        model = pe.nn.Linear(3, 2).to(dev)
        x = pe.tensor(rng.standard_normal((4, 3)).astype(np.float32)).to(dev)
        assert model(x).device == dev == name
    assert pe.device("cuda", 0) == pe.device("cuda:0") == "cuda"
    with pytest.raises(RuntimeError, match="unknown device 'gpu'"):
        pe.device("gpu")


def test_pe_device_cuda_without_a_gpu_fails_on_use_not_on_construction():
    dev = pe.device("cuda")
    if not pe.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            pe.ones(2).to(dev)
