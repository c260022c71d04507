"""`urep run` (not implemented yet)."""

from __future__ import annotations


def register(subparsers) -> None:
    parser = subparsers.add_parser("run", help="(not implemented yet)")
    parser.set_defaults(func=_not_implemented)


def _not_implemented(args) -> int:
    raise SystemExit("urep run is not implemented yet")
