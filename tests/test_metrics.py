"""urep.metrics against values computed by hand on tiny arrays."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest

from urep import metrics

# --------------------------------------------------------------------------------------------------------
# Classification
# --------------------------------------------------------------------------------------------------------

# 3 classes, 9 samples; predictions chosen so that the confusion matrix is
# [[2, 1, 0], [0, 1, 1], [1, 0, 3]] (rows = truth).
Y3 = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
PRED3 = np.array([0, 0, 1, 1, 2, 2, 2, 2, 0])


def _peaked_probs(predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """0.8 on the predicted class, 0.1 elsewhere (rows sum to 1 for 3 classes)."""
    probs = np.full((predicted.size, num_classes), 0.1)
    probs[np.arange(predicted.size), predicted] = 0.8
    return probs


def test_three_class_confusion_matrix_and_macro_scores():
    result = metrics.classification_metrics(Y3, _peaked_probs(PRED3, 3), class_names=["a", "b", "c"])
    assert result["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [1, 0, 3]]
    assert result["accuracy"] == pytest.approx(6 / 9)
    # per class: TP = [2, 1, 3], FN = [1, 1, 1], FP = [1, 1, 1], TN = [5, 6, 4]
    assert result["sensitivity"] == pytest.approx((2 / 3 + 1 / 2 + 3 / 4) / 3)
    assert result["specificity"] == pytest.approx((5 / 6 + 6 / 7 + 4 / 5) / 3)
    assert result["precision"] == pytest.approx((2 / 3 + 1 / 2 + 3 / 4) / 3)
    assert result["f1"] == pytest.approx((4 / 6 + 2 / 4 + 6 / 8) / 3)
    # multi-class MCC: (c*s - sum p_k t_k) / sqrt((s^2 - sum p_k^2)(s^2 - sum t_k^2)), c=6, s=9, p=t=[3,2,4]
    assert result["mcc"] == pytest.approx((6 * 9 - 29) / (81 - 29))
    # one-vs-rest AUC from pairwise counts (ties count 1/2): class a 13.5/18, b 9.5/14, c 15.5/20
    assert result["auc"] == pytest.approx((13.5 / 18 + 9.5 / 14 + 15.5 / 20) / 3)
    assert result["averaging"] == "macro"
    assert result["per_class"]["b"] == pytest.approx(
        {"sensitivity": 0.5, "specificity": 6 / 7, "precision": 0.5, "f1": 0.5, "support": 2}
    )
    assert result["n"] == 9


def test_binary_uses_positive_class_and_positive_probability():
    y = np.array([0, 0, 1, 1])
    p_positive = np.array([0.1, 0.4, 0.35, 0.8])
    result = metrics.classification_metrics(y, p_positive)
    # predictions [0, 0, 0, 1]: TP 1, FN 1, FP 0, TN 2
    assert result["confusion_matrix"] == [[2, 0], [1, 1]]
    assert result["sensitivity"] == pytest.approx(0.5)
    assert result["specificity"] == pytest.approx(1.0)
    assert result["precision"] == pytest.approx(1.0)
    assert result["f1"] == pytest.approx(2 / 3)
    assert result["mcc"] == pytest.approx(2 / math.sqrt(12))
    assert result["auc"] == pytest.approx(0.75)  # 3 of 4 positive/negative pairs ordered correctly
    assert result["averaging"] == "binary"
    flipped = metrics.classification_metrics(y, p_positive, positive_class=0)
    assert flipped["sensitivity"] == pytest.approx(1.0)
    assert flipped["specificity"] == pytest.approx(0.5)


def test_one_hot_labels_equal_integer_labels():
    probs = _peaked_probs(PRED3, 3)
    one_hot = np.eye(3)[Y3]
    assert metrics.classification_metrics(one_hot, probs) == metrics.classification_metrics(Y3, probs)


def test_auc_nan_with_warning_when_a_class_is_absent(caplog):
    with caplog.at_level(logging.WARNING, logger="urep.metrics"):
        result = metrics.classification_metrics([1, 1], [[0.2, 0.8], [0.6, 0.4]])
    assert math.isnan(result["auc"])
    assert "AUC undefined" in caplog.text
    assert result["accuracy"] == 0.5


@pytest.mark.parametrize(
    ("y_true", "y_prob", "message"),
    [
        ([0, 1, 3], np.full((3, 3), 1 / 3), "class index 3"),
        ([0, 1], np.full((3, 2), 0.5), "N = 3"),
        ([0, 1], [[0.5, np.nan], [0.5, 0.5]], "NaN"),
        ([0, 1], np.full((2, 1), 1.0), "K >= 2"),
    ],
)
def test_classification_bad_input_raises(y_true, y_prob, message):
    with pytest.raises(ValueError, match=message):
        metrics.classification_metrics(y_true, y_prob)


def test_class_names_length_checked():
    with pytest.raises(ValueError, match="class_names has 2 names for 3"):
        metrics.classification_metrics(Y3, _peaked_probs(PRED3, 3), class_names=["a", "b"])


def test_balanced_scores_expose_a_constant_classifier_and_agree_with_classification_metrics():
    labels = np.array([1] * 12 + [0] * 4)
    constant = np.tile([[0.2, 0.8]], (16, 1))
    scores = metrics.balanced_scores(labels, constant)
    assert scores["accuracy"] == 0.75 and scores["balanced_accuracy"] == 0.5
    assert scores["positive_fraction"] == 1.0 and scores["auc"] == 0.5
    probs = _peaked_probs(PRED3, 3)
    three = metrics.balanced_scores(Y3, probs)
    full = metrics.classification_metrics(Y3, probs)
    assert {key: three[key] for key in ("accuracy", "balanced_accuracy", "auc")} == \
        {key: full[key] for key in ("accuracy", "balanced_accuracy", "auc")}
    assert three["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2 + 3 / 4) / 3)
    assert three["positive_fraction"] == pytest.approx(6 / 9)  # predicted 1 or 2, not 0
    assert math.isnan(metrics.balanced_scores(np.zeros(4, int), constant[:4])["auc"])


def test_classification_scores_per_image_arrays_and_names():
    labels = np.array([0, 1, 1, 0])
    probs = np.array([[0.9, 0.1], [0.3, 0.7], [0.6, 0.4], [0.2, 0.8]])
    scores = metrics.classification_scores(labels, probs, ("normal", "pneumonia"))
    np.testing.assert_array_equal(scores["predicted"], [0, 1, 0, 1])
    np.testing.assert_array_equal(scores["correct"], [True, True, False, False])
    assert scores["accuracy"] == 0.5 and scores["positive_fraction"] == 0.5
    assert scores["f1_per_class"] == {"normal": 0.5, "pneumonia": 0.5}
    assert scores["auc"] == metrics.balanced_scores(labels, probs)["auc"] == 0.5
    with pytest.raises(ValueError, match="class_names has 1 names for 2 classes"):
        metrics.classification_scores(labels, probs, ("normal",))


# --------------------------------------------------------------------------------------------------------
# Segmentation
# --------------------------------------------------------------------------------------------------------


def _mask(shape, *pixels):
    mask = np.zeros(shape)
    for pixel in pixels:
        mask[pixel] = 1
    return mask


def test_perfect_mask():
    truth = np.zeros((8, 8))
    truth[2:5, 2:6] = 1
    result = metrics.segmentation_metrics(truth, truth)
    for key in ("pixel_accuracy", "iou", "dice", "precision", "recall"):
        assert result[key] == 1.0
    for key in ("hausdorff", "hausdorff95", "avg_hausdorff"):
        assert result[key] == 0.0


def test_both_empty_is_perfect():
    empty = np.zeros((1, 8, 8))
    result = metrics.segmentation_metrics(empty, empty)
    assert result["dice"] == result["iou"] == result["precision"] == result["recall"] == 1.0
    assert result["hausdorff"] == result["hausdorff95"] == result["avg_hausdorff"] == 0.0


def test_one_empty_gets_diagonal_penalty_by_default():
    truth = _mask((6, 8), (1, 1))
    result = metrics.segmentation_metrics(truth, np.zeros((6, 8)))
    assert result["dice"] == result["iou"] == result["precision"] == result["recall"] == 0.0
    assert result["pixel_accuracy"] == pytest.approx(1 - 1 / 48)
    assert result["hausdorff"] == pytest.approx(10.0)  # sqrt(6^2 + 8^2)
    assert result["hausdorff95"] == pytest.approx(10.0)
    assert result["hausdorff_undefined"] == 0


def test_one_empty_nan_mode_skips_in_means():
    truth = np.stack([_mask((8, 8), (1, 1)), _mask((8, 8), (1, 1))])
    pred = np.stack([np.zeros((8, 8)), _mask((8, 8), (4, 5))])
    result = metrics.segmentation_metrics(truth, pred, empty_distance="nan")
    assert math.isnan(result["per_image"]["hausdorff"][0])
    assert result["hausdorff"] == pytest.approx(5.0)  # mean over the defined image only
    assert result["hausdorff_undefined"] == 1
    assert result["dice"] == 0.0


def test_one_pixel_masks():
    truth = _mask((8, 8), (1, 1))
    same = metrics.segmentation_metrics(truth, truth)
    assert same["dice"] == 1.0 and same["hausdorff"] == 0.0
    moved = metrics.segmentation_metrics(truth, _mask((8, 8), (4, 5)))
    assert moved["dice"] == 0.0 and moved["iou"] == 0.0
    assert moved["pixel_accuracy"] == pytest.approx(1 - 2 / 64)
    assert moved["hausdorff"] == pytest.approx(5.0)  # 3-4-5 triangle
    assert moved["avg_hausdorff"] == pytest.approx(5.0)


def test_disjoint_masks_hausdorff_family():
    # truth {(0,0)}, prediction {(0,3), (0,5)}: d(T,P) = [3], d(P,T) = [3, 5]
    result = metrics.segmentation_metrics(_mask((4, 8), (0, 0)), _mask((4, 8), (0, 3), (0, 5)))
    assert result["hausdorff"] == pytest.approx(5.0)
    assert result["avg_hausdorff"] == pytest.approx((3 + 4) / 2)
    assert result["hausdorff95"] == pytest.approx(3 + 0.95 * 2)  # linear interpolation in [3, 5]
    assert result["dice"] == 0.0


def test_shifted_squares_use_boundaries():
    truth = np.zeros((8, 8))
    pred = np.zeros((8, 8))
    truth[2:5, 0:3] = 1
    pred[2:5, 2:5] = 1
    result = metrics.segmentation_metrics(truth, pred)
    # boundary ring of each 3x3 square (8 px) to the other's ring: distances [2,1,0,2,0,2,1,0]
    assert result["hausdorff"] == pytest.approx(2.0)
    assert result["avg_hausdorff"] == pytest.approx(1.0)
    assert result["hausdorff95"] == pytest.approx(2.0)
    # overlap: one column of 3 px; |T| = |P| = 9
    assert result["dice"] == pytest.approx(6 / 18)
    assert result["iou"] == pytest.approx(3 / 15)


def test_partial_overlap_precision_recall_and_threshold():
    truth = np.zeros((1, 4, 4, 1))
    truth[0, 0:2, 0:2, 0] = 1
    prob = np.zeros((1, 4, 4, 1))
    prob[0, 0:2, 0:3, 0] = 0.6
    prob[0, 3, 3, 0] = 0.4  # below the threshold
    result = metrics.segmentation_metrics(truth, prob)
    assert result["dice"] == pytest.approx(8 / 10)
    assert result["iou"] == pytest.approx(4 / 6)
    assert result["precision"] == pytest.approx(4 / 6)
    assert result["recall"] == 1.0
    stricter = metrics.segmentation_metrics(truth, prob, threshold=0.7)
    assert stricter["dice"] == 0.0
    assert set(result["per_image"]) == {
        "pixel_accuracy", "iou", "dice", "precision", "recall", "hausdorff", "hausdorff95", "avg_hausdorff"
    }
    assert result["per_image"]["dice"].shape == (1,)


def test_segmentation_bad_input_raises():
    with pytest.raises(ValueError, match="same shape"):
        metrics.segmentation_metrics(np.zeros((2, 4, 4)), np.zeros((2, 4, 5)))
    with pytest.raises(ValueError, match="one channel"):
        metrics.segmentation_metrics(np.zeros((1, 4, 4, 2)), np.zeros((1, 4, 4, 2)))
    with pytest.raises(ValueError, match="empty_distance"):
        metrics.segmentation_metrics(np.zeros((4, 4)), np.zeros((4, 4)), empty_distance="inf")


# --------------------------------------------------------------------------------------------------------
# Reconstruction
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("size", "scales"), [(176, 5), (175, 4), (64, 3), (32, 2), (11, 1), (10, 0)])
def test_ms_ssim_scales(size, scales):
    assert metrics.ms_ssim_scales(size, size + 7) == scales


def test_psnr_by_hand_and_data_range():
    clean = np.zeros((2, 16, 16))
    restored = np.full((2, 16, 16), 0.1)
    assert metrics.reconstruction_metrics(clean, restored)["psnr"] == pytest.approx(20.0, abs=1e-4)
    scaled = metrics.reconstruction_metrics(clean, restored, max_val=2.0)
    assert scaled["psnr"] == pytest.approx(10 * math.log10(4 / 0.01), abs=1e-4)
    assert scaled["max_val"] == 2.0


def _reference_ms_ssim(x: np.ndarray, y: np.ndarray, weights: np.ndarray) -> float:
    """MS-SSIM of two 2-D images in [0, 1] written out in NumPy (Wang, Simoncelli & Bovik 2003): an 11x11
    Gaussian window (sigma 1.5, valid positions only), K1 = 0.01, K2 = 0.03, 2x2 average down-sampling, the
    contrast-structure term at every scale and the full SSIM at the coarsest; independent of TensorFlow."""
    coords = np.arange(11) - 5.0
    g = np.exp(-(coords**2) / (2 * 1.5**2))
    window = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = 0.01**2, 0.03**2

    def blur(image):
        patches = np.lib.stride_tricks.sliding_window_view(image, (11, 11))
        return np.einsum("ijkl,kl->ij", patches, window)

    value = 1.0
    x, y = x.astype(np.float64), y.astype(np.float64)
    for scale, weight in enumerate(weights):
        mx, my = blur(x), blur(y)
        vx, vy, cxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
        cs = (2 * cxy + c2) / (vx + vy + c2)
        if scale == len(weights) - 1:
            term = np.mean((2 * mx * my + c1) / (mx**2 + my**2 + c1) * cs)
        else:
            term = np.mean(cs)
            x = x.reshape(x.shape[0] // 2, 2, x.shape[1] // 2, 2).mean(axis=(1, 3))
            y = y.reshape(y.shape[0] // 2, 2, y.shape[1] // 2, 2).mean(axis=(1, 3))
        value *= max(term, 0.0) ** weight
    return value


@pytest.mark.parametrize(("size", "scales"), [(32, 2), (64, 3)])
def test_small_images_use_fewer_ms_ssim_scales(size, scales, caplog, monkeypatch):
    monkeypatch.setattr(metrics, "_MS_SSIM_WARNED", set())
    rng = np.random.default_rng(0)
    clean = rng.random((3, size, size, 1)).astype(np.float32)
    noisy = np.clip(clean + rng.normal(0, 0.1, clean.shape), 0, 1).astype(np.float32)
    with caplog.at_level(logging.WARNING, logger="urep.metrics"):
        result = metrics.reconstruction_metrics(clean, noisy)
    assert result["ms_ssim_scales"] == scales
    assert caplog.text.count(f"{scales} of 5 scales") == 1
    with caplog.at_level(logging.WARNING, logger="urep.metrics"):
        again = metrics.reconstruction_metrics(clean, noisy)
    assert caplog.text.count(f"{scales} of 5 scales") == 1, "the same size is warned about once per process"
    assert again["ms_ssim_scales"] == scales
    weights = np.array(metrics.MS_SSIM_POWER_FACTORS[:scales])
    factors = weights / weights.sum()
    expected = [_reference_ms_ssim(c[..., 0], n[..., 0], factors) for c, n in zip(clean, noisy, strict=True)]
    np.testing.assert_allclose(result["per_image"]["ms_ssim"], expected, rtol=1e-4)
    assert 0.0 < result["ssim"] < 1.0 and 0.0 < result["ms_ssim"] < 1.0
    perfect = metrics.reconstruction_metrics(clean, clean)
    assert perfect["ssim"] == pytest.approx(1.0, abs=1e-5)
    assert perfect["ms_ssim"] == pytest.approx(1.0, abs=1e-5)
    assert math.isinf(perfect["psnr"])


def test_images_smaller_than_filter_give_nan_not_crash(caplog):
    with caplog.at_level(logging.WARNING, logger="urep.metrics"):
        result = metrics.reconstruction_metrics(np.zeros((1, 8, 8)), np.full((1, 8, 8), 0.1))
    assert math.isnan(result["ssim"]) and math.isnan(result["ms_ssim"])
    assert result["psnr"] == pytest.approx(20.0, abs=1e-4)
    assert "smaller than the SSIM filter" in caplog.text


def test_reconstruction_shape_mismatch_raises():
    with pytest.raises(ValueError, match="same shape"):
        metrics.reconstruction_metrics(np.zeros((1, 16, 16)), np.zeros((1, 16, 15)))


# --------------------------------------------------------------------------------------------------------
# Folds and ensembles
# --------------------------------------------------------------------------------------------------------


def test_fold_summary_mean_std_nan_and_nested():
    folds = [
        {"acc": 0.8, "auc": float("nan"), "cm": [[1, 2], [3, 4]], "names": ["a", "b"], "per_class": {"a": {"f1": 1.0}},
         "per_image": {"dice": np.ones(3)}},
        {"acc": 0.6, "auc": 0.7, "cm": [[3, 2], [1, 0]], "names": ["a", "b"], "per_class": {"a": {"f1": 0.5}},
         "per_image": {"dice": np.ones(2)}},
    ]
    summary = metrics.fold_summary(folds)
    assert summary["acc"]["mean"] == pytest.approx(0.7)
    assert summary["acc"]["std"] == pytest.approx(math.sqrt(0.02))  # sample std, ddof = 1
    assert summary["acc"]["values"] == [0.8, 0.6]
    assert summary["auc"]["mean"] == pytest.approx(0.7) and summary["auc"]["n"] == 1
    assert math.isnan(summary["auc"]["std"])  # one finite fold: no sample std
    assert summary["cm"]["mean"] == [[2.0, 2.0], [2.0, 2.0]]
    assert summary["names"] == ["a", "b"]
    assert summary["per_class"]["a"]["f1"]["mean"] == pytest.approx(0.75)
    assert "per_image" not in summary
    assert metrics.fold_summary(folds, ddof=0)["acc"]["std"] == pytest.approx(0.1)


def test_fold_summary_rejects_mismatched_folds():
    with pytest.raises(ValueError, match="fold 1 has metric keys"):
        metrics.fold_summary([{"acc": 1.0}, {"auc": 1.0}])
    with pytest.raises(ValueError, match="/names differs"):
        metrics.fold_summary([{"names": ["a"]}, {"names": ["b"]}])
    with pytest.raises(ValueError, match="at least one"):
        metrics.fold_summary([])


def test_ensemble_probabilities_mean_and_weights():
    p1 = np.array([[0.9, 0.1], [0.2, 0.8]])
    p2 = np.array([[0.5, 0.5], [0.6, 0.4]])
    np.testing.assert_allclose(metrics.ensemble_probabilities([p1, p2]), [[0.7, 0.3], [0.4, 0.6]])
    np.testing.assert_allclose(metrics.ensemble_probabilities([p1, p2], weights=[3, 1]), [[0.8, 0.2], [0.3, 0.7]])
    with pytest.raises(ValueError, match="shape"):
        metrics.ensemble_probabilities([p1, p1[:1]])
    with pytest.raises(ValueError, match="weights"):
        metrics.ensemble_probabilities([p1, p2], weights=[1, -1])


def test_fold_and_ensemble_metrics():
    y = np.array([0, 1, 1, 0])
    fold_a = np.array([[0.9, 0.1], [0.4, 0.6], [0.6, 0.4], [0.8, 0.2]])  # 3/4 right
    fold_b = np.array([[0.6, 0.4], [0.3, 0.7], [0.1, 0.9], [0.4, 0.6]])  # 3/4 right
    result = metrics.fold_and_ensemble_metrics(y, [fold_a, fold_b])
    assert [fold["accuracy"] for fold in result["folds"]] == [0.75, 0.75]
    assert result["summary"]["accuracy"]["mean"] == 0.75
    assert result["ensemble"]["accuracy"] == 1.0  # the averaged probabilities are right on all four


def test_segmentation_scores_binarise_and_report_per_image_values():
    masks = np.zeros((2, 16, 16, 1), np.float32)
    masks[:, 4:12, 4:12] = 1.0
    probs = masks * 0.9
    probs[1] = 0.0  # second image: nothing predicted
    scores = metrics.segmentation_scores(masks, probs, threshold=0.5)
    np.testing.assert_allclose(scores["per_image"]["dice"], [1.0, 0.0])
    assert scores["dice"] == pytest.approx(0.5)
    assert scores["per_image"]["ssim"].shape == (2,)
    assert scores["per_image"]["ssim"][0] == pytest.approx(1.0)
    assert scores["ssim"] == pytest.approx(float(np.mean(scores["per_image"]["ssim"])))


def test_binary_auc_carries_delongs_interval_and_multiclass_none():
    from urep.statistics import auc_interval

    labels = np.array([0, 0, 1, 1, 0, 1, 1, 0])
    positive = np.array([0.1, 0.6, 0.8, 0.4, 0.3, 0.9, 0.7, 0.2])
    m = metrics.classification_metrics(labels, np.stack([1 - positive, positive], axis=1))
    interval = auc_interval(labels, positive)
    assert (m["auc_ci_low"], m["auc_ci_high"]) == pytest.approx((interval.low, interval.high))
    assert m["auc"] == pytest.approx(interval.auc)
    assert m["auc_ci_low"] < m["auc"] <= m["auc_ci_high"]
    three = metrics.classification_metrics([0, 1, 2, 1], np.eye(3)[[0, 1, 2, 0]])
    assert three["auc_ci_low"] is None and three["auc_ci_high"] is None
    one_class = metrics.classification_metrics([1, 1], [[0.2, 0.8], [0.6, 0.4]])
    assert one_class["auc_ci_low"] is None
