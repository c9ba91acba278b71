"""pytest-benchmark: scaled dot-product attention, plain and causal (B 4, H 4, d 64) against sequence length.

Parametrized over the providers present (pyengine/bench/pytest_suite.py); each result's
extra_info holds flops and bytes. Run: pytest bench/test_bench_attention.py
"""
import pytest

from pyengine.bench.pytest_suite import params, run_case


@pytest.mark.parametrize("case, provider, n", params("attention"))
def test_attention(benchmark, case, provider, n):
    run_case(benchmark, case, provider, n)
