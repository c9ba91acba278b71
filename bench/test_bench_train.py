"""pytest-benchmark: whole training steps (forward, cross-entropy, backward, SGD) of the MLP, LeNet-5, the char LSTM and the GPT.

Parametrized over the providers present (pyengine/bench/pytest_suite.py); each result's
extra_info holds flops and bytes. Run: pytest bench/test_bench_train.py
"""
import pytest

from pyengine.bench.pytest_suite import params, run_case


@pytest.mark.parametrize("case, provider, n", params("train"))
def test_train(benchmark, case, provider, n):
    run_case(benchmark, case, provider, n)
