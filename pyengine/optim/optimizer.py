"""Optimizer: parameter groups, per-parameter state and PyTorch's state_dict layout."""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from ..autograd import backend_for, enable_grad
from ..backend import get_backend
from ..tensor import Tensor


class _RequiredParameter:
    def __repr__(self) -> str:
        return "<required parameter>"


required = _RequiredParameter()


class Optimizer:
    """Base class. Subclasses pass their defaults and implement ``step``.

    ``state`` maps each parameter to a dict of Tensors/numbers (a defaultdict, as PyTorch's).
    ``state_dict()`` renumbers the parameters 0, 1, ... in group order, as PyTorch does, so it
    can be saved and reloaded into an optimizer built over a fresh copy of the same model.
    """

    def __init__(self, params, defaults: dict) -> None:
        self.defaults = defaults
        self.state: defaultdict = defaultdict(dict)
        self.param_groups: list[dict] = []
        if isinstance(params, Tensor):
            raise TypeError("params argument given to the optimizer should be an iterable of Tensors "
                            f"or dicts, but got {type(params).__name__}")
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def add_param_group(self, param_group: dict) -> None:
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, got {type(param_group).__name__}")
        params = param_group["params"]
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, set):
            raise TypeError("optimizer parameters need to be organized in ordered collections, but "
                            "the ordering of tensors in sets will change between runs. Please use a list instead.")
        else:
            params = list(params)
        for i, p in enumerate(params):
            if not isinstance(p, Tensor):
                raise TypeError(f"optimizer can only optimize Tensors, but param {i} is {type(p).__name__}")
            if not p.is_leaf:
                raise ValueError(f"can't optimize a non-leaf Tensor (param {i} of shape {tuple(p.shape)})")
        group = dict(param_group, params=params)
        for name, default in self.defaults.items():
            if default is required and name not in group:
                raise ValueError(f"parameter group didn't specify a value of required optimization parameter {name}")
            group.setdefault(name, default)
        existing = {id(p) for g in self.param_groups for p in g["params"]}
        if len({id(p) for p in params}) != len(params) or existing & {id(p) for p in params}:
            raise ValueError("some parameters appear in more than one parameter group")
        self.param_groups.append(group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    p.grad.data[...] = 0

    def step(self, closure=None):
        raise NotImplementedError

    def _eval_closure(self, closure):
        if closure is None:
            return None
        with enable_grad():
            return closure()

    @staticmethod
    def _grads(group: dict, negate: bool = True):
        """(param, backend, grad array) for each parameter of ``group`` that has a grad, the
        gradient negated when the group maximizes (and ``negate`` is left True)."""
        maximize = negate and group.get("maximize", False)
        for i, p in enumerate(group["params"]):
            g = p.grad
            if g is None:
                continue
            grad, data = g.data, p.data
            # Compared on the arrays: Tensor.shape/.dtype build new objects, every parameter, every step.
            if grad.shape != data.shape or g.device != p.device or grad.dtype != data.dtype:
                raise RuntimeError(f"param {i} of shape {p.shape} ({p.dtype}, {p.device}) has a grad of shape "
                                   f"{g.shape} ({g.dtype}, {g.device}); they must match")
            if maximize:
                grad = -grad
            yield p, backend_for(p.device), grad

    @classmethod
    def _foreach(cls, group: dict, name: str):
        """(the backend's multi-tensor update ``name``, [(param, contiguous grad array)]) when
        one call can update every parameter of ``group`` that has a grad: all float32 on one
        backend that has ``name`` (the native CUDA one). Else (None, None): step per parameter.
        The gradients are not negated; the multi-tensor updates take ``maximize``."""
        params = group["params"]
        if not params or getattr(backend_for(params[0].device), name, None) is None:
            return None, None  # the common CPU case: no list of the gradients built for nothing
        items = list(cls._grads(group, negate=False))
        if not items:
            return None, None
        backend = items[0][1]
        fn = getattr(backend, name, None)
        if fn is None or any(b is not backend or p.data.dtype != np.float32 for p, b, _ in items):
            return None, None
        xp = backend.xp
        return fn, [(p, g if g.flags.c_contiguous else xp.ascontiguousarray(g)) for p, _, g in items]

    # ----- state dict ---------------------------------------------------------------------
    def state_dict(self) -> dict:
        """``{"state": {index: {...}}, "param_groups": [{..., "params": [index, ...]}]}``."""
        index = {}
        groups = []
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k != "params"}
            ids = []
            for p in group["params"]:
                index.setdefault(id(p), len(index))
                ids.append(index[id(p)])
            packed["params"] = ids
            groups.append(packed)
        state = {index[id(p)]: dict(s) for p, s in self.state.items() if id(p) in index and s}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"loaded state dict has a different number of parameter groups "
                             f"({len(saved_groups)}) than the optimizer ({len(self.param_groups)})")
        for i, (ours, saved) in enumerate(zip(self.param_groups, saved_groups)):
            if len(ours["params"]) != len(saved["params"]):
                raise ValueError(f"loaded state dict contains a parameter group that doesn't match the size "
                                 f"of optimizer's group: group {i} has {len(saved['params'])} saved "
                                 f"parameters, the optimizer {len(ours['params'])}")
        by_index = {}
        for ours, saved in zip(self.param_groups, saved_groups):
            for idx, p in zip(saved["params"], ours["params"]):
                by_index[int(idx)] = p
        self.state = defaultdict(dict)
        for idx, values in state_dict["state"].items():
            p = by_index.get(int(idx))
            if p is not None:
                self.state[p] = {k: _cast_state(k, v, p) for k, v in values.items()}
        for ours, saved in zip(self.param_groups, saved_groups):
            ours.update({k: v for k, v in saved.items() if k != "params"})

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines.extend(f"    {k}: {group[k]}" for k in sorted(group) if k != "params")
        return "\n".join(lines) + "\n)"


def _cast_state(key: str, value, p: Tensor):
    """A loaded state value on ``p``'s device; floating arrays take ``p``'s dtype except the
    step count, as PyTorch."""
    if isinstance(value, Tensor):
        value = value.detach().numpy()
    if not isinstance(value, np.ndarray):
        return value
    if key == "step":
        return value.item() if value.ndim == 0 else value
    dtype = p.dtype.np if np.issubdtype(value.dtype, np.floating) else value.dtype
    return Tensor._make(get_backend(p.device).asarray(value, dtype=dtype), p.device)
