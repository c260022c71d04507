"""`urep report RUN_DIR`: rebuild a run's tables and result figures from its results.json."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "report", help="rebuild tables/ and the result figures of a run directory from results.json",
        description="Rebuild tables/*.md, tables/*.csv, report.md, the training curves and the cost chart "
                    "from RUN_DIR/results.json (the image figures drawn during the run are kept).")
    parser.add_argument("run_dir", metavar="RUN_DIR", nargs="+", help="run directories")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from urep.experiments.runner import load_results, write_report

    for run_dir in args.run_dir:
        try:
            results = load_results(run_dir)
        except (FileNotFoundError, ValueError) as err:
            raise SystemExit(f"urep report: {err}") from err
        written = write_report(results, run_dir)
        print(f"{run_dir}: rebuilt {len(written)} files; see {run_dir}/report.md")
    return 0
