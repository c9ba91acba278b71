"""Parameter: a Tensor that a Module registers as learnable."""
from __future__ import annotations

from ..tensor import Tensor


class Parameter(Tensor):
    """Shares ``data``'s storage (no copy); ``requires_grad`` defaults to True. Results of
    operations on a Parameter are plain Tensors, as in PyTorch."""

    def __init__(self, data: Tensor | None = None, requires_grad: bool = True) -> None:
        if data is None:
            from .. import empty
            data = empty(0)
        if not isinstance(data, Tensor):
            raise TypeError(f"Parameter expects a pyengine Tensor, got {type(data).__name__}")
        super().__init__(data.data, device=data.device, requires_grad=requires_grad)

    def _set_storage(self, other: Tensor) -> None:
        """Take ``other``'s array and device in place, so Module.to() keeps this object (and
        every optimizer holding it) valid."""
        self.data = other.data
        self.device = other.device

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()
