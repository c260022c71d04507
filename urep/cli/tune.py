"""`urep tune CONFIG --out DIR`: Keras Tuner search over a source representation or a task head.

Parses the command line and calls `urep.experiments.tuning` (`load_tuning`, `prepare_search`, `run_search`);
prints the best values and the files written. Exit status 0, 1 when no trial completed, 2 on a bad config or
output folder. The config keys and the output files: `urep tune --help` and docs/tuning.md.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def register(subparsers) -> None:
    from urep.experiments.tuning import CONFIG_HELP

    parser = subparsers.add_parser(
        "tune", help="Keras Tuner search (grid/random/bayesian/hyperband) over a source or a head",
        description=__doc__.splitlines()[0], epilog=CONFIG_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", metavar="CONFIG",
                        help="experiment config (with an optional tuning: section) or standalone tuning YAML")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (new or empty)")
    parser.add_argument("--tuner", choices=("grid", "random", "bayesian", "hyperband"),
                        help="override tuning.tuner")
    parser.add_argument("--max-trials", type=int, metavar="N", help="override tuning.max_trials")
    parser.add_argument("--objective", help="override tuning.objective (loss, val_loss, val_<metric>)")
    parser.add_argument("--direction", choices=("min", "max", "auto"), help="override tuning.direction")
    parser.add_argument("--target", help="override tuning.target ('source' or a task name)")
    parser.add_argument("--data-root", metavar="DIR", help="folder the data sources' roots are relative to")
    parser.add_argument("--resume", action="store_true", help="continue the search in DIR")
    parser.add_argument("--overwrite", action="store_true", help="delete DIR first")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    import yaml

    from urep.experiments.schema import ConfigError
    from urep.experiments.tuning import load_tuning, prepare_search, run_search
    from urep.io import RunDirError, RunDirExistsError

    if args.resume and args.overwrite:
        print("urep tune: --resume and --overwrite exclude each other")
        return 2
    overrides = {"tuner": args.tuner, "max_trials": args.max_trials, "objective": args.objective,
                 "direction": args.direction, "target": args.target}
    try:
        job = load_tuning(args.config, overrides)
    except (ConfigError, FileNotFoundError) as err:
        print(f"urep tune: {err}")
        return 2
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    out = Path(args.out)
    try:
        hypermodel = prepare_search(job, out, args.data_root, resume=args.resume, overwrite=args.overwrite)
    except (RunDirExistsError, RunDirError, ConfigError) as err:
        print(f"urep tune: {err}")
        return 2
    outcome = run_search(job, hypermodel, out)
    if outcome.worker:
        print(f"urep tune: worker {os.environ.get('KERASTUNER_TUNER_ID')} finished")
        return 0
    if outcome.best_config is None:
        print(f"urep tune: no trial completed; see {outcome.paths['trials.md']}")
        return 1
    print(f"urep tune: {outcome.n_trials} trials in {out / 'search'}")
    values = yaml.safe_dump(outcome.values, default_flow_style=True).strip()
    print(f"best {hypermodel.objective} ({hypermodel.direction}): {values}")
    for name in ("trials.csv", "trials.md", "objective.png", "best.json"):
        print(f"  {outcome.paths[name]}")
    print(f"  {outcome.best_config}  (urep run {outcome.best_config} --out RUN)")
    return 0
