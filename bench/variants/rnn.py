"""CharRNN training step (LSTM and GRU) on the GPU, native and Numba kernel providers, against
the NumPy CPU backend, side by side in one process.

    python3 bench/variants/rnn.py [--reps 10] [--budget 27]

Sizes: the bench suite's (pyengine bench "train charrnn": batch 8, T 64, embed 64, hidden 128,
vocab 65) and issue #3's (batch 32, T 64, input 32, hidden 128). One step = forward, cross-
entropy over every position, backward, SGD with momentum, as bench/cpu_vs_torch_seq.py times
it. Every recurrence step is one matmul batched over the gates and one fused cell call
(lstm_cell / gru_cell: one kernel launch each way; kernels/rnn.cu, _numba_kernels/rnn.py).

Before timing, each provider's loss and gradients (w_hh, w_ih, head weight) after one forward
and backward from the same weights are checked against the CPU in float64; `max err` is the
largest |got - ref| / max |ref| over them. GPU steps are timed with CUDA events around one step,
CPU steps with perf_counter; medians after a warm-up. The Numba provider compiles its kernels
at the first call (minutes of NVRTC on a fresh machine at worst), so it runs last and is
skipped once the time budget is spent. The Markdown table is printed last, or when SIGTERM
(device_variants.sh's per-script limit) stops the run early.
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

import pyengine as pe  # noqa: E402
from pyengine.backend import set_cuda_kernels  # noqa: E402
from pyengine.bench.timers import time_cpu, time_cuda  # noqa: E402
from pyengine.bench.training import benchmark_optimizer, classification_step  # noqa: E402
from pyengine.models.charrnn import CharRNN  # noqa: E402
from pyengine.nn import functional as F  # noqa: E402

VOCAB = 65
SIZES = {"suite": dict(batch=8, seq=64, embed=64, hidden=128),
         "issue": dict(batch=32, seq=64, embed=32, hidden=128)}


def build(cell, size):
    pe.manual_seed(0)
    return CharRNN(vocab_size=VOCAB, embed_dim=size["embed"], hidden_size=size["hidden"], cell=cell)


def loss_of(model, x, y):
    out = model(x)
    return F.cross_entropy(out.reshape(-1, VOCAB), y.reshape(-1))


def grads_once(model, x, y, device):
    model.zero_grad()
    loss = loss_of(model, pe.tensor(x, device=device), pe.tensor(y, device=device))
    loss.backward()
    params = (model.rnn.weight_hh_l0, model.rnn.weight_ih_l0, model.head.weight)
    return [np.asarray(loss.item())] + [p.grad.cpu().numpy().astype(np.float64) for p in params]


def max_err(got, ref):
    worst = 0.0
    for g, r in zip(got, ref):
        d = np.atleast_1d(np.abs(np.asarray(g, np.float64) - r))
        d[~np.isfinite(d)] = np.inf
        worst = max(worst, float(d.max()) / max(float(np.abs(r).max()), 1e-30))
    return worst


def train_step(model, x, y, device):
    xt, yt = pe.tensor(x, device=device), pe.tensor(y, device=device)
    return classification_step(pe, model, xt, yt, benchmark_optimizer(pe, "sgd", model.parameters()))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--providers", default="native,cpu,numba")
    parser.add_argument("--budget", type=float, default=12.0, help="seconds before Numba cases are skipped")
    args = parser.parse_args(argv)
    t_start = time.perf_counter()
    if args.providers != "cpu":
        print(f"device: {cp.cuda.runtime.getDeviceProperties(0)['name'].decode()}, CuPy {cp.__version__}")
    rng = np.random.default_rng(0)
    rows = []

    def on_term(signum, _frame):  # device_variants.sh's per-script timeout: show what was measured
        print(f"stopped by signal {signum} after {time.perf_counter() - t_start:.0f}s")
        _table(rows)
        sys.exit(124)

    signal.signal(signal.SIGTERM, on_term)
    for provider in args.providers.split(","):
        for cell in ("lstm", "gru"):
            for size_name, size in SIZES.items():
                label = f"{cell} {size_name} (B {size['batch']}, T {size['seq']}, in {size['embed']}, H {size['hidden']})"
                if provider == "numba" and time.perf_counter() - t_start > args.budget:
                    print(f"{provider:<6} {label}: skipped (time budget spent)", flush=True)
                    rows.append((label, provider, None, None))
                    continue
                x = rng.integers(0, VOCAB, (size["batch"], size["seq"])).astype(np.int64)
                y = rng.integers(0, VOCAB, (size["batch"], size["seq"])).astype(np.int64)
                ref = build(cell, size).double()
                want = grads_once(ref, x, y, "cpu")
                model = build(cell, size)
                device = "cpu" if provider == "cpu" else "cuda"
                if provider != "cpu":
                    set_cuda_kernels(provider)
                    model.to("cuda")
                err = max_err(grads_once(model, x, y, device), want)
                step = train_step(model, x, y, device)
                timer = time_cpu if provider == "cpu" else time_cuda
                ms = timer(lambda _i: step(), args.reps, warmup=2).ms
                rows.append((label, provider, ms, err))
                print(f"{provider:<6} {label}: {ms:.2f} ms/step, max err {err:.1e}", flush=True)
    set_cuda_kernels("native")
    _table(rows)


def _table(rows):
    cpu = {label: ms for label, provider, ms, _ in rows if provider == "cpu"}
    print("\n| case | provider | ms/step | NumPy CPU ms / this | max err |")
    print("|---|---|---:|---:|---:|")
    for label, provider, ms, err in rows:
        if ms is None:
            print(f"| {label} | {provider} | skipped | | |")
            continue
        speed = f"{cpu[label] / ms:.2f}x" if ms and label in cpu else ""
        print(f"| {label} | {provider} | {ms:.2f} | {speed} | {err:.1e} |")


if __name__ == "__main__":
    main()
