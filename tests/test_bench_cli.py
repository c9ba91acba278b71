"""`pyengine bench` end to end on the CPU, and `pyengine bench --compare`."""
import json
import time

import pytest

from pyengine import cuda
from pyengine.bench import schema
from pyengine.cli import main


def test_bench_quick_tiny_end_to_end(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["bench", "--quick", "--families", "matmul,softmax", "--max-size", "256", "--threads", "1",
               "--out", str(out)])
    text = capsys.readouterr().out
    assert rc == 0
    doc = schema.read(out / "bench.json")
    assert {r["family"] for r in doc["results"]} == {"matmul", "softmax"}
    assert "numpy" in doc["providers"]
    assert doc["machine"]["threads"]["blas"] in (None, [1])
    assert {p.name for p in out.iterdir()} >= {"bench.json", "report.md", "throughput.png", "roofline.png"}
    assert "## Ceilings measured in this run" in (out / "report.md").read_text()
    assert "sgemm" in text and "wrote" in text
    if not cuda.is_available():
        assert "No usable GPU here" in text
        assert doc["machine"]["gpu"] is None


def test_bench_refuses_cuda_without_a_gpu_and_unknown_families(tmp_path, capsys):
    if not cuda.is_available():
        assert main(["bench", "--device", "cuda", "--out", str(tmp_path)]) == 1
        assert "--device cuda is not usable here" in capsys.readouterr().err
    assert main(["bench", "--families", "matmul,convolution", "--out", str(tmp_path)]) == 2
    assert "unknown ['convolution']" in capsys.readouterr().err


def test_compare_prints_ratios_between_two_runs(tmp_path, capsys):
    assert main(["bench", "--quick", "--families", "matmul", "--providers", "numpy", "--max-size", "64",
                 "--threads", "1", "--out", str(tmp_path / "a")]) == 0
    a = json.loads((tmp_path / "a" / "bench.json").read_text())
    b = json.loads(json.dumps(a))
    for r in b["results"]:
        r["ms"] = r["ms"] / 2                 # B twice as fast everywhere
    (tmp_path / "b.json").write_text(json.dumps(b))
    capsys.readouterr()
    assert main(["bench", "--compare", str(tmp_path / "a" / "bench.json"), str(tmp_path / "b.json")]) == 0
    text = capsys.readouterr().out
    assert "2.00x" in text and "geometric mean A/B = 2.00x" in text


def test_compare_names_a_bad_file(tmp_path, capsys):
    (tmp_path / "bad.json").write_text('{"schema": "nope"}')
    assert main(["bench", "--compare", str(tmp_path / "bad.json"), str(tmp_path / "bad.json")]) == 2
    assert "bad.json" in capsys.readouterr().err


@pytest.mark.slow
def test_bench_quick_whole_suite_under_two_minutes(tmp_path):
    t0 = time.perf_counter()
    assert main(["bench", "--quick", "--threads", "1", "--out", str(tmp_path)]) in (0, 1)
    assert time.perf_counter() - t0 < 120
    doc = schema.read(tmp_path / "bench.json")
    assert doc["errors"] == []
    assert {r["family"] for r in doc["results"]} == {"matmul", "conv2d", "pooling", "activations", "softmax",
                                                     "layer_norm", "attention", "train"}


@pytest.mark.gpu
def test_bench_quick_on_the_gpu_measures_gpu_over_cpu(tmp_path):
    assert main(["bench", "--quick", "--families", "matmul,attention", "--max-size", "256",
                 "--out", str(tmp_path)]) == 0
    doc = schema.read(tmp_path / "bench.json")
    assert doc["machine"]["gpu"] and "cuda" in doc["ceilings"]
    assert any(r["kind"] == "gpu/cpu" and r["numerator"] == "native" for r in doc["ratios"])
