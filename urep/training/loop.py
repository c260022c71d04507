"""The training engine: the epoch loop shared by every model, strategy and baseline.

`PhaseEngine` runs one *phase* (one model, or several task models trained together) epoch by epoch: the
phase's epoch function trains, the engine evaluates every task, keeps the history, reduces learning rates on
plateaus, stops early (phase-wide or task-wise), keeps the best weights, checkpoints (`PhaseState`), logs and
writes TensorBoard. `train_model` is the single-model entry point (source models, baselines, independent
heads). Rule semantics and how time is attributed to tasks: docs/design.md ("The epoch engine").
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from urep.io import atomic_save
from urep.seed import seed_everything
from urep.training.config import TrainConfig, make_optimizer, resolve_mode
from urep.training.distribute import check_precision, distribute_dataset, get_dist_strategy
from urep.training.run import (
    NonFiniteInputError,
    ProgressBar,
    Run,
    check_finite,
    format_epoch_line,
    progress_enabled,
    restore_snapshot,
    snapshot,
)
from urep.training.steps import Evaluator, TaskSteps, count_params, unique_variables
from urep.training.taskwise_stopping import TaskwiseEarlyStopping

logger = logging.getLogger(__name__)

#: A training or validation set: a dataset of `(x, y)` batches, or a function `epoch -> dataset` (0-based
#: epoch) so that the data order of every epoch is a function of (seed, epoch) and a resumed run sees the
#: same batches as an uninterrupted one. A plain dataset that reshuffles each iteration resumes with a
#: different order.
DataSource = tf.data.Dataset | Callable[[int], tf.data.Dataset]


def _without_autotune() -> tf.data.Options:
    options = tf.data.Options()
    options.autotune.enabled = False
    return options


def epoch_dataset(source: DataSource, epoch: int, autotune: bool = False) -> tf.data.Dataset:
    """The dataset of `source` for a 0-based epoch.

    Args:
        source: a dataset, or a function epoch -> dataset.
        epoch: 0-based epoch.
        autotune: leave tf.data's autotuning on. Off (the default, `TrainConfig.data_autotune`): the loops
            iterate a new dataset every epoch, and with autotuning on TensorFlow 2.21 frees each finished
            iterator only after its autotuning thread wakes, a wait of up to about 4 s with the CPU idle (a
            third of a 128x128 segmentation head's epoch on 2 cores; docs/benchmarks.md, "Epoch
            boundaries"). Without it, `AUTOTUNE` map stages run with one call per core and the values are
            the same.

    Raises:
        TypeError: `source` is neither a dataset nor a callable returning one.
    """
    dataset = source(epoch) if callable(source) and not isinstance(source, tf.data.Dataset) else source
    if not isinstance(dataset, tf.data.Dataset):
        raise TypeError(f"expected a tf.data.Dataset or a function epoch -> tf.data.Dataset, got "
                        f"{type(dataset).__name__}")
    return dataset if autotune else dataset.with_options(_without_autotune())


#: The message of `finite_checked`'s assertion, by which `raise_non_finite` recognises its failure.
_NON_FINITE_MESSAGE = "urep finite-input check: a training batch holds NaN or inf"


def finite_checked(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """`dataset` with every floating-point tensor of each element asserted finite inside tf.data.

    The check runs in the input pipeline, ahead of the step, instead of a separate check on the main thread
    that waits for the batch (2% of a 128x128 segmentation epoch on a 2-core CPU, docs/real_data.md section 20);
    the loops turn its failure into `NonFiniteInputError` with `raise_non_finite`.
    """
    def check(*element):
        element = element[0] if len(element) == 1 else element
        return tf.nest.map_structure(
            lambda t: tf.debugging.assert_all_finite(t, _NON_FINITE_MESSAGE) if t.dtype.is_floating else t, element)

    return dataset.map(check)  # sequential: in order


def raise_non_finite(error: tf.errors.InvalidArgumentError, task: str, epoch: int, step: int) -> None:
    """Raise `NonFiniteInputError(task, epoch, step)` when `error` is `finite_checked`'s failure, else `error`."""
    if _NON_FINITE_MESSAGE in str(error):
        raise NonFiniteInputError(task, epoch, step) from None
    raise error


def steps_per_epoch(dataset: tf.data.Dataset, n_train: int | None, batch_size: int,
                    cap: int | None) -> int | None:
    """Number of training batches in one epoch: the dataset's cardinality when known, else
    ceil(n_train / batch_size), capped by `cap`; None when unknowable."""
    cardinality = int(dataset.cardinality())
    if cardinality == tf.data.INFINITE_CARDINALITY:
        steps = None
    elif cardinality >= 0:
        steps = cardinality
    elif n_train:
        steps = math.ceil(n_train / batch_size)
    else:
        steps = None
    if cap is not None:
        steps = cap if steps is None else min(steps, cap)
    return steps


def resolve_loss(loss: str | Callable) -> Callable:
    """A loss object or function from a name ("mse", "bce_dice", "categorical_crossentropy", ...) or itself.

    Names are looked up in `urep.losses.get_loss` first (when that module exists), then `keras.losses.get`.

    Raises:
        ValueError: unknown name.
    """
    if callable(loss):
        return loss
    try:
        from urep.losses import get_loss
    except ImportError:
        get_loss = None
    if get_loss is not None:
        try:
            return get_loss(loss)
        except (ValueError, KeyError):
            pass
    try:
        return keras.losses.get(loss)
    except ValueError as error:
        raise ValueError(f"unknown loss {loss!r}: not in urep.losses nor keras.losses") from error


def learning_rate_of(optimizer) -> float:
    """The current learning rate of a Keras optimizer, as a Python float."""
    return float(keras.ops.convert_to_numpy(optimizer.learning_rate))


@dataclass
class TrainResult:
    """What one task's training produced (serialisable with `to_dict`).

    Attributes:
        name: task (or model) name.
        phase: the phase it trained in (e.g. "source", "independent/seg", "joint").
        strategy: "single", "independent", "alternating", "joint", ...
        history: per-epoch lists: "loss", "val_loss", "val_<metric>", "lr", "seconds", ...
        epochs_run: epochs completed.
        steps_run: optimizer steps taken on this task.
        seconds: wall clock attributed to this task (see the module docstring).
        phase_seconds: wall clock of the whole phase.
        best_epoch: 1-based epoch whose weights were kept (None when not tracked).
        best_value: monitored value at `best_epoch`.
        monitor: the monitored quantity.
        stop_reason: "max_epochs", "early_stopping" or "taskwise_stopping" (every task stopped).
        trainable_params: trainable parameters of the task model while training (heads only when frozen).
        total_params: all parameters of the task model.
        checkpoint: path of the best weights file (`TASK.weights.h5`), None without a run directory.
        learning_rate: the learning rate at the end.
        extra: strategy details (alternating schedule, loss weights, ...).
    """

    name: str
    phase: str
    strategy: str
    history: dict[str, list[float]]
    epochs_run: int
    steps_run: int
    seconds: float
    phase_seconds: float
    best_epoch: int | None
    best_value: float | None
    monitor: str
    stop_reason: str
    trainable_params: int
    total_params: int
    checkpoint: str | None
    learning_rate: float
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """Plain JSON-ready dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainResult:
        """Inverse of `to_dict`."""
        return cls(**data)


@dataclass
class PhaseTask:
    """One task inside a phase, as the engine sees it.

    Attributes:
        name: task name (also a folder name: letters, digits, `_`, `-`, `.`).
        model: the task model.
        evaluator: its compiled evaluation (`urep.training.steps.Evaluator` or `TaskSteps`).
        train: training data source.
        val: validation data source, or None.
        optimizer: the optimizer training it (the same object for every task of a joint phase).
        n_train: number of training examples (steps when the cardinality is unknown; alternating ratios).
        weight: weight of its loss in the combined monitored value.
        kind: "classification" | "segmentation" | "reconstruction" | "regression".
    """

    name: str
    model: keras.Model
    evaluator: Evaluator | TaskSteps
    train: DataSource
    val: DataSource | None
    optimizer: Any
    n_train: int | None = None
    weight: float = 1.0
    kind: str = "classification"


@dataclass
class EpochOutcome:
    """What one epoch of training returns to the engine (per task)."""

    losses: dict[str, float]
    steps: dict[str, int]
    seconds: dict[str, float]
    scalars: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass
class PhaseState:
    """What a phase has done so far; `state.json` holds it (`to_dict` / `from_dict`).

    Attributes:
        phase: the phase name.
        strategy: the fine-tuning strategy recorded in the results.
        tasks: task names, in order.
        n_variables: variables checkpointed (a resumed phase must have as many).
        epoch: epochs completed.
        finished: the phase ended and `results` hold its `TrainResult`s (as dicts).
        stop_reason: "max_epochs", "early_stopping" or "taskwise_stopping".
        history: per task, per-epoch lists ("loss", "val_loss", "lr", "seconds", ...).
        phase_history: per-epoch lists of the combined monitored value.
        seconds: wall clock attributed to each task.
        steps: optimizer steps taken on each task.
        phase_seconds: wall clock of the phase.
        best_epoch: 1-based epoch of the best combined monitored value (None before the first epoch).
        best_value: that value.
        best_checkpoint: the best epoch's checkpoint (relative to the phase folder), None without a run.
        task_best: per task, [1-based epoch, value] of its own best monitored value, or None.
        plateau: the learning-rate plateau controllers' states, keyed by optimizer index.
        early: the early-stopping controller's state.
        taskwise: the task-wise early stopping state, or None.
        results: the results, per task, once finished.
        checkpoint: the checkpoint this state was committed with (set by `PhaseCheckpoint.save`).
    """

    phase: str
    strategy: str
    tasks: list[str]
    n_variables: int
    epoch: int = 0
    finished: bool = False
    stop_reason: str = "max_epochs"
    history: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    phase_history: dict[str, list[float]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    steps: dict[str, int] = field(default_factory=dict)
    phase_seconds: float = 0.0
    best_epoch: int | None = None
    best_value: float | None = None
    best_checkpoint: str | None = None
    task_best: dict[str, list | None] = field(default_factory=dict)
    plateau: dict[str, dict] = field(default_factory=dict)
    early: dict | None = None
    taskwise: dict | None = None
    results: dict[str, dict] = field(default_factory=dict)
    checkpoint: str | None = None

    @classmethod
    def fresh(cls, phase: str, strategy: str, tasks: Sequence[str], n_variables: int) -> PhaseState:
        """The state of a phase that has not trained yet."""
        return cls(phase=phase, strategy=strategy, tasks=list(tasks), n_variables=n_variables,
                   history={t: {} for t in tasks}, seconds={t: 0.0 for t in tasks}, steps={t: 0 for t in tasks},
                   task_best={t: None for t in tasks})

    def to_dict(self) -> dict:
        """Plain JSON-ready dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> PhaseState:
        """Inverse of `to_dict`.

        Raises:
            ValueError: a key that is not a field.
        """
        unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"phase state of {data.get('phase')!r} has unknown keys {unknown}")
        return cls(**data)

    def identity(self) -> dict:
        """What must match for a checkpoint to be resumed: phase, strategy, tasks, number of variables."""
        return {"phase": self.phase, "strategy": self.strategy, "tasks": list(self.tasks),
                "n_variables": self.n_variables}


class _Watch:
    """Improvement tracking shared by the plateau and early-stopping rules."""

    def __init__(self, mode: str, min_delta: float) -> None:
        self.mode, self.min_delta = mode, min_delta
        self.best = math.inf if mode == "min" else -math.inf
        self.wait = 0

    def improved(self, value: float) -> bool:
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def observe(self, value: float) -> bool:
        """Record `value`; True when the wait reached the patience (checked by the caller)."""
        if self.improved(value):
            self.best, self.wait = value, 0
            return False
        self.wait += 1
        return True

    def state(self) -> dict:
        return {"best": self.best, "wait": self.wait}

    def load(self, state: dict) -> None:
        self.best, self.wait = float(state["best"]), int(state["wait"])


class ReduceLROnPlateau:
    """Multiply an optimizer's learning rate by `factor` after `patience` epochs without improvement."""

    def __init__(self, optimizer, factor: float, patience: int, min_lr: float, mode: str, min_delta: float) -> None:
        self.optimizer, self.factor, self.patience, self.min_lr = optimizer, factor, patience, min_lr
        self.watch = _Watch(mode, min_delta)

    def step(self, value: float) -> float | None:
        """Observe one epoch's value; returns the new learning rate when it was reduced."""
        if not self.watch.observe(value) or self.factor >= 1.0 or self.watch.wait < max(self.patience, 1):
            return None
        self.watch.wait = 0
        old = learning_rate_of(self.optimizer)
        if old <= self.min_lr:
            return None
        new = max(old * self.factor, self.min_lr)
        self.optimizer.learning_rate = new
        return new


class EarlyStopping:
    """Stop after `patience` epochs (at least one) without an improvement larger than `min_delta`."""

    def __init__(self, patience: int | None, mode: str, min_delta: float) -> None:
        self.patience = patience
        self.watch = _Watch(mode, min_delta)

    def step(self, value: float) -> bool:
        """Observe one epoch's value; True when training should stop."""
        not_improved = self.watch.observe(value)
        return self.patience is not None and not_improved and self.watch.wait >= max(self.patience, 1)


def _combine(values: dict[str, float], weights: dict[str, float], monitor: str) -> float:
    if len(values) == 1:
        return next(iter(values.values()))
    if monitor in ("loss", "val_loss"):
        return float(sum(weights[name] * value for name, value in values.items()))
    return float(np.mean(list(values.values())))


class PhaseEngine:
    """Runs the epochs of one phase and returns a `TrainResult` per task.

    Args:
        phase: phase name, unique within a run (checkpoint and TensorBoard folder).
        strategy_name: recorded in the results ("single", "independent", "alternating", "joint", ...).
        tasks: the phase's tasks.
        config: the training configuration.
        train_epoch: `(epoch (0-based), progress bar) -> EpochOutcome`, the strategy's epoch of training.
        run: where to checkpoint/log, or None (in memory only).
        extra_variables: more state to checkpoint (loss-weighting variables and their optimizer).
        extra_info: `() -> dict` stored in every result's `extra` (schedule, loss weights, ...).
        steps_hint: training steps per epoch for the progress bar, or a function computing it when training
            starts (None: unknown).
        taskwise: task-wise early stopping shared with `train_epoch` (which skips its stopped tasks), or None.

    Raises:
        ValueError: `config.monitor` needs validation data that a task lacks, or task names repeat.
    """

    def __init__(self, phase: str, strategy_name: str, tasks: Sequence[PhaseTask], config: TrainConfig,
                 train_epoch: Callable[[int, ProgressBar], EpochOutcome], run: Run | None = None,
                 extra_variables: Sequence = (), extra_info: Callable[[], dict] | None = None,
                 steps_hint: int | Callable[[], int | None] | None = None,
                 taskwise: TaskwiseEarlyStopping | None = None) -> None:
        names = [task.name for task in tasks]
        if len(set(names)) != len(names):
            raise ValueError(f"task names must be unique within a phase, got {names}")
        if config.monitor.startswith("val_"):
            missing = [task.name for task in tasks if task.val is None]
            if missing:
                raise ValueError(f"monitor {config.monitor!r} needs validation data, which tasks {missing} lack; "
                                 "give `val` data or set monitor='loss'")
        self.phase, self.strategy_name, self.tasks, self.config = phase, strategy_name, list(tasks), config
        self.train_epoch, self.run, self.steps_hint, self.taskwise = train_epoch, run, steps_hint, taskwise
        self.extra_info = extra_info or dict
        self.mode = resolve_mode(config.monitor, config.monitor_mode)
        self.model_variables = unique_variables(v for task in tasks for v in task.model.variables)
        optimizers = unique_variables(task.optimizer for task in tasks)
        self.optimizers = optimizers
        self.all_variables = unique_variables(
            [*self.model_variables, *(v for opt in optimizers for v in opt.variables), *extra_variables])
        combined = len(optimizers) == 1 and len(tasks) > 1
        self.plateaus = {
            id(opt): ReduceLROnPlateau(opt, config.reduce_lr_factor, config.reduce_lr_patience,
                                       config.min_learning_rate, self.mode, config.min_delta)
            for opt in optimizers}
        self._plateau_source = {id(task.optimizer): (None if combined else task.name) for task in tasks}
        self.early = EarlyStopping(config.early_stopping_patience, self.mode, config.min_delta)
        self.params = {task.name: (count_params(task.model.trainable_weights), count_params(task.model.weights))
                       for task in tasks}
        for task in tasks:
            check_precision(task.model, config.mixed_precision)

    # -- state -----------------------------------------------------------------------------------------------
    def _fresh_state(self) -> PhaseState:
        return PhaseState.fresh(self.phase, self.strategy_name, [t.name for t in self.tasks], len(self.all_variables))

    def _check_state(self, saved: dict) -> None:
        expected = self._fresh_state().identity()
        found = {key: saved.get(key) for key in expected}
        if found != expected:
            raise ValueError(f"cannot resume phase {self.phase!r}: its checkpoint was written for {found}, "
                             f"this run has {expected}")

    def _controller_state(self) -> tuple[dict, dict]:
        plateau = {str(i): p.watch.state() for i, p in enumerate(self.plateaus.values())}
        return plateau, self.early.watch.state()

    def _load_controllers(self, state: PhaseState) -> None:
        for i, plateau in enumerate(self.plateaus.values()):
            if str(i) in state.plateau:
                plateau.watch.load(state.plateau[str(i)])
        if state.early is not None:
            self.early.watch.load(state.early)
        if self.taskwise is not None and state.taskwise is not None:
            restored = TaskwiseEarlyStopping.from_state(state.taskwise)
            self.taskwise.train_errors, self.taskwise.val_errors = restored.train_errors, restored.val_errors
            self.taskwise.stopped_at = restored.stopped_at

    # -- main loop ---------------------------------------------------------------------------------------------
    def fit(self) -> dict[str, TrainResult]:
        """Train (or resume, or skip a finished phase of a resumed run) and return results per task.

        Raises:
            NonFiniteLossError: a loss became NaN/inf (the last checkpoint is left as it was).
        """
        config = self.config
        seed_everything(config.seed, config.deterministic)
        checkpoint = self.run.checkpoint(self.phase) if self.run is not None else None
        state = self._fresh_state()
        best_values: list[np.ndarray] | None = None
        if checkpoint is not None and self.run.resume:
            saved = checkpoint.load_state()
            if saved is not None:
                self._check_state(saved)
                checkpoint.restore(saved, self.all_variables)
                state = PhaseState.from_dict(saved)
                self._load_controllers(state)
                best_values = checkpoint.best_values(saved, self.model_variables)
                if state.finished:
                    logger.info("phase %s already finished in %s; restored its final weights", self.phase,
                                self.run.root)
                    return {name: TrainResult.from_dict(result) for name, result in state.results.items()}
                logger.info("phase %s resumes after epoch %d", self.phase, state.epoch)
        show_bar = progress_enabled(config.progress_bar)
        if callable(self.steps_hint):
            self.steps_hint = self.steps_hint()
        total = None if self.steps_hint is None else self.steps_hint * config.epochs
        bar = ProgressBar(total, f"{self.phase} ({config.epochs} epochs)", show_bar,
                          start=0 if self.steps_hint is None else self.steps_hint * state.epoch)
        try:
            for epoch in range(state.epoch, config.epochs):
                stop, best_values = self._one_epoch(epoch, state, best_values, checkpoint, bar)
                if stop:
                    if state.stop_reason == "max_epochs":
                        state.stop_reason = "early_stopping"
                    break
        finally:
            bar.close()
        return self._finish(state, best_values, checkpoint)

    def _one_epoch(self, epoch: int, state: PhaseState, best_values, checkpoint, bar: ProgressBar):
        config, names = self.config, [t.name for t in self.tasks]
        start = time.perf_counter()
        outcome = self.train_epoch(epoch, bar)
        logs: dict[str, dict[str, float]] = {}
        eval_seconds: dict[str, float] = {}
        for task in self.tasks:
            logs[task.name] = {"loss": outcome.losses[task.name]}
            eval_start = time.perf_counter()
            if task.val is not None:
                results = task.evaluator.evaluate(epoch_dataset(task.val, epoch, config.data_autotune),
                                                  config.max_val_steps)
                logs[task.name].update({f"val_{key}": value for key, value in results.items()})
            eval_seconds[task.name] = time.perf_counter() - eval_start
        values = {}
        for name in names:
            if config.monitor not in logs[name]:
                raise ValueError(f"monitor {config.monitor!r} is not among task {name!r}'s logs "
                                 f"{sorted(logs[name])}")
            values[name] = logs[name][config.monitor]
        weights = {t.name: t.weight for t in self.tasks}
        combined = _combine(values, weights, config.monitor)
        state.phase_history.setdefault(config.monitor, []).append(combined)
        if best_values is None or (combined < state.best_value if self.mode == "min"
                                   else combined > state.best_value):
            state.best_epoch, state.best_value = epoch + 1, combined
            best_values = snapshot(self.model_variables)
            if checkpoint is not None:
                state.best_checkpoint = checkpoint.save_best(epoch + 1, self.model_variables)
        for name in names:
            previous = state.task_best[name]
            if previous is None or (values[name] < previous[1] if self.mode == "min" else values[name] > previous[1]):
                state.task_best[name] = [epoch + 1, values[name]]
        for key, plateau in self.plateaus.items():
            source = self._plateau_source[key]
            new_lr = plateau.step(combined if source is None else values[source])
            if new_lr is not None:
                logger.info("%s epoch %d: learning rate reduced to %.3g (%s)", self.phase, epoch + 1, new_lr,
                            source or "combined")
        stop = self.early.step(combined)
        if self._taskwise_step(epoch, logs, state):
            stop = True
            state.stop_reason = "taskwise_stopping"
        learning_rates = {t.name: learning_rate_of(t.optimizer) for t in self.tasks}
        total = time.perf_counter() - start
        overhead = max(total - sum(outcome.seconds.values()) - sum(eval_seconds.values()), 0.0)
        entries = {}
        for task in self.tasks:
            name = task.name
            seconds = outcome.seconds[name] + eval_seconds[name] + overhead / len(self.tasks)
            state.seconds[name] += seconds
            state.steps[name] += outcome.steps[name]
            entries[name] = {**logs[name], "lr": learning_rates[name], "seconds": seconds,
                             **outcome.scalars.get(name, {})}
            for key, value in entries[name].items():
                state.history[name].setdefault(key, []).append(float(value))
        state.phase_seconds += total
        state.epoch = epoch + 1
        logger.info(format_epoch_line(self.phase, epoch + 1, config.epochs, total, logs, learning_rates))
        if self.run is not None and config.tensorboard:
            for name, entry in entries.items():
                self.run.log_scalars(self.phase, name, epoch + 1, entry)
        if checkpoint is not None and config.checkpoint_every_epoch:
            state.plateau, state.early = self._controller_state()
            checkpoint.save(epoch + 1, self.all_variables, state.to_dict())
        if stop:
            logger.info("%s: early stopping after epoch %d (best epoch %s, %s %.4g)", self.phase, epoch + 1,
                        state.best_epoch, config.monitor, state.best_value)
        return stop, best_values

    def _taskwise_step(self, epoch: int, logs: dict[str, dict[str, float]], state: PhaseState) -> bool:
        """Feed the epoch's losses to task-wise early stopping; True when every task is now stopped."""
        if self.taskwise is None:
            return False
        active = [t.name for t in self.tasks if self.taskwise.should_train(t.name)]
        newly = self.taskwise.update_all({n: logs[n]["loss"] for n in active}, {n: logs[n]["val_loss"] for n in active})
        for name in sorted(newly):
            logger.info("%s epoch %d: task-wise early stopping stops task %s (the others continue)", self.phase,
                        epoch + 1, name)
        state.taskwise = self.taskwise.state()
        return len(self.taskwise.stopped) == len(self.tasks)

    def _taskwise_info(self) -> dict:
        if self.taskwise is None:
            return {}
        record = self.taskwise.state()
        return {"taskwise_stopping": {key: record[key] for key in ("k", "epsilon", "importance", "main",
                                                                   "stopped_at")}}

    def _finish(self, state: PhaseState, best_values, checkpoint) -> dict[str, TrainResult]:
        config = self.config
        if config.restore_best_weights and best_values is not None:
            restore_snapshot(self.model_variables, best_values)
        info = {**self.extra_info(), **self._taskwise_info()}
        results = {}
        for task in self.tasks:
            path = None
            if checkpoint is not None:
                path = str(atomic_save(checkpoint.directory / f"{task.name}.weights.h5", task.model.save_weights))
            trainable, total = self.params[task.name]
            task_best = state.task_best[task.name]
            results[task.name] = TrainResult(
                name=task.name, phase=self.phase, strategy=self.strategy_name,
                history=state.history[task.name], epochs_run=state.epoch, steps_run=state.steps[task.name],
                seconds=state.seconds[task.name], phase_seconds=state.phase_seconds,
                best_epoch=state.best_epoch, best_value=state.best_value, monitor=config.monitor,
                stop_reason=state.stop_reason, trainable_params=trainable, total_params=total,
                checkpoint=path, learning_rate=learning_rate_of(task.optimizer),
                extra={**info, "task_best_epoch": task_best[0] if task_best else None,
                       "phase_history": state.phase_history,
                       **({"stopped_epoch": self.taskwise.stopped_at.get(task.name)} if self.taskwise else {})},
            )
        if checkpoint is not None:
            state.plateau, state.early = self._controller_state()
            state.finished, state.results = True, {name: result.to_dict() for name, result in results.items()}
            checkpoint.save(state.epoch, self.all_variables, state.to_dict(), final=True)
        return results


def single_task_epoch(task: PhaseTask, steps: TaskSteps, config: TrainConfig, dist_strategy: tf.distribute.Strategy
                      ) -> Callable[[int, ProgressBar], EpochOutcome]:
    """The epoch function of a phase with one task: every batch of its data (capped), one step each."""

    def run_epoch(epoch: int, bar: ProgressBar) -> EpochOutcome:
        dataset = epoch_dataset(task.train, epoch, config.data_autotune)
        if config.check_finite:
            dataset = finite_checked(dataset)
        start = time.perf_counter()
        total, count = 0.0, 0
        try:
            for x, y in distribute_dataset(dataset, dist_strategy):
                count += 1
                loss = float(steps.train_step(x, y))
                if config.check_finite:
                    check_finite(loss, task.name, epoch + 1, count)
                total += loss
                bar.update(1, loss=total / count)
                if config.max_steps_per_epoch is not None and count >= config.max_steps_per_epoch:
                    break
        except tf.errors.InvalidArgumentError as error:  # raised while fetching batch count + 1
            raise_non_finite(error, task.name, epoch + 1, count + 1)
        if count == 0:
            raise ValueError(f"task {task.name!r}: the training dataset of epoch {epoch + 1} gave no batches")
        return EpochOutcome({task.name: total / count}, {task.name: count},
                            {task.name: time.perf_counter() - start})

    return run_epoch


def model_engine(model: keras.Model, loss: str | Callable, train: DataSource, val: DataSource | None,
                config: TrainConfig, *, name: str = "model", kind: str = "classification", metrics: Sequence = (),
                optimizer=None, n_train: int | None = None, run: Run | None = None, phase: str | None = None,
                dist_strategy: tf.distribute.Strategy | None = None, strategy_name: str = "single",
                variables: Sequence | None = None) -> PhaseEngine:
    """The phase that trains one model, built and ready to `fit()` (see `train_model`).

    Args:
        model: a Keras model, built under `dist_strategy.scope()` when one is given.
        loss: a loss name (see `resolve_loss`), object or function.
        train: training batches `(x, y)` (or `epoch -> dataset`).
        val: validation batches (or `epoch -> dataset`), or None (then monitor "loss").
        config: the training configuration.
        name: task/model name (results, checkpoints, logs).
        kind: "classification" | "segmentation" | "reconstruction" | "regression" (recorded).
        metrics: Keras metrics evaluated on the validation data each epoch (`val_<name>` in the history).
        optimizer: an `OptimizerConfig`, a Keras optimizer, or None for `config.optimizer`.
        n_train: number of training examples (for step counts when the dataset cardinality is unknown).
        run: the run directory manager, or None.
        phase: phase name (default `name`).
        dist_strategy: a `tf.distribute.Strategy` (default: the current one).
        strategy_name: recorded in the result.
        variables: the variables to train (default: the model's trainable variables).

    Returns:
        The `PhaseEngine` (its `train_epoch(epoch, bar)` runs one epoch of training).
    """
    dist_strategy = get_dist_strategy(dist_strategy)
    if optimizer is None or not isinstance(optimizer, keras.optimizers.Optimizer):
        with dist_strategy.scope():
            optimizer = make_optimizer(optimizer if optimizer is not None else config.optimizer,
                                       mixed_float16=config.mixed_precision == "mixed_float16")
    steps = TaskSteps(name, model, resolve_loss(loss), optimizer, dist_strategy, config.jit_compile, variables, metrics)
    task = PhaseTask(name=name, model=model, evaluator=steps, train=train, val=val, optimizer=optimizer,
                     n_train=n_train, kind=kind)
    epoch_fn = single_task_epoch(task, steps, config, dist_strategy)
    return PhaseEngine(phase or name, strategy_name, [task], config, epoch_fn,
                       run=run, steps_hint=lambda: steps_per_epoch(epoch_dataset(train, 0, config.data_autotune), n_train,
                                                                   config.batch_size, config.max_steps_per_epoch))


def train_model(model: keras.Model, loss: str | Callable, train: DataSource, val: DataSource | None,
                config: TrainConfig, *, name: str = "model", **options) -> TrainResult:
    """Train one model with the custom loop (source models, baselines, independent heads).

    Takes the arguments of `model_engine` (`kind`, `metrics`, `optimizer`, `n_train`, `run`, `phase`,
    `strategy`, `strategy_name`, `variables`) and returns the model's `TrainResult`.
    """
    return model_engine(model, loss, train, val, config, name=name, **options).fit()[name]
