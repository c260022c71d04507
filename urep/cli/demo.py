"""`urep demo [--out DIR] [--quick]`: both U-Rep pipelines on fresh phantoms (no download, no GPU)."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo", help="run the CXR U-Rep 1 and Doppler U-Rep 2 pipelines on generated phantoms",
        description="Generate phantoms, train the shared representations, fine-tune the heads with the "
                    "independent/alternating/joint strategies and the baseline, test, explain (Grad-CAM), "
                    "recommend (Doppler) and write the report. Two parts run one after the other: CXR U-Rep 1, "
                    "then Doppler U-Rep 2. Times on a 2-core CPU are in docs/benchmarks.md (quick: a few "
                    "minutes; full: about 10-15 minutes).")
    parser.add_argument("--out", default="urep_demo", metavar="DIR", help="output folder (default urep_demo)")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="the quick profile (48x48 CXR / 32x32 Doppler phantoms, 25 epochs, no CV)")
    size.add_argument("--size", choices=("tiny", "quick", "full"), help="profile by name (tiny: smoke test)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    parser.add_argument("--seed", type=int, default=0, help="seed of both experiments (default 0)")
    parser.add_argument("--xla", choices=("on", "off"), default=None,
                        help="XLA-compile the training steps (default off: compiling the demo's many small "
                             "models costs more than it saves)")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from urep.experiments.demo import run_demo
    from urep.experiments.report import summary_table
    from urep.io import RunDirExistsError

    profile = args.size or ("quick" if args.quick else "full")
    try:
        demo = run_demo(args.out, profile=profile, overwrite=args.overwrite, seed=args.seed,
                        jit_compile=None if args.xla is None else args.xla == "on")
    except RunDirExistsError as err:  # the demo cannot resume: say what it does accept
        raise SystemExit(f"urep demo: {args.out} already exists and is not empty; pass --overwrite to replace "
                         "it or --out DIR to write elsewhere") from err
    for results in demo["parts"].values():
        print(summary_table(results).to_markdown())
        rec = results.get("recommendation")
        if rec:
            print(f"Recommendation: {rec['usable']} of {rec['n']} test images usable "
                  f"(agreement with the labels' recommendation {rec['agreement']:.2f}).\n")
    print(f"urep demo ({profile}) finished in {demo['seconds'] / 60:.1f} min.")
    print(f"Report: {args.out}/report.md (CXR: {args.out}/cxr/report.md, Doppler: {args.out}/doppler/report.md)")
    return 0
