"""pytest-benchmark: softmax and cross-entropy over 1000 classes, against row count.

Parametrized over the providers present (pyengine/bench/pytest_suite.py); each result's
extra_info holds flops and bytes. Run: pytest bench/test_bench_softmax.py
"""
import pytest

from pyengine.bench.pytest_suite import params, run_case


@pytest.mark.parametrize("case, provider, n", params("softmax"))
def test_softmax(benchmark, case, provider, n):
    run_case(benchmark, case, provider, n)
