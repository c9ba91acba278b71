"""Shared test setup.

Numba kernels run on the CPU through the CUDA simulator unless a real GPU run is asked for
(PYENGINE_DEVICE_TESTS=1, as bench/device_check.sh sets). The variable must be set before
numba.cuda is first imported, hence here, at collection time.
"""
import os

if os.environ.get("PYENGINE_DEVICE_TESTS") != "1":
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

import numpy as np
import pytest


def _native_gpu_reason():
    """None when the native CUDA kernels can run here, else why not."""
    try:
        from pyengine.backend import cuda_backend
    except Exception as exc:  # the module itself must import everywhere; say so if not
        return f"pyengine.backend.cuda_backend failed to import: {exc!r}"
    ok, reason = cuda_backend.available()
    return None if ok else reason


def pytest_collection_modifyitems(config, items):
    reason = None
    for item in items:
        if "gpu" in item.keywords:
            if reason is None:
                reason = _native_gpu_reason() or ""
            if reason:
                item.add_marker(pytest.mark.skip(reason=f"needs a CUDA GPU: {reason}"))


@pytest.fixture
def rng(request):
    """A fresh generator per test, seeded from the test's name so failures reproduce."""
    seed = abs(hash(request.node.nodeid)) % (2**32)
    return np.random.default_rng(seed)
