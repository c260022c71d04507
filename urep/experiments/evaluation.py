"""Test-set evaluation of trained task models: predictions, metrics, fold summaries, fold ensembles, paired tests.

Metrics use urep's names (classification from `urep.metrics.classification_metrics`, segmentation per-image
means from `urep.metrics.segmentation_metrics` plus pooled overlaps from `urep.metrics.pooled_overlap`; the
list: docs/design.md, "Module notes"). Paired tests: McNemar on per-image correctness and DeLong on the AUC
(classification), Wilcoxon signed-rank on per-image IoU (segmentation), on the fold ensemble's predictions
when cross-validated, between methods and of each method against the same run's references (docs/choices.md,
"Paired tests").
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np

__all__ = ["predict", "task_metrics", "summarise_method", "out_of_fold_metrics", "paired_tests"]

CLASSIFICATION_KEYS = ("accuracy", "balanced_accuracy", "auc", "auc_ci_low", "auc_ci_high", "fraction_positive",
                       "max_predicted_fraction", "sensitivity", "specificity", "precision", "f1", "mcc")
SEGMENTATION_KEYS = ("accuracy", "f1", "iou", "dice", "precision", "recall", "hausdorff", "avg_hausdorff")


def predict(model: Any, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Model outputs on `images` in eager batches (no tracing per model), as float32 NumPy."""
    outputs = [np.asarray(model(images[i:i + batch_size], training=False), dtype=np.float32)
               for i in range(0, len(images), batch_size)]
    return np.concatenate(outputs)


def _clean(value: Any) -> Any:
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return None if math.isnan(value) else value
    return value


def task_metrics(kind: str, truth: np.ndarray, outputs: np.ndarray, classes: tuple[str, ...] = ()) -> dict:
    """Metrics of one task model on the test set, under the tables' names.

    Args:
        kind: `classification` or `segmentation`.
        truth: `(N,)` class indices, or `(N, H, W, 1)` masks.
        outputs: `(N, K)` probabilities, or `(N, H, W, 1)` mask probabilities.
        classes: class names (classification).

    Returns:
        `{metric: float | None}` (None where undefined, e.g. an AUC with one class present).
    """
    from urep.metrics import classification_metrics, pooled_overlap, segmentation_metrics

    if kind == "classification":
        m = classification_metrics(truth, outputs, class_names=list(classes) or None)
        return {k: _clean(m[k]) for k in CLASSIFICATION_KEYS}
    m = segmentation_metrics(truth, outputs)
    values = {"accuracy": m["pixel_accuracy"], "f1": m["dice"], **{k: m[k] for k in SEGMENTATION_KEYS[2:]}}
    soft, hard = pooled_overlap(truth, outputs), pooled_overlap(truth, outputs, threshold=0.5)
    values.update({"iou_pooled": soft["iou"], "dice_pooled": soft["dice"], "iou_pooled_05": hard["iou"],
                   "dice_pooled_05": hard["dice"]})
    return {k: _clean(v) for k, v in values.items()}


def per_image_scores(kind: str, truth: np.ndarray, outputs: np.ndarray) -> np.ndarray:
    """Correctness (classification, bool) or IoU (segmentation) of every test image."""
    if kind == "classification":
        return outputs.argmax(axis=-1) == truth
    from urep.metrics import segmentation_metrics

    return np.asarray(segmentation_metrics(truth, outputs)["per_image"]["iou"], dtype=np.float64)


def summarise_method(kind: str, truth: np.ndarray, fold_outputs: list[np.ndarray],
                     classes: tuple[str, ...] = ()) -> dict:
    """Metrics of one method on one task: per fold, mean and std over folds, and the fold ensemble.

    Args:
        kind: task kind.
        truth: test targets.
        fold_outputs: test outputs of each fold model (one entry without cross-validation).
        classes: class names.

    Returns:
        `{"metrics": {m: mean}, "std": {m: std}, "folds": [{m: v}], "ensemble": {m: v} | None,
        "n_test": int, "constant_predictions": [...]}`. Without folds `metrics` is the single model's and
        `std` is empty. `constant_predictions` lists the fold models of a classification task that predict one
        class for >= 95% of a roughly balanced test set (`urep.metrics.constant_prediction`).
    """
    folds = [task_metrics(kind, truth, out, classes) for out in fold_outputs]
    constant = []
    if kind == "classification":
        from urep.metrics import constant_prediction

        for fold, out in enumerate(fold_outputs):
            flag = constant_prediction(truth, out, classes or None)
            if flag is not None:
                constant.append({"fold": fold, **flag})
    if len(folds) == 1:
        return {"metrics": folds[0], "std": {}, "folds": folds, "ensemble": None, "n_test": int(len(truth)),
                "constant_predictions": constant}
    means, stds = {}, {}
    for key in folds[0]:
        values = np.array([f[key] for f in folds if f[key] is not None], dtype=np.float64)
        means[key] = float(values.mean()) if values.size else None
        stds[key] = float(values.std(ddof=1)) if values.size > 1 else None
    ensemble = task_metrics(kind, truth, np.mean(fold_outputs, axis=0), classes)
    return {"metrics": means, "std": stds, "folds": folds, "ensemble": ensemble, "n_test": int(len(truth)),
            "constant_predictions": constant}


def out_of_fold_metrics(kind: str, truth: np.ndarray, validation: list[tuple[np.ndarray, np.ndarray]],
                        classes: tuple[str, ...] = ()) -> dict | None:
    """In-domain metrics: every fold model on its own validation patients, pooled over the folds.

    With k-fold cross-validation every training-pool image is scored once, by the model that did not train on
    it (out-of-fold); without folds it is the single validation split. The validation images also chose the
    epoch (early stopping), so these numbers are slightly optimistic.

    Args:
        kind: task kind.
        truth: targets of the whole training pool (`(N,)` labels or `(N, H, W, 1)` masks).
        validation: per fold, `(pool indices, outputs on those images)`.
        classes: class names.

    Returns:
        `{"metrics": {m: v}, "n": images scored, "folds": number of folds}`, or None without validation outputs.
    """
    if not validation:
        return None
    index = np.concatenate([np.asarray(i, dtype=np.int64) for i, _ in validation])
    outputs = np.concatenate([o for _, o in validation])
    if len(index) != len(outputs):
        raise ValueError(f"out-of-fold metrics: {len(index)} validation indices but {len(outputs)} outputs")
    return {"metrics": task_metrics(kind, truth[index], outputs, classes), "n": int(len(index)),
            "folds": len(validation)}


def ensemble_outputs(fold_outputs: list[np.ndarray]) -> np.ndarray:
    """Mean of the fold models' outputs (probabilities or mask probabilities)."""
    return np.mean(fold_outputs, axis=0)


def paired_tests(task: str, kind: str, truth: np.ndarray, outputs: dict[str, np.ndarray],
                 tests: tuple[str, ...], alpha: float, references: dict[str, np.ndarray] | None = None) -> list[dict]:
    """Paired tests between every pair of methods on one task, and of every method against every reference.

    Classification: McNemar on per-image correctness (`mcnemar`) and DeLong on the AUCs (`delong`, binary
    tasks); segmentation: Wilcoxon on per-image IoU (`wilcoxon`); each when listed in `tests`.

    Args:
        task: task name (recorded).
        kind: task kind.
        truth: test targets.
        outputs: method -> test outputs (ensemble when cross-validated), same images.
        tests: the configured tests.
        alpha: significance level (recorded as `significant`).
        references: reference -> test outputs on the same images (e.g. the U-Net, PCA + logistic regression);
            each method is tested against each (references are not tested against each other).

    Returns:
        One dict per pair and test: `task, a, b, test, on, statistic, p_value, significant, n, detail`.
    """
    from urep.statistics import delong, mcnemar, wilcoxon_paired

    everything = {**outputs, **(references or {})}
    scores = {m: per_image_scores(kind, truth, out) for m, out in everything.items()}
    pairs = [*itertools.combinations(outputs, 2), *itertools.product(outputs, references or {})]
    binary = kind == "classification" and next(iter(everything.values())).shape[-1] == 2 \
        and np.unique(truth).size == 2

    def record(a: str, b: str, test: str, on: str, statistic: float, p_value: float, detail: dict) -> dict:
        return {"task": task, "a": a, "b": b, "test": test, "on": on, "statistic": statistic, "p_value": p_value,
                "significant": bool(p_value < alpha), "n": int(len(truth)), "detail": detail}

    records = []
    for a, b in pairs:
        if kind == "classification" and "mcnemar" in tests:
            result = mcnemar(scores[a], scores[b])
            records.append(record(a, b, "mcnemar", "per-image correctness", result.statistic, result.p_value,
                                  {"b": result.b, "c": result.c, "method": result.method}))
        if binary and "delong" in tests:
            result = delong(truth, everything[a][:, 1], everything[b][:, 1])
            records.append(record(a, b, "delong", "AUC", result.statistic, result.p_value,
                                  {"auc_a": result.auc_a, "auc_b": result.auc_b, "difference": result.difference,
                                   "note": result.note}))
        if kind == "segmentation" and "wilcoxon" in tests:
            result = wilcoxon_paired(scores[a], scores[b])
            records.append(record(a, b, "wilcoxon", "per-image IoU", result.statistic, result.p_value,
                                  {"median_difference": result.median_difference, "note": result.note}))
    return records
