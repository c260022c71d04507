"""`urep bench [--quick] --out DIR [--only NAME ...] [--repeats N]`: the benchmark suite.

The suite lives in the checkout's `benchmarks/` folder, next to the `urep` package, and is not installed
with it (`setup.cfg` packages only `urep`). This command finds it at
`Path(urep.__file__).resolve().parents[1] / "benchmarks"` and imports it by putting that parent folder on
`sys.path`; with urep installed from a wheel or sdist there is no such folder and the command stops with a
message saying to run it from a source checkout (an editable install, `pip install -e .`, works).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def benchmarks_dir() -> Path:
    """Where the checkout's `benchmarks/` folder is (or would be): beside the `urep` package."""
    import urep

    return Path(urep.__file__).resolve().parents[1] / "benchmarks"


def load_suite(folder: Path | None = None):
    """Import `benchmarks.suite` from the checkout.

    Args:
        folder: the `benchmarks` folder (default `benchmarks_dir()`).

    Returns:
        The `benchmarks.suite` module.

    Raises:
        SystemExit: the folder (or its `suite.py`) is missing, e.g. urep was installed without the checkout.
    """
    folder = benchmarks_dir() if folder is None else Path(folder)
    if not (folder / "suite.py").is_file() or not (folder / "__init__.py").is_file():
        raise SystemExit(
            f"urep bench: the benchmark suite was not found at {folder} (expected suite.py and __init__.py). "
            "The benchmarks ship with the source checkout, not with the installed package: clone the "
            "repository, `pip install -e .` in it, and run `urep bench` from that install (or "
            "`python -m benchmarks.suite` in the checkout)."
        )
    root = str(folder.parent)
    if root not in sys.path:
        sys.path.insert(0, root)
    import benchmarks.suite as suite

    if Path(suite.__file__).resolve().parent != folder.resolve():
        raise SystemExit(f"urep bench: `benchmarks` imports from {Path(suite.__file__).parent}, not {folder}; "
                         "another package named `benchmarks` shadows the checkout's")
    return suite


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="run the benchmark suite (from a source checkout): cost claims, inference, throughput, memory",
        description="Measure U-Rep's cost claims (shared vs separate training to the same stopping rule, "
                    "parameters, fused inference, scaling with tasks) and urep's own speed and memory. "
                    "Writes DIR/bench.json, DIR/bench.md and DIR/scaling.png. Needs the checkout's "
                    "benchmarks/ folder.",
    )
    parser.add_argument("--out", required=True, type=Path, help="output folder (created; files replaced)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes and 1-2 repetitions: a smoke run, not a measurement")
    parser.add_argument("--only", nargs="+", metavar="NAME",
                        help="run only these: params cost inference train_throughput data_pipeline scaling "
                             "memory tuner_memory multimix_throughput")
    parser.add_argument("--repeats", type=int, default=None,
                        help="repetitions per figure for urep's own benchmarks (default: each one's own)")
    parser.add_argument("--profile", choices=("cpu", "gpu"), default="cpu",
                        help="gpu: models in mixed_float16 and the peak GPU memory of each benchmark "
                             "(docs/scale.md)")
    parser.set_defaults(func=_bench)


def _bench(args: argparse.Namespace) -> int:
    if args.repeats is not None and args.repeats < 1:
        raise SystemExit(f"urep bench: --repeats must be >= 1, got {args.repeats}")
    suite = load_suite()
    try:
        names = suite.check_names(args.only)
    except ValueError as error:
        raise SystemExit(f"urep bench: {error}") from error
    options = {"profile": args.profile} if getattr(args, "profile", "cpu") != "cpu" else {}
    record = suite.run_suite(args.out, quick=args.quick, only=names, repeats=args.repeats, **options)
    print((args.out / suite.MARKDOWN_NAME).read_text(encoding="utf-8"))
    failed = [name for name, result in record["benchmarks"].items() if result["status"] == "failed"]
    if failed:
        print(f"urep bench: failed: {', '.join(failed)} (see {args.out / suite.JSON_NAME})", file=sys.stderr)
        return 1
    return 0
