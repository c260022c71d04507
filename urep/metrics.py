"""Evaluation metrics: classification, segmentation, reconstruction, k-fold summaries and fold ensembles.

scikit-learn does the classification arithmetic, `tf.image` PSNR/SSIM/MS-SSIM, SciPy's distance transform the
Hausdorff family; `balanced_scores` is the one implementation of accuracy, balanced accuracy, AUC and the
positive fraction. Every function returns a JSON-ready `dict` of floats; segmentation and reconstruction
metrics also return per-image NumPy arrays under `"per_image"` for paired tests.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import ndimage
from sklearn import metrics as skm

logger = logging.getLogger(__name__)

#: Default MS-SSIM scale weights of Wang et al. 2003 (also the `tf.image.ssim_multiscale` default).
MS_SSIM_POWER_FACTORS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)

EMPTY_DISTANCE_CHOICES = ("diagonal", "nan")

#: (height, width, scales used, scales asked, filter size) already warned about by `reconstruction_metrics`.
_MS_SSIM_WARNED: set[tuple[int, int, int, int, int]] = set()


# --------------------------------------------------------------------------------------------------------
# Classification
# --------------------------------------------------------------------------------------------------------


def _as_labels_and_probs(y_true: Any, y_prob: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validate and normalise classification inputs to labels `(N,)` int and probabilities `(N, K)`."""
    probs = np.asarray(y_prob, dtype=np.float64)
    if probs.ndim == 1:
        probs = np.stack([1.0 - probs, probs], axis=1)
    if probs.ndim != 2 or probs.shape[1] < 2:
        raise ValueError(
            f"y_prob must have shape (N,) (positive-class probability) or (N, K) with K >= 2, got {probs.shape}"
        )
    labels = np.asarray(y_true)
    if labels.ndim == 2:
        if labels.shape != probs.shape:
            raise ValueError(f"one-hot y_true has shape {labels.shape}, expected {probs.shape} like y_prob")
        labels = labels.argmax(axis=1)
    if labels.ndim != 1 or labels.shape[0] != probs.shape[0]:
        raise ValueError(
            f"y_true must be (N,) integer labels or (N, K) one-hot with N = {probs.shape[0]}, got {labels.shape}"
        )
    if labels.size == 0:
        raise ValueError("classification_metrics needs at least one sample, got 0")
    if not np.all(np.isfinite(probs)):
        raise ValueError("y_prob contains NaN or infinite values")
    if not np.issubdtype(labels.dtype, np.integer):
        if not np.all(np.equal(np.mod(labels, 1), 0)):
            raise ValueError(f"y_true must hold integer class indices, got values like {labels[:5]!r}")
        labels = labels.astype(np.int64)
    num_classes = probs.shape[1]
    bad = labels[(labels < 0) | (labels >= num_classes)]
    if bad.size:
        raise ValueError(f"y_true holds class index {int(bad[0])}, outside [0, {num_classes - 1}]")
    return labels, probs


def _safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Elementwise ratio that is 0 where the denominator is 0 (scikit-learn's `zero_division=0`)."""
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    out = np.zeros_like(numerator)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def _auc(labels: np.ndarray, probs: np.ndarray) -> float:
    """ROC AUC: binary on the positive-class column, macro one-vs-rest for K > 2; NaN when undefined."""
    num_classes = probs.shape[1]
    present = np.unique(labels)
    if num_classes == 2:
        if present.size < 2:
            logger.warning("AUC undefined: y_true holds only class %s; reporting NaN", present.tolist())
            return float("nan")
        return float(skm.roc_auc_score(labels, probs[:, 1]))
    if present.size < num_classes:
        missing = sorted(set(range(num_classes)) - set(present.tolist()))
        logger.warning("one-vs-rest AUC undefined: classes %s absent from y_true; reporting NaN", missing)
        return float("nan")
    row_sums = probs.sum(axis=1, keepdims=True)
    return float(skm.roc_auc_score(labels, probs / row_sums, multi_class="ovr", average="macro"))


def classification_metrics(
    y_true: Any,
    y_prob: Any,
    class_names: Sequence[str] | None = None,
    positive_class: int = 1,
) -> dict[str, Any]:
    """Accuracy, AUC, sensitivity, specificity, precision, F-score, MCC and the confusion matrix.

    Averaging (the papers do not say; this is the usual convention):

    * **binary** (K = 2): sensitivity (recall), precision and F-score are those of `positive_class`
      (index 1 = "abnormal" / "TB" / "low quality" by the datasets' label order); specificity is the recall
      of the other class; AUC is the ROC AUC of the positive-class probability.
    * **multi-class** (K > 2): sensitivity, specificity, precision and F-score are **macro** averages of the
      one-vs-rest per-class values (every class weighs the same, whatever its size); AUC is the macro
      one-vs-rest ROC AUC (`sklearn.metrics.roc_auc_score(multi_class="ovr")`).

    MCC is scikit-learn's (the multi-class generalisation for K > 2). Ratios with a zero denominator are 0
    (scikit-learn's `zero_division=0`); AUC is NaN, with a logged warning, when a class is absent from
    `y_true`. Predictions are the arg-max of `y_prob`.

    Args:
        y_true: `(N,)` integer class indices in `[0, K)` or `(N, K)` one-hot.
        y_prob: `(N, K)` class probabilities (rows need not sum exactly to 1), or `(N,)` positive-class
            probabilities of a binary problem.
        class_names: optional `K` names used as keys of `"per_class"`; default `"0"`, `"1"`, ...
        positive_class: the class whose sensitivity/precision/F-score is reported for K = 2.

    `auc_ci_low` / `auc_ci_high` bound a 95% interval of a binary AUC from DeLong's standard error
    (`urep.statistics.auc_interval`; None for K > 2 or when a class is absent): with 40 test images an AUC's
    interval is about +-0.18 wide, which the tables should show beside it.
    Balanced accuracy is scikit-learn's (mean recall over the classes present). `fraction_positive` is the
    fraction of examples predicted `positive_class` (binary; None for K > 2), `max_predicted_fraction` the
    largest fraction predicted as any one class (1.0 = a constant classifier).

    Returns:
        `{"accuracy", "balanced_accuracy", "auc", "auc_ci_low", "auc_ci_high", "fraction_positive",
        "max_predicted_fraction", "sensitivity", "specificity", "precision", "f1", "mcc": float (the interval:
        float | None), "predicted_fractions": list[float],
        "confusion_matrix": list[list[int]] (rows = true class, columns = predicted),
        "per_class": {name: {"sensitivity", "specificity", "precision", "f1", "support"}},
        "class_names": list[str], "averaging": "binary" | "macro", "n": int}`.

    Raises:
        ValueError: shapes disagree, labels are out of range, probabilities are not finite, `class_names`
            has the wrong length, or `positive_class` is not 0 or 1 for a binary problem.
    """
    labels, probs = _as_labels_and_probs(y_true, y_prob)
    num_classes = probs.shape[1]
    if class_names is None:
        class_names = [str(i) for i in range(num_classes)]
    class_names = [str(name) for name in class_names]
    if len(class_names) != num_classes:
        raise ValueError(f"class_names has {len(class_names)} names for {num_classes} probability columns")
    if num_classes == 2 and positive_class not in (0, 1):
        raise ValueError(f"positive_class must be 0 or 1 for a binary problem, got {positive_class!r}")

    predicted = probs.argmax(axis=1)
    cm = skm.confusion_matrix(labels, predicted, labels=list(range(num_classes)))
    tp = np.diag(cm).astype(np.float64)
    fn = cm.sum(axis=1) - tp
    fp = cm.sum(axis=0) - tp
    tn = cm.sum() - tp - fn - fp
    sensitivity = _safe_divide(tp, tp + fn)
    specificity = _safe_divide(tn, tn + fp)
    precision = _safe_divide(tp, tp + fp)
    f1 = _safe_divide(2 * tp, 2 * tp + fp + fn)

    if num_classes == 2:
        index = positive_class
        summary = {
            "sensitivity": sensitivity[index],
            "specificity": specificity[index],
            "precision": precision[index],
            "f1": f1[index],
        }
        averaging = "binary"
    else:
        summary = {
            "sensitivity": sensitivity.mean(),
            "specificity": specificity.mean(),
            "precision": precision.mean(),
            "f1": f1.mean(),
        }
        averaging = "macro"

    predicted_fractions = np.bincount(predicted, minlength=num_classes) / max(predicted.size, 1)
    scores = _balanced_scores(labels, probs, predicted)
    interval = _auc_interval(labels, probs)
    return {
        "accuracy": scores["accuracy"],
        "balanced_accuracy": scores["balanced_accuracy"],
        "auc": scores["auc"],
        "auc_ci_low": interval[0],
        "auc_ci_high": interval[1],
        "fraction_positive": float(predicted_fractions[positive_class]) if num_classes == 2 else None,
        "max_predicted_fraction": float(predicted_fractions.max()),
        "predicted_fractions": [float(f) for f in predicted_fractions],
        **{key: float(value) for key, value in summary.items()},
        "mcc": float(skm.matthews_corrcoef(labels, predicted)),
        "confusion_matrix": cm.astype(int).tolist(),
        "per_class": {
            name: {
                "sensitivity": float(sensitivity[i]),
                "specificity": float(specificity[i]),
                "precision": float(precision[i]),
                "f1": float(f1[i]),
                "support": int(cm[i].sum()),
            }
            for i, name in enumerate(class_names)
        },
        "class_names": class_names,
        "averaging": averaging,
        "n": int(labels.size),
    }


def _auc_interval(labels: np.ndarray, probs: np.ndarray) -> tuple[float | None, float | None]:
    """95% interval of a binary AUC (DeLong's standard error, `urep.statistics.auc_interval`) on the same column
    as `_auc`; (None, None) for K > 2 or a class absent from `labels`."""
    if probs.shape[1] != 2 or np.unique(labels).size < 2:
        return None, None
    from urep.statistics import auc_interval

    interval = auc_interval(labels, probs[:, 1])
    return interval.low, interval.high


def _balanced_scores(labels: np.ndarray, probs: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """The one implementation of accuracy, balanced accuracy, AUC and the positive fraction (scikit-learn)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a class absent from y_true: sklearn warns, the mean skips it
        balanced = float(skm.balanced_accuracy_score(labels, predicted))
    return {
        "accuracy": float(skm.accuracy_score(labels, predicted)),
        "balanced_accuracy": balanced,
        "auc": _auc(labels, probs),
        "positive_fraction": _positive_fraction(predicted),
    }


def _positive_fraction(predicted: np.ndarray) -> float:
    """Fraction of predictions other than class 0 (class 0 = "normal" by the datasets' label order)."""
    return float(np.mean(predicted != 0))


def balanced_scores(y_true: Any, y_prob: Any) -> dict[str, float]:
    """Class-balance-aware scores that expose a constant classifier (checkpoint selection, tables).

    Args:
        y_true: `(N,)` class indices or `(N, K)` one-hot.
        y_prob: `(N, K)` probabilities (arg-max = prediction), or `(N,)` positive-class probabilities.

    Returns:
        `{"accuracy", "balanced_accuracy", "auc", "positive_fraction"}`, the first three exactly those of
        `classification_metrics`; `positive_fraction` is the fraction predicted as any class other than 0
        (class 0 = "normal" by the datasets' label order). A constant classifier has balanced accuracy `1 / K`
        and positive fraction 0 or 1.

    Raises:
        ValueError: as `classification_metrics`.
    """
    labels, probs = _as_labels_and_probs(y_true, y_prob)
    return _balanced_scores(labels, probs, probs.argmax(axis=1))


def classification_scores(labels: Any, probs: Any, class_names: Sequence[str] | None = None) -> dict[str, Any]:
    """The MultiMix paper's classification metrics from predicted probabilities (any model, like-for-like tables).

    Args:
        labels: `(M,)` reference class indices.
        probs: `(M, n_classes)` predicted probabilities.
        class_names: names of the classes (keys of `f1_per_class`); None = "0", "1", ...

    Returns:
        `{"accuracy", "balanced_accuracy", "auc", "positive_fraction"` (see `balanced_scores`),
        `"f1_per_class": {name: f1}, "metrics":` the full `classification_metrics` dict,
        `"predicted": (M,) int, "correct": (M,) bool}` (the per-image arrays feed `urep.statistics.mcnemar`).

    Raises:
        ValueError: `class_names` of the wrong length, or as `classification_metrics`.
    """
    labels = np.asarray(labels)
    probs = np.asarray(probs)
    names = list(class_names) if class_names is not None else None
    if names is not None and len(names) != probs.shape[-1]:
        raise ValueError(f"class_names has {len(names)} names for {probs.shape[-1]} classes")
    metrics = classification_metrics(labels, probs, class_names=names)
    predicted = probs.argmax(axis=-1)
    return {
        "accuracy": metrics["accuracy"],
        "balanced_accuracy": metrics["balanced_accuracy"],
        "auc": metrics["auc"],
        "positive_fraction": _positive_fraction(predicted),
        "f1_per_class": {name: values["f1"] for name, values in metrics["per_class"].items()},
        "metrics": metrics,
        "predicted": predicted,
        "correct": predicted == labels,
    }


#: A classifier predicting one class for at least this fraction of the test set is flagged...
CONSTANT_FRACTION = 0.95
#: ...when that class's true share of the test set is below this (a roughly balanced set).
BALANCED_SHARE = 0.8


def constant_prediction(y_true: Any, y_prob: Any, class_names: Sequence[str] | None = None,
                        fraction: float = CONSTANT_FRACTION, balanced_share: float = BALANCED_SHARE) -> dict | None:
    """Detect a classifier that (nearly) always predicts one class on a (roughly) balanced set.

    Args:
        y_true: `(N,)` class indices or `(N, K)` one-hot.
        y_prob: `(N, K)` probabilities (arg-max = prediction).
        class_names: names for the message; default the indices.
        fraction: flag when one class is predicted for at least this fraction of the examples...
        balanced_share: ...and that class's true share is below this.

    Returns:
        None, or `{"class": name, "predicted_fraction": f, "true_fraction": t, "n": N}`.
    """
    labels, probs = _as_labels_and_probs(y_true, y_prob)
    num_classes = probs.shape[1]
    predicted = np.bincount(probs.argmax(axis=1), minlength=num_classes) / max(labels.size, 1)
    true = np.bincount(labels, minlength=num_classes) / max(labels.size, 1)
    top = int(predicted.argmax())
    if labels.size == 0 or predicted[top] < fraction or true[top] >= balanced_share:
        return None
    names = [str(n) for n in class_names] if class_names is not None else [str(i) for i in range(num_classes)]
    return {"class": names[top], "predicted_fraction": float(predicted[top]), "true_fraction": float(true[top]),
            "n": int(labels.size)}


# --------------------------------------------------------------------------------------------------------
# Segmentation
# --------------------------------------------------------------------------------------------------------


def _as_mask_batch(array: Any, name: str) -> np.ndarray:
    """`(H, W)`, `(N, H, W)` or `(N, H, W, 1)` -> float `(N, H, W)`."""
    masks = np.asarray(array, dtype=np.float64)
    if masks.ndim == 4:
        if masks.shape[-1] != 1:
            raise ValueError(f"{name} must have one channel, got shape {masks.shape}")
        masks = masks[..., 0]
    elif masks.ndim == 2:
        masks = masks[None]
    if masks.ndim != 3:
        raise ValueError(f"{name} must be (H, W), (N, H, W) or (N, H, W, 1), got shape {masks.shape}")
    if not np.all(np.isfinite(masks)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return masks


def _boundary(mask: np.ndarray) -> np.ndarray:
    """Foreground pixels with at least one 4-connected background neighbour (outside the image counts as
    background), i.e. `mask AND NOT erosion(mask)`."""
    return mask & ~ndimage.binary_erosion(mask, border_value=0)


def boundary_distances(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Directed boundary-to-boundary distances between two non-empty binary masks, in pixels.

    Args:
        a: `(H, W)` bool mask, not empty.
        b: `(H, W)` bool mask, not empty, same shape.

    Returns:
        `(d_ab, d_ba)`: for every boundary pixel of `a`, the Euclidean distance to the nearest boundary pixel
        of `b`, and vice versa (1-D float arrays).
    """
    boundary_a, boundary_b = _boundary(a), _boundary(b)
    to_b = ndimage.distance_transform_edt(~boundary_b)
    to_a = ndimage.distance_transform_edt(~boundary_a)
    return to_b[boundary_a], to_a[boundary_b]


def _hausdorff_family(truth: np.ndarray, pred: np.ndarray, empty_value: float) -> tuple[float, float, float]:
    """(Hausdorff, 95th percentile Hausdorff, average Hausdorff) of one image pair; see segmentation_metrics."""
    truth_empty, pred_empty = not truth.any(), not pred.any()
    if truth_empty and pred_empty:
        return 0.0, 0.0, 0.0
    if truth_empty or pred_empty:
        return empty_value, empty_value, empty_value
    d_tp, d_pt = boundary_distances(truth, pred)
    hd = max(d_tp.max(), d_pt.max())
    hd95 = max(np.percentile(d_tp, 95), np.percentile(d_pt, 95))
    avg = 0.5 * (d_tp.mean() + d_pt.mean())
    return float(hd), float(hd95), float(avg)


def segmentation_metrics(
    y_true: Any,
    y_pred: Any,
    threshold: float = 0.5,
    empty_distance: str = "diagonal",
) -> dict[str, Any]:
    """Per-image and mean pixel accuracy, IoU, Dice, precision, recall and Hausdorff distances (pixels).

    Both inputs are binarised with `value >= threshold`. Overlap scores come from the per-image counts
    TP/FP/FN/TN. Empty masks (the papers do not define them; these are the usual conventions):

    * truth and prediction both empty: Dice = IoU = precision = recall = 1, all distances 0;
    * exactly one empty: Dice = IoU = 0; precision (no prediction) and recall (no truth) are 0; the
      distances are `empty_distance`: `"diagonal"` (default) = the image diagonal `sqrt(H**2 + W**2)`, a
      bounded penalty larger than any distance inside the image, so means stay finite and penalise misses;
      `"nan"` = NaN, and the means skip those images (`"hausdorff_undefined"` counts them).

    Distances are measured between mask boundaries (foreground pixels with a 4-connected background
    neighbour) with SciPy's Euclidean distance transform. With `d(A, B)` the distances from each boundary
    pixel of A to the nearest boundary pixel of B:

    * `hausdorff` = max(max d(T, P), max d(P, T));
    * `hausdorff95` = max(95th percentile of d(T, P), 95th percentile of d(P, T)) (linear interpolation);
    * `avg_hausdorff` = (mean d(T, P) + mean d(P, T)) / 2 — the symmetric "average Hausdorff distance"
      (Aydin et al. 2021) used by MultiMix.

    Args:
        y_true: ground-truth masks `(H, W)`, `(N, H, W)` or `(N, H, W, 1)`, values in {0, 1}.
        y_pred: predicted probabilities or binary masks, same shape.
        threshold: binarisation threshold applied to both.
        empty_distance: `"diagonal"` or `"nan"`, see above.

    Returns:
        `{"pixel_accuracy", "iou", "dice", "precision", "recall", "hausdorff", "hausdorff95",
        "avg_hausdorff": float (mean over images), "hausdorff_undefined": int, "n": int,
        "per_image": {same metric names: (N,) float64 array}}`.

    Raises:
        ValueError: shapes differ or are not mask-like, values are not finite, or `empty_distance` is unknown.
    """
    if empty_distance not in EMPTY_DISTANCE_CHOICES:
        raise ValueError(f"empty_distance must be one of {EMPTY_DISTANCE_CHOICES}, got {empty_distance!r}")
    truth = _as_mask_batch(y_true, "y_true") >= threshold
    pred = _as_mask_batch(y_pred, "y_pred") >= threshold
    if truth.shape != pred.shape:
        raise ValueError(f"y_true {truth.shape} and y_pred {pred.shape} must have the same shape")
    num, height, width = truth.shape
    if num == 0:
        raise ValueError("segmentation_metrics needs at least one image, got 0")

    axes = (1, 2)
    tp = np.sum(truth & pred, axis=axes).astype(np.float64)
    fp = np.sum(~truth & pred, axis=axes).astype(np.float64)
    fn = np.sum(truth & ~pred, axis=axes).astype(np.float64)
    both_empty = (tp + fp + fn) == 0

    def overlap(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
        return np.where(both_empty, 1.0, _safe_divide(numerator, denominator))

    per_image: dict[str, np.ndarray] = {
        "pixel_accuracy": 1.0 - (fp + fn) / (height * width),
        "iou": overlap(tp, tp + fp + fn),
        "dice": overlap(2 * tp, 2 * tp + fp + fn),
        "precision": overlap(tp, tp + fp),
        "recall": overlap(tp, tp + fn),
    }
    empty_value = math.hypot(height, width) if empty_distance == "diagonal" else float("nan")
    distances = np.array([_hausdorff_family(t, p, empty_value) for t, p in zip(truth, pred, strict=True)])
    per_image["hausdorff"], per_image["hausdorff95"], per_image["avg_hausdorff"] = distances.T

    undefined = int(np.isnan(per_image["hausdorff"]).sum())
    result: dict[str, Any] = {}
    for key, values in per_image.items():
        finite = values[~np.isnan(values)]
        result[key] = float(finite.mean()) if finite.size else float("nan")
    result["hausdorff_undefined"] = undefined
    result["n"] = int(num)
    result["per_image"] = per_image
    return result


def pooled_overlap(y_true: Any, y_pred: Any, smooth: float = 1.0, threshold: float | None = None) -> dict[str, float]:
    """IoU and Dice pooled over every pixel of every image, as the authors' public Keras code computes them.

    With `I = sum(t * p)`, `S = sum(t) + sum(p)` over the whole flattened set: IoU = (I + smooth) / (S - I +
    smooth), Dice = (2 I + smooth) / (S + smooth). Large masks weigh more than small ones, so these differ
    from the per-image means of `segmentation_metrics` whenever mask sizes or errors differ between images.

    Args:
        y_true: ground-truth masks `(H, W)`, `(N, H, W)` or `(N, H, W, 1)` in {0, 1}.
        y_pred: predicted probabilities (soft, the authors' metric) or masks, same shape.
        smooth: additive smoothing of numerator and denominator (the authors': 1).
        threshold: binarise `y_pred` with `value >= threshold` first (the authors' thresholded variant: 0.5);
            None keeps it soft.

    Returns:
        `{"iou": float, "dice": float}`.

    Raises:
        ValueError: shapes differ or are not mask-like, or values are not finite.
    """
    truth = _as_mask_batch(y_true, "y_true")
    pred = _as_mask_batch(y_pred, "y_pred")
    if truth.shape != pred.shape:
        raise ValueError(f"y_true {truth.shape} and y_pred {pred.shape} must have the same shape")
    if threshold is not None:
        pred = (pred >= threshold).astype(np.float64)
    intersection = float(np.sum(truth * pred))
    total = float(np.sum(truth) + np.sum(pred))
    return {"iou": (intersection + smooth) / (total - intersection + smooth),
            "dice": (2.0 * intersection + smooth) / (total + smooth)}


# --------------------------------------------------------------------------------------------------------
# Reconstruction (denoising)
# --------------------------------------------------------------------------------------------------------


def _as_image_batch(array: Any, name: str) -> np.ndarray:
    """`(H, W)`, `(N, H, W)` or `(N, H, W, C)` -> float32 `(N, H, W, C)`."""
    images = np.asarray(array, dtype=np.float32)
    if images.ndim == 2:
        images = images[None, ..., None]
    elif images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4:
        raise ValueError(f"{name} must be (H, W), (N, H, W) or (N, H, W, C), got shape {images.shape}")
    if not np.all(np.isfinite(images)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return images


def ms_ssim_scales(height: int, width: int, filter_size: int = 11, max_scales: int = 5) -> int:
    """How many MS-SSIM scales fit: the coarsest scale must still be at least `filter_size` pixels.

    Each scale halves the image (rounding down, the conservative choice), so scale `k` (1-based) has
    `min(H, W) // 2**(k - 1)` pixels. Five scales with an 11-pixel filter need `min(H, W) >= 176`.

    Returns:
        The number of scales in `[0, max_scales]`; 0 when even a single scale does not fit.
    """
    size = min(height, width)
    scales = 0
    while scales < max_scales and size // 2**scales >= filter_size:
        scales += 1
    return scales


def reconstruction_metrics(
    clean: Any,
    restored: Any,
    max_val: float = 1.0,
    filter_size: int = 11,
    power_factors: Sequence[float] = MS_SSIM_POWER_FACTORS,
) -> dict[str, Any]:
    """PSNR (dB), SSIM and MS-SSIM of restored images against clean ones, per image and averaged.

    The data range is `max_val` (1.0 for urep's `float32` images in [0, 1], before normalisation; compute
    these on un-normalised images). All three come from `tf.image` (`psnr`, `ssim`, `ssim_multiscale`) with
    Gaussian filter `filter_size` and sigma 1.5; multi-channel images are averaged over channels by TF.
    Identical images have an infinite PSNR, reported as `inf`.

    MS-SSIM on small images (the papers used 256x256 where all five scales fit): `tf.image.ssim_multiscale`
    fails when the coarsest scale is smaller than the filter. Here the scales that fit are kept — the finest
    `k = ms_ssim_scales(H, W, filter_size)` — and their power factors truncated to the first `k` and
    renormalised to sum to 1 (so 64x64 uses 3 scales, 32x32 uses 2). The number used is reported as
    `"ms_ssim_scales"` and a warning is logged when fewer than `len(power_factors)` are used (once per
    process for each image size, filter and scale count: an experiment evaluates one size many times). If not
    even one scale fits (`min(H, W) < filter_size`), SSIM and MS-SSIM are NaN with a logged warning.

    Args:
        clean: reference images `(H, W)`, `(N, H, W)` or `(N, H, W, C)`, values in [0, max_val].
        restored: restored (denoised) images, same shape.
        max_val: the data range.
        filter_size: SSIM Gaussian window size.
        power_factors: MS-SSIM scale weights, finest first (default Wang et al. 2003's five).

    Returns:
        `{"psnr", "ssim", "ms_ssim": float (means), "ms_ssim_scales": int, "max_val": float, "n": int,
        "per_image": {"psnr", "ssim", "ms_ssim": (N,) float64 arrays}}`.

    Raises:
        ValueError: shapes differ or are not image-like, values are not finite, or `max_val <= 0`.
    """
    import tensorflow as tf

    if not max_val > 0:
        raise ValueError(f"max_val must be positive, got {max_val!r}")
    reference = _as_image_batch(clean, "clean")
    candidate = _as_image_batch(restored, "restored")
    if reference.shape != candidate.shape:
        raise ValueError(f"clean {reference.shape} and restored {candidate.shape} must have the same shape")
    num, height, width, _ = reference.shape
    if num == 0:
        raise ValueError("reconstruction_metrics needs at least one image, got 0")

    psnr = tf.image.psnr(reference, candidate, max_val=max_val).numpy().astype(np.float64)
    scales = ms_ssim_scales(height, width, filter_size, max_scales=len(power_factors))
    if scales == 0:
        logger.warning(
            "images %dx%d are smaller than the SSIM filter (%d px): SSIM and MS-SSIM reported as NaN",
            height, width, filter_size,
        )
        ssim = np.full(num, np.nan)
        ms_ssim = np.full(num, np.nan)
    else:
        ssim = tf.image.ssim(reference, candidate, max_val=max_val, filter_size=filter_size)
        ssim = ssim.numpy().astype(np.float64)
        weights = np.asarray(power_factors[:scales], dtype=np.float64)
        weights = weights / weights.sum()
        key = (height, width, scales, len(power_factors), filter_size)
        if scales < len(power_factors) and key not in _MS_SSIM_WARNED:
            _MS_SSIM_WARNED.add(key)
            logger.warning(
                "MS-SSIM on %dx%d images: %d of %d scales fit a %d-px filter; using the finest %d with "
                "renormalised power factors %s",
                height, width, scales, len(power_factors), filter_size, scales, np.round(weights, 4).tolist(),
            )
        ms_ssim = tf.image.ssim_multiscale(
            reference, candidate, max_val=max_val, power_factors=tuple(weights.tolist()), filter_size=filter_size
        ).numpy().astype(np.float64)

    per_image = {"psnr": psnr, "ssim": ssim, "ms_ssim": ms_ssim}
    return {
        "psnr": float(psnr.mean()),
        "ssim": float(ssim.mean()),
        "ms_ssim": float(ms_ssim.mean()),
        "ms_ssim_scales": int(scales),
        "max_val": float(max_val),
        "n": int(num),
        "per_image": per_image,
    }


# --------------------------------------------------------------------------------------------------------
# Cross-validation: fold summaries and ensembles
# --------------------------------------------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def fold_summary(metric_dicts: Sequence[Mapping[str, Any]], ddof: int = 1) -> dict[str, Any]:
    """Mean and standard deviation of every metric over k folds.

    Numbers become `{"mean", "std", "n", "values"}`; arrays/nested lists of one shape (e.g. confusion
    matrices) the same, elementwise, as lists; nested dicts (`"per_class"`) are summarised recursively;
    strings and lists of strings (`"class_names"`, `"averaging"`) must agree across folds and are kept as
    they are. `"per_image"` entries are skipped (they are per fold, not per metric). NaN values (e.g. an AUC
    undefined in one fold) are left out of the mean and std, and `"n"` says how many folds counted.

    Args:
        metric_dicts: one dict per fold, with the same keys (e.g. from `classification_metrics`).
        ddof: delta degrees of freedom of the standard deviation; 1 (default) = the sample standard deviation
            usual in k-fold tables, NaN for a single fold.

    Returns:
        The summary dict, with the same keys as the inputs (minus `"per_image"`).

    Raises:
        ValueError: no folds, keys differ between folds, shapes differ, or non-numeric values disagree.
    """
    if not metric_dicts:
        raise ValueError("fold_summary needs at least one fold's metrics, got none")
    return _summarise(list(metric_dicts), ddof, path="")


def _summarise(folds: list[Mapping[str, Any]], ddof: int, path: str) -> dict[str, Any]:
    keys = list(folds[0].keys())
    for index, fold in enumerate(folds[1:], start=1):
        if set(fold.keys()) != set(keys):
            raise ValueError(
                f"fold {index} has metric keys {sorted(fold.keys())} but fold 0 has {sorted(keys)} at {path or '/'}"
            )
    summary: dict[str, Any] = {}
    for key in keys:
        if key == "per_image":
            continue
        values = [fold[key] for fold in folds]
        where = f"{path}/{key}"
        if all(isinstance(value, Mapping) for value in values):
            summary[key] = _summarise(values, ddof, where)
        elif all(_is_number(value) for value in values):
            summary[key] = _mean_std(np.asarray(values, dtype=np.float64), ddof)
        elif all(isinstance(value, str) for value in values) or _all_string_lists(values):
            if any(value != values[0] for value in values):
                raise ValueError(f"{where} differs between folds: {values!r}")
            summary[key] = values[0]
        else:
            try:
                stacked = np.asarray(values, dtype=np.float64)
            except ValueError as error:
                raise ValueError(f"{where}: cannot stack fold values {values!r} ({error})") from error
            summary[key] = _mean_std(stacked, ddof)
    return summary


def _all_string_lists(values: list[Any]) -> bool:
    return all(
        isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value) for value in values
    )


def _mean_std(stacked: np.ndarray, ddof: int) -> dict[str, Any]:
    finite = ~np.isnan(stacked)
    count = finite.sum(axis=0)
    mean = np.where(count > 0, np.nansum(stacked, axis=0) / np.maximum(count, 1), np.nan)
    squares = np.nansum((stacked - mean) ** 2, axis=0)
    dof = count - ddof
    std = np.where(dof > 0, squares / np.maximum(dof, 1), np.nan) ** 0.5
    as_json = (lambda a: float(a)) if stacked.ndim == 1 else (lambda a: np.asarray(a).tolist())
    return {
        "mean": as_json(mean),
        "std": as_json(std),
        "n": int(count) if stacked.ndim == 1 else count.tolist(),
        "values": stacked.tolist(),
    }


def ensemble_probabilities(prob_arrays: Sequence[Any], weights: Sequence[float] | None = None) -> np.ndarray:
    """Average the class probabilities of several models (e.g. the k fold models) on the same images.

    Args:
        prob_arrays: one `(N, K)` (or `(N,)`) probability array per model, all the same shape.
        weights: optional non-negative weight per model (normalised to sum to 1); default equal weights.

    Returns:
        `(N, K)` float64 weighted mean probabilities.

    Raises:
        ValueError: no arrays, shapes differ, or weights are the wrong length, negative or all zero.
    """
    if not prob_arrays:
        raise ValueError("ensemble_probabilities needs at least one probability array, got none")
    arrays = [np.asarray(p, dtype=np.float64) for p in prob_arrays]
    for index, array in enumerate(arrays):
        if array.shape != arrays[0].shape:
            raise ValueError(f"probability array {index} has shape {array.shape}, array 0 has {arrays[0].shape}")
    if weights is None:
        weights = np.ones(len(arrays))
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape != (len(arrays),) or np.any(weights < 0) or weights.sum() <= 0:
        raise ValueError(f"weights must be {len(arrays)} non-negative numbers, not all zero; got {weights.tolist()}")
    return np.tensordot(weights / weights.sum(), np.stack(arrays), axes=1)


def fold_and_ensemble_metrics(
    y_true: Any,
    fold_probs: Sequence[Any],
    class_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Test-set evaluation of every fold model and of their probability-averaging ensemble.

    Args:
        y_true: `(N,)` test labels.
        fold_probs: one `(N, K)` probability array per fold model, on the same test images.
        class_names: optional class names.

    Returns:
        `{"folds": [classification_metrics per fold], "summary": fold_summary(folds),
        "ensemble": classification_metrics of ensemble_probabilities(fold_probs)}`.
    """
    folds = [classification_metrics(y_true, probs, class_names) for probs in fold_probs]
    ensemble = classification_metrics(y_true, ensemble_probabilities(fold_probs), class_names)
    return {"folds": folds, "summary": fold_summary(folds), "ensemble": ensemble}


# --------------------------------------------------------------------------------------------------------
# The MultiMix paper's test-set scores (any model)
# --------------------------------------------------------------------------------------------------------


def segmentation_scores(masks: Any, probs: Any, threshold: float = 0.5) -> dict[str, Any]:
    """The MultiMix paper's segmentation metrics: Dice, average Hausdorff, SSIM of the binarised mask.

    SSIM compares the binarised predicted mask with the reference (both in {0, 1}, `max_val` 1; NaN for images
    smaller than the 11-pixel window).

    Args:
        masks: `(N, H, W, 1)` reference masks in {0, 1}.
        probs: `(N, H, W, 1)` predicted foreground probabilities.
        threshold: mask binarisation threshold.

    Returns:
        `{"dice", "avg_hausdorff", "ssim", "metrics":` the full `segmentation_metrics` dict,
        `"per_image": {"dice", "avg_hausdorff", "ssim": (N,) arrays}}` (for `urep.statistics.wilcoxon_paired`).
    """
    masks = np.asarray(masks, dtype=np.float32)
    probs = np.asarray(probs, dtype=np.float32)
    seg = segmentation_metrics(masks, probs, threshold=threshold)
    binary = (probs >= threshold).astype(np.float32)
    ssim = reconstruction_metrics(masks, binary, max_val=1.0)["per_image"]["ssim"]
    return {
        "dice": seg["dice"],
        "avg_hausdorff": seg["avg_hausdorff"],
        "ssim": float(np.mean(ssim)),
        "metrics": seg,
        "per_image": {"dice": seg["per_image"]["dice"], "avg_hausdorff": seg["per_image"]["avg_hausdorff"],
                      "ssim": ssim},
    }
