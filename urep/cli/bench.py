"""`urep bench [--quick] --out DIR [--only NAME ...] [--repeats N]`: the benchmark suite (`urep.bench`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers) -> None:
    from urep.bench.suite import PROFILE_POLICY

    parser = subparsers.add_parser(
        "bench",
        help="run the benchmark suite: cost claims, inference, throughput, memory",
        description="Measure U-Rep's cost claims (shared vs separate training to the same stopping rule, "
                    "parameters, fused inference, scaling with tasks) and urep's own speed and memory. "
                    "Writes DIR/bench.json, DIR/bench.md and DIR/scaling.png (docs/benchmarks.md).",
    )
    parser.add_argument("--out", required=True, type=Path, help="output folder (created; files replaced)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes and 1-2 repetitions: a smoke run, not a measurement")
    parser.add_argument("--only", nargs="+", metavar="NAME",
                        help="run only these: params cost inference train_throughput batchnorm data_pipeline "
                             "scaling memory tuner_memory multimix_throughput")
    parser.add_argument("--repeats", type=int, default=None,
                        help="repetitions per figure for urep's own benchmarks (default: each one's own)")
    parser.add_argument("--profile", choices=sorted(PROFILE_POLICY), default="cpu",
                        help="gpu: models in mixed_float16 and the peak GPU memory of each benchmark; cpu-bf16: "
                             "models in mixed_bfloat16 (docs/scale.md)")
    parser.set_defaults(func=_bench)


def _bench(args: argparse.Namespace) -> int:
    from urep.bench import suite

    if args.repeats is not None and args.repeats < 1:
        raise SystemExit(f"urep bench: --repeats must be >= 1, got {args.repeats}")
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
