"""GPU results committed under bench/results/<run>/*.json, for readers without a GPU.

Two formats are read: this package's benchmark document (schema.py) and the rows that
bench/gpu_bench.py writes ({"meta": {card, date, command, ...}, "rows": [...]}). Every row
returned carries its card and date, so nothing here can pass for this machine's numbers.
"""
from __future__ import annotations

import json
from pathlib import Path

from .schema import SCHEMA


def _results_dir() -> Path:
    """bench/results of the checkout: beside the package when it runs from the source tree,
    else in the working directory (``pip install .`` then ``pyengine demo`` from the checkout)."""
    beside = Path(__file__).resolve().parents[2] / "bench" / "results"
    return beside if beside.is_dir() else Path.cwd() / "bench" / "results"


RESULTS_DIR = _results_dir()


def _from_document(doc: dict, path: Path) -> dict | None:
    if not doc["machine"].get("gpu"):
        return None
    rows = [{"name": f"{r['family']}/{r['case']} {r['provider']}", "shape": r["shape"], "ms": r["ms"],
             "gflops": r["gflops"], "gbps": r["gbps"], "ratio": None, "reference": None}
            for r in doc["results"] if r["device"] == "cuda"]
    speedups = [r for r in doc["ratios"] if r["kind"] == "gpu/cpu"]
    return {"card": doc["machine"]["gpu"], "date": doc["date"], "command": doc["command"],
            "path": str(path), "rows": rows, "speedups": speedups}


def _from_gpu_bench(doc: dict, path: Path) -> dict:
    meta = doc["meta"]
    # gpu_bench's ratio: the reference's time over ours (compute rows) or our GB/s over the
    # copy's (memory rows); kept with the reference it names.
    rows = [{"name": r["name"], "shape": r.get("shape"), "ms": r.get("ms"), "gflops": r.get("gflops"),
             "gbps": r.get("gbps"), "ratio": r.get("ratio"), "reference": r.get("reference")}
            for r in doc["rows"]]
    return {"card": meta.get("card", "unknown card"), "date": meta.get("date", "unknown date"),
            "command": meta.get("command", ""), "path": str(path), "rows": rows, "speedups": []}


def load(folder: str | Path = RESULTS_DIR) -> tuple[list[dict], list[str]]:
    """(runs, problems): each GPU run found under ``folder`` (newest date first) and a note
    for every JSON file that could not be read as either format."""
    runs, problems = [], []
    for path in sorted(Path(folder).glob("*/*.json")):
        try:
            doc = json.loads(path.read_text())
            if isinstance(doc, dict) and doc.get("schema") == SCHEMA:
                run = _from_document(doc, path)
            elif isinstance(doc, dict) and "meta" in doc and "rows" in doc:
                run = _from_gpu_bench(doc, path)
            else:
                problems.append(f"{path}: neither a pyengine benchmark document nor gpu_bench rows")
                continue
        except (OSError, ValueError, KeyError, TypeError) as exc:
            problems.append(f"{path}: {exc!r}")
            continue
        if run is not None:
            runs.append(run)
    runs.sort(key=lambda r: r["date"], reverse=True)
    return runs, problems
