"""Run management: run directory, resumable phase checkpoints, TensorBoard, progress lines and bar, NaN stop.

Under `RUN_DIR/checkpoints/PHASE/`: `epochs/`, `best/` and `final/` (`tf.train.CheckpointManager` slots of
one `tf.train.Checkpoint` over a dict {variable path: variable}, so restoring does not depend on the order
of the variables), `state.json` (the commit point, written atomically after the checkpoint it names) and
`TASK.weights.h5` (each task model's kept weights, Keras format); TensorBoard scalars go to
`RUN_DIR/tensorboard/PHASE/TASK/`. Why a dict of variables and not the Keras objects: docs/design.md.
"""

from __future__ import annotations

import json
import logging
import math
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf

from urep.io import atomic_write_json, prepare_run_dir
from urep.run_dir import RunDir

logger = logging.getLogger(__name__)

_ROOT = "variables"  # the checkpoint's one tracked object: {key: variable}
_VALUE = "/.ATTRIBUTES/VARIABLE_VALUE"
_SLOTS = {"epoch": ("epochs", None), "best": ("best", 2), "final": ("final", 1)}  # folder, kept (None: keep)
_AUTO_SUFFIX = re.compile(r"_(\d+)(?=[_/#]|$)")  # Keras' automatic name counters: dense_3, adam_1


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


def variable_keys(variables: Sequence) -> list[str]:
    """The checkpoint key of each variable: its Keras path (the name of a plain TF variable), `#k` added to
    the k-th repeat of a path."""
    keys, seen = [], {}
    for variable in variables:
        path = getattr(variable, "path", None) or variable.name
        count = seen.get(path, 0)
        seen[path] = count + 1
        keys.append(path if count == 0 else f"{path}#{count}")
    return keys


def _auto_numbers(key: str) -> tuple[int, ...]:
    return tuple(int(n) for n in _AUTO_SUFFIX.findall(key))


def match_keys(saved: Sequence[str], wanted: Sequence[str], where: str | Path) -> dict[str, int]:
    """Pair the keys of a checkpoint with the keys of the variables to restore: {saved key: index in wanted}.

    Equal key sets pair by name. Otherwise the keys are compared without Keras' automatic `_N` name
    suffixes (global counters, so a model rebuilt in the same process gets other ones) and, within each such
    group, paired in the order of the counters, i.e. of creation.

    Raises:
        ValueError: the keys differ beyond those suffixes (names the keys found on one side only).
    """
    if set(saved) == set(wanted):
        return {key: i for i, key in enumerate(wanted)}
    groups: dict[str, tuple[list[str], list[int]]] = {}
    for key in saved:
        groups.setdefault(_AUTO_SUFFIX.sub("", key), ([], []))[0].append(key)
    for i, key in enumerate(wanted):
        groups.setdefault(_AUTO_SUFFIX.sub("", key), ([], []))[1].append(i)
    unmatched = [(keys, indices) for keys, indices in groups.values() if len(keys) != len(indices)]
    if unmatched:
        only_saved = sorted(key for keys, _ in unmatched for key in keys)[:5]
        only_run = sorted(wanted[i] for _, indices in unmatched for i in indices)[:5]
        raise ValueError(f"checkpoint {where} does not match the run's variables ({len(saved)} saved, "
                         f"{len(wanted)} in the run): only in the checkpoint {only_saved}, only in the run "
                         f"{only_run}; was it written by a different model or strategy?")
    mapping = {}
    for keys, indices in groups.values():
        keys = sorted(keys, key=lambda k: (_auto_numbers(k), k))
        indices = sorted(indices, key=lambda i: (_auto_numbers(wanted[i]), wanted[i]))
        mapping.update(zip(keys, indices, strict=True))
    return mapping


def saved_variables(prefix: str | Path) -> dict[str, list[int]]:
    """The variables of a checkpoint written by `PhaseCheckpoint`: {key: shape}."""
    found = {}
    for name, shape in tf.train.list_variables(str(prefix)):
        if name.startswith(_ROOT + "/") and name.endswith(_VALUE):
            escaped = name[len(_ROOT) + 1:-len(_VALUE)]
            found[re.sub(r"\.([S.])", lambda m: "/" if m.group(1) == "S" else ".", escaped)] = shape
    return found


def restore_variables(prefix: str | Path, variables: Sequence, into: Sequence | None = None) -> None:
    """Assign the values of checkpoint `prefix` to `variables`, paired by key (see `match_keys`).

    Args:
        prefix: checkpoint prefix (without `.index`).
        variables: the variables the checkpoint was written for (their paths give the keys).
        into: variables of the same shapes to receive the values instead (default `variables`).

    Raises:
        ValueError: the keys do not pair up, or a shape differs.
    """
    saved = saved_variables(prefix)
    mapping = match_keys(list(saved), variable_keys(variables), prefix)
    targets = variables if into is None else into
    for key, index in mapping.items():
        if tuple(saved[key]) != tuple(targets[index].shape):
            raise ValueError(f"checkpoint {prefix}: variable {key} has shape {tuple(saved[key])}, the run's "
                             f"{variable_keys(variables)[index]} has {tuple(targets[index].shape)}")
    status = tf.train.Checkpoint(**{_ROOT: {key: targets[i] for key, i in mapping.items()}}).read(str(prefix))
    status.expect_partial().assert_existing_objects_matched()


def read_values(prefix: str | Path, variables: Sequence) -> list[np.ndarray]:
    """The values of checkpoint `prefix` for `variables` (paired as in `restore_variables`), left unassigned."""
    fresh = [tf.Variable(tf.zeros(v.shape, dtype=v.dtype), trainable=False) for v in variables]
    restore_variables(prefix, variables, into=fresh)
    return [v.numpy() for v in fresh]


def snapshot(variables: Sequence) -> list[np.ndarray]:
    """Copies of the current values of `variables` (an in-memory checkpoint)."""
    return [np.array(v.numpy(), copy=True) for v in variables]


def restore_snapshot(variables: Sequence, values: Sequence[np.ndarray]) -> None:
    """Assign values taken by `snapshot`."""
    for variable, value in zip(variables, values, strict=True):
        variable.assign(value)


class PhaseCheckpoint:
    """Resumable checkpoints of one training phase in `directory`.

    Three `tf.train.CheckpointManager` slots: `epochs/` (the last `keep` epochs, every variable), `best/`
    (model variables of the best epoch) and `final/`; `state.json`, written after the checkpoint it names,
    is the commit point.

    Args:
        directory: the phase's folder.
        keep: epoch checkpoints kept (at least 2: the one `state.json` names survives the next save).

    Raises:
        ValueError: `keep` below 2.
    """

    def __init__(self, directory: Path, keep: int = 2) -> None:
        if keep < 2:
            raise ValueError(f"keep must be at least 2 (the committed checkpoint must survive the next save), "
                             f"got {keep}")
        self.directory = Path(directory)
        self.keep = keep
        self._managers: dict[tuple, tf.train.CheckpointManager] = {}

    @property
    def state_path(self) -> Path:
        return self.directory / "state.json"

    def _manager(self, slot: str, variables: Sequence) -> tf.train.CheckpointManager:
        key = (slot, *map(id, variables))
        if key not in self._managers:
            checkpoint = tf.train.Checkpoint(**{_ROOT: dict(zip(variable_keys(variables), variables, strict=True))})
            self._managers[key] = tf.train.CheckpointManager(
                checkpoint, str(self.directory / _SLOTS[slot][0]), max_to_keep=_SLOTS[slot][1] or self.keep,
                checkpoint_name=slot)
        return self._managers[key]

    def _write(self, slot: str, epoch: int, variables: Sequence) -> str:
        prefix = self._manager(slot, variables).save(checkpoint_number=epoch)
        return Path(prefix).relative_to(self.directory).as_posix()

    def _exists(self, name: str | None) -> bool:
        return name is not None and (self.directory / f"{name}.index").exists()

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
        if str(state.get("checkpoint")).endswith(".npz"):
            raise ValueError(f"checkpoint state {self.state_path} names {state['checkpoint']}, an `.npz` "
                             "checkpoint of an older urep; start the run again with --overwrite")
        if not self._exists(state.get("checkpoint")):
            missing = self.directory / str(state.get("checkpoint"))
            raise ValueError(f"checkpoint state {self.state_path} names {missing}, which does not exist")
        return state

    def save(self, epoch: int, variables: Sequence, state: dict, final: bool = False) -> None:
        """Write the variables after epoch `epoch` (1-based), then commit `state` pointing at them.

        Args:
            epoch: epochs completed.
            variables: every variable of the phase (models, optimizers, loss weights, seed generators).
            state: JSON-ready state (history, controllers, times).
            final: the phase's final weights (the `final/` slot) instead of an epoch checkpoint.
        """
        name = self._write("final" if final else "epoch", epoch, variables)
        atomic_write_json(self.state_path, {**state, "checkpoint": name})

    def save_best(self, epoch: int, variables: Sequence) -> str:
        """Write the model variables of the best epoch so far; returns the name to record in the state."""
        return self._write("best", epoch, variables)

    def restore(self, state: dict, variables: Sequence) -> None:
        """Assign the variables saved with `state`."""
        restore_variables(self.directory / state["checkpoint"], variables)

    def best_values(self, state: dict, variables: Sequence) -> list[np.ndarray] | None:
        """The best epoch's values of `variables` recorded in `state` (not assigned), or None when absent."""
        name = state.get("best_checkpoint")
        return read_values(self.directory / name, variables) if self._exists(name) else None


def progress_enabled(flag: bool | None) -> bool:
    """The progress bar is shown when asked, or by default when stdout (where Keras draws it) is a terminal."""
    if flag is not None:
        return flag
    return bool(getattr(sys.stdout, "isatty", lambda: False)())


class ProgressBar:
    """One `keras.utils.Progbar` for a whole training phase (all its epochs); does nothing when disabled.

    What it adds to a bare `Progbar`: the phase label, a step count that runs on across epochs (and starts
    after the epochs a resumed phase skips), running means shown as given, and an end on early stopping.

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
        return PhaseCheckpoint(RunDir(self.root).checkpoint(phase))

    def writer(self, phase: str, task: str):
        """The TensorBoard file writer of one task in one phase (created once)."""
        import tensorflow as tf

        key = (phase, task)
        if key not in self._writers:
            self._writers[key] = tf.summary.create_file_writer(str(RunDir(self.root).tensorboard / phase / task))
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
