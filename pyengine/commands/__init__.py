"""Subcommands of the ``pyengine`` CLI, one module each (see pyengine/cli.py).

A module here defines ``register(subparsers)``, which calls ``subparsers.add_parser(...)``
and ``set_defaults(func=run)``; ``run(args)`` returns the exit status. Keep heavy imports
inside ``run`` so ``pyengine --help`` stays fast.
"""
