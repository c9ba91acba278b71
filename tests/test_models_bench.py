"""bench/cpu_vs_torch.py: both frameworks start from the same weights, and a short run
writes a result per model."""
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.torch


def _bench():
    path = Path(__file__).resolve().parents[1] / "bench" / "cpu_vs_torch.py"
    spec = importlib.util.spec_from_file_location("cpu_vs_torch", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["mlp", "lenet5"])
def test_twins_compute_the_same_step(rng, name):
    torch = pytest.importorskip("torch")
    bench = _bench()
    batch, shape = bench.CASES[name]
    x = rng.standard_normal((5, *shape)).astype(np.float32)
    y = rng.integers(0, 10, 5).astype(np.int64)
    ours, theirs = bench.build(name)
    initial = {k: v.numpy().copy() for k, v in theirs.state_dict().items()}
    bench.pyengine_step(ours, x, y)()
    bench.torch_step(theirs, x, y)()
    # after one identical SGD step the weights moved, and still agree
    assert not all(np.array_equal(initial[k], v.numpy()) for k, v in theirs.state_dict().items())
    for key, value in theirs.state_dict().items():
        np.testing.assert_allclose(ours.state_dict()[key].numpy(), value.numpy(), rtol=1e-4, atol=1e-5,
                                   err_msg=key)


def test_short_run_writes_json(tmp_path, capsys):
    pytest.importorskip("torch")
    out = tmp_path / "r.json"
    assert _bench().main(["--repeats", "2", "--warmup", "1", "--threads", "1", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["results"]
    assert [r["model"] for r in rows] == ["mlp", "lenet5"]
    assert all(r["pyengine_ms"] > 0 and r["torch_ms"] > 0 for r in rows)
    assert "ratio" in capsys.readouterr().out


def test_steps_are_timed_in_blocks_not_interleaved():
    """Each framework's timed calls come in runs (the other framework's spinning threads
    would otherwise share the cores), every run after one untimed call, the order of the
    frameworks reversed each round, and every function timed exactly ``repeats`` times."""
    bench = _bench()
    calls = []
    steps = [lambda: calls.append("a"), lambda: calls.append("b")]
    ms = bench.median_step_ms(steps, repeats=7, warmup=1, rounds=3, settle=0)
    assert len(ms) == 2
    body = "".join(calls[2:])  # after the warm-up "ab"
    # rounds of 3, 2 and 2 timed calls, each after one untimed call: a then b, b then a, a then b
    assert body == "a" * 4 + "b" * 4 + "b" * 3 + "a" * 3 + "a" * 3 + "b" * 3
    assert body.count("a") - 3 == 7 and body.count("b") - 3 == 7
