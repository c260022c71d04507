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

# Module names under urep.cli, in the order they appear in `urep --help`.
COMMANDS = (
    "demo", "run", "report", "compare", "data", "models", "tune", "bench", "explain", "recommend",
    "relatedness",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="urep",
        description="Unified modality-specific representation learning (U-Rep) for medical images.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"urep.cli.{name}")
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
