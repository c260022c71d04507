"""Same-run references (majority, PCA + logistic regression, mean mask, U-Net) and pooled vs per-image
overlap scores, on hand-made data with values computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from urep.experiments.evaluation import task_metrics
from urep.experiments.references import (
    majority_probabilities,
    mean_mask_prediction,
    pca_logistic_probabilities,
    standing_sentences,
)
from urep.metrics import pooled_overlap


def _separable_images(n: int, seed: int, positive_fraction: float = 0.4) -> tuple[np.ndarray, np.ndarray]:
    """Noisy 32x32 images; class 1 carries a bright square whose position jitters by a few pixels."""
    rng = np.random.default_rng(seed)
    labels = (np.arange(n) < int(round(positive_fraction * n))).astype(np.int64)
    rng.shuffle(labels)
    images = rng.normal(0.4, 0.1, size=(n, 32, 32, 1)).astype(np.float32)
    for i in np.flatnonzero(labels):
        r, c = rng.integers(6, 11, size=2)
        images[i, r:r + 10, c:c + 10] += 0.4
    return np.clip(images, 0, 1), labels


def test_pca_logistic_beats_majority_on_separable_images():
    train_x, train_y = _separable_images(60, seed=1)
    test_x, test_y = _separable_images(40, seed=2)
    pca = task_metrics("classification", test_y,
                       pca_logistic_probabilities(train_x, train_y, test_x, 2, components=10, size=16))
    majority = task_metrics("classification", test_y, majority_probabilities(train_y, 2, len(test_y)))
    assert majority["accuracy"] == pytest.approx(0.6)  # 24 of 40 test images are class 0
    assert pca["accuracy"] >= 0.95 > majority["accuracy"]
    assert pca["auc"] > 0.95


def test_pca_logistic_caps_components_and_handles_one_class():
    x, y = _separable_images(8, seed=3)
    probs = pca_logistic_probabilities(x, y, x[:3], 3, components=500, size=8)  # capped at 7 components
    assert probs.shape == (3, 3) and np.allclose(probs.sum(axis=1), 1.0) and np.all(probs[:, 2] == 0)
    only = pca_logistic_probabilities(x, np.ones(8, np.int64), x[:2], 2)
    assert only.tolist() == [[0.0, 1.0], [0.0, 1.0]]


def test_majority_reference_equals_majority_fraction():
    probs = majority_probabilities(np.array([0, 0, 0, 1]), 2, 5)
    assert probs.tolist() == [[0.75, 0.25]] * 5
    metrics = task_metrics("classification", np.array([0, 1, 1, 0, 0]), probs, ("a", "b"))
    assert metrics["accuracy"] == pytest.approx(0.6)
    assert metrics["auc"] == pytest.approx(0.5) and metrics["sensitivity"] == 0.0
    with pytest.raises(ValueError, match=r"labels must be in \[0, 2\)"):
        majority_probabilities(np.array([0, 2]), 2, 1)


def test_mean_mask_prior_iou_by_hand():
    train = np.zeros((4, 4, 4, 1), np.float32)
    train[:, 0:2, 0:2] = 1  # all four: top-left 2x2 -> mean 1
    train[:2, 2, 0] = 1  # two of four: mean 0.5 -> kept (>= 0.5)
    train[:1, 3, 3] = 1  # one of four: mean 0.25 -> dropped
    prior = mean_mask_prediction(train, 2)
    expected = np.zeros((4, 4), np.float32)
    expected[0:2, 0:2] = 1
    expected[2, 0] = 1
    assert prior.shape == (2, 4, 4, 1) and np.array_equal(prior[0, ..., 0], expected)
    test = np.zeros((2, 4, 4, 1), np.float32)
    test[0, 0:2, 0:2] = 1  # 4 pixels, all inside the 5-pixel prior: IoU 4/5
    test[1, 0:3, 0:2] = 1  # 6 pixels; prior 5, overlap 5: IoU 5/6
    metrics = task_metrics("segmentation", test, prior)
    assert metrics["iou"] == pytest.approx((4 / 5 + 5 / 6) / 2)
    # pooled, thresholded: I = 9, S = 10 + 10 -> (9 + 1) / (20 - 9 + 1)
    assert metrics["iou_pooled_05"] == pytest.approx(10 / 12)


def test_pooled_and_per_image_iou_differ_where_they_must():
    truth = np.zeros((2, 10, 10, 1), np.float32)
    truth[0, :5] = 1  # big mask: 50 pixels, predicted exactly
    truth[1, 0, 0:2] = 1  # small mask: 2 pixels, predicted 2 other pixels
    pred = truth.copy()
    pred[1] = 0
    pred[1, 9, 8:10] = 1
    per_image = task_metrics("segmentation", truth, pred)
    assert per_image["iou"] == pytest.approx(0.5) and per_image["dice"] == pytest.approx(0.5)
    # I = 50, S = 104: IoU (50 + 1) / (104 - 50 + 1), Dice (100 + 1) / (104 + 1)
    assert per_image["iou_pooled"] == pytest.approx(51 / 55) and per_image["iou_pooled_05"] == pytest.approx(51 / 55)
    assert per_image["dice_pooled"] == pytest.approx(101 / 105)
    soft = pooled_overlap(truth, pred * 0.5)  # soft: I = 25, S = 50 + 26 + 2 -> (25 + 1) / (78 - 25 + 1)
    assert soft["iou"] == pytest.approx(26 / 54)
    assert pooled_overlap(truth, pred * 0.5, threshold=0.5)["iou"] == pytest.approx(51 / 55)
    with pytest.raises(ValueError, match="same shape"):
        pooled_overlap(truth, pred[:, :5])


def test_standing_sentences_name_each_reference():
    results = {"config": {"tasks": [{"name": "lungs", "kind": "segmentation"}]},
               "tasks": {"lungs": {"methods": {"independent": {"metrics": {"iou": 0.8}}},
                                   "references": {"unet": {"metrics": {"iou": 0.85}},
                                                  "mean_mask": {"metrics": {"iou": 0.58}}}}}}
    assert standing_sentences(results) == [
        "lungs, IoU (per image): independent 0.800 vs U-Net 0.850 vs Mean mask 0.580; best U-Rep strategy "
        "(independent): -0.050 vs U-Net, +0.220 vs Mean mask."]


def test_multimix_experiment_gets_the_cheap_references_on_both_domains(tmp_path):
    from urep.experiments.config import load_config
    from urep.experiments.multimix_experiment import MultiMixExperiment
    from urep.experiments.references import multimix_references
    from urep.experiments.report import label_budget_table
    from urep.experiments.scale import shrink

    experiment = MultiMixExperiment(shrink(load_config("urep_vs_multimix_phantom"), patients=8), tmp_path)
    experiment.load_data()
    seg_rows = experiment._budget_split(experiment.seg_task, 4, experiment.seeds[0])[0]
    cls_rows = experiment._budget_split(experiment.cls_task, 4, experiment.seeds[0])[0]
    multimix_references(experiment, seg_rows, cls_rows, (4, 4))
    refs = {r["method"]: r for r in experiment.results["multimix"]["references"]}
    assert set(refs) == {"majority", "pca_logistic", "mean_mask"}
    assert refs["majority"]["setting"] == "cls=4,seg=0" and refs["mean_mask"]["setting"] == "cls=0,seg=4"
    labels = experiment.pipeline.task_data[experiment.cls_task.name].pool.labels[cls_rows]
    test = experiment.pipeline.task_data[experiment.cls_task.name].test.labels
    majority = np.bincount(labels, minlength=2).argmax()
    assert refs["majority"]["in_domain"]["accuracy"] == pytest.approx(np.mean(test == majority))
    assert refs["mean_mask"]["cross_domain"]["n_segmentation"] > 0
    results = {"config": {"multimix": {"classes": list(experiment.classes)}}, "statistics": [],
               "multimix": {"runs": [{**refs["majority"], "model": "multimix", "method": "multimix"}],
                            "references": experiment.results["multimix"]["references"]}}
    rows = label_budget_table(results).rows
    assert [row[1] for row in rows].count("Reference: Mean mask") == 2  # in-domain and cross-domain


def test_out_of_fold_metrics_pool_the_folds_by_index():
    from urep.experiments.evaluation import out_of_fold_metrics

    truth = np.array([0, 1, 0, 1, 1, 0])
    # two folds; the second fold's model is wrong on image 5 only
    probs = np.eye(2, dtype=np.float32)[truth]
    probs[5] = [0.2, 0.8]
    result = out_of_fold_metrics("classification", truth, [(np.array([0, 1, 2]), probs[[0, 1, 2]]),
                                                            (np.array([3, 4, 5]), probs[[3, 4, 5]])], ("a", "b"))
    assert result["n"] == 6 and result["folds"] == 2
    assert result["metrics"]["accuracy"] == pytest.approx(5 / 6)
    assert out_of_fold_metrics("classification", truth, [], ("a", "b")) is None
    with pytest.raises(ValueError, match="3 validation indices but 2 outputs"):
        out_of_fold_metrics("classification", truth, [(np.array([0, 1, 2]), probs[:2])], ("a", "b"))
