"""`urep run CONFIG --out DIR`: run an experiment config (or a suite) into a run directory."""

from __future__ import annotations

import argparse
import logging

logger = logging.getLogger(__name__)


def register(subparsers) -> None:
    from urep.experiments.distribution import PROFILES

    parser = subparsers.add_parser(
        "run", help="run an experiment config (experiments/*.yaml or a shipped name) into a run directory",
        description="Run an experiment: source representation, heads with each strategy, baselines, tests, "
                    "Grad-CAM, recommendation, tables and figures. CONFIG is a YAML file or the name of a "
                    "shipped config (e.g. cxr_heterogeneous_phantom).")
    parser.add_argument("config", metavar="CONFIG", help="YAML file or shipped config name")
    parser.add_argument("--out", required=True, metavar="DIR", help="run directory (must be new or empty)")
    parser.add_argument("--data-root", metavar="DIR",
                        help="folder the config's data roots are relative to (default $UREP_DATA_ROOT or .)")
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted run directory (refused when its config or data differ)")
    parser.add_argument("--overwrite", action="store_true",
                        help="delete an existing urep run directory first (never a folder urep did not create)")
    parser.add_argument("--seed", type=int, help="override the config's seed")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                        help="override a config key (YAML value), e.g. --set training.heads.epochs=5; repeatable")
    parser.add_argument("--tiny", action="store_true",
                        help="shrink the run to a smoke test (32x32, 1 epoch, 2 folds, few images)")
    parser.add_argument("--distribution", choices=("default", "mirrored", "multi_worker"),
                        help="train under tf.distribute: mirrored (the GPUs of this machine) or multi_worker "
                             "(TF_CONFIG cluster; only the chief writes DIR); sets distribution.kind; batch sizes "
                             "stay global batches (docs/scale.md)")
    parser.add_argument("--profile", choices=sorted(PROFILES),
                        help="gpu: XLA, mixed_float16, 4x batches, prefetch to the GPU; cpu-bf16: mixed_bfloat16 "
                             "without XLA, for CPUs with bfloat16 hardware (AMX / AVX512-BF16); MultiMix "
                             "experiments keep their batches (docs/scale.md)")
    parser.add_argument("--scale-lr", action="store_true",
                        help="with --profile gpu: scale learning rates with the batch (linear scaling rule)")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from urep.experiments.config import SuiteConfig, load_any

    overrides = list(args.overrides)
    if args.seed is not None:
        overrides.append(f"seed={args.seed}")
    if getattr(args, "distribution", None):
        overrides.append(f"distribution.kind={args.distribution}")
    # User errors (config, data, run directory) propagate to `urep.cli.main`: one message, exit status 2.
    config = load_any(args.config, data_root=args.data_root, overrides=overrides)
    if isinstance(config, SuiteConfig):
        return _run_suite(config, args, overrides)
    if args.tiny:
        from urep.experiments.scale import shrink

        config = shrink(config)
    config = _profiled(config, args)
    from urep.experiments.runner import run_experiment

    results = run_experiment(config, args.out, data_root=args.data_root, resume=args.resume,
                             overwrite=args.overwrite)
    if results.get("distribution", {}).get("role", "single") not in ("single", "chief"):
        print(f"urep run: {results['distribution']['role']} finished; the chief wrote the results")
        return 0
    _print_summary(results, args.out)
    return 0


def _profiled(config, args: argparse.Namespace):
    """`config` with `--profile` applied (unchanged without it)."""
    if not getattr(args, "profile", None):
        if getattr(args, "scale_lr", False):
            raise SystemExit("urep run: --scale-lr goes with --profile gpu (the profile enlarges the batches)")
        return config
    from urep.experiments.distribution import apply_profile

    try:
        return apply_profile(config, args.profile, scale_learning_rate=args.scale_lr)
    except ValueError as err:
        raise SystemExit(f"urep run: {err}") from err


def _run_suite(suite, args: argparse.Namespace, overrides: list[str]) -> int:
    from urep.experiments.runner import run_suite

    transform = None
    if args.tiny:
        from urep.experiments.scale import shrink

        transform = shrink
    if getattr(args, "profile", None):
        shrink_first = transform
        transform = lambda c: _profiled(shrink_first(c) if shrink_first else c, args)  # noqa: E731
    results = run_suite(suite, args.out, data_root=args.data_root, resume=args.resume, overwrite=args.overwrite,
                        overrides=overrides, transform=transform)
    for name, part in results["parts"].items():
        _print_summary(part, f"{args.out}/{name}")
    return 0


def _print_summary(results: dict, out: str) -> None:
    from urep.experiments.report import summary_table

    print(summary_table(results).to_markdown())
    print(f"Report: {out}/report.md (tables in {out}/tables, figures in {out}/figures)")
