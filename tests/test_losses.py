"""Losses against hand-computed values on tiny tensors; compile / custom-loop use; serialization; bad options."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from urep.losses import (
    KL_MODES,
    BCEDiceLoss,
    CategoricalCrossentropy,
    DiceLoss,
    MeanSquaredError,
    WeightedSumLoss,
    dice_coefficient,
    fixmatch_loss,
    get_loss,
    segmentation_kl,
    weighted_sum,
)

LN2 = math.log(2.0)


def _masks(*images: list[list[float]]) -> np.ndarray:
    """2x2 single-channel images -> (batch, 2, 2, 1) float32."""
    return np.asarray(images, dtype="float32")[..., None]


EMPTY = [[0, 0], [0, 0]]
FULL = [[1, 1], [1, 1]]
HALF = [[0.5, 0.5], [0.5, 0.5]]
CORNER = [[1, 0], [0, 0]]
CORNER_HALF = [[0.5, 0.5], [0, 0]]

# [constructor args, (y_true, y_pred), expected]
CASES = [
    # empty mask predicted empty: Dice (0 + 1) / (0 + 0 + 1) = 1 -> loss 0
    (DiceLoss, {}, (_masks(EMPTY), _masks(EMPTY)), 0.0),
    # empty mask, 0.5 everywhere: (0 + 1) / (0 + 2 + 1) -> loss 2/3
    (DiceLoss, {}, (_masks(EMPTY), _masks(HALF)), 2 / 3),
    # full mask predicted full: (8 + 1) / (4 + 4 + 1) -> loss 0
    (DiceLoss, {}, (_masks(FULL), _masks(FULL)), 0.0),
    # full mask, 0.5 everywhere: (4 + 1) / (4 + 2 + 1) = 5/7 -> loss 2/7
    (DiceLoss, {}, (_masks(FULL), _masks(HALF)), 2 / 7),
    # one pixel, half of it hit: (1 + 1) / (1 + 1 + 1) -> 1/3; without smoothing 1 / 2 -> 1/2
    (DiceLoss, {}, (_masks(CORNER), _masks(CORNER_HALF)), 1 / 3),
    (DiceLoss, {"smooth": 0.0}, (_masks(CORNER), _masks(CORNER_HALF)), 1 / 2),
    # per image then averaged: (0 + 2/7) / 2; pooled over the batch: (4 + 1) / (4 + 2 + 1) -> 2/7
    (DiceLoss, {}, (_masks(EMPTY, FULL), _masks(EMPTY, HALF)), 1 / 7),
    (DiceLoss, {"per_image": False}, (_masks(EMPTY, FULL), _masks(EMPTY, HALF)), 2 / 7),
    # BCE of 0.5 is ln 2 per pixel; Dice as above
    (BCEDiceLoss, {}, (_masks(FULL), _masks(HALF)), LN2 + 2 / 7),
    (BCEDiceLoss, {}, (_masks(EMPTY), _masks(HALF)), LN2 + 2 / 3),
    (BCEDiceLoss, {"bce_weight": 2.0, "dice_weight": 0.5}, (_masks(FULL), _masks(HALF)), 2 * LN2 + 1 / 7),
    (BCEDiceLoss, {"dice_weight": 0.0}, (_masks(EMPTY, FULL), _masks(EMPTY, HALF)), LN2 / 2),
    # perfect prediction: BCE only the 1e-7 clipping, Dice 0
    (BCEDiceLoss, {}, (_masks(CORNER), _masks(CORNER)), 0.0),
    # logits 0 are probabilities 0.5
    (BCEDiceLoss, {"from_logits": True}, (_masks(FULL), _masks(EMPTY)), LN2 + 2 / 7),
]


@pytest.mark.parametrize("loss_class, args, inputs, expected", CASES)
def test_loss_values(loss_class, args, inputs, expected):
    value = float(loss_class(**args)(*inputs))
    assert value == pytest.approx(expected, abs=1e-5)


def test_dice_coefficient_shapes():
    y_true, y_pred = _masks(EMPTY, FULL), _masks(EMPTY, HALF)
    per_image = dice_coefficient(y_true, y_pred)
    np.testing.assert_allclose(np.asarray(per_image), [1.0, 5 / 7], rtol=1e-6)
    assert np.asarray(dice_coefficient(y_true, y_pred, per_image=False)).shape == ()


def test_sample_weight_weights_images():
    y_true, y_pred = _masks(EMPTY, FULL), _masks(EMPTY, HALF)
    value = float(DiceLoss()(y_true, y_pred, sample_weight=np.array([0.0, 1.0], "float32")))
    assert value == pytest.approx((0 * 0 + 1 * 2 / 7) / 2, abs=1e-6)


def test_keras_losses_by_name():
    probs = np.array([[0.25, 0.75]], "float32")
    assert float(get_loss("cce")(np.array([[0.0, 1.0]], "float32"), probs)) == pytest.approx(-math.log(0.75))
    assert float(get_loss("sparse_cce")(np.array([1]), probs)) == pytest.approx(-math.log(0.75))
    assert float(get_loss("mse")(np.zeros((1, 2), "float32"), probs)) == pytest.approx((0.0625 + 0.5625) / 2)
    assert float(
        get_loss("bce")(np.ones((1, 1), "float32"), np.full((1, 1), 0.5, "float32"))
    ) == pytest.approx(LN2)
    assert isinstance(get_loss("bce_dice", bce_weight=0.5), BCEDiceLoss)
    assert get_loss("dice", smooth=2.0).smooth == 2.0
    assert CategoricalCrossentropy is keras.losses.CategoricalCrossentropy
    assert MeanSquaredError is keras.losses.MeanSquaredError


def test_weighted_sum():
    total = weighted_sum({"seg": np.float32(0.5), "cls": np.float32(2.0)}, {"seg": 2.0, "cls": 0.25})
    assert float(total) == pytest.approx(1.5)
    assert float(weighted_sum({"a": np.float32(1.0), "b": np.float32(3.0)})) == pytest.approx(4.0)


def test_weighted_sum_loss_over_named_tasks():
    loss = WeightedSumLoss({"seg": "dice", "cls": CategoricalCrossentropy()}, {"seg": 2.0, "cls": 1.0})
    y_true = {"seg": _masks(FULL), "cls": np.array([[0.0, 1.0]], "float32")}
    y_pred = {"seg": _masks(HALF), "cls": np.array([[0.5, 0.5]], "float32")}
    parts = loss.components(y_true, y_pred)
    assert float(parts["seg"]) == pytest.approx(2 / 7, abs=1e-6)
    assert float(parts["cls"]) == pytest.approx(LN2, abs=1e-6)
    assert float(loss(y_true, y_pred)) == pytest.approx(4 / 7 + LN2, abs=1e-5)
    with pytest.raises(ValueError, match=r"y_pred lacks tasks \['cls'\]"):
        loss(y_true, {"seg": y_pred["seg"]})


def test_usable_in_compile_and_saved_with_the_model(tmp_path):
    inputs = keras.Input((4, 4, 1))
    model = keras.Model(inputs, keras.layers.Conv2D(1, 1, activation="sigmoid")(inputs))
    model.compile(optimizer="sgd", loss=BCEDiceLoss(bce_weight=0.5, smooth=2.0, per_image=False))
    x = np.random.default_rng(0).random((4, 4, 4, 1)).astype("float32")
    history = model.fit(x, (x > 0.5).astype("float32"), epochs=1, batch_size=2, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert isinstance(loaded.loss, BCEDiceLoss)
    assert (loaded.loss.bce_weight, loaded.loss.smooth, loaded.loss.per_image) == (0.5, 2.0, False)


def test_config_round_trip():
    loss = DiceLoss(smooth=0.5, per_image=False)
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(restored, DiceLoss) and restored.smooth == 0.5 and restored.per_image is False


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: DiceLoss(smooth=-1.0), "smooth"),
        (lambda: DiceLoss(per_image="yes"), "per_image"),
        (lambda: BCEDiceLoss(bce_weight=-0.1), "bce_weight"),
        (lambda: BCEDiceLoss(bce_weight=0, dice_weight=0), "cannot both be 0"),
        (lambda: get_loss("focal"), "unknown loss 'focal'; expected one of bce_dice, dice"),
        (lambda: weighted_sum({}), "at least one"),
        (lambda: weighted_sum({"a": 1.0}, {"b": 1.0}), r"missing \['a'\], unknown \['b'\]"),
        (lambda: weighted_sum({"a": 1.0}, {"a": -1.0}), "weight of task 'a'"),
        (lambda: WeightedSumLoss({"a": "nope"}), "unknown loss 'nope'"),
    ],
)
def test_bad_options_raise(build, message):
    with pytest.raises(ValueError, match=message):
        build()


# -- semi-supervised terms (MultiMix) --------------------------------------------------------------------
def test_pseudo_label_mask_respects_the_threshold():
    # Two classes: max softmax probability = sigmoid(|logit difference|).
    max_probs = np.array([0.69, 0.71, 0.9, 0.5, 0.7001])
    diffs = np.log(max_probs / (1 - max_probs))
    weak = tf.constant(np.stack([np.zeros(5), diffs], axis=1) * np.array([[1.0], [-1], [1], [1], [-1]]),
                       tf.float32)
    strong = tf.constant(np.random.default_rng(0).standard_normal((5, 2)), tf.float32)
    loss, mask = fixmatch_loss(weak, strong, threshold=0.7)
    np.testing.assert_array_equal(mask.numpy(), [0, 1, 1, 0, 1])
    pseudo = weak.numpy().argmax(axis=1)
    log_probs = strong.numpy() - np.log(np.exp(strong.numpy()).sum(axis=1, keepdims=True))
    ce = -log_probs[np.arange(5), pseudo]
    assert float(loss) == pytest.approx(float(np.mean(ce * mask.numpy())), rel=1e-5)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([weak, strong])
        loss, _ = fixmatch_loss(weak, strong, 0.7)
    assert tape.gradient(loss, weak) is None  # pseudo-labels are constants
    assert np.abs(tape.gradient(loss, strong).numpy()).sum() > 0
    nothing_kept, mask = fixmatch_loss(weak, strong, threshold=0.95)
    assert float(nothing_kept) == 0.0 and mask.numpy().sum() == 0


@pytest.mark.parametrize("mode", ["pixelwise", "batch_mean"])
def test_kl_is_zero_for_identical_and_positive_for_different_predictions(mode):
    rng = np.random.default_rng(1)
    p = tf.constant(rng.uniform(0.05, 0.95, (3, 8, 8, 1)), tf.float32)
    assert float(segmentation_kl(p, p, mode)) == pytest.approx(0.0, abs=1e-7)
    q = tf.constant(rng.uniform(0.05, 0.95, (3, 8, 8, 1)), tf.float32)
    assert float(segmentation_kl(p, q, mode)) > 1e-3
    with tf.GradientTape() as tape:
        tape.watch(q)
        value = segmentation_kl(p, q, mode)
    assert np.abs(tape.gradient(value, q).numpy()).sum() > 0


def test_kl_matches_the_bernoulli_formula_on_batch_means():
    p = tf.constant([[[[0.9]]], [[[0.7]]]])  # labelled batch mean 0.8
    q = tf.constant([[[[0.2]]]])  # unlabelled (a different batch size is fine)
    expected = 0.8 * np.log(0.8 / 0.2) + 0.2 * np.log(0.2 / 0.8)
    assert float(segmentation_kl(p, q, "batch_mean")) == pytest.approx(expected, rel=1e-5)


def test_public_code_single_channel_softmax_kl_is_always_zero():
    """The defect being fixed: softmax over one channel is 1, so its KL carries no signal."""
    labelled = tf.constant(np.random.default_rng(2).standard_normal((2, 8, 8, 1)), tf.float32)
    unlabelled = -labelled
    p = tf.nn.softmax(labelled, axis=-1)
    public = p * (tf.nn.log_softmax(labelled, axis=-1) - tf.nn.log_softmax(unlabelled, axis=-1))
    assert float(tf.reduce_mean(public)) == 0.0
    assert float(segmentation_kl(tf.sigmoid(labelled), tf.sigmoid(unlabelled), "pixelwise")) > 0.1


def test_kl_default_is_the_papers_pixelwise_reading():
    # Pixel by pixel the pairs (0.9 vs 0.1) and (0.1 vs 0.9) differ strongly; their batch means (0.5) agree.
    p = tf.constant([[[[0.9]]], [[[0.1]]]])
    q = tf.constant([[[[0.1]]], [[[0.9]]]])
    expected = 0.9 * np.log(9) + 0.1 * np.log(1 / 9)
    assert float(segmentation_kl(p, q)) == pytest.approx(expected, rel=1e-5)
    assert float(segmentation_kl(p, q, "batch_mean")) == pytest.approx(0.0, abs=1e-7)


def test_kl_rejects_an_unknown_mode():
    p = tf.constant([[[[0.5]]]])
    assert KL_MODES == ("pixelwise", "batch_mean")
    with pytest.raises(ValueError, match=r"kl mode must be one of \('pixelwise', 'batch_mean'\), got 'mean'"):
        segmentation_kl(p, p, "mean")
