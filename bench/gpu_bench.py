"""GPU benchmarks of the native kernels, side by side with the libraries they replace.

    python3 bench/gpu_bench.py --quick --out bench.json [--summary summary.md]

Rows (one dict each, as bench/gpu_bench_nn.py's and bench/gpu_bench_numba.py's, whose rows are included):
  SGEMM ours vs cuBLAS (PyTorch, TF32 off; and CuPy's @) at 1024^3 and 4096^3, and TF32 ours vs
  cuBLAS TF32; conv2d forward and backward ours vs cuDNN fp32 (PyTorch, TF32 off) on a
  ResNet 3x3 layer (batch 64, 64 -> 64 channels, 56 x 56); activations and pooling in GB/s
  against the measured device-to-device copy bandwidth.
Timing: CUDA events around each call, warm-up first, median of the repeats, random normal
inputs (never zeros); memory-bound inputs are larger than the 50 MB L2. FLOPs: 2mnk per
GEMM; a convolution's 2 * N * O * OH * OW * C/groups * kh * kw, twice that for its backward
(data and weight). ratio: the reference's time over ours (> 1 means we are faster) for
compute rows, our GB/s over the copy's for memory-bound rows.
The Markdown table is printed last (and written to --summary).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import cupy as cp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import gpu_bench_nn  # noqa: E402  (bench/ is not a package)
from gpu_bench_nn import _bandwidth_row, _copy_gbps, _median_ms, _randn  # noqa: E402

import pyengine as pe  # noqa: E402
from pyengine.backend import cuda_backend as cb  # noqa: E402


def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch if torch.cuda.is_available() else None


def _torch_events():
    torch = _torch()
    return torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)


def _compute_row(name, shape, ms, flops, ref_ms=None, reference=None):
    return dict(name=name, shape=shape, ms=ms, gflops=flops / ms / 1e6, gbps=None,
                ratio=None if ref_ms is None else ref_ms / ms, reference=reference)


def _sgemm(quick):
    torch = _torch()
    rows = []
    for n in (1024, 4096):
        reps = (10 if quick else 30) if n == 4096 else (20 if quick else 100)
        a, b = _randn(n, n), _randn(n, n)
        flops, shape = 2 * n ** 3, f"{n}^3"
        for tf32 in (False, True):
            pe.backends.cuda.matmul.allow_tf32 = tf32
            ours = _median_ms(lambda: cb.matmul(a, b), 3, reps)
            tag = "tf32" if tf32 else "fp32"
            ref_ms, ref_name = None, None
            if torch is not None:
                torch.backends.cuda.matmul.allow_tf32 = tf32
                ta, tb = torch.as_tensor(a, device="cuda"), torch.as_tensor(b, device="cuda")
                ref_ms = _median_ms(lambda: torch.matmul(ta, tb), 3, reps, _torch_events)
                ref_name = f"cuBLAS {tag} (torch)"
                rows.append(_compute_row(f"sgemm {tag} cuBLAS", shape, ref_ms, flops))
            elif not tf32:
                ref_ms = _median_ms(lambda: a @ b, 3, reps)
                ref_name = "cuBLAS fp32 (CuPy @)"
                rows.append(_compute_row("sgemm fp32 cuBLAS", shape, ref_ms, flops))
            rows.append(_compute_row(f"sgemm {tag} ours", shape, ours, flops, ref_ms, ref_name))
        pe.backends.cuda.matmul.allow_tf32 = False
    if torch is not None:
        torch.backends.cuda.matmul.allow_tf32 = False
    return rows


def _conv(quick):
    torch = _torch()
    n, c, h, w, o, k = 64, 64, 56, 56, 64, 3
    reps = 10 if quick else 30
    x, wt, bias = _randn(n, c, h, w), _randn(o, c, k, k) * 0.05, _randn(o)
    args = ((1, 1), (1, 1), (1, 1), 1)
    gy = _randn(n, o, h, w)
    flops = 2 * n * o * h * w * c * k * k
    shape = f"x=({n},{c},{h},{w}) w=({o},{c},{k},{k}) pad 1"
    fwd = _median_ms(lambda: cb.conv2d(x, wt, bias, *args), 3, reps)
    bwd = _median_ms(lambda: cb.conv2d_backward(gy, x, wt, *args, needs=(True, True, False)), 3, reps)
    bwd_data = _median_ms(lambda: cb.conv2d_backward(gy, x, wt, *args, needs=(True, False, False)), 3, reps)
    bwd_weight = _median_ms(lambda: cb.conv2d_backward(gy, x, wt, *args, needs=(False, True, False)), 3, reps)
    ref_f = ref_b = None
    rows = []
    if torch is not None:
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cudnn.benchmark = True
        tx, tw, tb, tg = (torch.as_tensor(a, device="cuda") for a in (x, wt, bias, gy))
        conv = torch.nn.functional.conv2d
        ref_f = _median_ms(lambda: conv(tx, tw, tb, padding=1), 3, reps, _torch_events)
        ref_b = _median_ms(lambda: torch.ops.aten.convolution_backward(
            tg, tx, tw, [o], [1, 1], [1, 1], [1, 1], False, [0, 0], 1, [True, True, False]), 3, reps, _torch_events)
        rows += [_compute_row("conv2d fwd cuDNN", shape, ref_f, flops),
                 _compute_row("conv2d bwd cuDNN", shape, ref_b, 2 * flops)]
    rows += [_compute_row("conv2d fwd ours", shape, fwd, flops, ref_f, "cuDNN fp32 (torch)" if ref_f else None),
             _compute_row("conv2d bwd ours", shape, bwd, 2 * flops, ref_b, "cuDNN fp32 (torch)" if ref_b else None),
             _compute_row("conv2d bwd-data ours", shape, bwd_data, flops),
             _compute_row("conv2d bwd-weight ours", shape, bwd_weight, flops)]
    return rows


def _memory_bound(quick, copy_gbps):
    reps = 10 if quick else 50
    n = 1 << 26  # 256 MiB of float32
    x, gy = _randn(n), _randn(n)
    rows = []
    for name, param in (("relu", None), ("gelu", "none"), ("gelu", "tanh"), ("sigmoid", None)):
        y = cb.activation(name, x, param)
        label = name if param in (None, "none") else f"{name}_{param}"
        rows.append(_bandwidth_row(f"{label} fwd", f"{n}", _median_ms(lambda: cb.activation(name, x, param), 3,
                                                                    reps), 2 * x.nbytes, copy_gbps))
        rows.append(_bandwidth_row(f"{label} bwd", f"{n}", _median_ms(
            lambda: cb.activation_backward(name, gy, x, y, param), 3, reps), 3 * x.nbytes, copy_gbps))
    px = _randn(64, 64, 112, 112)
    shape = "x=(64,64,112,112)"
    y, idx = cb.max_pool2d(px, (3, 3), (2, 2), (1, 1))
    gpool = _randn(*y.shape)
    rows.append(_bandwidth_row("max_pool 3x3/2 fwd", shape, _median_ms(
        lambda: cb.max_pool2d(px, (3, 3), (2, 2), (1, 1)), 3, reps), px.nbytes + y.nbytes + idx.nbytes, copy_gbps))
    rows.append(_bandwidth_row("max_pool 3x3/2 bwd", shape, _median_ms(
        lambda: cb.max_pool2d_backward(gpool, idx, px.shape), 3, reps), gpool.nbytes + idx.nbytes + px.nbytes,
        copy_gbps))  # gy and the indices read, gx written once: the minimum (a zero fill is not counted)
    ya = cb.avg_pool2d(px, (2, 2), (2, 2), (0, 0))
    rows.append(_bandwidth_row("avg_pool 2x2/2 fwd", shape, _median_ms(
        lambda: cb.avg_pool2d(px, (2, 2), (2, 2), (0, 0)), 3, reps), px.nbytes + ya.nbytes, copy_gbps))
    rows.append(_bandwidth_row("avg_pool 2x2/2 bwd", shape, _median_ms(
        lambda: cb.avg_pool2d_backward(ya, px.shape, (2, 2), (2, 2), (0, 0)), 3, reps), px.nbytes + ya.nbytes,
        copy_gbps))
    return rows


def _fmt(v, spec):
    return "" if v is None else format(v, spec)


def markdown(rows):
    lines = ["| kernel | shape | ms | GFLOP/s | GB/s | ratio | vs |", "|---|---|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['shape']} | {_fmt(r['ms'], '.4f')} | {_fmt(r['gflops'], '.0f')} | "
                     f"{_fmt(r['gbps'], '.0f')} | {_fmt(r['ratio'], '.2f')} | {r.get('reference') or ''} |")
    return "\n".join(lines)


def _numba_rows(quick):
    import gpu_bench_numba  # numba is optional: a missing one becomes an error row, not a crash
    return gpu_bench_numba.run(quick)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats (the device check's budget)")
    ap.add_argument("--out", default="bench.json")
    ap.add_argument("--summary", default=None, help="Markdown table file (default: beside --out)")
    args = ap.parse_args()
    ok, reason = cb.available()
    if not ok:
        sys.exit(f"gpu_bench: native kernels unavailable: {reason}")
    props = cp.cuda.runtime.getDeviceProperties(0)
    meta = dict(card=props["name"].decode() if isinstance(props["name"], bytes) else props["name"],
                sms=props["multiProcessorCount"], date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                command=" ".join(sys.argv), cupy=cp.__version__)
    torch = _torch()
    meta["torch"] = torch.__version__ if torch is not None else None
    copy_gbps, copy_ms, n = _copy_gbps(args.quick)
    rows = [dict(name="d2d_copy", shape=f"{n}", ms=copy_ms, gflops=None, gbps=copy_gbps, ratio=1.0,
                 reference="ceiling for memory-bound rows")]
    errors = []
    for stage in (_sgemm, _conv, lambda q: _memory_bound(q, copy_gbps), gpu_bench_nn.run, _numba_rows):
        try:
            rows += stage(args.quick)
        except Exception as exc:  # one family failing must not lose the others' numbers
            errors.append(repr(exc))
            print(f"gpu_bench: a stage failed: {exc!r}", file=sys.stderr)
    with open(args.out, "w") as f:
        json.dump(dict(meta=meta, rows=rows, errors=errors), f, indent=1)
    table = markdown(rows)
    summary = args.summary or os.path.join(os.path.dirname(os.path.abspath(args.out)), "summary.md")
    with open(summary, "w") as f:
        f.write(f"{meta['card']}, {meta['date']}, `{meta['command']}`\n\n{table}\n")
    print(f"\n{meta['card']} ({meta['sms']} SMs), {meta['date']}")
    print(table)


if __name__ == "__main__":
    main()
