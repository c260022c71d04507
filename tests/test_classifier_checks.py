"""Classifiers that classify: balanced accuracy, AUC, predicted-positive fraction, the constant-classifier flag
(in results and report), class weights, and a classifier trained on separable phantoms that is not constant."""

from __future__ import annotations

import numpy as np
import pytest

from urep import metrics


def test_balanced_accuracy_auc_and_fraction_positive_by_hand():
    # 6 negatives, 2 positives; predictions: 5 of 6 negatives right, 1 of 2 positives right
    y = np.array([0, 0, 0, 0, 0, 0, 1, 1])
    p1 = np.array([0.1, 0.2, 0.3, 0.35, 0.4, 0.7, 0.9, 0.45])
    result = metrics.classification_metrics(y, np.stack([1 - p1, p1], axis=1))
    assert result["accuracy"] == pytest.approx(6 / 8)
    assert result["balanced_accuracy"] == pytest.approx((5 / 6 + 1 / 2) / 2)
    assert result["fraction_positive"] == pytest.approx(2 / 8)
    assert result["max_predicted_fraction"] == pytest.approx(6 / 8)
    # AUC: positives 0.9 (beats all 6 negatives) and 0.45 (beats 0.1, 0.2, 0.3, 0.35, 0.4) -> 11 / 12
    assert result["auc"] == pytest.approx(11 / 12)


def test_constant_classifier_is_flagged_on_a_balanced_set_only():
    y = np.array([0] * 10 + [1] * 10)
    always_one = np.tile([[0.3, 0.7]], (20, 1))
    flag = metrics.constant_prediction(y, always_one, ["normal", "abnormal"])
    assert flag == {"class": "abnormal", "predicted_fraction": 1.0, "true_fraction": 0.5, "n": 20}
    result = metrics.classification_metrics(y, always_one)
    assert result["accuracy"] == 0.5 and result["balanced_accuracy"] == 0.5 and result["fraction_positive"] == 1.0
    # 19 of 20 the same class still counts; 18 of 20 does not
    nearly = always_one.copy()
    nearly[0] = [0.9, 0.1]
    assert metrics.constant_prediction(y, nearly) is not None
    nearly[1] = [0.9, 0.1]
    assert metrics.constant_prediction(y, nearly) is None
    # a set that really is 90% one class: predicting it is not flagged
    skewed = np.array([1] * 18 + [0] * 2)
    assert metrics.constant_prediction(skewed, always_one) is None


def test_balanced_class_weights_change_the_loss_as_expected():
    import keras

    from urep.losses import ClassWeightedCrossentropy, balanced_class_weights

    labels = np.array([0, 0, 0, 1])
    weights = balanced_class_weights(labels, 3)
    assert weights == pytest.approx([4 / (2 * 3), 4 / (2 * 1), 1.0])   # class 2 absent -> 1
    y_true = np.eye(2, dtype=np.float32)[[0, 1]]
    y_pred = np.array([[0.8, 0.2], [0.4, 0.6]], np.float32)
    plain = keras.losses.categorical_crossentropy(y_true, y_pred).numpy()
    weighted = ClassWeightedCrossentropy([0.5, 3.0]).call(y_true, y_pred).numpy()
    np.testing.assert_allclose(weighted, plain * [0.5, 3.0], rtol=1e-6)
    unit = ClassWeightedCrossentropy([1.0, 1.0]).call(y_true, y_pred).numpy()
    np.testing.assert_allclose(unit, plain, rtol=1e-6)
    with pytest.raises(ValueError, match="non-negative"):
        ClassWeightedCrossentropy([-1.0, 1.0])


def test_classifier_on_separable_phantoms_is_not_constant():
    """Bright-disc vs dark images, imbalanced 3:1 in training: the weighted, validation-loss-selected classifier
    separates a balanced test set."""
    import keras

    from urep.data.batches import ArrayBatches
    from urep.losses import ClassWeightedCrossentropy, balanced_class_weights
    from urep.training.config import TrainConfig
    from urep.training.loop import train_model

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:16, :16]
    disc = ((yy - 8) ** 2 + (xx - 8) ** 2 < 20).astype(np.float32)

    def images(labels):
        noise = rng.normal(0, 0.1, (len(labels), 16, 16)).astype(np.float32)
        return (0.3 + 0.4 * labels[:, None, None] * disc + noise)[..., None]

    train_labels = np.array([0] * 48 + [1] * 16)
    test_labels = np.array([0] * 16 + [1] * 16)
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 1))
    h = keras.layers.Conv2D(4, 3, activation="relu", name="encoder_out")(inputs)
    outputs = keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(h))
    model = keras.Model(inputs, outputs)
    y = np.eye(2, dtype=np.float32)[train_labels]
    loss = ClassWeightedCrossentropy(balanced_class_weights(train_labels, 2))
    config = TrainConfig(epochs=15, batch_size=16, optimizer={"name": "adam", "learning_rate": 0.02},
                         jit_compile=False, progress_bar=False, tensorboard=False, checkpoint_every_epoch=False)
    train_model(model, loss, ArrayBatches(images(train_labels), y, 16, seed=0),
                ArrayBatches(images(train_labels), y, 16), config, kind="classification")
    probs = model.predict(images(test_labels), verbose=0)
    assert metrics.constant_prediction(test_labels, probs) is None
    assert metrics.classification_metrics(test_labels, probs)["balanced_accuracy"] > 0.8
