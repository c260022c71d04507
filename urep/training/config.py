"""Training configuration (`TrainConfig`, `OptimizerConfig`, `make_optimizer`) with the papers' defaults.

Each field's docstring says where its default comes from; its constraints are in its type hint and checked by
`urep.constraints.check_fields` at construction (`ValueError` naming the field, the value and what was
expected). Defaults and choices where the papers are silent: docs/configuration.md.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from urep.constraints import Rule, check_fields

OptimizerName = Literal["adam", "rmsprop", "sgd"]
MixedPrecision = Literal["mixed_float16", "mixed_bfloat16"]
MonitorMode = Literal["auto", "min", "max"]
OPTIMIZERS = typing.get_args(OptimizerName)
MIXED_PRECISION_POLICIES = (None, *typing.get_args(MixedPrecision))
MONITOR_MODES = typing.get_args(MonitorMode)
POSITIVE = Rule(gt=0)
AT_LEAST_0 = Rule(min=0)
AT_LEAST_1 = Rule(min=1)
DECAY = Rule(gt=0, lt=1)


def _monitor_problem(monitor: str) -> str | None:
    if monitor in ("loss", "val_loss") or (monitor.startswith("val_") and len(monitor) > 4):
        return None
    return f"must be 'loss', 'val_loss' or 'val_<metric>', got {monitor!r}"


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass
class OptimizerConfig:
    """One optimizer: which, its learning rate and its few knobs.

    Attributes:
        name: "adam" (Doppler CNN, segmentation heads; journal Section 3.2), "rmsprop" (CDAE; journal Section 3.1)
            or "sgd" (classification heads on U-Rep 2; journal Section 3.2).
        learning_rate: initial learning rate; 1e-3 in the papers (journal Section 3.1).
        momentum: SGD and RMSprop momentum (papers silent; Keras default 0).
        rho: RMSprop decay (Keras default 0.9).
        beta_1: Adam first-moment decay (Keras default 0.9).
        beta_2: Adam second-moment decay (Keras default 0.999).
        epsilon: numerical stability constant (Keras default 1e-7).
        clipnorm: clip each gradient to this norm; None disables (papers silent).
        weight_decay: decoupled weight decay; None disables (papers silent).
        lookahead_steps: wrap the optimizer in Lookahead (Zhang et al. 2019; `urep.training.lookahead`) that
            merges its weights into slow weights every this many steps; None disables. The papers are silent;
            the authors' public Keras code wraps its classifier's Adam with 5.
        lookahead_alpha: the fraction of the way the slow weights move at each merge (the authors' code: 0.5).
    """

    name: OptimizerName = "adam"
    learning_rate: Annotated[float, POSITIVE] = 1e-3
    momentum: Annotated[float, Rule(min=0, lt=1)] = 0.0
    rho: Annotated[float, DECAY] = 0.9
    beta_1: Annotated[float, DECAY] = 0.9
    beta_2: Annotated[float, DECAY] = 0.999
    epsilon: Annotated[float, POSITIVE] = 1e-7
    clipnorm: Annotated[float | None, POSITIVE] = None
    weight_decay: Annotated[float | None, POSITIVE] = None
    lookahead_steps: Annotated[int | None, AT_LEAST_1] = None
    lookahead_alpha: Annotated[float, Rule(gt=0, max=1)] = 0.5

    def __post_init__(self) -> None:
        if isinstance(self.name, str):
            self.name = self.name.lower()
        check_fields(self, prefix="optimizer ")

    def to_dict(self) -> dict:
        """Plain-dict form (for YAML/JSON records)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict | str | OptimizerConfig) -> OptimizerConfig:
        """Build from a dict (unknown keys rejected), a name, or an `OptimizerConfig` (returned as is).

        Raises:
            ValueError: unknown keys or invalid values.
        """
        if isinstance(data, OptimizerConfig):
            return data
        if isinstance(data, str):
            return cls(name=data)
        if not isinstance(data, dict):
            raise ValueError(f"optimizer must be a name, a dict or an OptimizerConfig, got {data!r}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        _check(not unknown, f"unknown optimizer config keys {unknown}; expected some of {sorted(known)}")
        return cls(**data)


@dataclass
class TrainConfig:
    """Everything a training loop needs besides the model and the data.

    Attributes:
        epochs: maximum number of epochs. 64 for the Doppler CNN (journal Section 4.2); the CDAE's budget is
            not published (early stopping decides), so 64 is used for every phase by default.
        batch_size: 16 in the papers (journal Sections 3.1 and 4.2). Used to count steps when a dataset's
            cardinality is unknown and by the data helpers in `urep.training.source`.
        optimizer: an `OptimizerConfig`, a dict, or a name ("adam" | "rmsprop" | "sgd").
        learning_rate: overrides `optimizer.learning_rate` when given; after construction it always holds the
            effective initial learning rate (1e-3 by default, journal Section 3.1).
        reduce_lr_factor: multiply the learning rate by this when `monitor` has not improved for
            `reduce_lr_patience` epochs ("reduced when the loss plateaus", journal Section 3.1; the factor is
            not published: 0.5 chosen). 1.0 disables the reduction.
        reduce_lr_patience: epochs without improvement before a reduction (not published: 3 chosen).
        min_learning_rate: the reduction never goes below this (not published: 1e-6 chosen).
        early_stopping_patience: stop after this many epochs without improvement of `monitor` (early stopping
            on the validation loss, journal Section 3.1; patience not published: 8 chosen). None disables.
        min_delta: smallest change of `monitor` that counts as an improvement (Keras' default 1e-4).
        monitor: "val_loss" (papers), "loss", or "val_<metric name>" of a task's metric.
        monitor_mode: "min", "max" or "auto" (max for accuracy/AUC/Dice/IoU/F-score/PSNR/SSIM-like names).
        restore_best_weights: at the end, put back the weights of the best epoch (Keras' EarlyStopping option).
        jit_compile: compile the step functions with XLA (on CPU XLA gave 1.7x for the CDAE; docs/benchmarks.md).
            Ignored, with a log line, under a distribution strategy with several replicas, where XLA cannot
            reach variables on another logical device.
        mixed_precision: None, "mixed_float16" (loss scaling added) or "mixed_bfloat16". The policy must be
            set before the models are built: `urep.training.distribute.mixed_precision_scope(config)`.
        deterministic: enable TensorFlow's deterministic ops (slower; needed for bit-exact resume).
        seed: seeds everything, and the data order of epoch e is a function of (seed, e).
        max_steps_per_epoch: cap on the training steps of one epoch (of one task), None = the whole dataset.
        max_val_steps: cap on the validation steps, None = the whole validation set.
        checkpoint_every_epoch: write a resumable checkpoint at the end of every epoch (when a run is given).
        tensorboard: write TensorBoard scalars per task (when a run is given).
        progress_bar: show one Keras `Progbar` per training phase: None = only when stdout is a terminal.
        data_autotune: keep tf.data's autotuning on for the per-epoch training and validation datasets. Off by
            default: TensorFlow 2.21 then waits up to about 4 s (CPU idle) whenever an epoch's iterator is
            freed (`urep.training.loop.epoch_dataset`); the values are the same either way.
        check_finite: stop with `NonFiniteInputError` when a training batch holds NaN/inf values, and with
            `NonFiniteLossError` as soon as a step's loss is NaN or infinite.
        taskwise_stopping: task-wise early stopping (Zhang et al. 2014,
            `urep.training.taskwise_stopping`) in the alternating and joint strategies (and cross-stitch,
            which trains like joint); other strategies ignore it. False (default) disables it; True enables it
            with the defaults; a dict enables it with some of these keys: `k` (strip length of the training
            trend in epochs, integer >= 1, default 5), `epsilon` (threshold of T * G, > 0, default 1.0),
            `main` (a task name or a list of them never stopped, default none: any task may stop),
            `importance` (lambda_a, a number > 0 or task -> number, default each task's `Task.weight`).
            At the end of each epoch every active task's training loss and validation loss feed the
            criterion; a stopped task is no longer trained (alternating: its turns are skipped; joint: its
            loss leaves the sum, with fixed loss weights only) while the others continue. It needs
            validation data for every task.
    """

    epochs: Annotated[int, AT_LEAST_1] = 64
    batch_size: Annotated[int, AT_LEAST_1] = 16
    optimizer: OptimizerConfig | dict | str = field(default_factory=OptimizerConfig)
    learning_rate: Annotated[float | None, POSITIVE] = None
    reduce_lr_factor: Annotated[float, Rule(gt=0, max=1)] = 0.5
    reduce_lr_patience: Annotated[int, AT_LEAST_0] = 3
    min_learning_rate: Annotated[float, AT_LEAST_0] = 1e-6
    early_stopping_patience: Annotated[int | None, AT_LEAST_0] = 8
    min_delta: Annotated[float, AT_LEAST_0] = 1e-4
    monitor: Annotated[str, Rule(check=_monitor_problem)] = "val_loss"
    monitor_mode: MonitorMode = "auto"
    restore_best_weights: bool = True
    jit_compile: bool = True
    mixed_precision: MixedPrecision | None = None
    deterministic: bool = False
    seed: Annotated[int, AT_LEAST_0] = 0
    max_steps_per_epoch: Annotated[int | None, AT_LEAST_1] = None
    max_val_steps: Annotated[int | None, AT_LEAST_1] = None
    checkpoint_every_epoch: bool = True
    tensorboard: bool = True
    progress_bar: bool | None = None
    data_autotune: bool = False
    check_finite: bool = True
    taskwise_stopping: bool | dict = False

    def __post_init__(self) -> None:
        self.optimizer = OptimizerConfig.from_dict(self.optimizer)
        check_fields(self)
        check_taskwise_stopping(self.taskwise_stopping)
        if self.learning_rate is None:
            self.learning_rate = self.optimizer.learning_rate
        else:
            self.optimizer = dataclasses.replace(self.optimizer, learning_rate=float(self.learning_rate))

    @property
    def taskwise(self) -> dict | None:
        """The task-wise early stopping settings (`k`, `epsilon`, `main`, `importance`), or None when off."""
        if self.taskwise_stopping is False:
            return None
        given = {} if self.taskwise_stopping is True else self.taskwise_stopping
        return {**TASKWISE_DEFAULTS, **given}

    @property
    def mode(self) -> str:
        """"min" or "max": the direction in which `monitor` improves."""
        return resolve_mode(self.monitor, self.monitor_mode)

    def to_dict(self) -> dict:
        """Plain-dict form (for YAML/JSON records)."""
        data = dataclasses.asdict(self)
        data["optimizer"] = self.optimizer.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        """Build from a plain dict (e.g. a YAML section); unknown keys are rejected.

        Raises:
            ValueError: unknown keys or invalid values (the message names the key and the value).
        """
        if not isinstance(data, dict):
            raise ValueError(f"training config must be a mapping, got {type(data).__name__}: {data!r}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        _check(not unknown, f"unknown training config keys {unknown}; expected some of {sorted(known)}")
        return cls(**data)


#: Defaults of `TrainConfig.taskwise_stopping` (`urep.training.taskwise_stopping.TaskwiseEarlyStopping`'s);
#: importance None = each task's `Task.weight`.
TASKWISE_DEFAULTS = {"k": 5, "epsilon": 1.0, "main": None, "importance": None}


def check_taskwise_stopping(value: Any) -> None:
    """Validate `TrainConfig.taskwise_stopping`: a bool or a dict of `TASKWISE_DEFAULTS` keys."""
    if isinstance(value, bool):
        return
    _check(isinstance(value, dict), f"taskwise_stopping must be true, false or a mapping, got {value!r}")
    unknown = sorted(set(value) - set(TASKWISE_DEFAULTS))
    _check(not unknown, f"unknown taskwise_stopping keys {unknown}; expected some of {sorted(TASKWISE_DEFAULTS)}")
    k = value.get("k", 5)
    _check(_is_int(k) and k >= 1, f"taskwise_stopping.k must be an integer >= 1, got {k!r}")
    epsilon = value.get("epsilon", 1.0)
    _check(_is_number(epsilon) and epsilon > 0, f"taskwise_stopping.epsilon must be a number > 0, got {epsilon!r}")
    main = value.get("main")
    _check(main is None or isinstance(main, str)
           or (isinstance(main, (list, tuple)) and all(isinstance(m, str) for m in main)),
           f"taskwise_stopping.main must be a task name or a list of names, got {main!r}")
    importance = value.get("importance")
    values = list(importance.values()) if isinstance(importance, dict) else [importance]
    _check(importance is None or all(_is_number(v) and v > 0 for v in values),
           f"taskwise_stopping.importance must be a number > 0 or a mapping task -> number > 0, got {importance!r}")


_MAX_WORDS = ("acc", "auc", "dice", "iou", "f1", "fscore", "f_score", "psnr", "ssim", "precision", "recall",
              "sensitivity", "specificity", "mcc")


def resolve_mode(monitor: str, mode: str = "auto") -> str:
    """The direction of improvement of a monitored quantity.

    Args:
        monitor: "loss", "val_loss" or "val_<metric>".
        mode: "min", "max" or "auto" (max when the name contains an accuracy/overlap/quality word).

    Returns:
        "min" or "max".
    """
    if mode != "auto":
        return mode
    name = monitor.lower()
    return "max" if any(word in name for word in _MAX_WORDS) else "min"


def make_optimizer(config: OptimizerConfig | TrainConfig | dict | str, mixed_float16: bool = False):
    """A fresh Keras 3 optimizer for one model or task.

    Args:
        config: an `OptimizerConfig` (or a `TrainConfig`, whose optimizer is used, or a dict/name).
        mixed_float16: wrap it in `keras.optimizers.LossScaleOptimizer` (dynamic loss scaling for float16).

    Returns:
        A `keras.optimizers.Optimizer` (not built yet: build it inside the strategy scope, see
        `urep.training.distribute.build_optimizer`).
    """
    import keras

    if isinstance(config, TrainConfig):
        mixed_float16 = mixed_float16 or config.mixed_precision == "mixed_float16"
        config = config.optimizer
    config = OptimizerConfig.from_dict(config)
    common = {"learning_rate": config.learning_rate, "clipnorm": config.clipnorm,
              "weight_decay": config.weight_decay}
    if config.name == "adam":
        cls, own = keras.optimizers.Adam, {"beta_1": config.beta_1, "beta_2": config.beta_2, "epsilon": config.epsilon}
    elif config.name == "rmsprop":
        cls, own = keras.optimizers.RMSprop, {"rho": config.rho, "momentum": config.momentum, "epsilon": config.epsilon}
    else:
        cls, own = keras.optimizers.SGD, {"momentum": config.momentum}
    if config.lookahead_steps is not None:
        from urep.training.lookahead import with_lookahead

        optimizer = with_lookahead(cls, config.lookahead_steps, config.lookahead_alpha, **own, **common)
    else:
        optimizer = cls(**own, **common)
    if mixed_float16:
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer
