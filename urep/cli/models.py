"""`urep models summary`: every builder's parameter count next to the number the papers report."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    parser = subparsers.add_parser("models", help="inspect the model builders")
    actions = parser.add_subparsers(dest="models_command", metavar="ACTION")
    summary = actions.add_parser(
        "summary", help="print each model's parameter count next to the papers' (journal Tables 4-10)"
    )
    summary.add_argument(
        "--size",
        type=int,
        default=256,
        help="image height and width to build at, a multiple of 16 (counts do not depend on it; default 256)",
    )
    summary.set_defaults(func=_summary)
    parser.set_defaults(func=_usage(parser))


def _usage(parser: argparse.ArgumentParser):
    def handler(args: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    return handler


def _summary(args: argparse.Namespace) -> int:
    if args.size <= 0 or args.size % 16:
        raise SystemExit(f"urep models summary: --size must be a positive multiple of 16, got {args.size}")
    from urep.models.reported import parameter_report

    rows = parameter_report(args.size)
    header = ("model", "what (paper table)", "params", "trainable", "head only", "paper", "difference")
    table = [header] + [
        (
            row.model,
            row.source,
            f"{row.total:,}",
            f"{row.trainable:,}",
            "-" if row.head_only is None else f"{row.head_only:,}",
            "-" if row.paper is None else f"{row.paper:,}",
            "-" if row.difference is None else f"{row.difference:+,}",
        )
        for row in rows
    ]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    for line in table:
        cells = [
            cell.ljust(width) if i < 2 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(line, widths, strict=True))
        ]
        print("  ".join(cells).rstrip())
    return 0
