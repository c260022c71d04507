"""`urep demo` (not implemented yet)."""

from __future__ import annotations


def register(subparsers) -> None:
    parser = subparsers.add_parser("demo", help="(not implemented yet)")
    parser.set_defaults(func=_not_implemented)


def _not_implemented(args) -> int:
    raise SystemExit("urep demo is not implemented yet")
