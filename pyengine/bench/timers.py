"""Medians of repeated calls: the host clock on the CPU, CUDA events on the GPU.

Both warm up first (caches, lazy compilation, BLAS thread pools), then time each call on
its own and return the median, which shrugs off the odd preempted repeat on a loaded
machine. ``fn(i)`` receives the repeat index so a caller can rotate through several input
sets (on a GPU, inputs larger than L2 or rotated keep a repeat from reading warm cache).
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Timing:
    ms: float          # median milliseconds per call
    repeats: int
    spread: float      # (max - min) / median of the repeats: how noisy the run was


def _summarise(times_ms: list[float]) -> Timing:
    med = statistics.median(times_ms)
    return Timing(med, len(times_ms), (max(times_ms) - min(times_ms)) / med if med > 0 else 0.0)


def _check(repeats: int, warmup: int) -> None:
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    if warmup < 0:
        raise ValueError(f"warmup must be non-negative, got {warmup}")


def time_cpu(fn: Callable[[int], object], repeats: int = 10, warmup: int = 2,
             budget_s: float | None = None) -> Timing:
    """Median wall time of ``fn(i)``. With ``budget_s``, stops early (after at least three
    repeats) once that much time is spent, so a slow provider cannot stall a quick run."""
    _check(repeats, warmup)
    for i in range(warmup):
        fn(i)
    times, start = [], time.perf_counter()
    for i in range(repeats):
        t0 = time.perf_counter()
        fn(i)
        times.append(1e3 * (time.perf_counter() - t0))
        if budget_s is not None and len(times) >= 3 and time.perf_counter() - start > budget_s:
            break
    return _summarise(times)


def time_cuda(fn: Callable[[int], object], repeats: int = 20, warmup: int = 3,
              budget_s: float | None = None) -> Timing:
    """Median of CUDA-event intervals around ``fn(i)`` on CuPy's current stream (every
    pyengine GPU backend and PyTorch's default stream launch there or synchronise with it)."""
    import cupy as cp

    _check(repeats, warmup)
    for i in range(warmup):
        fn(i)
    cp.cuda.get_current_stream().synchronize()
    start_ev, stop_ev = cp.cuda.Event(), cp.cuda.Event()
    times, start = [], time.perf_counter()
    for i in range(repeats):
        start_ev.record()
        fn(i)
        stop_ev.record()
        stop_ev.synchronize()
        times.append(cp.cuda.get_elapsed_time(start_ev, stop_ev))
        if budget_s is not None and len(times) >= 3 and time.perf_counter() - start > budget_s:
            break
    return _summarise(times)


def timer_for(device: str):
    """The timer that fits ``device`` ("cpu" or "cuda")."""
    if device == "cpu":
        return time_cpu
    if device == "cuda":
        return time_cuda
    raise ValueError(f"unknown device {device!r}; expected 'cpu' or 'cuda'")
