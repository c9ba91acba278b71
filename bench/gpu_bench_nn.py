"""GPU benchmarks of the native nn kernels, imported by bench/gpu_bench.py.

``run(quick)`` returns one dict per measurement:
    name       what ran ("softmax_fwd", "attention_fwd ours", ...)
    shape      the problem, as text
    ms         median time of one call
    gflops     GFLOP/s (attention; 4*B*H*T*T*d forward, halved when causal, backward 2.5x)
    gbps       GB/s counting each input read once and each output written once (memory-bound ops)
    ratio      memory-bound rows: our GB/s over the measured device-to-device copy GB/s;
               attention rows: the reference's time over ours (> 1: ours is faster)
    reference  what the ratio compares with
Timing: CUDA events around each call on the stream it runs on, warm-up first, the median of
the repeats; inputs are random normal (never zeros) and each memory-bound input is larger
than the H100's 50 MB L2, so repeats do not hit in cache.
"""
from __future__ import annotations

import functools
import math

import cupy as cp

from pyengine.backend import _cuda_nn as nn


def _median_ms(fn, warmup, reps, events=None):
    """Median milliseconds of fn() by CUDA events; `events` makes (start, end) event pairs
    for another library's stream (PyTorch), CuPy's on its current stream by default."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        if events is None:
            start, end = cp.cuda.Event(), cp.cuda.Event()
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(cp.cuda.get_elapsed_time(start, end))
        else:
            start, end = events()
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
    times.sort()
    return times[len(times) // 2]


def _randn(*shape):
    return cp.random.standard_normal(shape, dtype=cp.float32)


@functools.lru_cache(maxsize=None)
def _copy_gbps(quick):
    """(GB/s, ms, floats) of a device-to-device copy, measured once per process: gpu_bench.py
    takes it first and run() reuses it as the ceiling."""
    n = (1 << 28) if not quick else (1 << 27)  # 1 GiB / 512 MiB of float32
    src, dst = _randn(n), cp.empty(n, dtype=cp.float32)
    ms = _median_ms(lambda: cp.copyto(dst, src), 3, 10 if quick else 30)
    return 2 * n * 4 / ms / 1e6, ms, n


def _bandwidth_row(name, shape, ms, nbytes, copy_gbps):
    gbps = nbytes / ms / 1e6
    return dict(name=name, shape=shape, ms=ms, gflops=None, gbps=gbps, ratio=gbps / copy_gbps,
                reference="device-to-device copy")


def _memory_bound(quick, copy_gbps):
    reps = 10 if quick else 50
    rows = []
    for r, c in ((16384, 1024), (4096, 16384)):
        x, gy = _randn(r, c), _randn(r, c)
        y = nn.softmax(x, -1)
        shape = f"{r}x{c}"
        rows.append(_bandwidth_row("softmax_fwd", shape, _median_ms(lambda: nn.softmax(x, -1), 3, reps),
                                   2 * x.nbytes, copy_gbps))
        rows.append(_bandwidth_row("softmax_bwd", shape,
                                   _median_ms(lambda: nn.softmax_backward(gy, y, -1), 3, reps), 3 * x.nbytes,
                                   copy_gbps))
        w, b = _randn(c), _randn(c)
        rows.append(_bandwidth_row("layer_norm_fwd", shape,
                                   _median_ms(lambda: nn.layer_norm(x, w, b, 1e-5), 3, reps), 2 * x.nbytes,
                                   copy_gbps))
        _, mean, rstd = nn.layer_norm(x, w, b, 1e-5)
        rows.append(_bandwidth_row("layer_norm_bwd", shape,
                                   _median_ms(lambda: nn.layer_norm_backward(gy, x, w, mean, rstd), 3, reps),
                                   3 * x.nbytes, copy_gbps))
    n, classes = 8192, 32000
    logits = _randn(n, classes)
    target = cp.random.randint(0, classes, n).astype(cp.int64)
    _, lse = nn.cross_entropy(logits, target)
    gloss = _randn(n)
    shape = f"{n}x{classes}"
    rows.append(_bandwidth_row("cross_entropy_fwd", shape,
                               _median_ms(lambda: nn.cross_entropy(logits, target), 3, reps), logits.nbytes,
                               copy_gbps))
    rows.append(_bandwidth_row(
        "cross_entropy_bwd", shape,
        _median_ms(lambda: nn.cross_entropy_backward(gloss, logits, target, lse), 3, reps), 2 * logits.nbytes,
        copy_gbps))
    n = 1 << 24
    p, g, m, v = _randn(n), _randn(n), cp.zeros(n, cp.float32), cp.zeros(n, cp.float32)
    rows.append(_bandwidth_row(
        "adamw_step", f"{n}",
        _median_ms(lambda: nn.adam_step(p, g, m, v, None, 10, 1e-3, 0.9, 0.999, 1e-8, 0.01, True, False), 3, reps),
        7 * 4 * n, copy_gbps))
    rows.append(_bandwidth_row(
        "sgd_momentum_step", f"{n}",
        _median_ms(lambda: nn.sgd_step(p, g, m, 1e-3, 0.9, 0.0, False, 0.0, False), 3, reps), 5 * 4 * n, copy_gbps))
    return rows


def _unfused_attention(q, k, v, causal, scale):
    """cuBLAS (CuPy matmul, TF32 off by default) + CuPy softmax, materialising T x T."""
    s = cp.matmul(q, k.swapaxes(-1, -2)) * cp.float32(scale)
    if causal:
        t = q.shape[-2]
        s = cp.where(cp.tri(t, t, dtype=bool), s, cp.float32(-math.inf))
    s = cp.exp(s - s.max(axis=-1, keepdims=True))
    s /= s.sum(axis=-1, keepdims=True)
    return cp.matmul(s, v)


def _torch_sdpa_times(q, k, v, gout, causal, reps):
    """(forward ms, backward ms) of PyTorch's fp32 SDPA on the same inputs, or None."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    torch.backends.cuda.matmul.allow_tf32 = False
    sdpa = torch.nn.functional.scaled_dot_product_attention
    tq, tk, tv = (torch.as_tensor(a, device="cuda").requires_grad_(True) for a in (q, k, v))
    tg = torch.as_tensor(gout, device="cuda")

    def events():
        return torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

    with torch.no_grad():
        fwd = _median_ms(lambda: sdpa(tq, tk, tv, is_causal=causal), 2, reps, events)
    out = sdpa(tq, tk, tv, is_causal=causal)
    bwd = _median_ms(lambda: torch.autograd.grad(out, (tq, tk, tv), tg, retain_graph=True), 2, reps, events)
    torch.cuda.synchronize()
    return fwd, bwd


def _attention(quick):
    b, h, t, d = 8, 16, 2048, 64
    reps = 5 if quick else 20
    q, k, v, gout = (_randn(b, h, t, d) for _ in range(4))
    rows = []
    for causal in (False, True):
        flops = 4 * b * h * t * t * d / (2 if causal else 1)
        shape = f"B={b} H={h} T={t} d={d}{' causal' if causal else ''}"
        fwd = _median_ms(lambda: nn.sdpa(q, k, v, None, causal, None, 0.0), 2, reps)
        out, saved = nn.sdpa(q, k, v, None, causal, None, 0.0)
        bwd = _median_ms(lambda: nn.sdpa_backward(gout, q, k, v, out, saved, None, causal, None, 0.0), 2, reps)
        unfused = _median_ms(lambda: _unfused_attention(q, k, v, causal, 1 / math.sqrt(d)), 2, reps)

        def row(name, ms, mult, ratio=None, reference=None):
            return dict(name=name, shape=shape, ms=ms, gflops=mult * flops / ms / 1e6, gbps=None, ratio=ratio,
                        reference=reference)

        rows += [row("attention_fwd ours", fwd, 1, unfused / fwd, "unfused cuBLAS + CuPy softmax"),
                 row("attention_fwd unfused", unfused, 1)]
        ref = _torch_sdpa_times(q, k, v, gout, causal, reps)
        if ref is None:
            rows.append(row("attention_bwd ours", bwd, 2.5))
            continue
        rows += [row("attention_fwd ours", fwd, 1, ref[0] / fwd, "torch fp32 SDPA"),
                 row("attention_fwd torch", ref[0], 1),
                 row("attention_bwd ours", bwd, 2.5, ref[1] / bwd, "torch fp32 SDPA backward"),
                 row("attention_bwd torch", ref[1], 2.5)]
    return rows


def copy_row(quick):
    copy_gbps, copy_ms, n = _copy_gbps(quick)
    return dict(name="d2d_copy", shape=f"{n}", ms=copy_ms, gflops=None, gbps=copy_gbps, ratio=1.0,
                reference="ceiling for memory-bound rows")


def run(quick: bool) -> list[dict]:
    """Every nn benchmark row (the copy ceiling's own row is copy_row's); quick keeps the sizes
    and takes fewer repeats."""
    return _memory_bound(quick, _copy_gbps(quick)[0]) + _attention(quick)


if __name__ == "__main__":
    import argparse
    import json

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    for row in [copy_row(args.quick)] + run(args.quick):
        print(json.dumps(row))
