"""The committed GPU results travel with the package: pyengine/bench/committed_gpu.json is
what committed.summary() makes of bench/results, and the demo reads it where bench/results
is not beside the package (an installed copy)."""
import io
import json
from importlib import resources

import pytest

from pyengine.bench import committed, demo
from pyengine.bench.schema import SCHEMA

needs_checkout = pytest.mark.skipif(not committed.CHECKOUT_RESULTS.is_dir(),
                                    reason=f"no bench/results beside the package ({committed.CHECKOUT_RESULTS}): "
                                           "not a checkout")


def _packaged_text() -> str:
    return resources.files("pyengine.bench").joinpath(committed.PACKAGED).read_text()


@needs_checkout
def test_packaged_copy_equals_what_bench_results_gives():
    assert _packaged_text() == committed.render(committed.summary()), (
        "pyengine/bench/committed_gpu.json is stale: run `python -m pyengine.bench.committed --write`")


def test_packaged_copy_carries_card_driver_date_commit_and_the_h100_numbers():
    doc = json.loads(_packaged_text())
    assert "NOT measured" in doc["about"] and doc["skipped"] == []
    assert len(doc["runs"]) == committed.SHOWN_RUNS
    for run in doc["runs"] + [doc["sweep"]]:
        assert run["card"] == "NVIDIA H100 80GB HBM3" and run["driver"] == "580.159.04"
        assert run["date"].startswith("2026-11-27") and len(run["commit"]) == 7
        assert not run["path"].startswith("/")
    train = {(r["name"], r["shape"]): r for r in doc["runs"][0]["rows"]}
    # bench/results/h100-2026-11-27-final-3/train_steps.log: 662.2 ms CPU, 11.6 ms native GPU.
    gpt = train["train step gpt ours (native)", "gpt medium b64 4L d128"]
    assert gpt["ms"] == 11.6 and gpt["ratio"] == pytest.approx(662.2 / 11.6)
    assert {p["case"] for p in doc["sweep"]["pairs"]} == set(committed.SWEEP_CASES)
    for p in doc["sweep"]["pairs"]:
        assert p["cpu"] == "numpy" and p["speedup"] == pytest.approx(p["cpu_ms"] / p["gpu_ms"], rel=1e-9)


def test_without_a_checkout_the_demo_shows_the_packaged_copy(monkeypatch, tmp_path):
    monkeypatch.setattr(committed, "CHECKOUT_RESULTS", tmp_path / "absent")
    doc, origin = committed.shown()
    assert doc == json.loads(_packaged_text())
    assert "installed copy: pyengine/bench/committed_gpu.json" in origin
    stream = io.StringIO()
    demo.show_committed(stream)
    text = stream.getvalue()
    assert ("Committed GPU results, NOT measured on this machine: NVIDIA H100 80GB HBM3, 2026-11-27 22:38 UTC, "
            "driver 580.159.04, commit 004df27") in text
    assert "57.09 (NumPy CPU backend 662.2 ms on the same host)" in text
    assert "No committed GPU results" not in text


def _write_run(folder, name, doc, readme=None):
    (folder / name).mkdir()
    (folder / name / "bench.json").write_text(json.dumps(doc))
    if readme is not None:
        (folder / name / "README.md").write_text(readme)


def _gpu_doc(date, size, cpu_ms, gpu_ms):
    """The parts of a benchmark document (schema.py) that committed.py reads: one sgemm size
    on our NumPy backend and our native GPU kernels, and their speedup."""
    row = {"family": "matmul", "case": "sgemm", "size": size, "shape": f"{size}^3", "gflops": 1.0, "gbps": None}
    return {"schema": SCHEMA, "date": date, "command": "pyengine bench",
            "machine": {"gpu": "Card S", "driver": "13000"},
            "results": [dict(row, provider="numpy", device="cpu", ms=cpu_ms),
                        dict(row, provider="native", device="cuda", ms=gpu_ms)],
            "ratios": [{"family": "matmul", "case": "sgemm", "size": size, "kind": "gpu/cpu",
                        "numerator": "native", "denominator": "numpy", "speedup": cpu_ms / gpu_ms}]}


def test_summary_labels_each_run_and_picks_the_newest_sweep_pairs(tmp_path):
    _write_run(tmp_path, "old", _gpu_doc("2026-01-01 00:00 UTC", 64, 3.0, 1.5),
               "Card S, driver 580.1.2, at commit 0123abc; fixed later in commit fedcba9.\n")
    _write_run(tmp_path, "new", _gpu_doc("2026-02-01 00:00 UTC", 256, 8.0, 0.5))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.json").write_text("[1]")
    doc = committed.summary(tmp_path)
    new, old = doc["runs"]
    assert (new["path"], new["driver"], new["commit"]) == ("new/bench.json", "13000", None)
    assert (old["path"], old["driver"], old["commit"]) == ("old/bench.json", "580.1.2", "0123abc")
    assert doc["sweep"]["path"] == "new/bench.json"
    assert doc["sweep"]["pairs"] == [{"case": "sgemm", "size": 256, "gpu": "native", "cpu": "numpy",
                                      "gpu_ms": 0.5, "cpu_ms": 8.0, "speedup": 16.0}]
    assert doc["skipped"] and doc["skipped"][0].startswith("bad/x.json: ")


def test_check_and_write_of_the_packaged_copy(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(committed, "CHECKOUT_RESULTS", tmp_path)
    monkeypatch.setattr(committed, "__file__", str(tmp_path / "committed.py"))
    assert committed.main(["--check"]) == 1
    assert committed.main(["--write"]) == 0
    assert committed.main(["--check"]) == 0
    assert json.loads((tmp_path / committed.PACKAGED).read_text()) == {
        "about": committed.summary(tmp_path)["about"], "runs": [], "sweep": None, "skipped": []}
    assert "matches" in capsys.readouterr().out
