"""Compile every registered kernel and device function to PTX for each target GPU.

    python -m pyengine.backend._numba_kernels.compile_check [--cc 8.0 9.0]

Runs without a GPU (NVRTC from the nvidia-cuda-nvrtc wheel does the work) but not under
NUMBA_ENABLE_CUDASIM=1, where compile_ptx does not exist; the tests call it in a
subprocess with that variable removed. Prints one line per (kernel, cc), "ok" or the
error, and exits 1 if any failed.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

FAMILIES = ("activation", "matmul", "conv2d", "pool", "softmax", "layer_norm", "attention", "optim", "rnn")


def _pretend_device(cc):
    """Numba types a call to a device function by compiling it for the *current* device's
    compute capability, which needs a driver; on a machine without one, say it is ``cc``."""
    from numba.cuda import dispatcher

    class Target:
        compute_capability = cc

    dispatcher.get_current_device = lambda: Target


def check(ccs):
    """[(qualified name, cc, error or None)] for every registered function and cc."""
    from numba import cuda

    from . import REGISTRY
    for family in FAMILIES:
        importlib.import_module(f"{__package__}.{family}")
    results = []
    for module, fname, fn, sigs, is_device in REGISTRY:
        for cc in ccs:
            _pretend_device(cc)
            for sig in sigs:
                try:
                    cuda.compile_ptx(fn, sig, device=is_device, cc=cc)
                    err = None
                except Exception as exc:  # report every failure, not just the first
                    err = f"{type(exc).__name__}: {exc}"
                results.append((f"{module.rsplit('.', 1)[-1]}.{fname}", cc, err))
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cc", nargs="+", default=["8.0", "9.0"])
    args = parser.parse_args(argv)
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        sys.exit("compile_check: unset NUMBA_ENABLE_CUDASIM (the simulator has no compile_ptx)")
    ccs = [tuple(int(p) for p in c.split(".")) for c in args.cc]
    failed = 0
    for qualname, cc, err in check(ccs):
        print(f"{qualname} sm_{cc[0]}{cc[1]}: {'ok' if err is None else err}")
        failed += err is not None
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
