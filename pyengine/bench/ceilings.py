"""The machine's measured ceilings, taken in the same run as the benchmarks they scale.

CPU: NumPy's float32 GEMM (whatever BLAS it links, at the thread count in force) and a large
memory copy. GPU: a device-to-device copy and cuBLAS SGEMM through CuPy. Each result's share
of the ceiling is its GFLOP/s over the GEMM's, or its GB/s over the copy's.
"""
from __future__ import annotations

import numpy as np

from . import flops as F
from .timers import time_cpu, time_cuda


def cpu(quick: bool = True) -> dict:
    n = 512 if quick else 1024
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32)
    gemm = time_cpu(lambda i: a @ b, repeats=5 if quick else 15, warmup=1)
    # 64 MiB per buffer: far beyond any last-level cache, so this is DRAM bandwidth.
    src = rng.standard_normal(16 << 20, dtype=np.float32)
    dst = np.empty_like(src)
    copy = time_cpu(lambda i: np.copyto(dst, src), repeats=5 if quick else 10, warmup=1)
    return {"sgemm_gflops": F.matmul_flops(n, n, n) / _floor(gemm.ms) / 1e6, "sgemm_n": n,
            "copy_gbps": 2 * src.nbytes / _floor(copy.ms) / 1e6, "copy_bytes": 2 * src.nbytes}


def cuda(quick: bool = True) -> dict:
    import cupy as cp

    n = 4096
    a = cp.random.standard_normal((n, n), dtype=cp.float32)
    b = cp.random.standard_normal((n, n), dtype=cp.float32)
    gemm = time_cuda(lambda i: a @ b, repeats=10 if quick else 30)
    src = cp.random.standard_normal(64 << 20, dtype=cp.float32)   # 256 MiB: past any L2
    dst = cp.empty_like(src)
    copy = time_cuda(lambda i: cp.copyto(dst, src), repeats=10 if quick else 30)
    return {"sgemm_gflops": F.matmul_flops(n, n, n) / _floor(gemm.ms) / 1e6, "sgemm_n": n,
            "copy_gbps": 2 * src.nbytes / _floor(copy.ms) / 1e6, "copy_bytes": 2 * src.nbytes}


def _floor(ms: float) -> float:
    """A timing floor of one nanosecond, so a clock that reads 0 never divides by zero."""
    return max(ms, 1e-6)


def measure(devices, quick: bool = True) -> tuple[dict, list[str]]:
    """({device: ceilings}, errors): a device whose measurement fails is left out, and its
    results then carry no share of ceiling, rather than losing the whole run."""
    out, errors = {}, []
    for device in devices:
        try:
            out[device] = cpu(quick) if device == "cpu" else cuda(quick)
        except Exception as exc:  # reported in the document's errors
            errors.append(f"ceilings on {device}: {exc!r}")
    return out, errors
