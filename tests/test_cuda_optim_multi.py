"""The multi-tensor ("foreach") optimizer kernels (sgd_step_multi, adam_step_multi) on a real
GPU: against the per-tensor kernels and the NumPy backend in float64, over parameter lists
that cross the kernel's 4096-element chunks and its 48-tensor launches; and the optimizers,
which take them when every parameter is float32 on the native backend, against PyTorch CPU.

Every test here is marked ``gpu`` and skips with the reason elsewhere.
"""
import numpy as np
import pytest

pytestmark = pytest.mark.gpu

cp = pytest.importorskip("cupy", reason="the native kernels need CuPy")

import pyengine as pe  # noqa: E402
from pyengine.backend import _cuda_nn as nn  # noqa: E402
from pyengine.backend import numpy_backend as nb  # noqa: E402

# 0 (skipped by the kernel), odd sizes, one past a chunk, one spanning several chunks.
SIZES = [1, 3, 0, 17, 4097, 65, 8192, 127, 12289, 2]


def _params(rng, sizes):
    return [rng.standard_normal(n).astype(np.float32) for n in sizes]


def _check(dev, ref, tol, what):
    got = cp.asnumpy(dev).astype(np.float64)
    err = np.abs(got - ref).max() if ref.size else 0.0
    assert err <= tol * max(1.0, np.abs(ref).max() if ref.size else 1.0), f"{what}: max error {err}"


@pytest.mark.parametrize("count", [len(SIZES), 50])  # 50: two launches of 48 and 2
@pytest.mark.parametrize("momentum,dampening,nesterov,wd,maximize", [
    (0.0, 0.0, False, 0.0, False), (0.9, 0.0, False, 0.0, False), (0.9, 0.1, False, 1e-2, True),
    (0.9, 0.0, True, 1e-2, False)])
def test_sgd_multi_matches_single_and_float64(rng, count, momentum, dampening, nesterov, wd, maximize):
    sizes = (SIZES * 5)[:count]
    p0 = _params(rng, sizes)
    singles = [cp.asarray(p) for p in p0]
    multis = [cp.asarray(p) for p in p0]
    p64 = [p.astype(np.float64) for p in p0]
    sbufs = [cp.zeros_like(p) for p in singles]
    mbufs = [cp.zeros_like(p) for p in multis]
    b64 = [np.zeros_like(p) for p in p64]
    for step in range(3):
        grads = _params(rng, sizes)
        for i, g in enumerate(grads):
            sg = -g if maximize else g
            nn.sgd_step(singles[i], cp.asarray(sg), sbufs[i] if momentum else None, 0.1, momentum, dampening,
                        nesterov, wd, step == 0)
            nb.sgd_step(p64[i], sg.astype(np.float64), b64[i] if momentum else None, 0.1, momentum, dampening,
                        nesterov, wd, step == 0)
        nn.sgd_step_multi(multis, [cp.asarray(g) for g in grads], mbufs if momentum else None, 0.1, momentum,
                          dampening, nesterov, wd, step == 0, maximize)
    for i in range(count):
        # The same device function on the same floats: equal up to FMA contraction choices.
        _check(multis[i], cp.asnumpy(singles[i]).astype(np.float64), 1e-6, f"param {i} vs single")
        _check(multis[i], p64[i], 2e-5, f"param {i} vs float64")


@pytest.mark.parametrize("count", [len(SIZES), 50])
@pytest.mark.parametrize("decoupled,amsgrad,wd,maximize", [
    (False, False, 0.0, False), (False, True, 1e-2, False), (True, False, 1e-2, True), (True, True, 0.05, False)])
def test_adam_multi_matches_single_and_float64(rng, count, decoupled, amsgrad, wd, maximize):
    sizes = (SIZES * 5)[:count]
    p0 = _params(rng, sizes)
    singles, multis = [cp.asarray(p) for p in p0], [cp.asarray(p) for p in p0]
    p64 = [p.astype(np.float64) for p in p0]
    st_s = [[cp.zeros_like(p) for p in singles] for _ in range(3)]
    st_m = [[cp.zeros_like(p) for p in multis] for _ in range(3)]
    st_64 = [[np.zeros_like(p) for p in p64] for _ in range(3)]
    for step in range(1, 4):
        grads = _params(rng, sizes)
        for i, g in enumerate(grads):
            sg = -g if maximize else g
            nn.adam_step(singles[i], cp.asarray(sg), st_s[0][i], st_s[1][i], st_s[2][i] if amsgrad else None, step,
                         1e-2, 0.9, 0.999, 1e-8, wd, decoupled, amsgrad)
            nb.adam_step(p64[i], sg.astype(np.float64), st_64[0][i], st_64[1][i], st_64[2][i] if amsgrad else None,
                         step, 1e-2, 0.9, 0.999, 1e-8, wd, decoupled, amsgrad)
        nn.adam_step_multi(multis, [cp.asarray(g) for g in grads], st_m[0], st_m[1], st_m[2] if amsgrad else None,
                           step, 1e-2, 0.9, 0.999, 1e-8, wd, decoupled, amsgrad, maximize)
    for i in range(count):
        _check(multis[i], cp.asnumpy(singles[i]).astype(np.float64), 1e-6, f"param {i} vs single")
        _check(multis[i], p64[i], 5e-5, f"param {i} vs float64")
        _check(st_m[1][i], st_64[1][i], 5e-5, f"exp_avg_sq {i} vs float64")


def test_multi_rejects_bad_lists():
    p = [cp.zeros(4, dtype=cp.float32), cp.zeros(3, dtype=cp.float32)]
    with pytest.raises(ValueError, match="2 params but 1 grads"):
        nn.sgd_step_multi(p, p[:1], None, 0.1, 0.0, 0.0, False, 0.0, True)
    with pytest.raises(ValueError, match=r"grads\[1\] \(4,\) does not match params\[1\] \(3,\)"):
        nn.sgd_step_multi(p, [p[0], p[0]], None, 0.1, 0.0, 0.0, False, 0.0, True)
    with pytest.raises(TypeError, match="float32"):
        nn.sgd_step_multi(p, [p[0], p[1].astype(cp.float64)], None, 0.1, 0.0, 0.0, False, 0.0, True)
    with pytest.raises(ValueError, match="momentum buffers"):
        nn.sgd_step_multi(p, p, None, 0.1, 0.9, 0.0, False, 0.0, True)
    with pytest.raises(ValueError, match="amsgrad=True needs max_exp_avg_sqs"):
        nn.adam_step_multi(p, p, p, p, None, 1, 1e-3, 0.9, 0.999, 1e-8, 0.0, False, True)
    with pytest.raises(ValueError, match=r"exp_avg_sqs\[0\] must be contiguous"):
        nn.adam_step_multi(p[:1], p[:1], p[:1], [cp.zeros(8, dtype=cp.float32)[::2]], None, 1, 1e-3, 0.9, 0.999,
                           1e-8, 0.0, False, False)


@pytest.mark.parametrize("name,kw", [
    ("SGD", dict(lr=0.1, momentum=0.9, weight_decay=1e-2)),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, maximize=True)),
    ("SGD", dict(lr=0.1)),
    ("Adam", dict(lr=1e-2, weight_decay=1e-2, amsgrad=True)),
    ("AdamW", dict(lr=1e-2, maximize=True)),
])
def test_optimizers_take_the_multi_path_and_match_torch(rng, monkeypatch, name, kw):
    torch = pytest.importorskip("torch")
    from pyengine.backend import cuda_backend

    calls = []
    for fn in ("sgd_step_multi", "adam_step_multi"):
        real = getattr(cuda_backend, fn)
        monkeypatch.setattr(cuda_backend, fn, lambda *a, _r=real, _n=fn, **k: (calls.append(_n), _r(*a, **k))[1])
    shapes = [(5, 3), (7,), (64, 65), (1,)]
    init = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    ours = [pe.tensor(a, device="cuda", requires_grad=True) for a in init]
    theirs = [torch.tensor(a, requires_grad=True) for a in init]
    opt = getattr(pe.optim, name)(ours, **kw)
    topt = getattr(torch.optim, name)(theirs, foreach=False, **kw)
    for _ in range(3):
        grads = [rng.standard_normal(s).astype(np.float32) for s in shapes]
        for p, t, g in zip(ours, theirs, grads):
            p.grad = pe.tensor(g, device="cuda")
            t.grad = torch.tensor(g)
        opt.step()
        topt.step()
    assert calls and len(calls) == 3, calls  # one multi-tensor call per step
    for p, t in zip(ours, theirs):
        np.testing.assert_allclose(p.detach().cpu().numpy(), t.detach().numpy(), rtol=2e-5, atol=2e-6)
