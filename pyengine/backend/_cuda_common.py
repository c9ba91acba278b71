"""Helpers of the native kernels' Python wrappers, shared by cuda_backend and _cuda_nn: CuPy
(or None where it is not installed), the current stream, raw pointers, float32 operands.

It imports on any machine; nothing here runs until cuda_backend.available() says it can.
"""
from __future__ import annotations

try:
    import cupy as cp
except ImportError:  # cuda_backend.available() reports it; the modules themselves must import anywhere
    cp = None

# How the core families word a wrong operand ("native conv2d supports float32, got float64 for
# input"); _cuda_nn passes its own wording.
NOT_CUPY = "native {op}: {arg} must be a CuPy array on the GPU, got {kind}"
NOT_F32 = "native {op} supports float32, got {dtype} for {arg}"


def _stream():
    return cp.cuda.get_current_stream().ptr


def _ptr(a):
    return 0 if a is None else a.data.ptr


def _f32_view(a, op, arg, not_cupy=NOT_CUPY, not_f32=NOT_F32):
    """``a`` itself if it is a float32 CuPy array (any strides), else a TypeError naming op,
    argument and dtype."""
    if not isinstance(a, cp.ndarray):
        raise TypeError(not_cupy.format(op=op, arg=arg, kind=type(a).__name__))
    if a.dtype != cp.float32:
        raise TypeError(not_f32.format(op=op, arg=arg, dtype=a.dtype))
    return a


def _contiguous(a):
    """``a`` itself when C-contiguous (the common case: cupy.ascontiguousarray costs a few
    microseconds of host time per call even when it copies nothing), else a contiguous copy."""
    return a if a.flags.c_contiguous else cp.ascontiguousarray(a)


def _f32(a, op, arg, not_cupy=NOT_CUPY, not_f32=NOT_F32):
    """``a`` as a contiguous float32 CuPy array, or a TypeError naming op, argument and dtype."""
    return _contiguous(_f32_view(a, op, arg, not_cupy, not_f32))
