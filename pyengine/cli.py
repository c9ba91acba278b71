"""The ``pyengine`` command line: ``pyengine <command> [options]``.

Each subcommand is one module in ``pyengine/commands/`` that defines
``register(subparsers)``: it adds its parser and sets ``func`` (called with the parsed
arguments, returning an exit status). Dropping a module there is all it takes to add a
command; nothing here lists them.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys


def build_parser() -> argparse.ArgumentParser:
    from pyengine import commands

    parser = argparse.ArgumentParser(
        prog="pyengine", description="pyengine: a teaching tensor engine with CUDA, Numba and NumPy backends")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{commands.__name__}.{info.name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
