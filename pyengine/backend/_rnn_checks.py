"""Shape checks of the recurrent-cell table functions (lstm_cell, gru_cell and their
backwards), shared by every backend. They run once per time step, so the common case is a
few tuple comparisons; only a mismatch builds the message."""
from __future__ import annotations


def _shape(a):
    return None if a is None else tuple(a.shape)


def check_cell(op, gates, gate_arrays, state_arrays, parts=None, carry=None, bias=None):
    """gate_arrays must all be (gates, *S), state_arrays and carry (if given) S, where S is
    (B, H) (or (T, B, H) for lstm_cell_factors), parts (P >= 1, *S) and bias (gates * H,) or
    None; else a ValueError naming every shape."""
    g0 = gate_arrays[0].shape
    state = g0[1:]
    ok = len(g0) >= 3 and g0[0] == gates
    for a in gate_arrays:
        ok = ok and a.shape == g0
    for a in state_arrays:
        ok = ok and a.shape == state
    if parts is not None:
        ok = ok and parts.ndim == len(g0) and parts.shape[0] >= 1 and parts.shape[1:] == state
    if carry is not None:
        ok = ok and carry.shape == state
    if bias is not None:
        ok = ok and bias.shape == (gates * g0[-1],)
    if not ok:
        shapes = ", ".join(str(_shape(a)) for a in gate_arrays + state_arrays)
        extra = "".join(f", {name} {_shape(a)}" for name, a in (("parts", parts), ("carry", carry),
                                                                ("bias", bias)) if a is not None)
        raise ValueError(f"{op}: expected gate arrays ({gates}, B, H), states (B, H), parts (P, B, H) "
                         f"and bias ({gates}*H,) (lstm_cell_factors: any leading dims before B); got "
                         f"{shapes}{extra}")


def gate_stride(a):
    """The gate stride in elements of a (G, *S) array whose gate blocks a[k] are each
    C-contiguous, else None (a kernel that writes through it needs that layout)."""
    expected = a.itemsize
    for n, st in zip(reversed(a.shape[1:]), reversed(a.strides[1:])):
        if n != 1 and st != expected:
            return None
        expected *= n
    s0 = a.strides[0] // a.itemsize
    return s0 if s0 >= 0 else None
