"""Shared test setup.

Numba kernels run on the CPU through the CUDA simulator unless a real GPU run is asked for
(PYENGINE_DEVICE_TESTS=1, as bench/device_check.sh sets). The variable must be set before
numba.cuda is first imported, hence here, at collection time.
"""
import os

if os.environ.get("PYENGINE_DEVICE_TESTS") != "1":
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

import zlib

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


# Inputs are fresh for every run (a new session seed each time) yet any failure reproduces:
# the header prints the seed, and PYENGINE_TEST_SEED=<seed> replays it.
SESSION_SEED = int(os.environ.get("PYENGINE_TEST_SEED", np.random.SeedSequence().entropy % 2**32))


def pytest_report_header(config):
    return f"pyengine test seed: PYENGINE_TEST_SEED={SESSION_SEED}"


@pytest.fixture(params=["native", "numba"])
def provider(request):
    """The test once per CUDA kernel provider, each skipped where it cannot run."""
    from _helpers import cuda_kernels  # here, so that conftest itself never imports pyengine
    with cuda_kernels(request.param):
        yield request.param


@pytest.fixture
def rng(request):
    """A generator per test, from the session seed and the test's id (crc32, which unlike
    hash() does not change between processes)."""
    return np.random.default_rng([SESSION_SEED, zlib.crc32(request.node.nodeid.encode())])
