"""SGEMM kernel versions side by side (pyengine._C.sgemm_variant), one process.

    python3 bench/variants/sgemm.py [--budget SECONDS]

Every version of sgemm_variant_names() (0 = matmul's kernel) at 4096^3 and 1024^3, NN (both
row-major) and NT (x @ w.T, B column-major), against cuBLAS fp32 through CuPy (TF32 off:
CuPy uses it only with CUPY_TF32=1, which is cleared here). Before a version is timed, its
result is compared with cuBLAS's (max abs error relative to max |C|) and, on small odd
shapes (m, n, k = 129, 65, 127 and 17, 33, 3; batch 2), with float64 NumPy; a version that
fails is reported and not timed. Timing: CUDA events, 2 warm-ups, median of REPS; inputs
of 64 MB per operand at 4096 (larger than the 50 MB L2). The Markdown table is printed last.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import time

os.environ.pop("CUPY_TF32", None)

import numpy as np  # noqa: E402
import cupy as cp  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

from gpu_bench_nn import _median_ms  # noqa: E402

import pyengine._C as C  # noqa: E402

REPS = {4096: 10, 1024: 30}


def _default_budget():
    """Seconds this script may spend: 70% of its share of bench/device_variants.sh's budget."""
    here = os.path.dirname(os.path.abspath(__file__))
    n = max(1, len([f for f in os.listdir(here) if f.endswith(".py")]))
    return min(40.0, 0.7 * float(os.environ.get("DEVICE_VARIANTS_BUDGET", 120)) / n)


def _verdict(row):
    """'yes' when every error is within float32 GEMM tolerance (1e-5 of max |C|), else 'NO'."""
    errs = [v for key, v in row.items() if key.startswith("err")]
    return "yes" if errs and all(e < 1e-5 for e in errs) else "NO"


def _strides(x):
    """(batch, row, col) element strides of a 2-D or 3-D CuPy array."""
    st = [s // x.itemsize for s in x.strides]
    return (0, *st) if x.ndim == 2 else tuple(st)


def _run(variant, a, b, c):
    """c = a @ b with version `variant`; a (batch?, m, k), b (batch?, k, n) any views."""
    batch = a.shape[0] if a.ndim == 3 else 1
    m, k = a.shape[-2:]
    n = b.shape[-1]
    C.sgemm_variant(variant=variant, batch=batch, m=m, n=n, k=k, a=a.data.ptr, a_strides=_strides(a),
                    b=b.data.ptr, b_strides=_strides(b), c=c.data.ptr, stream=cp.cuda.get_current_stream().ptr)


def _small_error(variant, rng):
    worst = 0.0
    for m, n, k in ((129, 65, 127), (17, 33, 3)):
        for nt in (False, True):
            a = rng.standard_normal((2, m, k)).astype(np.float32)
            b = rng.standard_normal((2, k, n)).astype(np.float32)
            da = cp.asarray(a)
            db = cp.ascontiguousarray(cp.asarray(b).swapaxes(1, 2)).swapaxes(1, 2) if nt else cp.asarray(b)
            c = cp.full((2, m, n), cp.nan, dtype=cp.float32)
            _run(variant, da, db, c)
            ref = a.astype(np.float64) @ b.astype(np.float64)
            worst = max(worst, float(np.max(np.abs(cp.asnumpy(c) - ref)) / np.max(np.abs(ref))))
    return worst


def _table(rows, cases):
    """The ranked Markdown table of the rows measured so far."""
    cub = {n: ms for n, *_, ms in cases}

    def f(x, spec=".3f"):
        return "-" if x is None else format(x, spec)

    print()
    print(f"SGEMM versions, fp32 FFMA ({C.device_name(0)}); vs cuBLAS = cuBLAS ms / ours (> 1: faster); "
          f"err = max |ours - cuBLAS| / max |C|; err64 vs float64 on odd shapes")
    print("| # | version | 4096 NN ms | TFLOP/s | vs cuBLAS | 4096 NT ms | vs cuBLAS | 1024 NN ms | vs cuBLAS "
          "| err 4096 | err64 | ok |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in sorted(rows, key=lambda r: r.get("ms_NN4096", 1e9)):
        if "error" in r:
            print(f"| {r['variant']} | {r['name']} | FAILED: {r['error']} |")
            continue
        ms, nt, small = r.get("ms_NN4096"), r.get("ms_NT4096"), r.get("ms_NN1024")
        tflops = None if ms is None else 2 * 4096 ** 3 / ms / 1e9
        print(f"| {r['variant']} | {r['name']} | {f(ms)} | {f(tflops, '.1f')} "
              f"| {f(None if ms is None else cub[4096] / ms, '.2f')} | {f(nt)} "
              f"| {f(None if nt is None else cub[4096] / nt, '.2f')} | {f(small)} "
              f"| {f(None if small is None else cub[1024] / small, '.2f')} "
              f"| {f(max(r.get('err_NN4096', 0), r.get('err_NT4096', 0)), '.1e')} | {f(r.get('err64'), '.1e')} "
              f"| {_verdict(r)} |")
    print(f"| - | cuBLAS fp32 (CuPy) | {f(cub[4096])} | {2 * 4096 ** 3 / cub[4096] / 1e9:.1f} | 1.00 | - | - "
          f"| {f(cub[1024])} | 1.00 | - | - | - |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--budget", type=float, default=_default_budget())
    args = ap.parse_args()
    t0 = time.time()
    rng = np.random.default_rng(0)
    default = getattr(C, "sgemm_variant_default", 0)
    built = C.kernel_variants_built() if hasattr(C, "kernel_variants_built") else True
    # Ranking-only versions exist only in an extension built with PYENGINE_KERNEL_VARIANTS=ON.
    names = [(i, n + (" (default)" if i == default else "")) for i, n in enumerate(C.sgemm_variant_names())
             if built or i == default]
    print(f"device: {C.device_name(0)}; versions: {len(names)}", flush=True)
    cases, rows = [], []

    def on_term(signum, frame):  # device_variants.sh's timeout: show what was measured
        print(f"stopped by signal {signum} after {time.time() - t0:.0f}s")
        if len(cases) == 2:
            _table(rows, cases)
        sys.exit(124)

    signal.signal(signal.SIGTERM, on_term)
    for n in (4096, 1024):
        a = cp.random.standard_normal((n, n), dtype=cp.float32)
        b = cp.random.standard_normal((n, n), dtype=cp.float32)
        bt = cp.ascontiguousarray(b.T).T  # the same matrix, column-major (x @ w.T's layout)
        ref = a @ b
        scale = float(cp.max(cp.abs(ref)))
        cublas = _median_ms(lambda: cp.matmul(a, b), 2, REPS[n])
        cases.append((n, a, b, bt, ref, scale, cublas))
        print(f"cuBLAS fp32 {n}^3: {cublas:.3f} ms = {2 * n ** 3 / cublas / 1e9:.1f} TFLOP/s", flush=True)

    for i, name in names:
        if time.time() - t0 > args.budget:
            print(f"budget of {args.budget:.0f}s spent: versions {i}.. not run")
            break
        row = dict(variant=i, name=name)
        try:
            row["err64"] = _small_error(i, rng)
            for n, a, b, bt, ref, scale, _ in cases:
                c = cp.empty((n, n), dtype=cp.float32)
                for tag, bb in (("NN", b), ("NT", bt)):
                    c.fill(cp.nan)
                    _run(i, a, bb, c)
                    err = float(cp.max(cp.abs(c - ref))) / scale
                    row[f"err_{tag}{n}"] = err if np.isfinite(err) else float("inf")
                    if tag == "NT" and n != 4096:
                        continue
                    row[f"ms_{tag}{n}"] = _median_ms(lambda: _run(i, a, bb, c), 2, REPS[n])
        except Exception as exc:  # a failing version is reported, the others still run
            row["error"] = f"{type(exc).__name__}: {exc}"[:120]
        rows.append(row)
        print(row, flush=True)

    _table(rows, cases)

if __name__ == "__main__":
    main()
