"""The TF32 tensor-core GEMM (kernels/matmul_tf32.cu), every version by name through
_C.matmul_tf32_variant, against NumPy float64.

TF32 keeps 10 mantissa bits of each input, so each product a_ik b_kj is off by less than
2^-9 of itself even when the inputs are truncated (2^-10 when rounded), and an element of C
by less than 2^-9 sum_k |a_ik| |b_kj| <= 2^-9 |A row i| |B column j|: errors are measured
against that bound (TOL = 2.5e-3 of it: 2^-9 plus float32 accumulation), not against |C|. Operands are built in host buffers full of random
values, with the matrix placed at a base offset, with padded leading dimensions and gaps
between batch items, so a kernel that reads the wrong element reads a random number, and C
is poisoned with NaN before every launch.

The CPU test runs tests/tf32_mma_emulator.cpp: the v3 kernel's index maps (shared-memory
swizzles, cp.async chunks, ldmatrix/LDS fragments, mma fragment layout, epilogue) emulated
on the host in float64. The rest needs a GPU (marked ``gpu``).
"""
import math
import os
import shutil
import subprocess

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
TOL = 2.5e-3
ODD_MNK = [(1, 1, 1), (3, 17, 33), (17, 33, 65), (33, 65, 127), (65, 127, 129), (127, 129, 3), (129, 1, 17),
           (128, 128, 128), (256, 64, 512), (64, 256, 96), (257, 263, 1000)]
LAYOUTS = {"NN": (False, False), "NT": (False, True), "TN": (True, False), "TT": (True, True)}


def test_index_maps_on_the_host_emulator(tmp_path):
    cxx = shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")
    if cxx is None:
        pytest.skip("no C++ compiler to build tests/tf32_mma_emulator.cpp")
    exe = tmp_path / "tf32emu"
    subprocess.run([cxx, "-O2", "-std=c++17", "-o", str(exe), os.path.join(HERE, "tf32_mma_emulator.cpp")],
                   check=True, capture_output=True, text=True)
    seed = str(np.random.SeedSequence().entropy % 2**31)
    out = subprocess.run([str(exe), seed], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.startswith("ok"), f"seed {seed}: {out.stdout}{out.stderr}"


# --------------------------------------------------------------------------------------
# GPU
# --------------------------------------------------------------------------------------

def _cp():
    return pytest.importorskip("cupy", reason="the native kernels need CuPy")


def _C():
    from pyengine import _C
    return _C


def strided(rng, batch, rows, cols, col_major, pad=0, offset=0, gap=0, shared=False):
    """A (batch, rows, cols) float32 operand inside a random device buffer: element (z, r, c)
    at offset + z*bs + r*rs + c*cs, the unit stride on the columns (row-major) or on the rows
    (col_major), the other stride padded by `pad`; shared: batch stride 0. Returns (buffer,
    base pointer, (bs, rs, cs), float64 values of shape (1 if shared else batch, rows, cols))."""
    cp = _cp()
    lead = (rows if col_major else cols) + pad
    rs, cs = (1, lead) if col_major else (lead, 1)
    item = lead * (cols if col_major else rows)
    bs = 0 if shared else item + gap
    nb = 1 if shared else batch
    size = offset + bs * (nb - 1) + item + 3
    host = rng.standard_normal(size).astype(np.float32)
    z, r, c = np.ix_(np.arange(nb), np.arange(rows), np.arange(cols))
    vals = host[offset + z * bs + r * rs + c * cs].astype(np.float64)
    buf = cp.asarray(host)
    return buf, buf.data.ptr + 4 * offset, (bs, rs, cs), vals


def run(variant, batch, a, b, m, n, k, bias=None, act="none", act_param=0.0):
    """C (batch, m, n) from version `variant`, NaN-poisoned before the launch."""
    cp = _cp()
    C = _C()
    out = cp.full((batch, m, n), np.nan, dtype=cp.float32)
    (_, pa, sa, _), (_, pb, sb, _) = a, b
    try:
        C.matmul_tf32_variant(variant, batch, m, n, k, pa, sa, pb, sb, out.data.ptr,
                              0 if bias is None else bias.data.ptr, int(getattr(C.Act, act)), act_param,
                              cp.cuda.get_current_stream().ptr)
    except ValueError as exc:
        if "bytes of shared memory per block" in str(exc):
            pytest.skip(f"{variant} does not fit this device: {exc}")
        raise
    cp.cuda.get_current_stream().synchronize()
    return cp.asnumpy(out).astype(np.float64)


def check_tf32(got, av, bv, ref=None, what=""):
    """Every element within TOL * |A row| |B column| of the float64 product (or of `ref`)."""
    prod = np.matmul(av, bv)
    ref = prod if ref is None else ref
    bound = np.linalg.norm(av, axis=-1)[..., :, None] * np.linalg.norm(bv, axis=-2)[..., None, :]
    bound = np.broadcast_to(bound, ref.shape)
    assert got.shape == ref.shape, f"{what}: shape {got.shape} != {ref.shape}"
    bad = ~np.isfinite(got)
    assert not bad.any(), f"{what}: {bad.sum()} NaN/inf entries (unwritten outputs?), first at {np.argwhere(bad)[0]}"
    err = np.abs(got - ref) / np.maximum(bound, 1e-30)
    worst = np.unravel_index(np.argmax(err), err.shape)
    assert err.max() < TOL, f"{what}: error {err.max():.2e} of |A row||B col| at {worst}"


def _variants():
    """The versions this build has: the default's tiles always, the ranking-only ones when
    built with -DPYENGINE_KERNEL_VARIANTS=ON (the others are not tested, for want of them)."""
    try:
        return list(_C().matmul_tf32_variants())
    except Exception:  # no extension here: the gpu tests skip anyway
        return ["auto", "128x128w4rz", "64x128rz", "64x128rz-4byte"]


VARIANTS = _variants()
# 16-byte copies only (a name without "4byte", except auto and v2); no fused activation: the
# ranking-only v3 tiles.
VEC_ONLY = {v for v in VARIANTS if v not in ("auto", "v2") and not v.endswith("4byte")}
NO_ACT = {v for v in VARIANTS if v not in ("auto", "v2", "128x128w4rz", "64x128rz", "64x128rz-4byte")}


@pytest.mark.gpu
@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("m,n,k", ODD_MNK)
@pytest.mark.parametrize("variant", VARIANTS)
def test_every_version_layout_and_size(rng, variant, m, n, k, layout):
    ta, tb = LAYOUTS[layout]
    # 16-byte-copy tiles need leading dimensions that are multiples of 4: pad up to one.
    pa = (-(m if ta else k)) % 4 if variant in VEC_ONLY else 1
    pb = (-(k if tb else n)) % 4 if variant in VEC_ONLY else 2
    a = strided(rng, 1, m, k, ta, pad=pa)
    b = strided(rng, 1, k, n, tb, pad=pb)
    got = run(variant, 1, a, b, m, n, k)
    check_tf32(got, a[3], b[3], what=f"{variant} {layout} {m}x{n}x{k}")


@pytest.mark.gpu
@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("variant", VARIANTS)
def test_batches_with_gaps_and_a_shared_operand(rng, variant, layout):
    ta, tb = LAYOUTS[layout]
    batch, m, n, k = 3, 129, 65, 100
    vec = variant in VEC_ONLY
    a = strided(rng, batch, m, k, ta, pad=(-(m if ta else k)) % 4 if vec else 3, gap=4 if vec else 5)
    b = strided(rng, batch, k, n, tb, pad=(-(k if tb else n)) % 4 if vec else 1, shared=True)
    got = run(variant, batch, a, b, m, n, k)
    check_tf32(got, a[3], b[3], what=f"{variant} {layout} batch={batch}")


@pytest.mark.gpu
@pytest.mark.parametrize("offset", [1, 2, 3])
@pytest.mark.parametrize("variant", [v for v in VARIANTS if v not in VEC_ONLY])
def test_misaligned_base_pointers(rng, variant, offset):
    m, n, k = 70, 130, 45
    a = strided(rng, 2, m, k, False, offset=offset)
    b = strided(rng, 2, k, n, True, offset=4 - offset, pad=1)
    check_tf32(run(variant, 2, a, b, m, n, k), a[3], b[3], what=f"{variant} offset {offset}")


@pytest.mark.gpu
@pytest.mark.parametrize("variant", sorted(VEC_ONLY))
def test_16_byte_tiles_refuse_unaligned_operands(rng, variant):
    a = strided(rng, 1, 33, 17, False, offset=1)
    b = strided(rng, 1, 17, 33, False)
    with pytest.raises(ValueError, match="16-byte aligned"):
        run(variant, 1, a, b, 33, 33, 17)


@pytest.mark.gpu
@pytest.mark.parametrize("m,n,k", [(1100, 300, 70), (300, 1100, 33), (2100, 260, 64)])
@pytest.mark.parametrize("variant", VARIANTS)
def test_many_tiles_in_grouped_block_order(rng, variant, m, n, k):
    # More than 8 tile rows: the grouped block order's last, partial group.
    vec = variant in VEC_ONLY
    a = strided(rng, 1, m, k, False, pad=(-k) % 4 if vec else 0)
    b = strided(rng, 1, k, n, False, pad=(-n) % 4 if vec else 0)
    check_tf32(run(variant, 1, a, b, m, n, k), a[3], b[3], what=f"{variant} {m}x{n}x{k}")


def _act_ref(x, act, param):
    if act == "relu":
        return np.maximum(x, 0)
    if act == "gelu":
        return 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))
    if act == "gelu_tanh":
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    return x


@pytest.mark.gpu
@pytest.mark.parametrize("act", ["none", "relu", "gelu", "gelu_tanh"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_bias_and_activation_epilogue(rng, variant, act):
    cp = _cp()
    m, n, k = 130, 68, 36  # x (m, k) @ w.T, w (n, k): linear()'s layout
    x = strided(rng, 1, m, k, False)
    w = strided(rng, 1, k, n, True)
    bias = rng.standard_normal(n).astype(np.float32)
    if variant in NO_ACT and act != "none":
        with pytest.raises(ValueError, match="no fused"):
            run(variant, 1, x, w, m, n, k, cp.asarray(bias), act)
        return
    got = run(variant, 1, x, w, m, n, k, cp.asarray(bias), act)
    pre = x[3] @ w[3] + bias
    # The activations here are 1-Lipschitz-ish (|f'| <= 1.13), so the GEMM bound carries over.
    check_tf32(got, x[3] * 1.13, w[3], ref=_act_ref(pre, act, 0.0), what=f"{variant} {act}")


@pytest.mark.gpu
def test_fused_activation_needs_linear_layout(rng):
    a = strided(rng, 1, 8, 8, True)
    b = strided(rng, 1, 8, 8, False)
    with pytest.raises(ValueError, match="row-major and B column-major"):
        run("auto", 1, a, b, 8, 8, 8, act="relu")


@pytest.mark.gpu
def test_k_zero_gives_the_bias():
    cp = _cp()
    C = _C()
    bias = cp.arange(5, dtype=cp.float32)
    out = cp.full((3, 5), np.nan, dtype=cp.float32)
    a, b = cp.empty((3, 1), cp.float32), cp.empty((1, 5), cp.float32)
    C.matmul_tf32_variant("auto", 1, 3, 5, 0, a.data.ptr, (0, 1, 1), b.data.ptr, (0, 5, 1), out.data.ptr,
                          bias.data.ptr, 0, 0.0, cp.cuda.get_current_stream().ptr)
    np.testing.assert_array_equal(cp.asnumpy(out), np.broadcast_to(np.arange(5, dtype=np.float32), (3, 5)))


@pytest.mark.gpu
def test_more_batch_items_than_grid_z(rng):
    cp = _cp()
    batch, m, n, k = 70000, 2, 3, 5
    a = cp.random.standard_normal((batch, m, k), dtype=cp.float32)
    b = cp.random.standard_normal((batch, k, n), dtype=cp.float32)
    out = cp.full((batch, m, n), np.nan, dtype=cp.float32)
    _C().matmul_tf32_variant("auto", batch, m, n, k, a.data.ptr, (m * k, k, 1), b.data.ptr, (k * n, n, 1),
                             out.data.ptr, 0, 0, 0.0, cp.cuda.get_current_stream().ptr)
    av, bv = cp.asnumpy(a).astype(np.float64), cp.asnumpy(b).astype(np.float64)
    check_tf32(cp.asnumpy(out).astype(np.float64), av, bv, what="batch 70000")


@pytest.mark.gpu
@pytest.mark.parametrize("variant", [v for v in VARIANTS if v != "v2"])
def test_really_tf32(rng, variant):
    # Rounding inputs to 10 mantissa bits leaves an error far above float32's: the tensor
    # cores ran. (And far below a wrong kernel's.)
    a = strided(rng, 1, 256, 256, False)
    b = strided(rng, 1, 256, 256, False)
    got = run(variant, 1, a, b, 256, 256, 256)
    ref = a[3] @ b[3]
    err = np.linalg.norm(got - ref) / np.linalg.norm(ref)
    assert 1e-5 < err < 3e-3, err


@pytest.mark.gpu
def test_bad_arguments_raise_naming_them(rng):
    cp = _cp()
    C = _C()
    x = cp.zeros((4, 4), cp.float32)
    st = cp.cuda.get_current_stream().ptr
    with pytest.raises(ValueError, match="unknown variant 'nope'.*auto"):
        C.matmul_tf32_variant("nope", 1, 4, 4, 4, x.data.ptr, (0, 4, 1), x.data.ptr, (0, 4, 1), x.data.ptr, 0, 0,
                              0.0, st)
    with pytest.raises(ValueError, match=r"A needs a unit row or column stride, got strides \(8, 2\)"):
        C.matmul_tf32_variant("auto", 1, 2, 2, 2, x.data.ptr, (0, 8, 2), x.data.ptr, (0, 4, 1), x.data.ptr, 0, 0,
                              0.0, st)
    with pytest.raises(ValueError, match="negative size"):
        C.matmul_tf32_variant("auto", 1, -1, 4, 4, x.data.ptr, (0, 4, 1), x.data.ptr, (0, 4, 1), x.data.ptr, 0, 0,
                              0.0, st)


@pytest.mark.gpu
def test_matmul_with_allow_tf32_runs_auto(rng):
    # The backend's matmul under allow_tf32 and the "auto" version give identical bits.
    cp = _cp()
    import pyengine as pe
    from pyengine.backend import cuda_backend as cb
    a = rng.standard_normal((2, 129, 65)).astype(np.float32)
    b = rng.standard_normal((2, 65, 33)).astype(np.float32)
    prev = pe.backends.cuda.matmul.allow_tf32
    pe.backends.cuda.matmul.allow_tf32 = True
    try:
        got = cp.asnumpy(cb.matmul(cp.asarray(a), cp.asarray(b)))
    finally:
        pe.backends.cuda.matmul.allow_tf32 = prev
    da, db = cp.asarray(a), cp.asarray(b)
    out = cp.full((2, 129, 33), np.nan, dtype=cp.float32)
    _C().matmul_tf32_variant("auto", 2, 129, 33, 65, da.data.ptr, (129 * 65, 65, 1), db.data.ptr, (65 * 33, 33, 1),
                             out.data.ptr, 0, 0, 0.0, cp.cuda.get_current_stream().ptr)
    np.testing.assert_array_equal(got, cp.asnumpy(out))
