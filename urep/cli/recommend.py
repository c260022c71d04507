"""`urep recommend RUN_DIR IMAGE...`: merge a run's flow-type and quality heads into usable / exclude.

Reads DICOM, PNG, ... through `urep.data.read_image`, runs the two classification heads, and applies the rule
table: `--rules FILE` (JSON or YAML) if given, else the run's `models/manifest.json["recommendation"]`, else the
papers' rule (exclude low-quality TR). The two heads are `--flow-task` / `--quality-task` if given, else the run's
`config.yaml` `recommendation.flow_task` / `quality_task`, else the first classification task named
`flow_classification` or `flow` (`quality_assessment` or `quality`), as the Doppler experiment configs name them. `--threshold P` additionally excludes images whose top flow or quality
probability is below P ("uncertain"). Prints one line per image; `--json FILE` also writes the decisions.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

logger = logging.getLogger(__name__)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "recommend",
        help="usable / exclude decision per Doppler image from the flow-type and quality heads",
        description=__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", type=Path, help="run directory (models/manifest.json)")
    parser.add_argument("images", metavar="IMAGE", nargs="+", type=Path, help="image files (DICOM, PNG, ...)")
    parser.add_argument("--flow-task", default=None,
                        help="flow-type classification task (default: the run config's recommendation.flow_task, "
                             "else 'flow_classification' or 'flow')")
    parser.add_argument("--quality-task", default=None,
                        help="quality classification task (default: the run config's recommendation.quality_task, "
                             "else 'quality_assessment' or 'quality')")
    parser.add_argument("--rules", type=Path, default=None, help="rule table file (JSON or YAML)")
    parser.add_argument(
        "--threshold", type=float, default=None,
        help="exclude as uncertain when a head's top probability is below this, in (0, 1]",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the decisions to this JSON file")
    parser.set_defaults(func=_recommend)


def _recommend(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except (ValueError, KeyError, FileNotFoundError) as error:
        raise SystemExit(f"urep recommend: {error}") from error


def _read_rules_file(path: Path) -> dict:
    import yaml

    if not path.is_file():
        raise FileNotFoundError(f"rules file {path} not found")
    text = path.read_text(encoding="utf-8")
    try:
        record = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise ValueError(f"rules file {path} could not be parsed: {error}") from error
    if not isinstance(record, dict):
        raise ValueError(f"rules file {path} must hold a mapping with 'rules', got {type(record).__name__}")
    return record


def _check_task(run, task: str, option: str) -> None:
    if task not in run.tasks:
        raise ValueError(f"run {run.run_dir} has no task {task!r}; choose with {option} among "
                         f"{run.tasks_of_kind('classification')}")
    if run.tasks[task].kind != "classification":
        raise ValueError(f"task {task!r} ({option}) is a {run.tasks[task].kind} task, not a classification head")


def _run(args: argparse.Namespace) -> int:
    from urep.explain import RecommendationRules, load_run_models, predict_probabilities, recommend
    from urep.explain.recommendation import pick_recommendation_tasks
    from urep.io import atomic_write_json

    run = load_run_models(args.run_dir)
    args.flow_task, args.quality_task = pick_recommendation_tasks(
        run.tasks_of_kind("classification"),
        args.flow_task or run.recommendation_tasks.get("flow_task"),
        args.quality_task or run.recommendation_tasks.get("quality_task"),
    )
    logger.info("flow task %r, quality task %r", args.flow_task, args.quality_task)
    _check_task(run, args.flow_task, "--flow-task")
    _check_task(run, args.quality_task, "--quality-task")
    if args.rules is not None:
        rules = RecommendationRules.from_dict(_read_rules_file(args.rules))
        source = str(args.rules)
    elif run.recommendation is not None:
        rules = RecommendationRules.from_dict(run.recommendation)
        source = "run manifest"
    else:
        rules = RecommendationRules.paper_default()
        source = "paper default (exclude low-quality TR)"
    if args.threshold is not None:
        rules = rules.with_threshold(args.threshold)
    logger.info("recommendation rules from %s: %s", source, rules.to_dict())

    probabilities = {}
    for task in (args.flow_task, args.quality_task):
        _, batch = run.read_images(args.images, task)
        probabilities[task] = predict_probabilities(run.model(task), batch)
    decisions = recommend(
        probabilities[args.flow_task],
        probabilities[args.quality_task],
        rules,
        run.entry(args.flow_task).classes,
        run.entry(args.quality_task).classes,
    )
    for image, decision in zip(args.images, decisions, strict=True):
        decision["image"] = str(image)
        print(
            f"{image}  flow {decision['flow']} ({decision['flow_prob']:.3f})  quality {decision['quality']} "
            f"({decision['quality_prob']:.3f})  -> {decision['decision']}: {decision['reason']}"
        )
    if args.json is not None:
        atomic_write_json(args.json, {"run_dir": str(run.run_dir), "rules": rules.to_dict(), "rules_source": source,
                                      "decisions": decisions})
        print(f"wrote {args.json}")
    return 0
