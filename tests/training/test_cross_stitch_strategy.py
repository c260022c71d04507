"""The `cross_stitch` strategy: registered, trained jointly, reported like the other strategies."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from urep.models import MultiTaskModel
from urep.models.cross_stitch import CrossStitchAssembly, cross_stitch_from_assembly
from urep.training import TrainConfig
from urep.training.cross_stitch import cross_stitch
from urep.training.strategies import Task, finetune, resolve_strategy


def disc_phantoms(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`n` 32x32 noise images, half with a bright disc: images, one-hot labels (disc or not), disc masks."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:32, :32]
    images = rng.uniform(0.0, 0.3, (n, 32, 32, 1)).astype("float32")
    masks = np.zeros((n, 32, 32, 1), "float32")
    labels = np.zeros((n, 2), "float32")
    for i in range(n):
        labels[i, i % 2] = 1.0
        if i % 2:
            disc = (yy - rng.integers(10, 22)) ** 2 + (xx - rng.integers(10, 22)) ** 2 <= rng.integers(5, 9) ** 2
            images[i, disc, 0] += 0.6
            masks[i, disc, 0] = 1.0
    return images, labels, masks


def batches(x: np.ndarray, y: np.ndarray, batch_size: int = 8):
    """An `epoch -> tf.data.Dataset` factory, shuffled with the epoch as seed."""
    return lambda epoch: tf.data.Dataset.from_tensor_slices((x, y)).shuffle(
        len(x), seed=epoch, reshuffle_each_iteration=False).batch(batch_size)


def tiny_assembly(seed: int = 0) -> MultiTaskModel:
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((32, 32, 1), name="image")
    h = keras.layers.Conv2D(4, 3, strides=2, padding="same", name="enc_conv1")(inputs)
    h = keras.layers.BatchNormalization(name="enc_bn1")(h)
    h = keras.layers.ReLU(name="enc_relu1")(h)
    h = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="encoder_out")(h)
    assembly = MultiTaskModel(keras.Model(inputs, h, name="encoder"))

    def cls_head(encoder, name):
        x = keras.layers.GlobalAveragePooling2D(name=f"{name}_gap")(encoder.output)
        return keras.Model(encoder.input, keras.layers.Dense(2, activation="softmax", name=f"{name}_out")(x))

    def seg_head(encoder, name):
        x = keras.layers.UpSampling2D(4, name=f"{name}_up")(encoder.output)
        out = keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid", name=f"{name}_out")(x)
        return keras.Model(encoder.input, out)

    assembly.add_head("cls", cls_head, kind="classification")
    assembly.add_head("seg", seg_head, kind="segmentation")
    return assembly


def tiny_tasks() -> list[Task]:
    images, labels, masks = disc_phantoms(32, seed=0)
    val_images, val_labels, val_masks = disc_phantoms(16, seed=1)
    return [
        Task("cls", "classification", None, "categorical_crossentropy", batches(images, labels),
             batches(val_images, val_labels), n_train=32),
        Task("seg", "segmentation", None, "binary_crossentropy", batches(images, masks),
             batches(val_images, val_masks), n_train=32),
    ]


def config(epochs: int = 2) -> TrainConfig:
    return TrainConfig(epochs=epochs, batch_size=8, optimizer={"name": "adam", "learning_rate": 0.01},
                       jit_compile=False, tensorboard=False, progress_bar=False, early_stopping_patience=None)


def test_registered_as_a_strategy():
    assert resolve_strategy("cross_stitch") is cross_stitch


def test_from_assembly_copies_encoder_and_heads_and_identity_matches_hard_sharing():
    assembly = tiny_assembly()
    network = cross_stitch_from_assembly(assembly, self_weight=1.0)
    assert network.task_names == ["cls", "seg"] and network.kinds == {"cls": "classification", "seg": "segmentation"}
    assert network.settings["stitch_after"] == ["enc_relu1", "encoder_out"]
    for task in ("cls", "seg"):
        np.testing.assert_array_equal(network.network.get_layer(f"{task}_enc_conv1").get_weights()[0],
                                      assembly.encoder.get_layer("enc_conv1").get_weights()[0])
    # copies, not the same variables
    shared_ids = {id(v) for v in assembly.encoder.weights}
    assert not shared_ids & {id(v) for v in network.network.weights}
    images = disc_phantoms(4, seed=3)[0]
    for task in ("cls", "seg"):
        np.testing.assert_allclose(network.task_models[task](images, training=False),
                                   assembly.task_models[task](images, training=False), rtol=1e-5, atol=1e-6)


def test_finetune_trains_columns_and_units_and_reports_like_joint():
    assembly = tiny_assembly()
    encoder_before = [w.copy() for w in assembly.encoder.get_weights()]
    results = finetune(assembly, tiny_tasks(), "cross_stitch", config())
    assert set(results) == {"cls", "seg"}
    for name, result in results.items():
        assert result.strategy == "cross_stitch" and result.phase == "cross_stitch"
        assert result.epochs_run == 2 and len(result.history["loss"]) == 2 and len(result.history["val_loss"]) == 2
        assert all(np.isfinite(result.history["loss"]))
        record = result.extra["cross_stitch"]
        assert record["stitch_after"] == ["enc_relu1", "encoder_out"] and record["self_weight"] == 0.9
        matrices = record["mixing_matrices"]
        assert set(matrices) == {"cross_stitch_enc_relu1", "cross_stitch_encoder_out"}
        # the units were trained: they moved away from their initialization
        assert not np.allclose(matrices["cross_stitch_encoder_out"], [[0.9, 0.1], [0.1, 0.9]])
        # a cross-stitch task model holds both columns: more parameters than the hard-sharing task model
        assert result.total_params > assembly.task_models[name].count_params()
        json.dumps(result.to_dict())
    # the hard-sharing assembly is not touched
    for before, after in zip(encoder_before, assembly.encoder.get_weights(), strict=True):
        np.testing.assert_array_equal(before, after)


def test_a_given_cross_stitch_assembly_is_trained_in_place():
    network = cross_stitch_from_assembly(tiny_assembly(), per_channel=True)
    assert isinstance(network, CrossStitchAssembly)
    assert network.task_model("seg") is network.task_models["seg"] and network.kind("seg") == "segmentation"
    with pytest.raises(KeyError, match="no task 'zz'"):
        network.task_model("zz")
    before = network.network.get_layer("cls_enc_conv1").get_weights()[0].copy()
    results = cross_stitch(network, tiny_tasks(), config(epochs=1))
    assert not np.allclose(network.network.get_layer("cls_enc_conv1").get_weights()[0], before)
    assert np.asarray(results["cls"].extra["cross_stitch"]["mixing_matrices"]["cross_stitch_enc_relu1"]).shape == (4, 2, 2)


def test_bad_inputs_raise():
    assembly = tiny_assembly()
    with pytest.raises(ValueError, match="at least 2 tasks"):
        cross_stitch(assembly, tiny_tasks()[:1], config())
    with pytest.raises(TypeError, match="MultiTaskModel"):
        cross_stitch({"cls": assembly.task_models["cls"]}, tiny_tasks(), config())
    with pytest.raises(KeyError, match="not heads of the assembly"):
        cross_stitch_from_assembly(assembly, tasks=["cls", "nope"])
