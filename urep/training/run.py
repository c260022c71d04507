"""Run management: run directory, resumable checkpoints, TensorBoard, progress lines and bar (Keras `Progbar`), NaN stop.

Layout written under a run directory (see docs/design.md)::

    RUN_DIR/checkpoints/PHASE/epoch-0003.npz     every variable of the phase after epoch 3
    RUN_DIR/checkpoints/PHASE/state.json         commit point: epoch, history, controllers, times
    RUN_DIR/checkpoints/PHASE/best.npz           model variables of the best epoch so far
    RUN_DIR/checkpoints/PHASE/TASK.weights.h5    best weights of each task model (Keras format, at the end)
    RUN_DIR/tensorboard/PHASE/TASK/              per-task scalars

Checkpoints hold the *values* of an ordered list of variables (models, optimizers, loss weights, the
dropout seed-generator states), written as one `.npz` through `urep.io.atomic_write_bytes`; `state.json`
is written (atomically) after it and names it, so an interrupted write never leaves a state pointing at a
missing or partial checkpoint. (`tf.train.Checkpoint` was tried first: with Keras 3 objects it neither
saved the seed-generator states nor restored the model variables, so it is not used.)
"""

from __future__ import annotations

import io
import json
import logging
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from urep.io import atomic_write_bytes, atomic_write_json, prepare_run_dir

logger = logging.getLogger(__name__)


class NonFiniteLossError(FloatingPointError):
    """A training loss became NaN or infinite; the last good checkpoint is kept.

    Attributes:
        task: the task whose loss was not finite ("joint" for the combined loss).
        epoch: 1-based epoch.
        step: 1-based step within the epoch.
        value: the loss value seen.
    """

    def __init__(self, task: str, epoch: int, step: int, value: float) -> None:
        self.task, self.epoch, self.step, self.value = task, epoch, step, value
        super().__init__(f"non-finite loss {value} for task {task!r} at epoch {epoch}, step {step}; "
                         "training stopped, the last good checkpoint is kept")


class NonFiniteInputError(ValueError):
    """A training batch holds NaN or infinite values (a corrupt float image, a division by a zero spread).

    Checked on the batch itself, before the step, because a non-finite input does not always reach the loss:
    some kernels (oneDNN's max-pooling inside `tf.function`) turn NaN into a large finite number.

    Attributes:
        task: the task whose batch was not finite.
        epoch: 1-based epoch.
        step: 1-based step within the epoch.
    """

    def __init__(self, task: str, epoch: int, step: int) -> None:
        self.task, self.epoch, self.step = task, epoch, step
        super().__init__(f"non-finite values (NaN or inf) in the training batch of task {task!r} at epoch {epoch}, "
                         f"step {step}: check the images and labels it was built from; training stopped, the "
                         "last good checkpoint is kept")


def check_finite(value: float, task: str, epoch: int, step: int) -> float:
    """Return `value`, or raise `NonFiniteLossError` when it is NaN or infinite."""
    if not math.isfinite(value):
        raise NonFiniteLossError(task, epoch, step, value)
    return value


def save_variables(path: str | Path, variables: Sequence) -> Path:
    """Atomically write the values of `variables` (in order) to an `.npz` file.

    Args:
        path: destination file.
        variables: Keras or TensorFlow variables.
    """
    arrays = {f"v{i:05d}": np.asarray(v.numpy()) for i, v in enumerate(variables)}
    arrays["paths"] = np.asarray([getattr(v, "path", v.name) for v in variables], dtype=str)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return atomic_write_bytes(path, buffer.getvalue())


def load_variables(path: str | Path, variables: Sequence) -> None:
    """Assign the values saved by `save_variables` back to the same ordered list of variables.

    Raises:
        ValueError: the file holds a different number of variables or a different shape.
    """
    with np.load(path) as data:
        count = len(data["paths"])
        if count != len(variables):
            raise ValueError(f"checkpoint {path} holds {count} variables, the run has {len(variables)}; "
                             "was it written by a different model or strategy?")
        for i, variable in enumerate(variables):
            value = data[f"v{i:05d}"]
            if tuple(value.shape) != tuple(variable.shape):
                raise ValueError(f"checkpoint {path}: variable {i} ({data['paths'][i]}) has shape "
                                 f"{value.shape}, the run's {getattr(variable, 'path', variable.name)} has "
                                 f"{tuple(variable.shape)}")
            variable.assign(value)


def snapshot(variables: Sequence) -> list[np.ndarray]:
    """Copies of the current values of `variables` (an in-memory checkpoint)."""
    return [np.array(v.numpy(), copy=True) for v in variables]


def restore_snapshot(variables: Sequence, values: Sequence[np.ndarray]) -> None:
    """Assign values taken by `snapshot`."""
    for variable, value in zip(variables, values, strict=True):
        variable.assign(value)


class PhaseCheckpoint:
    """Resumable checkpoints of one training phase in `directory` (keeps the last `keep` epochs)."""

    def __init__(self, directory: Path, keep: int = 2) -> None:
        self.directory = Path(directory)
        self.keep = keep

    @property
    def state_path(self) -> Path:
        return self.directory / "state.json"

    @property
    def best_path(self) -> Path:
        return self.directory / "best.npz"

    def load_state(self) -> dict | None:
        """The last committed state, or None when this phase has not checkpointed yet.

        Raises:
            ValueError: the state file is not valid JSON or names a missing checkpoint.
        """
        if not self.state_path.exists():
            return None
        try:
            state = json.loads(self.state_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise ValueError(f"checkpoint state {self.state_path} is not valid JSON: {error}") from error
        checkpoint = self.directory / state["checkpoint"]
        if not checkpoint.exists():
            raise ValueError(f"checkpoint state {self.state_path} names {checkpoint}, which does not exist")
        return state

    def save(self, epoch: int, variables: Sequence, state: dict, name: str | None = None) -> None:
        """Write the variables after epoch `epoch` (1-based), then commit `state` pointing at them.

        Args:
            epoch: epochs completed.
            variables: the phase's variables, in a fixed order.
            state: JSON-ready state (history, controllers, times).
            name: file name; default `epoch-NNNN.npz` (the final weights of a phase use `final.npz`).
        """
        name = name or f"epoch-{epoch:04d}.npz"
        save_variables(self.directory / name, variables)
        atomic_write_json(self.state_path, {**state, "checkpoint": name})
        for old in sorted(self.directory.glob("epoch-*.npz"))[:-self.keep]:
            old.unlink()

    def restore(self, state: dict, variables: Sequence) -> None:
        """Assign the variables saved with `state`."""
        load_variables(self.directory / state["checkpoint"], variables)


def progress_enabled(flag: bool | None) -> bool:
    """The progress bar is shown when asked, or by default when stdout (where Keras draws it) is a terminal."""
    if flag is not None:
        return flag
    return bool(getattr(sys.stdout, "isatty", lambda: False)())


class ProgressBar:
    """One `keras.utils.Progbar` for a whole training phase (all its epochs); does nothing when disabled.

    Args:
        total: training steps of the phase, or None when unknown (Keras then shows the count only).
        label: the phase, printed once above the bar.
        enabled: draw it at all.
        start: steps already done (a resumed phase).
    """

    def __init__(self, total: int | None, label: str, enabled: bool, start: int = 0) -> None:
        self.total, self.label, self.enabled = total, label, enabled
        self.count = start
        self._bar = None
        if enabled:
            from keras.utils import Progbar

            sys.stdout.write(f"{label}\n")
            self._bar = Progbar(total, unit_name="step")

    def update(self, steps: int = 1, **values: float) -> None:
        """Advance by `steps`; `values` (running means, e.g. the epoch's mean loss so far) are shown as given."""
        self.count += steps
        if self._bar is None:
            return
        self._bar.stateful_metrics.update(values)
        finalize = False if self.total is None else None
        self._bar.update(self.count, [(k, float(v)) for k, v in values.items()], finalize=finalize)

    def close(self) -> None:
        """End the bar (also when the phase stopped early, before `total`)."""
        if self._bar is not None and (self.total is None or self.count < self.total):
            self._bar.update(self.count, finalize=True)
        self._bar = None


def format_epoch_line(phase: str, epoch: int, epochs: int, seconds: float, logs: dict[str, dict[str, float]],
                      learning_rates: dict[str, float]) -> str:
    """One progress line: `phase epoch 3/64 (12.3s) | seg: loss 0.41 val_loss 0.45 val_dice 0.81 | lr 1e-3`."""
    parts = [f"{phase} epoch {epoch}/{epochs} ({seconds:.1f}s)"]
    for task, values in logs.items():
        parts.append(f"{task}: " + " ".join(f"{k} {v:.4g}" for k, v in values.items()))
    rates = sorted(set(learning_rates.values()))
    parts.append("lr " + ",".join(f"{r:.3g}" for r in rates))
    return " | ".join(parts)


class Run:
    """A run directory: checkpoints, TensorBoard logs and exported weights of every training phase.

    Args:
        root: the run directory; created through `urep.io.prepare_run_dir`, which refuses a non-empty one
            unless `overwrite` (delete it first) or `resume` (continue it).
        overwrite: replace an existing run directory.
        resume: continue an interrupted run: finished phases are restored and skipped, an unfinished
            phase restarts after its last checkpointed epoch.

    Raises:
        urep.io.RunDirExistsError: the directory holds a run and neither flag was given.
    """

    def __init__(self, root: str | Path, overwrite: bool = False, resume: bool = False) -> None:
        self.root = prepare_run_dir(root, overwrite=overwrite, resume=resume)
        self.resume = resume
        self._writers: dict[tuple[str, str], object] = {}

    def checkpoint(self, phase: str) -> PhaseCheckpoint:
        """Checkpoints of `phase` (e.g. "source", "independent/seg", "joint")."""
        return PhaseCheckpoint(self.root / "checkpoints" / phase)

    def writer(self, phase: str, task: str):
        """The TensorBoard file writer of one task in one phase (created once)."""
        import tensorflow as tf

        key = (phase, task)
        if key not in self._writers:
            self._writers[key] = tf.summary.create_file_writer(str(self.root / "tensorboard" / phase / task))
        return self._writers[key]

    def log_scalars(self, phase: str, task: str, step: int, values: dict[str, float]) -> None:
        """Write scalars for one task at one epoch to TensorBoard."""
        import tensorflow as tf

        writer = self.writer(phase, task)
        with writer.as_default():
            for key, value in values.items():
                tf.summary.scalar(key, value, step=step)
        writer.flush()

    def close(self) -> None:
        """Close the TensorBoard writers."""
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()
