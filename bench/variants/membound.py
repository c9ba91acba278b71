"""Memory-bound kernels: the versions that remain selectable side by side, and the others once.

    python3 bench/variants/membound.py [--reps 10]

pyengine._C.set_kernel_version picks the version of a family: average-pool backward 2 (a
4-column gather for any window) or 3 (8 columns, windows that do not overlap), layer norm
backward 1 (input kernel + two-stage column sums) or 2 (one fused pass). Every version runs
through the same backend calls. The other families (max/avg pooling forward, max pooling
backward, cross-entropy, softmax, layer norm forward) have one version since the 2026-11-27
comparison (the kernel files' headers hold what the deleted ones measured); their rows also show
how much of a single call's time is the Python wrapper, not the kernel.

Each case runs every version on the same random normal inputs, checks the result against the
NumPy backend in float64 (on a subset of planes / rows where the full size is slow on the CPU)
and prints the max error, then times it with CUDA events: `call ms` is one backend call between
two events (as bench/gpu_bench.py times it: the wrapper's host time shows when the kernel is
short), `kernel ms` is 10 back-to-back calls between two events divided by 10 (the GPU stays
busy while the host queues the next call, so this is the kernels' own time). Medians of the
repeats, after a warm-up. Bytes: each input read once and each output written once; ratio =
GB/s over the measured device-to-device copy (read + write). The Markdown table is printed last.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import cupy as cp  # noqa: E402

from pyengine import _C  # noqa: E402
from pyengine.backend import _cuda_nn as nn  # noqa: E402
from pyengine.backend import cuda_backend as cb  # noqa: E402
from pyengine.backend import numpy_backend as nb  # noqa: E402

BATCH = 10  # calls per event pair for the kernel-only time
VERSIONS = {"avg_pool2d_backward": (2, 3), "layer_norm_backward": (1, 2)}


def median_ms(fn, reps, batch=1):
    for _ in range(2):
        fn()
    times = []
    for _ in range(reps):
        start, end = cp.cuda.Event(), cp.cuda.Event()
        start.record()
        for _ in range(batch):
            fn()
        end.record()
        end.synchronize()
        times.append(cp.cuda.get_elapsed_time(start, end) / batch)
    times.sort()
    return times[len(times) // 2]


def copy_gbps(reps):
    n = 1 << 27
    src, dst = cp.random.standard_normal(n, dtype=cp.float32), cp.empty(n, dtype=cp.float32)
    return 2 * 4 * n / median_ms(lambda: cp.copyto(dst, src), reps) / 1e6


def randn(*shape):
    return cp.random.standard_normal(shape, dtype=cp.float32)


def max_err(got, ref):
    """Max |got - ref| over max |ref| (NaN in got where ref is finite counts as inf)."""
    got = [cp.asnumpy(g).astype(np.float64) for g in (got if isinstance(got, tuple) else (got,))]
    ref = [np.asarray(r, dtype=np.float64) for r in (ref if isinstance(ref, tuple) else (ref,))]
    worst = 0.0
    for g, r in zip(got, ref):
        if g.shape != r.shape:
            return float("inf")
        d = np.abs(g - r)
        d[~np.isfinite(d)] = np.inf
        worst = max(worst, float(d.max(initial=0.0)) / max(float(np.abs(r).max(initial=0.0)), 1e-30))
    return worst


# Each case: (family or None, label, shape text, bytes, run() -> outputs, check(outputs) -> error).

def pool_cases():
    cases = []
    for x_shape, k, s, p, ceil, sub in (((64, 64, 112, 112), 3, 2, 1, False, 2), ((3, 5, 17, 33), 3, 2, 1, True, 3)):
        x = randn(*x_shape)
        kk, ss, pp = (k, k), (s, s), (p, p)
        y, idx = cb.max_pool2d(x, kk, ss, pp, (1, 1), ceil)
        gy = randn(*y.shape)
        xs = cp.asnumpy(x[:sub]).astype(np.float64)
        ry, ridx = nb.max_pool2d(xs, kk, ss, pp, (1, 1), ceil)
        rgx = nb.max_pool2d_backward(cp.asnumpy(gy[:sub]).astype(np.float64), cp.asnumpy(idx[:sub]), xs.shape)
        shape = f"x={x_shape} {k}x{k}/{s} pad {p}{' ceil' if ceil else ''}"
        cases.append(("max_pool2d_forward", "max_pool fwd", shape, x.nbytes + y.nbytes + idx.nbytes,
                      lambda x=x, kk=kk, ss=ss, pp=pp, ceil=ceil: cb.max_pool2d(x, kk, ss, pp, (1, 1), ceil),
                      lambda out, sub=sub, ry=ry, ridx=ridx: max(max_err(out[0][:sub], ry),
                                                                 float(np.any(cp.asnumpy(out[1][:sub]) != ridx)))))
        # gy and the indices read, gx written once (the minimum; v1 also zero-fills gx first).
        cases.append(("max_pool2d_backward", "max_pool bwd", shape, gy.nbytes + idx.nbytes + x.nbytes,
                      lambda gy=gy, idx=idx, xs_=x.shape: cb.max_pool2d_backward(gy, idx, xs_),
                      lambda out, sub=sub, rgx=rgx: max_err(out[:sub], rgx)))
    for x_shape, k, s, p, ceil, incl, sub in (((64, 64, 112, 112), 2, 2, 0, False, True, 2),
                                               ((3, 5, 17, 33), 3, 2, 1, True, False, 3)):
        x = randn(*x_shape)
        kk, ss, pp = (k, k), (s, s), (p, p)
        y = cb.avg_pool2d(x, kk, ss, pp, ceil, incl)
        gy = randn(*y.shape)
        xs = cp.asnumpy(x[:sub]).astype(np.float64)
        ry = nb.avg_pool2d(xs, kk, ss, pp, ceil, incl)
        rgx = nb.avg_pool2d_backward(cp.asnumpy(gy[:sub]).astype(np.float64), xs.shape, kk, ss, pp, ceil, incl)
        shape = f"x={x_shape} {k}x{k}/{s} pad {p}{' ceil' if ceil else ''}{'' if incl else ' excl-pad'}"
        cases.append(("avg_pool2d_forward", "avg_pool fwd", shape, x.nbytes + y.nbytes,
                      lambda x=x, kk=kk, ss=ss, pp=pp, ceil=ceil, incl=incl: cb.avg_pool2d(x, kk, ss, pp, ceil, incl),
                      lambda out, sub=sub, ry=ry: max_err(out[:sub], ry)))
        cases.append(("avg_pool2d_backward", "avg_pool bwd", shape, x.nbytes + y.nbytes,
                      lambda gy=gy, xs_=x.shape, kk=kk, ss=ss, pp=pp, ceil=ceil, incl=incl:
                      cb.avg_pool2d_backward(gy, xs_, kk, ss, pp, ceil, incl),
                      lambda out, sub=sub, rgx=rgx: max_err(out[:sub], rgx)))
    return cases


def xent_cases():
    cases = []
    for n, c, sub in ((8192, 32000, 32), (16384, 1000, 256), (257, 1023, 257)):
        logits = randn(n, c)
        target = cp.random.randint(0, c, n).astype(cp.int64)
        target[::7] = -100  # some ignored rows
        gloss = randn(n)
        loss, lse = nn.cross_entropy(logits, target, -100, 0.1)
        l64 = cp.asnumpy(logits[:sub]).astype(np.float64)
        t = cp.asnumpy(target[:sub])
        rloss, rlse = nb.cross_entropy(l64, t, -100, 0.1)
        rg = nb.cross_entropy_backward(cp.asnumpy(gloss[:sub]).astype(np.float64), l64, t, rlse, -100, 0.1)
        shape = f"{n}x{c} smoothing 0.1"
        cases.append(("cross_entropy_forward", "cross_entropy fwd", shape, logits.nbytes,
                      lambda logits=logits, target=target: nn.cross_entropy(logits, target, -100, 0.1),
                      lambda out, sub=sub, rloss=rloss, rlse=rlse:
                      max_err((out[0][:sub], out[1][:sub]), (rloss, rlse))))
        cases.append(("cross_entropy_backward", "cross_entropy bwd", shape, 2 * logits.nbytes,
                      lambda gloss=gloss, logits=logits, target=target, lse=lse:
                      nn.cross_entropy_backward(gloss, logits, target, lse, -100, 0.1),
                      lambda out, sub=sub, rg=rg: max_err(out[:sub], rg)))
    return cases


def norm_softmax_cases():
    cases = []
    for n, d in ((16384, 1024), (4096, 16384), (65536, 256), (1000, 1001)):
        x, gy, w, b = randn(n, d), randn(n, d), randn(d), randn(d)
        _, mean, rstd = nn.layer_norm(x, w, b, 1e-5)
        rows = min(n, 64)
        x64, gy64, w64 = (cp.asnumpy(a).astype(np.float64) for a in (x[:rows], gy[:rows], w))
        _, rmean, rrstd = nb.layer_norm(x64, w64, cp.asnumpy(b).astype(np.float64), 1e-5)
        rgx = nb.layer_norm_backward(gy64, x64, w64, rmean, rrstd)[0]
        # gw, gb over every row: CuPy in float64 (NumPy on the CPU is slow at these sizes).
        xd, gd = x.astype(cp.float64), gy.astype(cp.float64)
        mu = xd.mean(axis=1, keepdims=True)
        xhat = (xd - mu) / cp.sqrt(((xd - mu) ** 2).mean(axis=1, keepdims=True) + 1e-5)
        rgw, rgb = cp.asnumpy((gd * xhat).sum(axis=0)), cp.asnumpy(gd.sum(axis=0))
        del xd, gd, mu, xhat
        shape = f"{n}x{d}"
        # gy and x read, gx written (gw, gb and the per-row mean/rstd are O(d + rows)).
        cases.append(("layer_norm_backward", "layer_norm bwd", shape, 3 * x.nbytes,
                      lambda gy=gy, x=x, w=w, mean=mean, rstd=rstd: nn.layer_norm_backward(gy, x, w, mean, rstd),
                      lambda out, rows=rows, rgx=rgx, rgw=rgw, rgb=rgb:
                      max_err((out[0][:rows], out[1], out[2]), (rgx, rgw, rgb))))
    for n, d in ((16384, 1024), (4096, 16384)):
        x, w, b = randn(n, d), randn(d), randn(d)
        sub = 64
        x64 = cp.asnumpy(x[:sub]).astype(np.float64)
        ry = nb.softmax(x64, -1)
        rln = nb.layer_norm(x64, cp.asnumpy(w).astype(np.float64), cp.asnumpy(b).astype(np.float64), 1e-5)[0]
        cases.append((None, "softmax fwd", f"{n}x{d}", 2 * x.nbytes, lambda x=x: nn.softmax(x, -1),
                      lambda out, ry=ry: max_err(out[:sub], ry)))
        cases.append((None, "layer_norm fwd", f"{n}x{d}", 2 * x.nbytes,
                      lambda x=x, w=w, b=b: nn.layer_norm(x, w, b, 1e-5),
                      lambda out, rln=rln: max_err(out[0][:sub], rln)))
    return cases


def table(rows, name, ceiling, seconds):
    print(f"\n{name}; ceiling = D2D copy {ceiling:.0f} GB/s; {seconds:.0f} s\n")
    print("| kernel | shape | version | max err | call ms | kernel ms | kernel / copy | call / copy |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for label, shape, v, err, call, kern, ratio, call_ratio in rows:
        print(f"| {label} | {shape} | {v} | {err:.1e} | {call:.4f} | {kern:.4f} | {ratio:.2f} | {call_ratio:.2f} |",
              flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=10)
    args = ap.parse_args()
    t0 = time.time()
    props = cp.cuda.runtime.getDeviceProperties(0)
    name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    ceiling = copy_gbps(args.reps)
    print(f"{name}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; D2D copy {ceiling:.0f} GB/s", flush=True)
    rows = []

    def on_term(signum, frame):  # device_variants.sh's timeout: still print the finished rows
        table(rows, name, ceiling, time.time() - t0)
        sys.exit(124)

    signal.signal(signal.SIGTERM, on_term)
    for make in (pool_cases, xent_cases, norm_softmax_cases):
        for family, label, shape, nbytes, run, check in make():
            for version in VERSIONS.get(family, (0,)):
                if version:
                    _C.set_kernel_version(family, version)
                try:
                    err = check(run())
                    cp.cuda.Stream.null.synchronize()
                    call = median_ms(run, args.reps)
                    kern = median_ms(run, max(3, args.reps // 2), BATCH)
                    rows.append((label, shape, f"v{version}" if version else "-", err, call, kern,
                                 nbytes / kern / 1e6 / ceiling, nbytes / call / 1e6 / ceiling))
                except Exception as exc:  # one failing case must not lose the others' rows
                    rows.append((label, shape, f"v{version}" if version else "-", float("nan"), float("nan"),
                                 float("nan"), float("nan"), float("nan")))
                    print(f"{label} {shape} v{version}: {exc!r}", flush=True)
                finally:
                    if version:
                        _C.set_kernel_version(family, 0)
                r = rows[-1]
                print(f"{r[0]} {r[1]} {r[2]}: err {r[3]:.1e} call {r[4]:.4f} ms kernel {r[5]:.4f} ms "
                      f"ratio {r[6]:.2f} (call {r[7]:.2f})", flush=True)
            cp.get_default_memory_pool().free_all_blocks()
    table(rows, name, ceiling, time.time() - t0)


if __name__ == "__main__":
    main()
