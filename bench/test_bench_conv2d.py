"""pytest-benchmark: a 3x3 convolution, 16 -> 32 channels on 28x28 images, against batch size.

Parametrized over the providers present (pyengine/bench/pytest_suite.py); each result's
extra_info holds flops and bytes. Run: pytest bench/test_bench_conv2d.py
"""
import pytest

from pyengine.bench.pytest_suite import params, run_case


@pytest.mark.parametrize("case, provider, n", params("conv2d"))
def test_conv2d(benchmark, case, provider, n):
    run_case(benchmark, case, provider, n)
