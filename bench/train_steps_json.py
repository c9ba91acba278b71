"""Turn the Markdown table that bench/variants/train_steps.py prints into rows that
pyengine.bench.committed reads (gpu_bench's format), so `pyengine demo` on a machine without a
GPU can show the measured training-step speedups beside the kernel tables.

    python bench/train_steps_json.py LOG --card "NVIDIA H100 80GB HBM3" --date "2026-11-27 22:38 UTC" \
        --command "..." --out DIR/train_steps.json

Only what the log says is copied: each model's CPU (NumPy backend) and native GPU step times;
the ratio is the CPU time over the GPU time, the speedup the table printed. The demo's
installed copy of bench/results then needs `python -m pyengine.bench.committed --write`
(tests/test_committed_packaged.py fails until it is rewritten)."""
from __future__ import annotations

import argparse
import json
import sys


def parse(lines):
    """(header, rows) of the first Markdown table whose header starts with '| step'."""
    header, rows = None, []
    for line in lines:
        if not line.startswith("|"):
            if header and rows:
                break
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None:
            if cells[0].startswith("step"):
                header = cells
            continue
        if set(cells[0]) <= {"-", ":"}:
            continue
        rows.append(dict(zip(header, cells)))
    if header is None:
        raise ValueError("no '| step ...' table in the log")
    return header, rows


def to_rows(table):
    out = []
    for r in table:
        cpu, gpu = float(r["CPU ms"]), float(r["native ms"])
        out.append({"name": f"train step {r['step (adam)'].split(' ')[0]} ours (native)", "shape": r["step (adam)"],
                    "ms": gpu, "gflops": None, "gbps": None, "ratio": cpu / gpu,
                    "reference": f"NumPy CPU backend {cpu:g} ms on the same host"})
        torch_ms = r.get("torch-cuda ms", "-")
        if torch_ms not in ("-", ""):
            out.append({"name": f"train step {r['step (adam)'].split(' ')[0]} torch-cuda", "shape": r["step (adam)"],
                        "ms": float(torch_ms), "gflops": None, "gbps": None, "ratio": cpu / float(torch_ms),
                        "reference": f"NumPy CPU backend {cpu:g} ms on the same host"})
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("log")
    ap.add_argument("--card", required=True)
    ap.add_argument("--date", required=True)
    ap.add_argument("--command", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    with open(a.log) as f:
        _, table = parse(f)
    doc = {"meta": {"card": a.card, "date": a.date, "command": a.command}, "rows": to_rows(table)}
    with open(a.out, "w") as f:
        json.dump(doc, f, indent=1)
    print(f"wrote {len(doc['rows'])} rows to {a.out}; if it is under bench/results, "
          "refresh the packaged copy: python -m pyengine.bench.committed --write")


if __name__ == "__main__":
    sys.exit(main())
