"""The "numba" provider column: our Numba kernels timed side by side with the native ones.

    python3 bench/gpu_bench_numba.py [--quick] [--out numba.json]

``run(quick) -> list[dict]`` rows as bench/gpu_bench.py's (name, shape, ms, gflops, gbps,
ratio, reference): matmul, conv2d forward, softmax, flash attention forward, and the launch
overhead of a one-element activation. Each Numba row's ratio is the native kernel's time
over the Numba one's (> 1: Numba faster), both measured here in the same process on the same
inputs. Timing: CUDA events on CuPy's current stream (the Numba kernels launch on it), warm-up
first (which also pays Numba's lazy compilation), median of the repeats, random normal
inputs. FLOPs: 2mnk per GEMM, 2 * N * O * OH * OW * C * kh * kw per convolution,
4 * B * H * T * T * d per attention forward.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from gpu_bench_nn import _median_ms, _randn  # noqa: E402  (bench/ is not a package)

from pyengine.backend import cuda_backend as native  # noqa: E402
from pyengine.backend import numba_backend as numba  # noqa: E402


def _pair(name, shape, fn_numba, fn_native, reps, flops=None, nbytes=None):
    """The native row and the Numba row (ratio = native ms / numba ms) of one workload."""
    rows = []
    times = {}
    for provider, fn in (("native", fn_native), ("numba", fn_numba)):
        ms = _median_ms(fn, 3, reps)
        times[provider] = ms
        rows.append(dict(name=f"{name} {provider}", shape=shape, ms=ms,
                         gflops=None if flops is None else flops / ms / 1e6,
                         gbps=None if nbytes is None else nbytes / ms / 1e6,
                         ratio=None if provider == "native" else times["native"] / ms,
                         reference=None if provider == "native" else f"{name} native"))
    return rows


def run(quick: bool = False) -> list[dict]:
    reps = 10 if quick else 30
    rows = []
    n = 1024 if quick else 2048
    a, b = _randn(n, n), _randn(n, n)
    rows += _pair("sgemm fp32", f"{n}^3", lambda: numba.matmul(a, b), lambda: native.matmul(a, b),
                  reps, flops=2 * n ** 3)

    batch = 16 if quick else 64
    x, w = _randn(batch, 64, 56, 56), _randn(64, 64, 3, 3)
    geo = ((1, 1), (1, 1), (1, 1), 1)
    rows += _pair("conv2d fwd 3x3", f"N={batch} 64->64 56x56",
                  lambda: numba.conv2d(x, w, None, *geo), lambda: native.conv2d(x, w, None, *geo),
                  reps, flops=2 * batch * 64 * 56 * 56 * 64 * 9)

    s = _randn(4096, 4096 if not quick else 1024)
    rows += _pair("softmax rows", f"{s.shape[0]}x{s.shape[1]}", lambda: numba.softmax(s, -1),
                  lambda: native.softmax(s, -1), reps, nbytes=2 * s.size * 4)

    bh, t, d = (4, 8), (512 if quick else 1024), 64
    q, k, v = (_randn(*bh, t, d) for _ in range(3))
    rows += _pair("flash attention fwd", f"B={bh[0]} H={bh[1]} T={t} d={d}",
                  lambda: numba.sdpa(q, k, v), lambda: native.sdpa(q, k, v), reps,
                  flops=4 * bh[0] * bh[1] * t * t * d)

    one = _randn(1)
    rows += _pair("launch overhead (relu of 1 element)", "1", lambda: numba.activation("relu", one),
                  lambda: native.activation("relu", one), 50)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", help="write the rows as JSON here")
    args = parser.parse_args(argv)
    rows = run(args.quick)
    for r in rows:
        perf = f"{r['gflops']:.0f} GFLOP/s" if r["gflops"] else (f"{r['gbps']:.0f} GB/s" if r["gbps"] else "")
        ratio = f"  native/numba {r['ratio']:.2f}" if r["ratio"] else ""
        print(f"{r['name']:<45} {r['shape']:<24} {r['ms']:9.3f} ms  {perf}{ratio}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
