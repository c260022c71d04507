"""The urep hypermodels: `keras_tuner.HyperModel`s that build urep models and train them with urep's loop.

`TuningData` holds one train/validation split; `UrepHyperModel.build(hp)` clears the Keras session, seeds
and builds a fresh model, `fit(hp, model)` trains it with `urep.training.train_model` and returns the best
epoch's logged metrics plus `train_seconds`. Subclasses: `CDAEHyperModel` (U-Rep 1), `DilatedCNNHyperModel`
(U-Rep 2) and `HeadHyperModel` (a head on a trained source).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import keras
import keras_tuner
import numpy as np

from urep.losses import TASK_LOSSES
from urep.models.batchnorm import set_batchnorm_momentum
from urep.seed import seed_everything
from urep.training.config import TrainConfig, resolve_mode
from urep.tuning.space import (
    DEFAULT_HEAD_SPACE,
    PAPER_CDAE_SPACE,
    PAPER_DILATED_CNN_SPACE,
    declare,
    parse_search_space,
)

#: One logger name for the package (trial lines read "urep.tuning: trial {...}").
logger = logging.getLogger("urep.tuning")

#: Metrics reported to the oracle besides the logged ones (non-objective metrics default to "min").
SECONDS_METRIC = "train_seconds"


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
        self.loss = loss if loss is not None else TASK_LOSSES[self.KIND]
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

