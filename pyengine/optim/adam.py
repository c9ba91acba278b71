"""Adam and AdamW (with AMSGrad and maximize), PyTorch's update rule."""
from __future__ import annotations

from ..tensor import Tensor
from .optimizer import Optimizer


class Adam(Optimizer):
    """The update runs in the parameter's backend (``adam_step``), in place, outside autograd.
    State per parameter: ``step`` (int), ``exp_avg``, ``exp_avg_sq`` and, with amsgrad,
    ``max_exp_avg_sq``, as PyTorch names them."""

    _decoupled = False

    def __init__(self, params, lr: float = 1e-3, betas: tuple = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0, amsgrad: bool = False, *, maximize: bool = False) -> None:
        if lr < 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if eps < 0.0:
            raise ValueError(f"Invalid epsilon value: {eps}")
        for i, beta in enumerate(betas):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"Invalid beta parameter at index {i}: {beta}")
        if weight_decay < 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      amsgrad=amsgrad, maximize=maximize))

    def step(self, closure=None):
        loss = self._eval_closure(closure)
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            amsgrad = group["amsgrad"]
            multi, items = self._foreach(group, "adam_step_multi")
            if multi is not None:
                self._step_multi(multi, group, items)
                continue
            for p, backend, grad in self._grads(group):
                state = self._advance(p, amsgrad)
                max_sq = state["max_exp_avg_sq"].data if amsgrad else None
                backend.adam_step(p.data, grad, state["exp_avg"].data, state["exp_avg_sq"].data, max_sq,
                                  state["step"], float(group["lr"]), beta1, beta2, group["eps"],
                                  group["weight_decay"], self._decoupled, amsgrad)
        return loss

    @staticmethod
    def _moments(amsgrad):
        return ("exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if amsgrad else ())

    def _advance(self, p, amsgrad):
        """p's state with its step count advanced, the moment buffers created (zeros) on the
        first step."""
        state = self.state[p]
        if not state:
            state["step"] = 0
            for name in self._moments(amsgrad):
                state[name] = Tensor._make(p._backend.xp.zeros_like(p.data), p.device)
        state["step"] += 1
        return state

    def _step_multi(self, multi, group, items):
        """One multi-tensor launch per distinct step count (one, unless parameters joined
        the group or gained gradients at different times)."""
        beta1, beta2 = group["betas"]
        amsgrad = group["amsgrad"]
        names = self._moments(amsgrad)
        runs = {}
        for p, grad in items:
            state = self._advance(p, amsgrad)
            run = runs.setdefault(state["step"], ([], [], [], [], []))
            for lst, a in zip(run, (p.data, grad) + tuple(state[n].data for n in names)):
                lst.append(a)
        for step, (params, grads, m, v, vmax) in runs.items():
            multi(params, grads, m, v, vmax if amsgrad else None, step, float(group["lr"]), beta1, beta2,
                  group["eps"], group["weight_decay"], self._decoupled, amsgrad, group.get("maximize", False))


class AdamW(Adam):
    """Adam with decoupled weight decay: ``p *= 1 - lr * weight_decay`` before the Adam step."""

    _decoupled = True

    def __init__(self, params, lr: float = 1e-3, betas: tuple = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False, *, maximize: bool = False) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize)
