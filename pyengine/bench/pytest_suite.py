"""What bench/test_bench_*.py share: the parameters (case x size x provider present here)
and one call that times a case with pytest-benchmark and records its FLOPs and bytes.

    pytest bench/ --benchmark-json out.json        # every family, every provider present
    PYENGINE_BENCH_FULL=1 pytest bench/            # the full size lists instead of the quick ones
    PYENGINE_BENCH_THREADS=1 pytest bench/         # cap BLAS and PyTorch threads (busy machines)

The thread counts in force are recorded in every result's extra_info.
"""
from __future__ import annotations

import os


from .cases import build, cases_for
from .providers import discover
from .suite import thread_limit, thread_settings

FULL = os.environ.get("PYENGINE_BENCH_FULL") == "1"
THREADS = int(os.environ.get("PYENGINE_BENCH_THREADS") or 0) or None


def params(family: str):
    """pytest.param(case, provider, n) for every case of ``family``, size and provider
    present here that has the op, with readable ids."""
    import pytest

    present, _ = discover()
    out = []
    for case in cases_for((family,)):
        for n in case.sizes(quick=not FULL):
            for p in (p for p in present if case.runs_on(p)):
                out.append(pytest.param(case, p, n, id=f"{case.name}-{n}-{p.name}".replace(" ", "_")))
    return out


def _synced(fn, device: str):
    """``fn`` followed by a device synchronisation, so the host clock pytest-benchmark
    reads covers the GPU's work (DESIGN.md: synchronise before the host clock)."""
    if device == "cpu":
        return fn
    import cupy as cp

    def call(i):
        fn(i)
        cp.cuda.get_current_stream().synchronize()
    return call


def run_case(benchmark, case, provider, n, rounds: int = 10):
    """Time ``case`` at size ``n`` on ``provider``; extra_info gets flops, bytes, GFLOP/s
    and GB/s. Inputs rotate between sets round by round."""
    with provider.selected(), thread_limit(THREADS):
        threads = thread_settings()
        built = build(case, provider, n)
        fn = _synced(built.fn, provider.device)
        counter = iter(range(1 << 30))
        benchmark.pedantic(lambda: fn(next(counter)), rounds=rounds, warmup_rounds=2, iterations=1)
    benchmark.extra_info.update(family=case.family, case=case.name, size=n, shape=built.shape,
                                provider=provider.name, device=provider.device, flops=built.flops,
                                bytes=built.bytes, threads=threads)
    if benchmark.stats is not None:      # None under --benchmark-disable (a smoke run)
        median_s = benchmark.stats.stats.median
        benchmark.extra_info.update(gflops=built.flops / median_s / 1e9, gbps=built.bytes / median_s / 1e9)
