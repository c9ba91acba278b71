"""Optimizers against PyTorch (same gradients in, same parameter trajectories out), their
state_dict layout and round trip, and bad arguments."""
import numpy as np
import pytest

import pyengine as pe
from pyengine import nn, optim

SHAPES = [(3, 17), (33,), (1,)]

SGD_OPTIONS = [
    dict(lr=0.1),
    dict(lr=0.05, momentum=0.9),
    dict(lr=0.05, momentum=0.9, dampening=0.5),
    dict(lr=0.05, momentum=0.9, nesterov=True),
    dict(lr=0.1, weight_decay=0.1),
    dict(lr=0.05, momentum=0.8, weight_decay=0.05, nesterov=True),
    dict(lr=0.05, momentum=0.7, dampening=0.3, weight_decay=0.02),
    dict(lr=0.1, maximize=True),
    dict(lr=0.05, momentum=0.9, weight_decay=0.1, maximize=True),
]

ADAM_OPTIONS = [
    dict(lr=0.01),
    dict(lr=0.02, betas=(0.5, 0.9), eps=1e-3),
    dict(lr=0.01, weight_decay=0.1),
    dict(lr=0.01, amsgrad=True),
    dict(lr=0.01, amsgrad=True, weight_decay=0.05),
    dict(lr=0.01, maximize=True),
    dict(lr=0.01, maximize=True, amsgrad=True, weight_decay=0.1),
]


def _params(rng):
    return [rng.standard_normal(s) for s in SHAPES]


def _run_both(rng, ours_cls, torch_cls, options, steps=10):
    """Run our optimizer and PyTorch's over two param groups (the second with half the lr)
    on the same float64 starting points and the same random gradients."""
    torch = pytest.importorskip("torch")
    start = _params(rng)
    ours = [nn.Parameter(pe.tensor(a)) for a in start]
    theirs = [torch.nn.Parameter(torch.tensor(a)) for a in start]
    half = {"lr": options["lr"] / 2}
    opt = ours_cls([{"params": ours[:2]}, {"params": ours[2:], **half}], **options)
    topt = torch_cls([{"params": theirs[:2]}, {"params": theirs[2:], **half}], **options)
    for step in range(steps):
        for i, (p, tp) in enumerate(zip(ours, theirs)):
            if step == 3 and i == 1:  # a parameter without a gradient this step is skipped
                p.grad, tp.grad = None, None
                continue
            g = rng.standard_normal(p.shape)
            p.grad = pe.tensor(g)
            tp.grad = torch.tensor(g)
        opt.step()
        topt.step()
    return ours, theirs, opt, topt


def _assert_same(ours, theirs):
    for p, tp in zip(ours, theirs):
        assert p.dtype == pe.float64
        np.testing.assert_allclose(p.detach().numpy(), tp.detach().numpy(), rtol=1e-12, atol=1e-13)


@pytest.mark.torch
@pytest.mark.parametrize("options", SGD_OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_sgd_trajectory_matches_torch(rng, options):
    torch = pytest.importorskip("torch")
    ours, theirs, opt, topt = _run_both(rng, optim.SGD, torch.optim.SGD, options)
    _assert_same(ours, theirs)
    if options.get("momentum", 0):
        for p, tp in zip(ours, theirs):
            np.testing.assert_allclose(opt.state[p]["momentum_buffer"].numpy(),
                                       topt.state[tp]["momentum_buffer"].numpy(), rtol=1e-12, atol=1e-13)
    else:
        assert all("momentum_buffer" not in opt.state.get(p, {}) for p in ours)


@pytest.mark.torch
@pytest.mark.parametrize("cls_name", ["Adam", "AdamW"])
@pytest.mark.parametrize("options", ADAM_OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_adam_trajectory_matches_torch(rng, cls_name, options):
    torch = pytest.importorskip("torch")
    ours, theirs, opt, topt = _run_both(rng, getattr(optim, cls_name), getattr(torch.optim, cls_name), options)
    _assert_same(ours, theirs)
    keys = ["exp_avg", "exp_avg_sq"] + (["max_exp_avg_sq"] if options.get("amsgrad") else [])
    for p, tp in zip(ours, theirs):
        assert opt.state[p]["step"] == int(topt.state[tp]["step"])
        for k in keys:
            np.testing.assert_allclose(opt.state[p][k].numpy(), topt.state[tp][k].numpy(), rtol=1e-12, atol=1e-14)


@pytest.mark.torch
@pytest.mark.parametrize("cls_name,options", [("SGD", dict(momentum=0.9)), ("Adam", {}), ("AdamW", {})])
def test_a_tensor_learning_rate_steps_like_torch(rng, cls_name, options):
    """lr=tensor(...) was accepted, then every step() raised 'operand Tensor does not support ufuncs'."""
    torch = pytest.importorskip("torch")
    start = rng.standard_normal((3, 4))
    p, tp = nn.Parameter(pe.tensor(start)), torch.nn.Parameter(torch.tensor(start))
    opt = getattr(optim, cls_name)([p], lr=pe.tensor(0.05), **options)
    topt = getattr(torch.optim, cls_name)([tp], lr=torch.tensor(0.05), **options)
    for _ in range(5):
        g = rng.standard_normal((3, 4))
        p.grad, tp.grad = pe.tensor(g), torch.tensor(g)
        opt.step()
        topt.step()
    np.testing.assert_allclose(p.detach().numpy(), tp.detach().numpy(), rtol=1e-6, atol=1e-7)


def test_adamw_default_weight_decay_differs_from_adam(rng):
    """AdamW's default weight_decay is 0.01 and decoupled (the parameter shrinks by lr*wd
    before the Adam step), where Adam's default is no decay."""
    a0 = rng.standard_normal((5, 3))
    pa, pw = nn.Parameter(pe.tensor(a0)), nn.Parameter(pe.tensor(a0))
    assert optim.AdamW([pw]).param_groups[0]["weight_decay"] == 0.01
    adam, adamw = optim.Adam([pa], lr=0.1), optim.AdamW([pw], lr=0.1)
    g = rng.standard_normal((5, 3))
    pa.grad, pw.grad = pe.tensor(g), pe.tensor(g)
    adam.step()
    adamw.step()
    # After bias correction the first Adam step is lr * g / (|g| + eps); AdamW also shrinks by lr*wd.
    step = 0.1 * g / (np.abs(g) + 1e-8)
    np.testing.assert_allclose(pa.detach().numpy(), a0 - step, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(pw.detach().numpy(), a0 * (1 - 0.1 * 0.01) - step, rtol=1e-10, atol=1e-12)


def test_sgd_float32_step_stays_float32_in_place(rng):
    a0 = rng.standard_normal((4, 17)).astype(np.float32)
    p = nn.Parameter(pe.tensor(a0))
    storage = p.data
    g = rng.standard_normal((4, 17)).astype(np.float32)
    p.grad = pe.tensor(g)
    optim.SGD([p], lr=0.5).step()
    assert p.data is storage and p.dtype == pe.float32
    np.testing.assert_allclose(p.detach().numpy(), a0 - 0.5 * g, rtol=1e-6)


def test_closure_is_called_and_its_loss_returned(rng):
    w = nn.Parameter(pe.tensor(rng.standard_normal(3)))
    opt = optim.SGD([w], lr=0.1)

    def closure():
        opt.zero_grad()
        loss = (w * w).sum()
        loss.backward()
        return loss

    before = w.detach().numpy().copy()
    loss = opt.step(closure)
    assert loss.item() == pytest.approx(float((before ** 2).sum()))
    np.testing.assert_allclose(w.detach().numpy(), before - 0.1 * 2 * before)


@pytest.mark.parametrize("set_to_none", [True, False])
def test_zero_grad(rng, set_to_none):
    p = nn.Parameter(pe.tensor(rng.standard_normal((2, 3))))
    p.grad = pe.tensor(rng.standard_normal((2, 3)))
    opt = optim.SGD([p], lr=0.1)
    opt.zero_grad(set_to_none=set_to_none)
    if set_to_none:
        assert p.grad is None
    else:
        np.testing.assert_array_equal(p.grad.detach().numpy(), np.zeros((2, 3)))


@pytest.mark.torch
@pytest.mark.parametrize("cls_name,options", [("SGD", dict(lr=0.1, momentum=0.9, nesterov=True)),
                                              ("Adam", dict(lr=0.01, amsgrad=True)),
                                              ("AdamW", dict(lr=0.01, betas=(0.8, 0.99)))])
def test_state_dict_layout_matches_torch(rng, cls_name, options):
    torch = pytest.importorskip("torch")
    ours, theirs, opt, topt = _run_both(rng, getattr(optim, cls_name), getattr(torch.optim, cls_name), options,
                                        steps=2)
    sd, tsd = opt.state_dict(), topt.state_dict()
    assert sorted(sd["state"]) == sorted(tsd["state"]) == [0, 1, 2]
    for i in sd["state"]:
        assert sorted(sd["state"][i]) == sorted(tsd["state"][i])
    assert [g["params"] for g in sd["param_groups"]] == [g["params"] for g in tsd["param_groups"]]
    for g, tg in zip(sd["param_groups"], tsd["param_groups"]):
        for k, v in g.items():
            assert tg[k] == (tuple(v) if isinstance(tg[k], tuple) else v), k


def _trained(rng, cls, options, start, grads):
    params = [nn.Parameter(pe.tensor(a)) for a in start]
    opt = cls(params, **options)
    for g in grads:
        for p, gi in zip(params, g):
            p.grad = pe.tensor(gi)
        opt.step()
    return params, opt


@pytest.mark.parametrize("cls,options", [(optim.SGD, dict(lr=0.1, momentum=0.9)),
                                         (optim.Adam, dict(lr=0.01, amsgrad=True)),
                                         (optim.AdamW, dict(lr=0.01, weight_decay=0.1))])
def test_state_dict_round_trip_through_save_load(rng, tmp_path, cls, options):
    """Save after 3 steps, load into a fresh optimizer over copies of the parameters, run 3
    more steps on both: the resumed run must equal the uninterrupted one."""
    start = _params(rng)
    grads = [[rng.standard_normal(s) for s in SHAPES] for _ in range(6)]
    full, _ = _trained(rng, cls, options, start, grads)
    half, opt = _trained(rng, cls, options, start, grads[:3])
    pe.save(opt.state_dict(), tmp_path / "opt.npz")
    resumed = [nn.Parameter(pe.tensor(p.detach().numpy().copy())) for p in half]
    opt2 = cls(resumed, lr=123.0)
    opt2.load_state_dict(pe.load(tmp_path / "opt.npz"))
    assert opt2.param_groups[0]["lr"] == options["lr"]
    for g in grads[3:]:
        for p, gi in zip(resumed, g):
            p.grad = pe.tensor(gi)
        opt2.step()
    for p, q in zip(full, resumed):
        np.testing.assert_allclose(q.detach().numpy(), p.detach().numpy(), rtol=1e-12, atol=1e-14)


def test_load_state_dict_rejects_mismatched_groups(rng):
    a, b = (nn.Parameter(pe.tensor(rng.standard_normal(3))) for _ in range(2))
    sd = optim.SGD([a, b], lr=0.1).state_dict()
    with pytest.raises(ValueError, match="doesn't match the size"):
        optim.SGD([a], lr=0.1).load_state_dict(sd)
    with pytest.raises(ValueError, match="different number of parameter groups"):
        optim.SGD([{"params": [a]}, {"params": [b]}], lr=0.1).load_state_dict(sd)


def test_bad_arguments_raise(rng):
    p = nn.Parameter(pe.tensor(rng.standard_normal(3)))
    with pytest.raises(ValueError, match="Invalid learning rate: -1"):
        optim.SGD([p], lr=-1)
    with pytest.raises(ValueError, match="Nesterov momentum requires a momentum and zero dampening"):
        optim.SGD([p], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="Invalid momentum value"):
        optim.SGD([p], lr=0.1, momentum=-0.5)
    with pytest.raises(ValueError, match="Invalid beta parameter at index 1: 1.0"):
        optim.Adam([p], betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="Invalid epsilon value"):
        optim.Adam([p], eps=-1e-8)
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.Adam([])
    with pytest.raises(TypeError, match="iterable of Tensors or dicts, but got"):
        optim.SGD(p, lr=0.1)
    with pytest.raises(ValueError, match="more than one parameter group"):
        optim.SGD([{"params": [p]}, {"params": [p]}], lr=0.1)
    with pytest.raises(TypeError, match="param 1 is ndarray"):
        optim.SGD([p, np.zeros(3)], lr=0.1)


def test_add_param_group_fills_defaults(rng):
    a, b = (nn.Parameter(pe.tensor(rng.standard_normal(3))) for _ in range(2))
    opt = optim.SGD([a], lr=0.1, momentum=0.9)
    opt.add_param_group({"params": b, "lr": 0.01})
    assert opt.param_groups[1]["lr"] == 0.01
    assert opt.param_groups[1]["momentum"] == 0.9
    assert len(opt.param_groups[1]["params"]) == 1 and opt.param_groups[1]["params"][0] is b


def test_step_rejects_a_grad_that_does_not_match_its_parameter(rng):
    p = nn.Parameter(pe.tensor(rng.standard_normal(3)))
    opt = optim.SGD([p], lr=0.1)
    p.grad = pe.tensor(rng.standard_normal(2))
    with pytest.raises(RuntimeError, match=r"shape \(3,\) .* grad of shape \(2,\)"):
        opt.step()
    p.grad = pe.tensor(rng.standard_normal(3).astype(np.float32))
    with pytest.raises(RuntimeError, match="pyengine.float32"):
        opt.step()


@pytest.mark.torch
@pytest.mark.parametrize("cls_name,options", [("SGD", dict(lr=0.1, momentum=0.9, weight_decay=1e-3)),
                                              ("AdamW", dict(lr=0.01, amsgrad=True))])
def test_training_steps_match_torch_end_to_end(rng, cls_name, options):
    """Module + loss + backward + optimizer + scheduler: five steps of a small classifier from
    the same weights on the same batches end at the same weights as PyTorch's (float64)."""
    torch = pytest.importorskip("torch")

    def build(m):
        # No bias right before the BatchNorm: its gradient would be rounding noise, which
        # Adam's normalisation blows up to full-size steps in either direction.
        return m.Sequential(m.Linear(7, 17), m.Tanh(), m.BatchNorm1d(17), m.Linear(17, 3))

    theirs = build(torch.nn).double()
    ours = build(nn).double()
    ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    opt = getattr(optim, cls_name)(ours.parameters(), **options)
    topt = getattr(torch.optim, cls_name)(theirs.parameters(), **options)
    sched = optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    tsched = torch.optim.lr_scheduler.StepLR(topt, step_size=2, gamma=0.5)
    for _ in range(5):
        x, y = rng.standard_normal((9, 7)), rng.integers(0, 3, 9)
        opt.zero_grad()
        topt.zero_grad()
        loss = nn.CrossEntropyLoss()(ours(pe.tensor(x)), pe.tensor(y))
        tloss = torch.nn.CrossEntropyLoss()(theirs(torch.tensor(x)), torch.tensor(y))
        assert loss.item() == pytest.approx(tloss.item(), rel=1e-10)
        loss.backward()
        tloss.backward()
        opt.step()
        topt.step()
        sched.step()
        tsched.step()
    for (name, v), tv in zip(ours.state_dict().items(), theirs.state_dict().values()):
        np.testing.assert_allclose(v.numpy(), tv.numpy(), rtol=1e-9, atol=1e-11, err_msg=name)
