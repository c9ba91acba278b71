"""A reusable training loop: split, train with a progress line, validate every epoch, test,
checkpoint. ``pyengine train``, the demo and the benchmarks all call it.

``fit`` returns a history dict (plain Python numbers and lists, JSON-serialisable):

    device, epochs, batch_size, task
    train_loss, val_loss, val_accuracy*, samples_per_s, epoch_time_s   one entry per epoch
    step_loss, step_time_s        loss of every step, and wall time since the start after it
    test_loss, test_accuracy*     after the last epoch (None without a test set)
    checkpoint                    the path written, or None

(* classification only; None for regression.)
"""
from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import TextIO

import pyengine as pe
from pyengine import nn
from pyengine.data import DataLoader, random_split

OPTIMIZERS = ("sgd", "adam", "adamw")


def split_dataset(dataset, val_fraction: float = 0.1, test_fraction: float = 0.2, seed: int = 0):
    """(train, val, test) random subsets of ``dataset``, reproducible from ``seed``."""
    if val_fraction < 0 or test_fraction < 0 or val_fraction + test_fraction >= 1:
        raise ValueError(
            f"val_fraction ({val_fraction}) and test_fraction ({test_fraction}) must be non-negative "
            "and leave some training data"
        )
    return tuple(random_split(dataset, [1 - val_fraction - test_fraction, val_fraction, test_fraction],
                              generator=seed))


def make_optimizer(name: str, params, lr: float, weight_decay: float = 0.0):
    """An optimizer by name: "sgd" (momentum 0.9), "adam" or "adamw"."""
    if name == "sgd":
        return pe.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
    if name == "adam":
        return pe.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return pe.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; expected one of {', '.join(OPTIMIZERS)}")


def _loss(task: str, out, y):
    if task == "classification":
        # Sequence models give (N, T, C) logits and (N, T) targets: score every position.
        if out.ndim > 2:
            out, y = out.reshape(-1, out.shape[-1]), y.reshape(-1)
        return nn.functional.cross_entropy(out, y)
    return nn.functional.mse_loss(out, y)


def evaluate(model, loader, task: str = "classification", device: str = "cpu") -> dict:
    """Mean loss (and accuracy for classification) of ``model`` over ``loader``, in eval
    mode without gradients; the model's train/eval mode is restored afterwards."""
    was_training = model.training
    model.eval()
    total, loss_sum, correct = 0, 0.0, 0
    with pe.no_grad():
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            out = model(x)
            n = math.prod(y.shape) if task == "classification" else y.shape[0]
            loss_sum += _loss(task, out, y).item() * n
            if task == "classification":
                correct += int((out.argmax(dim=-1) == y).sum().item())
            total += n
    model.train(was_training)
    if total == 0:
        raise ValueError("evaluate got an empty loader")
    return {"loss": loss_sum / total, "accuracy": correct / total if task == "classification" else None}


def _eval_loader(dataset, batch_size: int) -> DataLoader:
    # Evaluation keeps no graph, so larger batches cost little memory and save Python overhead.
    return DataLoader(dataset, batch_size=max(batch_size, 256))


class _Progress:
    """One status line: rewritten in place with \\r on a terminal, else printed once per
    epoch so logs and CI output stay readable."""

    def __init__(self, stream: TextIO | None):
        self.stream = stream
        self.tty = bool(stream is not None and getattr(stream, "isatty", lambda: False)())
        self._last = 0.0

    def update(self, text: str) -> None:
        now = time.perf_counter()
        if self.tty and now - self._last > 0.1:
            self.stream.write("\r" + text.ljust(79))
            self.stream.flush()
            self._last = now

    def done(self, text: str) -> None:
        if self.stream is None:
            return
        self.stream.write(("\r" + text.ljust(79) if self.tty else text) + "\n")
        self.stream.flush()


def fit(model, train_set, val_set=None, test_set=None, *, epochs: int = 10, batch_size: int = 64,
        optimizer=None, lr: float = 1e-3, task: str = "classification", device: str = "cpu",
        seed: int = 0, checkpoint: str | Path | None = None, max_steps: int | None = None,
        log: TextIO | None = None, verbose: bool = True) -> dict:
    """Train ``model`` on ``train_set`` and return the history (see the module docstring).

    optimizer: an Optimizer, or a name in OPTIMIZERS built with ``lr`` (default "adam").
    checkpoint: a path; the state dict is saved there with ``pe.save`` after every epoch.
    max_steps: stop after this many optimizer steps (the demo runs a fixed number).
    log: where the progress line goes (default: sys.stdout at call time); verbose=False
    silences it.
    """
    if task not in ("classification", "regression"):
        raise ValueError(f"task must be 'classification' or 'regression', got {task!r}")
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    model.to(device)
    if optimizer is None or isinstance(optimizer, str):
        optimizer = make_optimizer(optimizer or "adam", model.parameters(), lr)
    train_loader = DataLoader(train_set, batch_size=batch_size, shuffle=True, generator=seed)
    if len(train_loader) == 0:
        raise ValueError(f"the training set has {len(train_set)} samples, fewer than batch_size={batch_size}")
    history = {
        "device": device, "epochs": epochs, "batch_size": batch_size, "task": task,
        "train_loss": [], "val_loss": [], "val_accuracy": [], "samples_per_s": [], "epoch_time_s": [],
        "step_loss": [], "step_time_s": [], "test_loss": None, "test_accuracy": None, "checkpoint": None,
    }
    log = (log or sys.stdout) if verbose else None
    progress = _Progress(log)
    start = time.perf_counter()
    step = 0
    for epoch in range(1, epochs + 1):
        model.train()
        t0 = time.perf_counter()
        seen, loss_sum = 0, 0.0
        for b, (x, y) in enumerate(train_loader, 1):
            x, y = x.to(device), y.to(device)
            optimizer.zero_grad()
            loss = _loss(task, model(x), y)
            value = loss.item()
            if not math.isfinite(value):  # checked before the update, so the weights stay usable
                raise FloatingPointError(
                    f"training loss became {value} at epoch {epoch}, step {b}; a lower learning rate may help")
            loss.backward()
            optimizer.step()
            step += 1
            seen += x.shape[0]
            loss_sum += value * x.shape[0]
            history["step_loss"].append(value)
            history["step_time_s"].append(time.perf_counter() - start)
            rate = seen / max(time.perf_counter() - t0, 1e-9)
            line = f"epoch {epoch}/{epochs} [{b:>4}/{len(train_loader)}] loss {value:.4f} | {rate:,.0f} samples/s"
            progress.update(line)
            if max_steps is not None and step >= max_steps:
                break
        elapsed = time.perf_counter() - t0
        history["train_loss"].append(loss_sum / seen)
        history["samples_per_s"].append(seen / elapsed)
        history["epoch_time_s"].append(elapsed)
        line = (f"epoch {epoch}/{epochs} train loss {loss_sum / seen:.4f} | "
                f"{seen / elapsed:,.0f} samples/s | {elapsed:.2f} s")
        if val_set is not None and len(val_set):
            val = evaluate(model, _eval_loader(val_set, batch_size), task, device)
            history["val_loss"].append(val["loss"])
            history["val_accuracy"].append(val["accuracy"])
            line += f" | val loss {val['loss']:.4f}"
            if val["accuracy"] is not None:
                line += f" acc {100 * val['accuracy']:.1f}%"
        if checkpoint is not None:
            Path(checkpoint).parent.mkdir(parents=True, exist_ok=True)
            pe.save(model.state_dict(), str(checkpoint))
            history["checkpoint"] = str(checkpoint)
        progress.done(line)
        if max_steps is not None and step >= max_steps:
            break
    if test_set is not None and len(test_set):
        test = evaluate(model, _eval_loader(test_set, batch_size), task, device)
        history["test_loss"], history["test_accuracy"] = test["loss"], test["accuracy"]
        if log is not None:
            msg = f"test loss {test['loss']:.4f}"
            if test["accuracy"] is not None:
                msg += f" | test accuracy {100 * test['accuracy']:.2f}%"
            log.write(msg + "\n")
    return history


def train_model(name: str, *, epochs: int = 10, batch_size: int = 64, lr: float = 1e-3,
                optimizer: str = "adam", device: str = "cpu", seed: int = 0, out: str | Path | None = None,
                max_steps: int | None = None, log: TextIO | None = None, verbose: bool = True,
                **model_kwargs) -> dict:
    """Train a registered model (``pyengine.models.get_model``) on its default data, split
    70/10/20 into train/validation/test. With ``out``, the checkpoint goes to
    ``out/<name>.npz``. Returns ``fit``'s history with ``model`` added."""
    from pyengine import models

    spec = models.model_spec(name)
    if spec.data is None:
        raise ValueError(f"model {name!r} is registered without default training data")
    pe.manual_seed(seed)
    model = spec.factory(**{**spec.defaults, **model_kwargs})
    train_set, val_set, test_set = split_dataset(spec.data(), seed=seed)
    checkpoint = Path(out) / f"{name}.npz" if out is not None else None
    history = fit(model, train_set, val_set, test_set, epochs=epochs, batch_size=batch_size,
                  optimizer=make_optimizer(optimizer, model.parameters(), lr), task=spec.task,
                  device=device, seed=seed, checkpoint=checkpoint, max_steps=max_steps, log=log,
                  verbose=verbose)
    history["model"] = name
    return history
