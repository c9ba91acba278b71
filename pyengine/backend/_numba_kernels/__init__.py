"""The Numba CUDA kernels behind the "numba" provider, one small module per family.

Each kernel is declared with ``@kernel(signature, ...)``: Numba compiles it lazily at its
first launch (and caches the result on disk where the target allows), and the declared
signatures are what ``compile_check`` hands to ``numba.cuda.compile_ptx`` for sm_80 and
sm_90, so a kernel that does not compile for a real GPU fails CI on a machine without one.

Under ``NUMBA_ENABLE_CUDASIM=1`` the same Python source runs on the CPU (one Python thread
per CUDA thread), which is why block sizes here stay small: the simulator's cost is per
thread, and a 32-thread block serves a 7-column softmax row as well as a 128-thread one.
"""
from __future__ import annotations

import math
import sys
import threading

import numpy as np


def _numpy_compat():
    """Give NumPy back ``np.row_stack`` where it lacks it, before numba-cuda looks for it.

    NumPy 2.5 removed ``row_stack`` (an alias of ``vstack``, deprecated since 2.0), while
    numba-cuda's array support still registers an overload for it when it loads, at the
    first kernel compile: with NumPy 2.5 every launch then failed with AttributeError (seen
    on the lent H100's image, numba-cuda with NumPy 2.5.2). The alias is what NumPy had."""
    if not hasattr(np, "row_stack"):
        np.row_stack = np.vstack


_numpy_compat()

from numba import cuda  # noqa: E402  (after the NumPy shim above)
from numba.cuda import config as _config  # noqa: E402

SIMULATOR = bool(_config.ENABLE_CUDASIM)


def _thread_safe_simulator_shared():
    """Make the simulator's ``cuda.shared.array`` safe for the threads of one block.

    Numba's ``FakeCUDAShared.array`` finds a block's array by the caller's (file, line) with a
    check-then-insert: a thread switched out between the lookup and the insert (likelier at
    ``launch``'s short switch interval on a loaded machine) lets others of its block create
    arrays of their own, so the block no longer shares memory and e.g. one row of a gemm tile
    reads uninitialised staging. Here the lookup and insert happen under one lock."""
    from numba.cuda.simulator import kernelapi
    from numba.np import numpy_support
    from numba.core import types

    cls = kernelapi.FakeCUDAShared
    if getattr(cls.array, "_pyengine_thread_safe", False):
        return
    original = cls.array
    lock = threading.Lock()

    def array(self, shape, dtype, alignment=None):
        if shape == 0 or alignment is not None:  # dynamic shared memory, or Numba's own error
            return original(self, shape, dtype, alignment)
        if isinstance(dtype, types.Type):
            dtype = numpy_support.as_dtype(dtype)
        caller = sys._getframe(1)
        key = (caller.f_code.co_filename, caller.f_lineno)
        with lock:
            res = self._allocations.get(key)
            if res is None:
                res = self._allocations[key] = np.empty(shape, dtype)
        return res

    array._pyengine_thread_safe = True
    cls.array = array


if SIMULATOR:
    _thread_safe_simulator_shared()

# (module, name, python function, signatures, device?) of every kernel and device function
REGISTRY: list = []


def _register(fn, sigs, device):
    REGISTRY.append((fn.__module__, fn.__name__, fn, sigs, device))


def kernel(*sigs):
    """A lazily compiled CUDA kernel; ``sigs`` are the float32 signatures it is checked for."""
    def wrap(fn):
        _register(fn, sigs, False)
        return cuda.jit(fn, cache=not SIMULATOR)
    return wrap


def device_function(*sigs):
    """A device function callable from our kernels and from users' own ``@cuda.jit`` code."""
    def wrap(fn):
        _register(fn, sigs, True)
        return cuda.jit(fn, device=True)
    return wrap


def _stream():
    """CuPy's current stream as a Numba stream, so our launches queue with CuPy's work."""
    if SIMULATOR:
        return 0
    import cupy
    ptr = cupy.cuda.get_current_stream().ptr
    # CuPy's null stream has pointer 0, which is Numba's default stream, not a foreign one.
    return cuda.external_stream(ptr) if ptr else cuda.default_stream()


def _simulator_arg(a):
    """The simulator copies array arguments in and back out as one contiguous buffer, so a
    strided or read-only (broadcast) input travels as a contiguous copy; a GPU reads the
    view itself. Outputs are always fresh contiguous arrays and pass through unchanged."""
    if isinstance(a, np.ndarray) and not (a.flags.c_contiguous and a.flags.writeable):
        return np.ascontiguousarray(a).copy()
    return a


def launch(kern, grid, block, *args):
    if not SIMULATOR:
        kern[grid, block, _stream()](*args)
        return
    # The simulator runs a block as one Python thread per CUDA thread and polls them at
    # syncthreads; at the default 5 ms GIL switch interval a 32-thread barrier costs ~0.1 s.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)
    try:
        kern[grid, block](*map(_simulator_arg, args))
    finally:
        sys.setswitchinterval(interval)


def blocks(n, threads):
    return max(1, math.ceil(n / threads))


def flat_launch(n, cap=128):
    """(blocks, threads) for a grid-stride loop over n elements: one warp-rounded block for
    small n (the simulator pays for every idle thread), at most 4096 blocks of ``cap``."""
    threads = min(cap, max(32, 32 * math.ceil(n / 32)))
    return min(4096, blocks(n, threads)), threads
