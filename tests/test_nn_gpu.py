"""Layers, Module.to("cuda") and the optimizers on the GPU, for each kernel provider: the
same weights and gradients give the CPU's outputs, gradients and parameter trajectories in
float32. Runs only where a CUDA GPU is."""
import numpy as np
import pytest

import pyengine as pe
from pyengine import nn, optim

pytestmark = pytest.mark.gpu


def _f32(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


LAYERS = [
    ("linear", lambda: nn.Linear(33, 17), (5, 33)),
    ("conv", lambda: nn.Conv2d(3, 5, 3, stride=2, padding=1), (2, 3, 17, 9)),
    ("mlp_bn", lambda: nn.Sequential(nn.Linear(7, 17), nn.BatchNorm1d(17), nn.GELU(), nn.Linear(17, 3)), (9, 7)),
    ("cnn", lambda: nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                                  nn.AvgPool2d(2), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)),
     (3, 2, 9, 9)),
    ("layernorm_softmax", lambda: nn.Sequential(nn.LayerNorm(17), nn.Tanh(), nn.LogSoftmax(dim=-1)), (3, 5, 17)),
    ("activations", lambda: nn.Sequential(nn.LeakyReLU(0.1), nn.SELU(), nn.ELU(), nn.Sigmoid()), (4, 33)),
]


@pytest.mark.parametrize("ctor,shape", [c[1:] for c in LAYERS], ids=[c[0] for c in LAYERS])
def test_layer_on_gpu_matches_cpu(rng, provider, ctor, shape):
    pe.manual_seed(0)
    cpu = ctor()
    gpu = ctor()
    gpu.load_state_dict(cpu.state_dict())
    params = list(gpu.parameters())
    assert gpu.cuda() is gpu
    assert [id(p) for p in gpu.parameters()] == [id(p) for p in params]
    assert all(t.device == "cuda" for t in list(gpu.parameters()) + list(gpu.buffers()))
    x, gy = _f32(rng, *shape), None
    outs = {}
    for name, module in (("cpu", cpu), ("cuda", gpu)):
        xt = pe.tensor(x, device=name, requires_grad=True)
        y = module(xt)
        if gy is None:
            gy = _f32(rng, *y.shape)
        y.backward(pe.tensor(gy, device=name))
        outs[name] = (y.detach().cpu().numpy(), xt.grad.cpu().numpy(),
                      [p.grad.cpu().numpy() for p in module.parameters()],
                      {k: v.cpu().numpy() for k, v in module.state_dict().items()})
    (y_c, gx_c, gp_c, sd_c), (y_g, gx_g, gp_g, sd_g) = outs["cpu"], outs["cuda"]
    assert np.isfinite(y_g).all()
    np.testing.assert_allclose(y_g, y_c, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(gx_g, gx_c, rtol=1e-4, atol=1e-5)
    for a, b in zip(gp_g, gp_c):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    for k in sd_c:  # running statistics moved the same way
        np.testing.assert_allclose(sd_g[k], sd_c[k], rtol=1e-4, atol=1e-5, err_msg=k)


def test_embedding_and_loss_on_gpu(rng, provider):
    pe.manual_seed(0)
    cpu = nn.Embedding(33, 5, padding_idx=0)
    gpu = nn.Embedding(33, 5, padding_idx=0).cuda()
    gpu.load_state_dict(cpu.state_dict())
    idx = rng.integers(0, 33, (4, 7))
    target = rng.integers(0, 5, (28,))
    losses = {}
    for name, module in (("cpu", cpu), ("cuda", gpu)):
        logits = module(pe.tensor(idx, device=name)).reshape(-1, 5)
        loss = nn.CrossEntropyLoss(label_smoothing=0.1)(logits, pe.tensor(target, device=name))
        loss.backward()
        losses[name] = (loss.item(), module.weight.grad.cpu().numpy())
    assert losses["cuda"][0] == pytest.approx(losses["cpu"][0], rel=1e-5)
    np.testing.assert_allclose(losses["cuda"][1], losses["cpu"][1], rtol=1e-4, atol=1e-6)


OPTIMIZERS = [
    (optim.SGD, dict(lr=0.1)),
    (optim.SGD, dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)),
    (optim.SGD, dict(lr=0.05, momentum=0.9, dampening=0.3, maximize=True)),
    (optim.Adam, dict(lr=0.01)),
    (optim.Adam, dict(lr=0.01, amsgrad=True, weight_decay=0.1)),
    (optim.AdamW, dict(lr=0.01, amsgrad=True)),
    (optim.AdamW, dict(lr=0.01, betas=(0.8, 0.99), maximize=True)),
]


@pytest.mark.parametrize("cls,options", OPTIMIZERS, ids=lambda v: v.__name__ if isinstance(v, type) else
                         ",".join(f"{k}={x}" for k, x in v.items()))
def test_optimizer_on_gpu_matches_cpu(rng, provider, cls, options):
    shapes = [(129, 33), (17,), (1,)]
    start = [_f32(rng, *s) for s in shapes]
    runs = {}
    for device in ("cpu", "cuda"):
        params = [nn.Parameter(pe.tensor(a, device=device)) for a in start]
        runs[device] = (params, cls(params, **options))
    for _ in range(10):
        grads = [_f32(rng, *s) for s in shapes]
        for params, opt in runs.values():
            for p, g in zip(params, grads):
                p.grad = pe.tensor(g, device=p.device)
            opt.step()
    for p_cpu, p_gpu in zip(runs["cpu"][0], runs["cuda"][0]):
        assert p_gpu.device == "cuda" and p_gpu.dtype == pe.float32
        np.testing.assert_allclose(p_gpu.detach().cpu().numpy(), p_cpu.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_model_moved_after_optimizer_creation_trains_on_gpu(rng, provider, tmp_path):
    """An optimizer built before .cuda() keeps working (Parameters keep their identity), and its
    state saved from the GPU loads into a CPU optimizer."""
    pe.manual_seed(0)
    model = nn.Sequential(nn.Linear(17, 33), nn.ReLU(), nn.Linear(33, 3))
    opt = optim.Adam(model.parameters(), lr=0.01)
    model.cuda()
    x = pe.tensor(_f32(rng, 65, 17), device="cuda")
    y = pe.tensor(rng.integers(0, 3, 65), device="cuda")
    losses = []
    for _ in range(20):
        opt.zero_grad()
        loss = nn.CrossEntropyLoss()(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    pe.save(opt.state_dict(), tmp_path / "opt.npz")
    cpu_model = nn.Sequential(nn.Linear(17, 33), nn.ReLU(), nn.Linear(33, 3))
    cpu_opt = optim.Adam(cpu_model.parameters())
    cpu_opt.load_state_dict(pe.load(tmp_path / "opt.npz"))
    state = cpu_opt.state[next(iter(cpu_model.parameters()))]
    assert state["step"] == 20 and state["exp_avg"].device == "cpu"


def test_layers_built_on_the_gpu_are_initialised_there(provider):
    lin = nn.Linear(333, 129, device="cuda")
    bn = nn.BatchNorm2d(17, device="cuda", dtype=pe.float64)
    emb = nn.Embedding(1000, 65, padding_idx=3, device="cuda")
    for t in list(lin.parameters()) + list(bn.parameters()) + list(bn.buffers()) + [emb.weight]:
        assert t.device == "cuda"
    w = lin.weight.detach().cpu().numpy()
    bound = 1 / np.sqrt(333)
    assert np.abs(w).max() <= bound and w.std() == pytest.approx(bound / np.sqrt(3), rel=0.03)
    assert bn.running_var.dtype == pe.float64 and bn.num_batches_tracked.dtype == pe.int64
    e = emb.weight.detach().cpu().numpy()
    assert np.all(e[3] == 0) and e.std() == pytest.approx(1.0, rel=0.03)
    t = nn.init.trunc_normal_(pe.empty(301, 333, device="cuda"), 0.0, 1.0, -0.5, 1.5).cpu().numpy()
    assert t.min() >= -0.5 and t.max() <= 1.5 and t.min() < -0.49 and t.max() > 1.49
