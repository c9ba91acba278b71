"""Flash-attention kernel versions side by side (pyengine._C.attention_*_variant), one process.

    python3 bench/variants/attention.py [--budget SECONDS]

Forward: every version of attention_forward_variant_names() at B=8 H=16 T=2048 d=64, not
causal and causal, against PyTorch's fp32 SDPA on the device (and the unfused cuBLAS +
softmax path is in bench/gpu_bench_nn.py). Backward: every version of
attention_backward_variant_names() at the same size. Last, while the budget lasts, every
forward version at d=128 (not causal). Before a version is timed its output is
compared with torch's (max abs error) and, on a small odd case (b*h = 6, l = 129, s = 65,
e = ev = 80, causal and with a bool mask), with a float64 NumPy reference: a version that
fails is reported and not timed. Timing: CUDA events, 2 warm-ups, median of REPS. FLOPs
4*B*H*T*T*d, halved when causal; backward 2.5x. The Markdown table is printed last.
"""
from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import time

import numpy as np
import cupy as cp

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

from gpu_bench_nn import _median_ms  # noqa: E402

import pyengine._C as C  # noqa: E402

B, H, T, D = 8, 16, 2048, 64
REPS = 7
FWD_TOL = 2e-5  # max abs error on outputs of size ~0.1-1 (float32 accumulation over 2048 keys)


def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch if torch.cuda.is_available() else None


def _args(bh, l, s, e, ev, causal, heads, mask=None):
    kind = 0 if mask is None else 1
    st = (0, 0, 0, 0) if mask is None else (0, 0, mask.strides[0] // mask.itemsize, 1)
    return dict(bh=bh, l=l, s=s, e=e, ev=ev, scale=1.0 / math.sqrt(e), causal=causal,
                mask=0 if mask is None else mask.data.ptr, mask_kind=kind, heads=heads,
                sb=st[0], sh=st[1], sl=st[2], ss=st[3])


def _ref64(q, k, v, causal, mask):
    """softmax(q k^T / sqrt(e) + bias) v in float64, and the row lse."""
    q, k, v = (np.asarray(x, dtype=np.float64) for x in (q, k, v))
    sc = q @ k.swapaxes(-1, -2) / math.sqrt(q.shape[-1])
    allowed = np.ones(sc.shape[-2:], dtype=bool) if mask is None else mask
    if causal:
        allowed = allowed & np.tri(*sc.shape[-2:], dtype=bool)
    sc = np.where(allowed, sc, -np.inf)
    m = sc.max(-1, keepdims=True)
    p = np.exp(sc - m)
    return (p / p.sum(-1, keepdims=True)) @ v, (m + np.log(p.sum(-1, keepdims=True)))[..., 0]


def _small_error(variant, rng):
    """Max abs error of one version on small odd cases against float64 (out and lse)."""
    worst = 0.0
    bh, l, s, e = 6, 129, 65, 80
    for causal, use_mask in ((False, False), (True, False), (False, True)):
        q, k, v = (rng.standard_normal((bh, n, e)).astype(np.float32) for n in (l, s, s))
        mask = rng.random((l, s)) < 0.7 if use_mask else None
        if mask is not None:
            mask[:, 0] = True  # no all-masked rows (NaN by definition)
        dmask = None if mask is None else cp.asarray(mask)
        out = cp.full((bh, l, e), cp.nan, dtype=cp.float32)
        lse = cp.full((bh, l), cp.nan, dtype=cp.float32)
        dq, dk, dv = (cp.asarray(x) for x in (q, k, v))  # held until the kernel has run
        C.attention_forward_variant(variant=variant, **_args(bh, l, s, e, e, causal, 1, dmask), q=dq.data.ptr,
                                    k=dk.data.ptr, v=dv.data.ptr, out=out.data.ptr, lse=lse.data.ptr, stream=0)
        cp.cuda.Device().synchronize()
        ro, rl = _ref64(q, k, v, causal, mask)
        worst = max(worst, float(np.max(np.abs(cp.asnumpy(out) - ro))), float(np.max(np.abs(cp.asnumpy(lse) - rl))))
    return worst


def _marked(names, default):
    """(index, name) of the versions this extension has, the production one marked '(default)':
    all of them with PYENGINE_KERNEL_VARIANTS=ON, else the default alone."""
    built = C.kernel_variants_built() if hasattr(C, "kernel_variants_built") else True
    return [(i, n + (" (default)" if i == default else "")) for i, n in enumerate(names) if built or i == default]


def _verdict(row):
    """'yes' when every error measured is within float32 tolerance (forward: 5e-5 against
    float64, 2e-4 against torch, both max abs on outputs of order 1; backward: 1e-2 max abs
    against torch on gradients of order 10), else 'NO'."""
    lim = (5e-5, 2e-4) if row["kind"] == "fwd" else (5e-5, 1e-2)
    errs = [row.get("err64", 0.0)] + [row.get(f"err_torch_{c}", 0.0) for c in (False, True)]
    ok = errs[0] < lim[0] and all(not (e >= lim[1]) for e in errs[1:]) and np.isfinite(errs[0])
    return "yes" if ok else "NO"


def _default_budget():
    """Seconds this script may spend: 70% of its share of bench/device_variants.sh's budget."""
    here = os.path.dirname(os.path.abspath(__file__))
    n = max(1, len([f for f in os.listdir(here) if f.endswith(".py")]))
    return min(40.0, 0.7 * float(os.environ.get("DEVICE_VARIANTS_BUDGET", 120)) / n)


def _table(rows, torch_ms):
    """The ranked Markdown table of the rows measured so far."""
    def fmt(x, spec=".3f"):
        return "-" if x is None else format(x, spec)

    print()
    print(f"attention versions, B={B} H={H} T={T} d={D} fp32 ({C.device_name(0)}); ratio = torch ms / ours "
          f"(> 1: faster); err = max abs vs torch fp32 SDPA; err64 = max abs vs float64 (b*h=6 l=129 s=65 d=80)")
    print("| pass | # | version | ms | causal ms | TFLOP/s | causal TFLOP/s | vs torch | causal vs torch "
          "| err | causal err | err64 | ok | d=128 ms |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    flops = 4 * B * H * T * T * D
    for kind in ("fwd", "bwd"):
        mult = 1.0 if kind == "fwd" else 2.5
        ranked = sorted((r for r in rows if r["kind"] == kind), key=lambda r: r.get("ms_False", 1e9))
        for r in ranked:
            if "error" in r:
                print(f"| {kind} | {r['variant']} | {r['name']} | FAILED: {r['error']} |")
                continue
            ms, cms = r.get("ms_False"), r.get("ms_True")
            t_full, t_causal = (torch_ms.get(c if kind == "fwd" else ("bwd", c)) for c in (False, True))
            ratio = None if ms is None or t_full is None else t_full / ms
            cratio = None if cms is None or t_causal is None else t_causal / cms
            print(f"| {kind} | {r['variant']} | {r['name']} | {fmt(ms)} | {fmt(cms)} "
                  f"| {fmt(None if ms is None else mult * flops / ms / 1e9, '.1f')} "
                  f"| {fmt(None if cms is None else mult * flops / 2 / cms / 1e9, '.1f')} "
                  f"| {fmt(ratio, '.2f')} | {fmt(cratio, '.2f')} | {fmt(r.get('err_torch_False'), '.1e')} "
                  f"| {fmt(r.get('err_torch_True'), '.1e')} | {fmt(r.get('err64'), '.1e')} | {_verdict(r)} "
                  f"| {fmt(r.get('ms_d128'))} |")
        t_full, t_causal = (torch_ms.get(c if kind == "fwd" else ("bwd", c)) for c in (False, True))
        if t_full is not None:
            print(f"| {kind} | - | torch fp32 SDPA | {fmt(t_full)} | {fmt(t_causal)} "
                  f"| {fmt(mult * flops / t_full / 1e9, '.1f')} "
                  f"| {fmt(None if t_causal is None else mult * flops / 2 / t_causal / 1e9, '.1f')} "
                  f"| 1.00 | 1.00 | - | - | - | - | {fmt(torch_ms.get('d128') if kind == 'fwd' else None)} |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--budget", type=float, default=_default_budget())
    args = ap.parse_args()
    t_start = time.time()
    torch = _torch()
    rng = np.random.default_rng(0)
    print(f"device: {C.device_name(0)}; B={B} H={H} T={T} d={D}; torch: {torch.__version__ if torch else 'absent'}")
    bh = B * H
    q, k, v, gout = (cp.random.standard_normal((bh, T, D), dtype=cp.float32) for _ in range(4))
    names = _marked(C.attention_forward_variant_names(), getattr(C, "attention_forward_variant_default", 0))
    rows = []
    ref = {}
    torch_ms = {}

    def on_term(signum, frame):  # device_variants.sh's timeout: show what was measured
        print(f"stopped by signal {signum} after {time.time() - t_start:.0f}s")
        _table(rows, torch_ms)
        sys.exit(124)

    signal.signal(signal.SIGTERM, on_term)
    if torch is not None:
        tq, tk, tv = (torch.as_tensor(x, device="cuda").view(B, H, T, D) for x in (q, k, v))
        ev = lambda: (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))  # noqa: E731
        for causal in (False, True):
            f = lambda: torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, is_causal=causal)  # noqa: E731
            ref[causal] = cp.asarray(f().reshape(bh, T, D))
            torch_ms[causal] = _median_ms(f, 2, REPS, ev)
            print(f"torch fp32 SDPA causal={causal}: {torch_ms[causal]:.3f} ms", flush=True)
    out = cp.empty((bh, T, D), dtype=cp.float32)
    lse = cp.empty((bh, T), dtype=cp.float32)
    for i, name in names:
        if time.time() - t_start > args.budget:
            print(f"budget of {args.budget:.0f}s spent: versions {i}.. not run")
            break
        row = dict(kind="fwd", variant=i, name=name)
        try:
            row["err64"] = _small_error(i, rng)
            for causal in (False, True):
                call = lambda: C.attention_forward_variant(  # noqa: E731
                    variant=i, **_args(bh, T, T, D, D, causal, H), q=q.data.ptr, k=k.data.ptr, v=v.data.ptr,
                    out=out.data.ptr, lse=lse.data.ptr, stream=cp.cuda.get_current_stream().ptr)
                out.fill(cp.nan)
                call()
                err = float(cp.max(cp.abs(out - ref[causal]))) if causal in ref else float("nan")
                if not np.isfinite(float(cp.max(cp.abs(out)))):
                    err = float("inf")
                row[f"err_torch_{causal}"] = err
                row[f"ms_{causal}"] = _median_ms(call, 2, REPS)
        except Exception as exc:  # a failing version is reported, the others still run
            row["error"] = f"{type(exc).__name__}: {exc}"[:120]
        rows.append(row)
        print(row, flush=True)

    bnames = _marked(C.attention_backward_variant_names(), getattr(C, "attention_backward_variant_default", 0))
    if time.time() - t_start < args.budget:
        delta = cp.empty((bh, T), dtype=cp.float32)
        gq, gk, gv = (cp.empty_like(q) for _ in range(3))
        for causal in (False, True):
            C.attention_forward_variant(variant=C.attention_forward_variant_default, **_args(bh, T, T, D, D, causal, H),
                                        q=q.data.ptr, k=k.data.ptr, v=v.data.ptr, out=out.data.ptr, lse=lse.data.ptr,
                                        stream=0)
            o_c, lse_c = out.copy(), lse.copy()
            tref = None
            if torch is not None:
                tq2, tk2, tv2 = (torch.as_tensor(x, device="cuda").view(B, H, T, D).clone().requires_grad_()
                                 for x in (q, k, v))
                to = torch.nn.functional.scaled_dot_product_attention(tq2, tk2, tv2, is_causal=causal)
                tg = torch.as_tensor(gout, device="cuda").view(B, H, T, D)
                tref = [cp.asarray(g.reshape(bh, T, D))
                        for g in torch.autograd.grad(to, (tq2, tk2, tv2), tg, retain_graph=True)]
                tbwd = lambda: torch.autograd.grad(to, (tq2, tk2, tv2), tg, retain_graph=True)  # noqa: E731
                torch_ms[("bwd", causal)] = _median_ms(tbwd, 2, REPS, ev)
            for i, name in bnames:
                row = next((r for r in rows if r["kind"] == "bwd" and r["variant"] == i), None)
                if row is None:
                    row = dict(kind="bwd", variant=i, name=name)
                    rows.append(row)
                call = lambda: C.attention_backward_variant(  # noqa: E731
                    variant=i, **_args(bh, T, T, D, D, causal, H), q=q.data.ptr, k=k.data.ptr, v=v.data.ptr,
                    out=o_c.data.ptr, lse=lse_c.data.ptr, gout=gout.data.ptr, delta=delta.data.ptr,
                    gq=gq.data.ptr, gk=gk.data.ptr, gv=gv.data.ptr, stream=cp.cuda.get_current_stream().ptr)
                try:
                    for g in (gq, gk, gv):
                        g.fill(cp.nan)
                    call()
                    if tref is not None:
                        row[f"err_torch_{causal}"] = max(float(cp.max(cp.abs(g - r)))
                                                         for g, r in zip((gq, gk, gv), tref))
                    row[f"ms_{causal}"] = _median_ms(call, 2, REPS)
                except Exception as exc:
                    row["error"] = f"{type(exc).__name__}: {exc}"[:120]
                print(row, flush=True)

    # Head dim 128 (not causal), as long as the budget lasts: a version chosen at d = 64
    # must not lose at the largest head dim the kernels take.
    if time.time() - t_start < args.budget:
        q8, k8, v8 = (cp.random.standard_normal((bh, T, 128), dtype=cp.float32) for _ in range(3))
        out8 = cp.empty((bh, T, 128), dtype=cp.float32)
        if torch is not None:
            tq8, tk8, tv8 = (torch.as_tensor(x, device="cuda").view(B, H, T, 128) for x in (q8, k8, v8))
            f8 = lambda: torch.nn.functional.scaled_dot_product_attention(tq8, tk8, tv8)  # noqa: E731
            torch_ms["d128"] = _median_ms(f8, 2, REPS, ev)
        for r in (r for r in rows if r["kind"] == "fwd" and "error" not in r):
            if time.time() - t_start > args.budget:
                break
            call = lambda: C.attention_forward_variant(  # noqa: E731
                variant=r["variant"], **_args(bh, T, T, 128, 128, False, H), q=q8.data.ptr, k=k8.data.ptr,
                v=v8.data.ptr, out=out8.data.ptr, lse=lse.data.ptr, stream=cp.cuda.get_current_stream().ptr)
            r["ms_d128"] = _median_ms(call, 1, 5)
            print(r["variant"], "d=128:", r["ms_d128"], flush=True)
    _table(rows, torch_ms)


if __name__ == "__main__":
    main()
