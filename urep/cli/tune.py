"""`urep tune CONFIG --out DIR`: Keras Tuner search over a source representation or a task head.

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

from __future__ import annotations

import argparse
import logging
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

logger = logging.getLogger(__name__)

SOURCE_MODEL_KNOBS = ("kernel_size", "dilation_rate", "dropout", "dense_units")
HEAD_MODEL_KNOBS = ("dropout", "dense_units")


@dataclass(frozen=True)
class TuningSettings:
    """The `tuning:` section (see the module docstring for every key)."""

    target: str = "source"
    tuner: Literal["grid", "random", "bayesian", "hyperband"] = "grid"
    objective: str = "val_loss"
    direction: Literal["min", "max", "auto"] = "auto"
    max_trials: int | None = None
    search_space: dict[str, Any] = field(default_factory=dict)
    epochs: int | None = None
    max_steps_per_epoch: int | None = None
    executions_per_trial: int = 1
    seed: int | None = None
    source_run: str | None = None
    freeze_encoder: bool = True
    hyperband_factor: int = 3
    hyperband_iterations: int = 1


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


def _read_yaml(path: Path) -> Any:
    import yaml

    from urep.experiments.schema import ConfigError

    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"not valid YAML: {err}", "", path) from err


def _check_settings(settings: TuningSettings, experiment, file: str) -> None:
    from urep.experiments.schema import ConfigError

    key = "tuning"
    names = [task.name for task in experiment.tasks]
    if settings.target != "source" and settings.target not in names:
        raise ConfigError(f"expected 'source' or a task name {names}, got {settings.target!r}", f"{key}.target", file)
    if settings.target == "source" and experiment.source.kind not in ("cdae", "dilated_cnn"):
        raise ConfigError(f"source.kind {experiment.source.kind!r} has no hypermodel; tunable: cdae, dilated_cnn",
                          f"{key}.target", file)
    for attr in ("max_trials", "epochs", "max_steps_per_epoch"):
        value = getattr(settings, attr)
        if value is not None and value < 1:
            raise ConfigError(f"expected null or an integer >= 1, got {value!r}", f"{key}.{attr}", file)
    for attr in ("executions_per_trial", "hyperband_iterations"):
        if getattr(settings, attr) < 1:
            raise ConfigError(f"expected an integer >= 1, got {getattr(settings, attr)!r}", f"{key}.{attr}", file)
    if settings.hyperband_factor < 2:
        raise ConfigError(f"expected an integer >= 2, got {settings.hyperband_factor!r}",
                          f"{key}.hyperband_factor", file)
    if settings.seed is not None and settings.seed < 0:
        raise ConfigError(f"expected a non-negative integer, got {settings.seed!r}", f"{key}.seed", file)
    if settings.target != "source" and settings.source_run is None:
        raise ConfigError("tuning a head needs the trained source: set it to a `urep run` directory",
                          f"{key}.source_run", file)
    _check_space(settings, experiment, file)


def _check_space(settings: TuningSettings, experiment, file: str) -> None:
    """Validate `tuning.search_space` against the target's hypermodel before any data is read."""
    from urep import tuning
    from urep.experiments.schema import ConfigError

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
    from urep.experiments.config import find_config, parse_config
    from urep.experiments.schema import ConfigError, build

    file = find_config(path)
    raw = _read_yaml(file)
    if not isinstance(raw, dict):
        raise ConfigError(f"the top level must be a mapping, got {type(raw).__name__}", "", file)
    if "base" in raw:
        standalone = build(StandaloneTuning, raw, "", file)
        base_path = file.parent / standalone.base
        base_file = find_config(base_path if base_path.is_file() else standalone.base)
        raw_experiment = _read_yaml(base_file)
        settings = standalone.tuning
        experiment = parse_config(raw_experiment, base_file)
        if isinstance(raw_experiment, dict) and "tuning" in raw_experiment:
            raise ConfigError("the base experiment has its own `tuning:` section; keep one", "base", file)
    else:
        raw_experiment = {k: v for k, v in raw.items() if k != "tuning"}
        settings = build(TuningSettings, raw.get("tuning"), "tuning", file)
        experiment = parse_config(raw_experiment, file)
    changes = {k: v for k, v in (overrides or {}).items() if v is not None}
    if changes:
        settings = replace(settings, **changes)
    if settings.source_run is not None and not Path(settings.source_run).is_absolute():
        beside = file.parent / settings.source_run
        settings = replace(settings, source_run=str(beside if beside.exists() else Path(settings.source_run)))
    _check_settings(settings, experiment, str(file))
    return TuningJob(settings, experiment, raw_experiment, str(file))


# -- data and hypermodels --------------------------------------------------------------------------------------
def _train_config(settings, job: TuningJob, optimizer: str | None = None):
    """The `TrainConfig` of one phase of the experiment (as `urep run` builds it), with the tuning overrides."""
    from urep.training.config import TrainConfig

    tuning, experiment = job.settings, job.experiment
    return TrainConfig(
        epochs=tuning.epochs or settings.epochs, batch_size=settings.batch_size,
        optimizer={"name": optimizer or settings.optimizer, "learning_rate": settings.learning_rate},
        reduce_lr_factor=settings.reduce_lr_factor, reduce_lr_patience=settings.reduce_lr_patience,
        early_stopping_patience=settings.early_stopping_patience,
        max_steps_per_epoch=tuning.max_steps_per_epoch or settings.max_steps_per_epoch,
        jit_compile=settings.jit_compile, seed=tuning.seed if tuning.seed is not None else experiment.seed,
        deterministic=experiment.deterministic, progress_bar=False)


def _noisy(clean, noise, seed: int, epoch: int):
    """Each image corrupted by one of the configured noises, the assignment rotating with `epoch` (as the
    experiment pipeline does for the denoising source)."""
    import numpy as np

    from urep.data.noise import NoiseSpec, add_noise

    specs = [NoiseSpec(n.kind, n.level) for n in noise]
    out = np.empty_like(clean)
    assignment = (np.arange(len(clean)) + epoch) % len(specs)
    for i, spec in enumerate(specs):
        index = np.flatnonzero(assignment == i)
        if index.size:
            out[index] = add_noise(clean[index], spec, np.random.default_rng([seed, epoch, i]))
    return out


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
    data = TuningData(clean_train, clean_train, norm(_noisy(clean_val, source.noise, seed, 10_000)), clean_val,
                      corrupt=lambda clean, epoch: norm(_noisy(clean, source.noise, seed, epoch)))
    return CDAEHyperModel(data, model_kwargs=source.model, batchnorm_momentum=config.batchnorm_momentum,
                          **common)


def _head_hypermodel(job: TuningJob, data_dir: Path, data_root: str | None):
    import json

    import numpy as np

    from urep.data import MeanNormalizer
    from urep.experiments.schema import ConfigError
    from urep.experiments.sources import load_sources, patient_split, read_arrays, task_frame
    from urep.tuning import HeadHyperModel, TuningData

    config, settings = job.experiment, job.settings
    task = config.task(settings.target)
    run = Path(settings.source_run)
    model_path = run / "models" / "source" / ("denoising.keras" if config.source.kind == "cdae" else "source.keras")
    for needed in (model_path, run / "normalizer.json"):
        if not needed.is_file():
            raise ConfigError(f"{needed} not found: expected a `urep run` directory of this experiment",
                              "tuning.source_run", job.file)
    from urep.io import load_keras_model

    source = load_keras_model(model_path)  # names the file when it is damaged
    normalizer = MeanNormalizer.from_dict(json.loads((run / "normalizer.json").read_text(encoding="utf-8")))
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
    from urep.experiments.schema import ConfigError

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
    import copy

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


# -- command ----------------------------------------------------------------------------------------------------
def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "tune", help="Keras Tuner search (grid/random/bayesian/hyperband) over a source or a head",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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


def _comparable(settings: dict) -> dict:
    return {k: v for k, v in settings.items() if k != "max_trials"}


def _prepare_out(out: Path, job: TuningJob, resume: bool, overwrite: bool, chief: bool) -> None:
    """Create/clear/check DIR on the chief or a single process (`tuning.yaml` records what ran).

    A single process refuses any non-empty DIR without `--resume`/`--overwrite`. The chief of a distributed
    search refuses only a DIR holding an earlier search (`tuning.yaml`): workers started before it may
    already have created `workers/` and `search/` there.
    """
    import shutil

    import yaml

    from urep.experiments.schema import to_plain
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


def main(args: argparse.Namespace) -> int:
    import yaml

    from urep.experiments.schema import ConfigError
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
    from urep import tuning

    out = Path(args.out)
    worker = tuning.is_worker()
    try:
        if worker:
            data_dir = out / "workers" / os.environ.get("KERASTUNER_TUNER_ID", "worker")
            data_dir.mkdir(parents=True, exist_ok=True)
        else:
            _prepare_out(out, job, args.resume, args.overwrite, chief=tuning.is_chief())
            data_dir = out
        hypermodel = build_hypermodel(job, data_dir, args.data_root)
    except (RunDirExistsError, RunDirError) as err:
        print(f"urep tune: {err}")
        return 2
    except ConfigError as err:
        print(f"urep tune: {err}")
        return 2
    settings = job.settings
    tuner = tuning.make_tuner(
        settings.tuner, hypermodel, out, project_name="search", max_trials=settings.max_trials,
        seed=settings.seed if settings.seed is not None else job.experiment.seed, overwrite=False,
        hyperband_factor=settings.hyperband_factor, hyperband_iterations=settings.hyperband_iterations,
        executions_per_trial=settings.executions_per_trial)
    tuning.search(tuner)
    if worker:
        print(f"urep tune: worker {os.environ.get('KERASTUNER_TUNER_ID')} finished")
        return 0
    paths = tuning.write_results(tuner, out, hypermodel.objective, hypermodel.direction)
    if "best.json" not in paths:
        print(f"urep tune: no trial completed; see {paths['trials.md']}")
        return 1
    values = tuning.best_values(tuner, hypermodel.space)
    from urep.experiments.config import dump_config, parse_config
    from urep.io import atomic_write_text

    best_path = out / "best_config.yaml"
    tuned = parse_config(best_config(job, values), best_path)
    atomic_write_text(best_path, dump_config(tuned))
    print(f"urep tune: {len(tuning.trial_records(tuner))} trials in {out / 'search'}")
    print(f"best {hypermodel.objective} ({hypermodel.direction}): {yaml.safe_dump(values, default_flow_style=True).strip()}")
    for name in ("trials.csv", "trials.md", "objective.png", "best.json"):
        print(f"  {paths[name]}")
    print(f"  {best_path}  (urep run {best_path} --out RUN)")
    return 0
