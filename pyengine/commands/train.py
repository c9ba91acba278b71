"""``pyengine train MODEL``: train a registered model on its bundled data, then test it."""
from __future__ import annotations

import json
import sys
from pathlib import Path


def register(subparsers) -> None:
    from pyengine.models import list_models, model_spec
    from pyengine.train import OPTIMIZERS

    models = list_models()
    p = subparsers.add_parser(
        "train", help="train a model on its bundled data",
        description="Train a model with a 70/10/20 train/validation/test split, validating every "
                    "epoch; prints test accuracy (or loss) and saves a checkpoint.",
        epilog="models: " + "; ".join(f"{m}: {model_spec(m).help}" for m in models))
    p.add_argument("model", choices=models, metavar="MODEL", help=f"one of {', '.join(models)}")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--optimizer", default="adam", choices=OPTIMIZERS)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs", help="folder for the checkpoint and history.json (default: runs)")
    p.set_defaults(func=run)


def run(args) -> int:
    from pyengine.models import model_spec
    from pyengine.train import train_model

    if args.device == "cuda":
        from pyengine.cuda import unavailable_reason
        reason = unavailable_reason()
        if reason is not None:
            print(f"pyengine train: --device cuda is not usable here: {reason}", file=sys.stderr)
            return 1
    for name in ("epochs", "batch_size"):
        if getattr(args, name) < 1:
            print(f"pyengine train: --{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}",
                  file=sys.stderr)
            return 2
    if not args.lr >= 0:
        print(f"pyengine train: --lr must be a non-negative number, got {args.lr}", file=sys.stderr)
        return 2
    out = Path(args.out)
    try:
        history = train_model(args.model, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                              optimizer=args.optimizer, device=args.device, seed=args.seed, out=out)
    except FloatingPointError as exc:  # a diverged run is the user's setting, not a crash
        print(f"\npyengine train: {exc}", file=sys.stderr)
        return 1
    (out / f"{args.model}_history.json").write_text(json.dumps(history, indent=1))
    after_train = model_spec(args.model).after_train
    if after_train is not None:
        after_train(history)
    print(f"checkpoint {history['checkpoint']}; history {out / f'{args.model}_history.json'}")
    return 0
