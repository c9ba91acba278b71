"""Whole training steps on the GPU against pyengine's NumPy CPU backend (issue #6: >= 20x).

    python3 bench/variants/train_steps.py [--optimizer adam] [--budget 22] [--no-numba] [--only gpt]

One step = zero_grad, forward, cross-entropy, backward, optimizer step, for the MLP
64-128-64-10 (batch 64), LeNet-5 and the GPT at pyengine demo's small and medium sizes
(pyengine/bench/demo.py SIZES: LeNet-5 batch 128 / 512; GPT (batch, layers, heads, d) =
(32, 2, 4, 64) / (64, 4, 4, 128), context 64) and issue #3's GPT (batch 16, 4 layers, 4
heads, d 128, context 128), vocabulary 65. Columns: our CUDA path with the native kernels
and with the Numba ones, the NumPy CPU backend on this host, and PyTorch CUDA for reference,
all from the same weights and the same random batch.

Before timing, each column's first loss is checked against the CPU backend's (max abs
error printed). GPU steps are timed with CUDA events around each step (the host's Python
and launch time is inside the interval, as a user sees it), after a warm-up, median of the
repeats; CPU steps with the host clock, a few repeats (they are slow). `launches` counts our
kernel launches (pyengine._C calls) and CuPy's allocations in one native step; `native
per-tensor optim` is the same native step with the optimizer's per-parameter launches (as
before the multi-tensor kernels of kernels/optim.cu), timed in turns with it. Rows run in
order until the time budget is spent; the Numba column runs last (its kernels compile on
first use). The Markdown table is printed last.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import sys
import time

import numpy as np

_BENCH = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(_BENCH))
sys.path.insert(0, _BENCH)  # cpu_vs_torch and cpu_vs_torch_seq: the PyTorch twins

import pyengine as pe  # noqa: E402
from pyengine.backend import get_cuda_kernels, set_cuda_kernels  # noqa: E402
from pyengine.bench.timers import time_cpu, time_cuda  # noqa: E402
from pyengine.bench.training import benchmark_optimizer, classification_step  # noqa: E402

VOCAB = 65
# label: (model, model kwargs, batch, context)
# In the order they run (the larger sizes first: within a device_variants.sh share
# of about 25 s the first run on an H100 finished two rows).
CONFIGS = {
    "gpt medium b64 4L d128": ("gpt", dict(n_layer=4, n_head=4, n_embd=128), 64, 64),
    "lenet5 medium b512": ("lenet5", {}, 512, None),
    "gpt issue3 b16 4L d128 T128": ("gpt", dict(n_layer=4, n_head=4, n_embd=128), 16, 128),
    "gpt small b32 2L d64": ("gpt", dict(n_layer=2, n_head=4, n_embd=64), 32, 64),
    "lenet5 small b128": ("lenet5", {}, 128, None),
    "mlp b64": ("mlp", {}, 64, None),
}
TARGET = 20.0


def build_ours(model, kw, context):
    from pyengine.models import get_model

    pe.manual_seed(0)
    if model == "gpt":
        return get_model("gpt", vocab_size=VOCAB, block_size=context, **kw)
    return get_model(model)


def torch_twin(model, kw, context):
    """PyTorch's model with our state-dict keys: the twins bench/cpu_vs_torch.py and
    bench/cpu_vs_torch_seq.py time on the CPU (GPT-2 names for the GPT)."""
    from cpu_vs_torch import torch_twin as cpu_twin
    from cpu_vs_torch_seq import torch_gpt

    if model == "gpt":
        return torch_gpt(VOCAB, context, kw["n_layer"], kw["n_head"], kw["n_embd"])
    return cpu_twin(model)


def batch_data(model, batch, context):
    rng = np.random.default_rng(0)
    if model == "gpt":
        return rng.integers(0, VOCAB, (batch, context)), rng.integers(0, VOCAB, (batch, context))
    if model == "lenet5":
        return rng.standard_normal((batch, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, batch)
    return rng.standard_normal((batch, 64), dtype=np.float32), rng.integers(0, 10, batch)


def ours_step(cfg, device, optimizer, kernels=None):
    """(step function returning the loss tensor, model) on ``device`` with ``kernels``."""
    model_name, kw, batch, context = CONFIGS[cfg]
    if kernels:
        set_cuda_kernels(kernels)
    model = build_ours(model_name, kw, context).to(device)
    x, y = batch_data(model_name, batch, context)
    xt, yt = pe.tensor(x, device=device), pe.tensor(y.astype(np.int64), device=device)
    return classification_step(pe, model, xt, yt, benchmark_optimizer(pe, optimizer, model.parameters()))


def torch_step(cfg, optimizer):
    import torch

    model_name, kw, batch, context = CONFIGS[cfg]
    ours = build_ours(model_name, kw, context)
    model = torch_twin(model_name, kw, context)
    state = {k: torch.tensor(v.detach().numpy()) for k, v in ours.state_dict().items()}
    model.load_state_dict(state)
    model = model.cuda()
    x, y = batch_data(model_name, batch, context)
    xt, yt = torch.tensor(x, device="cuda"), torch.tensor(y.astype(np.int64), device="cuda")
    return classification_step(torch, model, xt, yt, benchmark_optimizer(torch, optimizer, model.parameters()))


def _event_ms(step):
    import cupy as cp

    start, end = cp.cuda.Event(), cp.cuda.Event()
    start.record()
    step()
    end.record()
    end.synchronize()
    return cp.cuda.get_elapsed_time(start, end)


def cuda_median_ms(step, reps, warmup):
    return time_cuda(lambda _i: step(), reps, warmup).ms


def paired_median_ms(step, reps, warmup):
    """(native, per-tensor optimizer) medians, the two taking turns within each repeat so
    that a change in the host's load (or CuPy compiling a kernel) hits both alike."""
    import cupy as cp

    for _ in range(warmup):
        step()
        with per_tensor_optimizer():
            step()
    cp.cuda.get_current_stream().synchronize()
    a, b = [], []
    for _ in range(reps):
        a.append(_event_ms(step))
        with per_tensor_optimizer():
            b.append(_event_ms(step))
    return statistics.median(a), statistics.median(b)


def cpu_median_ms(step, reps, warmup):
    return time_cpu(lambda _i: step(), reps, warmup).ms


def first_loss(step):
    return float(step().item())


class _Stopped(Exception):
    pass


class _Counting:
    """pyengine._C seen through a counter of its calls (the launchers; a few queries too)."""

    QUERIES = ("layer_norm_partial_rows", "layer_norm_fused_partial_rows", "kernel_version", "attention_max_head_dim")

    def __init__(self, real):
        self._real, self.calls = real, 0

    def __getattr__(self, name):
        attr = getattr(self._real, name)
        if not callable(attr) or name in self.QUERIES:
            return attr

        def counted(*a, **k):
            self.calls += 1
            return attr(*a, **k)
        return counted


@contextlib.contextmanager
def per_tensor_optimizer():
    """The optimizers' per-parameter path (one launch per parameter), as before the
    multi-tensor kernels: the backend stops offering them."""
    from pyengine.backend import cuda_backend

    saved = cuda_backend.sgd_step_multi, cuda_backend.adam_step_multi
    del cuda_backend.sgd_step_multi, cuda_backend.adam_step_multi
    try:
        yield
    finally:
        cuda_backend.sgd_step_multi, cuda_backend.adam_step_multi = saved


def count_launches(step):
    """(our kernel launches, CuPy allocations) in one native step."""
    import cupy as cp
    from cupy.cuda import memory_hook

    from pyengine.backend import _cuda_nn, cuda_backend

    class Allocs(memory_hook.MemoryHook):
        name = "train_steps_allocs"

        def __init__(self):
            self.n = 0

        def malloc_preprocess(self, *a, **kw):
            self.n += 1

    real = pe._C
    proxy = _Counting(real)
    hook = Allocs()
    pe._C, cuda_backend._C = proxy, proxy
    try:
        with hook:
            step()
        cp.cuda.get_current_stream().synchronize()
    finally:
        pe._C, cuda_backend._C = real, real
    assert _cuda_nn._kernels() is real
    return proxy.calls, hook.n


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--optimizer", choices=("sgd", "adam", "adamw"), default="adam")
    ap.add_argument("--budget", type=float, default=float(os.environ.get("TRAIN_STEPS_BUDGET", 22)),
                    help="seconds for the whole run (bench/device_variants.sh gives each script its share "
                         "of DEVICE_VARIANTS_BUDGET; default 22, or $TRAIN_STEPS_BUDGET)")
    ap.add_argument("--reps", type=int, default=10, help="GPU repeats per cell")
    ap.add_argument("--no-numba", action="store_true")
    ap.add_argument("--only", default="", help="run the configs whose label contains this")
    args = ap.parse_args(argv)
    t_start = time.perf_counter()

    def left():
        return args.budget - (time.perf_counter() - t_start)

    import cupy as cp
    try:
        import torch
        has_torch = torch.cuda.is_available()
    except ImportError:
        has_torch = False
    props = cp.cuda.runtime.getDeviceProperties(0)
    print(f"device: {props['name'].decode()}; optimizer {args.optimizer}; CPU threads {os.cpu_count()}")
    cfgs = [c for c in CONFIGS if args.only in c]
    rows = {c: {} for c in cfgs}
    kernels_before = get_cuda_kernels()

    def stop(signum, frame):  # `timeout` asks first: print the table of what has run
        raise _Stopped()
    signal.signal(signal.SIGTERM, stop)
    try:
        for cfg in cfgs:
            if left() < 4:
                print(f"{cfg}: skipped, budget spent")
                continue
            r = rows[cfg]
            cpu = ours_step(cfg, "cpu", args.optimizer)
            ref = r["ref"] = first_loss(cpu)
            errs = []
            native = ours_step(cfg, "cuda", args.optimizer, "native")
            errs.append(("native", abs(first_loss(native) - ref)))
            r["native"], r["per_tensor"] = paired_median_ms(native, args.reps, 4)
            r["launches"], r["allocs"] = count_launches(native)
            if has_torch:
                tstep = torch_step(cfg, args.optimizer)
                errs.append(("torch", abs(float(tstep().item()) - ref)))
                r["torch"] = cuda_median_ms(tstep, args.reps, 3)
            # The CPU is slow at the medium sizes: a step or two of it, after the first.
            t0 = time.perf_counter()
            cpu()
            one = time.perf_counter() - t0
            reps = min(5, int(min(left() * 0.15, 3.0) / max(one, 1e-6)))
            r["cpu"] = cpu_median_ms(cpu, reps, 0) if reps > 1 else 1e3 * one
            reps = max(reps, 1)
            print(f"{cfg}: first loss {ref:.5f} (CPU); max abs error "
                  + ", ".join(f"{n} {e:.2e}" for n, e in errs)
                  + f"; CPU {r['cpu']:.2f} ms ({reps} reps), native {r['native']:.3f} ms", flush=True)
        if not args.no_numba:
            for cfg in cfgs:
                if "cpu" not in rows[cfg] or left() < 6:
                    continue
                try:
                    nstep = ours_step(cfg, "cuda", args.optimizer, "numba")
                    rows[cfg]["numba_err"] = abs(first_loss(nstep) - rows[cfg]["ref"])
                    rows[cfg]["numba"] = cuda_median_ms(nstep, max(3, args.reps // 3), 2)
                    print(f"{cfg}: numba {rows[cfg]['numba']:.3f} ms (max abs error {rows[cfg]['numba_err']:.2e})",
                          flush=True)
                except Exception as exc:  # noqa: BLE001  (a provider that fails shows in the table)
                    rows[cfg]["numba_fail"] = f"{type(exc).__name__}: {exc}"[:120]
                    print(f"{cfg}: numba failed: {rows[cfg]['numba_fail']}", flush=True)
    except _Stopped:
        print("stopped by SIGTERM: the table has the rows that finished")
    finally:
        set_cuda_kernels(kernels_before)

    def ms(v):
        return "-" if v is None else f"{v:.3f}" if v < 10 else f"{v:.1f}"

    def ratio(cpu, gpu):
        return "-" if cpu is None or not gpu else f"{cpu / gpu:.1f}x"

    print()
    print(f"| step ({args.optimizer}) | CPU ms | native ms | native per-tensor optim ms | numba ms | torch-cuda ms "
          f"| native/CPU speedup (target {TARGET:.0f}x) | numba speedup | torch speedup | our launches | allocs |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for cfg in cfgs:
        r = rows[cfg]
        if "cpu" not in r:
            continue
        ok = "" if r["cpu"] / r["native"] >= TARGET else " (below)"
        print(f"| {cfg} | {ms(r['cpu'])} | {ms(r['native'])} | {ms(r.get('per_tensor'))} | {ms(r.get('numba'))} | "
              f"{ms(r.get('torch'))} | "
              f"{ratio(r['cpu'], r['native'])}{ok} | {ratio(r['cpu'], r.get('numba'))} | "
              f"{ratio(r['cpu'], r.get('torch'))} | {r['launches']} | {r['allocs']} |")
    print(f"\ntotal {time.perf_counter() - t_start:.1f} s")


if __name__ == "__main__":
    main()
