"""Every kernel version that bench/variants/*.py ranks (pyengine._C.*_variant) gives the
production kernel's results: flash-attention forward and backward, and SGEMM, at sizes that
are not multiples of any tile, with masks, causal and unequal head dims, against the NumPy
backend in float64 on the same float32 inputs. Outputs are poisoned with NaN first, so an
element a version forgets to write fails. Ranking-only versions exist only in an extension
built with PYENGINE_KERNEL_VARIANTS=ON; elsewhere their tests skip and each family's default
version is still tested here (and through the public functions in test_cuda_nn.py and
test_cuda_kernels.py). Marked ``gpu``: skipped where no GPU is.
"""
import math

import numpy as np
import pytest

pytestmark = pytest.mark.gpu

cp = pytest.importorskip("cupy", reason="the native kernels need CuPy")

from pyengine.backend import _cuda_nn as nn  # noqa: E402
from pyengine.backend import numpy_backend as nb  # noqa: E402

from _helpers import check_close as check  # noqa: E402  (floor: the reference norm's lower bound)


def _names(fn):
    """The versions the built extension has; one placeholder where it is not built (the
    tests then skip for want of a GPU)."""
    try:
        import pyengine._C as C
        return list(getattr(C, fn)())
    except Exception:
        return ["(extension not built)"]


FWD = list(enumerate(_names("attention_forward_variant_names")))
BWD = list(enumerate(_names("attention_backward_variant_names")))
GEMM = list(enumerate(_names("sgemm_variant_names")))


def _need_built(variant, default_attr):
    """Skip a ranking-only version the extension was built without."""
    C = _kernels()
    if variant != getattr(C, default_attr) and not C.kernel_variants_built():
        pytest.skip("ranking-only version: pyengine._C was built without PYENGINE_KERNEL_VARIANTS=ON")


def _ids(pairs):
    return [f"{i}-{n.split(' (')[0].replace(' ', '_')}" for i, n in pairs]


def f32(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)




def _kernels():
    import pyengine._C as C
    return C


# --------------------------------------------------------------------------------------
# attention
# --------------------------------------------------------------------------------------

def _attention_case(rng, l, s, e, ev, mask_kind, causal):
    b, h = 2, 3
    q, k, v = f32(rng, b, h, l, e), f32(rng, b, h, s, e), f32(rng, b, h, s, ev)
    mask = None
    if mask_kind == "bool":  # broadcast over the batch, per head and query
        mask = rng.random((h, l, s)) < 0.7
        mask[..., 0] = True  # no all-masked row (those are NaN, tested in test_cuda_nn.py)
    elif mask_kind == "additive":
        mask = f32(rng, b, 1, l, s)
    return q, k, v, mask


def _lse64(q, k, mask, causal, scale):
    sc = q.astype(np.float64) @ k.astype(np.float64).swapaxes(-1, -2) * scale
    if mask is not None:
        sc = np.where(mask, sc, -np.inf) if mask.dtype == bool else sc + mask
    if causal:
        sc = np.where(np.tri(*sc.shape[-2:], dtype=bool), sc, -np.inf)
    m = sc.max(-1, keepdims=True)
    return (m + np.log(np.exp(sc - m).sum(-1, keepdims=True)))[..., 0]


def _forward(variant, q, k, v, mask, causal):
    """out, lse of forward version `variant` on the device, into NaN-poisoned buffers."""
    dq, dk, dv = (cp.asarray(x) for x in (q, k, v))
    dmask = None if mask is None else cp.asarray(mask)
    lead = q.shape[:-2]
    args, keep = nn._attention_args(dq, dk, dv, dmask, causal, None, lead)
    out = cp.full(lead + (q.shape[-2], v.shape[-1]), cp.nan, dtype=cp.float32)
    lse = cp.full(lead + (q.shape[-2],), cp.nan, dtype=cp.float32)
    _kernels().attention_forward_variant(variant=variant, **args, q=dq.data.ptr, k=dk.data.ptr, v=dv.data.ptr,
                                         out=out.data.ptr, lse=lse.data.ptr, stream=0)
    cp.cuda.Device().synchronize()
    del keep
    return out, lse


CASES = [(t, t, d, d) for t in (1, 17, 65, 129) for d in (16, 64, 80, 128)] + [
    (129, 65, 24, 40), (17, 129, 100, 128), (130, 200, 32, 3)]


@pytest.mark.parametrize("variant,name", FWD, ids=_ids(FWD))
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_attention_forward_versions(rng, variant, name, causal):
    _need_built(variant, "attention_forward_variant_default")
    for l, s, e, ev in CASES:
        q, k, v, _ = _attention_case(rng, l, s, e, ev, None, causal)
        out, lse = _forward(variant, q, k, v, None, causal)
        up = [x.astype(np.float64) for x in (q, k, v)]
        ref, _ = nb.sdpa(*up, None, causal, None, 0.0)
        what = f"forward version {variant} ({name}) l={l} s={s} e={e} ev={ev} causal={causal}"
        check(out, ref, 5e-5, what + " out")
        check(lse, _lse64(q, k, None, causal, 1 / math.sqrt(e)), 1e-5, what + " lse")


@pytest.mark.parametrize("variant,name", FWD, ids=_ids(FWD))
@pytest.mark.parametrize("mask_kind", ["bool", "additive"])
def test_attention_forward_versions_masks(rng, variant, name, mask_kind):
    _need_built(variant, "attention_forward_variant_default")
    # (A mask and is_causal together are refused by sdpa, as by PyTorch: not combined here.)
    for l, s, e, causal in ((17, 65, 64, False), (129, 129, 32, False), (65, 17, 80, False)):
        q, k, v, mask = _attention_case(rng, l, s, e, e, mask_kind, causal)
        out, lse = _forward(variant, q, k, v, mask, causal)
        up = [x.astype(np.float64) for x in (q, k, v)]
        rmask = mask if mask.dtype == bool else mask.astype(np.float64)
        ref, _ = nb.sdpa(*up, rmask, causal, None, 0.0)
        what = f"forward version {variant} ({name}) {mask_kind} mask l={l} s={s} e={e} causal={causal}"
        check(out, ref, 5e-5, what + " out")
        check(lse, _lse64(q, k, rmask, causal, 1 / math.sqrt(e)), 1e-5, what + " lse")


@pytest.mark.parametrize("variant,name", FWD, ids=_ids(FWD))
def test_attention_forward_versions_all_masked_row_is_nan(rng, variant, name):
    _need_built(variant, "attention_forward_variant_default")
    q, k, v, mask = _attention_case(rng, 65, 33, 64, 64, "bool", False)
    mask[:, 5, :] = False
    out, lse = _forward(variant, q, k, v, mask, False)
    rout, _ = nb.sdpa(*(x.astype(np.float64) for x in (q, k, v)), mask, False, None, 0.0)
    check(out, rout, 5e-5, f"forward version {variant} with an all-masked row")
    assert np.all(cp.asnumpy(lse)[..., 5] == -np.inf)


@pytest.mark.parametrize("variant,name", BWD, ids=_ids(BWD))
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_attention_backward_versions(rng, variant, name, causal):
    C = _kernels()
    _need_built(variant, "attention_backward_variant_default")
    for l, s, e, ev, mask_kind in ((1, 1, 16, 16, None), (17, 65, 64, 64, None), (129, 129, 80, 80, None),
                                   (65, 129, 128, 128, "bool"), (33, 17, 24, 40, "additive")):
        q, k, v, mask = _attention_case(rng, l, s, e, ev, None if causal else mask_kind, causal)
        lead = q.shape[:-2]
        gout = f32(rng, *lead, l, ev)
        dq, dk, dv, dg = (cp.asarray(x) for x in (q, k, v, gout))
        dmask = None if mask is None else cp.asarray(mask)
        out, lse = _forward(C.attention_forward_variant_default, q, k, v, mask, causal)
        args, keep = nn._attention_args(dq, dk, dv, dmask, causal, None, lead)
        gq, gk, gv = (cp.full(x.shape, cp.nan, dtype=cp.float32) for x in (dq, dk, dv))
        delta = cp.full(lse.shape, cp.nan, dtype=cp.float32)
        C.attention_backward_variant(variant=variant, **args, q=dq.data.ptr, k=dk.data.ptr, v=dv.data.ptr,
                                     out=out.data.ptr, lse=lse.data.ptr, gout=dg.data.ptr, delta=delta.data.ptr,
                                     gq=gq.data.ptr, gk=gk.data.ptr, gv=gv.data.ptr, stream=0)
        cp.cuda.Device().synchronize()
        up = [x.astype(np.float64) for x in (q, k, v)]
        rmask = mask if mask is None or mask.dtype == bool else mask.astype(np.float64)
        rout, saved = nb.sdpa(*up, rmask, causal, None, 0.0)
        ref = nb.sdpa_backward(gout.astype(np.float64), *up, rout, saved, rmask, causal, None, 0.0)
        for nm, g, r in zip("qkv", (gq, gk, gv), ref):
            check(g, r, 2e-4, f"backward version {variant} ({name}) d{nm} l={l} s={s} e={e} ev={ev} "
                              f"mask={None if mask is None else mask_kind} causal={causal}",
                  floor=1e-3 * math.sqrt(r.size))


def test_ranking_only_version_without_them_raises():
    C = _kernels()
    if C.kernel_variants_built():
        pytest.skip("this extension has the ranking-only versions")
    other = next(i for i in range(len(C.attention_forward_variant_names()))
                 if i != C.attention_forward_variant_default)
    with pytest.raises(ValueError, match="PYENGINE_KERNEL_VARIANTS"):
        C.attention_forward_variant(variant=other, bh=1, l=1, s=1, e=1, ev=1, scale=1.0, causal=False, mask=0,
                                    mask_kind=0, heads=1, sb=0, sh=0, sl=0, ss=0, q=0, k=0, v=0, out=0, lse=0,
                                    stream=0)


def test_attention_variant_out_of_range_raises():
    C = _kernels()
    n = len(C.attention_forward_variant_names())
    with pytest.raises(ValueError, match="variant"):
        C.attention_forward_variant(variant=n, bh=1, l=1, s=1, e=1, ev=1, scale=1.0, causal=False, mask=0,
                                    mask_kind=0, heads=1, sb=0, sh=0, sl=0, ss=0, q=0, k=0, v=0, out=0, lse=0,
                                    stream=0)


# --------------------------------------------------------------------------------------
# SGEMM
# --------------------------------------------------------------------------------------

def _layout(a, transposed):
    """a on the device, as a transposed view of a contiguous array when asked."""
    if transposed:
        return cp.ascontiguousarray(cp.asarray(a).swapaxes(-1, -2)).swapaxes(-1, -2)
    return cp.asarray(np.ascontiguousarray(a))


def _strides(x):
    st = [s // x.itemsize for s in x.strides]
    return (0, *st) if x.ndim == 2 else tuple(st)


GEMM_SHAPES = [(1, 1, 1), (17, 33, 3), (129, 65, 127), (65, 129, 17), (127, 1, 129), (3, 129, 1),
               (128, 128, 128), (256, 384, 40), (257, 259, 261)]


@pytest.mark.parametrize("variant,name", GEMM, ids=_ids(GEMM))
@pytest.mark.parametrize("ta,tb", [(False, False), (False, True), (True, False)], ids=["NN", "NT", "TN"])
def test_sgemm_versions(rng, variant, name, ta, tb):
    C = _kernels()
    _need_built(variant, "sgemm_variant_default")
    for batch, (m, n, k) in [(1, s) for s in GEMM_SHAPES] + [(3, (65, 33, 129)), (2, (129, 257, 64))]:
        a, b = f32(rng, batch, m, k), f32(rng, batch, k, n)
        da, db = _layout(a, ta), _layout(b, tb)
        c = cp.full((batch, m, n), cp.nan, dtype=cp.float32)
        C.sgemm_variant(variant=variant, batch=batch, m=m, n=n, k=k, a=da.data.ptr, a_strides=_strides(da),
                        b=db.data.ptr, b_strides=_strides(db), c=c.data.ptr, stream=0)
        cp.cuda.Device().synchronize()
        check(c, a.astype(np.float64) @ b.astype(np.float64), 2e-5,
              f"sgemm version {variant} ({name}) batch={batch} m={m} n={n} k={k} ta={ta} tb={tb}")


@pytest.mark.parametrize("variant,name", GEMM, ids=_ids(GEMM))
def test_sgemm_versions_broadcast_and_misaligned(rng, variant, name):
    C = _kernels()
    _need_built(variant, "sgemm_variant_default")
    m, n, k = 65, 129, 33
    a = f32(rng, 3, m, k)
    b = f32(rng, k, n)
    da = cp.asarray(a)
    # B broadcast over the batch (batch stride 0), and A starting one float past an aligned
    # address (the 4-byte copy path).
    db = cp.asarray(b)
    c = cp.full((3, m, n), cp.nan, dtype=cp.float32)
    C.sgemm_variant(variant=variant, batch=3, m=m, n=n, k=k, a=da.data.ptr, a_strides=_strides(da),
                    b=db.data.ptr, b_strides=(0, n, 1), c=c.data.ptr, stream=0)
    cp.cuda.Device().synchronize()
    check(c, a.astype(np.float64) @ b.astype(np.float64), 2e-5, f"sgemm version {variant} broadcast B")
    buf = cp.asarray(np.concatenate([[0.0], a[0].ravel()]).astype(np.float32))
    shifted = buf[1:].reshape(m, k)
    c1 = cp.full((m, n), cp.nan, dtype=cp.float32)
    C.sgemm_variant(variant=variant, batch=1, m=m, n=n, k=k, a=shifted.data.ptr, a_strides=_strides(shifted),
                    b=db.data.ptr, b_strides=_strides(db), c=c1.data.ptr, stream=0)
    cp.cuda.Device().synchronize()
    check(c1, a[0].astype(np.float64) @ b.astype(np.float64), 2e-5, f"sgemm version {variant} misaligned A")
