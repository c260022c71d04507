"""Hyperparameter search with Keras Tuner (the papers used Talos; UMS-Rep journal, Sections 4.1.1 and 4.2.1).

Hypermodels (`keras_tuner.HyperModel` subclasses) whose `build(hp)` calls the urep model builders and whose
`fit(hp, model, ...)` trains with urep's own loop (`urep.training.train_model`), so the batch size, the
optimizer and its learning rate are tunable like any architecture knob:

- `CDAEHyperModel`: U-Rep 1, the denoising autoencoder. Paper space (journal section 4.1.1, Talos):
  kernel [3, 5, 7] x optimizer [SGD, Adam, RMSprop] -> 3, RMSprop.
- `DilatedCNNHyperModel`: U-Rep 2, the supervised Doppler CNN. Paper space (journal section 4.2.1): kernel
  [3, 5, 7], dilation [2, 3], dropout [0.1, 0.3, 0.5], optimizer [SGD, Adam, RMSprop], batch [16, 32, 64] ->
  3, 2, 0.5, Adam, 16.
- `HeadHyperModel`: a classification or segmentation head on a trained (truncated) source. The papers name
  no head search; the default space here is our choice: dropout [0.3, 0.5] (classification only), optimizer
  [SGD, Adam, RMSprop], learning rate [1e-2, 1e-3, 1e-4].

Search spaces are plain mappings (`search_space` in a config), merged over the defaults key by key: a list is
a `hp.Choice`, a scalar a `hp.Fixed`, a mapping `{min, max, step, sampling}` a `hp.Int`/`hp.Float` range.
Knobs a hypermodel does not know are rejected with the list of those it does (`SearchSpaceError`).

Tuners by name (`make_tuner`): `grid` (exhaustive, as Talos did), `random`, `bayesian` and `hyperband`.
The objective is `val_loss` by default, or any quantity the loop logs (`loss`, `val_loss`, `val_<metric>`),
with its direction (`min`/`max`, or `auto`: max for accuracy/AUC/Dice-like names).

Resuming: `overwrite=False` reloads the project directory and continues. Keras Tuner 1.4.8's grid search
does not: its oracle keeps the grid's ordering (`_ordered_ids`, `_populate_next`) only in memory, so a
reloaded `GridSearch` either stops at once (every trial finished, or `max_trials` raised) or crashes with a
`KeyError` when the trial interrupted by the kill finishes. `ResumableGridSearchOracle` rebuilds that state
from the saved trials on reload, so a killed or `max_trials`-capped grid continues where it stopped and no
finished combination runs again (the trial that was running when the process died is run again, as Keras
Tuner retries interrupted trials).

Memory: Keras Tuner calls `keras.backend.clear_session()` before each build (`Tuner._try_build`), and the
hypermodels call it again at the start of `build` so the promise holds for any caller; no model, optimizer
or training-step object of a finished trial stays alive. TensorFlow 2.21 nevertheless keeps the two traced
graphs of each trial (`FuncGraph`s of the train and eval steps), as it does for `model.fit` in a loop with
`clear_session()` (tensorflow/tensorflow#61791): `benchmarks/tuner_memory.py` measured about 9 MiB more RSS
per tiny trial (peak 967 MiB over 20 trials; plain `model.fit` + `clear_session` grew 13 MiB per trial on
the same machine). For very long searches, run the search in chunks, each in a fresh process: raise
`max_trials` and resume (`urep tune ... --max-trials N --resume`), or run distributed workers.

Distributed tuning (Keras Tuner chief/worker mode). Start one process per role on the same search, each with

    KERASTUNER_TUNER_ID=chief | tuner0 | tuner1 ...   (the id of the chief must contain "chief")
    KERASTUNER_ORACLE_IP=<address of the chief>       (127.0.0.1 on one machine)
    KERASTUNER_ORACLE_PORT=<a free port>

The chief runs the oracle as a gRPC server and trains nothing; each worker asks it for trials, trains them
and reports back, so no trial runs twice; the search ends when the oracle has no trial left and every worker
has been told to stop. `search(tuner)` serves the chief itself, polling every `poll_seconds` (Keras Tuner's
own `start_server` polls every 20 s once the first worker stops, which dominates small searches). Workers
must see the same `directory`/`project_name` only for the checkpoints Hyperband reloads; the trial records
(`trial.json`, `oracle.json`) are written by the chief, which therefore writes the results. Keep
`overwrite=False` on workers (the CLI does).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import keras_tuner
import numpy as np

from urep.io import atomic_save, atomic_write_json, atomic_write_text
from urep.models.batchnorm import set_batchnorm_momentum
from urep.plotting import new_figure
from urep.seed import seed_everything
from urep.training.config import OPTIMIZERS, TrainConfig, resolve_mode

logger = logging.getLogger(__name__)

__all__ = [
    "CDAEHyperModel",
    "DEFAULT_HEAD_SPACE",
    "DilatedCNNHyperModel",
    "HeadHyperModel",
    "PAPER_CDAE_SPACE",
    "PAPER_DILATED_CNN_SPACE",
    "ResumableGridSearchOracle",
    "SearchSpaceError",
    "TUNERS",
    "TrialRecord",
    "TuningData",
    "UrepHyperModel",
    "best_values",
    "is_chief",
    "is_distributed",
    "is_worker",
    "make_tuner",
    "plot_objective",
    "search",
    "trial_records",
    "trials_markdown",
    "trials_table",
    "write_results",
]

#: Tuner names accepted by `make_tuner`.
TUNERS = ("grid", "random", "bayesian", "hyperband")

#: U-Rep 1 / CDAE (journal section 4.1.1): Talos chose kernel 3 and RMSprop.
PAPER_CDAE_SPACE: dict[str, Any] = {"kernel_size": [3, 5, 7], "optimizer": ["sgd", "adam", "rmsprop"]}
#: U-Rep 2 / dilated CNN (journal section 4.2.1): Talos chose 3, 2, 0.5, Adam, 16.
PAPER_DILATED_CNN_SPACE: dict[str, Any] = {
    "kernel_size": [3, 5, 7],
    "dilation_rate": [2, 3],
    "dropout": [0.1, 0.3, 0.5],
    "optimizer": ["sgd", "adam", "rmsprop"],
    "batch_size": [16, 32, 64],
}
#: Heads: the papers name dropout, optimizer and learning rate but no values; these are our choice.
DEFAULT_HEAD_SPACE: dict[str, Any] = {
    "dropout": [0.3, 0.5],
    "optimizer": ["sgd", "adam", "rmsprop"],
    "learning_rate": [1e-2, 1e-3, 1e-4],
}

#: Type of every knob a hypermodel may expose: "int" (>= 1), "rate" (in [0, 1)), "positive" (> 0) or
#: "optimizer" (one of `urep.training.config.OPTIMIZERS`).
KNOB_TYPES = {
    "kernel_size": "int",
    "dilation_rate": "int",
    "dense_units": "int",
    "batch_size": "int",
    "dropout": "rate",
    "learning_rate": "positive",
    "optimizer": "optimizer",
}
_RANGE_KEYS = {"min", "max", "step", "sampling"}
_SAMPLINGS = ("linear", "log", "reverse_log")
#: Metrics reported to the oracle besides the logged ones (non-objective metrics default to "min").
SECONDS_METRIC = "train_seconds"


class SearchSpaceError(ValueError):
    """A search space entry is invalid; `key` is the knob's name (the message starts with it)."""

    def __init__(self, message: str, key: str) -> None:
        self.key, self.detail = key, message
        super().__init__(f"search_space.{key}: {message}" if key else f"search_space: {message}")


# -- search spaces -------------------------------------------------------------------------------------------
def _knob_value(name: str, value: Any) -> Any:
    """One value of knob `name`, checked and normalised (numeric strings such as YAML's `1e-3` accepted)."""
    kind = KNOB_TYPES[name]
    if kind == "optimizer":
        if not isinstance(value, str) or value.lower() not in OPTIMIZERS:
            raise SearchSpaceError(f"expected one of {list(OPTIMIZERS)}, got {value!r}", name)
        return value.lower()
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise SearchSpaceError(f"expected an integer >= 1, got {value!r}", name)
        return value
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise SearchSpaceError(f"expected a number, got {value!r}", name) from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SearchSpaceError(f"expected a number, got {value!r}", name)
    value = float(value)
    if kind == "rate" and not 0 <= value < 1:
        raise SearchSpaceError(f"expected a number in [0, 1), got {value!r}", name)
    if kind == "positive" and not value > 0:
        raise SearchSpaceError(f"expected a number > 0, got {value!r}", name)
    return value


def _check_range(name: str, spec: Mapping) -> dict:
    unknown = sorted(set(spec) - _RANGE_KEYS)
    if unknown:
        raise SearchSpaceError(f"unknown range key {unknown[0]!r}; expected some of {sorted(_RANGE_KEYS)}", name)
    if KNOB_TYPES[name] == "optimizer":
        raise SearchSpaceError("the optimizer is a list of names, not a range", name)
    if "min" not in spec or "max" not in spec:
        raise SearchSpaceError("a range needs `min` and `max`", name)
    low, high = _knob_value(name, spec["min"]), _knob_value(name, spec["max"])
    if not low < high:
        raise SearchSpaceError(f"expected min < max, got min {low!r}, max {high!r}", name)
    out = {"min": low, "max": high, "sampling": spec.get("sampling", "linear")}
    if out["sampling"] not in _SAMPLINGS:
        raise SearchSpaceError(f"sampling must be one of {list(_SAMPLINGS)}, got {out['sampling']!r}", name)
    if "step" in spec:
        out["step"] = _knob_value(name, spec["step"])
    return out


def parse_search_space(space: Mapping[str, Any] | None, defaults: Mapping[str, Any],
                       knobs: Sequence[str]) -> dict[str, Any]:
    """Merge `space` over `defaults` key by key and check every entry.

    Args:
        space: knob name -> a list of values (`hp.Choice`), a scalar (`hp.Fixed`) or a range mapping
            `{min, max, step (optional), sampling: linear | log | reverse_log}` (`hp.Int`/`hp.Float`).
        defaults: the hypermodel's default space (same forms).
        knobs: the knob names the hypermodel knows.

    Returns:
        The merged space: name -> tuple of values, a scalar, or a checked range dict, in grid order (the
        defaults' order, then new keys in the order given; Keras Tuner's grid varies the last one fastest).

    Raises:
        SearchSpaceError: unknown knob, empty or repeated choices, or a value of the wrong type or range.
    """
    if space is not None and not isinstance(space, Mapping):
        raise SearchSpaceError(f"expected a mapping of knob -> values, got {space!r}", "")
    merged = {**defaults, **(space or {})}
    out: dict[str, Any] = {}
    for name, spec in merged.items():
        if name not in knobs:
            raise SearchSpaceError(f"unknown knob; this hypermodel tunes {sorted(knobs)}", name)
        if isinstance(spec, Mapping):
            out[name] = _check_range(name, spec)
        elif isinstance(spec, (list, tuple)):
            if not spec:
                raise SearchSpaceError("expected at least one value", name)
            values = tuple(_knob_value(name, v) for v in spec)
            if len(set(values)) != len(values):
                raise SearchSpaceError(f"repeated values in {list(spec)!r}", name)
            out[name] = values
        else:
            out[name] = _knob_value(name, spec)
    return out


def declare(hp: keras_tuner.HyperParameters, space: Mapping[str, Any]) -> dict[str, Any]:
    """Register every knob of a parsed space on `hp` (in order) and return this trial's values."""
    values = {}
    for name, spec in space.items():
        if isinstance(spec, tuple):
            values[name] = hp.Choice(name, list(spec), default=spec[0])
        elif isinstance(spec, dict):
            if KNOB_TYPES[name] == "int":
                values[name] = hp.Int(name, spec["min"], spec["max"], step=spec.get("step"),
                                      sampling=spec["sampling"])
            else:
                values[name] = hp.Float(name, spec["min"], spec["max"], step=spec.get("step"),
                                        sampling=spec["sampling"])
        else:
            values[name] = hp.Fixed(name, spec)
    return values


# -- data ----------------------------------------------------------------------------------------------------
@dataclass
class TuningData:
    """The arrays every trial trains and validates on (one patient-level train/val split).

    Attributes:
        x_train: training inputs `(n, H, W, C)` float32, normalised; for denoising, the CLEAN images that
            `corrupt` turns into each epoch's noisy inputs.
        y_train: training targets: one-hot `(n, classes)`, masks `(n, H, W, 1)` or clean images.
        x_val: validation inputs (already corrupted and normalised), `(m, H, W, C)`.
        y_val: validation targets.
        corrupt: `(clean x_train, 0-based epoch) -> inputs of that epoch` (noise then normalisation, seeded
            by the epoch so every trial sees the same noisy images); None: `x_train` as it is.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    corrupt: Callable[[np.ndarray, int], np.ndarray] | None = None

    def __post_init__(self) -> None:
        for x, y, part in ((self.x_train, self.y_train, "train"), (self.x_val, self.y_val, "val")):
            if len(x) == 0:
                raise ValueError(f"tuning data: the {part} split is empty")
            if len(x) != len(y):
                raise ValueError(f"tuning data: {part} inputs and targets differ in length ({len(x)} vs {len(y)})")
            if np.ndim(x) != 4:
                raise ValueError(f"tuning data: {part} inputs must be (n, H, W, C), got shape {np.shape(x)}")

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """`(H, W, C)` of the inputs."""
        return tuple(int(s) for s in self.x_train.shape[1:])


# -- hypermodels ---------------------------------------------------------------------------------------------
class UrepHyperModel(keras_tuner.HyperModel):
    """Base of the urep hypermodels: search space, per-trial training configuration, fit with urep's loop.

    Subclasses set `KNOBS`, `DEFAULT_SPACE`, `KIND` and implement `build_model(values)`. Knobs that are not
    in the space take the base `train_config`'s value (optimizer, learning rate, batch size) or the builder's
    keyword arguments (architecture).

    Args:
        data: the train/val arrays.
        search_space: overrides of the default space (see `parse_search_space`).
        train_config: base training configuration of every trial (epochs, early stopping, plateau, seed,
            `max_steps_per_epoch`, ...). Default: `TrainConfig(jit_compile=False)` (XLA compilation costs more
            than it saves on the few epochs of a trial; set it back for long trials).
        objective: the quantity to optimise: "val_loss" (default), "loss" or "val_<metric name>".
        direction: "min", "max" or "auto" (see `urep.training.config.resolve_mode`).
        loss: loss name or callable; default per kind ("mse", "cce", "bce_dice").
        metrics: `() -> list of Keras metrics` evaluated on the validation data (fresh objects per trial);
            default accuracy (`val_accuracy`) for classification, none otherwise.
        name: hypermodel name.

    Raises:
        SearchSpaceError: invalid search space.
        ValueError: an objective the loop does not log.
    """

    KNOBS: tuple[str, ...] = ()
    DEFAULT_SPACE: Mapping[str, Any] = {}
    KIND = "classification"
    _LOSSES = {"classification": "cce", "segmentation": "bce_dice", "reconstruction": "mse"}

    def __init__(self, data: TuningData, *, search_space: Mapping[str, Any] | None = None,
                 train_config: TrainConfig | None = None, objective: str = "val_loss", direction: str = "auto",
                 loss: str | Callable | None = None, metrics: Callable[[], list] | None = None,
                 name: str | None = None) -> None:
        super().__init__(name=name)
        if not isinstance(data, TuningData):
            raise TypeError(f"data must be a TuningData, got {type(data).__name__}")
        self.data = data
        self.space = parse_search_space(search_space, self.DEFAULT_SPACE, self.KNOBS)
        self.train_config = train_config if train_config is not None else TrainConfig(jit_compile=False)
        if not isinstance(self.train_config, TrainConfig):
            raise TypeError(f"train_config must be a TrainConfig, got {type(self.train_config).__name__}")
        self.loss = loss if loss is not None else self._LOSSES[self.KIND]
        self.metrics = metrics if metrics is not None else self._default_metrics
        if direction not in ("min", "max", "auto"):
            raise ValueError(f"direction must be 'min', 'max' or 'auto', got {direction!r}")
        logged = self.logged_names()
        if objective not in logged:
            raise ValueError(f"objective {objective!r} is not logged by the training loop; choose one of {logged}")
        self.objective = objective
        self.direction = resolve_mode(objective, direction)

    def _default_metrics(self) -> list:
        if self.KIND == "classification":
            return [keras.metrics.CategoricalAccuracy(name="accuracy")]
        return []

    def logged_names(self) -> list[str]:
        """The quantities a trial reports and an objective may name: loss, val_loss, val_<metric>."""
        return ["loss", "val_loss", *(f"val_{m.name}" for m in self.metrics())]

    @property
    def kt_objective(self) -> keras_tuner.Objective:
        """The objective as Keras Tuner wants it."""
        return keras_tuner.Objective(self.objective, self.direction)

    # -- Keras Tuner hooks -------------------------------------------------------------------------------------
    def build(self, hp: keras_tuner.HyperParameters) -> keras.Model:
        """Register the knobs on `hp` and build a fresh model from this trial's values.

        Clears the Keras session first (between trials), then seeds with the base config's seed so every
        trial starts from the same initialisation draw.
        """
        values = declare(hp, self.space)
        keras.backend.clear_session()
        seed_everything(self.train_config.seed, self.train_config.deterministic)
        return self.build_model(values)

    def build_model(self, values: Mapping[str, Any]) -> keras.Model:
        """Build the model of one trial from its knob values (subclasses)."""
        raise NotImplementedError

    def trainable_variables(self, model: keras.Model) -> list | None:
        """The variables to train (None: all trainable ones)."""
        return None

    def trial_config(self, values: Mapping[str, Any], epochs: int | None = None,
                     initial_epoch: int = 0) -> TrainConfig:
        """The `TrainConfig` of one trial: the base config with the trial's optimizer, learning rate and
        batch size, monitoring the objective, without run-directory side effects.

        Args:
            values: the trial's knob values.
            epochs: last epoch (Hyperband's `tuner/epochs`); None: the base config's epochs.
            initial_epoch: first epoch (Hyperband continues a trial from its checkpoint).
        """
        base = self.train_config
        learning_rate = values.get("learning_rate", base.optimizer.learning_rate)
        optimizer = dataclasses.replace(base.optimizer, name=values.get("optimizer", base.optimizer.name),
                                        learning_rate=float(learning_rate))
        n_epochs = base.epochs if epochs is None else max(int(epochs) - int(initial_epoch), 1)
        return dataclasses.replace(
            base, optimizer=optimizer, learning_rate=float(learning_rate), epochs=n_epochs,
            batch_size=int(values.get("batch_size", base.batch_size)), monitor=self.objective,
            monitor_mode=self.direction, tensorboard=False, checkpoint_every_epoch=False, progress_bar=False)

    def fit(self, hp: keras_tuner.HyperParameters, model: keras.Model, *args, callbacks: Sequence = (),
            epochs: int | None = None, initial_epoch: int = 0, verbose: Any = None, **kwargs) -> dict[str, float]:
        """Train `model` with urep's loop and return the metrics of its best epoch.

        Keras Tuner calls this with `callbacks` (its best-epoch checkpoint and trial callbacks, given the best
        epoch's logs once training has restored the best weights), Hyperband adds `epochs`/`initial_epoch`,
        and `search(verbose=...)` passes `verbose` (ignored: the loop logs through `logging`).

        Returns:
            `{logged name: value at the best epoch, ..., "train_seconds": wall clock of the training}`.

        Raises:
            TypeError: unexpected positional or keyword arguments (the data live in the hypermodel).
        """
        del verbose
        if args or kwargs:
            raise TypeError(f"{type(self).__name__}.fit takes its data from the hypermodel; unexpected arguments "
                            f"{list(args)} {sorted(kwargs)}")
        from urep.training.loop import train_model

        values = {name: hp.get(name) for name in self.space}
        config = self.trial_config(values, epochs, initial_epoch)
        train, val = self._datasets(config.batch_size, config.seed)
        started = time.perf_counter()
        result = train_model(model, self.loss, train, val, config, name="trial", kind=self.KIND,
                             metrics=self.metrics(), n_train=len(self.data.x_train),
                             variables=self.trainable_variables(model))
        seconds = time.perf_counter() - started
        best = (result.best_epoch or result.epochs_run) - 1
        logs = {key: float(series[best]) for key, series in result.history.items()
                if key not in ("lr", "seconds") and len(series) > best}
        for callback in callbacks:
            callback.set_model(model)
            callback.on_epoch_end(best, logs)
        logger.info("trial %s: %s %.4g at epoch %d of %d, %.1f s", dict(values), self.objective,
                    logs[self.objective], best + 1, result.epochs_run, seconds)
        return {**logs, SECONDS_METRIC: seconds}

    def _datasets(self, batch_size: int, seed: int):
        """`(epoch -> shuffled training batches, validation batches)`, the pipeline's data order."""
        import tensorflow as tf

        data = self.data
        n = len(data.x_train)
        fixed = None if data.corrupt is not None else tf.data.Dataset.from_tensor_slices((data.x_train, data.y_train))

        def train(epoch: int) -> tf.data.Dataset:
            base = fixed
            if base is None:
                base = tf.data.Dataset.from_tensor_slices((data.corrupt(data.x_train, epoch), data.y_train))
            return base.shuffle(n, seed=seed * 1009 + epoch, reshuffle_each_iteration=False).batch(batch_size)

        val = tf.data.Dataset.from_tensor_slices((data.x_val, data.y_val)).batch(batch_size)
        return train, val


class CDAEHyperModel(UrepHyperModel):
    """U-Rep 1: the convolutional denoising autoencoder (`urep.models.cdae`), MSE on clean targets.

    Knobs: kernel_size, optimizer, learning_rate, batch_size. Default space: the paper's kernel [3, 5, 7] x
    optimizer [SGD, Adam, RMSprop] (`PAPER_CDAE_SPACE`).

    Args:
        data: `TuningData` with clean `x_train` and a `corrupt` function (or pre-corrupted inputs).
        model_kwargs: further `cdae` keyword arguments (e.g. `filters`); tuned knobs override them.
        batchnorm_momentum: see `urep.models.set_batchnorm_momentum`.
        **kwargs: `UrepHyperModel` arguments.
    """

    KNOBS = ("kernel_size", "optimizer", "learning_rate", "batch_size")
    DEFAULT_SPACE = PAPER_CDAE_SPACE
    KIND = "reconstruction"

    def __init__(self, data: TuningData, *, model_kwargs: Mapping[str, Any] | None = None,
                 batchnorm_momentum: float | None = None, **kwargs) -> None:
        super().__init__(data, **kwargs)
        self.model_kwargs = dict(model_kwargs or {})
        self.batchnorm_momentum = batchnorm_momentum

    def build_model(self, values: Mapping[str, Any]) -> keras.Model:
        from urep.models import cdae

        kwargs = {**self.model_kwargs, **{k: values[k] for k in ("kernel_size",) if k in values}}
        model = cdae(input_shape=self.data.input_shape, **kwargs)
        return set_batchnorm_momentum(model, self.batchnorm_momentum)


class DilatedCNNHyperModel(UrepHyperModel):
    """U-Rep 2: the supervised dilated CNN (`urep.models.dilated_cnn`), categorical cross-entropy.

    Knobs: kernel_size, dilation_rate, dropout, dense_units, optimizer, learning_rate, batch_size. Default
    space: the paper's (`PAPER_DILATED_CNN_SPACE`, 162 combinations).

    Args:
        data: `TuningData` with one-hot targets `(n, classes)`.
        model_kwargs: further `dilated_cnn` keyword arguments (e.g. `filters`); tuned knobs override them.
        **kwargs: `UrepHyperModel` arguments.
    """

    KNOBS = ("kernel_size", "dilation_rate", "dropout", "dense_units", "optimizer", "learning_rate",
             "batch_size")
    DEFAULT_SPACE = PAPER_DILATED_CNN_SPACE
    KIND = "classification"
    _ARCHITECTURE = ("kernel_size", "dilation_rate", "dropout", "dense_units")

    def __init__(self, data: TuningData, *, model_kwargs: Mapping[str, Any] | None = None, **kwargs) -> None:
        super().__init__(data, **kwargs)
        if np.ndim(data.y_train) != 2:
            raise ValueError(f"DilatedCNNHyperModel needs one-hot targets (n, classes), got {np.shape(data.y_train)}")
        self.model_kwargs = dict(model_kwargs or {})

    def build_model(self, values: Mapping[str, Any]) -> keras.Model:
        from urep.models import dilated_cnn

        kwargs = {**self.model_kwargs, **{k: values[k] for k in self._ARCHITECTURE if k in values}}
        return dilated_cnn(input_shape=self.data.input_shape, n_classes=int(self.data.y_train.shape[1]), **kwargs)


class HeadHyperModel(UrepHyperModel):
    """A task head on a trained source representation: each trial starts from the source's trained weights.

    Every trial clones `source` and copies its weights, truncates the clone at `encoder_out` and appends the
    head (`classification_head`; `segmentation_head_from_autoencoder` for an autoencoder source, whose
    output is an image, else `segmentation_head_from_encoder`). With `freeze_encoder` (the independent
    strategy, the papers' best for heterogeneous tasks) only the head trains.

    Knobs: dropout and dense_units (classification only), optimizer, learning_rate, batch_size. Default space
    (our choice, the papers give none): `DEFAULT_HEAD_SPACE`, without dropout for segmentation.

    Args:
        data: `TuningData`: one-hot targets (classification) or masks `(n, H, W, 1)` (segmentation).
        source: the trained source model (a urep backbone with an `encoder_out` layer).
        kind: "classification" or "segmentation".
        head_kwargs: further head builder keyword arguments; tuned knobs override them.
        freeze_encoder: train the head only.
        **kwargs: `UrepHyperModel` arguments.

    Raises:
        ValueError: unknown kind, a source without `encoder_out`, or a classification-only knob on a
            segmentation head.
    """

    KNOBS = ("dropout", "dense_units", "optimizer", "learning_rate", "batch_size")
    DEFAULT_SPACE = DEFAULT_HEAD_SPACE
    #: Knobs of a segmentation head (no dropout or dense layer in the decoder).
    SEGMENTATION_KNOBS = ("optimizer", "learning_rate", "batch_size")

    @classmethod
    def space_of(cls, kind: str) -> tuple[dict[str, Any], tuple[str, ...]]:
        """`(default space, knobs)` of a head of this kind ("classification" or "segmentation")."""
        if kind == "segmentation":
            return {k: v for k, v in DEFAULT_HEAD_SPACE.items() if k in cls.SEGMENTATION_KNOBS}, cls.SEGMENTATION_KNOBS
        return dict(DEFAULT_HEAD_SPACE), cls.KNOBS

    def __init__(self, data: TuningData, source: keras.Model, *, kind: str = "classification",
                 head_kwargs: Mapping[str, Any] | None = None, freeze_encoder: bool = True, **kwargs) -> None:
        if kind not in ("classification", "segmentation"):
            raise ValueError(f"kind must be 'classification' or 'segmentation', got {kind!r}")
        self.KIND = kind
        self.DEFAULT_SPACE, self.KNOBS = self.space_of(kind)
        if not isinstance(source, keras.Model) or "encoder_out" not in [layer.name for layer in source.layers]:
            raise ValueError("source must be a keras.Model with an 'encoder_out' layer (a urep backbone)")
        super().__init__(data, **kwargs)
        self.source = source
        self.source_weights = source.get_weights()
        self.head_kwargs = dict(head_kwargs or {})
        self.freeze_encoder = bool(freeze_encoder)
        self.autoencoder = len(source.outputs[0].shape) == 4

    def build_model(self, values: Mapping[str, Any]) -> keras.Model:
        from urep import models

        clone = keras.models.clone_model(self.source)
        clone.set_weights(self.source_weights)
        encoder = models.truncate(clone, "encoder_out")
        if self.freeze_encoder:
            for layer in encoder.layers:
                layer.trainable = False
        kwargs = {**self.head_kwargs, **{k: values[k] for k in ("dropout", "dense_units") if k in values}}
        if self.KIND == "classification":
            return models.classification_head(encoder, int(self.data.y_train.shape[1]), name="head", **kwargs)
        if self.autoencoder:
            return models.segmentation_head_from_autoencoder(clone, encoder=encoder, name="head", **kwargs)
        return models.segmentation_head_from_encoder(encoder, name="head", **kwargs)


# -- the grid oracle that resumes ----------------------------------------------------------------------------
class ResumableGridSearchOracle(keras_tuner.oracles.GridSearchOracle):
    """Keras Tuner's grid oracle, plus a reload that continues the grid (see the module docstring).

    On `set_state` (called by `reload`, after the trials were read back from their `trial.json` files) the
    ordered list of tried combinations is rebuilt by sorting the saved trials with the oracle's own order,
    and every ended trial is queued again to propose its successor; successors already tried are skipped by
    the stock logic, so nothing finished is proposed twice.
    """

    def set_state(self, state: dict) -> None:
        super().set_state(state)
        from keras_tuner.src.tuners.gridsearch import LinkedList

        def compare(a: str, b: str) -> int:
            return self._compare(self.trials[a].hyperparameters.values, self.trials[b].hyperparameters.values)

        self._ordered_ids = LinkedList()
        for trial_id in sorted(self.trials, key=functools.cmp_to_key(compare)):
            self._ordered_ids.insert(trial_id)
        self._populate_next = list(dict.fromkeys(self.end_order))


def _is_grid(tuner: keras_tuner.Tuner) -> bool:
    return isinstance(getattr(tuner, "oracle", None), keras_tuner.oracles.GridSearchOracle)


def make_tuner(name: str, hypermodel: UrepHyperModel, directory: str | os.PathLike, *,
               project_name: str = "search", max_trials: int | None = None, seed: int = 0,
               overwrite: bool = False, max_epochs: int | None = None, hyperband_factor: int = 3,
               hyperband_iterations: int = 1, executions_per_trial: int = 1) -> keras_tuner.Tuner:
    """A Keras Tuner tuner by name, optimising `hypermodel.objective`.

    Args:
        name: "grid" (exhaustive; `ResumableGridSearchOracle`), "random", "bayesian" or "hyperband".
        hypermodel: the hypermodel (its `objective` and `direction` are the tuner's).
        directory: folder of the project (`directory/project_name`: `oracle.json`, `trial_*/`).
        project_name: project folder name.
        max_trials: trial budget. None: the whole grid (grid), 10 (random, bayesian), Hyperband's own budget
            (hyperband; a number caps it).
        seed: oracle seed (random draws, Bayesian initial points, Hyperband brackets).
        overwrite: delete an existing project first; False reloads it and continues.
        max_epochs: Hyperband's largest epoch budget; default the hypermodel's `train_config.epochs`.
        hyperband_factor: Hyperband's reduction factor.
        hyperband_iterations: Hyperband's iterations.
        executions_per_trial: trainings per trial (the objective is their mean).

    Returns:
        The tuner (call `search(tuner)`).

    Raises:
        ValueError: unknown name or bad budget.
    """
    if name not in TUNERS:
        raise ValueError(f"unknown tuner {name!r}; expected one of {list(TUNERS)}")
    if max_trials is not None and (isinstance(max_trials, bool) or not isinstance(max_trials, int)
                                   or max_trials < 1):
        raise ValueError(f"max_trials must be None or an integer >= 1, got {max_trials!r}")
    objective = hypermodel.kt_objective
    common = {"hypermodel": hypermodel, "directory": str(directory), "project_name": project_name,
              "overwrite": overwrite, "executions_per_trial": executions_per_trial}
    if name == "grid":
        oracle = ResumableGridSearchOracle(objective=objective, max_trials=max_trials, seed=seed)
        return keras_tuner.Tuner(oracle=oracle, **common)
    if name == "random":
        return keras_tuner.RandomSearch(objective=objective, max_trials=max_trials or 10, seed=seed, **common)
    if name == "bayesian":
        return keras_tuner.BayesianOptimization(objective=objective, max_trials=max_trials or 10, seed=seed,
                                                **common)
    epochs = max_epochs or hypermodel.train_config.epochs
    if epochs < 2:
        raise ValueError(f"hyperband needs max_epochs >= 2 (it trains brackets of growing budgets), got {epochs}")
    tuner = keras_tuner.Hyperband(objective=objective, max_epochs=epochs, factor=hyperband_factor,
                                  hyperband_iterations=hyperband_iterations, seed=seed, **common)
    if max_trials is not None:
        tuner.oracle.max_trials = max_trials
    return tuner


# -- distributed mode ----------------------------------------------------------------------------------------
def is_distributed() -> bool:
    """Whether the Keras Tuner chief/worker variables are set (`KERASTUNER_ORACLE_IP`, ...)."""
    return "KERASTUNER_ORACLE_IP" in os.environ


def is_chief() -> bool:
    """Whether this process is the chief of a distributed search (its tuner id contains "chief")."""
    return is_distributed() and "chief" in os.environ.get("KERASTUNER_TUNER_ID", "")


def is_worker() -> bool:
    """Whether this process is a worker of a distributed search."""
    return is_distributed() and not is_chief()


def _serve_chief(tuner: keras_tuner.Tuner, poll_seconds: float) -> None:
    """Serve the oracle over gRPC until it has no trial left and every worker has been told to stop."""
    from concurrent import futures

    import grpc
    from keras_tuner.src import protos
    from keras_tuner.src.distribute.oracle_chief import OracleServicer, exit_chief

    for key in ("KERASTUNER_ORACLE_PORT", "KERASTUNER_TUNER_ID"):
        if key not in os.environ:
            raise RuntimeError(f"KERASTUNER_ORACLE_IP is set but {key} is not; set all three variables")
    address = f"{os.environ['KERASTUNER_ORACLE_IP']}:{os.environ['KERASTUNER_ORACLE_PORT']}"
    tuner.save()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    servicer = OracleServicer(tuner.oracle)
    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
    if server.add_insecure_port(address) == 0:
        raise RuntimeError(f"the chief cannot listen on {address} (port in use?)")
    server.start()
    logger.info("chief: oracle serving on %s", address)
    try:
        while not (servicer.stop_triggered and exit_chief(tuner.oracle)):
            time.sleep(poll_seconds)
    finally:
        server.stop(grace=1.0)
    logger.info("chief: every trial ended and every worker stopped")


def search(tuner: keras_tuner.Tuner, poll_seconds: float = 0.5) -> None:
    """Run the search: the chief serves the oracle, a worker or a single process trains trials.

    Args:
        tuner: from `make_tuner`.
        poll_seconds: how often the chief checks whether the search is over.
    """
    if is_chief():
        _serve_chief(tuner, poll_seconds)
        return
    tuner.search(verbose=0)


# -- results -------------------------------------------------------------------------------------------------
@dataclass
class TrialRecord:
    """One trial as the results table shows it.

    Attributes:
        trial_id: Keras Tuner's id (creation order).
        status: COMPLETED, RUNNING, INVALID, FAILED, ...
        values: hyperparameter name -> value (Hyperband's `tuner/...` bookkeeping included).
        objective: the trial's objective value (None when it did not complete).
        train_seconds: wall clock of its training.
        metrics: every reported metric's best value.
    """

    trial_id: str
    status: str
    values: dict[str, Any]
    objective: float | None
    train_seconds: float | None
    metrics: dict[str, float]


def trial_records(tuner: keras_tuner.Tuner) -> list[TrialRecord]:
    """Every trial of the tuner's oracle, in creation order (chief or single process only).

    Raises:
        RuntimeError: called on a distributed worker, whose oracle lives in the chief.
    """
    oracle = tuner.oracle
    if not isinstance(oracle, keras_tuner.Oracle):
        raise RuntimeError("trial records live in the chief's oracle; collect them on the chief")
    records = []
    for trial_id in sorted(oracle.trials):
        trial = oracle.trials[trial_id]
        metrics = {name: float(trial.metrics.get_best_value(name)) for name in trial.metrics.metrics
                   if trial.metrics.get_history(name)}
        score = trial.score if trial.status == "COMPLETED" else None
        records.append(TrialRecord(
            trial_id=trial_id, status=str(trial.status), values=dict(trial.hyperparameters.values),
            objective=None if score is None or not math.isfinite(score) else float(score),
            train_seconds=metrics.get(SECONDS_METRIC), metrics=metrics))
    return records


def trials_table(records: Sequence[TrialRecord], objective: str):
    """A pandas DataFrame: trial, status, one column per hyperparameter, the objective, training seconds."""
    import pandas as pd

    names = list(dict.fromkeys(name for record in records for name in record.values))
    rows = []
    for record in records:
        row = {"trial": record.trial_id, "status": record.status}
        row.update({name: record.values.get(name) for name in names})
        row[objective] = record.objective
        row[SECONDS_METRIC] = record.train_seconds
        rows.append(row)
    return pd.DataFrame(rows, columns=["trial", "status", *names, objective, SECONDS_METRIC])


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def trials_markdown(table) -> str:
    """A Markdown table of `trials_table(...)` (numbers to 4 significant digits)."""
    header = [str(c) for c in table.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row in table.itertuples(index=False):
        lines.append("| " + " | ".join(_cell(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


def plot_objective(records: Sequence[TrialRecord], objective: str, direction: str,
                   path: str | os.PathLike) -> Path:
    """Objective of each completed trial (dots, in creation order) and the best so far (line); atomic PNG."""
    done = [(i, r.objective) for i, r in enumerate(records) if r.objective is not None]
    fig = new_figure(figsize=(6, 3.5))
    ax = fig.subplots()
    if done:
        xs, ys = zip(*done, strict=True)
        best = np.minimum.accumulate(ys) if direction == "min" else np.maximum.accumulate(ys)
        ax.scatter(xs, ys, s=18, label="trial")
        ax.step(xs, best, where="post", color="tab:red", label=f"best so far ({direction})")
        ax.legend(loc="best", fontsize=8)
    ax.set_xlabel("trial (creation order)")
    ax.set_ylabel(objective)
    ax.set_title(f"{objective} per trial")
    fig.tight_layout()
    return atomic_save(path, lambda tmp: fig.savefig(tmp, dpi=120))


def best_values(tuner: keras_tuner.Tuner, knobs: Sequence[str] | None = None) -> dict[str, Any]:
    """The best trial's hyperparameter values (only `knobs` when given; Hyperband's `tuner/...` dropped).

    Raises:
        RuntimeError: no trial completed.
    """
    trials = tuner.oracle.get_best_trials(1)
    if not trials or trials[0].score is None:
        raise RuntimeError("no trial completed; nothing to report as best")
    values = {k: v for k, v in trials[0].hyperparameters.values.items() if not k.startswith("tuner/")}
    return {k: v for k, v in values.items() if knobs is None or k in knobs}


def write_results(tuner: keras_tuner.Tuner, out_dir: str | os.PathLike, objective: str,
                  direction: str) -> dict[str, Path]:
    """Write `trials.csv`, `trials.md`, `objective.png` and `best.json` into `out_dir` (atomically).

    Returns:
        Name -> path of every file written (`best.json` only when a trial completed).
    """
    out = Path(out_dir)
    records = trial_records(tuner)
    table = trials_table(records, objective)
    paths = {
        "trials.csv": atomic_write_text(out / "trials.csv", table.to_csv(index=False)),
        "trials.md": atomic_write_text(out / "trials.md", trials_markdown(table)),
        "objective.png": plot_objective(records, objective, direction, out / "objective.png"),
    }
    completed = [r for r in records if r.objective is not None]
    if completed:
        pick = min if direction == "min" else max
        best = pick(completed, key=lambda r: r.objective)
        paths["best.json"] = atomic_write_json(out / "best.json", {
            "trial": best.trial_id, "objective": objective, "direction": direction, "value": best.objective,
            "values": best.values, "train_seconds": best.train_seconds,
            "trials": {"total": len(records), "completed": len(completed)}})
    return paths
