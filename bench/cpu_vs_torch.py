"""pyengine's NumPy CPU backend against PyTorch CPU, side by side in one run.

Times one training step (forward, cross-entropy, backward, SGD-with-momentum step) of

  * the MLP 64-128-64-10 at batch 64 (8x8 digits, flattened)
  * LeNet-5 at batch 64 (1x28x28)

in both frameworks with the same weights and the same random inputs, and prints the median
step time of each and the ratio pyengine/PyTorch per model (target: <= 1.5).

    python bench/cpu_vs_torch.py [--repeats N] [--threads N] [--json FILE]

--threads caps both PyTorch's intra-op threads and NumPy's BLAS threads (through
threadpoolctl), so the two run on the same number of cores.

Exits 0 with a message when PyTorch is not installed.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import time

import numpy as np


def median_step_ms(steps, repeats: int, warmup: int, rounds: int = 5, settle: float = 0.3) -> list[float]:
    """Median milliseconds per call of each function in ``steps``.

    Each function runs in blocks: ``rounds`` rounds, and in every round each function, after
    a pause of ``settle`` seconds and one untimed call, runs about repeats / rounds timed
    calls in a row; the order of the functions is reversed from one round to the next, so a
    drift in machine load reaches all of them alike. Calls are not interleaved one by one:
    OpenBLAS's threads keep spinning for about 0.1 s after a BLAS call (and PyTorch's OpenMP
    workers for a while after theirs), and on a 2-core machine a call that follows the other
    framework's shares its cores with those spinning threads. Alternating single calls there
    measured PyTorch's LSTM step at 9-14 ms where it takes 5 ms alone, and ours up to 1.8x
    its time alone (2026-11-27, 2 threads each); the pause lets the threads go to sleep."""
    for _ in range(warmup):
        for step in steps:
            step()
    times = [[] for _ in steps]
    rounds = max(1, min(rounds, repeats))
    for r in range(rounds):
        block = repeats // rounds + (r < repeats % rounds)
        order = list(zip(steps, times))
        for step, t in (order if r % 2 == 0 else order[::-1]):
            time.sleep(settle)  # the other framework's spinning threads go to sleep
            step()  # not timed
            for _ in range(block):
                t0 = time.perf_counter()
                step()
                t.append(time.perf_counter() - t0)
    return [1e3 * statistics.median(t) for t in times]


def train_step(fw, model, x: np.ndarray, y: np.ndarray):
    """One training step of ``model`` as a function, in framework ``fw`` (pyengine or torch:
    the calls are the same in both)."""
    xt, yt = fw.from_numpy(x), fw.from_numpy(y)
    opt = fw.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step():
        opt.zero_grad()
        loss = fw.nn.functional.cross_entropy(model(xt), yt)
        loss.backward()
        opt.step()
    return step


def pyengine_step(model, x: np.ndarray, y: np.ndarray):
    import pyengine

    return train_step(pyengine, model, x, y)


def torch_step(model, x: np.ndarray, y: np.ndarray):
    import torch

    return train_step(torch, model, x, y)


def torch_twin(name: str):
    """The PyTorch model with the same architecture and state-dict keys as ours."""
    import torch.nn as tnn

    if name == "mlp":
        return tnn.Sequential(tnn.Linear(64, 128), tnn.ReLU(), tnn.Linear(128, 64), tnn.ReLU(), tnn.Linear(64, 10))

    class LeNet5(tnn.Module):
        def __init__(self):
            super().__init__()
            self.features = tnn.Sequential(tnn.Conv2d(1, 6, 5, padding=2), tnn.ReLU(), tnn.MaxPool2d(2),
                                           tnn.Conv2d(6, 16, 5), tnn.ReLU(), tnn.MaxPool2d(2))
            self.classifier = tnn.Sequential(tnn.Flatten(), tnn.Linear(400, 120), tnn.ReLU(),
                                             tnn.Linear(120, 84), tnn.ReLU(), tnn.Linear(84, 10))

        def forward(self, x):
            return self.classifier(self.features(x))
    return LeNet5()


def build(name: str):
    """Our model and its PyTorch twin, starting from the same weights so both do the same
    arithmetic."""
    from pyengine.models import get_model

    ours, theirs = get_model(name), torch_twin(name)
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    return ours, theirs


CASES = {"mlp": (64, (64,)), "lenet5": (64, (1, 28, 28))}


def blas_kernels() -> str:
    """The CPU kernels OpenBLAS picked (threadpoolctl's 'architecture'), and the
    OPENBLAS_CORETYPE that forced them if set: GEMM speed doubles between Haswell (AVX2) and
    SkylakeX (AVX-512) kernels on an AVX-512 CPU, so a table must say which ran."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "unknown"
    arch = [i.get("architecture", "?") for i in threadpool_info() if i.get("internal_api") == "openblas"]
    forced = os.environ.get("OPENBLAS_CORETYPE")
    return (", ".join(arch) or "no OpenBLAS") + (f" (OPENBLAS_CORETYPE={forced})" if forced else "")


def machine_line(torch) -> str:
    from pyengine.commands.info import numpy_blas

    return (f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
            f"torch {torch.__version__} with {torch.get_num_threads()} threads; numpy {np.__version__} "
            f"with {numpy_blas()}, {blas_kernels()} kernels")


def run(torch, repeats: int, warmup: int) -> list[dict]:
    """Time every case; prints one row per model and returns the rows."""
    from pyengine.commands.info import numpy_blas

    print(machine_line(torch))
    print(f"{'model':<8} {'batch':>5} {'pyengine ms':>12} {'torch ms':>10} {'ratio':>7}")
    rng = np.random.default_rng(0)
    rows = []
    for name, (batch, shape) in CASES.items():
        x = rng.standard_normal((batch, *shape)).astype(np.float32)
        y = rng.integers(0, 10, batch).astype(np.int64)
        ours, theirs = build(name)
        ms_ours, ms_torch = median_step_ms([pyengine_step(ours, x, y), torch_step(theirs, x, y)], repeats, warmup)
        rows.append({"model": name, "batch": batch, "pyengine_ms": ms_ours, "torch_ms": ms_torch,
                     "ratio": ms_ours / ms_torch, "torch_threads": torch.get_num_threads(),
                     "numpy_blas": numpy_blas(), "blas_kernels": blas_kernels()})
        print(f"{name:<8} {batch:>5} {ms_ours:>12.3f} {ms_torch:>10.3f} {ms_ours / ms_torch:>6.2f}x")
    return rows


@contextlib.contextmanager
def thread_limit(torch, threads):
    """PyTorch's intra-op threads and NumPy's BLAS threads capped at ``threads`` for the
    body (None: left as they are)."""
    if threads is None:
        yield
        return
    from threadpoolctl import threadpool_limits
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(limits=threads, user_api="blas"):
            yield
    finally:
        torch.set_num_threads(before)


def cli(argv, doc: str, prog: str, run, repeats: int, warmup: int, **extra) -> int:
    """The command line of this script and cpu_vs_torch_seq.py (``doc``, ``prog``: the
    script's): ``run(torch, repeats, warmup)`` times the models and returns their rows,
    which go to the JSON file with ``extra`` beside them."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=repeats, help="timed steps per model (median reported)")
    parser.add_argument("--warmup", type=int, default=warmup)
    parser.add_argument("--threads", type=int, help="threads for both PyTorch and NumPy's BLAS (default: theirs)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    try:
        import torch
    except ImportError:
        print(f"{prog}: PyTorch is not installed; nothing to compare against (pip install torch).")
        return 0
    with thread_limit(torch, args.threads):
        rows = run(torch, args.repeats, args.warmup)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"repeats": args.repeats, "torch": torch.__version__, "numpy": np.__version__,
                       "cores": os.cpu_count(), **extra, "results": rows}, f, indent=1)
    return 0


def main(argv=None) -> int:
    return cli(argv, __doc__, "cpu_vs_torch", run, repeats=50, warmup=5)


if __name__ == "__main__":
    sys.exit(main())
