"""`urep relatedness CONFIG`: is each target's data related to the source modality? Prints a table.

Parses the command line, reads the images with `urep.experiments.relatedness.relatedness_inputs` and scores
them with `urep.relatedness.relatedness_table`; flags override the config. Exit status 0, or 3 with
`--fail-unrelated` when a target looks unrelated. The config forms: `urep relatedness --help`.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    from urep.experiments.relatedness import CONFIG_HELP, DEFAULT_MAX_IMAGES

    parser = subparsers.add_parser(
        "relatedness",
        help="distribution relatedness of each target's data to the source modality (table + warnings)",
        description=__doc__.splitlines()[0],
        epilog=CONFIG_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("config", help="experiment config or standalone relatedness YAML")
    parser.add_argument("--data-root", default=None, help="folder the data roots are relative to")
    parser.add_argument("--threshold", type=float, default=None,
                        help="normalized Fréchet distance above which a target may be unrelated (default 4.0)")
    parser.add_argument("--alpha", type=float, default=None, help="MMD permutation test level (default 0.05)")
    parser.add_argument("--n-permutations", type=int, default=None, help="MMD permutations (default 200)")
    parser.add_argument("--max-images", type=int, default=None,
                        help=f"seeded sample per set at most this large (default {DEFAULT_MAX_IMAGES})")
    parser.add_argument("--encoder", default=None, help="saved Keras model whose encoder_out gives the features")
    parser.add_argument("--output", default=None, help="also write the table to this .csv or .json file")
    parser.add_argument("--fail-unrelated", action="store_true", help="exit with status 3 if a target looks unrelated")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Handler of `urep relatedness`."""
    from urep import relatedness
    from urep.data import DatasetError, ImageReadError
    from urep.experiments.relatedness import relatedness_inputs, write_table
    from urep.experiments.schema import ConfigError

    if args.output and Path(args.output).suffix not in (".csv", ".json"):
        raise SystemExit(f"urep relatedness: --output must end in .csv or .json, got {args.output!r}")
    try:
        inputs = relatedness_inputs(Path(args.config), args.data_root, args.encoder, args.max_images)
    except (ConfigError, DatasetError, ImageReadError, FileNotFoundError) as err:
        raise SystemExit(f"urep relatedness: {err}") from err
    config = inputs.config
    threshold = args.threshold if args.threshold is not None else config.threshold
    try:
        table = relatedness.relatedness_table(
            inputs.source, inputs.targets, encoder=inputs.encoder,
            threshold=relatedness.DEFAULT_THRESHOLD if threshold is None else threshold,
            alpha=config.alpha if args.alpha is None else args.alpha,
            n_permutations=config.n_permutations if args.n_permutations is None else args.n_permutations,
            seed=config.seed, source_name=inputs.source_name,
        )
    except ValueError as err:
        raise SystemExit(f"urep relatedness: {err}") from err
    print(table.to_string(float_format=lambda v: f"{v:.4g}"))
    if args.output:
        write_table(table, Path(args.output))
    unrelated = [name for name, related in table["related"].items() if not related]
    if unrelated:
        print(f"unrelated to the source: {', '.join(unrelated)}")
    return 3 if unrelated and args.fail_unrelated else 0
