"""Run the benchmark cases on the providers present and build the JSON document
(schema.py): results with GFLOP/s, GB/s and share of the measured ceiling, plus the ratios
of providers measured side by side."""
from __future__ import annotations

import contextlib
import os
import platform
import sys
import time
from typing import TextIO

import numpy as np

from . import ceilings as _ceilings
from .cases import FAMILIES, build, cases_for
from .flops import intensity
from .providers import ALL, discover
from .schema import SCHEMA
from .timers import timer_for

# (kind, numerator, denominator): "how many times faster is the numerator".
PAIRS = (
    ("gpu/cpu", "native", "numpy"),
    ("gpu/cpu", "numba", "numpy"),
    ("gpu/cpu", "torch-cuda", "torch-cpu"),
    ("ours/vendor", "numpy", "torch-cpu"),
    ("ours/vendor", "native", "cupy"),
    ("ours/vendor", "native", "torch-cuda"),
    ("ours/vendor", "numba", "torch-cuda"),
    ("native/numba", "native", "numba"),
)

_THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


def thread_settings() -> dict:
    """BLAS and PyTorch thread counts in force, and the environment variables that set
    them: CPU numbers on a shared machine mean little without them."""
    blas = None
    try:
        from threadpoolctl import threadpool_info
        blas = [i.get("num_threads") for i in threadpool_info() if i.get("user_api") == "blas"] or None
    except ImportError:
        pass
    torch_threads = None
    if "torch" in sys.modules:
        torch_threads = sys.modules["torch"].get_num_threads()
    return {"blas": blas, "torch": torch_threads,
            "env": {k: os.environ[k] for k in _THREAD_ENV if k in os.environ}}


@contextlib.contextmanager
def thread_limit(threads: int | None):
    """Cap NumPy's BLAS and PyTorch's intra-op threads at ``threads`` for the block (None:
    leave both alone). On a shared machine one thread per library avoids the spinning
    thread pools that otherwise turn a microsecond op into a scheduler quantum."""
    if threads is None:
        yield
        return
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        raise RuntimeError("capping BLAS threads needs threadpoolctl: pip install threadpoolctl "
                           "(or install pyengine's bench or demo extra)") from None

    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None else None
    if torch is not None:
        torch.set_num_threads(threads)
    try:
        with threadpool_limits(limits=threads, user_api="blas"):
            yield
    finally:
        if torch is not None:
            torch.set_num_threads(before)


def machine_info(devices) -> dict:
    from pyengine.commands.info import numpy_blas

    try:
        from importlib.metadata import version
        pyengine_version = version("pyengine")
    except Exception:  # running from a checkout that was never installed
        pyengine_version = "checkout"
    gpu = driver = None
    if "cuda" in devices:
        import cupy as cp
        props = cp.cuda.runtime.getDeviceProperties(0)
        gpu = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        driver = str(cp.cuda.runtime.driverGetVersion())
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__,
            "numpy_blas": numpy_blas(), "pyengine": pyengine_version, "threads": thread_settings(),
            "gpu": gpu, "driver": driver}


def result_row(case, built, provider, n, timing, ceiling) -> dict:
    """One result: the timing with its throughput and its share of the ceiling that bounds
    it (compute when the op's intensity is past the ridge point, memory otherwise)."""
    gflops = built.flops / timing.ms / 1e6
    gbps = built.bytes / timing.ms / 1e6
    bound, share = None, None
    if ceiling:
        ridge = ceiling["sgemm_gflops"] / ceiling["copy_gbps"]
        bound = "compute" if intensity(built.flops, built.bytes) >= ridge else "memory"
        share = gflops / ceiling["sgemm_gflops"] if bound == "compute" else gbps / ceiling["copy_gbps"]
    return {"family": case.family, "case": case.name, "size": n, "size_label": case.size_label,
            "shape": built.shape, "provider": provider.name, "device": provider.device,
            "ours": provider.ours, "ms": timing.ms, "repeats": timing.repeats, "spread": timing.spread,
            "flops": built.flops, "bytes": built.bytes, "gflops": gflops, "gbps": gbps,
            "bound": bound, "ceiling_share": share}


def ratios(results: list[dict]) -> list[dict]:
    """Every pair of PAIRS measured on the same case and size in this run."""
    ms = {(r["family"], r["case"], r["size"], r["provider"]): r["ms"] for r in results}
    out = []
    for family, case, size in dict.fromkeys((r["family"], r["case"], r["size"]) for r in results):
        for kind, num, den in PAIRS:
            a, b = ms.get((family, case, size, num)), ms.get((family, case, size, den))
            if a is not None and b is not None:
                out.append({"family": family, "case": case, "size": size, "kind": kind,
                            "numerator": num, "denominator": den, "speedup": b / a})
    return out


def run(devices=("cpu",), families=FAMILIES, quick: bool = True, providers=ALL,
        progress: TextIO | None = None, command: str = "", max_size: int | None = None,
        threads: int | None = None) -> dict:
    """Run every case of ``families`` on every provider present on ``devices``; returns the
    document. ``max_size`` drops the sizes above it (the tests' tiny runs); ``threads`` caps
    the CPU libraries' threads for the run (see thread_limit)."""
    present, missing = discover(providers, devices)
    with thread_limit(threads):
        return _run(present, missing, families, quick, progress, command, max_size)


def _run(present, missing, families, quick, progress, command, max_size) -> dict:
    say = (lambda text: print(text, file=progress, flush=True)) if progress else (lambda text: None)
    devices = sorted({p.device for p in present}, key=("cpu", "cuda").index)
    say(f"providers: {', '.join(p.name for p in present)}"
        + "".join(f"\n  (no {k}: {v})" for k, v in missing.items()))
    say("measuring ceilings ...")
    ceil, errors = _ceilings.measure(devices, quick)
    cases = cases_for(families)
    results = []
    budget = 1.0 if quick else 5.0
    for ci, case in enumerate(cases, 1):
        for n in case.sizes(quick):
            if max_size is not None and n > max_size:
                continue
            for p in (p for p in present if case.runs_on(p)):
                try:
                    with p.selected():
                        built = build(case, p, n)
                        timing = timer_for(p.device)(built.fn, repeats=10 if quick else 30,
                                                     warmup=1 if quick else 3, budget_s=budget)
                except Exception as exc:  # one failing op must not lose the others' numbers
                    errors.append(f"{case.family}/{case.name} n={n} on {p.name}: {exc!r}")
                    say(f"  FAILED {errors[-1]}")
                    continue
                row = result_row(case, built, p, n, timing, ceil.get(p.device))
                results.append(row)
                say(f"[{ci}/{len(cases)}] {case.family:<11} {case.name:<20} {n:>8} {p.name:<10} "
                    f"{timing.ms:9.3f} ms {row['gflops']:9.2f} GFLOP/s {row['gbps']:8.2f} GB/s")
    return {"schema": SCHEMA, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "command": command, "quick": quick, "machine": machine_info(devices),
            "providers": [p.name for p in present], "missing": missing, "ceilings": ceil,
            "results": results, "ratios": ratios(results), "errors": errors}
