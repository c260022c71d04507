"""Tuning an experiment: the `tuning:` settings, the hypermodel of a target on the experiment's data, results.

`load_tuning` reads a `urep tune` config (an experiment with a `tuning:` section, or `{base, tuning}`) into a
validated `TuningJob` (errors are `ConfigError`s naming the key and the file); `prepare_search` checks the
output folder and builds the target's hypermodel; `run_search` runs the search and writes the results and
`best_config.yaml`. Reference of the keys: `CONFIG_HELP` (shown by `urep tune --help`) and docs/tuning.md.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml

from urep.constraints import Rule
from urep.data.noise import epoch_noise
from urep.experiments.config import dump_config, find_config, parse_config, read_yaml
from urep.experiments.schema import ConfigError, build, to_plain
from urep.run_dir import RunDir

logger = logging.getLogger(__name__)

#: What `urep tune --help` shows after its one-line description.
CONFIG_HELP = """\
CONFIG is either

- an experiment config (`urep run`'s YAML, or a shipped config name) with an optional `tuning:` section (the
  section is removed before the rest is validated as the experiment; without it the defaults apply: grid
  search of the source over the paper's space), or
- a standalone tuning YAML naming its experiment with `base:`::

    # tune_cdae.yaml
    base: cxr_denoising_phantom    # experiment config: shipped name, or a path relative to this file
    tuning:
      target: source               # "source", or the name of a task (its head is tuned)
      tuner: grid                  # grid | random | bayesian | hyperband
      objective: val_loss          # loss | val_loss | val_<metric> (val_accuracy for classification)
      direction: auto              # min | max | auto
      max_trials: null             # null: the whole grid (grid), 10 (random, bayesian)
      search_space:                # merged over the paper's space of the target (see urep.tuning)
        kernel_size: [3, 5, 7]     # a list: choices; a scalar: fixed; {min, max, step, sampling}: a range
        optimizer: [sgd, adam, rmsprop]
      epochs: 8                    # per trial; default the phase's training epochs
      max_steps_per_epoch: null    # per trial; default the phase's setting
      executions_per_trial: 1
      seed: null                   # default the experiment's seed
      source_run: null             # head targets: a `urep run` directory with the trained source
      freeze_encoder: true         # head targets: train the head only (independent strategy)
      hyperband_factor: 3
      hyperband_iterations: 1

The search uses the experiment's data, image size, channels, patient-level split, normalisation, noise and
training settings (`training.source` for the source, the task's settings for a head), so its best trial
trains like `urep run` would. One train/validation split is used even when the experiment cross-validates
the heads (our choice: k folds would multiply every trial by k). Heads need the trained source: set
`source_run` to a `urep run` directory (its `models/source/denoising.keras` for a CDAE source, else
`models/source/source.keras`, and its `normalizer.json`).

DIR receives `search/` (the Keras Tuner project), `tuning.yaml` (what ran), `trials.csv`, `trials.md`,
`objective.png`, `best.json` and `best_config.yaml`: the experiment with the best values substituted
(source: `source.model` and `training.source`; head: the task's `head`, `optimizer`, `learning_rate` and
`training.heads.batch_size`), which `urep run best_config.yaml --out RUN` accepts. A non-empty DIR is
refused unless `--resume` (continue the search, e.g. after a kill or with a larger `--max-trials`; the
search settings other than `max_trials` must match) or `--overwrite`.

Distributed search: run the same command once per role with KERASTUNER_TUNER_ID (`chief`, `tuner0`,
`tuner1`, ...), KERASTUNER_ORACLE_IP and KERASTUNER_ORACLE_PORT set (see `urep.tuning` and
docs/tuning.md). The chief serves the oracle and writes the results; workers train the trials, keep their
phantom data under `DIR/workers/<id>/` and never delete DIR.
"""

SOURCE_MODEL_KNOBS = ("kernel_size", "dilation_rate", "dropout", "dense_units")
HEAD_MODEL_KNOBS = ("dropout", "dense_units")


AT_LEAST_1 = Rule(min=1, expected="an integer >= 1")


@dataclass(frozen=True)
class TuningSettings:
    """The `tuning:` section (see `CONFIG_HELP` for every key); single-field rules are declared on the fields
    (`urep.constraints`), the rules that need the experiment are in `check_settings`."""

    target: str = "source"
    tuner: Literal["grid", "random", "bayesian", "hyperband"] = "grid"
    objective: str = "val_loss"
    direction: Literal["min", "max", "auto"] = "auto"
    max_trials: Annotated[int | None, AT_LEAST_1] = None
    search_space: dict[str, Any] = field(default_factory=dict)
    epochs: Annotated[int | None, AT_LEAST_1] = None
    max_steps_per_epoch: Annotated[int | None, AT_LEAST_1] = None
    executions_per_trial: Annotated[int, AT_LEAST_1] = 1
    seed: Annotated[int | None, Rule(min=0, expected="a non-negative integer")] = None
    source_run: str | None = None
    freeze_encoder: bool = True
    hyperband_factor: Annotated[int, Rule(min=2, expected="an integer >= 2")] = 3
    hyperband_iterations: Annotated[int, AT_LEAST_1] = 1


@dataclass(frozen=True)
class StandaloneTuning:
    """A standalone tuning YAML: the experiment it tunes and the `tuning:` section."""

    base: str
    tuning: TuningSettings = field(default_factory=TuningSettings)


@dataclass
class TuningJob:
    """Everything `urep tune` needs: the validated settings, the experiment and its raw mapping."""

    settings: TuningSettings
    experiment: Any
    raw_experiment: dict
    file: str


@dataclass
class SearchOutcome:
    """What `run_search` did.

    Attributes:
        worker: this process was a worker of a distributed search (it wrote nothing).
        paths: file name -> path of the results written (`trials.csv`, ..., `best.json` when a trial completed).
        values: the best trial's values (None: no trial completed, or a worker).
        best_config: path of `best_config.yaml` (None when `values` is).
        n_trials: number of trials in the search.
    """

    worker: bool
    paths: dict[str, Path] = field(default_factory=dict)
    values: dict[str, Any] | None = None
    best_config: Path | None = None
    n_trials: int = 0


# -- config -------------------------------------------------------------------------------------------------------
def check_settings(settings: TuningSettings, experiment, file: str) -> None:
    """Validate `settings` against the experiment (target, source run, search space).

    Raises:
        ConfigError: naming the `tuning.<key>` path and `file`.
    """
    key = "tuning"
    names = [task.name for task in experiment.tasks]
    if settings.target != "source" and settings.target not in names:
        raise ConfigError(f"expected 'source' or a task name {names}, got {settings.target!r}", f"{key}.target", file)
    if settings.target == "source" and experiment.source.kind not in ("cdae", "dilated_cnn"):
        raise ConfigError(f"source.kind {experiment.source.kind!r} has no hypermodel; tunable: cdae, dilated_cnn",
                          f"{key}.target", file)
    if settings.target != "source" and settings.source_run is None:
        raise ConfigError("tuning a head needs the trained source: set it to a `urep run` directory",
                          f"{key}.source_run", file)
    _check_space(settings, experiment, file)


def _check_space(settings: TuningSettings, experiment, file: str) -> None:
    """Validate `tuning.search_space` against the target's hypermodel before any data is read."""
    from urep import tuning

    if settings.target == "source":
        model = tuning.CDAEHyperModel if experiment.source.kind == "cdae" else tuning.DilatedCNNHyperModel
        defaults, knobs = model.DEFAULT_SPACE, model.KNOBS
    else:
        defaults, knobs = tuning.HeadHyperModel.space_of(experiment.task(settings.target).kind)
    try:
        tuning.parse_search_space(settings.search_space, defaults, knobs)
    except tuning.SearchSpaceError as err:
        key = f"tuning.search_space.{err.key}" if err.key else "tuning.search_space"
        raise ConfigError(err.detail, key, file) from err


def load_tuning(path: str | os.PathLike, overrides: dict[str, Any] | None = None) -> TuningJob:
    """Read CONFIG (experiment config with an optional `tuning:` section, or standalone tuning YAML).

    Args:
        path: the YAML file, or a shipped experiment config name.
        overrides: `TuningSettings` fields to replace (from the command line; None values are ignored).

    Returns:
        The job (relative `source_run` resolved next to CONFIG).

    Raises:
        FileNotFoundError: no such file or shipped config.
        urep.experiments.schema.ConfigError: invalid YAML or value, naming the key path and the file.
    """
    file = find_config(path)
    raw = read_yaml(file)
    if not isinstance(raw, dict):
        raise ConfigError(f"the top level must be a mapping, got {type(raw).__name__}", "", file)
    if "base" in raw:
        standalone = build(StandaloneTuning, raw, "", file)
        base_path = file.parent / standalone.base
        base_file = find_config(base_path if base_path.is_file() else standalone.base)
        raw_experiment = read_yaml(base_file)
        settings = standalone.tuning
        experiment = parse_config(raw_experiment, base_file)
        if isinstance(raw_experiment, dict) and "tuning" in raw_experiment:
            raise ConfigError("the base experiment has its own `tuning:` section; keep one", "base", file)
    else:
        raw_experiment = {k: v for k, v in raw.items() if k != "tuning"}
        settings = build(TuningSettings, raw.get("tuning"), "tuning", file)
        experiment = parse_config(raw_experiment, file)
    changes = {k: v for k, v in (overrides or {}).items() if v is not None}
    if changes:  # the command line's values pass the same field rules as the file's
        settings = build(TuningSettings, {**to_plain(settings), **changes}, "tuning", file)
    if settings.source_run is not None and not Path(settings.source_run).is_absolute():
        beside = file.parent / settings.source_run
        settings = replace(settings, source_run=str(beside if beside.exists() else Path(settings.source_run)))
    check_settings(settings, experiment, str(file))
    return TuningJob(settings, experiment, raw_experiment, str(file))


# -- data and hypermodels --------------------------------------------------------------------------------------
def _train_config(settings, job: TuningJob, optimizer: str | None = None):
    """The `TrainConfig` of one phase of the experiment (as `urep run` builds it), with the tuning overrides."""
    from urep.training.config import TrainConfig

    tuning, experiment = job.settings, job.experiment
    return TrainConfig(
        epochs=tuning.epochs or settings.epochs, batch_size=settings.batch_size,
        optimizer=settings.optimizer_spec(optimizer),
        reduce_lr_factor=settings.reduce_lr_factor, reduce_lr_patience=settings.reduce_lr_patience,
        early_stopping_patience=settings.early_stopping_patience,
        max_steps_per_epoch=tuning.max_steps_per_epoch or settings.max_steps_per_epoch,
        jit_compile=settings.jit_compile, seed=tuning.seed if tuning.seed is not None else experiment.seed,
        deterministic=experiment.deterministic, progress_bar=False)


def _source_hypermodel(job: TuningJob, data_dir: Path, data_root: str | None):
    import numpy as np
    import pandas as pd

    from urep.data import MeanNormalizer
    from urep.experiments.sources import load_sources, patient_split, read_arrays
    from urep.tuning import CDAEHyperModel, DilatedCNNHyperModel, TuningData

    config, settings = job.experiment, job.settings
    source = config.source
    frames = load_sources(config, data_dir, data_root)
    df = pd.concat([frames[name] for name in source.data], ignore_index=True)
    supervised = source.kind == "dilated_cnn"
    if supervised:
        df = df[df[source.label].astype(str).isin(source.classes)].reset_index(drop=True)
    arrays = read_arrays(df, config.image_size, config.channels, source.label if supervised else None,
                         source.classes, standardize=config.preprocessing.options())
    train, val, _ = patient_split(arrays.patients, config.split, config.seed)
    normalizer = MeanNormalizer().fit(arrays.images[train])

    def norm(x):
        return np.asarray(normalizer.transform(x), dtype=np.float32)

    common = {"search_space": settings.search_space, "objective": settings.objective,
              "direction": settings.direction, "train_config": _train_config(config.training.source, job)}
    logger.info("tuning the %s source on %d training / %d validation images", source.kind, len(train), len(val))
    if supervised:
        y = np.eye(len(source.classes), dtype=np.float32)[arrays.labels]
        data = TuningData(norm(arrays.images[train]), y[train], norm(arrays.images[val]), y[val])
        return DilatedCNNHyperModel(data, model_kwargs=source.model, **common)
    clean_train, clean_val = arrays.images[train], arrays.images[val]
    seed = config.seed
    data = TuningData(clean_train, clean_train, norm(epoch_noise(clean_val, source.noise, seed, 10_000)), clean_val,
                      corrupt=lambda clean, epoch: norm(epoch_noise(clean, source.noise, seed, epoch)))
    return CDAEHyperModel(data, model_kwargs=source.model, batchnorm_momentum=config.batchnorm_momentum,
                          **common)


def _head_hypermodel(job: TuningJob, data_dir: Path, data_root: str | None):
    import numpy as np

    from urep.data import MeanNormalizer
    from urep.experiments.sources import load_sources, patient_split, read_arrays, task_frame
    from urep.io import load_keras_model
    from urep.tuning import HeadHyperModel, TuningData

    config, settings = job.experiment, job.settings
    task = config.task(settings.target)
    run = Path(settings.source_run)
    layout = RunDir(run)
    model_path = layout.model("source", "denoising" if config.source.kind == "cdae" else "source")
    for needed in (model_path, layout.normalizer):
        if not needed.is_file():
            raise ConfigError(f"{needed} not found: expected a `urep run` directory of this experiment",
                              "tuning.source_run", job.file)
    source = load_keras_model(model_path)  # names the file when it is damaged
    normalizer = MeanNormalizer.from_dict(json.loads(layout.normalizer.read_text(encoding="utf-8")))
    frames = load_sources(config, data_dir, data_root)
    classification = task.kind == "classification"
    pool = read_arrays(task_frame(frames[task.data], task, task.data), config.image_size, config.channels,
                       task.label if classification else None, task.classes, masks=not classification,
                       standardize=config.preprocessing.options())
    if task.test_data is None:
        train, val, _ = patient_split(pool.patients, config.split, config.seed)
        pool = pool.subset(np.concatenate([train, val]))
    fractions = (config.split[0], config.split[1], 0.0)
    train, val, _ = patient_split(pool.patients, tuple(f / sum(fractions) for f in fractions), config.seed)
    x = np.asarray(normalizer.transform(pool.images), dtype=np.float32)
    y = np.eye(len(task.classes), dtype=np.float32)[pool.labels] if classification else pool.masks
    phase = config.task_train(task)
    optimizer = task.optimizer or (("rmsprop" if config.source.kind == "cdae" else "adam")
                                   if task.kind == "segmentation" else phase.optimizer)
    logger.info("tuning the %s head %s on %d training / %d validation images", task.kind, task.name, len(train),
                len(val))
    return HeadHyperModel(TuningData(x[train], y[train], x[val], y[val]), source, kind=task.kind,
                          head_kwargs=task.head, freeze_encoder=settings.freeze_encoder,
                          search_space=settings.search_space, objective=settings.objective,
                          direction=settings.direction,
                          train_config=_train_config(phase, job, optimizer=optimizer))


def build_hypermodel(job: TuningJob, data_dir: str | os.PathLike, data_root: str | None = None):
    """The hypermodel of the job's target, on the experiment's data (phantoms generated under `data_dir`).

    Raises:
        urep.experiments.schema.ConfigError: an objective the training loop does not log (key
            `tuning.objective`), or a `source_run` without the trained source.
    """
    try:
        if job.settings.target == "source":
            return _source_hypermodel(job, Path(data_dir), data_root)
        return _head_hypermodel(job, Path(data_dir), data_root)
    except ValueError as err:
        if "objective" in str(err) and "is not logged" in str(err):
            raise ConfigError(str(err), "tuning.objective", job.file) from err
        raise


# -- best config ------------------------------------------------------------------------------------------------
def best_config(job: TuningJob, values: dict[str, Any]) -> dict:
    """The experiment's raw mapping with the best values put where `urep run` reads them.

    Source: architecture knobs into `source.model`, optimizer/learning_rate/batch_size into
    `training.source`. Head: dropout/dense_units into the task's `head`, its `optimizer` and `learning_rate`,
    and batch_size into `training.heads` (shared by every head). The name gets a `_tuned` suffix.
    """
    raw = copy.deepcopy(job.raw_experiment)
    target = job.settings.target
    raw["name"] = f"{raw.get('name', 'experiment')}_tuned"
    training = raw.setdefault("training", {}) or {}
    raw["training"] = training
    if target == "source":
        source = raw.setdefault("source", {})
        model = source.setdefault("model", {}) or {}
        source["model"] = model
        phase = training.setdefault("source", {}) or {}
        training["source"] = phase
        for key, value in values.items():
            (model if key in SOURCE_MODEL_KNOBS else phase)[key] = value
        return raw
    task = next(t for t in raw["tasks"] if t["name"] == target)
    heads = training.setdefault("heads", {}) or {}
    training["heads"] = heads
    for key, value in values.items():
        if key in HEAD_MODEL_KNOBS:
            task.setdefault("head", {})[key] = value
        elif key == "batch_size":
            heads[key] = value
        else:
            task[key] = value
    return raw


# -- the search -------------------------------------------------------------------------------------------------
def _comparable(settings: dict) -> dict:
    return {k: v for k, v in settings.items() if k != "max_trials"}


def prepare_out(out: Path, job: TuningJob, resume: bool, overwrite: bool, chief: bool) -> None:
    """Create/clear/check DIR on the chief or a single process (`tuning.yaml` records what ran).

    A single process refuses any non-empty DIR without `resume`/`overwrite`. The chief of a distributed
    search refuses only a DIR holding an earlier search (`tuning.yaml`): workers started before it may
    already have created `workers/` and `search/` there.

    Raises:
        urep.io.RunDirExistsError: DIR holds a search (or anything, on a single process) and neither flag is
            set, or `resume` with other settings than `max_trials`.
        urep.io.RunDirError: `overwrite` of a folder that holds no urep search.
    """
    from urep.io import (
        RunDirError,
        RunDirExistsError,
        atomic_write_text,
        is_run_dir,
        mark_run_dir,
        prepare_run_dir,
    )

    record = {"config": job.file, "experiment": job.experiment.name, "tuning": to_plain(job.settings)}
    saved = out / "tuning.yaml"
    if resume and saved.is_file():
        before = yaml.safe_load(saved.read_text(encoding="utf-8")) or {}
        if _comparable(before.get("tuning", {})) != _comparable(record["tuning"]):
            raise RunDirExistsError(
                f"{out} holds a search with other settings ({saved}); only max_trials may change on --resume, "
                "use --overwrite to start again")
    if not chief:
        prepare_run_dir(out, overwrite=overwrite, resume=resume)
    elif saved.is_file() and not (resume or overwrite):
        raise RunDirExistsError(f"{out} holds an earlier search ({saved}); pass --resume to continue it or "
                                "--overwrite to replace it")
    elif overwrite and out.exists():
        if not (is_run_dir(out) or saved.is_file()):
            raise RunDirError(f"refusing to delete {out}: it holds no urep search (no tuning.yaml or run marker); "
                              "delete it yourself or choose another --out")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    mark_run_dir(out)
    atomic_write_text(saved, yaml.safe_dump(record, sort_keys=False))


def prepare_search(job: TuningJob, out: str | os.PathLike, data_root: str | None = None, *, resume: bool = False,
                   overwrite: bool = False):
    """Check/prepare DIR (`prepare_out`; a distributed worker only makes its `workers/<id>/` data folder) and
    build the target's hypermodel.

    Raises:
        urep.io.RunDirExistsError, urep.io.RunDirError: see `prepare_out`.
        urep.experiments.schema.ConfigError: see `build_hypermodel`.
    """
    from urep import tuning

    out = Path(out)
    if tuning.is_worker():
        data_dir = out / "workers" / os.environ.get("KERASTUNER_TUNER_ID", "worker")
        data_dir.mkdir(parents=True, exist_ok=True)
    else:
        prepare_out(out, job, resume, overwrite, chief=tuning.is_chief())
        data_dir = out
    return build_hypermodel(job, data_dir, data_root)


def run_search(job: TuningJob, hypermodel, out: str | os.PathLike) -> SearchOutcome:
    """Run the search in `out/search` (reloading what is there) and, except on a worker, write the results
    (`urep.tuning.write_results`) and, when a trial completed, `best_config.yaml`."""
    from urep import tuning
    from urep.io import atomic_write_text

    out, settings = Path(out), job.settings
    tuner = tuning.make_tuner(
        settings.tuner, hypermodel, out, project_name="search", max_trials=settings.max_trials,
        seed=settings.seed if settings.seed is not None else job.experiment.seed, overwrite=False,
        hyperband_factor=settings.hyperband_factor, hyperband_iterations=settings.hyperband_iterations,
        executions_per_trial=settings.executions_per_trial)
    tuning.search(tuner)
    if tuning.is_worker():
        return SearchOutcome(worker=True)
    paths = tuning.write_results(tuner, out, hypermodel.objective, hypermodel.direction)
    n_trials = len(tuning.trial_records(tuner))
    if "best.json" not in paths:
        return SearchOutcome(worker=False, paths=paths, n_trials=n_trials)
    values = tuning.best_values(tuner, hypermodel.space)
    best_path = out / "best_config.yaml"
    tuned = parse_config(best_config(job, values), best_path)
    atomic_write_text(best_path, dump_config(tuned))
    return SearchOutcome(worker=False, paths=paths, values=values, best_config=best_path, n_trials=n_trials)
