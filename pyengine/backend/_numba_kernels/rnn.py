"""Recurrent cells: one LSTM or GRU time step's pointwise part, forward and backward, one
thread per (b, j) element handling every gate (grid-stride), the formulas of kernels/rnn.cu;
and the LSTM backward's factors over every step at once.

Gate arrays are (G, B, H) and states (B, H), any strides (Numba indexes through them, so a
step's slice of a (G, T, B, H) buffer goes in without a copy). Outputs may be the inputs
beside them (acts = xg, dc_prev = dc, carry_out = carry): each thread reads all of its
element's inputs before writing. Absent operands (GRU's b_hh, the first step's carry) are a
dummy array and a 0 flag, as kernels take no None."""
import math

from numba import cuda, float32

from . import device_function, kernel

_G3 = "float32[:, :, :]"
_S2 = "float32[:, :]"
_G1 = "float32[:, :]"  # (G, n): each gate's elements flattened
_S1 = "float32[:]"


@device_function("float32(float32)")
def _sigmoid(x):
    return float32(1) / (float32(1) + math.exp(-x))


@kernel(f"void({_G3}, {_G3}, {_S2}, {_G3}, {_S2}, {_S2}, {_S2})")
def lstm_forward(xg, hg, c_prev, acts, c, tanh_c, h):
    H = c.shape[1]
    n = c.shape[0] * H
    e = cuda.grid(1)
    while e < n:
        b = e // H
        j = e - b * H
        ig = _sigmoid(xg[0, b, j] + hg[0, b, j])
        fg = _sigmoid(xg[1, b, j] + hg[1, b, j])
        gg = math.tanh(xg[2, b, j] + hg[2, b, j])
        og = _sigmoid(xg[3, b, j] + hg[3, b, j])
        ct = fg * c_prev[b, j] + ig * gg
        tc = math.tanh(ct)
        acts[0, b, j] = ig
        acts[1, b, j] = fg
        acts[2, b, j] = gg
        acts[3, b, j] = og
        c[b, j] = ct
        tanh_c[b, j] = tc
        h[b, j] = og * tc
        e += cuda.gridsize(1)


@kernel(f"void({_G1}, {_S1}, {_S1}, {_G1}, {_S1})")
def lstm_factors(acts, c_prev, tanh_c, fac, dc_dh):
    """Over n elements of any number of steps (the caller flattens each gate's block)."""
    n = c_prev.shape[0]
    e = cuda.grid(1)
    one = float32(1)
    while e < n:
        ig = acts[0, e]
        fg = acts[1, e]
        gg = acts[2, e]
        og = acts[3, e]
        tc = tanh_c[e]
        fac[0, e] = gg * ig * (one - ig)
        fac[1, e] = c_prev[e] * fg * (one - fg)
        fac[2, e] = ig * (one - gg * gg)
        fac[3, e] = tc * og * (one - og)
        dc_dh[e] = og * (one - tc * tc)
        e += cuda.gridsize(1)


@kernel(f"void({_S2}, {_G3}, {_S2}, {_S2}, {_G3}, {_S2}, {_G3}, {_S2})")
def lstm_backward(gh, parts, dc, f, fac, dc_dh, dg, dc_prev):
    H = gh.shape[1]
    n = gh.shape[0] * H
    e = cuda.grid(1)
    while e < n:
        b = e // H
        j = e - b * H
        dh = gh[b, j]
        for p in range(parts.shape[0]):
            dh += parts[p, b, j]
        dct = dc[b, j] + dh * dc_dh[b, j]
        fo = fac[3, b, j]
        dg[0, b, j] = fac[0, b, j] * dct
        dg[1, b, j] = fac[1, b, j] * dct
        dg[2, b, j] = fac[2, b, j] * dct
        dg[3, b, j] = fo * dh
        dc_prev[b, j] = dct * f[b, j]
        e += cuda.gridsize(1)


@kernel(f"void({_G3}, {_G3}, {_S2}, int32, {_S2}, {_G3}, {_S2}, {_S2})")
def gru_forward(xg, hg, b_hh, has_bias, h_prev, acts, hn, h):
    H = h.shape[1]
    n = h.shape[0] * H
    e = cuda.grid(1)
    while e < n:
        b = e // H
        j = e - b * H
        br = b_hh[0, j] if has_bias else float32(0)
        bz = b_hh[1, j] if has_bias else float32(0)
        bn = b_hh[2, j] if has_bias else float32(0)
        r = _sigmoid(xg[0, b, j] + hg[0, b, j] + br)
        z = _sigmoid(xg[1, b, j] + hg[1, b, j] + bz)
        hnv = hg[2, b, j] + bn
        nv = math.tanh(xg[2, b, j] + r * hnv)
        hp = h_prev[b, j]
        acts[0, b, j] = r
        acts[1, b, j] = z
        acts[2, b, j] = nv
        hn[b, j] = hnv
        h[b, j] = nv + z * (hp - nv)
        e += cuda.gridsize(1)


@kernel(f"void({_S2}, {_G3}, {_S2}, int32, {_G3}, {_S2}, {_S2}, {_G3}, {_G3}, {_S2})")
def gru_backward(gh, parts, carry, has_carry, acts, hn, h_prev, dxg, dhg, carry_out):
    H = gh.shape[1]
    n = gh.shape[0] * H
    e = cuda.grid(1)
    one = float32(1)
    while e < n:
        b = e // H
        j = e - b * H
        dh = gh[b, j]
        if has_carry:
            dh += carry[b, j]
        for p in range(parts.shape[0]):
            dh += parts[p, b, j]
        r = acts[0, b, j]
        z = acts[1, b, j]
        nv = acts[2, b, j]
        dn = dh * (one - z) * (one - nv * nv)
        dz = dh * (h_prev[b, j] - nv) * z * (one - z)
        dr = dn * hn[b, j] * r * (one - r)
        dxg[0, b, j] = dr
        dxg[1, b, j] = dz
        dxg[2, b, j] = dn
        dhg[0, b, j] = dr
        dhg[1, b, j] = dz
        dhg[2, b, j] = dn * r
        carry_out[b, j] = dh * z
        e += cuda.gridsize(1)
