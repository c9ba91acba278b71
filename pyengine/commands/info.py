"""``pyengine info``: versions, the BLAS NumPy uses, the CUDA build and the GPUs seen."""
from __future__ import annotations

import importlib
import importlib.metadata
import json
import platform
import sys

# Optional packages worth reporting, by import name and distribution name.
_OPTIONAL = (("numba", "numba"), ("numba_cuda", "numba-cuda"), ("cupy", None), ("torch", "torch"),
             ("threadpoolctl", "threadpoolctl"))


def register(subparsers) -> None:
    p = subparsers.add_parser("info", help="show versions, BLAS, CUDA build and GPUs")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)


def _version(module: str, dist: str | None) -> str | None:
    if dist is not None:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return None
    # cupy ships under several distribution names (cupy-cuda12x, cupy-cuda13x, ...).
    try:
        return importlib.import_module(module).__version__
    except Exception:
        return None


def numpy_blas() -> str:
    """The BLAS NumPy calls: threadpoolctl's view of the loaded library (what runs), else
    what NumPy's build configuration names (what it was built against)."""
    import numpy as np  # imported first so its BLAS is loaded when threadpoolctl looks

    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        threadpool_info = None
    if threadpool_info is not None:
        libs = [i for i in threadpool_info() if i.get("user_api") == "blas"]
        if libs:
            return "; ".join(
                f"{i.get('internal_api')} {i.get('version')} ({i.get('num_threads')} threads, "
                f"{i.get('threading_layer', 'n/a')} threading)" for i in libs)
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{blas.get('name')} {blas.get('version', '')} (from numpy build config)".strip()
    except Exception as exc:
        return f"unknown ({exc})"


def _malloc_tuning() -> str:
    """What the NumPy backend told glibc's malloc on import (it keeps freed memory so a
    step's large temporaries are not fresh page-faulting allocations)."""
    from pyengine.backend import numpy_backend

    return numpy_backend.MALLOC_TUNING


def cuda_status() -> dict:
    """Whether pyengine._C was built (it exists only in CUDA builds), what each GPU kernel
    provider says about availability, and the GPUs the current provider sees."""
    from pyengine import cuda
    from pyengine.backend import load

    status = {"kernel_provider": cuda.current_kernels()}
    try:
        importlib.import_module("pyengine._C")
        status["extension"] = "built with CUDA"
    except ImportError as exc:
        status["extension"] = f"not built ({exc})"
    for name in ("native", "numba"):
        try:
            ok, reason = load(name).available()
            status[f"{name}_available"] = "yes" if ok else f"no: {reason}"
        except Exception as exc:  # a backend that fails to import is itself the news
            status[f"{name}_available"] = f"no: backend failed to import ({exc!r})"
    status["gpus"] = [cuda.get_device_name(i) for i in range(cuda.device_count())]
    return status


def collect() -> dict:
    import numpy as np

    import pyengine

    report = {
        "pyengine": getattr(pyengine, "__version__", _version("pyengine", "pyengine")),
        "python": f"{platform.python_version()} ({sys.executable})",
        "platform": platform.platform(),
        "numpy": np.__version__,
        "numpy_blas": numpy_blas(),
        "malloc_tuning": _malloc_tuning(),
    }
    for module, dist in _OPTIONAL:
        report[module] = _version(module, dist) or "not installed"
    report.update(cuda_status())
    return report


def run(args) -> int:
    report = collect()
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    width = max(len(k) for k in report)
    for key, value in report.items():
        if key == "gpus":
            value = ", ".join(value) if value else "none seen"
        print(f"{key:<{width}}  {value}")
    return 0
