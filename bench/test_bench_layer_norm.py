"""pytest-benchmark: LayerNorm over rows of width 768.

Parametrized over the providers present (pyengine/bench/pytest_suite.py); each result's
extra_info holds flops and bytes. Run: pytest bench/test_bench_layer_norm.py
"""
import pytest

from pyengine.bench.pytest_suite import params, run_case


@pytest.mark.parametrize("case, provider, n", params("layer_norm"))
def test_layer_norm(benchmark, case, provider, n):
    run_case(benchmark, case, provider, n)
