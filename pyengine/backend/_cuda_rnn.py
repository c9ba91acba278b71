"""Python wrappers of the native recurrent-cell kernels (kernels/rnn.cu), re-exported by
cuda_backend: lstm_cell, lstm_cell_factors, gru_cell and the backwards, with the table's
signatures (pyengine/backend/__init__.py).

Gate arrays are (G, B, H) (lstm_cell_factors: (4, T, B, H)) CuPy float32 whose per-gate blocks
are contiguous; the gate stride is passed to the kernel, so a step's slice of a (G, T, B, H)
buffer goes in without a copy. An
input in any other layout is copied; an output must already be in it (it is written in place)
and a ValueError says so otherwise, except lstm_cell_factors' fac, which the LSTM recurrence
passes as gate-major views of its step-major (T, 4, H, B) buffer: computed into a contiguous
array and copied in. One launch per call (two for such a fac), on CuPy's current stream.
"""
from __future__ import annotations

from . import _cuda_common
from ._cuda_common import _ptr, _stream, cp
from ._cuda_nn import _NOT_CUPY, _NOT_F32, _kernels
from ._cuda_nn import _f32 as _state_in  # a state input: contiguous float32, copied if need be
from ._rnn_checks import check_cell, gate_stride


def _gates_in(a, op, arg):
    """(array, gate stride) of a float32 gate input; copied when its blocks are strided."""
    _cuda_common._f32_view(a, op, arg, _NOT_CUPY, _NOT_F32)
    stride = gate_stride(a)
    if stride is None:
        a = cp.ascontiguousarray(a)
        stride = a[0].size
    return a, stride


def _gates_out(a, op, arg):
    """The gate stride of an output gate array, which must be float32 with contiguous blocks."""
    _cuda_common._f32_view(a, op, arg, _NOT_CUPY, _NOT_F32)
    stride = gate_stride(a)
    if stride is None:
        raise ValueError(f"{op}: {arg} {tuple(a.shape)} is written in place and needs each gate's block "
                         f"contiguous, got strides {a.strides}")
    return stride


def _state_out(a, op, arg):
    _cuda_common._f32_view(a, op, arg, _NOT_CUPY, _NOT_F32)
    if not a.flags.c_contiguous:
        raise ValueError(f"{op}: {arg} {tuple(a.shape)} is written in place and must be contiguous, "
                         f"got strides {a.strides}")
    return a


def lstm_cell(xg, hg, c_prev, acts, c, tanh_c, h):
    op = "lstm_cell"
    check_cell(op, 4, (xg, hg, acts), (c_prev, c, tanh_c, h))
    xg, xs = _gates_in(xg, op, "xg")
    hg, hs = _gates_in(hg, op, "hg")
    c_prev = _state_in(c_prev, op, "c_prev")
    as_ = _gates_out(acts, op, "acts")
    for a, name in ((c, "c"), (tanh_c, "tanh_c"), (h, "h")):
        _state_out(a, op, name)
    _kernels().lstm_cell_forward(xg.data.ptr, xs, hg.data.ptr, hs, c_prev.data.ptr, acts.data.ptr, as_,
                                 c.data.ptr, tanh_c.data.ptr, h.data.ptr, c.size, _stream())


def _parts(dh_parts, op):
    parts, stride = _gates_in(dh_parts, op, "dh_parts")
    return parts, parts.shape[0], stride


def lstm_cell_factors(acts, c_prev, tanh_c, fac, dc_dh):
    op = "lstm_cell_factors"
    check_cell(op, 4, (acts, fac), (c_prev, tanh_c, dc_dh))
    _cuda_common._f32_view(fac, op, "fac", _NOT_CUPY, _NOT_F32)
    if gate_stride(fac) is None:
        # Gate-major views of a step-major (T, 4, ...) buffer, as the LSTM recurrence passes
        # them: computed into a contiguous array, then copied into the view.
        out = cp.empty(fac.shape, dtype=cp.float32)
        lstm_cell_factors(acts, c_prev, tanh_c, out, dc_dh)
        fac[...] = out
        return
    acts, as_ = _gates_in(acts, op, "acts")
    c_prev, tanh_c = _state_in(c_prev, op, "c_prev"), _state_in(tanh_c, op, "tanh_c")
    fs = _gates_out(fac, op, "fac")
    _state_out(dc_dh, op, "dc_dh")
    _kernels().lstm_cell_factors(acts.data.ptr, as_, c_prev.data.ptr, tanh_c.data.ptr, fac.data.ptr, fs,
                                 dc_dh.data.ptr, dc_dh.size, _stream())


def lstm_cell_backward(gh, dh_parts, dc, f, fac, dc_dh, dgates, dc_prev):
    op = "lstm_cell_backward"
    check_cell(op, 4, (fac, dgates), (gh, dc, f, dc_dh, dc_prev), dh_parts)
    gh, dc, f = _state_in(gh, op, "gh"), _state_in(dc, op, "dc"), _state_in(f, op, "f")
    parts, n_parts, ps = _parts(dh_parts, op)
    fac, fs = _gates_in(fac, op, "fac")
    dc_dh = _state_in(dc_dh, op, "dc_dh")
    ds = _gates_out(dgates, op, "dgates")
    _state_out(dc_prev, op, "dc_prev")
    _kernels().lstm_cell_backward(gh.data.ptr, parts.data.ptr, n_parts, ps, dc.data.ptr, f.data.ptr, fac.data.ptr,
                                  fs, dc_dh.data.ptr, dgates.data.ptr, ds, dc_prev.data.ptr, dc_prev.size,
                                  _stream())


def gru_cell(xg, hg, b_hh, h_prev, acts, hn, h):
    op = "gru_cell"
    check_cell(op, 3, (xg, hg, acts), (h_prev, hn, h), bias=b_hh)
    xg, xs = _gates_in(xg, op, "xg")
    hg, hs = _gates_in(hg, op, "hg")
    b_hh = None if b_hh is None else _state_in(b_hh, op, "b_hh")
    h_prev = _state_in(h_prev, op, "h_prev")
    as_ = _gates_out(acts, op, "acts")
    _state_out(hn, op, "hn")
    _state_out(h, op, "h")
    _kernels().gru_cell_forward(xg.data.ptr, xs, hg.data.ptr, hs, _ptr(b_hh), h_prev.data.ptr, acts.data.ptr,
                                as_, hn.data.ptr, h.data.ptr, h.size, h.shape[1], _stream())


def gru_cell_backward(gh, dh_parts, dh_carry, acts, hn, h_prev, dxg, dhg, dh_carry_out):
    op = "gru_cell_backward"
    check_cell(op, 3, (acts, dxg, dhg), (gh, hn, h_prev, dh_carry_out), dh_parts, dh_carry)
    gh = _state_in(gh, op, "gh")
    parts, n_parts, ps = _parts(dh_parts, op)
    carry = None if dh_carry is None else _state_in(dh_carry, op, "dh_carry")
    acts, as_ = _gates_in(acts, op, "acts")
    hn, h_prev = _state_in(hn, op, "hn"), _state_in(h_prev, op, "h_prev")
    dxs, dhs = _gates_out(dxg, op, "dxg"), _gates_out(dhg, op, "dhg")
    _state_out(dh_carry_out, op, "dh_carry_out")
    _kernels().gru_cell_backward(gh.data.ptr, parts.data.ptr, n_parts, ps, _ptr(carry), acts.data.ptr, as_,
                                 hn.data.ptr, h_prev.data.ptr, dxg.data.ptr, dxs, dhg.data.ptr, dhs,
                                 dh_carry_out.data.ptr, dh_carry_out.size, _stream())
