"""Gradient clipping and parameter/vector conversion (``torch.nn.utils``'s names)."""
from __future__ import annotations

import math
from collections.abc import Iterable

from ..backend import get_backend
from ..tensor import Tensor


def _as_list(parameters) -> list[Tensor]:
    return [parameters] if isinstance(parameters, Tensor) else list(parameters)


def clip_grad_norm_(parameters, max_norm: float, norm_type: float = 2.0, error_if_nonfinite: bool = False,
                    foreach=None) -> Tensor:
    """Scale all gradients together so their joint ``norm_type`` norm is at most ``max_norm``.

    Returns the total norm before clipping (a 0-d tensor), as PyTorch. The scale is
    ``max_norm / (total + 1e-6)``, applied only when below 1.
    """
    grads = [p.grad for p in _as_list(parameters) if p.grad is not None]
    norm_type = float(norm_type)
    if not grads:
        return Tensor._make(get_backend("cpu").xp.asarray(0.0, dtype="float32"), "cpu")
    devices = {g.device for g in grads}
    if len(devices) > 1:
        raise RuntimeError(f"clip_grad_norm_: gradients are on several devices {sorted(devices)}")
    backend = get_backend(grads[0].device)
    xp = backend.xp
    if norm_type == math.inf:
        per_grad = [xp.abs(g.data).max() for g in grads]
        total = xp.max(xp.stack(per_grad))
    else:
        per_grad = [(xp.abs(g.data) ** norm_type).sum() for g in grads]
        total = xp.sum(xp.stack(per_grad)) ** (1.0 / norm_type)
    if error_if_nonfinite and not bool(xp.isfinite(total)):
        raise RuntimeError(f"The total norm of order {norm_type} for gradients from `parameters` is non-finite, "
                           "so it cannot be clipped. To disable this error and scale the gradients by the "
                           "non-finite norm anyway, set `error_if_nonfinite=False`")
    coef = min(float(max_norm) / (float(total) + 1e-6), 1.0)
    for g in grads:
        g.data[...] = g.data * coef
    return Tensor._make(xp.asarray(total, dtype=grads[0].data.dtype), grads[0].device)


def clip_grad_value_(parameters, clip_value: float, foreach=None) -> None:
    """Clamp every gradient element into [-clip_value, clip_value] in place."""
    clip_value = float(clip_value)
    for p in _as_list(parameters):
        if p.grad is not None:
            xp = get_backend(p.grad.device).xp
            p.grad.data[...] = xp.clip(p.grad.data, -clip_value, clip_value)


def parameters_to_vector(parameters: Iterable[Tensor]) -> Tensor:
    """All parameters flattened and concatenated into one 1-D tensor (differentiable)."""
    from .. import cat
    params = _as_list(parameters)
    devices = {p.device for p in params}
    if len(devices) > 1:
        raise TypeError(f"parameters_to_vector: parameters are on different devices {sorted(devices)}")
    return cat([p.reshape(-1) for p in params])


def vector_to_parameters(vec: Tensor, parameters: Iterable[Tensor]) -> None:
    """Copy consecutive slices of the 1-D ``vec`` into the parameters, in place."""
    params = _as_list(parameters)
    if not isinstance(vec, Tensor) or vec.ndim != 1:
        raise TypeError(f"expected vec to be a 1-D Tensor, got {type(vec).__name__} of shape "
                        f"{getattr(vec, 'shape', None)}")
    total = sum(math.prod(p.shape) for p in params)
    if vec.shape[0] != total:
        raise ValueError(f"vector_to_parameters: vec has {vec.shape[0]} elements, the parameters {total}")
    offset = 0
    for p in params:
        n = math.prod(p.shape)
        p.data[...] = vec.data[offset:offset + n].reshape(p.shape)
        offset += n
