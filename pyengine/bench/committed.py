"""GPU results committed under bench/results/<run>/*.json, for readers without a GPU.

Two formats are read: this package's benchmark document (schema.py) and the rows that
bench/gpu_bench.py writes ({"meta": {card, date, command, ...}, "rows": [...]}). Every row
returned carries its card and date, so nothing here can pass for this machine's numbers.

bench/results is not installed with the package, so what the demo shows from it travels as
``committed_gpu.json`` beside this module: ``summary()`` of the checkout's bench/results,
written by ``python -m pyengine.bench.committed --write`` and checked equal to a fresh
``summary()`` by tests/test_committed_packaged.py. ``shown()`` reads bench/results when the
package runs from a checkout and that packaged copy otherwise.
"""
from __future__ import annotations

import argparse
import json
import re
from importlib import resources
from pathlib import Path

from .schema import SCHEMA

CHECKOUT_RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results"
PACKAGED = "committed_gpu.json"
SHOWN_RUNS = 3                       # the newest runs the demo prints
SWEEP_CASES = ("sgemm", "lenet5")    # the cases of demo.sweep


def _from_document(doc: dict, path: Path) -> dict | None:
    if not doc["machine"].get("gpu"):
        return None
    rows = [{"name": f"{r['family']}/{r['case']} {r['provider']}", "shape": r["shape"], "ms": r["ms"],
             "gflops": r["gflops"], "gbps": r["gbps"], "ratio": None, "reference": None}
            for r in doc["results"] if r["device"] == "cuda"]
    speedups = [r for r in doc["ratios"] if r["kind"] == "gpu/cpu"]
    # Each GPU/CPU speedup with both times, so a reader sees what it divides.
    ms = {(r["case"], r["size"], r["provider"]): r["ms"] for r in doc["results"]}
    pairs = [{"case": s["case"], "size": s["size"], "gpu": s["numerator"], "cpu": s["denominator"],
              "gpu_ms": ms.get((s["case"], s["size"], s["numerator"])),
              "cpu_ms": ms.get((s["case"], s["size"], s["denominator"])), "speedup": s["speedup"]}
             for s in speedups]
    return {"card": doc["machine"]["gpu"], "date": doc["date"], "command": doc["command"],
            "driver": doc["machine"].get("driver"), "path": str(path), "rows": rows, "speedups": speedups,
            "pairs": pairs}


def _from_gpu_bench(doc: dict, path: Path) -> dict:
    meta = doc["meta"]
    # gpu_bench's ratio: the reference's time over ours (compute rows) or our GB/s over the
    # copy's (memory rows); kept with the reference it names.
    rows = [{"name": r["name"], "shape": r.get("shape"), "ms": r.get("ms"), "gflops": r.get("gflops"),
             "gbps": r.get("gbps"), "ratio": r.get("ratio"), "reference": r.get("reference")}
            for r in doc["rows"]]
    return {"card": meta.get("card", "unknown card"), "date": meta.get("date", "unknown date"),
            "command": meta.get("command", ""), "driver": meta.get("driver"), "path": str(path), "rows": rows,
            "speedups": [], "pairs": []}


def load(folder: str | Path = CHECKOUT_RESULTS) -> tuple[list[dict], list[str]]:
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


def _run_notes(run_dir: Path) -> dict:
    """Driver and commit as the run folder's README.md (else summary.md) states them: the
    first 'driver <version>' and the first 'commit <hash>'; None where it states neither."""
    found = {"driver": None, "commit": None}
    for name in ("README.md", "summary.md"):
        text = (run_dir / name).read_text() if (run_dir / name).is_file() else ""
        for key, pattern in (("driver", r"\bdriver (\d+\.\d+(?:\.\d+)*)"), ("commit", r"\bcommit ([0-9a-f]{7,40})\b")):
            m = re.search(pattern, text)
            if found[key] is None and m:
                found[key] = m.group(1)
    return found


def summary(folder: str | Path = CHECKOUT_RESULTS) -> dict:
    """What the demo shows from the committed runs under ``folder``, with paths relative to
    it: the SHOWN_RUNS newest runs whole, and the GPU/CPU pairs of demo.sweep's cases from
    the newest run that measured any (our GPU kernels against our NumPy backend)."""
    folder = Path(folder)
    runs, problems = load(folder)

    def labelled(run: dict, keep: tuple[str, ...]) -> dict:
        path = Path(run["path"])
        notes = _run_notes(path.parent)
        return {"card": run["card"], "driver": notes["driver"] or run["driver"], "date": run["date"],
                "commit": notes["commit"], "command": run["command"],
                "path": path.relative_to(folder).as_posix(), **{k: run[k] for k in keep}}

    def ours(run: dict) -> list[dict]:
        return [p for p in run["pairs"] if p["case"] in SWEEP_CASES and p["cpu"] == "numpy"]

    sweep = next((r for r in runs if ours(r)), None)
    if sweep is not None:
        sweep = {**labelled(sweep, ()), "pairs": ours(sweep)}
    return {"about": "GPU results committed under bench/results/ of the pyengine repository; "
                     "NOT measured on the machine that shows them",
            "runs": [labelled(r, ("rows", "speedups")) for r in runs[:SHOWN_RUNS]],
            "sweep": sweep,
            "skipped": [p.replace(f"{folder}/", "", 1) for p in problems]}


def render(doc: dict) -> str:
    return json.dumps(doc, indent=1, sort_keys=True) + "\n"


def shown(folder: str | Path | None = None) -> tuple[dict, str]:
    """(summary, where it came from): of ``folder`` if given; else of the checkout's
    bench/results when the package runs from a checkout; else the packaged copy."""
    if folder is None and CHECKOUT_RESULTS.is_dir():
        folder = CHECKOUT_RESULTS
    if folder is not None:
        return summary(folder), str(folder)
    text = resources.files(__package__).joinpath(PACKAGED).read_text(encoding="utf-8")
    return json.loads(text), f"bench/results of the pyengine repository (installed copy: pyengine/bench/{PACKAGED})"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Write (or check) the packaged copy of what the demo shows "
                                             "from bench/results.")
    ap.add_argument("--write", action="store_true", help=f"write pyengine/bench/{PACKAGED}")
    ap.add_argument("--check", action="store_true", help="exit 1 if the packaged copy differs from bench/results")
    a = ap.parse_args(argv)
    target = Path(__file__).with_name(PACKAGED)
    text = render(summary(CHECKOUT_RESULTS))
    if a.write:
        target.write_text(text, encoding="utf-8")
        print(f"wrote {target} from {CHECKOUT_RESULTS}")
    elif a.check:
        same = target.is_file() and target.read_text(encoding="utf-8") == text
        print(f"{target} {'matches' if same else 'differs from'} {CHECKOUT_RESULTS}")
        return 0 if same else 1
    else:
        ap.print_help()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
