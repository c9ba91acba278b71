"""PNG plots of a benchmark document (matplotlib, Agg: no display needed).

throughput.png  GFLOP/s against size, one panel per case, one line per provider
roofline.png    each result at its arithmetic intensity under each device's measured roof
speedup.png     the side-by-side ratios as horizontal bars, 1x marked
"""
from __future__ import annotations

from pathlib import Path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def throughput(doc: dict, path: Path) -> Path | None:
    cases = list(dict.fromkeys((r["family"], r["case"]) for r in doc["results"]))
    if not cases:
        return None
    plt = _pyplot()
    cols = min(4, len(cases))
    rows = -(-len(cases) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.2 * rows), squeeze=False)
    for ax, (family, case) in zip(axes.flat, cases):
        mine = [r for r in doc["results"] if (r["family"], r["case"]) == (family, case)]
        for provider in dict.fromkeys(r["provider"] for r in mine):
            pts = sorted((r["size"], r["gflops"]) for r in mine if r["provider"] == provider)
            ax.plot(*zip(*pts), marker="o", label=provider)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"{family}: {case}", fontsize=9)
        ax.set_xlabel(mine[0]["size_label"], fontsize=8)
        ax.set_ylabel("GFLOP/s", fontsize=8)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(cases):]:
        ax.axis("off")
    fig.suptitle(f"pyengine throughput, {doc['date']}")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def roofline(doc: dict, path: Path) -> Path | None:
    if not doc["results"]:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 5))
    xs = [r["flops"] / r["bytes"] for r in doc["results"] if r["bytes"]]
    lo, hi = min(xs + [0.1]) / 2, max(xs + [100.0]) * 2
    for device, c in doc["ceilings"].items():
        ridge = c["sgemm_gflops"] / c["copy_gbps"]
        ax.plot([lo, ridge, hi], [lo * c["copy_gbps"], c["sgemm_gflops"], c["sgemm_gflops"]], "k--" if
                device == "cpu" else "k-", lw=1, label=f"{device} roof (copy {c['copy_gbps']:.0f} GB/s, "
                f"SGEMM {c['sgemm_gflops']:.0f} GFLOP/s)")
    for provider in dict.fromkeys(r["provider"] for r in doc["results"]):
        pts = [(r["flops"] / r["bytes"], r["gflops"]) for r in doc["results"]
               if r["provider"] == provider and r["bytes"]]
        ax.scatter(*zip(*pts), s=18, label=provider)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP/byte)")
    ax.set_ylabel("GFLOP/s")
    ax.set_title("roofline position (roofs measured in this run)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def speedup(doc: dict, path: Path) -> Path | None:
    ratios = doc["ratios"]
    if not ratios:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 0.28 * len(ratios) + 1.2))
    labels = [f"{r['case']} {r['size']}: {r['numerator']} vs {r['denominator']}" for r in ratios]
    values = [r["speedup"] for r in ratios]
    ax.barh(range(len(values)), values, color=["tab:green" if v >= 1 else "tab:red" for v in values])
    ax.axvline(1.0, color="k", lw=1)
    ax.set_yticks(range(len(values)), labels, fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("speedup (> 1: the first provider is faster)")
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def write_all(doc: dict, folder: str | Path) -> list[Path]:
    """Every plot that has data, written into ``folder``; returns the paths written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    made = [throughput(doc, folder / "throughput.png"), roofline(doc, folder / "roofline.png"),
            speedup(doc, folder / "speedup.png")]
    return [p for p in made if p is not None]
