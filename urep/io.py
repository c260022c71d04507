"""Safe writing: atomic files and run directories that are never overwritten by accident.

Atomic writes go through a temporary file in the target folder and `os.replace`, so a crash (even SIGKILL)
leaves the old file or none, never a partial one; the new file gets the mode the process umask gives
(as `open()` would), not the temporary file's 0600. Every run directory urep creates carries a marker
file (`MARKER`); `--overwrite` deletes only folders that carry it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from urep.run_dir import MARKER, RunDir

_UMASK_LOCK = threading.Lock()


class RunDirExistsError(FileExistsError):
    """A run directory already holds results and overwriting was not asked for."""


class RunDirError(ValueError):
    """A run directory cannot be used as asked: `--out` is a file, a folder without urep's marker was to be
    deleted, or `--resume` and `--overwrite` were both given."""


def _file_mode() -> int:
    """The mode `open()` would give a new file: 0o666 minus the process umask."""
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return 0o666 & ~mask


def _json_default(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__} to JSON: {value!r}")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` through a temporary file in the same folder and a rename.

    An interrupted write leaves either the old file or no file, never a truncated one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, _file_mode())
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Atomically write UTF-8 text (see `atomic_write_bytes`)."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Atomically write `obj` as indented JSON; NumPy scalars and arrays are converted."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def atomic_save(path: str | os.PathLike, save_fn) -> Path:
    """Atomically produce a file with a library saver: `save_fn(tmp_path)` writes, then it is renamed.

    The temporary name ends with the whole final name (e.g. `.weights.h5`, `.keras`, `.png`) because
    savers check the suffix.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp{os.getpid()}.{path.name}")
    try:
        save_fn(tmp)
        os.replace(tmp, path)
    except BaseException:
        if tmp.exists():
            tmp.unlink()
        raise
    return path


class ModelFileError(ValueError):
    """A saved Keras model file exists but cannot be loaded (damaged, truncated, not a `.keras` archive)."""


def load_keras_model(path: str | os.PathLike, **kwargs: Any):
    """`keras.saving.load_model(path, compile=False, **kwargs)` with errors that name the file and the cause.

    Keras reports a damaged `.keras` file as "File not found"; this checks the file first.

    Raises:
        FileNotFoundError: no such file.
        ModelFileError: the file is not a readable `.keras` zip archive or Keras cannot rebuild the model.
    """
    import zipfile

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file {path} not found")
    if path.suffix == ".keras" and not zipfile.is_zipfile(path):
        raise ModelFileError(f"model file {path} is damaged or not a .keras file (not a zip archive; "
                             f"{path.stat().st_size} bytes)")
    import keras

    kwargs.setdefault("compile", False)
    try:
        return keras.saving.load_model(path, **kwargs)
    except (ValueError, OSError, KeyError, zipfile.BadZipFile) as err:
        raise ModelFileError(f"model file {path} cannot be loaded: {type(err).__name__}: {err}") from err


def is_run_dir(path: str | os.PathLike) -> bool:
    """Whether `path` is a folder carrying urep's run marker (`MARKER`)."""
    return RunDir(path).marker.is_file()


def mark_run_dir(path: str | os.PathLike) -> Path:
    """Write the run marker into the folder `path` (kept when it is already there)."""
    marker = RunDir(path).marker
    if not marker.is_file():
        from urep import __version__

        atomic_write_json(marker, {"urep": __version__, "created": datetime.now(UTC).isoformat(timespec="seconds")})
    return marker


def check_run_dir(path: str | os.PathLike, overwrite: bool = False, resume: bool = False) -> None:
    """Check, without touching anything, that `prepare_run_dir` would accept these arguments.

    Raises:
        RunDirError: `resume` and `overwrite` together, `path` is a file, or `overwrite` of a non-empty
            folder that is not a urep run directory.
        RunDirExistsError: the folder is not empty and neither flag was given.
    """
    path = Path(path)
    if resume and overwrite:
        raise RunDirError("--resume and --overwrite exclude each other: --resume continues the run in "
                          f"{path}, --overwrite deletes it")
    if path.exists() and not path.is_dir():
        raise RunDirError(f"{path} is a file, not a folder; --out needs a new or empty folder or a urep run "
                          "directory")
    if not (path.is_dir() and any(path.iterdir())) or resume:
        return
    if not overwrite:
        raise RunDirExistsError(
            f"run directory {path} already exists and is not empty; pass --overwrite to replace it "
            "or --resume to continue it"
        )
    if not is_run_dir(path):
        raise RunDirError(f"refusing to delete {path}: it is not a urep run directory (no {MARKER} marker "
                          "file); delete it yourself or choose another --out")


def remove_run_dir(path: str | os.PathLike) -> None:
    """Delete a urep run directory; refuses (`RunDirError`) a folder without the run marker."""
    path = Path(path)
    if not path.exists():
        return
    if not is_run_dir(path):
        raise RunDirError(f"refusing to delete {path}: it is not a urep run directory (no {MARKER} marker "
                          "file)")
    shutil.rmtree(path)


def prepare_run_dir(path: str | os.PathLike, overwrite: bool = False, resume: bool = False) -> Path:
    """Create a run directory, refusing to reuse a non-empty one unless `overwrite` or `resume`.

    A new or empty folder gets urep's run marker; `overwrite` deletes only a folder that carries it
    (validate everything else before calling this).

    Raises:
        RunDirExistsError: the folder exists and is not empty, and neither flag was given.
        RunDirError: see `check_run_dir`.
    """
    path = Path(path)
    check_run_dir(path, overwrite=overwrite, resume=resume)
    if path.is_dir() and any(path.iterdir()):
        if resume:
            return path
        remove_run_dir(path)
    path.mkdir(parents=True, exist_ok=True)
    mark_run_dir(path)
    return path
