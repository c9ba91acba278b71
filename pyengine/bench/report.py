"""The Markdown report of a benchmark document, and the plain table printed at the end of
a run. Both read only the document, so a saved JSON reports the same as a fresh run."""
from __future__ import annotations


def _num(v, digits: int = 2) -> str:
    if v is None:
        return "-"
    if v >= 1000:
        return f"{v:,.0f}"
    return f"{v:.{digits}f}" if v >= 0.01 else f"{v:.2g}"


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def machine_line(doc: dict) -> str:
    m = doc["machine"]
    threads = m["threads"]
    gpu = f"GPU {m['gpu']} (driver {m['driver']})" if m.get("gpu") else "no GPU"
    return (f"{m['processor']}, {m['cpu_count']} cores, {gpu}; numpy {m['numpy']} with {m['numpy_blas']}; "
            f"threads: BLAS {threads.get('blas')}, torch {threads.get('torch')}"
            + (f", env {threads['env']}" if threads.get("env") else ""))


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def result_rows(doc: dict) -> list[list[str]]:
    return [[r["family"], r["case"], str(r["size"]), r["provider"], _num(r["ms"], 3), _num(r["gflops"]),
             _num(r["gbps"]), f"{_pct(r['ceiling_share'])} {r['bound'] or ''}".strip()]
            for r in doc["results"]]


RESULT_HEADER = ["family", "case", "size", "provider", "ms", "GFLOP/s", "GB/s", "of ceiling"]
RATIO_HEADER = ["family", "case", "size", "kind", "pair", "speedup"]


def ratio_rows(doc: dict) -> list[list[str]]:
    return [[r["family"], r["case"], str(r["size"]), r["kind"], f"{r['numerator']} vs {r['denominator']}",
             f"{r['speedup']:.2f}x"] for r in doc["ratios"]]


def markdown(doc: dict, images=()) -> str:
    """The whole report: provenance, ceilings, every result, every ratio, errors, plots."""
    out = [f"# pyengine benchmarks, {doc['date']}", "",
           f"Command: `{doc['command']}`" + (" (quick)" if doc["quick"] else ""), "",
           f"Machine: {machine_line(doc)}", "",
           f"Providers measured: {', '.join(doc['providers'])}."]
    for name, why in doc["missing"].items():
        out.append(f"- not measured: {name} ({why})")
    out += ["", "## Ceilings measured in this run", ""]
    out += _table(["device", "SGEMM GFLOP/s", "copy GB/s"],
                  [[d, _num(c["sgemm_gflops"]), _num(c["copy_gbps"])] for d, c in doc["ceilings"].items()])
    out += ["", "## Results", "",
            "Median of the repeats after warm-up. Share of ceiling: GFLOP/s over the SGEMM "
            "ceiling for compute-bound ops, GB/s over the copy ceiling for memory-bound ones. The copy "
            "ceiling is DRAM bandwidth, so an op whose data fit in cache can pass 100%.", ""]
    out += _table(RESULT_HEADER, result_rows(doc))
    out += ["", "## Ratios (side by side in this run)", "",
            "speedup = the second provider's time over the first's (> 1: the first is faster).", ""]
    out += _table(RATIO_HEADER, ratio_rows(doc)) if doc["ratios"] else ["(no two providers ran the same case)"]
    if doc["errors"]:
        out += ["", "## Errors", ""] + [f"- {e}" for e in doc["errors"]]
    if images:
        out += ["", "## Plots", ""] + [f"![{p.stem}]({p.name})" for p in images]
    return "\n".join(out) + "\n"


def text_table(header: list[str], rows: list[list[str]]) -> str:
    """Aligned plain-text columns for the terminal."""
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = lambda r: "  ".join(str(x).ljust(w) for x, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])
