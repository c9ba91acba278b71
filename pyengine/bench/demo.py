"""``pyengine demo``: the same training on every device present, side by side.

LeNet-5 learns the bundled digits and a small GPT the bundled text, for a fixed number of
steps per device through pyengine.train.fit. Shown: time per step, samples/s, the GPU/CPU
speedup, matmul GFLOP/s per device, a loss-against-wall-time plot, a few classified digits
and generated characters. Without a GPU the CPU side runs and the GPU numbers committed
under bench/results/ are shown with their card and date, never as this machine's.
"""
from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np

from . import committed
from .cases import CASES, build
from .providers import discover
from .report import text_table
from .suite import thread_limit, thread_settings
from .timers import timer_for

MODELS = ("lenet5", "gpt")
# Per size: LeNet-5's batch, and the GPT's (batch, n_layer, n_head, n_embd); context 64.
SIZES = {
    "tiny": {"lenet5": 16, "gpt": (4, 1, 2, 32)},
    "small": {"lenet5": 128, "gpt": (32, 2, 4, 64)},
    "medium": {"lenet5": 512, "gpt": (64, 4, 4, 128)},
}
BLOCK = 64
_SHADES = " .:-=+*#%@"


@dataclass(frozen=True)
class Target:
    """Where one column of the table runs: a device and, on the GPU, whose kernels."""
    label: str
    device: str
    kernels: str | None = None


def targets(kernels: str = "native") -> tuple[list[Target], str | None]:
    """The CPU, plus the GPU with each requested kernel provider that runs here; and why
    there is no GPU column, if there is none."""
    wanted = ("native", "numba") if kernels == "both" else (kernels,)
    present, missing = discover(wanted, ("cuda",))
    found = [Target("cpu", "cpu")] + [Target(f"cuda ({p.name})", "cuda", p.name) for p in present]
    reason = None if present else "; ".join(f"{k}: {v}" for k, v in missing.items())
    return found, reason


def _data(model: str):
    from pyengine.data import load_digits
    from pyengine.data.text import default_corpus
    from pyengine.train import split_dataset

    if model == "lenet5":
        train, _, test = split_dataset(load_digits(size=28, normalize=True), seed=0)
        return train, test
    corpus = default_corpus()
    return corpus.windows("train", BLOCK), corpus.windows("val", BLOCK)


def _build(model: str, size: str):
    from pyengine.data.text import default_corpus
    from pyengine.models import GPT, LeNet5

    if model == "lenet5":
        return LeNet5(), SIZES[size]["lenet5"]
    batch, n_layer, n_head, n_embd = SIZES[size]["gpt"]
    return GPT(vocab_size=default_corpus().vocab_size, block_size=BLOCK, n_layer=n_layer, n_head=n_head,
               n_embd=n_embd), batch


def train_one(model_name: str, target: Target, steps: int, size: str, lr: float | None = None) -> dict:
    """Train a fresh, identically seeded model for ``steps`` steps on ``target``; returns
    the timings, the loss curve and what the model does afterwards."""
    import pyengine as pe
    from pyengine.backend import get_cuda_kernels, set_cuda_kernels
    from pyengine.train import fit

    before = get_cuda_kernels()
    if target.kernels:
        set_cuda_kernels(target.kernels)
    try:
        pe.manual_seed(0)
        model, batch = _build(model_name, size)
        train, held_out = _data(model_name)
        epochs = math.ceil(steps / max(len(train) // batch, 1))
        hist = fit(model, train, epochs=epochs, batch_size=batch, lr=lr or (3e-3 if model_name == "gpt" else 1e-3),
                   device=target.device, seed=0, max_steps=steps, verbose=False)
        shown = _show_digits(model, held_out, target.device) if model_name == "lenet5" \
            else _show_text(model, target.device)
    finally:
        set_cuda_kernels(before)
    # The first step pays for warm-up (allocation, kernel compilation): leave it out.
    gaps = np.diff(hist["step_time_s"])
    step_s = float(statistics.median(gaps)) if len(gaps) else hist["step_time_s"][0]
    return {"model": model_name, "target": target.label, "device": target.device, "batch": batch,
            "steps": len(hist["step_loss"]), "step_ms": 1e3 * step_s, "samples_per_s": batch / step_s,
            "first_loss": hist["step_loss"][0], "final_loss": hist["step_loss"][-1],
            "loss": hist["step_loss"], "wall_s": hist["step_time_s"], **shown}


def _show_digits(model, test_set, device: str, count: int = 6) -> dict:
    """Predictions on the first ``count`` held-out digits, their accuracy on the whole
    held-out split, and small ASCII renderings to print beside the labels."""
    import pyengine as pe
    from pyengine.data import DataLoader
    from pyengine.train import evaluate

    acc = evaluate(model, DataLoader(test_set, batch_size=256), "classification", device)["accuracy"]
    x, y = next(iter(DataLoader(test_set, batch_size=count)))
    model.eval()
    with pe.no_grad():
        pred = model(x.to(device)).argmax(dim=-1).cpu().numpy()
    model.train()
    return {"accuracy": acc, "digits": [_ascii(img) for img in x.numpy()[:, 0]],
            "labels": y.numpy().tolist(), "predicted": pred.tolist()}


def _ascii(img: np.ndarray) -> list[str]:
    """A 28x28 image as 14 lines of 14 characters, darker characters for brighter pixels."""
    small = img.reshape(14, 2, 14, 2).mean(axis=(1, 3))
    lo, hi = small.min(), small.max()
    levels = np.clip(((small - lo) / (hi - lo + 1e-9) * (len(_SHADES) - 1)).round().astype(int), 0, len(_SHADES) - 1)
    return ["".join(_SHADES[v] for v in row) for row in levels]


def _show_text(model, device: str, prompt: str = "The ", chars: int = 80) -> dict:
    import pyengine as pe
    from pyengine.data.text import default_corpus

    tok = default_corpus().tokenizer
    pe.manual_seed(0)
    idx = pe.tensor(tok.encode(prompt)[None], device=device)
    return {"sample": tok.decode(model.generate(idx, chars, temperature=0.8).cpu().numpy()[0])}


MATMUL_N = 1024


def matmul_gflops(target: Target, n: int = MATMUL_N) -> float:
    """GFLOP/s of an n x n x n float32 matmul through pyengine's backend on ``target``,
    the same case ``pyengine bench`` times."""
    case = next(c for c in CASES if c.family == "matmul")
    names = (target.kernels,) if target.kernels else ("numpy",)
    (provider,), _ = discover(names, (target.device,))
    with provider.selected():
        built = build(case, provider, n)
        timing = timer_for(target.device)(built.fn, repeats=10, warmup=2, budget_s=2.0)
    return built.flops / timing.ms / 1e6


def sweep(targets_: list[Target], stream: TextIO, quick: bool = False,
          committed_sweep: dict | None = None) -> list[dict]:
    """Matmul and LeNet-5 training-step time against size on every target, with the
    GPU/CPU speedup when a GPU is here: small sizes are where the CPU wins. Without a GPU
    here, ``committed_sweep`` (committed.summary()["sweep"]) is shown as the GPU half."""
    cases = {c.name: c for c in CASES if c.name in committed.SWEEP_CASES}
    plan = [("sgemm", (16, 64, 256) if quick else (16, 64, 256, 1024)),
            ("lenet5", (4, 16) if quick else (4, 16, 64, 256))]
    rows = []
    for name, sizes in plan:
        for n in sizes:
            row = {"case": name, "size": n}
            for t in targets_:
                (provider,), _ = discover((t.kernels or "numpy",), (t.device,))
                with provider.selected():
                    built = build(cases[name], provider, n)
                    row[t.label] = timer_for(t.device)(built.fn, repeats=5, warmup=1, budget_s=1.0).ms
            rows.append(row)
    labels = [t.label for t in targets_]
    gpu = [t.label for t in targets_ if t.device == "cuda"]
    header = ["case", "size"] + [f"{x} ms" for x in labels] + [f"{g} / cpu speedup" for g in gpu]
    stream.write("\nSpeedup against size (measured here):\n")
    stream.write(text_table(header, [[r["case"], str(r["size"])] + [f"{r[x]:.3f}" for x in labels]
                                     + [f"{r['cpu'] / r[g]:.2f}x" for g in gpu] for r in rows]) + "\n")
    if not gpu:
        _show_committed_sweep(rows, committed_sweep, stream)
    return rows


def _show_committed_sweep(rows: list[dict], committed_sweep: dict | None, stream: TextIO) -> None:
    """The GPU half of the sweep on a machine without a GPU: the committed GPU/CPU pairs of
    the same cases, both times from that host; "absent" where none was committed."""
    if not committed_sweep or not committed_sweep["pairs"]:
        stream.write("GPU half: absent (no GPU here, and no committed GPU/CPU pairs of these cases).\n")
        return
    here = {(r["case"], r["size"]): r["cpu"] for r in rows}
    there: dict[tuple, list[dict]] = {}
    for p in committed_sweep["pairs"]:
        there.setdefault((p["case"], p["size"]), []).append(p)

    def ms(v):
        return "-" if v is None else f"{v:.3f}"

    table = []
    for key in sorted(set(here) | set(there), key=lambda k: (committed.SWEEP_CASES.index(k[0]), k[1])):
        cpu_here = ms(here[key]) if key in here else "not run here"
        for p in there.get(key, [None]):
            pair = [ms(p["cpu_ms"]), f"{p['gpu']} {ms(p['gpu_ms'])}", f"{p['speedup']:.2f}x"] if p else ["absent"] * 3
            table.append([key[0], str(key[1]), cpu_here] + pair)
    where = f"{committed_sweep['path']} in {committed_sweep.get('origin', 'bench/results')}"
    stream.write(f"GPU half, committed, NOT measured on this machine: {_provenance(committed_sweep)}\n"
                 f"  from {where} (command: {committed_sweep['command']})\n")
    stream.write(text_table(["case", "size", "cpu here ms", "that host's cpu ms", "that host's gpu ms",
                             "gpu / cpu there"], table) + "\n")


def plot_loss(runs: list[dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(r["model"] for r in runs))
    fig, axes = plt.subplots(1, len(models), figsize=(5.5 * len(models), 4), squeeze=False)
    for ax, model in zip(axes[0], models):
        for r in (r for r in runs if r["model"] == model):
            ax.plot(r["wall_s"], r["loss"], label=f"{r['target']} ({r['step_ms']:.1f} ms/step)")
        ax.set_xlabel("wall time (s)")
        ax.set_ylabel("training loss")
        ax.set_title(f"{model}: loss against wall time")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def side_by_side(runs: list[dict], gflops: dict[str, float]) -> str:
    """The table: one row per (model, target), the speedup over the CPU row of that model."""
    cpu_ms = {r["model"]: r["step_ms"] for r in runs if r["device"] == "cpu"}
    rows = [[r["model"], r["target"], str(r["batch"]), str(r["steps"]), f"{r['step_ms']:.2f}",
             f"{r['samples_per_s']:,.0f}", f"{r['first_loss']:.3f} -> {r['final_loss']:.3f}",
             f"{cpu_ms[r['model']] / r['step_ms']:.2f}x" if r["model"] in cpu_ms else "-",
             f"{gflops.get(r['target'], float('nan')):.1f}"] for r in runs]
    return text_table(["model", "device", "batch", "steps", "ms/step", "samples/s", "loss", "vs cpu",
                       f"matmul {MATMUL_N}^3 GFLOP/s"], rows)


def show_learned(runs: list[dict], stream: TextIO) -> None:
    for r in runs:
        if r["model"] == "lenet5":
            stream.write(f"\nLeNet-5 on {r['target']}: held-out accuracy {100 * r['accuracy']:.1f}%; "
                         "the first held-out digits:\n")
            for line in zip(*r["digits"]):
                stream.write("   ".join(line) + "\n")
            stream.write("   ".join(f"pred {p} true {t}".ljust(14) for p, t in zip(r["predicted"], r["labels"])) + "\n")
        else:
            stream.write(f"\nGPT on {r['target']} after {r['steps']} steps continues \"The \":\n"
                         f"{r['sample']!r}\n")


def _provenance(run: dict) -> str:
    return (f"{run['card']}, {run['date']}, driver {run['driver'] or 'not recorded'}, "
            f"commit {run['commit'] or 'not recorded'}")


def show_committed(stream: TextIO, folder=None, limit: int = 12) -> dict:
    """Print the committed GPU runs, labelled as such; returns what was shown
    (committed.summary() and its ``origin``)."""
    doc, origin = committed.shown(folder)
    if not doc["runs"]:
        stream.write(f"\nNo committed GPU results were found in {origin}.\n")
    for run in doc["runs"]:
        stream.write(f"\nCommitted GPU results, NOT measured on this machine: {_provenance(run)}\n"
                     f"  from {run['path']} in {origin} (command: {run['command']})\n")
        # Our kernels first: they are what the course built; the references follow.
        ordered = sorted(run["rows"], key=lambda x: "ours" not in x["name"] and "native" not in x["name"])
        rows = [[x["name"], str(x["shape"]), f"{x['ms']:.3f}" if x["ms"] else "-",
                 f"{x['gflops']:.1f}" if x["gflops"] else "-", f"{x['gbps']:.1f}" if x["gbps"] else "-",
                 f"{x['ratio']:.2f} ({x['reference']})" if x.get("ratio") and x.get("reference") else "-"]
                for x in ordered[:limit]]
        stream.write(text_table(["op", "shape", "ms", "GFLOP/s", "GB/s", "ratio (against)"], rows) + "\n")
        if len(run["rows"]) > limit:
            stream.write(f"  ... and {len(run['rows']) - limit} more rows in that file\n")
        if any(x.get("ratio") for x in run["rows"]):
            stream.write("  ratio: the reference's time over ours (> 1: ours is faster); for memory-bound "
                         "rows, our GB/s over the device copy's\n")
        for s in run["speedups"][:limit]:
            stream.write(f"  {s['case']} {s['size']}: {s['numerator']} {s['speedup']:.2f}x faster than "
                         f"{s['denominator']} on that machine\n")
    for p in doc["skipped"]:
        stream.write(f"  (skipped {p})\n")
    sweep_ = doc["sweep"] and {**doc["sweep"], "origin": origin}
    return {**doc, "origin": origin, "sweep": sweep_}


def run(models=MODELS, steps: int = 100, size: str = "small", kernels: str = "native", out: str | Path = "demo-out",
        do_sweep: bool = False, stream: TextIO | None = None, threads: int | None = None) -> dict:
    """The whole demonstration; returns what it showed (also written to out/demo.json).
    ``threads`` caps the CPU libraries' threads (suite.thread_limit)."""
    import sys

    stream = stream or sys.stdout
    with thread_limit(threads):
        return _run(models, steps, size, kernels, Path(out), do_sweep, stream)


def _run(models, steps, size, kernels, out, do_sweep, stream) -> dict:
    if steps < 2:
        raise ValueError(f"steps must be at least 2 (the first is warm-up), got {steps}")
    if size not in SIZES:
        raise ValueError(f"size must be one of {', '.join(SIZES)}, got {size!r}")
    unknown = [m for m in models if m not in MODELS]
    if unknown or not models:
        raise ValueError(f"models must be some of {', '.join(MODELS)}, got {list(models)}")
    found, no_gpu = targets(kernels)
    if no_gpu:
        stream.write(f"No GPU is usable on this machine ({no_gpu}).\n"
                     "Running the CPU side only; GPU numbers further down are committed results from "
                     "another machine, labelled with its card and date.\n")
    runs, gflops = [], {}
    for t in found:
        gflops[t.label] = matmul_gflops(t)
        for m in models:
            stream.write(f"training {m} on {t.label} for {steps} steps ...\n")
            stream.flush()
            runs.append(train_one(m, t, steps, size))
    stream.write("\n" + side_by_side(runs, gflops) + "\n")
    show_learned(runs, stream)
    out.mkdir(parents=True, exist_ok=True)
    png = plot_loss(runs, out / "loss_vs_time.png")
    shown = {"size": size, "steps": steps, "no_gpu_reason": no_gpu, "threads": thread_settings(),
             "matmul_gflops": gflops,
             "runs": [{k: v for k, v in r.items() if k != "digits"} for r in runs]}
    if no_gpu:
        seen = show_committed(stream)
        shown["committed"] = {"origin": seen["origin"], "sweep": seen["sweep"],
                              "runs": [{k: v for k, v in c.items() if k != "rows"} for c in seen["runs"]]}
    if do_sweep:
        shown["sweep"] = sweep(found, stream, committed_sweep=shown.get("committed", {}).get("sweep"))
    (out / "demo.json").write_text(json.dumps(shown, indent=1) + "\n")
    stream.write(f"\nloss-against-time plot: {png}; numbers: {out / 'demo.json'}\n")
    return shown
