"""Run an experiment config into a run directory: `config.yaml`, `log.txt`, `results.json`, `tables/`,
`figures/`, `models/`, `normalizer.json` (layout: docs/design.md, "Run directory layout").

`run_experiment` refuses a non-empty run directory unless `overwrite` (start again) or `resume` (phases
already trained are restored from their checkpoints and skipped; interrupted ones continue). Every file is
written atomically (`urep.io`).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from urep.experiments.config import (
    ExperimentConfig,
    SuiteConfig,
    check_data_roots,
    config_to_dict,
    dump_config,
    load_suite_parts,
)
from urep.io import atomic_write_json, atomic_write_text, prepare_run_dir

logger = logging.getLogger(__name__)

__all__ = ["run_experiment", "run_suite", "load_results", "write_report", "RESULTS_FILE", "SCHEMA_VERSION"]

RESULTS_FILE = "results.json"
SCHEMA_VERSION = 1
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@contextmanager
def _log_to(path: Path):
    """Copy every `urep` log record (INFO and up) to `path` for the duration of the block."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(LOG_FORMAT, datefmt="%H:%M:%S"))
    handler.setLevel(logging.INFO)
    target = logging.getLogger("urep")
    previous = target.level
    if target.level == logging.NOTSET or target.level > logging.INFO:
        target.setLevel(logging.INFO)
    target.addHandler(handler)
    try:
        yield
    finally:
        target.removeHandler(handler)
        target.setLevel(previous)
        handler.close()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def run_experiment(
    config: ExperimentConfig,
    out_dir: str | os.PathLike,
    data_root: str | os.PathLike | None = None,
    resume: bool = False,
    overwrite: bool = False,
) -> dict:
    """Run one experiment and write its run directory, under the config's `distribution` (only the chief
    of a multi-worker cluster writes `out_dir`; `urep.experiments.distribution`). Arguments, result and
    errors as `_run_experiment_here`."""
    from urep.experiments.distribution import run_distributed

    check_data_roots(config, data_root)
    return run_distributed(config, out_dir, lambda c, run_dir, info: _run_experiment_here(
        c, run_dir, data_root=data_root, resume=resume, overwrite=overwrite, distribution=info))


def _run_experiment_here(
    config: ExperimentConfig,
    out_dir: str | os.PathLike,
    data_root: str | os.PathLike | None = None,
    resume: bool = False,
    overwrite: bool = False,
    distribution: dict | None = None,
) -> dict:
    """Run one experiment and write its run directory.

    Args:
        config: a validated config (`urep.experiments.load_config`).
        out_dir: the run directory.
        data_root: folder the data sources' `root` is relative to (default `$UREP_DATA_ROOT` or `.`).
        resume: continue a run directory: finished training phases are restored, interrupted ones continue.
        overwrite: delete an existing run directory first.
        distribution: how the run was distributed (recorded in the results).

    Returns:
        The results dict (also written to `out_dir/results.json`).

    Raises:
        urep.io.RunDirExistsError: `out_dir` is not empty and neither `resume` nor `overwrite` was given.
        urep.experiments.ConfigError: a data folder does not exist.
    """
    check_data_roots(config, data_root)
    run_dir = prepare_run_dir(out_dir, overwrite=overwrite, resume=resume)
    atomic_write_text(run_dir / "config.yaml", dump_config(config))
    from urep.env import environment
    from urep.experiments.pipeline import UrepPipeline
    from urep.seed import seed_everything

    started, clock = _now(), time.perf_counter()
    with _log_to(run_dir / "log.txt"):
        logger.info("experiment %s (%s) -> %s%s", config.name, config.path or "in memory", run_dir,
                    " (resumed)" if resume else "")
        seed_everything(config.seed, config.deterministic)
        root = None if data_root is None else str(data_root)
        if config.experiment in ("multimix", "urep_vs_multimix"):
            from urep.experiments.multimix_experiment import run_multimix_experiment

            results = run_multimix_experiment(config, run_dir, root, resume=resume)
        elif config.experiment == "pairwise_transfer":
            from urep.experiments.transfer import TransferPipeline

            results = TransferPipeline(config, run_dir, root, resume=resume).run()
        else:
            results = UrepPipeline(config, run_dir, root, resume=resume).run()
        results.update({
            "schema": SCHEMA_VERSION, "name": config.name, "description": config.description,
            "config_file": config.path, "config": config_to_dict(config), "seed": config.seed,
            "started": started, "finished": _now(), "wall_seconds": time.perf_counter() - clock,
            "resumed": resume, "environment": environment(),
        })
        if distribution is not None:
            results["distribution"] = distribution
        atomic_write_json(run_dir / RESULTS_FILE, _ordered(results))
        write_report(results, run_dir)
        logger.info("experiment %s finished in %.1f s; report: %s", config.name, results["wall_seconds"],
                    run_dir / "report.md")
    return results


def _ordered(results: dict) -> dict:
    """Results with the identifying keys first (readability of results.json)."""
    first = ("schema", "name", "description", "config_file", "seed", "started", "finished", "wall_seconds",
             "resumed", "environment", "data", "source", "denoising", "super_resolution", "baseline_denoising",
             "tasks", "statistics", "explain", "recommendation", "transfer", "models", "figures", "config")
    out = {k: results[k] for k in first if k in results}
    out.update({k: v for k, v in results.items() if k not in out})
    return out


def run_suite(
    suite: SuiteConfig,
    out_dir: str | os.PathLike,
    data_root: str | os.PathLike | None = None,
    resume: bool = False,
    overwrite: bool = False,
    overrides: list[str] | tuple[str, ...] = (),
    transform: Callable[[ExperimentConfig], ExperimentConfig] | None = None,
) -> dict:
    """Run every part of a suite into `out_dir/<part name>/` and write `out_dir/suite.json`.

    Args:
        suite: the suite.
        out_dir: the suite's folder.
        data_root, resume, overwrite: as `run_experiment`.
        overrides: `key=value` overrides applied to every part.
        transform: applied to every part's config (e.g. `urep.experiments.scale.shrink`).

    Returns:
        `{"name", "parts": {part name: results dict}}`.
    """
    configs = load_suite_parts(suite, data_root=data_root, overrides=overrides)
    if transform is not None:
        configs = [transform(c) for c in configs]
    for config in configs:
        check_data_roots(config, data_root)
    root = prepare_run_dir(out_dir, overwrite=overwrite, resume=resume)
    parts = {}
    for config in configs:
        parts[config.name] = run_experiment(config, root / config.name, data_root=data_root,
                                            resume=resume and (root / config.name).exists())
    summary = {"name": suite.name, "description": suite.description, "parts": list(parts)}
    atomic_write_json(root / "suite.json", summary)
    index = [f"# {suite.name}", "", suite.description, ""] + [f"- [{name}]({name}/report.md)" for name in parts]
    atomic_write_text(root / "report.md", "\n".join(index) + "\n")
    return {"name": suite.name, "parts": parts}


def load_results(run_dir: str | os.PathLike) -> dict:
    """The results dict of a run directory.

    Raises:
        FileNotFoundError: no `results.json` (names the folder).
        ValueError: the file is not a urep results record.
    """
    path = Path(run_dir) / RESULTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} holds no {RESULTS_FILE}; is it a finished urep run directory?")
    results = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(results, dict) or "config" not in results or "schema" not in results:
        raise ValueError(f"{path} is not a urep results record (no 'schema'/'config' keys)")
    return results


def write_report(results: dict[str, Any], run_dir: str | os.PathLike) -> list[Path]:
    """Tables (`tables/*.md|csv`, `report.md`) and the results-only figures of a run, from its results."""
    from urep.experiments.figures import write_result_figures
    from urep.experiments.report import write_tables

    figures = write_result_figures(results, run_dir)
    return figures + write_tables(results, run_dir)
