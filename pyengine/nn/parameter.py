"""Parameter: a Tensor that a Module registers as learnable."""
from __future__ import annotations

from ..tensor import Tensor


class Parameter(Tensor):
    """Wraps ``data``'s storage without copying; ``requires_grad`` defaults to True."""

    def __init__(self, data: Tensor | None = None, requires_grad: bool = True) -> None:
        if data is None:
            from .. import empty
            data = empty(0)
        if not isinstance(data, Tensor):
            raise TypeError(f"Parameter expects a pyengine Tensor, got {type(data).__name__}")
        super().__init__(data.data, device=data.device, requires_grad=requires_grad)

    def _set_storage(self, other: Tensor) -> None:
        """Take ``other``'s array, device and dtype in place (Module.to keeps Parameter identity)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()
