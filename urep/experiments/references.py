"""Simple references computed in the same run as U-Rep, on the same folds and the same test set.

Classification: the majority class and PCA + logistic regression (scikit-learn) on downsampled raw images.
Segmentation: the mean-mask prior and a standard U-Net (`urep.models.unet`) trained like the baselines.
Settings: `ExperimentConfig.references`. Results: `results["tasks"][TASK]["references"][METHOD]` (as
`summarise_method`); `reference_rows` / `standing_sentences` give the report's rows and sentences.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from urep.experiments.evaluation import ensemble_outputs, out_of_fold_metrics, predict, summarise_method

if TYPE_CHECKING:
    from urep.experiments.config import ExperimentConfig
    from urep.experiments.pipeline import UrepPipeline

logger = logging.getLogger(__name__)

__all__ = ["REFERENCE_LABELS", "majority_probabilities", "downsample", "pca_logistic_probabilities",
           "mean_mask_prediction", "unet_enabled", "run_references", "multimix_references",
           "standing_sentences"]

#: Method key -> label in tables and sentences.
REFERENCE_LABELS = {"majority": "Majority class", "pca_logistic": "PCA + logistic regression",
                    "mean_mask": "Mean mask", "unet": "U-Net"}


def majority_probabilities(train_labels: np.ndarray, n_classes: int, n_test: int) -> np.ndarray:
    """The class frequencies of the training labels as every test image's probabilities: the arg-max is the
    majority class (ties: the lowest index) and the AUC is 0.5.

    Raises:
        ValueError: no training labels, or a label outside `[0, n_classes)`.
    """
    labels = np.asarray(train_labels, dtype=np.int64)
    if labels.size == 0:
        raise ValueError("majority reference: no training labels")
    if labels.min() < 0 or labels.max() >= n_classes:
        raise ValueError(f"majority reference: labels must be in [0, {n_classes}), got {np.unique(labels)}")
    frequencies = np.bincount(labels, minlength=n_classes) / labels.size
    return np.tile(frequencies.astype(np.float32), (n_test, 1))


def downsample(images: np.ndarray, size: int) -> np.ndarray:
    """`(N, H, W, C)` images resized to `size` x `size` (OpenCV area interpolation), flattened to `(N, F)`."""
    import cv2

    out = [cv2.resize(np.asarray(image, dtype=np.float32), (size, size), interpolation=cv2.INTER_AREA)
           for image in images]
    return np.asarray(out, dtype=np.float32).reshape(len(images), -1)


def pca_logistic_probabilities(train_images: np.ndarray, train_labels: np.ndarray, test_images: np.ndarray,
                               n_classes: int, components: int = 30, size: int = 32, seed: int = 0) -> np.ndarray:
    """PCA + logistic regression on raw downsampled pixels, fitted on the training images only.

    The pixels are standardised (`StandardScaler`), projected on `min(components, n_train - 1, pixels)`
    principal components and classified with an L2 logistic regression (scikit-learn defaults, 2000
    iterations at most). Classes absent from the training labels get probability 0.

    Returns:
        `(n_test, n_classes)` probabilities.
    """
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    x_train, x_test = downsample(train_images, size), downsample(test_images, size)
    labels = np.asarray(train_labels, dtype=np.int64)
    present = np.unique(labels)
    probs = np.zeros((len(x_test), n_classes), dtype=np.float32)
    if present.size < 2:  # one class: nothing to learn, predict it
        probs[:, present[0]] = 1.0
        return probs
    k = max(1, min(int(components), len(x_train) - 1, x_train.shape[1]))
    model = make_pipeline(StandardScaler(), PCA(n_components=k, random_state=seed),
                          LogisticRegression(max_iter=2000, random_state=seed))
    # One BLAS thread: on data this small, thread start-up and contention with TensorFlow's threads cost
    # seconds (measured 1-4 s with the default pool vs 0.1 s with one thread on a loaded 2-core CPU).
    with threadpool_limits(1):
        model.fit(x_train, labels)
        probs[:, model.classes_] = model.predict_proba(x_test)
    return probs


def mean_mask_prediction(train_masks: np.ndarray, n_test: int, threshold: float = 0.5) -> np.ndarray:
    """The mean training mask binarised with `>= threshold`, repeated for `n_test` images."""
    masks = np.asarray(train_masks, dtype=np.float32)
    if masks.ndim != 4 or len(masks) == 0:
        raise ValueError(f"mean-mask reference: expected (N, H, W, 1) training masks, got {masks.shape}")
    prior = (masks.mean(axis=0) >= threshold).astype(np.float32)
    return np.repeat(prior[None], n_test, axis=0)


def unet_enabled(config: ExperimentConfig) -> bool:
    """Whether the U-Net reference trains: `references.unet`, with `auto` = some data source is not a
    phantom."""
    setting = config.references.unet
    if setting == "auto":
        return any(source.phantom is None for source in config.data.values())
    return bool(setting)


def _unet(pipeline: UrepPipeline, task_name: str, fold: int, train_index: np.ndarray,
          val_index: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Train one U-Net like the segmentation baseline (its settings, optimizer and training batches, the
    on-the-fly augmentation included); return its outputs on the test and validation images."""
    from urep import models
    from urep.experiments.pipeline import accuracy_metric
    from urep.losses import TASK_LOSSES
    from urep.training.loop import train_model

    config = pipeline.config
    data = pipeline.task_data[task_name]
    settings = config.training.baseline
    model = models.set_batchnorm_momentum(
        models.unet(input_shape=pipeline.shape, name=f"reference_unet_{task_name}_f{fold}",
                    **config.references.unet_model), config.batchnorm_momentum)
    optimizer = pipeline._task_train_settings(data.config)[0]  # the segmentation baseline's optimizer
    result = train_model(
        model, TASK_LOSSES["segmentation"],
        pipeline._train_batches(data.pool.images[train_index], x[train_index], y[train_index], settings.batch_size,
                                config.seed + fold, settings, "segmentation"),
        pipeline._batches(x[val_index], y[val_index], settings.batch_size), pipeline._train_config(settings),
        name=task_name, kind="segmentation",
        optimizer=settings.optimizer_spec(optimizer),
        n_train=int(len(train_index)), run=pipeline.manager, phase=f"reference_unet/fold{fold}/{task_name}",
        strategy_name="reference_unet", metrics=accuracy_metric("segmentation"))
    pipeline._record(result, "reference", "unet", task_name, fold)
    return predict(model, pipeline._norm(data.test.images)), predict(model, x[val_index])


def run_references(pipeline: UrepPipeline) -> None:
    """Compute every enabled reference for every task and fold of `pipeline` (after `load_data` and
    `train_source`, which fits the normalizer the U-Net's inputs use) into `pipeline.results`."""
    refs = pipeline.config.references
    if not refs.enabled:
        return
    train_unet = unet_enabled(pipeline.config)
    for name, data in pipeline.task_data.items():
        kind = data.config.kind
        methods: dict[str, list[np.ndarray]] = {}
        validation: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
        x = y = None
        for fold, (train_index, val_index) in enumerate(data.folds):
            pool, n_test, n_val = data.pool, len(data.test), len(val_index)
            found: list[tuple[str, np.ndarray, np.ndarray]] = []  # (method, test outputs, validation outputs)
            if kind == "classification":
                n_classes = len(data.config.classes)
                if refs.majority:
                    both = majority_probabilities(pool.labels[train_index], n_classes, n_test + n_val)
                    found.append(("majority", both[:n_test], both[n_test:]))
                if refs.pca_logistic:
                    both = pca_logistic_probabilities(
                        pool.images[train_index], pool.labels[train_index],
                        np.concatenate([data.test.images, pool.images[val_index]]), n_classes,
                        refs.pca_components, refs.pca_size, pipeline.config.seed)
                    found.append(("pca_logistic", both[:n_test], both[n_test:]))
            elif kind == "segmentation":
                if refs.mean_mask:
                    both = mean_mask_prediction(pool.masks[train_index], n_test + n_val)
                    found.append(("mean_mask", both[:n_test], both[n_test:]))
                if train_unet:
                    if x is None:
                        x, y = pipeline._norm(pool.images), data.targets(pool)
                    found.append(("unet", *_unet(pipeline, name, fold, train_index, val_index, x, y)))
            for method, test_out, val_out in found:
                methods.setdefault(method, []).append(test_out)
                validation.setdefault(method, []).append((val_index, val_out))
        if not methods:
            continue
        entry = pipeline.results["tasks"].setdefault(name, {
            "kind": kind, "paper_task": data.config.paper_task, "classes": list(data.config.classes),
            "methods": {}})
        entry["references"] = {}
        pipeline.reference_outputs[name] = {method: ensemble_outputs(outputs) for method, outputs in methods.items()}
        for method, outputs in methods.items():
            summary = summarise_method(kind, data.truth(), outputs, data.config.classes)
            summary["in_domain"] = out_of_fold_metrics(kind, data.pool_truth(), validation[method],
                                                       data.config.classes)
            entry["references"][method] = summary
        logger.info("task %s: references %s", name, ", ".join(methods))


def multimix_references(experiment: Any, seg_rows: np.ndarray, cls_rows: np.ndarray, budget: tuple) -> None:
    """The cheap references of a MultiMix / U-Rep-vs-MultiMix experiment at one label budget, fitted on the
    budget's labelled training rows and scored on the same in-domain and cross-domain test sets; recorded in
    `multimix.references` like `multimix.runs` entries, of kind `reference` (the MultiMix `unet` variant is
    already a U-Net reference)."""
    from urep.experiments.multimix_experiment import budget_setting

    refs = experiment.config.references
    sets = experiment._test_sets()
    seg_data = experiment.pipeline.task_data[experiment.seg_task.name]
    cls_data = experiment.pipeline.task_data[experiment.cls_task.name]
    n_classes = len(experiment.classes)
    labels = cls_data.pool.labels[cls_rows]
    methods: dict[str, tuple[dict, dict]] = {}
    if refs.majority:
        methods["majority"] = ({}, {d: majority_probabilities(labels, n_classes, len(a))
                                    for d, a in sets[experiment.cls_task.name].items()})
    if refs.pca_logistic:
        methods["pca_logistic"] = ({}, {d: pca_logistic_probabilities(
            cls_data.pool.images[cls_rows], labels, a.images, n_classes, refs.pca_components, refs.pca_size,
            experiment.config.seed) for d, a in sets[experiment.cls_task.name].items()})
    if refs.mean_mask:
        methods["mean_mask"] = ({d: mean_mask_prediction(seg_data.pool.masks[seg_rows], len(a))
                                 for d, a in sets[experiment.seg_task.name].items()}, {})
    references = experiment.results["multimix"].setdefault("references", [])
    for method, (seg, cls) in methods.items():
        entry = {"model": f"Reference: {REFERENCE_LABELS[method]}", "method": method, "kind": "reference",
                 "setting": budget_setting(budget[0] if seg else None, budget[1] if cls else None),
                 "budget_setting": budget_setting(*budget),
                 "budget": {"segmentation": budget[0], "classification": budget[1]}}
        entry.update({domain: value["metrics"] for domain, value in experiment._score(seg, cls).items()})
        references.append(entry)


def _value(entry: dict | None, metric: str) -> Any:
    if not entry:
        return None
    return entry.get("metrics", {}).get(metric)


def standing_sentences(results: dict, strategy_labels: dict[str, str] | None = None) -> list[str]:
    """One sentence per task: each U-Rep method's main score beside each reference's, e.g.
    `lungs, IoU (per image): independent 0.800 vs U-Net 0.850 vs Mean mask 0.580; best U-Rep strategy
    (independent): -0.050 vs U-Net, +0.220 vs Mean mask.`
    Main score: per-image IoU (segmentation); balanced accuracy where measured, else accuracy, and AUC
    (classification)."""
    labels = strategy_labels or {}
    sentences = []
    for task in results.get("config", {}).get("tasks", []):
        entry = results.get("tasks", {}).get(task["name"], {})
        refs = entry.get("references") or {}
        if not refs:
            continue
        methods = entry.get("methods", {})
        if task["kind"] == "segmentation":
            metrics = [("iou", "IoU (per image)")]
        else:
            first = next(iter(refs.values()))
            accuracy = "balanced_accuracy" if _value(first, "balanced_accuracy") is not None else "accuracy"
            metrics = [(accuracy, accuracy.replace("_", " ")), ("auc", "AUC")]
        for metric, label in metrics:
            ours = ", ".join(f"{labels.get(m, m).lower()} {_value(e, metric):.3f}" for m, e in methods.items()
                             if _value(e, metric) is not None)
            theirs = " vs ".join(f"{REFERENCE_LABELS.get(r, r)} {_value(e, metric):.3f}" for r, e in refs.items()
                                 if _value(e, metric) is not None)
            if not theirs:
                continue
            sentence = f"{task['name']}, {label}: {ours or 'no U-Rep result'} vs {theirs}"
            urep = {m: _value(e, metric) for m, e in methods.items() if m != "baseline"
                    and _value(e, metric) is not None}
            if urep:
                best = max(urep, key=urep.get)
                gaps = ", ".join(f"{urep[best] - _value(e, metric):+.3f} vs {REFERENCE_LABELS.get(r, r)}"
                                 for r, e in refs.items() if _value(e, metric) is not None)
                sentence += f"; best U-Rep strategy ({labels.get(best, best).lower()}): {gaps}"
            sentences.append(sentence + ".")
    return sentences
