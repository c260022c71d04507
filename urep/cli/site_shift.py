"""`urep site-shift CONFIG --task NAME`: why a classification task does or does not carry across sites.

Reads the task's training site (`data`) and test site (`test_data`) as the run would (size, preprocessing) and
prints `urep.experiments.site_shift.site_shift_table`: PCA + logistic-regression probes for site separability,
in-site and cross-site AUC, on whole images and on lungs only.
"""

from __future__ import annotations

import argparse
from pathlib import Path

OUTPUT_SUFFIXES = (".csv", ".json")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "site-shift",
        help="linear probes: are the sites separable, is the task learnable in each, does it transfer",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument("config", help="experiment config (name or path)")
    parser.add_argument("--task", required=True, help="a classification task of the config with test_data")
    parser.add_argument("--data-root", default=None, help="folder the data roots are relative to")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                        help="override a config key (YAML value), e.g. --set image_size=[64,64]; repeatable")
    parser.add_argument("--folds", type=int, default=5, help="cross-validation folds (default 5)")
    parser.add_argument("--components", type=int, default=30, help="PCA components (default 30)")
    parser.add_argument("--size", type=int, default=32, help="side of the downsampled pixels (default 32)")
    parser.add_argument("--output", default=None, help="also write the table to this .csv or .json file")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output file")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Handler of `urep site-shift`."""
    from urep.experiments.config import SuiteConfig, load_any
    from urep.experiments.site_shift import site_shift_table, task_sites
    from urep.io import atomic_write_json, atomic_write_text

    if args.output and Path(args.output).suffix not in OUTPUT_SUFFIXES:
        raise SystemExit(f"urep site-shift: --output must end in .csv or .json, got {args.output!r}")
    if args.output and Path(args.output).exists() and not args.overwrite:
        raise SystemExit(f"urep site-shift: {args.output} exists; pass --overwrite to replace it")
    config = load_any(args.config, data_root=args.data_root, overrides=list(args.overrides))
    if isinstance(config, SuiteConfig):
        raise SystemExit(f"urep site-shift: {args.config!r} is a suite; give one experiment config")
    try:
        source, target = task_sites(config, args.task, args.data_root)
        table = site_shift_table(source, target, n_classes=len(config.task(args.task).classes), folds=args.folds,
                                 seed=config.seed, components=args.components, size=args.size)
    except ValueError as err:
        raise SystemExit(f"urep site-shift: {err}") from err
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if args.output:
        path = Path(args.output)
        if path.suffix == ".json":
            atomic_write_json(path, {"table": table.to_dict(orient="records")})
        else:
            atomic_write_text(path, table.to_csv(index=False))
    return 0
