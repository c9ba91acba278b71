"""pytest-benchmark: ReLU and GELU over float32 vectors (memory bound: read once, write once).

Parametrized over the providers present (pyengine/bench/pytest_suite.py); each result's
extra_info holds flops and bytes. Run: pytest bench/test_bench_activations.py
"""
import pytest

from pyengine.bench.pytest_suite import params, run_case


@pytest.mark.parametrize("case, provider, n", params("activations"))
def test_activations(benchmark, case, provider, n):
    run_case(benchmark, case, provider, n)
