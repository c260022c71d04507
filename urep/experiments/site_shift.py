"""Why does a classifier not carry from one site to another? Linear probes on raw pixels.

For a classification task trained on `task.data` and tested on `task.test_data`, the run's own reference model
(`references.pca_logistic_probabilities`) gives one ROC AUC per question: can the two sites be told apart
(`site`), is the task learnable inside each (`in-site`, cross-validated by patient), does the source model score
the target (`across sites`). With masks on both sites each question is asked again on lungs only (images times
their ground-truth masks): a diagnosis of cues outside the lungs, not a deployable model. Measurements:
docs/real_data.md.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from urep.experiments.references import pca_logistic_probabilities
from urep.metrics import classification_scores

if TYPE_CHECKING:
    from urep.experiments.config import ExperimentConfig

logger = logging.getLogger(__name__)

__all__ = ["SiteImages", "cross_validated_probabilities", "site_shift_table", "task_sites"]


@dataclass(frozen=True)
class SiteImages:
    """One site's images of a classification task.

    Attributes:
        name: the site's data source name.
        images: `(N, H, W, C)` float32.
        labels: `(N,)` class indices.
        patients: `(N,)` patient ids (folds never split a patient).
        masks: `(N, H, W, 1)` binary lung masks, or None.
    """

    name: str
    images: np.ndarray
    labels: np.ndarray
    patients: np.ndarray
    masks: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.images)
        for what, array in (("labels", self.labels), ("patients", self.patients), ("masks", self.masks)):
            if array is not None and len(array) != n:
                raise ValueError(f"site {self.name!r}: {n} images but {len(array)} {what}")
        if n == 0:
            raise ValueError(f"site {self.name!r}: no images")

    def lungs_only(self) -> SiteImages:
        """The images multiplied by their masks (everything outside the lungs set to 0)."""
        if self.masks is None:
            raise ValueError(f"site {self.name!r}: no masks, so no lungs-only images")
        return SiteImages(self.name, self.images * self.masks, self.labels, self.patients, self.masks)


def cross_validated_probabilities(images: np.ndarray, labels: np.ndarray, patients: np.ndarray, n_classes: int,
                                  folds: int = 5, seed: int = 0, **reference) -> np.ndarray:
    """Out-of-fold probabilities of the PCA + logistic-regression reference.

    Folds are stratified by label and grouped by patient (`sklearn.model_selection.StratifiedGroupKFold`);
    every image is scored once, by the model fitted on the other folds.

    Args:
        reference: `components`, `size` of `pca_logistic_probabilities`.

    Returns:
        `(N, n_classes)` probabilities.

    Raises:
        ValueError: fewer than `folds` images of some class, or `folds < 2`.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    labels = np.asarray(labels, dtype=np.int64)
    counts = np.bincount(labels, minlength=n_classes)
    if folds < 2:
        raise ValueError(f"cross-validation needs folds >= 2, got {folds}")
    if counts[counts > 0].min() < folds:
        raise ValueError(f"cross-validation with {folds} folds needs >= {folds} images of every class, "
                         f"got class counts {counts.tolist()}")
    probs = np.zeros((len(labels), n_classes), dtype=np.float32)
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    for train, test in splitter.split(images, labels, groups=patients):
        probs[test] = pca_logistic_probabilities(images[train], labels[train], images[test], n_classes,
                                                 seed=seed, **reference)
    return probs


def _row(question: str, view: str, labels: np.ndarray, probs: np.ndarray, n_train: int) -> dict:
    scores = classification_scores(labels, probs)
    return {"question": question, "images": view, "auc": scores["auc"],
            "balanced_accuracy": scores["balanced_accuracy"], "n_test": int(len(labels)), "n_train": n_train}


def _questions(source: SiteImages, target: SiteImages, view: str, n_classes: int, folds: int, seed: int,
               reference: dict) -> list[dict]:
    pooled = np.concatenate([source.images, target.images])
    site = np.repeat([0, 1], [len(source.images), len(target.images)])
    groups = np.concatenate([[f"{source.name}/{p}" for p in source.patients],
                             [f"{target.name}/{p}" for p in target.patients]])
    train_share = len(pooled) * (folds - 1) // folds
    rows = [_row(f"site: {source.name} vs {target.name}", view, site,
                 cross_validated_probabilities(pooled, site, groups, 2, folds, seed, **reference), train_share)]
    for one in (source, target):
        probs = cross_validated_probabilities(one.images, one.labels, one.patients, n_classes, folds, seed,
                                              **reference)
        rows.append(_row(f"in-site {one.name}", view, one.labels, probs, len(one.images) * (folds - 1) // folds))
    probs = pca_logistic_probabilities(source.images, source.labels, target.images, n_classes, seed=seed,
                                       **reference)
    rows.append(_row(f"across sites: {source.name} -> {target.name}", view, target.labels, probs,
                     len(source.images)))
    return rows


def site_shift_table(source: SiteImages, target: SiteImages, n_classes: int = 2, folds: int = 5, seed: int = 0,
                     components: int = 30, size: int = 32) -> pd.DataFrame:
    """The module's four questions on whole images, and on lungs only when both sites have masks.

    Returns:
        One row per question and view: `question, images` (`whole` / `lungs only`), `auc`,
        `balanced_accuracy` (of the arg-max), `n_test` (images scored), `n_train` (images per fitted model;
        for the cross-validated rows the nominal `n * (folds - 1) // folds`, grouped folds vary around it).
    """
    reference = {"components": components, "size": size}
    rows = _questions(source, target, "whole", n_classes, folds, seed, reference)
    if source.masks is not None and target.masks is not None:
        rows += _questions(source.lungs_only(), target.lungs_only(), "lungs only", n_classes, folds, seed,
                           reference)
    else:
        logger.info("site shift: no lungs-only rows (masks missing on %s)",
                    " and ".join(s.name for s in (source, target) if s.masks is None))
    return pd.DataFrame(rows)


def task_sites(config: ExperimentConfig, task_name: str, data_root: str | os.PathLike | None = None,
               ) -> tuple[SiteImages, SiteImages]:
    """The training site (`task.data`) and test site (`task.test_data`) of a classification task of `config`,
    read at the config's image size with its `preprocessing`; masks are read where every row of a site has one.

    Raises:
        ValueError: no such task, not a classification task, or no `test_data`.
        urep.data.DatasetError: as `load_sources`.
    """
    from urep.experiments.sources import load_sources, read_arrays, task_frame

    tasks = {task.name: task for task in config.tasks}
    if task_name not in tasks:
        raise ValueError(f"no task {task_name!r} in config {config.name!r}; tasks: {sorted(tasks)}")
    task = tasks[task_name]
    if task.kind != "classification" or task.test_data is None:
        raise ValueError(f"task {task_name!r}: site shift needs a classification task with test_data, got kind "
                         f"{task.kind!r}, test_data {task.test_data!r}")
    with tempfile.TemporaryDirectory(prefix="urep-site-shift-") as scratch:
        frames = load_sources(config, scratch, data_root)
        sites = []
        for where in (task.data, task.test_data):
            df = task_frame(frames[where], task, where)
            has_masks = "mask" in df.columns and bool(df["mask"].notna().all())
            arrays = read_arrays(df, config.image_size, config.channels, label_column=task.label,
                                 classes=task.classes, masks=has_masks,
                                 standardize=config.preprocessing.options())
            sites.append(SiteImages(where, arrays.images, arrays.labels, arrays.patients, arrays.masks))
    return sites[0], sites[1]
