"""User-facing backend switches, as ``torch.backends``: ``pe.backends.cuda``."""
from . import cuda

__all__ = ["cuda"]
