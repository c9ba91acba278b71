"""TF32 GEMM versions side by side (pyengine._C.matmul_tf32_variant), one process.

    python3 bench/variants/tf32.py [--budget SECONDS]

Every version of _C.matmul_tf32_variants() ("auto" is what matmul runs with allow_tf32, and
its tiles by name; with -DPYENGINE_KERNEL_VARIANTS=ON also "v2", the previous kernel, and the
v3 tiles that lost) against cuBLAS TF32 (CuPy's matmul with its
float32 compute type set to TF32; PyTorch with allow_tf32 if CuPy's result shows no TF32
rounding) at 4096^3 (NN: both row-major, and NT: B column-major, linear()'s x @ w.T), 1024^3,
2048^3 (NN) and 3001^3 (NN, leading dimensions that are not multiples of 4: only the versions
with 4-byte copies run there). Before a version is
timed its result is compared with a float64 reference computed on the GPU: err is max |C -
ref| / (|A row| |B column|), which TF32 keeps below 2^-9 even when truncating (ok below
2.5e-3; typical values at 4096 are ~1e-4). Timing:
CUDA events, warm-ups, median of several reps; 64 MB per operand at 4096 (larger than L2).
Rows print as they finish; the Markdown table is printed last.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import cupy as cp

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

from gpu_bench_nn import _median_ms  # noqa: E402

import pyengine._C as C  # noqa: E402

CASES = [(4096, "NN"), (4096, "NT"), (1024, "NN"), (2048, "NN"), (3001, "NN")]
REPS = {4096: 7, 2048: 10, 1024: 20, 3001: 5}
ORDER = ["auto", "128x128w4rz", "64x128rz", "64x128rz-4byte", "v2", "128x256rz", "256x128rz", "128x256",
         "128x128rz", "128x128", "64x128", "64x64", "128x256s4", "64x128-4byte"]
OK = 2.5e-3


def _default_budget():
    """Seconds this script may spend: 80% of its share of bench/device_variants.sh's budget
    (the script is killed at its share), at most 40."""
    here = os.path.dirname(os.path.abspath(__file__))
    n = max(1, len([f for f in os.listdir(here) if f.endswith(".py")]))
    return min(40.0, 0.8 * float(os.environ.get("DEVICE_VARIANTS_BUDGET", 120)) / n)


def _strides(x):
    """(batch, row, col) element strides of a 2-D CuPy array."""
    return (0, *(s // x.itemsize for s in x.strides))


def _run(name, a, b, c):
    m, k = a.shape
    n = b.shape[1]
    C.matmul_tf32_variant(variant=name, batch=1, m=m, n=n, k=k, a=a.data.ptr, a_strides=_strides(a),
                          b=b.data.ptr, b_strides=_strides(b), c=c.data.ptr, bias=0, act=0, act_param=0.0,
                          stream=cp.cuda.get_current_stream().ptr)


def _cublas_tf32():
    """(name, matmul) of cuBLAS with TF32 on float32."""
    from cupy._core import _routines_linalg as linalg
    linalg.set_compute_type(cp.float32, linalg.COMPUTE_TYPE_TF32)
    return "cuBLAS TF32 (CuPy)", cp.matmul


def _torch_tf32():
    import torch
    torch.backends.cuda.matmul.allow_tf32 = True

    def mm(a, b):
        return cp.asarray(torch.as_tensor(a, device="cuda") @ torch.as_tensor(b, device="cuda"))
    return "cuBLAS TF32 (torch)", mm


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--budget", type=float, default=_default_budget())
    args = ap.parse_args()
    t0 = time.time()
    known = list(C.matmul_tf32_variants())
    names = [n for n in ORDER if n in known] + [n for n in known if n not in ORDER]
    print(f"device: {C.device_name(0)}; versions: {', '.join(names)}; budget {args.budget:.0f}s", flush=True)
    cublas_name, cublas = _cublas_tf32()
    rows = []
    for size, layout in CASES:
        if time.time() - t0 > args.budget:
            print(f"budget spent: {size}^3 {layout} not run", flush=True)
            continue
        a = cp.random.standard_normal((size, size), dtype=cp.float32)
        b = cp.random.standard_normal((size, size), dtype=cp.float32)
        if layout == "NT":
            b = cp.ascontiguousarray(b.T).T  # the same values, column-major
        ref = a.astype(cp.float64) @ b.astype(cp.float64)
        bound = cp.outer(cp.linalg.norm(a.astype(cp.float64), axis=1), cp.linalg.norm(b.astype(cp.float64), axis=0))

        def err_of(c):
            e = float(cp.max(cp.abs(c.astype(cp.float64) - ref) / bound))
            return e if np.isfinite(e) else float("inf")

        flops = 2.0 * size ** 3
        e = err_of(cublas(a, b))
        if e < 2e-6 and cublas_name.endswith("(CuPy)"):
            print(f"CuPy's matmul shows no TF32 rounding (err {e:.1e}); using PyTorch", flush=True)
            try:
                cublas_name, cublas = _torch_tf32()
                e = err_of(cublas(a, b))
            except Exception as exc:  # no torch: report fp32 cuBLAS, labelled by its error
                print(f"PyTorch unavailable ({exc}); cuBLAS row is whatever CuPy ran", flush=True)
        ms_ref = _median_ms(lambda: cublas(a, b), 2, REPS[size])
        rows.append(dict(size=size, layout=layout, name=cublas_name, ms=ms_ref, tflops=flops / ms_ref / 1e9,
                         ratio=1.0, err=e))
        print(rows[-1], flush=True)
        c = cp.empty((size, size), dtype=cp.float32)
        for name in names:
            if time.time() - t0 > args.budget:
                rows.append(dict(size=size, layout=layout, name=name, note="not run (budget)"))
                continue
            row = dict(size=size, layout=layout, name=name)
            try:
                c.fill(cp.nan)
                _run(name, a, b, c)
                row["err"] = err_of(c)
                if row["err"] < OK:
                    row["ms"] = _median_ms(lambda: _run(name, a, b, c), 2, REPS[size])
                    row["tflops"] = flops / row["ms"] / 1e9
                    row["ratio"] = ms_ref / row["ms"]
                else:
                    row["note"] = "wrong result, not timed"
            except ValueError as exc:  # e.g. a 16-byte-copy tile on unaligned operands
                row["note"] = f"n/a: {exc}"[:90]
            except Exception as exc:
                row["note"] = f"FAILED: {type(exc).__name__}: {exc}"[:120]
            rows.append(row)
            print(row, flush=True)
        del a, b, ref, bound, c
        cp.get_default_memory_pool().free_all_blocks()

    def f(x, spec):
        return "-" if x is None else format(x, spec)

    print()
    print(f"TF32 GEMM versions ({C.device_name(0)}), C = A @ B (NN: both row-major, NT: B column-major); "
          f"x cuBLAS = cuBLAS ms / ours (> 1: faster); err = max |C - C64| / (|A row| |B col|), ok < {OK:g}")
    print("| case | version | ms | TFLOP/s | x cuBLAS TF32 | err | ok |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        ok = "yes" if r.get("err", 1.0) < OK else "NO"
        if "note" in r and "ms" not in r:
            print(f"| {r['size']}^3 {r['layout']} | {r['name']} | {r['note']} | | | {f(r.get('err'), '.1e')} | "
                  f"{ok if 'err' in r else '-'} |")
            continue
        print(f"| {r['size']}^3 {r['layout']} | {r['name']} | {f(r.get('ms'), '.4f')} | {f(r.get('tflops'), '.1f')} "
              f"| {f(r.get('ratio'), '.2f')} | {f(r.get('err'), '.1e')} | {ok} |")


if __name__ == "__main__":
    main()
