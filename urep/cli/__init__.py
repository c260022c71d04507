"""The `urep` command line: a thin layer that parses arguments and calls the library.

Each sub-command lives in its own module of this package and exposes `register(subparsers)`, which adds
its parser and sets `func` to a handler taking the parsed `argparse.Namespace` and returning an exit code.
Handlers import the heavy layers (TensorFlow) lazily so `urep --help` stays fast.

A user error (bad config, data, path or flag; see `user_errors`) ends the command with one message on
stderr naming the key, file or value, and exit status 2; the traceback is shown only with `--debug`.
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
    "relatedness", "site_shift",
)
#: Commands that load TensorFlow: it is imported once, quietly, before they run (unless -v).
TENSORFLOW_COMMANDS = frozenset({"demo", "run", "tune", "bench", "explain", "recommend", "relatedness",
                                 "site-shift"})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="urep",
        description="Unified modality-specific representation learning (U-Rep) for medical images.",
    )
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="debug logging: per-epoch lines and TensorFlow's own messages on the console")
    parser.add_argument("--debug", action="store_true", help="show the traceback of a user error too")
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
    try:
        return int(args.func(args) or 0)
    except SystemExit as stop:
        if not isinstance(stop.code, str):
            raise
        if args.debug and stop.__cause__ is not None:
            raise stop.__cause__ from None
        _fail(stop.code)
    except user_errors() as err:
        if args.debug:
            raise
        _fail(f"urep {args.command}: {err}")
    return 2  # unreachable: _fail raises


class UserErrorExit(SystemExit):
    """Exit status 2 after a user error; `str()` is the message (already printed on stderr)."""

    def __init__(self, message: str) -> None:
        super().__init__(2)
        self.message = message

    def __str__(self) -> str:
        return self.message


def _fail(message: str) -> None:
    print(message, file=sys.stderr)
    raise UserErrorExit(message) from None


def user_errors() -> tuple[type[BaseException], ...]:
    """Exception types that mean a mistake in the input rather than a bug (reported without a traceback)."""
    import yaml

    from urep.data.errors import DatasetError, ImageReadError
    from urep.experiments.schema import ConfigError
    from urep.io import RunDirError, RunDirExistsError

    errors: list[type[BaseException]] = [ConfigError, DatasetError, ImageReadError, RunDirError, RunDirExistsError,
                                         FileNotFoundError, NotADirectoryError, IsADirectoryError,
                                         yaml.YAMLError]
    try:
        from urep.experiments.runner import ResumeMismatchError

        errors.append(ResumeMismatchError)
    except ImportError:  # pragma: no cover - the runner is part of urep
        pass
    return tuple(errors)


if __name__ == "__main__":
    sys.exit(main())
