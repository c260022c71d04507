"""Data of an experiment: generate or load each configured source, cut task tables, read arrays, split.

Phantom sources are generated into `RUN_DIR/data/NAME/` (kept on `--resume`); the others are read with
`urep.data.datasets.load(adapter, root, **options)`. Arrays are `float32` images `(N, H, W, C)` in [0, 1]
(grayscale repeated when `channels == 3`), masks `(N, H, W, 1)` in {0, 1}, labels `int32` class indices.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from urep.experiments.config import DataSource, ExperimentConfig, TaskConfig, source_root
from urep.run_dir import RunDir

logger = logging.getLogger(__name__)

__all__ = ["TaskArrays", "load_sources", "task_frame", "read_arrays", "patient_split", "patient_folds",
           "source_summary"]


@dataclass
class TaskArrays:
    """Images with their targets, and the patient of each image (for splits).

    Attributes:
        images: `(N, H, W, C)` float32 in [0, 1].
        masks: `(N, H, W, 1)` float32 in {0, 1}, or None.
        labels: `(N,)` int32 class indices, or None.
        patients: `(N,)` patient ids.
    """

    images: np.ndarray
    masks: np.ndarray | None
    labels: np.ndarray | None
    patients: np.ndarray

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, index: np.ndarray) -> TaskArrays:
        """The rows `index` (an integer array)."""
        return TaskArrays(self.images[index], None if self.masks is None else self.masks[index],
                          None if self.labels is None else self.labels[index], self.patients[index])


def _generate(name: str, source: DataSource, run_dir: Path) -> Path:
    from urep.data import phantoms

    spec = source.phantom
    out = RunDir(run_dir).data / name
    if (out / "manifest.csv").is_file():
        logger.info("phantom source %s already generated in %s", name, out)
        return out
    logger.info("generating %s phantoms for source %s: %d patients x %d, %dpx, seed %d", spec.generator, name,
                spec.n_patients, spec.per_patient, spec.size, spec.seed)
    if spec.generator == "cxr":
        phantoms.make_cxr_phantoms(out, n_patients=spec.n_patients, views_per_patient=spec.per_patient,
                                   size=spec.size, seed=spec.seed, overwrite=True, **spec.options)
    else:
        phantoms.make_doppler_phantoms(out, n_patients=spec.n_patients, images_per_patient=spec.per_patient,
                                       size=spec.size, seed=spec.seed, overwrite=True, **spec.options)
    return out


def _limit(df: pd.DataFrame, limit: int | None, seed: int) -> pd.DataFrame:
    """Keep whole patients, drawn in a seeded order, until `limit` images."""
    if limit is None or len(df) <= limit:
        return df
    patients = df["patient"].drop_duplicates().to_numpy()
    order = np.random.default_rng(seed).permutation(len(patients))
    counts = df.groupby("patient").size()
    keep, total = [], 0
    for i in order:
        n = int(counts[patients[i]])
        if total + n > limit and keep:
            continue
        keep.append(patients[i])
        total += n
        if total >= limit:
            break
    return df[df["patient"].isin(keep)].reset_index(drop=True)


def load_sources(config: ExperimentConfig, run_dir: str | os.PathLike,
                 data_root: str | os.PathLike | None = None) -> dict[str, pd.DataFrame]:
    """Every data source of `config` as a DataFrame (`image, mask, label, patient, dataset, ...`).

    Raises:
        urep.data.DatasetError: an adapter cannot read its folder.
    """
    from urep.data import datasets

    run_dir = Path(run_dir)
    frames: dict[str, pd.DataFrame] = {}
    for name, source in config.data.items():
        if source.include:
            continue
        if source.phantom is not None:
            df = datasets.load("folder", _generate(name, source, run_dir), dataset=name, **source.options)
        else:
            df = datasets.load(source.adapter, source_root(source, data_root), **source.options)
        df = _limit(df, source.limit, config.seed)
        df = df.assign(patient=df["patient"].astype(str).map(lambda p, n=name: f"{n}/{p}"))
        frames[name] = df
        logger.info("data source %s: %d images, %d patients", name, len(df), df["patient"].nunique())
    for name, source in config.data.items():
        if source.include:
            frames[name] = pd.concat([frames[n] for n in source.include], ignore_index=True)
    return frames


def source_summary(frames: dict[str, pd.DataFrame]) -> dict:
    """Sample sizes per source (images, patients, label counts) for `results.json`."""
    out = {}
    for name, df in frames.items():
        labels = df["label"].fillna("").astype(str)
        out[name] = {"images": int(len(df)), "patients": int(df["patient"].nunique()),
                     "labels": {k: int(v) for k, v in labels[labels != ""].value_counts().sort_index().items()}}
    return out


def task_frame(df: pd.DataFrame, task: TaskConfig, where: str = "") -> pd.DataFrame:
    """The rows a task can use: labelled with one of its classes (classification) or with a mask.

    Raises:
        ValueError: the label column is missing, or no row remains.
    """
    if task.kind == "classification":
        if task.label not in df.columns:
            raise ValueError(f"task {task.name!r}: no label column {task.label!r} in data {where!r}; "
                             f"columns: {list(df.columns)}")
        values = df[task.label].fillna("").astype(str).str.strip()
        known = values.isin(task.classes)
        rows = df[known].assign(**{task.label: values[known]})
        unknown = values[~known & (values != "")].value_counts()
        if len(unknown):
            found = ", ".join(f"{label!r} ({count})" for label, count in unknown.sort_index().items())
            logger.warning("task %s: %d row(s) of data %r left out, their %s is not one of %s: %s", task.name,
                           int(unknown.sum()), where, task.label, list(task.classes), found)
    else:
        has_mask = df["has_mask"] if "has_mask" in df.columns else df["mask"].notna()
        rows = df[has_mask.astype(bool)]
    if rows.empty:
        raise ValueError(f"task {task.name!r}: no usable rows in data {where!r} (classes {list(task.classes)}, "
                         f"kind {task.kind})")
    return rows.reset_index(drop=True)


_IMAGE_CACHE: dict[tuple[str, tuple[int, int]], np.ndarray] = {}


def _read(path: str, size: tuple[int, int]) -> np.ndarray:
    from urep.data import read_image

    key = (path, size)
    if key not in _IMAGE_CACHE:
        _IMAGE_CACHE[key] = read_image(path, size=size)
    return _IMAGE_CACHE[key]


def read_arrays(df: pd.DataFrame, image_size: tuple[int, int], channels: int = 1,
                label_column: str | None = None, classes: tuple[str, ...] = (),
                masks: bool = False, standardize: dict | None = None) -> TaskArrays:
    """Read the images (and masks, labels) of `df` resized to `image_size` (OpenCV, via `urep.data`).

    Args:
        df: rows with `image` (and `mask`) paths and `patient`.
        image_size: `(height, width)`.
        channels: 1, or 3 (grayscale repeated, for the paper's 3-channel U-Rep 2).
        label_column: column with class names; None reads no labels.
        classes: class names, in output index order.
        masks: read the masks too.
        standardize: keyword arguments of `urep.data.standardize.standardize_images` (per-image intensity
            standardisation after resizing, e.g. `PreprocessingConfig.options()`); None leaves the images.

    Returns:
        A `TaskArrays`.
    """
    from urep.data import read_mask

    size = (int(image_size[0]), int(image_size[1]))
    images = np.stack([_read(str(p), size) for p in df["image"]]).astype(np.float32)[..., None]
    if standardize is not None:
        from urep.data.standardize import standardize_images

        images = standardize_images(images, **standardize)
    if channels == 3:
        images = np.repeat(images, 3, axis=-1)
    mask_array = None
    if masks:
        mask_array = np.stack([read_mask(str(p), size=size) for p in df["mask"]]).astype(np.float32)[..., None]
    labels = None
    if label_column is not None:
        index = {c: i for i, c in enumerate(classes)}
        labels = np.array([index[str(v)] for v in df[label_column]], dtype=np.int32)
    return TaskArrays(images, mask_array, labels, df["patient"].astype(str).to_numpy())


def patient_split(patients: np.ndarray, fractions: tuple[float, float, float], seed: int,
                  labels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train/val/test row indices with no patient in two parts (journal: 70/20/10 at the patient level).

    Patients are shuffled with `seed` and cut by cumulative image count; each part gets at least one patient
    when there are enough. `labels` is accepted for symmetry with stratified splitters and unused.
    """
    del labels
    unique = pd.unique(patients)
    order = np.random.default_rng(seed).permutation(len(unique))
    unique = unique[order]
    counts = pd.Series(patients).value_counts()
    cumulative = np.cumsum([counts[p] for p in unique]) / len(patients)
    n_train = max(1, int(np.searchsorted(cumulative, fractions[0] - 1e-9) + 1))
    n_val_end = max(n_train + (1 if fractions[1] > 0 else 0),
                    int(np.searchsorted(cumulative, fractions[0] + fractions[1] - 1e-9) + 1))
    if fractions[2] > 0:
        n_val_end = min(n_val_end, len(unique) - 1)
        n_train = min(n_train, n_val_end - (1 if fractions[1] > 0 else 0))
    parts = (set(unique[:n_train]), set(unique[n_train:n_val_end]), set(unique[n_val_end:]))
    return tuple(np.flatnonzero(np.isin(patients, list(part))) for part in parts)


def patient_folds(patients: np.ndarray, k: int, seed: int, labels: np.ndarray | None = None,
                  val_fraction: float = 0.2) -> list[tuple[np.ndarray, np.ndarray]]:
    """K patient-grouped folds: `(train_index, val_index)` pairs (journal: 10-fold CV of the heads).

    Uses scikit-learn's `StratifiedGroupKFold` (stratified on `labels` when given, else `GroupKFold` after a
    seeded shuffle of the patients). Each fold's held-out part is its validation set (early stopping); the
    test set is separate.
    """
    from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

    del val_fraction
    n_groups = len(pd.unique(patients))
    if k > n_groups:
        raise ValueError(f"{k}-fold cross-validation needs at least {k} patients, got {n_groups}")
    index = np.arange(len(patients))
    if labels is not None:
        splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
        return [(train, val) for train, val in splitter.split(index, labels, groups=patients)]
    unique = pd.unique(patients)
    shuffled = dict(zip(unique, np.random.default_rng(seed).permutation(len(unique)), strict=True))
    groups = np.array([shuffled[p] for p in patients])
    return [(train, val) for train, val in GroupKFold(n_splits=k).split(index, groups=groups)]
