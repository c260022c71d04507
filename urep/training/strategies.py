"""Fine-tuning strategies over task models that share one encoder: independent, alternating, joint.

UMS-Rep journal, Sections 2.3 and 3.2.3: `independent` freezes the shared encoder and trains each head alone,
`alternating` trains task i for n_i batches (shared and head parameters) and then the next task, `joint`
minimises `sum_i w_i L_i` with one optimizer. `finetune(model, tasks, name, config, run)` dispatches through
the one registry `STRATEGIES` (name -> "module:function", imported on first use); see docs/design.md.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import logging
import math
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from urep.training.config import OptimizerConfig, TrainConfig, make_optimizer
from urep.training.distribute import distribute_dataset, get_dist_strategy
from urep.training.features import DEFAULT_MAX_BYTES, head_on_features
from urep.training.loop import (
    DataSource,
    EpochOutcome,
    PhaseEngine,
    PhaseTask,
    TrainResult,
    epoch_dataset,
    finite_checked,
    raise_non_finite,
    resolve_loss,
    steps_per_epoch,
    train_model,
)
from urep.training.loss_weighting import FixedWeights, LossWeighting, make_loss_weighting
from urep.training.run import ProgressBar, Run, check_finite
from urep.training.steps import Evaluator, JointStep, TaskSteps, count_params, unique_variables
from urep.training.taskwise_stopping import TaskwiseEarlyStopping

logger = logging.getLogger(__name__)

KINDS = ("classification", "segmentation", "reconstruction", "regression")
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass
class Task:
    """One target task: a model sharing the encoder, its loss and its data.

    Attributes:
        name: task name (letters, digits, `_`, `-`, `.`; used for folders and logs).
        kind: "classification" | "segmentation" | "reconstruction" | "regression".
        model: the task model (encoder input -> head output, encoder layers shared); None to take it from the
            assembly given to `finetune` (`assembly.task_models[name]`).
        loss: a loss name ("categorical_crossentropy", "bce_dice", ...), object or function.
        train: training batches `(x, y)`: a `tf.data.Dataset` or a function `epoch -> dataset`.
        val: validation batches (same forms), or None.
        n_train: number of training examples (alternating ratios; step counts of datasets of unknown size).
        optimizer: this task's optimizer (independent, alternating); None uses the training config's.
        weight: weight of the task's loss in the joint loss and in the combined monitored value.
        metrics: Keras metrics evaluated on `val` each epoch.
    """

    name: str
    kind: str
    model: keras.Model | None
    loss: str | Callable
    train: DataSource
    val: DataSource | None = None
    n_train: int | None = None
    optimizer: OptimizerConfig | dict | str | None = None
    weight: float = 1.0
    metrics: Sequence = ()

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ValueError(f"task name must match {_NAME.pattern}, got {self.name!r}")
        if self.kind not in KINDS:
            raise ValueError(f"task {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
        if self.n_train is not None and (isinstance(self.n_train, bool) or not isinstance(self.n_train, int)
                                         or self.n_train < 1):
            raise ValueError(f"task {self.name!r}: n_train must be a positive integer or None, got "
                             f"{self.n_train!r}")
        if isinstance(self.weight, bool) or not isinstance(self.weight, (int, float)) \
                or not math.isfinite(self.weight) or self.weight < 0:
            raise ValueError(f"task {self.name!r}: weight must be a finite number >= 0, got {self.weight!r}")
        if self.optimizer is not None:
            self.optimizer = OptimizerConfig.from_dict(self.optimizer)
        self.metrics = list(self.metrics)


# -- resolving models and the shared encoder ---------------------------------------------------------------
def resolve_models(assembly, tasks: Sequence[Task]) -> list[keras.Model]:
    """The model of every task: `Task.model`, else from the assembly (a `MultiTaskModel`, a mapping name ->
    model, or a sequence aligned with `tasks`).

    Raises:
        ValueError: a task without a model that the assembly cannot provide.
    """
    models = []
    for index, task in enumerate(tasks):
        if task.model is not None:
            models.append(task.model)
        elif hasattr(assembly, "task_models") and task.name in assembly.task_models:
            models.append(assembly.task_models[task.name])
        elif isinstance(assembly, Mapping) and task.name in assembly:
            models.append(assembly[task.name])
        elif isinstance(assembly, (list, tuple)) and index < len(assembly):
            models.append(assembly[index])
        else:
            raise ValueError(f"task {task.name!r} has no model and the assembly {type(assembly).__name__} "
                             "does not provide one")
    return models


def shared_variables(assembly, models: Sequence[keras.Model], given: Sequence | None = None) -> list:
    """The shared encoder's variables: `given`, else the assembly's `shared_variables`, else every variable
    that belongs to two or more task models (in the first model's order)."""
    if given is not None:
        return list(given)
    if hasattr(assembly, "shared_variables"):
        return list(assembly.shared_variables)
    owners: dict[int, int] = {}
    for model in models:
        for variable in {id(v): v for v in model.weights}.values():
            owners[id(variable)] = owners.get(id(variable), 0) + 1
    ordered = {id(v): v for model in models for v in model.weights}
    return [v for key, v in ordered.items() if owners[key] > 1]


def _leaf_layers(layer) -> Iterator:
    sublayers = getattr(layer, "layers", None)
    if sublayers:
        for sub in sublayers:
            yield from _leaf_layers(sub)
    else:
        yield layer


@contextlib.contextmanager
def frozen_shared(assembly, models: Sequence[keras.Model], shared: Sequence) -> Iterator[None]:
    """Freeze the shared encoder while inside: the assembly's `freeze_shared()` when it has one, else every
    layer whose weights are all shared gets `trainable = False`; the previous state is put back after."""
    if hasattr(assembly, "freeze_shared") and hasattr(assembly, "unfreeze_shared"):
        was_frozen = getattr(assembly, "shared_frozen", False)
        assembly.freeze_shared()
        try:
            yield
        finally:
            if not was_frozen:
                assembly.unfreeze_shared()
        return
    shared_ids = {id(v) for v in shared}
    layers = {id(layer): layer for model in models for layer in _leaf_layers(model)
              if layer.weights and all(id(w) in shared_ids for w in layer.weights)}
    previous = {key: layer.trainable for key, layer in layers.items()}
    for layer in layers.values():
        layer.trainable = False
    try:
        yield
    finally:
        for key, layer in layers.items():
            layer.trainable = previous[key]


def last_shared_kernel(models: Sequence[keras.Model], shared: Sequence) -> list:
    """GradNorm's W: the kernel of the last shared layer (the last shared trainable variable of rank >= 2
    in the first task model's order); empty when nothing is shared."""
    shared_ids = {id(v) for v in shared}
    kernels = [v for v in models[0].trainable_variables if id(v) in shared_ids and len(v.shape) >= 2]
    return kernels[-1:]


def _make_optimizer(spec, config: TrainConfig, dist_strategy: tf.distribute.Strategy):
    with dist_strategy.scope():
        return make_optimizer(spec if spec is not None else config.optimizer,
                              mixed_float16=config.mixed_precision == "mixed_float16")


class _Batches:
    """Endless batches of one task within an epoch: its data again from the start when it runs out.

    With `check_finite`, every batch is checked for NaN/inf in the input pipeline (`finite_checked`) and
    `next` raises `NonFiniteInputError` for the one that fails.
    """

    def __init__(self, name: str, dataset: tf.data.Dataset, dist_strategy: tf.distribute.Strategy,
                 check_finite: bool = False) -> None:
        self.name, self.dist_strategy = name, dist_strategy
        self.dataset = finite_checked(dataset) if check_finite else dataset
        self._iterator = iter(distribute_dataset(self.dataset, dist_strategy))

    def next(self, epoch: int, step: int):
        """The next batch; `epoch` and `step` (1-based) name it in a `NonFiniteInputError`."""
        try:
            try:
                return next(self._iterator)
            except StopIteration:
                self._iterator = iter(distribute_dataset(self.dataset, self.dist_strategy))
                try:
                    return next(self._iterator)
                except StopIteration:
                    raise ValueError(f"task {self.name!r}: the training dataset gave no batches") from None
        except tf.errors.InvalidArgumentError as error:
            raise_non_finite(error, self.name, epoch, step)


def _epoch_steps(task: Task, dataset: tf.data.Dataset, config: TrainConfig) -> int:
    steps = steps_per_epoch(dataset, task.n_train, config.batch_size, config.max_steps_per_epoch)
    if steps is None:
        raise ValueError(f"task {task.name!r}: the number of batches per epoch is unknown; give n_train or a "
                         "dataset of known cardinality")
    if steps == 0:
        raise ValueError(f"task {task.name!r}: the training dataset is empty")
    return steps


def taskwise_stopper(tasks: Sequence[Task], config: TrainConfig) -> TaskwiseEarlyStopping | None:
    """The task-wise early stopping of a multi-task phase from `config.taskwise_stopping`, or None when off.

    The importance `lambda_a` of a task defaults to its `Task.weight`.

    Raises:
        ValueError: a task without validation data, `monitor="loss"` (a stopped task has no training loss),
            a zero task weight without an explicit importance, or settings naming unknown tasks.
    """
    settings = config.taskwise
    if settings is None:
        return None
    missing = [task.name for task in tasks if task.val is None]
    if missing:
        raise ValueError(f"taskwise_stopping compares training and validation losses; tasks {missing} have no "
                         "validation data")
    if config.monitor == "loss":
        raise ValueError("taskwise_stopping needs a validation monitor (a stopped task has no training loss); "
                         "got monitor='loss'")
    importance = settings["importance"]
    if importance is None:
        zero = [task.name for task in tasks if task.weight <= 0]
        if zero:
            raise ValueError(f"taskwise_stopping uses the task weights as importance, and tasks {zero} have weight "
                             "0; give taskwise_stopping.importance")
        importance = {task.name: task.weight for task in tasks}
    return TaskwiseEarlyStopping([task.name for task in tasks], main=settings["main"], k=settings["k"],
                                 epsilon=settings["epsilon"], importance=importance)


def _active(tasks: Sequence[Task], stopper: TaskwiseEarlyStopping | None) -> list[Task]:
    return [task for task in tasks if stopper is None or stopper.should_train(task.name)]


# -- independent ---------------------------------------------------------------------------------------------
def independent(assembly, tasks: Sequence[Task], config: TrainConfig, run: Run | None = None, *,
                dist_strategy: tf.distribute.Strategy | None = None, phase: str = "independent",
                shared: Sequence | None = None, precompute_features: bool = True,
                feature_max_bytes: int = DEFAULT_MAX_BYTES) -> dict[str, TrainResult]:
    """Frozen shared encoder; each head trained alone with its own loss, optimizer and data.

    With `precompute_features` (default), a head whose data is `urep.data.batches.ArrayBatches` is trained on
    the frozen encoder's features computed once, the same computation without the encoder's forward pass at
    every step (see `urep.training.features` for when it applies and what differs in the bookkeeping).

    Args:
        assembly: a `MultiTaskModel`, a mapping or sequence of task models, or None (`Task.model`).
        tasks: the tasks.
        config: training configuration (each task's `optimizer` overrides `config.optimizer`).
        run: run directory manager, or None.
        dist_strategy: a `tf.distribute.Strategy` (default: the current one).
        phase: phase-name prefix (`<phase>/<task>` per task).
        shared: the shared variables (default: from the assembly, or the variables in several task models).
        precompute_features: train heads on precomputed encoder features where that is exact.
        feature_max_bytes: the most memory one task's features may take.

    Returns:
        Task name -> `TrainResult` (`trainable_params` counts the head only).
    """
    dist_strategy = get_dist_strategy(dist_strategy)
    models = resolve_models(assembly, tasks)
    shared_vars = shared_variables(assembly, models, shared)
    if not shared_vars:
        logger.info("independent: the tasks share no variables; each model is trained whole")
    results = {}
    with frozen_shared(assembly, models, shared_vars):
        for task, model in zip(tasks, models, strict=True):
            on_features = (head_on_features(model, task.train, task.val, feature_max_bytes)
                           if precompute_features and shared_vars else None)
            trained, train, val = (model, task.train, task.val) if on_features is None else \
                (on_features.head, on_features.train, on_features.val)
            result = train_model(
                trained, task.loss, train, val, config, name=task.name, kind=task.kind,
                metrics=task.metrics, optimizer=task.optimizer, n_train=task.n_train, run=run,
                phase=f"{phase}/{task.name}", dist_strategy=dist_strategy, strategy_name="independent")
            if on_features is not None:
                result = dataclasses.replace(
                    result, seconds=result.seconds + on_features.seconds,
                    phase_seconds=result.phase_seconds + on_features.seconds,
                    total_params=count_params(unique_variables(model.weights)),
                    extra={**result.extra, "feature_seconds": on_features.seconds})
            results[task.name] = result
    return results


# -- alternating ---------------------------------------------------------------------------------------------
def alternating_ratio(tasks: Sequence[Task], batches_per_task: Mapping[str, int] | None = None,
                      batches_per_switch: int = 1) -> dict[str, int]:
    """Batches n_i of each task before switching to the next.

    Args:
        tasks: the tasks (their `n_train` gives the default, size-proportional ratio).
        batches_per_task: explicit n_i for every task (overrides the default).
        batches_per_switch: multiplier of the size-proportional ratio (n_i of the smallest task).

    Raises:
        ValueError: missing/invalid counts or a task without `n_train` for the default ratio.
    """
    names = [task.name for task in tasks]
    if batches_per_task is not None:
        missing = sorted(set(names) - set(batches_per_task))
        unknown = sorted(set(batches_per_task) - set(names))
        if missing or unknown:
            raise ValueError(f"batches_per_task must name exactly the tasks {names}; missing {missing}, "
                             f"unknown {unknown}")
        bad = {k: v for k, v in batches_per_task.items() if isinstance(v, bool) or not isinstance(v, int) or v < 1}
        if bad:
            raise ValueError(f"batches_per_task values must be integers >= 1, got {bad}")
        return {name: int(batches_per_task[name]) for name in names}
    if isinstance(batches_per_switch, bool) or not isinstance(batches_per_switch, int) or batches_per_switch < 1:
        raise ValueError(f"batches_per_switch must be an integer >= 1, got {batches_per_switch!r}")
    sizes = {task.name: task.n_train for task in tasks}
    missing = [name for name, size in sizes.items() if size is None]
    if missing:
        raise ValueError(f"the default alternating ratio is proportional to n_train, which tasks {missing} lack; "
                         "give n_train or batches_per_task")
    smallest = min(sizes.values())
    return {name: batches_per_switch * max(1, round(size / smallest)) for name, size in sizes.items()}


def alternating(assembly, tasks: Sequence[Task], config: TrainConfig, run: Run | None = None,
                **options) -> dict[str, TrainResult]:
    """Train task i for n_i batches (shared and head parameters), then switch; see the module docstring.

    Takes the arguments of `alternating_engine` and returns task name -> `TrainResult`; `extra["schedule"]`
    holds n_i, the order, the rounds and the batches of each task per epoch, and the first epoch's sequence
    of (task, batches) segments.
    """
    return alternating_engine(assembly, tasks, config, run, **options).fit()


def alternating_engine(assembly, tasks: Sequence[Task], config: TrainConfig, run: Run | None = None, *,
                       dist_strategy: tf.distribute.Strategy | None = None, phase: str = "alternating",
                       batches_per_task: Mapping[str, int] | None = None, batches_per_switch: int = 1
                       ) -> PhaseEngine:
    """The alternating strategy's phase, built and ready to `fit()` (its `train_epoch` runs one epoch).

    Args:
        assembly: a `MultiTaskModel`, a mapping or sequence of task models, or None (`Task.model`).
        tasks: the tasks, visited in this order.
        config: training configuration (each task's `optimizer` overrides `config.optimizer`).
        run: run directory manager, or None.
        dist_strategy: a `tf.distribute.Strategy` (default: the current one).
        phase: phase name.
        batches_per_task: explicit n_i per task.
        batches_per_switch: multiplier of the size-proportional default.

    Returns:
        The `PhaseEngine`.
    """
    dist_strategy = get_dist_strategy(dist_strategy)
    models = resolve_models(assembly, tasks)
    ratio = alternating_ratio(tasks, batches_per_task, batches_per_switch)
    units: list[tuple[Task, TaskSteps]] = []
    phase_tasks = []
    for task, model in zip(tasks, models, strict=True):
        optimizer = _make_optimizer(task.optimizer, config, dist_strategy)
        steps = TaskSteps(task.name, model, resolve_loss(task.loss), optimizer, dist_strategy, config.jit_compile,
                          metrics=task.metrics)
        units.append((task, steps))
        phase_tasks.append(PhaseTask(task.name, model, steps, task.train, task.val, optimizer, task.n_train,
                                     task.weight, task.kind))
    schedule: dict = {"batches_per_switch": ratio, "order": [t.name for t in tasks], "rounds_per_epoch": [],
                      "batches_per_epoch": [], "first_epoch_segments": []}
    stopper = taskwise_stopper(tasks, config)

    def run_epoch(epoch: int, bar: ProgressBar) -> EpochOutcome:
        active = _active(tasks, stopper)
        datasets = {task.name: epoch_dataset(task.train, epoch, config.data_autotune) for task in active}
        needed = {task.name: _epoch_steps(task, datasets[task.name], config) for task in active}
        rounds = max((math.ceil(needed[name] / ratio[name]) for name in needed), default=0)
        batches = {name: _Batches(name, datasets[name], dist_strategy, config.check_finite) for name in datasets}
        names = [task.name for task in tasks]
        sums = dict.fromkeys(names, 0.0)
        counts = dict.fromkeys(names, 0)
        seconds = dict.fromkeys(names, 0.0)
        segments = []
        step = 0
        for _ in range(rounds):
            for task, steps in units:
                if task.name not in needed:
                    continue
                start = time.perf_counter()
                for _ in range(ratio[task.name]):
                    step += 1
                    x, y = batches[task.name].next(epoch + 1, step)
                    counts[task.name] += 1
                    loss = float(steps.train_step(x, y))
                    if config.check_finite:
                        check_finite(loss, task.name, epoch + 1, step)
                    sums[task.name] += loss
                    bar.update(1, **{task.name: sums[task.name] / counts[task.name]})
                seconds[task.name] += time.perf_counter() - start
                segments.append([task.name, ratio[task.name]])
        schedule["rounds_per_epoch"].append(rounds)
        schedule["batches_per_epoch"].append(dict(counts))
        if not schedule["first_epoch_segments"]:
            schedule["first_epoch_segments"] = segments
        return EpochOutcome({n: sums[n] / counts[n] if counts[n] else math.nan for n in sums}, counts, seconds)

    def hint() -> int:
        return sum(ratio.values()) * max(
            math.ceil(_epoch_steps(t, epoch_dataset(t.train, 0, config.data_autotune), config) / ratio[t.name])
            for t in tasks)

    return PhaseEngine(phase, "alternating", phase_tasks, config, run_epoch, run=run,
                       extra_info=lambda: {"schedule": schedule}, steps_hint=hint, taskwise=stopper)


# -- joint ---------------------------------------------------------------------------------------------------
def joint(assembly, tasks: Sequence[Task], config: TrainConfig, run: Run | None = None,
          **options) -> dict[str, TrainResult]:
    """One loss sum_i w_i L_i, whole network updated per step with one batch of every task.

    Takes the arguments of `joint_engine` and returns task name -> `TrainResult`; `history["loss"]` is the
    task's unweighted loss, `history["loss_weight"]` its weight, `history["joint_loss"]` the combined loss;
    `extra["loss_weighting"]` the method and `extra["final_loss_weights"]` the weights at the end.
    """
    return joint_engine(assembly, tasks, config, run, **options).fit()


def joint_engine(assembly, tasks: Sequence[Task], config: TrainConfig, run: Run | None = None, *,
                 dist_strategy: tf.distribute.Strategy | None = None, phase: str = "joint",
                 loss_weighting: str | LossWeighting | Mapping[str, float] | None = None,
                 loss_weighting_options: Mapping | None = None,
                 optimizer: OptimizerConfig | dict | str | None = None, shared: Sequence | None = None,
                 gradnorm_variables: Sequence | None = None) -> PhaseEngine:
    """The joint strategy's phase, built and ready to `fit()` (its `train_epoch` runs one epoch).

    Args:
        assembly: a `MultiTaskModel`, a mapping or sequence of task models, or None (`Task.model`).
        tasks: the tasks.
        config: training configuration.
        run: run directory manager, or None.
        dist_strategy: a `tf.distribute.Strategy` (default: the current one).
        phase: phase name.
        loss_weighting: None or "fixed" (the tasks' `weight`), a mapping task -> weight, "uncertainty",
            "gradnorm", or a `LossWeighting`.
        loss_weighting_options: keyword arguments of the weighting class (e.g. `{"alpha": 1.5}`).
        optimizer: the optimizer of the whole network (default `config.optimizer`; the tasks' own optimizers
            are not used by this strategy).
        shared: the shared variables (default: from the assembly or the variables in several task models).
        gradnorm_variables: GradNorm's W (default: the last shared layer's kernel).

    Returns:
        The `PhaseEngine`.
    """
    dist_strategy = get_dist_strategy(dist_strategy)
    models = resolve_models(assembly, tasks)
    names = [task.name for task in tasks]
    weighting = make_loss_weighting(loss_weighting, **dict(loss_weighting_options or {}))
    stopper = taskwise_stopper(tasks, config)
    if stopper is not None and not isinstance(weighting, FixedWeights):
        raise ValueError(f"taskwise_stopping in the joint strategy needs fixed loss weights, got loss_weighting "
                         f"{weighting.name!r}")
    layer_vars = list(gradnorm_variables) if gradnorm_variables is not None else last_shared_kernel(
        models, shared_variables(assembly, models, shared))
    weighting.build(names, [t.kind for t in tasks], [t.weight for t in tasks], dist_strategy, layer_vars)
    network_optimizer = _make_optimizer(optimizer, config, dist_strategy)
    losses = [resolve_loss(task.loss) for task in tasks]
    step_fn = JointStep(names, models, losses, weighting, network_optimizer, dist_strategy, config.jit_compile)
    phase_tasks = [PhaseTask(task.name, model, Evaluator(task.name, model, loss, dist_strategy, config.jit_compile,
                                                         task.metrics),
                             task.train, task.val, network_optimizer, task.n_train, task.weight, task.kind)
                   for task, model, loss in zip(tasks, models, losses, strict=True)]

    def run_epoch(epoch: int, bar: ProgressBar) -> EpochOutcome:
        trained = {task.name for task in _active(tasks, stopper)}
        active = tuple(name in trained for name in names)
        datasets = {task.name: epoch_dataset(task.train, epoch, config.data_autotune) for task in tasks
                    if task.name in trained}
        n_steps = max((_epoch_steps(task, datasets[task.name], config) for task in tasks if task.name in trained),
                      default=0)
        batches = [_Batches(name, datasets[name], dist_strategy, config.check_finite) if name in trained else None
                   for name in names]
        sums = np.zeros(len(names))
        total_sum = 0.0
        start = time.perf_counter()
        for step in range(1, n_steps + 1):
            step_batches = [b.next(epoch + 1, step) if b is not None else None for b in batches]
            total, task_losses = step_fn.train_step(step_batches, None if all(active) else active)
            task_losses = task_losses.numpy()
            total = float(total)
            if config.check_finite:
                for name, value in zip(names, task_losses, strict=True):
                    if name in trained:
                        check_finite(float(value), name, epoch + 1, step)
                check_finite(total, "joint", epoch + 1, step)
            sums += task_losses
            total_sum += total
            bar.update(1, joint=total_sum / step)
        share = (time.perf_counter() - start) / max(len(trained), 1)
        weights = weighting.weights()
        joint_loss = total_sum / n_steps if n_steps else math.nan
        scalars = {name: {"loss_weight": weights[name], "joint_loss": joint_loss} for name in names}
        return EpochOutcome({name: float(sums[i] / n_steps) if name in trained and n_steps else math.nan
                             for i, name in enumerate(names)},
                            {name: n_steps if name in trained else 0 for name in names},
                            {name: share if name in trained else 0.0 for name in names}, scalars)

    def hint() -> int:
        return max(_epoch_steps(t, epoch_dataset(t.train, 0, config.data_autotune), config) for t in tasks)

    return PhaseEngine(phase, "joint", phase_tasks, config, run_epoch, run=run,
                       extra_variables=weighting.variables,
                       extra_info=lambda: {"loss_weighting": weighting.config(),
                                           "final_loss_weights": weighting.weights()},
                       steps_hint=hint, taskwise=stopper)


#: The one strategy registry: name -> `"module:function"` of a callable `(assembly, tasks, config, run=None,
#: **options) -> dict[str, TrainResult]`. Every entry, built-in or plugged in, is imported on first use by
#: `resolve_strategy`, so a strategy's module may import this one without a cycle.
STRATEGIES: dict[str, str] = {
    "independent": "urep.training.strategies:independent",
    "alternating": "urep.training.strategies:alternating",
    "joint": "urep.training.strategies:joint",
    "cross_stitch": "urep.training.cross_stitch:cross_stitch",
    "multimix": "urep.training.multimix:multimix_strategy",
}


def register_strategy(name: str, target: str) -> None:
    """Plug in a strategy: `finetune(..., name, ...)` will call `target`, imported on first use.

    Args:
        name: the strategy's name.
        target: `"package.module:function"`.

    Raises:
        ValueError: `target` is not of the form `"module:function"`, or `name` is registered with another
            target.
    """
    module_name, _, function_name = target.partition(":")
    if not (module_name and function_name.isidentifier()):
        raise ValueError(f"strategy target must be 'module:function', got {target!r}")
    if STRATEGIES.get(name, target) != target:
        raise ValueError(f"strategy {name!r} is already registered as {STRATEGIES[name]!r}")
    STRATEGIES[name] = target


def strategy_names() -> list[str]:
    """Every strategy name `finetune` accepts."""
    return sorted(STRATEGIES)


def resolve_strategy(name: str) -> Callable[..., dict[str, TrainResult]]:
    """The callable of strategy `name`, its module imported on first use.

    Raises:
        ValueError: unknown name (the message lists `strategy_names()`).
    """
    if name not in STRATEGIES:
        raise ValueError(f"unknown fine-tuning strategy {name!r}; registered: {strategy_names()}")
    module_name, _, function_name = STRATEGIES[name].partition(":")
    return getattr(importlib.import_module(module_name), function_name)


def finetune(assembly_or_models, tasks: Sequence[Task], strategy: str, config: TrainConfig,
             run: Run | None = None, **options) -> dict[str, TrainResult]:
    """Fine-tune task heads on a shared encoder with a registered strategy.

    Args:
        assembly_or_models: a `urep.models.MultiTaskModel`, a mapping task -> model, a sequence of models
            aligned with `tasks`, or None when every `Task.model` is set.
        tasks: the tasks.
        strategy: a name in `STRATEGIES` ("independent", "alternating", "joint", "cross_stitch", "multimix",
            or one plugged in with `register_strategy`).
        config: the training configuration.
        run: the run directory manager (checkpoints, TensorBoard, resume), or None.
        **options: the strategy's options (e.g. `loss_weighting="uncertainty"` for joint,
            `batches_per_task={...}` for alternating, `dist_strategy=tf.distribute.MirroredStrategy()`).

    Returns:
        Task name -> `TrainResult`.

    Raises:
        ValueError: unknown strategy, no tasks, or repeated task names.
    """
    train = resolve_strategy(strategy)
    tasks = list(tasks)
    if not tasks:
        raise ValueError("finetune needs at least one task")
    names = [task.name for task in tasks]
    if len(set(names)) != len(names):
        raise ValueError(f"task names must be unique, got {names}")
    return train(assembly_or_models, tasks, config, run=run, **options)
