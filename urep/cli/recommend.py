"""`urep recommend` (not implemented yet)."""

from __future__ import annotations


def register(subparsers) -> None:
    parser = subparsers.add_parser("recommend", help="(not implemented yet)")
    parser.set_defaults(func=_not_implemented)


def _not_implemented(args) -> int:
    raise SystemExit("urep recommend is not implemented yet")
