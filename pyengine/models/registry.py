"""Models by name, for ``get_model`` and ``pyengine train``.

Each entry holds a factory and the default data it trains on, so the CLI can train any
registered model without knowing it. Other model files register themselves with
``register_model`` at import time (and pyengine/models/__init__.py imports them).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable


@dataclass(frozen=True)
class ModelSpec:
    """factory(**kwargs) -> Module; data() -> Dataset of (input, target) for ``pyengine train``;
    task "classification" (cross-entropy, accuracy; targets int64 class indices, logits on
    the last axis) or "regression" (MSE); after_train(history), when set, runs at the end of
    ``pyengine train`` to show what the model learned (a sample, a perplexity table)."""
    name: str
    factory: Callable
    data: Callable | None = None
    task: str = "classification"
    help: str = ""
    defaults: dict = field(default_factory=dict)
    after_train: Callable | None = None


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(name: str, factory: Callable, *, data: Callable | None = None,
                   task: str = "classification", help: str = "", after_train: Callable | None = None,
                   **defaults) -> ModelSpec:
    """Register ``factory`` under ``name``; ``defaults`` are keyword arguments that
    ``get_model`` passes unless the caller overrides them."""
    if task not in ("classification", "regression"):
        raise ValueError(f"task must be 'classification' or 'regression', got {task!r}")
    if name in _REGISTRY:
        raise ValueError(f"a model named {name!r} is already registered")
    spec = ModelSpec(name, factory, data, task, help, dict(defaults), after_train)
    _REGISTRY[name] = spec
    return spec


def model_spec(name: str) -> ModelSpec:
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; registered models: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def get_model(name: str, **kwargs):
    """A fresh model by its registered name, with the registered defaults unless overridden."""
    spec = model_spec(name)
    return spec.factory(**{**spec.defaults, **kwargs})


def list_models() -> list[str]:
    return sorted(_REGISTRY)
