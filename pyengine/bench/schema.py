"""The JSON document a benchmark run writes (``pyengine bench --out DIR`` -> DIR/bench.json).

    schema     "pyengine-bench/1"
    date       "YYYY-MM-DD HH:MM UTC";  command: how it was run;  quick: bool
    machine    platform, processor, cpu_count, python, numpy, numpy_blas, pyengine,
               threads {blas, torch, env}, gpu (card name or null), driver (or null)
    providers  names that ran;  missing: {name: why it did not}
    ceilings   {device: {sgemm_gflops, sgemm_n, copy_gbps, copy_bytes}}
    results    one per (case, size, provider): RESULT_KEYS
    ratios     one per pair measured side by side: RATIO_KEYS; speedup = the denominator's
               time over the numerator's (> 1: the numerator is faster)
    errors     [str]: cases that raised, so one broken op never loses the others' numbers
"""
from __future__ import annotations

import json
import math
from pathlib import Path

SCHEMA = "pyengine-bench/1"
TOP_KEYS = ("schema", "date", "command", "quick", "machine", "providers", "missing", "ceilings",
            "results", "ratios", "errors")
MACHINE_KEYS = ("platform", "processor", "cpu_count", "python", "numpy", "numpy_blas", "pyengine",
                "threads", "gpu", "driver")
RESULT_KEYS = ("family", "case", "size", "size_label", "shape", "provider", "device", "ours", "ms",
               "repeats", "spread", "flops", "bytes", "gflops", "gbps", "bound", "ceiling_share")
RATIO_KEYS = ("family", "case", "size", "kind", "numerator", "denominator", "speedup")
_NUMBERS = ("ms", "flops", "bytes", "gflops", "gbps", "ceiling_share", "spread")


def problems(doc: dict) -> list[str]:
    """Everything wrong with ``doc`` as a benchmark document (empty when it is valid)."""
    if not isinstance(doc, dict):
        return [f"document must be a JSON object, got {type(doc).__name__}"]
    found = [f"missing top-level key {k!r}" for k in TOP_KEYS if k not in doc]
    if doc.get("schema") != SCHEMA:
        found.append(f"schema is {doc.get('schema')!r}, expected {SCHEMA!r}")
    machine = doc.get("machine")
    if isinstance(machine, dict):
        found += [f"machine lacks {k!r}" for k in MACHINE_KEYS if k not in machine]
    else:
        found.append("machine must be an object")
    for i, row in enumerate(doc.get("results") or []):
        found += [f"results[{i}] lacks {k!r}" for k in RESULT_KEYS if k not in row]
        for k in _NUMBERS:
            v = row.get(k)
            if v is not None and (not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0):
                found.append(f"results[{i}].{k} must be a finite non-negative number, got {v!r}")
        if isinstance(row.get("ms"), (int, float)) and row["ms"] <= 0:
            found.append(f"results[{i}].ms must be positive, got {row['ms']!r}")
    for i, row in enumerate(doc.get("ratios") or []):
        found += [f"ratios[{i}] lacks {k!r}" for k in RATIO_KEYS if k not in row]
        s = row.get("speedup")
        if not isinstance(s, (int, float)) or not math.isfinite(s) or s <= 0:
            found.append(f"ratios[{i}].speedup must be a positive finite number, got {s!r}")
    return found


def validate(doc: dict) -> dict:
    """``doc`` unchanged, or a ValueError listing every problem."""
    found = problems(doc)
    if found:
        raise ValueError("not a pyengine benchmark document: " + "; ".join(found[:10])
                         + (f" (and {len(found) - 10} more)" if len(found) > 10 else ""))
    return doc


def write(doc: dict, path: str | Path) -> Path:
    """Validate and write ``doc`` as indented JSON; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(validate(doc), indent=1) + "\n")
    return path


def read(path: str | Path) -> dict:
    """A benchmark document from disk, validated; the error names the file."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read benchmark results from {path}: {exc}") from None
    try:
        return validate(doc)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
