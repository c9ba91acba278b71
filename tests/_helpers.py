"""Helpers shared by several test modules: NumPy references and the CUDA provider switch."""
import contextlib

import numpy as np
import pytest

import pyengine as pe


def check_close(got, ref, tol=2e-5, what="", floor=0.0):
    """Relative L2 error of ``got`` (a device or host array) against the float64 ``ref`` under
    ``tol`` over the reference's finite entries; NaN and inf only where the reference has
    them, so an output a kernel forgot to write (poisoned with NaN) fails. ``floor``: a lower
    bound for the reference's norm, for outputs that are exactly 0 in float64 or small
    differences of larger terms, which float32 cannot give to a relative tolerance."""
    got = np.asarray(got.get() if hasattr(got, "get") else got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    assert got.shape == ref.shape, f"{what}: shape {got.shape} != {ref.shape}"
    special = ~np.isfinite(ref)
    assert np.array_equal(got[special], ref[special], equal_nan=True), f"{what}: NaN/inf entries differ"
    g, r = got[~special], ref[~special]
    bad = np.count_nonzero(~np.isfinite(g))
    assert bad == 0, f"{what}: {bad} NaN/inf entries (unwritten outputs?)"
    err = np.linalg.norm(g - r) / max(np.linalg.norm(r), floor, 1e-30)
    assert err < tol, f"{what}: relative error {err:.2e} >= {tol:.0e}"


@contextlib.contextmanager
def cuda_kernels(provider):
    """Run the body with ``provider``'s kernels ("native" or "numba") on "cuda", or skip the
    test, saying why they cannot run here."""
    with pe.backends.cuda.kernels(provider):
        reason = pe.cuda.unavailable_reason()
        if reason is not None:
            pytest.skip(f"{provider} CUDA kernels unavailable: {reason}")
        yield provider


def pool_out(size, k, s, p, d, ceil_mode):
    """Output length of a pooling window along one axis, PyTorch's rule: in ceil_mode the
    last window must start inside the input or its left padding."""
    span = d * (k - 1) + 1
    num = size + 2 * p - span
    out = (-(-num // s) if ceil_mode else num // s) + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


def avg_pool_ref(x, k, s, p, ceil_mode, count_include_pad, divisor_override):
    """Average pooling in float64 loops, PyTorch's rule: the window clipped to the padded
    input counts when padding counts."""
    n, c, h, w = x.shape
    ho, wo = pool_out(h, k[0], s[0], p[0], 1, ceil_mode), pool_out(w, k[1], s[1], p[1], 1, ceil_mode)
    y = np.zeros((n, c, ho, wo))
    for i in range(ho):
        for j in range(wo):
            r0, q0 = i * s[0] - p[0], j * s[1] - p[1]
            r1, q1 = min(r0 + k[0], h + p[0]), min(q0 + k[1], w + p[1])
            padded_count = (r1 - r0) * (q1 - q0)
            r0, q0, r1, q1 = max(r0, 0), max(q0, 0), min(r1, h), min(q1, w)
            total = x[:, :, r0:r1, q0:q1].sum(axis=(2, 3))
            if divisor_override:
                div = divisor_override
            elif count_include_pad:
                div = padded_count
            else:
                div = (r1 - r0) * (q1 - q0)
            y[:, :, i, j] = total / div
    return y
