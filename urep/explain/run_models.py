"""Read (and write) the trained task models of a run directory, as `urep explain` / `urep recommend` need them.

`RUN_DIR/normalizer.json` and `RUN_DIR/models/manifest.json` (layout: docs/design.md, "Run directory
layout"); task paths are relative to RUN_DIR. Models are loaded lazily (`RunModels.model(task)`) with
`keras.saving.load_model(compile=False)`.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from urep.data import MeanNormalizer, read_image
from urep.io import atomic_save, atomic_write_json

logger = logging.getLogger(__name__)

MANIFEST = Path("models") / "manifest.json"
NORMALIZER = Path("normalizer.json")
CONFIG = Path("config.yaml")
KINDS = ("classification", "segmentation", "reconstruction")


class RunLayoutError(ValueError):
    """A run directory does not follow the documented layout (the message names the file and key)."""


@dataclass(frozen=True)
class TaskEntry:
    """One task of `models/manifest.json`.

    Attributes:
        name: task name (the manifest key).
        path: model file, relative to the run directory.
        kind: `"classification"`, `"segmentation"` or `"reconstruction"`.
        classes: class names in output order (classification), else `None`.
        image_size: `(height, width)` the model expects.
        channels: input channels the model expects (gray images are repeated to fill them).
        strategy: fine-tuning strategy that produced it (informational).
        gradcam_layer: layer explained by Grad-CAM.
    """

    name: str
    path: str
    kind: str
    image_size: tuple[int, int]
    channels: int = 1
    classes: tuple[str, ...] | None = None
    strategy: str | None = None
    gradcam_layer: str = "encoder_out"

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "kind": self.kind,
            "classes": list(self.classes) if self.classes is not None else None,
            "image_size": list(self.image_size),
            "channels": self.channels,
            "strategy": self.strategy,
            "gradcam_layer": self.gradcam_layer,
        }

    @classmethod
    def from_dict(cls, name: str, record: Any, where: str = "manifest") -> TaskEntry:
        """Validate one manifest task entry.

        Raises:
            RunLayoutError: a key is missing or has the wrong type/value (named in the message).
        """
        prefix = f"{where}: task {name!r}"
        if not isinstance(record, Mapping):
            raise RunLayoutError(f"{prefix} must be an object, got {record!r}")
        for key in ("path", "kind", "image_size"):
            if key not in record:
                raise RunLayoutError(f"{prefix} lacks {key!r}")
        if not isinstance(record["path"], str) or not record["path"]:
            raise RunLayoutError(f"{prefix} 'path' must be a relative file path, got {record['path']!r}")
        if record["kind"] not in KINDS:
            raise RunLayoutError(f"{prefix} 'kind' must be one of {KINDS}, got {record['kind']!r}")
        size = record["image_size"]
        if not (isinstance(size, (list, tuple)) and len(size) == 2 and all(_positive_int(v) for v in size)):
            raise RunLayoutError(f"{prefix} 'image_size' must be [height, width], got {size!r}")
        channels = record.get("channels", 1)
        if not _positive_int(channels):
            raise RunLayoutError(f"{prefix} 'channels' must be a positive integer, got {channels!r}")
        classes = record.get("classes")
        if record["kind"] == "classification":
            if not (isinstance(classes, (list, tuple)) and len(classes) >= 2):
                raise RunLayoutError(f"{prefix} is a classification task; 'classes' must list >= 2 names, got {classes!r}")
            classes = tuple(str(c) for c in classes)
        elif classes is not None:
            classes = tuple(str(c) for c in classes)
        layer = record.get("gradcam_layer", "encoder_out")
        if not isinstance(layer, str) or not layer:
            raise RunLayoutError(f"{prefix} 'gradcam_layer' must be a layer name, got {layer!r}")
        return cls(
            name=name,
            path=record["path"],
            kind=record["kind"],
            image_size=(int(size[0]), int(size[1])),
            channels=int(channels),
            classes=classes,
            strategy=record.get("strategy"),
            gradcam_layer=layer,
        )


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


@dataclass
class RunModels:
    """The task models of one run directory.

    Attributes:
        run_dir: the run directory.
        tasks: manifest entries by task name.
        normalizer: the training split's normalizer.
        recommendation: the manifest's rule table (dict form) or `None`.
        recommendation_tasks: `{"flow_task": ..., "quality_task": ...}` from the run's `config.yaml`
            (`recommendation:` section, as `urep run` writes it); empty when the run has none.
        standardize: the run's per-image standardisation (`preprocessing:` of its `config.yaml`, as keyword
            arguments of `urep.data.standardize.standardize_images`), applied by `read_images`; None = none.
    """

    run_dir: Path
    tasks: dict[str, TaskEntry]
    normalizer: MeanNormalizer
    recommendation: dict[str, Any] | None = None
    recommendation_tasks: dict[str, str] = field(default_factory=dict)
    standardize: dict[str, Any] | None = None
    _loaded: dict[str, Any] = field(default_factory=dict, repr=False)

    def entry(self, task: str) -> TaskEntry:
        if task not in self.tasks:
            raise KeyError(f"run {self.run_dir} has no task {task!r}; tasks: {sorted(self.tasks)}")
        return self.tasks[task]

    def tasks_of_kind(self, kind: str) -> list[str]:
        return [name for name, entry in self.tasks.items() if entry.kind == kind]

    def model(self, task: str) -> Any:
        """The Keras model of `task`, loaded on first use (`compile=False`).

        Raises:
            KeyError: no such task.
            FileNotFoundError: the model file is missing.
        """
        if task not in self._loaded:
            path = self.run_dir / self.entry(task).path
            if not path.is_file():
                raise FileNotFoundError(f"model file {path} of task {task!r} (listed in {self.run_dir / MANIFEST}) not found")
            logger.info("loading %s model from %s", task, path)
            from urep.io import load_keras_model

            self._loaded[task] = load_keras_model(path)
        return self._loaded[task]

    def read_images(self, paths: Sequence[str | os.PathLike], task: str) -> tuple[np.ndarray, np.ndarray]:
        """Read image files (DICOM, PNG, ...) as `task`'s model expects them.

        Args:
            paths: image files.
            task: the task whose `image_size` and `channels` apply.

        Returns:
            `(raw, batch)`: `raw` `(N, H, W)` float32 in [0, 1] (for overlays) and `batch` `(N, H, W, C)`
            normalised with the run's normalizer, the gray image repeated over `C` channels.
        """
        entry = self.entry(task)
        raw = np.stack([read_image(path, size=entry.image_size) for path in paths]).astype(np.float32)
        if self.standardize is not None:
            from urep.data.standardize import standardize_images

            raw = standardize_images(raw, **self.standardize)
        batch = self.normalizer.transform(np.repeat(raw[..., None], entry.channels, axis=-1))
        return raw, np.asarray(batch, dtype=np.float32)


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; expected the run directory layout of docs/design.md")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise RunLayoutError(f"{path} is not valid JSON: {error}") from error


def load_run_models(run_dir: str | os.PathLike) -> RunModels:
    """Read `models/manifest.json` and `normalizer.json` of a run directory (models load lazily).

    Args:
        run_dir: the run directory.

    Returns:
        `RunModels`.

    Raises:
        FileNotFoundError: the folder, the manifest, the normalizer or a listed model file is missing.
        RunLayoutError: the manifest is malformed (the message names the key).
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory {run_dir} not found")
    manifest_path = run_dir / MANIFEST
    manifest = _read_json(manifest_path)
    if not isinstance(manifest, Mapping) or not isinstance(manifest.get("tasks"), Mapping) or not manifest["tasks"]:
        raise RunLayoutError(f"{manifest_path} must hold {{'tasks': {{TASK: {{...}}}}}} with at least one task")
    tasks = {
        str(name): TaskEntry.from_dict(str(name), record, str(manifest_path))
        for name, record in manifest["tasks"].items()
    }
    for entry in tasks.values():
        if not (run_dir / entry.path).is_file():
            raise FileNotFoundError(f"model file {run_dir / entry.path} of task {entry.name!r} (in {manifest_path}) not found")
    recommendation = manifest.get("recommendation")
    if recommendation is not None and not isinstance(recommendation, Mapping):
        raise RunLayoutError(f"{manifest_path} 'recommendation' must be an object, got {recommendation!r}")
    normalizer = MeanNormalizer.load(run_dir / NORMALIZER)
    return RunModels(run_dir, tasks, normalizer, dict(recommendation) if recommendation else None,
                     _configured_recommendation_tasks(run_dir / CONFIG), _configured_standardize(run_dir / CONFIG))


def _configured_standardize(config_path: Path) -> dict[str, Any] | None:
    """The `preprocessing:` section of a run's resolved `config.yaml` as `standardize_images` keyword arguments
    (None when absent or `none`: runs written before the option existed read images unchanged)."""
    if not config_path.is_file():
        return None
    import yaml

    from urep.experiments.config import PreprocessingConfig
    from urep.experiments.schema import build

    config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    section = config.get("preprocessing") if isinstance(config, Mapping) else None
    if not section:
        return None
    options = build(PreprocessingConfig, section, "preprocessing", str(config_path)).options()
    return None if options["method"] == "none" else options


def _configured_recommendation_tasks(config_path: Path) -> dict[str, str]:
    """The `recommendation.flow_task` / `quality_task` names of a run's resolved `config.yaml`, if any."""
    if not config_path.is_file():
        return {}
    import yaml

    try:
        config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        logger.warning("%s could not be parsed (%s); recommendation tasks not read from it", config_path, error)
        return {}
    section = config.get("recommendation") if isinstance(config, Mapping) else None
    if not isinstance(section, Mapping):
        return {}
    return {key: str(section[key]) for key in ("flow_task", "quality_task") if section.get(key)}


def save_run_models(
    run_dir: str | os.PathLike,
    models: Mapping[str, Any],
    entries: Mapping[str, TaskEntry],
    normalizer: MeanNormalizer,
    recommendation: Mapping[str, Any] | None = None,
) -> Path:
    """Write task models, `models/manifest.json` and `normalizer.json` in the documented layout (atomically).

    Args:
        run_dir: the run directory (created if needed).
        models: Keras model per task name.
        entries: `TaskEntry` per task name (same names); each model is saved at `run_dir / entry.path`.
        normalizer: the fitted training-split normalizer.
        recommendation: optional rule table (dict form, see `urep.explain.recommendation`).

    Returns:
        The manifest path.

    Raises:
        ValueError: `models` and `entries` name different tasks.
    """
    if set(models) != set(entries):
        raise ValueError(f"models {sorted(models)} and entries {sorted(entries)} must name the same tasks")
    run_dir = Path(run_dir)
    for name, model in models.items():
        atomic_save(run_dir / entries[name].path, model.save)
    normalizer.save(run_dir / NORMALIZER)
    manifest: dict[str, Any] = {"tasks": {name: entries[name].to_dict() for name in entries}}
    if recommendation is not None:
        manifest["recommendation"] = dict(recommendation)
    return atomic_write_json(run_dir / MANIFEST, manifest)
