"""`urep data`: check a dataset folder against its adapter, and write phantom sample grids.

    urep data check NAME ROOT [--masks-root DIR] [--manifest CSV] [--require-masks] [--sizes N] [--headers-only]
    urep data samples --out DIR [--size N] [--seed S]

`check` runs the adapter with `on_error="skip"`, decodes every image and mask in full (headers only with
`--headers-only`) and prints counts per label, masks, image sizes and every problem. Exit status 0 when clean,
1 when any row had a problem or the layout is wrong.
"""

from __future__ import annotations

import argparse
import inspect
import logging
import random
import sys
from collections import Counter

logger = logging.getLogger(__name__)

DEFAULT_SIZE_SAMPLE = 200


def register(subparsers) -> None:
    parser = subparsers.add_parser("data", help="check dataset folders; write phantom sample grids")
    actions = parser.add_subparsers(dest="data_command", metavar="ACTION")

    check = actions.add_parser(
        "check", help="run a dataset adapter on a folder and report what it finds",
        description="Read a dataset folder with its adapter (the public dataset's published layout) and report "
                    "images, patients, labels, splits, masks found, image sizes and files that do not follow "
                    "the layout. Exit code 0 when the folder reads, non-zero otherwise.")
    check.add_argument("name", help="adapter: rsna, montgomery, shenzhen, pediatric_pneumonia (kermany), jsrt, "
                                    "doppler, folder")
    check.add_argument("root", help="dataset folder")
    check.add_argument("--masks-root", help="mask folder (jsrt: the SCR folder; shenzhen: the mask/ folder)")
    check.add_argument("--manifest", help="manifest CSV (doppler, folder; default ROOT/manifest.csv)")
    check.add_argument("--require-masks", action="store_true", help="an image without a mask is a problem")
    check.add_argument("--no-check-sizes", action="store_true", help="do not compare image and mask sizes")
    check.add_argument("--sizes", type=int, default=DEFAULT_SIZE_SAMPLE, metavar="N",
                       help=f"read the size of N random images (default {DEFAULT_SIZE_SAMPLE}; 0: all)")
    check.add_argument("--seed", type=int, default=0, help="seed of the size sample")
    check.add_argument("--headers-only", action="store_true",
                       help="check file headers only; by default every image and mask is decoded in full")
    check.set_defaults(func=_check)

    samples = actions.add_parser("samples", help="write PNG sample grids of the CXR and Doppler phantoms")
    samples.add_argument("--out", required=True, help="output folder")
    samples.add_argument("--size", type=int, default=256, help="phantom side in pixels (32..512)")
    samples.add_argument("--seed", type=int, default=0)
    samples.set_defaults(func=_samples)

    parser.set_defaults(func=lambda args: _usage(parser))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _adapter_kwargs(args: argparse.Namespace, adapter) -> dict:
    accepted = inspect.signature(adapter).parameters
    kwargs: dict = {"on_error": "skip"}
    options = {
        "--masks-root": (args.masks_root, ("masks_root", "masks_dir")),
        "--manifest": (args.manifest, ("manifest_csv",)),
        "--require-masks": (args.require_masks or None, ("require_masks",)),
        "--no-check-sizes": (False if args.no_check_sizes else None, ("check_sizes",)),
    }
    for flag, (value, names) in options.items():
        if value is None:
            continue
        name = next((n for n in names if n in accepted), None)
        if name is None:
            raise ValueError(f"{flag} does not apply to the {args.name!r} adapter")
        kwargs[name] = value
    return kwargs


def _size_summary(images: list[str], sample: int, seed: int) -> tuple[str, Counter, list[tuple[str, str]]]:
    from urep.data import ImageReadError
    from urep.data.readers import image_shape

    if sample <= 0 or sample >= len(images):
        chosen, scope = images, f"all {len(images)} images"
    else:
        chosen = random.Random(seed).sample(images, sample)
        scope = f"a random sample of {sample} of {len(images)} images (seed {seed}; --sizes 0 for all)"
    sizes, problems = Counter(), []
    for path in chosen:
        try:
            height, width = image_shape(path)
            sizes[f"{height}x{width}"] += 1
        except ImageReadError as err:
            problems.append((path, str(err)))
    return scope, sizes, problems


def _decode_all(df) -> list[tuple[str, str]]:
    """Decode every image and mask of the table; the files that fail, with the reason."""
    from urep.data import ImageReadError, read_image, read_mask

    problems = []
    for image, mask in zip(df["image"], df["mask"], strict=True):
        try:
            read_image(image)
        except ImageReadError as err:
            problems.append((str(image), f"cannot decode the pixels ({err})"))
        if mask:
            try:
                read_mask(mask)
            except ImageReadError as err:
                problems.append((str(mask), f"cannot decode the mask's pixels ({err})"))
    return problems


def _check(args: argparse.Namespace) -> int:
    from urep.data import DatasetError
    from urep.data import datasets as D

    if args.name not in D.ADAPTERS:
        print(f"error: unknown dataset {args.name!r}; expected one of {sorted(D.ADAPTERS)}", file=sys.stderr)
        return 2
    adapter = D.ADAPTERS[args.name]
    try:
        kwargs = _adapter_kwargs(args, adapter)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        df = adapter(args.root, **kwargs)
    except DatasetError as err:
        print(f"{args.name}: FAILED\n{err}", file=sys.stderr)
        for path, reason in err.problems[10:]:
            print(f"  {path}: {reason}", file=sys.stderr)
        return 1
    skipped = list(df.attrs.get("skipped", []))
    ignored = list(df.attrs.get("ignored", []))
    print(f"{args.name}: {len(df)} images, {df['patient'].nunique()} patients under {df.attrs.get('root', args.root)}")
    print("labels:")
    for label, count in df["label"].value_counts().sort_index().items():
        print(f"  {label}: {count}")
    if "split" in df.columns:
        print("split: " + ", ".join(f"{k} {v}" for k, v in df["split"].value_counts().sort_index().items()))
    found = int(df["has_mask"].sum())
    print(f"masks: {found} found, {len(df) - found} missing")
    scope, sizes, size_problems = _size_summary(df["image"].tolist(), args.sizes, args.seed)
    print(f"image sizes (from {scope}):")
    for size, count in sizes.most_common():
        print(f"  {size}: {count}")
    problems = skipped + size_problems
    if args.headers_only:
        print("pixels: not decoded (--headers-only)")
    else:
        decode_problems = _decode_all(df)
        print(f"pixels: decoded all {len(df)} images and {found} masks, {len(decode_problems)} failed")
        seen = {path for path, _ in problems}
        problems += [problem for problem in decode_problems if problem[0] not in seen]
    print(f"problems: {len(problems)}")
    for path, reason in problems:
        print(f"  {path}: {reason}")
    if ignored:
        print(f"ignored files (not following the layout's naming): {len(ignored)}")
        for path in ignored:
            print(f"  {path}")
    return 1 if problems else 0


def _samples(args: argparse.Namespace) -> int:
    from urep.data.phantoms import write_sample_grids

    for path in write_sample_grids(args.out, size=args.size, seed=args.seed):
        print(path)
    return 0
