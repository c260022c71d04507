"""Safe writing: atomic files and run directories that are never overwritten by accident."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np


class RunDirExistsError(FileExistsError):
    """A run directory already holds results and overwriting was not asked for."""


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


def prepare_run_dir(path: str | os.PathLike, overwrite: bool = False, resume: bool = False) -> Path:
    """Create a run directory, refusing to reuse a non-empty one unless `overwrite` or `resume`.

    Raises:
        RunDirExistsError: the folder exists and is not empty, and neither flag was given.
    """
    path = Path(path)
    if path.exists() and any(path.iterdir()):
        if resume:
            return path
        if not overwrite:
            raise RunDirExistsError(
                f"run directory {path} already exists and is not empty; pass --overwrite to replace it "
                "or --resume to continue it"
            )
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    return path
