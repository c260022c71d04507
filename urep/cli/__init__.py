"""The `urep` command line: a thin layer that parses arguments and calls the library.

Each sub-command lives in its own module of this package and exposes `register(subparsers)`, which adds
its parser and sets `func` to a handler taking the parsed `argparse.Namespace` and returning an exit code.
Handlers import the heavy layers (TensorFlow) lazily so `urep --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from urep.logs import configure_console, import_tensorflow_quietly, quiet_tensorflow

# Module names under urep.cli, in the order they appear in `urep --help`.
COMMANDS = (
    "demo", "run", "report", "compare", "data", "models", "tune", "bench", "explain", "recommend",
    "relatedness",
)
#: Commands that load TensorFlow: it is imported once, quietly, before they run (unless -v).
TENSORFLOW_COMMANDS = frozenset({"demo", "run", "tune", "bench", "explain", "recommend", "relatedness"})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="urep",
        description="Unified modality-specific representation learning (U-Rep) for medical images.",
    )
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="debug logging: per-epoch lines and TensorFlow's own messages on the console")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"urep.cli.{name}")
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    quiet_tensorflow(args.verbose)  # before any sub-command imports TensorFlow
    if not logging.getLogger().handlers:
        configure_console(args.verbose)
    if not args.verbose and args.command in TENSORFLOW_COMMANDS:
        import_tensorflow_quietly()
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
