"""Run an experiment config into a run directory (layout: docs/design.md, "Run directory layout").

`run_experiment` validates everything it can (`preflight`) before creating the run directory, so a user error
leaves no folder behind. It refuses a non-empty run directory unless `overwrite` (start again; only a urep run
folder is deleted) or `resume` (finished phases restored from checkpoints; refused when the run's
`fingerprint.json` differs). Every file is written atomically (`urep.io`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from urep.experiments.config import (
    MULTIMIX_EXPERIMENTS,
    ExperimentConfig,
    SuiteConfig,
    check_data_roots,
    config_to_dict,
    dump_config,
    load_suite_parts,
    source_root,
)
from urep.experiments.schema import ConfigError
from urep.io import atomic_write_json, atomic_write_text, check_run_dir, prepare_run_dir
from urep.run_dir import FINGERPRINT, REPORT, RESULTS, RunDir

logger = logging.getLogger(__name__)

__all__ = ["run_experiment", "run_suite", "load_results", "write_report", "preflight", "fingerprint",
           "ResumeMismatchError", "RESULTS_FILE", "FINGERPRINT_FILE", "SCHEMA_VERSION"]

RESULTS_FILE = RESULTS
SCHEMA_VERSION = 1
FINGERPRINT_FILE = FINGERPRINT
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: Config keys that do not change any trained model or number, so `--resume` may change them.
COSMETIC_KEYS = ("name", "description", "figures", "paper_tables", "explain.n_images")


class ResumeMismatchError(ValueError):
    """`--resume` of a run directory whose stored fingerprint differs from the run asked for."""


# --- validation before the run directory exists ------------------------------------------------------------


def _check_source_model(config: ExperimentConfig) -> None:
    """Build the source architecture once at `image_size` so that a shape it cannot take is a config error."""
    if config.experiment == "multimix":
        return
    from types import SimpleNamespace

    from urep.experiments.pipeline import UrepPipeline

    probe = SimpleNamespace(config=config, shape=(*config.image_size, config.channels))
    try:
        UrepPipeline.build_source_model(probe, name="preflight")
    except (ValueError, TypeError) as err:
        raise ConfigError(f"the {config.source.kind} source model cannot be built for image_size "
                          f"{list(config.image_size)} x {config.channels} channel(s): {err}", "image_size",
                          config.path) from err


def _frame_hash(df) -> str:
    """SHA-256 of a data source's table: every row's columns (paths relative to the dataset folder, so moving
    the folder keeps the hash), with each image file's size."""
    digest = hashlib.sha256()
    columns = sorted(df.columns)
    digest.update(json.dumps(columns).encode())
    root = str(df.attrs.get("root", ""))
    for row in df[columns].astype(str).itertuples(index=False):
        digest.update(json.dumps([value.replace(root, "<root>") if root else value for value in row]).encode())
    for path in df["image"]:
        try:
            digest.update(str(os.path.getsize(path)).encode())
        except OSError:
            digest.update(b"missing")
    return digest.hexdigest()


def preflight(config: ExperimentConfig, data_root: str | os.PathLike | None = None) -> dict[str, str]:
    """Validate what can be validated before a run directory is created.

    Checks the data folders, runs every (non-phantom) adapter with its options (manifests, labels, file
    headers, paths inside the root), checks each task has rows, and builds the source model at `image_size`.

    Returns:
        `{data source name: hash of its table}` for the non-phantom sources (see `fingerprint`).

    Raises:
        ConfigError: a missing data folder, a task without rows, or an `image_size` the model cannot take.
        urep.data.DatasetError: an adapter rejects its folder or manifest (the message names the files).
    """
    import pandas as pd

    from urep.data import datasets
    from urep.experiments.sources import task_frame

    check_data_roots(config, data_root)
    frames, hashes = {}, {}
    for name, source in config.data.items():
        if source.include or source.phantom is not None:
            continue
        frames[name] = datasets.load(source.adapter, source_root(source, data_root), **source.options)
        hashes[name] = _frame_hash(frames[name])
    for name, source in config.data.items():
        if source.include and all(part in frames for part in source.include):
            frames[name] = pd.concat([frames[part] for part in source.include], ignore_index=True)
    for i, task in enumerate(config.tasks):
        for attr in ("data", "test_data"):
            ref = getattr(task, attr, None)
            if ref in frames:
                try:
                    task_frame(frames[ref], task, ref)
                except ValueError as err:
                    raise ConfigError(str(err), f"tasks[{i}].{attr}", config.path) from err
    _check_source_model(config)
    return hashes


# --- fingerprint -------------------------------------------------------------------------------------------


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def fingerprint(config: ExperimentConfig, data_hashes: dict[str, str]) -> dict:
    """What a resumed run must share with the run it continues: `{"urep", "config", "data"}`.

    `config` is the resolved config as flat `key.path: value` pairs without `COSMETIC_KEYS`; `data` the
    hash of each non-phantom source's table (phantoms are fixed by their config and seed).
    """
    from urep import __version__

    flat = _flatten(json.loads(json.dumps(config_to_dict(config), default=str)))
    flat = {k: v for k, v in flat.items() if not any(k == c or k.startswith(c + ".") for c in COSMETIC_KEYS)}
    return {"urep": __version__, "config": flat, "data": dict(sorted(data_hashes.items()))}


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def _differences(before: dict, now: dict) -> list[str]:
    out = []
    if before.get("urep") != now["urep"]:
        out.append(f"urep version {before.get('urep')} -> {now['urep']}")
    old, new = before.get("config", {}), now["config"]
    for key in sorted(set(old) | set(new)):
        if key not in old:
            out.append(f"{key}: (unset) -> {_short(new[key])}")
        elif key not in new:
            out.append(f"{key}: {_short(old[key])} -> (unset)")
        elif old[key] != new[key]:
            out.append(f"{key}: {_short(old[key])} -> {_short(new[key])}")
    if "data" in before:
        for name in sorted(set(before["data"]) | set(now["data"])):
            if before["data"].get(name) != now["data"].get(name):
                out.append(f"data source {name}: its files or manifest changed")
    return out


def _check_resume(run_dir: Path, current: dict) -> None:
    """Refuse to resume `run_dir` when its stored fingerprint (or, for older runs, config.yaml) differs."""
    import yaml

    stored, config_file = RunDir(run_dir).fingerprint, RunDir(run_dir).config
    if stored.is_file():
        try:
            before = json.loads(stored.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise ResumeMismatchError(f"cannot resume {run_dir}: {stored} is unreadable ({err})") from err
    elif config_file.is_file():
        raw = yaml.safe_load(config_file.read_text(encoding="utf-8")) or {}
        flat = _flatten(json.loads(json.dumps(raw, default=str)))
        before = {"urep": current["urep"],
                  "config": {k: v for k, v in flat.items() if k in current["config"] or not any(
                      k == c or k.startswith(c + ".") for c in COSMETIC_KEYS)}}
        logger.warning("%s has no %s (older run); resuming after comparing config.yaml only", run_dir,
                       FINGERPRINT_FILE)
    else:
        return
    differences = _differences(before, current)
    if differences:
        raise ResumeMismatchError(
            f"cannot resume {run_dir}: it was run with other settings ({'; '.join(differences)}); resume with "
            "the same config, or start a new run directory (--overwrite replaces this one)")


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
        urep.io.RunDirError: `out_dir` is a file, `overwrite` of a folder that is not a urep run, or both flags.
        ResumeMismatchError: `resume` of a run made with another config, data or urep version.
        urep.experiments.ConfigError: a data folder does not exist, a task has no rows, `image_size` does not
            suit the model (see `preflight`).
        urep.data.DatasetError: a data source's folder or manifest is invalid.
    """
    check_run_dir(out_dir, overwrite=overwrite, resume=resume)
    current = fingerprint(config, preflight(config, data_root))
    if resume and Path(out_dir).is_dir():
        _check_resume(Path(out_dir), current)
    fresh = overwrite or not (Path(out_dir).is_dir() and any(Path(out_dir).iterdir()))
    run_dir = prepare_run_dir(out_dir, overwrite=overwrite, resume=resume)
    try:
        return _run_in(config, run_dir, current, data_root, resume, distribution)
    except ValueError as err:
        from urep.data.errors import DatasetError, ImageReadError

        # A user error in a run this call started: leave no half-written folder behind.
        if fresh and isinstance(err, (ConfigError, DatasetError, ImageReadError)):
            shutil.rmtree(run_dir, ignore_errors=True)
        raise


def _run_in(config: ExperimentConfig, run_dir: Path, current: dict, data_root, resume: bool,
            distribution: dict | None) -> dict:
    layout = RunDir(run_dir)
    if not layout.fingerprint.is_file():
        atomic_write_json(layout.fingerprint, current)
    atomic_write_text(layout.config, dump_config(config))
    from urep.env import environment
    from urep.experiments.pipeline import UrepPipeline
    from urep.seed import seed_everything

    started, clock = _now(), time.perf_counter()
    with _log_to(layout.log):
        logger.info("experiment %s (%s) -> %s%s", config.name, config.path or "in memory", run_dir,
                    " (resumed)" if resume else "")
        seed_everything(config.seed, config.deterministic)
        root = None if data_root is None else str(data_root)
        if config.experiment in MULTIMIX_EXPERIMENTS:
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
        atomic_write_json(layout.results, _ordered(results))
        write_report(results, run_dir)
        logger.info("experiment %s finished in %.1f s; report: %s", config.name, results["wall_seconds"],
                    layout.report)
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
    check_run_dir(out_dir, overwrite=overwrite, resume=resume)
    for config in configs:
        preflight(config, data_root)
    root = prepare_run_dir(out_dir, overwrite=overwrite, resume=resume)
    parts = {}
    for config in configs:
        parts[config.name] = run_experiment(config, root / config.name, data_root=data_root,
                                            resume=resume and (root / config.name).exists())
    summary = {"name": suite.name, "description": suite.description, "parts": list(parts)}
    atomic_write_json(root / "suite.json", summary)
    index = [f"# {suite.name}", "", suite.description, ""] + [f"- [{name}]({name}/{REPORT})" for name in parts]
    atomic_write_text(RunDir(root).report, "\n".join(index) + "\n")
    return {"name": suite.name, "parts": parts}


def load_results(run_dir: str | os.PathLike) -> dict:
    """The results dict of a run directory.

    Raises:
        FileNotFoundError: no `results.json` (names the folder).
        ValueError: the file is damaged (not JSON) or not a urep results record; the message names it.
    """
    path = RunDir(run_dir).results
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} holds no {RESULTS_FILE}; is it a finished urep run directory?")
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is damaged: not valid JSON ({err}); rerun the experiment or restore the "
                         "file") from err
    if not isinstance(results, dict) or "config" not in results or "schema" not in results:
        raise ValueError(f"{path} is not a urep results record (no 'schema'/'config' keys)")
    return results


def write_report(results: dict[str, Any], run_dir: str | os.PathLike) -> list[Path]:
    """Tables (`tables/*.md|csv`, `report.md`) and the results-only figures of a run, from its results."""
    from urep.experiments.figures import write_result_figures
    from urep.experiments.report import write_tables

    figures = write_result_figures(results, run_dir)
    return figures + write_tables(results, run_dir)
