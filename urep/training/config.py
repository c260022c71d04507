"""Training configuration as validated dataclasses, with the papers' defaults.

Where the papers give a value, the field's docstring says where it comes from:

- Learning rate 1e-3, reduced when the loss plateaus, early stopping, batch 16: the CDAE (UMS-Rep journal,
  Section 3.1 "U-Rep 1"; journal Section 3.2), with RMSprop for the CDAE and Adam for the Doppler CNN (journal
  Section 4.2, Talos search), 64 epochs for the Doppler CNN (journal Section 4.2).
- Classification heads on U-Rep 2 use SGD, the segmentation head Adam (UMS-Rep journal, Section 3.2).

The papers are silent on the plateau factor and patience, the early-stopping patience, `min_delta` and the
epoch budget of the CDAE; the defaults chosen here are documented on each field and are all parameters.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

OPTIMIZERS = ("adam", "rmsprop", "sgd")
MIXED_PRECISION_POLICIES = (None, "mixed_float16", "mixed_bfloat16")
MONITOR_MODES = ("auto", "min", "max")


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
    """

    name: str = "adam"
    learning_rate: float = 1e-3
    momentum: float = 0.0
    rho: float = 0.9
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-7
    clipnorm: float | None = None
    weight_decay: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.name, str):
            self.name = self.name.lower()
        _check(self.name in OPTIMIZERS, f"optimizer name must be one of {OPTIMIZERS}, got {self.name!r}")
        _check(_is_number(self.learning_rate) and self.learning_rate > 0,
               f"optimizer learning_rate must be a positive number, got {self.learning_rate!r}")
        _check(_is_number(self.momentum) and 0 <= self.momentum < 1,
               f"optimizer momentum must be in [0, 1), got {self.momentum!r}")
        for key in ("rho", "beta_1", "beta_2"):
            value = getattr(self, key)
            _check(_is_number(value) and 0 < value < 1, f"optimizer {key} must be in (0, 1), got {value!r}")
        _check(_is_number(self.epsilon) and self.epsilon > 0,
               f"optimizer epsilon must be a positive number, got {self.epsilon!r}")
        for key in ("clipnorm", "weight_decay"):
            value = getattr(self, key)
            _check(value is None or (_is_number(value) and value > 0),
                   f"optimizer {key} must be None or a positive number, got {value!r}")

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

    epochs: int = 64
    batch_size: int = 16
    optimizer: OptimizerConfig | dict | str = field(default_factory=OptimizerConfig)
    learning_rate: float | None = None
    reduce_lr_factor: float = 0.5
    reduce_lr_patience: int = 3
    min_learning_rate: float = 1e-6
    early_stopping_patience: int | None = 8
    min_delta: float = 1e-4
    monitor: str = "val_loss"
    monitor_mode: str = "auto"
    restore_best_weights: bool = True
    jit_compile: bool = True
    mixed_precision: str | None = None
    deterministic: bool = False
    seed: int = 0
    max_steps_per_epoch: int | None = None
    max_val_steps: int | None = None
    checkpoint_every_epoch: bool = True
    tensorboard: bool = True
    progress_bar: bool | None = None
    check_finite: bool = True
    taskwise_stopping: bool | dict = False

    def __post_init__(self) -> None:
        self.optimizer = OptimizerConfig.from_dict(self.optimizer)
        if self.learning_rate is None:
            self.learning_rate = self.optimizer.learning_rate
        else:
            _check(_is_number(self.learning_rate) and self.learning_rate > 0,
                   f"learning_rate must be a positive number, got {self.learning_rate!r}")
            self.optimizer = dataclasses.replace(self.optimizer, learning_rate=float(self.learning_rate))
        _check(_is_int(self.epochs) and self.epochs >= 1, f"epochs must be an integer >= 1, got {self.epochs!r}")
        _check(_is_int(self.batch_size) and self.batch_size >= 1,
               f"batch_size must be an integer >= 1, got {self.batch_size!r}")
        _check(_is_number(self.reduce_lr_factor) and 0 < self.reduce_lr_factor <= 1,
               f"reduce_lr_factor must be in (0, 1], got {self.reduce_lr_factor!r}")
        _check(_is_int(self.reduce_lr_patience) and self.reduce_lr_patience >= 0,
               f"reduce_lr_patience must be an integer >= 0, got {self.reduce_lr_patience!r}")
        _check(_is_number(self.min_learning_rate) and self.min_learning_rate >= 0,
               f"min_learning_rate must be a number >= 0, got {self.min_learning_rate!r}")
        _check(self.early_stopping_patience is None
               or (_is_int(self.early_stopping_patience) and self.early_stopping_patience >= 0),
               f"early_stopping_patience must be None or an integer >= 0, got {self.early_stopping_patience!r}")
        _check(_is_number(self.min_delta) and self.min_delta >= 0,
               f"min_delta must be a number >= 0, got {self.min_delta!r}")
        _check(isinstance(self.monitor, str) and (self.monitor in ("loss", "val_loss")
                                                  or (self.monitor.startswith("val_") and len(self.monitor) > 4)),
               f"monitor must be 'loss', 'val_loss' or 'val_<metric>', got {self.monitor!r}")
        _check(self.monitor_mode in MONITOR_MODES,
               f"monitor_mode must be one of {MONITOR_MODES}, got {self.monitor_mode!r}")
        _check(self.mixed_precision in MIXED_PRECISION_POLICIES,
               f"mixed_precision must be one of {MIXED_PRECISION_POLICIES}, got {self.mixed_precision!r}")
        _check(_is_int(self.seed) and self.seed >= 0, f"seed must be an integer >= 0, got {self.seed!r}")
        for key in ("max_steps_per_epoch", "max_val_steps"):
            value = getattr(self, key)
            _check(value is None or (_is_int(value) and value >= 1),
                   f"{key} must be None or an integer >= 1, got {value!r}")
        for key in ("restore_best_weights", "jit_compile", "deterministic", "checkpoint_every_epoch",
                    "tensorboard", "check_finite"):
            value = getattr(self, key)
            _check(isinstance(value, bool), f"{key} must be true or false, got {value!r}")
        _check(self.progress_bar is None or isinstance(self.progress_bar, bool),
               f"progress_bar must be None, true or false, got {self.progress_bar!r}")
        check_taskwise_stopping(self.taskwise_stopping)

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
        optimizer = keras.optimizers.Adam(beta_1=config.beta_1, beta_2=config.beta_2, epsilon=config.epsilon,
                                          **common)
    elif config.name == "rmsprop":
        optimizer = keras.optimizers.RMSprop(rho=config.rho, momentum=config.momentum, epsilon=config.epsilon,
                                             **common)
    else:
        optimizer = keras.optimizers.SGD(momentum=config.momentum, **common)
    if mixed_float16:
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer
