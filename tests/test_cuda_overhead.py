"""The per-step overhead shortcuts of the native backend on a real GPU give the results of the
long way: sdpa on q, k, v split from one fused buffer (one copy of the three, kept for the
backward) equals sdpa on separate contiguous copies, forward and backward.

Marked ``gpu``: skips with the reason elsewhere (pyengine/bench/launch_trace.py counts the
launches these save without a GPU; tests/test_launch_trace.py)."""
import numpy as np
import pytest

pytestmark = pytest.mark.gpu

cp = pytest.importorskip("cupy", reason="the native kernels need CuPy")

from pyengine.backend import _cuda_nn as nn  # noqa: E402


@pytest.mark.parametrize("b,t,h,d", [(2, 17, 3, 16), (4, 64, 4, 32), (1, 1, 1, 8)])
def test_sdpa_on_fused_qkv_views_matches_contiguous_inputs(rng, b, t, h, d):
    qkv = cp.asarray(rng.standard_normal((b, t, 3, h, d)).astype(np.float32))
    parts = qkv.transpose(2, 0, 3, 1, 4)
    q, k, v = parts[0], parts[1], parts[2]
    qc, kc, vc = (cp.ascontiguousarray(a) for a in (q, k, v))
    gout = cp.asarray(rng.standard_normal((b, h, t, d)).astype(np.float32))
    out, saved = nn.sdpa(q, k, v, None, True, None, 0.0)
    ref, ref_saved = nn.sdpa(qc, kc, vc, None, True, None, 0.0)
    cp.testing.assert_array_equal(out, ref)
    for g, r in zip(nn.sdpa_backward(gout, q, k, v, out, saved, None, True, None, 0.0),
                    nn.sdpa_backward(gout, qc, kc, vc, ref, ref_saved, None, True, None, 0.0)):
        cp.testing.assert_array_equal(g, r)
