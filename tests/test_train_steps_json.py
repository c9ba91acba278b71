"""bench/train_steps_json.py: the training-step table printed on the GPU becomes rows the demo
shows without a GPU, numbers copied, ratios = CPU ms / GPU ms."""
import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("train_steps_json", ROOT / "bench" / "train_steps_json.py")
tsj = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tsj)

LOG = """device: X
| step (adam) | CPU ms | native ms | numba ms | torch-cuda ms | native/CPU speedup (target 20x) |
|---|---:|---:|---:|---:|---:|
| gpt medium b64 | 600.0 | 12.0 | - | 8.0 | 50.0x |
| lenet5 medium b512 | 90.0 | 3.0 | - | - | 30.0x |

total 1 s
"""


def test_rows_copy_the_table_and_divide_cpu_by_gpu(tmp_path):
    log = tmp_path / "t.log"
    log.write_text(LOG)
    out = tmp_path / "t.json"
    tsj.main([str(log), "--card", "C", "--date", "D", "--command", "cmd", "--out", str(out)])
    doc = json.loads(out.read_text())
    assert doc["meta"] == {"card": "C", "date": "D", "command": "cmd"}
    rows = {(r["name"], r["shape"]): r for r in doc["rows"]}
    assert len(rows) == 3  # lenet5 has no torch-cuda time
    gpt = rows[("train step gpt ours (native)", "gpt medium b64")]
    assert gpt["ms"] == 12.0 and gpt["ratio"] == pytest.approx(50.0)
    assert rows[("train step gpt torch-cuda", "gpt medium b64")]["ratio"] == pytest.approx(75.0)
    assert rows[("train step lenet5 ours (native)", "lenet5 medium b512")]["ratio"] == pytest.approx(30.0)


def test_a_log_without_the_table_is_an_error(tmp_path):
    log = tmp_path / "t.log"
    log.write_text("nothing here\n")
    with pytest.raises(ValueError, match="no '| step"):
        tsj.main([str(log), "--card", "C", "--date", "D", "--command", "c", "--out", str(tmp_path / "o.json")])


def test_committed_training_steps_are_readable_by_the_demo():
    from pyengine.bench import committed
    doc, origin = committed.shown()      # bench/results in a checkout, else the packaged copy
    assert not doc["skipped"]
    train = [r for run in doc["runs"] for r in run["rows"] if r["name"].startswith("train step")]
    assert train, f"{origin} holds no training-step rows among the runs the demo shows"
    assert all(r["ms"] > 0 and r["ratio"] > 0 for r in train)
