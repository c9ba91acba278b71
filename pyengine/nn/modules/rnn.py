"""Recurrent layers: RNN (tanh/relu), LSTM, GRU and their single-step cells.

Names, shapes, gate order (LSTM: i, f, g, o; GRU: r, z, n) and parameter layout follow
PyTorch, so a PyTorch state dict loads unchanged.

Speed: the input projection of every time step is one matmul over the whole sequence. The
recurrence itself is one autograd Function per layer and direction whose forward runs the
time loop on backend arrays and whose backward is hand-written backpropagation through
time, so the autograd graph holds a handful of nodes instead of several per time step. A
step is one matmul (the GRU's: batched over the gates; the LSTM's: one product in a
transposed layout, see _LSTMRecurrence) and one call of the backend's fused cell
(``lstm_cell`` / ``gru_cell`` and their backwards: a single kernel launch on a GPU) writing
into buffers allocated once per call. The cells reuse the same Functions with T = 1.

Differences from PyTorch: no PackedSequence and no ``proj_size``.
"""
from __future__ import annotations

import math
import threading

import pyengine as pe

from .. import functional as F
from .. import init
from ..parameter import Parameter
from .module import Module
from ...autograd import Function


_scratch_buffers = threading.local()


def _scratch(xp, slot, shape, dtype):
    """A work array for a backward's temporaries. On the CPU it is kept (one per slot and
    dtype, per thread) and reused by the next call instead of allocated afresh: a fresh
    multi-megabyte NumPy array costs more in page faults than the arithmetic done in it.
    Other array modules pool device memory themselves and get a new array. Only for arrays
    that do not outlive the call (nothing returned may view them)."""
    if xp.__name__ != "numpy":
        return xp.empty(shape, dtype=dtype)
    cache = _scratch_buffers.__dict__.setdefault("arrays", {})
    n = math.prod(shape)
    key = (slot, dtype.str)
    buf = cache.get(key)
    if buf is None or buf.size < n:
        buf = cache[key] = xp.empty(n, dtype=dtype)
    return buf[:n].reshape(shape)


def _time_order(T, reverse):
    return range(T - 1, -1, -1) if reverse else range(T)


def _previous_states(xp, hs, h0, reverse):
    """The state each step started from, in time order: h0 then hs shifted by one."""
    if reverse:
        return xp.concatenate([hs[1:], h0[None]], axis=0)
    return xp.concatenate([h0[None], hs[:-1]], axis=0)


def _recurrent_weight_grads(b, xp, dpre, hprev, needs_w, needs_b):
    """Sum over steps of dpre[t].T @ hprev[t] as one matmul, and the bias gradient."""
    T, B, G = dpre.shape
    gw = b.matmul(dpre.reshape(T * B, G).T, hprev.reshape(T * B, -1)) if needs_w else None
    gb = dpre.sum(axis=(0, 1)) if needs_b else None
    return gw, gb


def _recurrent_operand(xp, w_t, T):
    """The recurrent weight as every step's matmul reads it, a transposed view (per gate for
    the GRU, w_hh.T for the RNN and the LSTM's backward). NumPy gets it contiguous once per
    sequence: OpenBLAS's AVX-512 kernels take a transposed operand slower (2-core EPYC, 1
    thread: a (32, 128) @ (4, 128, 128) step 44 us through the view, 24 us contiguous, and
    the copy costs 24 us once; the LSTM's (128, 512) @ (512, 32) 25 against 23 us), its AVX2
    kernels run both alike. A single step (the cells) keeps the view; device backends read
    the view as it is."""
    if T > 1 and xp.__name__ == "numpy":
        return xp.ascontiguousarray(w_t)
    return w_t


class _SimpleRecurrence(Function):
    """h_t = act(xproj_t + h_{t-1} @ w_hh.T + b_hh) for every step; act is tanh or relu."""

    @staticmethod
    def forward(ctx, xproj, h0, w_hh, b_hh, nonlinearity, reverse):
        b, xp = ctx.backend, ctx.backend.xp
        T = xproj.shape[0]
        hs = xp.empty(xproj.shape, dtype=xproj.dtype)
        w_t = _recurrent_operand(xp, w_hh.T, T)
        pre = xproj if b_hh is None else xproj + b_hh  # b_hh added once, not per step
        h = h0
        for t in _time_order(T, reverse):
            h = b.activation(nonlinearity, pre[t] + b.matmul(h, w_t))
            hs[t] = h
        ctx.save_for_backward(hs, h0, w_hh)
        ctx.nonlinearity, ctx.reverse, ctx.has_bias = nonlinearity, reverse, b_hh is not None
        return hs, h

    @staticmethod
    def backward(ctx, gout, gh_n):
        b, xp = ctx.backend, ctx.backend.xp
        hs, h0, w_hh = ctx.saved_tensors
        dpre = xp.empty(hs.shape, dtype=hs.dtype)
        dh = gh_n
        for t in _time_order(hs.shape[0], not ctx.reverse):
            dh = dh + gout[t]
            if ctx.nonlinearity == "tanh":
                d = dh * (1 - hs[t] * hs[t])
            else:
                d = dh * (hs[t] > 0)
            dpre[t] = d
            dh = b.matmul(d, w_hh)
        hprev = _previous_states(xp, hs, h0, ctx.reverse)
        needs = ctx.needs_input_grad
        gw, gb = _recurrent_weight_grads(b, xp, dpre, hprev, needs[2], needs[3] and ctx.has_bias)
        return dpre, dh, gw, gb, None, None


def _by_gate(w, H):
    """A (G*H, ...) weight or bias as (G, H, ...): gate k's rows, a view."""
    return w.reshape((-1, H) + tuple(w.shape[1:]))


def _projection_inputs(xp, x, with_ones):
    """x (T, B, in) as the (T*B, in) matrix an input projection reads, or (T*B, in + 1) with a
    last column of ones, through which a bias rides in the projection's matmul."""
    T, B, n_in = x.shape
    if not with_ones:
        return x.reshape(T * B, n_in)
    xs = xp.empty((T * B, n_in + 1), dtype=x.dtype)
    xs.reshape(T, B, n_in + 1)[:, :, :n_in] = x
    xs[:, n_in] = 1
    return xs


def _gate_major_projection(b, xp, x, H, w_ih, bias):
    """The input part of every step's gate pre-activations, gate-major: (G, T, B, H), and
    the (T*B, in [+ 1]) matrix the projection read (None without w_ih), kept for backward.

    With w_ih given, x (T, B, in) is projected by one matmul batched over the gates (w_ih
    viewed as (G, in, H)). A bias rides in that matmul as one more input column of ones
    whose weights are the bias: no separate pass over the (G, T, B, H) result, and its
    gradient comes out of the weight-gradient matmul as that column's. Without w_ih, x is
    the projection (T, B, G*H), copied gate-major with ``bias`` added."""
    T, B = x.shape[:2]
    if w_ih is None:
        x4 = x.reshape(T, B, -1, H).transpose(2, 0, 1, 3)
        if bias is None:
            return xp.ascontiguousarray(x4), None
        xg = xp.empty(x4.shape, dtype=x.dtype)
        xp.add(x4, _by_gate(bias, H)[:, None, None, :], out=xg)
        return xg, None
    n_in = x.shape[2]
    w = _by_gate(w_ih, H).transpose(0, 2, 1)  # (G, in, H), a view
    xs = _projection_inputs(xp, x, bias is not None)
    if bias is not None:
        w_b = xp.empty((w.shape[0], n_in + 1, H), dtype=x.dtype)
        w_b[:, :n_in] = w
        w_b[:, n_in] = _by_gate(bias, H)
        w = w_b
    return b.matmul(xs, w).reshape(-1, T, B, H), xs


def _zeros_if_none(xp, a, shape, dtype):
    return xp.zeros(shape, dtype=dtype) if a is None else a


def _step_bounds(T, reverse):
    """(first step, slice of the other steps, slice of the steps they start from)."""
    if reverse:
        return T - 1, slice(0, T - 1), slice(1, T)
    return 0, slice(1, T), slice(0, T - 1)


def _gate_weight_grad(b, xp, dg, hs, h0, reverse):
    """Sum over steps of dg[:, t].T @ h_{t-1}, as (G*H, H): one matmul batched over the
    gates for the steps that start from an output state, one for the step from h0 (none
    when h0 is None, the zero state)."""
    G, T, _, H = dg.shape
    first, rest, prev = _step_bounds(T, reverse)
    gw = None if h0 is None else b.matmul(dg[:, first].transpose(0, 2, 1), h0)
    if T > 1:
        d_rest = dg[:, rest].reshape(G, -1, H).transpose(0, 2, 1)
        gw_rest = b.matmul(d_rest, hs[prev].reshape(-1, H))
        gw = gw_rest if gw is None else gw_rest + gw
    if gw is None:
        gw = xp.zeros((G, H, H), dtype=dg.dtype)
    return gw.reshape(G * H, H)


def _input_grads(b, dg, xs, w_ih, need_x, need_w):
    """Gradients of the layer input, of w_ih and (when the projection carried it) of its
    bias from the gate-major pre-activation gradients dg (G, T, B, H); xs is what
    _gate_major_projection returned. Without w_ih, x was the (T, B, G*H) projection."""
    G, T, B, H = dg.shape
    if w_ih is None:
        return dg.transpose(1, 2, 0, 3).reshape(T, B, G * H), None, None
    n_in = w_ih.shape[1]
    flat = dg.reshape(G, T * B, H)
    gx = b.matmul(flat, _by_gate(w_ih, H)).sum(axis=0).reshape(T, B, n_in) if need_x else None
    gw = gb = None
    if need_w:
        g = b.matmul(flat.transpose(0, 2, 1), xs)  # (G, H, in [+ 1])
        gw = g[:, :, :n_in].reshape(G * H, n_in)
        if xs.shape[1] > n_in:
            gb = g[:, :, n_in].reshape(G * H)
    return gx, gw, gb


def _transposed(xp, a):
    """A (B, H) state as the recurrence keeps it, (H, B) contiguous, and back."""
    return xp.ascontiguousarray(a.T)


def _step_major_projection(b, xp, x, G, H, w_ih, bias):
    """The input part of every step's gate pre-activations, step-major and transposed:
    (T, G, H, B), so step t's block is one contiguous (G*H, B) matrix. Also returns the
    (T*B, in [+ 1]) matrix the projection read (None without w_ih), kept for backward.

    With w_ih given, every step's block is w_ih @ x_t.T: one matmul batched over the steps
    (x read through a transposed view). A bias rides in it as one more input column of ones
    whose weights are the bias, so its gradient comes out of the weight-gradient matmul.
    Without w_ih, x is the (T, B, G*H) projection, copied into the layout with ``bias``."""
    T, B = x.shape[:2]
    if w_ih is None:
        xt = x.reshape(T, B, G, H).transpose(0, 2, 3, 1)
        out = xp.empty((T, G, H, B), dtype=x.dtype)
        if bias is None:
            out[...] = xt
        else:
            xp.add(xt, bias.reshape(G, H, 1), out=out)
        return out, None
    n_in = x.shape[2]
    w = w_ih
    xs = _projection_inputs(xp, x, bias is not None)
    if bias is not None:
        w = xp.empty((G * H, n_in + 1), dtype=x.dtype)
        w[:, :n_in] = w_ih
        w[:, n_in] = bias
    acts = b.matmul(w, xs.reshape(T, B, -1).transpose(0, 2, 1))  # (T, G*H, B)
    return acts.reshape(T, G, H, B), xs


class _LSTMRecurrence(Function):
    """The LSTM time loop: gates = xproj_t + h @ w_hh.T + b_hh, split as (i, f, g, o), where
    xproj = x @ w_ih.T + b_ih (computed here when w_ih is given, else x is xproj).

    The loop runs transposed: states are (H, B) and step t's gates a contiguous (4H, B)
    block of a step-major (T, 4, H, B) buffer, so each step is one plain matmul w_hh @ h
    (dh = w_hh.T @ dgates going back) and one call of the backend's ``lstm_cell``
    (``lstm_cell_backward``), which writes into slices of buffers allocated once per call.
    One matmul rather than one per gate: OpenBLAS splits a (512, 128) @ (128, 32) product
    over two threads and its small per-gate products not at all (2-core EPYC, 2 threads:
    12 us against 23 us a step), and the backward's single product already sums the gates.
    The input projection is one matmul batched over the steps straight into the layout;
    the step's activations overwrite it in place. Going back, the per-element factors of
    the gate gradients come from one ``lstm_cell_factors`` call over all steps (they depend
    on the forward pass only; it reads and writes gate-major views), so a step's cell only
    scales them; the weight gradients are matmuls over all steps at once, after one copy of
    the gate gradients into (4H, T, B)."""

    @staticmethod
    def forward(ctx, x, h0, c0, w_hh, b_hh, reverse, w_ih=None, b_ih=None):
        b, xp = ctx.backend, ctx.backend.xp
        T, B = x.shape[:2]
        H = w_hh.shape[0] // 4
        if w_ih is None:
            bias = b_hh  # b_hh added once, not per step
        else:
            bias = b_ih if b_hh is None else b_hh if b_ih is None else b_ih + b_hh
        acts, xs = _step_major_projection(b, xp, x, 4, H, w_ih, bias)  # becomes the activations
        hs_t, cs, tanh_cs = (xp.empty((T, H, B), dtype=x.dtype) for _ in range(3))
        h = None if h0 is None else _transposed(xp, h0)  # None: the first matmul is skipped
        c = xp.zeros((H, B), dtype=x.dtype) if c0 is None else _transposed(xp, c0)
        for t in _time_order(T, reverse):
            a = acts[t]
            hg = xp.zeros((4, H, B), dtype=x.dtype) if h is None else b.matmul(w_hh, h).reshape(4, H, B)
            b.lstm_cell(a, hg, c, a, cs[t], tanh_cs[t], hs_t[t])
            h, c = hs_t[t], cs[t]
        hs = xp.ascontiguousarray(hs_t.transpose(0, 2, 1))  # (T, B, H): the output
        ctx.save_for_backward(acts, hs, cs, tanh_cs, h0, c0, w_hh, xs, w_ih)
        ctx.reverse, ctx.has_bias = reverse, b_hh is not None
        last = 0 if reverse else T - 1
        return hs, hs[last].copy(), c.T.copy()  # a copy even when B == 1 (c.T is contiguous then)

    @staticmethod
    def backward(ctx, gout, gh_n, gc_n):
        b, xp = ctx.backend, ctx.backend.xp
        acts, hs, cs, tanh_cs, h0, c0, w_hh, xs, w_ih = ctx.saved_tensors
        T, _, H, B = acts.shape
        first, rest, prev = _step_bounds(T, ctx.reverse)
        # The factors that turn (dc_t, dc_t, dc_t, dh_t) into the gate gradients depend on
        # the forward pass only, so one lstm_cell_factors call computes them for all steps
        # (two: the first step starts from c0), in dpre, which each step then scales in
        # place. dpre does not leave this call.
        dpre = _scratch(xp, "dpre", acts.shape, acts.dtype)  # (T, 4, H, B)
        dc_dh = _scratch(xp, "dc_dh", cs.shape, acts.dtype)  # (T, H, B)
        gate_major = lambda a: a.transpose(1, 0, 2, 3)  # noqa: E731  (4, steps, H, B) views
        if T > 1:
            b.lstm_cell_factors(gate_major(acts[rest]), cs[prev], tanh_cs[rest], gate_major(dpre[rest]),
                                dc_dh[rest])
        c_first = xp.zeros((H, B), dtype=acts.dtype) if c0 is None else _transposed(xp, c0)
        b.lstm_cell_factors(acts[first], c_first, tanh_cs[first], dpre[first], dc_dh[first])
        w_t = _recurrent_operand(xp, w_hh.T, T)  # (H, 4H): dh_{t-1} = w_hh.T @ dgates_t
        # gout as (T, H, B), once, not per step; in two copies, because batch_first hands in a
        # (T, B, H) view of (B, T, H) memory and transposing straight from it gathers across
        # pages (0.35 against 0.1 ms, 2-core EPYC); the first copy is free when contiguous.
        gout = xp.ascontiguousarray(xp.ascontiguousarray(gout).transpose(0, 2, 1))
        dc_bufs = (xp.empty((H, B), dtype=acts.dtype), xp.empty((H, B), dtype=acts.dtype))
        parts, dc = _transposed(xp, gh_n)[None], _transposed(xp, gc_n)
        needs = ctx.needs_input_grad
        for n, t in enumerate(_time_order(T, not ctx.reverse)):
            d = dpre[t]
            dc_prev = dc_bufs[n % 2]
            b.lstm_cell_backward(gout[t], parts, dc, acts[t, 1], d, dc_dh[t], d, dc_prev)
            dc = dc_prev
            if t != first or needs[1]:  # the last product only feeds h0's gradient
                parts = b.matmul(w_t, d.reshape(4 * H, B))[None]
        dh = _transposed(xp, parts[0]) if needs[1] else None
        dg = _scratch(xp, "dg", (4 * H, T, B), acts.dtype)  # gate gradients, steps next to batch
        dg[...] = dpre.reshape(T, 4 * H, B).transpose(1, 0, 2)
        gw = gx = gw_ih = gb = None
        if needs[3]:
            gw = _lstm_recurrent_weight_grad(b, xp, dg, hs, h0, ctx.reverse)
        flat = dg.reshape(4 * H, T * B)
        if w_ih is None:
            gx = flat.T.reshape(T, B, 4 * H).copy() if needs[0] else None
        else:
            n_in = w_ih.shape[1]
            if needs[0]:
                gx = b.matmul(flat.T, w_ih).reshape(T, B, n_in)
            if needs[6]:
                g = b.matmul(flat, xs)  # (4H, in [+ 1])
                gw_ih = g[:, :n_in]
                if xs.shape[1] > n_in:
                    gb = g[:, n_in]
        if gb is None and ((needs[4] and ctx.has_bias) or (w_ih is not None and needs[7])):
            gb = flat.sum(axis=1)  # b_ih's gradient is b_hh's
        dc = _transposed(xp, dc) if needs[2] else None
        if w_ih is None:
            return gx, dh, dc, gw, gb if ctx.has_bias else None, None, None, None
        return (gx, dh, dc, gw, gb if ctx.has_bias else None, None, gw_ih,
                gb if needs[7] else None)


def _lstm_recurrent_weight_grad(b, xp, dg, hs, h0, reverse):
    """Sum over steps of dgates_t (4H, B) @ h_{t-1} (B, H): one matmul for the steps that
    start from an output state (dg (4H, T, B) read as a strided (4H, (T-1)*B) matrix), one
    for the step from h0 (none when h0 is None, the zero state)."""
    G4, T, B = dg.shape
    H = hs.shape[2]
    first, rest, prev = _step_bounds(T, reverse)
    gw = None if h0 is None else b.matmul(dg[:, first], h0)
    if T > 1:
        gw_rest = b.matmul(dg[:, rest].reshape(G4, -1), hs[prev].reshape(-1, H))
        gw = gw_rest if gw is None else gw_rest + gw
    return xp.zeros((G4, H), dtype=dg.dtype) if gw is None else gw


class _GRURecurrence(Function):
    """The GRU time loop. The input part xproj = x @ w_ih.T + b_ih (computed here when w_ih
    is given, else x is xproj) and the recurrent part hp = h @ w_hh.T + b_hh are kept apart,
    because hp's n block is gated by r: n = tanh(xproj_n + r * hp_n).

    Laid out as the LSTM's recurrence: gate-major (3, T, B, H) buffers, one matmul batched
    over the gates and one ``gru_cell`` call per step (``gru_cell_backward`` going back, which
    sums the per-gate products of the previous backward matmul itself)."""

    @staticmethod
    def forward(ctx, x, h0, w_hh, b_hh, reverse, w_ih=None, b_ih=None):
        b, xp = ctx.backend, ctx.backend.xp
        T, B = x.shape[:2]
        H = w_hh.shape[0] // 3
        acts, xs = _gate_major_projection(b, xp, x, H, w_ih, b_ih)  # acts: becomes r, z, n
        w_t = _recurrent_operand(xp, _by_gate(w_hh, H).transpose(0, 2, 1), T)
        hs, hns = xp.empty((T, B, H), dtype=x.dtype), xp.empty((T, B, H), dtype=x.dtype)
        h = h0  # None: the zero state, whose matmul is skipped
        for t in _time_order(T, reverse):
            a = acts[:, t]
            hg = xp.zeros((3, B, H), dtype=x.dtype) if h is None else b.matmul(h, w_t)
            b.gru_cell(a, hg, b_hh, _zeros_if_none(xp, h, (B, H), x.dtype), a, hns[t], hs[t])
            h = hs[t]
        ctx.save_for_backward(acts, hns, hs, h0, w_hh, xs, w_ih)
        ctx.reverse, ctx.has_bias = reverse, b_hh is not None
        return hs, h.copy()

    @staticmethod
    def backward(ctx, gout, gh_n):
        b, xp = ctx.backend, ctx.backend.xp
        acts, hns, hs, h0, w_hh, xs, w_ih = ctx.saved_tensors
        _, T, B, H = acts.shape
        dxg = xp.empty(acts.shape, dtype=acts.dtype)  # gradient of the input part
        dhg = xp.empty(acts.shape, dtype=acts.dtype)  # of the recurrent part (n: times r)
        w3 = _by_gate(w_hh, H)
        first = _step_bounds(T, ctx.reverse)[0]
        step = 1 if ctx.reverse else -1
        gout = xp.ascontiguousarray(gout)  # once, not a copy per step (batch_first gives a view)
        carry = xp.empty((B, H), dtype=acts.dtype)  # dh_t * z_t, reaching h_{t-1} directly
        parts, dh_carry = gh_n[None], None
        for t in _time_order(T, not ctx.reverse):
            h_prev = _zeros_if_none(xp, h0, (B, H), acts.dtype) if t == first else hs[t + step]
            b.gru_cell_backward(gout[t], parts, dh_carry, acts[:, t], hns[t], h_prev, dxg[:, t],
                                dhg[:, t], carry)
            parts, dh_carry = b.matmul(dhg[:, t], w3), carry
        dh = parts.sum(axis=0) + carry
        needs = ctx.needs_input_grad
        gw = _gate_weight_grad(b, xp, dhg, hs, h0, ctx.reverse) if needs[2] else None
        gb = dhg.sum(axis=(1, 2)).reshape(3 * H) if needs[3] and ctx.has_bias else None
        gx, gw_ih, gb_ih = _input_grads(b, dxg, xs, w_ih, needs[0], w_ih is not None and needs[5])
        if gb_ih is None and w_ih is not None and needs[6]:
            gb_ih = dxg.sum(axis=(1, 2)).reshape(3 * H)
        return gx, dh, gw, gb, None, gw_ih, gb_ih if needs[6] else None


_GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}


def _run_recurrence(mode, xproj, hx, w_hh, b_hh, reverse, w_ih=None, b_ih=None):
    """Run one layer-direction; returns (output (T, B, H), h_n, c_n or None). With w_ih
    given, xproj is the layer's input x and the input projection is part of the run. hx
    None is the zero state (LSTM and GRU then skip the first step's recurrent matmul)."""
    if mode == "LSTM":
        h0, c0 = (None, None) if hx is None else hx
        return _LSTMRecurrence.apply(xproj, h0, c0, w_hh, b_hh, reverse, w_ih, b_ih)
    if mode == "GRU":
        out, h = _GRURecurrence.apply(xproj, hx, w_hh, b_hh, reverse, w_ih, b_ih)
        return out, h, None
    if w_ih is not None:
        xproj = F.linear(xproj, w_ih, b_ih)
    if hx is None:
        hx = pe.zeros(xproj.shape[1], w_hh.shape[1], dtype=xproj.dtype, device=xproj.device)
    act = "tanh" if mode == "RNN_TANH" else "relu"
    out, h = _SimpleRecurrence.apply(xproj, hx, w_hh, b_hh, act, reverse)
    return out, h, None


def _check_state(name, state, expected):
    if tuple(state.shape) != tuple(expected):
        raise RuntimeError(
            f"Expected {name} size {tuple(expected)}, got {tuple(state.shape)}"
        )


class RNNBase(Module):
    """The shared body of RNN, LSTM and GRU (PyTorch's ``nn.RNNBase``)."""

    def __init__(self, mode, input_size, hidden_size, num_layers=1, bias=True,
                 batch_first=False, dropout=0.0, bidirectional=False):
        super().__init__()
        if not isinstance(hidden_size, int) or hidden_size <= 0:
            raise ValueError(f"hidden_size must be a positive int, got {hidden_size!r}")
        if not isinstance(num_layers, int) or num_layers <= 0:
            raise ValueError(f"num_layers must be a positive int, got {num_layers!r}")
        if not 0 <= dropout <= 1 or isinstance(dropout, bool):
            raise ValueError(f"dropout must be a number in [0, 1], got {dropout!r}")
        self.mode = mode
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = float(dropout)
        self.bidirectional = bidirectional
        gates = _GATES[mode] * hidden_size
        self._flat_weights_names = []
        for layer in range(num_layers):
            layer_in = input_size if layer == 0 else hidden_size * self._directions
            for suffix in self._suffixes:
                shapes = {"weight_ih": (gates, layer_in), "weight_hh": (gates, hidden_size)}
                if bias:
                    shapes.update(bias_ih=(gates,), bias_hh=(gates,))
                for kind, shape in shapes.items():
                    name = f"{kind}_l{layer}{suffix}"
                    setattr(self, name, Parameter(pe.empty(*shape)))
                    self._flat_weights_names.append(name)
        self.reset_parameters()

    @property
    def _directions(self):
        return 2 if self.bidirectional else 1

    @property
    def _suffixes(self):
        return ("", "_reverse") if self.bidirectional else ("",)

    @property
    def all_weights(self):
        return [getattr(self, n) for n in self._flat_weights_names]

    def flatten_parameters(self):
        """Kept for PyTorch code that calls it; the weights are always used in place here."""

    def reset_parameters(self):
        bound = 1.0 / math.sqrt(self.hidden_size)
        for weight in self.all_weights:
            init.uniform_(weight, -bound, bound)

    def _layer_params(self, layer, suffix):
        get = lambda kind: getattr(self, f"{kind}_l{layer}{suffix}", None)  # noqa: E731
        return get("weight_ih"), get("weight_hh"), get("bias_ih"), get("bias_hh")

    def _check_input(self, input):
        if input.ndim not in (2, 3):
            raise ValueError(
                f"{type(self).__name__}: expected input of 2 (unbatched) or 3 dimensions, "
                f"got shape {tuple(input.shape)}"
            )
        if input.shape[-1] != self.input_size:
            raise RuntimeError(
                f"{type(self).__name__}: input.size(-1) must be equal to input_size. "
                f"Expected {self.input_size}, got {input.shape[-1]} (input shape "
                f"{tuple(input.shape)})"
            )
        weight = self.weight_ih_l0
        if input.dtype != weight.dtype:
            raise RuntimeError(f"{type(self).__name__}: input must have the type {weight.dtype} of the "
                               f"weights, got type {input.dtype} (input shape {tuple(input.shape)})")

    def _initial_state(self, hx, batch, input, batched):
        """hx as PyTorch takes it, checked and returned in the batched (L*D, B, H) form; None
        (the zero state) stays None."""
        shape = (self.num_layers * self._directions, batch, self.hidden_size)
        given = shape if batched else (shape[0], shape[2])
        names = ("h_0", "c_0") if self.mode == "LSTM" else ("hx",)
        if hx is None:
            return None
        states = hx if self.mode == "LSTM" else (hx,)
        if self.mode == "LSTM" and (not isinstance(hx, (tuple, list)) or len(hx) != 2):
            raise TypeError("LSTM: hx must be a tuple (h_0, c_0)")
        for name, s in zip(names, states):
            _check_state(name, s, given)
        if not batched:
            states = tuple(s.unsqueeze(1) for s in states)
        return tuple(states) if self.mode == "LSTM" else states[0]

    def forward(self, input, hx=None):
        self._check_input(input)
        batched = input.ndim == 3
        x = input if batched else input.unsqueeze(1)
        if self.batch_first and batched:
            x = x.transpose(0, 1)
        state = self._initial_state(hx, x.shape[1], input, batched)
        is_lstm = self.mode == "LSTM"
        h_n, c_n = [], []
        for layer in range(self.num_layers):
            outs = []
            for direction, suffix in enumerate(self._suffixes):
                k = layer * self._directions + direction
                w_ih, w_hh, b_ih, b_hh = self._layer_params(layer, suffix)
                hk = None if state is None else (state[0][k], state[1][k]) if is_lstm else state[k]
                out, h, c = _run_recurrence(self.mode, x, hk, w_hh, b_hh, direction == 1,
                                            w_ih, b_ih)
                outs.append(out)
                h_n.append(h)
                c_n.append(c)
            x = outs[0] if len(outs) == 1 else pe.cat(outs, dim=2)
            if self.dropout > 0 and self.training and layer < self.num_layers - 1:
                x = F.dropout(x, p=self.dropout, training=True)
        output = x
        if self.batch_first and batched:
            output = output.transpose(0, 1)
        h_n = pe.stack(h_n, dim=0)
        c_n = pe.stack(c_n, dim=0) if is_lstm else None
        if not batched:
            output = output.squeeze(1)
            h_n = h_n.squeeze(1)
            c_n = c_n.squeeze(1) if is_lstm else None
        return (output, (h_n, c_n)) if is_lstm else (output, h_n)

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        return s


class RNN(RNNBase):
    """Elman RNN: h_t = tanh(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh) (or relu)."""

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True,
                 batch_first=False, dropout=0.0, bidirectional=False):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNN: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        super().__init__("RNN_" + nonlinearity.upper(), input_size, hidden_size, num_layers,
                         bias, batch_first, dropout, bidirectional)
        self.nonlinearity = nonlinearity


class LSTM(RNNBase):
    """Long short-term memory; returns ``(output, (h_n, c_n))`` as PyTorch."""

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False):
        super().__init__("LSTM", input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional)


class GRU(RNNBase):
    """Gated recurrent unit; returns ``(output, h_n)`` as PyTorch."""

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False):
        super().__init__("GRU", input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional)


class RNNCellBase(Module):
    """One time step; parameters ``weight_ih, weight_hh, bias_ih, bias_hh`` as PyTorch."""

    def __init__(self, mode, input_size, hidden_size, bias=True):
        super().__init__()
        self.mode = mode
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        gates = _GATES[self.mode] * hidden_size
        self.weight_ih = Parameter(pe.empty(gates, input_size))
        self.weight_hh = Parameter(pe.empty(gates, hidden_size))
        if bias:
            self.bias_ih = Parameter(pe.empty(gates))
            self.bias_hh = Parameter(pe.empty(gates))
        else:
            self.bias_ih = self.bias_hh = None
        self.reset_parameters()

    def reset_parameters(self):
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            init.uniform_(p, -bound, bound)

    def _step(self, input, hx):
        name = type(self).__name__
        if input.ndim not in (1, 2) or input.shape[-1] != self.input_size:
            raise RuntimeError(
                f"{name}: expected input of shape (batch, {self.input_size}) or "
                f"({self.input_size},), got {tuple(input.shape)}"
            )
        batched = input.ndim == 2
        x = input if batched else input.unsqueeze(0)
        shape = (x.shape[0], self.hidden_size)
        if hx is None:
            zeros = pe.zeros(*shape, dtype=input.dtype, device=input.device)
            hx = (zeros, zeros) if self.mode == "LSTM" else zeros
        states = hx if self.mode == "LSTM" else (hx,)
        for s in states:
            if tuple(s.shape) != (shape if batched else shape[1:]):
                raise RuntimeError(
                    f"{name}: expected hidden state of shape {shape if batched else shape[1:]}"
                    f" for input of shape {tuple(input.shape)}, got {tuple(s.shape)}"
                )
        if not batched:
            states = tuple(s.unsqueeze(0) for s in states)
        hk = states if self.mode == "LSTM" else states[0]
        _, h, c = _run_recurrence(self.mode, x.unsqueeze(0), hk, self.weight_hh, self.bias_hh,
                                  False, self.weight_ih, self.bias_ih)
        if not batched:
            h = h.squeeze(0)
            c = c.squeeze(0) if c is not None else None
        return (h, c) if self.mode == "LSTM" else h

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        return s if self.bias else s + ", bias=False"


class RNNCell(RNNCellBase):
    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh"):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(
                f"RNNCell: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}"
            )
        super().__init__("RNN_" + nonlinearity.upper(), input_size, hidden_size, bias)
        self.nonlinearity = nonlinearity

    def forward(self, input, hx=None):
        return self._step(input, hx)


class LSTMCell(RNNCellBase):
    def __init__(self, input_size, hidden_size, bias=True):
        super().__init__("LSTM", input_size, hidden_size, bias)

    def forward(self, input, hx=None):
        """Returns ``(h_1, c_1)``; hx is ``(h_0, c_0)`` or None for zeros."""
        return self._step(input, hx)


class GRUCell(RNNCellBase):
    def __init__(self, input_size, hidden_size, bias=True):
        super().__init__("GRU", input_size, hidden_size, bias)

    def forward(self, input, hx=None):
        return self._step(input, hx)
