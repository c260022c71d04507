"""`urep compare RUN_DIR...`: several runs side by side (main metric per task and method, cost)."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "compare", help="put several run directories side by side",
        description="One row per (task, method, metric), one column per run; plus training minutes and "
                    "parameters. Writes Markdown to stdout, and to --out as .md and .csv when given.")
    parser.add_argument("run_dir", metavar="RUN_DIR", nargs="+", help="run directories (at least one)")
    parser.add_argument("--metrics", nargs="+", metavar="METRIC",
                        help="metrics to compare (default: accuracy, f1, iou, mcc, auc, psnr)")
    parser.add_argument("--out", metavar="FILE_STEM", help="also write FILE_STEM.md and FILE_STEM.csv")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from urep.experiments.compare import compare_runs
    from urep.experiments.runner import load_results
    from urep.io import atomic_write_text

    try:
        runs = {run_dir: load_results(run_dir) for run_dir in args.run_dir}
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(f"urep compare: {err}") from err
    table = compare_runs(runs, metrics=args.metrics)
    print(table.to_markdown())
    if args.out:
        atomic_write_text(f"{args.out}.md", table.to_markdown())
        atomic_write_text(f"{args.out}.csv", table.to_csv())
    return 0
