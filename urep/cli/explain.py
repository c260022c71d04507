"""`urep explain` (not implemented yet)."""

from __future__ import annotations


def register(subparsers) -> None:
    parser = subparsers.add_parser("explain", help="(not implemented yet)")
    parser.set_defaults(func=_not_implemented)


def _not_implemented(args) -> int:
    raise SystemExit("urep explain is not implemented yet")
