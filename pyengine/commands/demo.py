"""``pyengine demo``: train LeNet-5 and a small GPT on every device present, side by side."""
from __future__ import annotations

import sys


def register(subparsers) -> None:
    from pyengine.bench.demo import MODELS, SIZES

    p = subparsers.add_parser(
        "demo", help="CPU against GPU: train LeNet-5 and a small GPT on each device, side by side",
        description="Trains the same seeded models for a fixed number of steps on the CPU and on each "
                    "GPU kernel provider present, then shows time per step, samples/s, the GPU/CPU "
                    "speedup, matmul GFLOP/s, a loss-against-time plot, classified digits and generated "
                    "text. Without a GPU, the GPU results committed in bench/results/ are shown, labelled with "
                    "card, driver, date and commit (an installed copy carries them in "
                    "pyengine/bench/committed_gpu.json).")
    p.add_argument("--models", default=",".join(MODELS), help=f"comma-separated subset of {','.join(MODELS)}")
    p.add_argument("--steps", type=int, default=100, help="training steps per model and device (default 100)")
    p.add_argument("--size", choices=tuple(SIZES), default="small", help="model and batch size (default small)")
    p.add_argument("--kernels", choices=("native", "numba", "both"), default="native",
                   help="GPU kernel provider(s) to run (default native)")
    p.add_argument("--sweep", action="store_true",
                   help="also show the speedup against matrix and batch size (without a GPU: the CPU half "
                        "measured here, the GPU half from the committed results or marked absent)")
    p.add_argument("--threads", type=int, default=None,
                   help="cap NumPy's BLAS and PyTorch's threads (default: leave them); 1 steadies CPU "
                        "numbers on a busy machine")
    p.add_argument("--out", default="demo-out", help="folder for loss_vs_time.png and demo.json")
    p.set_defaults(func=run)


def run(args) -> int:
    from pyengine.bench import demo

    try:
        demo.run([m.strip() for m in args.models.split(",") if m.strip()], steps=args.steps, size=args.size,
                 kernels=args.kernels, out=args.out, do_sweep=args.sweep, threads=args.threads)
    except ValueError as exc:
        print(f"pyengine demo: {exc}", file=sys.stderr)
        return 2
    return 0
