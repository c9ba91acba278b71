"""``pyengine bench``: run the benchmark suite on the devices present, or compare two runs.

Writes DIR/bench.json (pyengine/bench/schema.py), DIR/report.md and DIR/*.png, and prints
the results and the side-by-side ratios.
"""
from __future__ import annotations

import shlex
import sys
from pathlib import Path


def register(subparsers) -> None:
    from pyengine.bench.cases import FAMILIES
    from pyengine.bench.providers import ALL

    p = subparsers.add_parser(
        "bench", help="run the benchmark suite (or --compare two saved runs)",
        description="Time every kernel family and training step on each provider present here "
                    "(NumPy CPU always; native and Numba CUDA, PyTorch and CuPy where they run), "
                    "with GFLOP/s, GB/s, the share of ceilings measured in the same run, and the ratios "
                    "GPU/CPU, ours/vendor and native/numba.")
    p.add_argument("--quick", action="store_true", help="fewer sizes and repeats (under 2 minutes on a CPU)")
    p.add_argument("--device", choices=("all", "cpu", "cuda"), default="all",
                   help="devices to measure (default: all present)")
    p.add_argument("--families", default=",".join(FAMILIES),
                   help=f"comma-separated subset of {','.join(FAMILIES)} (default: all)")
    p.add_argument("--providers", default=",".join(ALL), help=f"comma-separated subset of {','.join(ALL)}")
    p.add_argument("--out", default="bench-out", help="folder for bench.json, report.md and the plots")
    p.add_argument("--threads", type=int, default=None,
                   help="cap NumPy's BLAS and PyTorch's threads (default: leave them); 1 steadies "
                        "numbers on a busy machine")
    p.add_argument("--max-size", type=int, default=None, help="skip sizes above this (a smoke run)")
    p.add_argument("--compare", nargs=2, metavar=("A.json", "B.json"),
                   help="print the ratios between two saved runs instead of measuring")
    p.set_defaults(func=run)


def _split(text: str, allowed, what: str) -> list[str]:
    items = [x.strip() for x in text.split(",") if x.strip()]
    unknown = [x for x in items if x not in allowed]
    if unknown or not items:
        raise ValueError(f"--{what}: unknown {unknown or 'empty list'}; choose from {', '.join(allowed)}")
    return items


def _compare(paths) -> int:
    from pyengine.bench import compare, schema

    try:
        a, b = (schema.read(p) for p in paths)
    except ValueError as exc:
        print(f"pyengine bench --compare: {exc}", file=sys.stderr)
        return 2
    print(compare.render(a, b, paths[0], paths[1]))
    return 0


def run(args) -> int:
    if args.compare:
        return _compare(args.compare)
    from pyengine.bench import plots, report, schema, suite
    from pyengine.bench.cases import FAMILIES
    from pyengine.bench.providers import ALL, present_devices

    try:
        families = _split(args.families, FAMILIES, "families")
        providers = _split(args.providers, ALL, "providers")
    except ValueError as exc:
        print(f"pyengine bench: {exc}", file=sys.stderr)
        return 2
    present = present_devices()
    if args.device == "cuda" and "cuda" not in present:
        from pyengine.cuda import unavailable_reason
        print(f"pyengine bench: --device cuda is not usable here: {unavailable_reason()}", file=sys.stderr)
        return 1
    devices = present if args.device == "all" else [args.device]
    if "cuda" not in devices and args.device == "all":
        from pyengine.cuda import unavailable_reason
        print(f"No usable GPU here ({unavailable_reason()}): measuring the CPU only.")
    command = "pyengine " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["bench"] \
        else "pyengine bench (called from Python)"
    doc = suite.run(devices, families, args.quick, providers, progress=sys.stdout, command=command,
                    max_size=args.max_size, threads=args.threads)
    out = Path(args.out)
    schema.write(doc, out / "bench.json")
    images = plots.write_all(doc, out)
    (out / "report.md").write_text(report.markdown(doc, images))
    print()
    print(report.text_table(report.RESULT_HEADER, report.result_rows(doc)))
    if doc["ratios"]:
        print()
        print(report.text_table(report.RATIO_HEADER, report.ratio_rows(doc)))
    for err in doc["errors"]:
        print(f"error: {err}")
    print(f"\nwrote {out / 'bench.json'}, {out / 'report.md'} and {len(images)} plots in {out}")
    return 1 if doc["errors"] else 0
