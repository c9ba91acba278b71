"""Learning-rate schedulers: lr sequences equal PyTorch's, resuming and state_dict."""
import math

import numpy as np
import pytest

import pyengine as pe
from pyengine import nn, optim
from pyengine.optim import lr_scheduler

SCHEDULES = {
    "StepLR": dict(step_size=3, gamma=0.5),
    "MultiStepLR": dict(milestones=[2, 5, 5, 9], gamma=0.3),
    "ExponentialLR": dict(gamma=0.8),
    "CosineAnnealingLR": dict(T_max=7, eta_min=0.01),
    "LinearLR": dict(start_factor=0.25, end_factor=0.9, total_iters=6),
    "LambdaLR": dict(lr_lambda=lambda epoch: 0.9 ** epoch / (epoch + 1)),
}


def _groups(rng):
    """Two parameter groups with different base lrs, so per-group arithmetic is exercised."""
    a, b = (nn.Parameter(pe.tensor(rng.standard_normal(3))) for _ in range(2))
    return [{"params": [a]}, {"params": [b], "lr": 0.03}]


@pytest.mark.torch
@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_lr_sequence_matches_torch(rng, name):
    torch = pytest.importorskip("torch")
    opt = optim.SGD(_groups(rng), lr=0.1, momentum=0.9)
    tparams = [torch.nn.Parameter(torch.zeros(3)) for _ in range(2)]
    topt = torch.optim.SGD([{"params": [tparams[0]]}, {"params": [tparams[1]], "lr": 0.03}], lr=0.1, momentum=0.9)
    sched = getattr(lr_scheduler, name)(opt, **SCHEDULES[name])
    tsched = getattr(torch.optim.lr_scheduler, name)(topt, **SCHEDULES[name])
    ours, theirs = [sched.get_last_lr()], [tsched.get_last_lr()]
    for _ in range(22):  # past T_max, total_iters and the last milestone
        opt.step()
        topt.step()
        sched.step()
        tsched.step()
        ours.append(sched.get_last_lr())
        theirs.append(tsched.get_last_lr())
        assert [g["lr"] for g in opt.param_groups] == ours[-1]
    np.testing.assert_allclose(np.array(ours), np.array(theirs), rtol=1e-13, atol=0)


def test_step_lr_sequence_by_formula(rng):
    opt = optim.SGD(_groups(rng), lr=0.1)
    sched = lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)
    lrs = []
    for _ in range(9):
        lrs.append(sched.get_last_lr()[0])
        sched.step()
    np.testing.assert_allclose(lrs, [0.1 * 0.5 ** (e // 3) for e in range(9)], rtol=1e-15)


def test_cosine_follows_the_closed_form(rng):
    opt = optim.SGD(_groups(rng), lr=0.1)
    sched = lr_scheduler.CosineAnnealingLR(opt, T_max=10, eta_min=0.001)
    for epoch in range(1, 25):
        sched.step()
        expected = 0.001 + (0.1 - 0.001) * (1 + math.cos(math.pi * epoch / 10)) / 2
        assert sched.get_last_lr()[0] == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_state_dict_resume_continues_the_same_sequence(rng, name):
    opt = optim.SGD(_groups(rng), lr=0.1)
    sched = getattr(lr_scheduler, name)(opt, **SCHEDULES[name])
    for _ in range(4):
        sched.step()
    saved_sched, saved_opt = sched.state_dict(), opt.state_dict()
    assert "optimizer" not in saved_sched
    expected = []
    for _ in range(6):
        sched.step()
        expected.append(sched.get_last_lr())

    # PyTorch's resume order: build both, then load the optimizer's state and the scheduler's.
    opt2 = optim.SGD(_groups(rng), lr=0.1)
    sched2 = getattr(lr_scheduler, name)(opt2, **SCHEDULES[name])
    opt2.load_state_dict(saved_opt)
    sched2.load_state_dict(saved_sched)
    got = []
    for _ in range(6):
        sched2.step()
        got.append(sched2.get_last_lr())
    np.testing.assert_allclose(np.array(got), np.array(expected), rtol=1e-13)


def test_resuming_without_initial_lr_raises(rng):
    opt = optim.SGD(_groups(rng), lr=0.1)
    with pytest.raises(KeyError, match="initial_lr"):
        lr_scheduler.StepLR(opt, step_size=2, last_epoch=3)


def test_lambda_lr_per_group_and_bad_count(rng):
    opt = optim.SGD(_groups(rng), lr=0.1)
    sched = lr_scheduler.LambdaLR(opt, [lambda e: 1.0 / (e + 1), lambda e: 2.0 ** -e])
    sched.step()
    sched.step()
    assert sched.get_last_lr() == pytest.approx([0.1 / 3, 0.03 / 4])
    with pytest.raises(ValueError, match="Expected 2 lr_lambdas, but got 1"):
        lr_scheduler.LambdaLR(opt, [lambda e: 1.0])


def test_bad_scheduler_arguments(rng):
    opt = optim.SGD(_groups(rng), lr=0.1)
    with pytest.raises(ValueError, match="step_size"):
        lr_scheduler.StepLR(opt, step_size=0)
    with pytest.raises(ValueError, match="T_max"):
        lr_scheduler.CosineAnnealingLR(opt, T_max=0)
    with pytest.raises(ValueError, match="Starting multiplicative factor"):
        lr_scheduler.LinearLR(opt, start_factor=0)
    with pytest.raises(TypeError, match="not an Optimizer"):
        lr_scheduler.StepLR([1, 2], step_size=1)


@pytest.mark.torch
@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_resuming_with_last_epoch_matches_torch(rng, name):
    """A scheduler built with last_epoch=k on an optimizer that already has initial_lr
    continues from epoch k+1, taking the groups' current lr as that epoch's."""
    torch = pytest.importorskip("torch")
    opt = optim.SGD(_groups(rng), lr=0.1)
    topt = torch.optim.SGD([{"params": [torch.nn.Parameter(torch.zeros(1))]},
                            {"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 0.03}], lr=0.1)
    sched = getattr(lr_scheduler, name)(opt, **SCHEDULES[name])
    tsched = getattr(torch.optim.lr_scheduler, name)(topt, **SCHEDULES[name])
    for _ in range(5):
        opt.step()
        topt.step()
        sched.step()
        tsched.step()
    sched = getattr(lr_scheduler, name)(opt, **SCHEDULES[name], last_epoch=5)
    tsched = getattr(torch.optim.lr_scheduler, name)(topt, **SCHEDULES[name], last_epoch=5)
    ours, theirs = [sched.get_last_lr()], [tsched.get_last_lr()]
    for _ in range(6):
        opt.step()
        topt.step()
        sched.step()
        tsched.step()
        ours.append(sched.get_last_lr())
        theirs.append(tsched.get_last_lr())
    assert sched.last_epoch == tsched.last_epoch == 12
    np.testing.assert_allclose(np.array(ours), np.array(theirs), rtol=1e-13)
