"""Task-wise early stopping (Zhang, Luo, Loy and Tang, ECCV 2014): stop an auxiliary task that stops helping.

A task stops at epoch t when `T_a(t) * G_a(t) > epsilon` (training trend over the last k + 1 epochs times the
generalization gap scaled by the task's importance; formula: docs/design.md, "Task-wise early stopping").
Pure Python/NumPy: a loop calls `update` once per epoch per task and skips the tasks in `stopped`; main tasks
are never stopped. Defaults (`k = 5`, `epsilon = 1.0`, ...): docs/choices.md, "Task-wise early stopping".
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)


def _check_error(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{what} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{what} must be a finite non-negative error, got {value!r}")
    return value


def training_trend(train_errors: Sequence[float], k: int) -> float:
    """The trend term T over the last k + 1 training errors (see the module docstring).

    Args:
        train_errors: per-epoch training errors, oldest first, at least k + 1.
        k: strip length.

    Returns:
        `k * med / (sum - k * med)` over the strip; `0.0` when the denominator is not positive (training
        error still dropping sharply).

    Raises:
        ValueError: fewer than k + 1 errors or `k < 1`.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if len(train_errors) < k + 1:
        raise ValueError(f"the training trend needs k + 1 = {k + 1} errors, got {len(train_errors)}")
    strip = np.asarray(train_errors[-(k + 1):], dtype=np.float64)
    median = float(np.median(strip))
    denominator = float(strip.sum()) - k * median
    if denominator <= 0:
        return 0.0
    return k * median / denominator


def generalization_gap(
    train_errors: Sequence[float], val_error: float, importance: float = 1.0, min_error: float = 1e-12
) -> float:
    """The generalization term G: `(E_val(t) - min E_tr) / (lambda * min E_tr)`.

    Args:
        train_errors: training errors of epochs 1..t.
        val_error: validation error at epoch t.
        importance: the task's importance `lambda_a` (> 0).
        min_error: floor of `min E_tr` in the denominator.

    Returns:
        G (negative when the validation error is below every training error so far).
    """
    if not importance > 0:
        raise ValueError(f"importance must be > 0, got {importance!r}")
    best = min(train_errors)
    return (val_error - best) / (importance * max(best, min_error))


def stopping_criterion(
    train_errors: Sequence[float], val_error: float, k: int = 5, importance: float = 1.0,
    min_error: float = 1e-12,
) -> float | None:
    """`T * G` for the latest epoch, or None while fewer than k + 1 epochs are recorded.

    Args:
        train_errors: training errors of epochs 1..t, oldest first.
        val_error: validation error at epoch t.
        k: strip length of the trend term.
        importance: the task's importance `lambda_a`.
        min_error: floor of `min E_tr`.

    Returns:
        The criterion value; the task should stop when it exceeds epsilon.
    """
    if len(train_errors) < k + 1:
        return None
    trend = training_trend(train_errors, k)
    if trend == 0.0:
        return 0.0
    return trend * generalization_gap(train_errors, val_error, importance, min_error)


class TaskwiseEarlyStopping:
    """Per-task stopping state for multi-task training (Zhang et al. 2014).

    Typical use in a loop::

        stopper = TaskwiseEarlyStopping(["seg", "cls"], main="seg")
        for epoch in range(epochs):
            active = [t for t in tasks if stopper.should_train(t)]
            ...train the active tasks for one epoch...
            stopper.update_all(train_losses, val_losses)

    Args:
        tasks: all task names.
        main: task name(s) never stopped (the main task(s)); None: every task may be stopped.
        k: strip length of the training trend (epochs).
        epsilon: threshold of `T * G` (see the module docstring for the default).
        importance: `lambda_a`, one value for all tasks or task -> value (missing tasks get 1.0).
        min_error: floor of the best training error in G's denominator.

    Raises:
        ValueError: no or duplicate tasks, a main task not in `tasks`, `k < 1`, `epsilon <= 0` or a
            non-positive importance.
    """

    def __init__(
        self,
        tasks: Sequence[str],
        main: str | Sequence[str] | None = None,
        k: int = 5,
        epsilon: float = 1.0,
        importance: float | Mapping[str, float] = 1.0,
        min_error: float = 1e-12,
    ) -> None:
        tasks = list(tasks)
        if not tasks or len(set(tasks)) != len(tasks):
            raise ValueError(f"tasks must be a non-empty list of distinct names, got {tasks!r}")
        main_tasks = [] if main is None else ([main] if isinstance(main, str) else list(main))
        unknown = [task for task in main_tasks if task not in tasks]
        if unknown:
            raise ValueError(f"main task(s) {unknown} are not among tasks {tasks}")
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        if not (isinstance(epsilon, (int, float)) and epsilon > 0):
            raise ValueError(f"epsilon must be a positive number, got {epsilon!r}")
        weights = dict.fromkeys(tasks, 1.0)
        if isinstance(importance, Mapping):
            extra = [task for task in importance if task not in tasks]
            if extra:
                raise ValueError(f"importance names unknown tasks {extra} (tasks: {tasks})")
            weights.update({task: float(value) for task, value in importance.items()})
        else:
            weights = dict.fromkeys(tasks, float(importance))
        bad = {task: value for task, value in weights.items() if not value > 0}
        if bad:
            raise ValueError(f"importance must be > 0 for every task, got {bad}")
        self.tasks = tasks
        self.main = frozenset(main_tasks)
        self.k = k
        self.epsilon = float(epsilon)
        self.importance = weights
        self.min_error = float(min_error)
        self.train_errors: dict[str, list[float]] = {task: [] for task in tasks}
        self.val_errors: dict[str, list[float]] = {task: [] for task in tasks}
        self.stopped_at: dict[str, int] = {}

    @property
    def stopped(self) -> frozenset[str]:
        """Tasks stopped so far."""
        return frozenset(self.stopped_at)

    def should_train(self, task: str) -> bool:
        """Whether `task` is still trained."""
        self._check_task(task)
        return task not in self.stopped_at

    def criterion(self, task: str) -> float | None:
        """The current `T * G` of a task (None before k + 1 epochs are recorded)."""
        self._check_task(task)
        if not self.val_errors[task]:
            return None
        return stopping_criterion(
            self.train_errors[task], self.val_errors[task][-1], self.k, self.importance[task], self.min_error
        )

    def update(self, task: str, train_error: float, val_error: float) -> bool:
        """Record one epoch of a task and decide whether it stops now.

        Args:
            task: task name.
            train_error: the epoch's training error (non-negative, lower is better).
            val_error: the epoch's validation error.

        Returns:
            True when the task is stopped (now or earlier). Updates of a stopped task are ignored.

        Raises:
            KeyError: unknown task.
            ValueError: a negative, infinite or non-numeric error.
        """
        self._check_task(task)
        if task in self.stopped_at:
            return True
        self.train_errors[task].append(_check_error(train_error, f"train error of task {task!r}"))
        self.val_errors[task].append(_check_error(val_error, f"validation error of task {task!r}"))
        if task in self.main:
            return False
        value = self.criterion(task)
        if value is not None and value > self.epsilon:
            epoch = len(self.train_errors[task])
            self.stopped_at[task] = epoch
            logger.info(
                "task-wise early stopping: task %r stopped after epoch %d (T*G = %.3g > epsilon %.3g)",
                task, epoch, value, self.epsilon,
            )
            return True
        return False

    def update_all(self, train_errors: Mapping[str, float], val_errors: Mapping[str, float]) -> frozenset[str]:
        """`update` every still-active task from per-task mappings; returns the tasks stopped by this call.

        Raises:
            ValueError: an active task is missing from either mapping.
        """
        active = [task for task in self.tasks if task not in self.stopped_at]
        missing = [task for task in active if task not in train_errors or task not in val_errors]
        if missing:
            raise ValueError(f"no train/validation error given for active tasks {missing}")
        return frozenset(task for task in active if self.update(task, train_errors[task], val_errors[task]))

    def state(self) -> dict[str, Any]:
        """A JSON-serializable record (parameters, histories, stop epochs) for results and resume."""
        return {
            "k": self.k, "epsilon": self.epsilon, "importance": dict(self.importance), "main": sorted(self.main),
            "min_error": self.min_error, "tasks": list(self.tasks),
            "train_errors": {t: list(v) for t, v in self.train_errors.items()},
            "val_errors": {t: list(v) for t, v in self.val_errors.items()},
            "stopped_at": dict(self.stopped_at),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> TaskwiseEarlyStopping:
        """Rebuild from `state()` (resume)."""
        stopper = cls(
            state["tasks"], main=state["main"] or None, k=state["k"], epsilon=state["epsilon"],
            importance=state["importance"], min_error=state["min_error"],
        )
        stopper.train_errors = {t: list(v) for t, v in state["train_errors"].items()}
        stopper.val_errors = {t: list(v) for t, v in state["val_errors"].items()}
        stopper.stopped_at = {t: int(v) for t, v in state["stopped_at"].items()}
        return stopper

    def _check_task(self, task: str) -> None:
        if task not in self.train_errors:
            raise KeyError(f"unknown task {task!r} (tasks: {self.tasks})")
