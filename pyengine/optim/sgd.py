"""SGD with momentum, dampening, Nesterov, weight decay and maximize (PyTorch's update rule)."""
from __future__ import annotations

from ..tensor import Tensor
from .optimizer import Optimizer


class SGD(Optimizer):
    """The update runs in the parameter's backend (``sgd_step``), in place, outside autograd:

    g = grad (+ weight_decay * p); buf = momentum * buf + (1 - dampening) * g (buf = g on the
    first step); g = g + momentum * buf if nesterov else buf; p -= lr * g.
    """

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0, dampening: float = 0,
                 weight_decay: float = 0, nesterov: bool = False, *, maximize: bool = False) -> None:
        if lr < 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if momentum < 0.0:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if weight_decay < 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError(f"Nesterov momentum requires a momentum and zero dampening "
                             f"(got momentum={momentum}, dampening={dampening})")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov, maximize=maximize))

    def step(self, closure=None):
        loss = self._eval_closure(closure)
        for group in self.param_groups:
            momentum = group["momentum"]
            multi, items = self._foreach(group, "sgd_step_multi")
            if multi is not None:
                self._step_multi(multi, group, items)
                continue
            for p, backend, grad in self._grads(group):
                buf, first = self._momentum_buffer(p, momentum)
                backend.sgd_step(p.data, grad, buf, float(group["lr"]), momentum, group["dampening"],
                                 group["nesterov"], group["weight_decay"], first)
        return loss

    def _momentum_buffer(self, p, momentum):
        """(p's momentum buffer array, whether this is its first step: the buffer starts as the
        gradient), the buffer created on first use; (None, False) without momentum."""
        if momentum == 0:
            return None, False
        state = self.state[p]
        first = state.get("momentum_buffer") is None
        if first:
            state["momentum_buffer"] = Tensor._make(p._backend.xp.zeros_like(p.data), p.device)
        return state["momentum_buffer"].data, first

    def _step_multi(self, multi, group, items):
        """One multi-tensor launch for the parameters whose momentum buffer exists, one for
        those taking their first step (the buffer starts as the gradient)."""
        momentum = group["momentum"]
        runs = {False: ([], [], []), True: ([], [], [])}
        for p, grad in items:
            buf, first = self._momentum_buffer(p, momentum)
            params, grads, bufs = runs[first]
            params.append(p.data)
            grads.append(grad)
            bufs.append(buf)
        for first, (params, grads, bufs) in runs.items():
            if params:
                multi(params, grads, bufs if momentum != 0 else None, float(group["lr"]), momentum,
                      group["dampening"], group["nesterov"], group["weight_decay"], first,
                      group.get("maximize", False))
