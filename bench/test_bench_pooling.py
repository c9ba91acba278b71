"""pytest-benchmark: 2x2 max pooling of (N, 32, 56, 56) images with argmax indices.

Parametrized over the providers present (pyengine/bench/pytest_suite.py); each result's
extra_info holds flops and bytes. Run: pytest bench/test_bench_pooling.py
"""
import pytest

from pyengine.bench.pytest_suite import params, run_case


@pytest.mark.parametrize("case, provider, n", params("pooling"))
def test_pooling(benchmark, case, provider, n):
    run_case(benchmark, case, provider, n)
