"""pytest-benchmark: float32 matrix products (n x n x n), ours against NumPy/BLAS, PyTorch and CuPy's cuBLAS.

Parametrized over the providers present (pyengine/bench/pytest_suite.py); each result's
extra_info holds flops and bytes. Run: pytest bench/test_bench_matmul.py
"""
import pytest

from pyengine.bench.pytest_suite import params, run_case


@pytest.mark.parametrize("case, provider, n", params("matmul"))
def test_matmul(benchmark, case, provider, n):
    run_case(benchmark, case, provider, n)
