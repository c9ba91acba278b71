"""Neural-network layers, losses, initializers and utilities with PyTorch's API."""
from . import functional, init, utils
from . import functional as F
from .modules import *  # noqa: F401,F403  (every layer class; the list is modules.__all__)
from .modules import __all__ as _module_names
from .parameter import Parameter

__all__ = ["Parameter", "functional", "F", "init", "utils"] + _module_names
