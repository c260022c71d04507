"""Independent heads trained on precomputed frozen-encoder features: the same training, fewer encoder passes."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from training_helpers import batches, tiny_encoder_and_heads

from urep.data.batches import ArrayBatches
from urep.training import Task, TrainConfig, finetune
from urep.training.features import head_on_features, split_at_encoder

FAST = {"jit_compile": False, "progress_bar": False, "optimizer": "adam", "learning_rate": 1e-2}


def _tasks(cls, seg, x, y, m, as_arrays: bool = True):
    data = (lambda a, b, seed=None: ArrayBatches(a, b, 8, seed)) if as_arrays else batches
    return [Task("cls", "classification", cls, "categorical_crossentropy", data(x, y, seed=1), data(x, y)),
            Task("seg", "segmentation", seg, "binary_crossentropy", data(x, m, seed=2), data(x, m))]


def _train(x, y, m, dropout: float, **options):
    encoder, cls, seg = tiny_encoder_and_heads(seed=0, dropout=dropout)
    results = finetune(None, _tasks(cls, seg, x, y, m, options.pop("as_arrays", True)), "independent",
                       TrainConfig(epochs=2, seed=0, **FAST), **options)
    return results, [v.numpy() for v in cls.weights + seg.weights]


def test_features_give_the_same_training_as_the_whole_model(phantoms, caplog):
    x, y, m = phantoms
    whole, whole_weights = _train(x, y, m, dropout=0.0, precompute_features=False)
    with caplog.at_level(logging.INFO, logger="urep.training.features"):
        cached, cached_weights = _train(x, y, m, dropout=0.0)
    assert "precomputed (8, 8, 8) features of 64 images" in caplog.text
    for name in ("cls", "seg"):
        np.testing.assert_allclose(cached[name].history["loss"], whole[name].history["loss"], rtol=1e-4)
        np.testing.assert_allclose(cached[name].history["val_loss"], whole[name].history["val_loss"], rtol=1e-4)
        assert (cached[name].trainable_params, cached[name].total_params) == (whole[name].trainable_params,
                                                                             whole[name].total_params)
        assert cached[name].extra["feature_seconds"] > 0 and "feature_seconds" not in whole[name].extra
    for a, b in zip(cached_weights, whole_weights, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_dropout_in_the_head_is_kept_and_plain_datasets_fall_back(phantoms, caplog):
    x, y, m = phantoms
    with caplog.at_level(logging.INFO, logger="urep.training.features"):
        results, _ = _train(x, y, m, dropout=0.5, as_arrays=False)
    assert "not ArrayBatches" in caplog.text
    assert "feature_seconds" not in results["cls"].extra
    encoder, cls, _ = tiny_encoder_and_heads(dropout=0.5)
    _, head = split_at_encoder(cls)
    assert "cls_dropout" in [layer.name for layer in head.layers]


def test_not_applied_when_not_exact_or_too_big(phantoms, caplog):
    import keras

    x, y, _ = phantoms
    encoder, cls, _ = tiny_encoder_and_heads()
    train = ArrayBatches(x, y, 8, seed=0)
    with caplog.at_level(logging.INFO, logger="urep.training.features"):
        assert head_on_features(cls, train) is None  # the encoder is trainable (not frozen)
        for layer in encoder.layers:
            layer.trainable = False
        assert head_on_features(cls, train, max_bytes=1000) is None
        assert head_on_features(cls, train) is not None
    assert "trainable variables" in caplog.text and "max_bytes" in caplog.text
    inputs = keras.Input((4,))
    assert split_at_encoder(keras.Model(inputs, keras.layers.Dense(2)(inputs))) is None


def test_array_batches_order_depends_on_seed_and_epoch_only():
    x, y = np.arange(10, dtype="float32")[:, None], np.arange(10)
    batches_ = ArrayBatches(x, y, 4, seed=3)
    features = batches_.with_inputs(x * 10)
    for epoch in (0, 1):
        order = [b.numpy().tolist() for _, b in batches_(epoch)]
        assert order == [b.numpy().tolist() for _, b in features(epoch)]
        assert [len(o) for o in order] == [4, 4, 2]
    assert [b.numpy().tolist() for _, b in batches_(0)] != [b.numpy().tolist() for _, b in batches_(1)]
    assert [b.numpy().tolist() for _, b in ArrayBatches(x, y, 4)(5)] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    with pytest.raises(ValueError, match="needs 10 rows"):
        batches_.with_inputs(x[:3])
    with pytest.raises(ValueError, match="batch_size"):
        ArrayBatches(x, y, 0)


def test_compute_features_equals_predict_and_traces_nothing(caplog):
    from urep.training.features import compute_features

    x = np.random.default_rng(0).random((70, 32, 32, 1)).astype("float32")  # batches of 64 and 6
    with caplog.at_level(logging.WARNING, logger="tensorflow"):
        for seed in range(6):  # one encoder per task and fold, as the independent strategy makes them
            encoder, _, _ = tiny_encoder_and_heads(seed=seed)
            features = compute_features(encoder, x, batch_size=64)
            assert features.dtype == np.float32 and features.shape == (70, 8, 8, 8)
    np.testing.assert_array_equal(features, encoder.predict(x, batch_size=64, verbose=0))
    assert compute_features(encoder, x[:0]).shape == (0, 8, 8, 8)
    assert "retracing" not in caplog.text
