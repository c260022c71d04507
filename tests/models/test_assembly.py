"""MultiTaskModel: freezing, one-pass fused inference, save/load, bit-for-bit inheritance, baselines."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from urep.models import (
    MultiTaskModel,
    baseline_denoiser,
    baseline_like,
    cdae,
    classification_head,
    truncate,
)

IMAGES = np.random.default_rng(0).random((4, 32, 32, 1)).astype("float32")


def _randomise(model: keras.Model, seed: int) -> None:
    """Weights unlike any fresh initialisation (positive BN variances)."""
    rng = np.random.default_rng(seed)
    model.set_weights(
        [(rng.normal(size=w.shape) ** 2 * 0.5 + 0.05).astype("float32") for w in model.get_weights()]
    )


@pytest.fixture()
def source():
    model = cdae((32, 32, 1), filters=(2, 3, 4, 5))
    _randomise(model, 1)
    return model


@pytest.fixture()
def assembly(source):
    assembly = MultiTaskModel(truncate(source), name="cxr")
    assembly.add_classification_head("abnormal", n_classes=2, dense_units=4)
    assembly.add_segmentation_head("lungs", autoencoder=source)
    assembly.add_segmentation_head("lungs_plain", decoder_filters=(2, 2, 2, 2, 2))
    return assembly


def _values(variables) -> list[np.ndarray]:
    return [np.array(v.numpy()) for v in variables]


def _step(model: keras.Model, targets, loss_fn) -> None:
    optimizer = keras.optimizers.SGD(learning_rate=0.5)
    with tf.GradientTape() as tape:
        loss = loss_fn(targets, model(IMAGES, training=True))
    variables = model.trainable_variables
    optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))


def test_task_models_share_the_encoder(assembly):
    encoder_layers = assembly.encoder.layers[1:]
    for model in assembly.task_models.values():
        assert all(model.get_layer(layer.name) is layer for layer in encoder_layers)
    assert assembly.kinds == {
        "abnormal": "classification",
        "lungs": "segmentation",
        "lungs_plain": "segmentation",
    }
    assert assembly.task_names == ["abnormal", "lungs", "lungs_plain"]


def test_head_and_shared_variables_partition_each_task_model(assembly):
    shared = {id(v) for v in assembly.shared_variables}
    for name, model in assembly.task_models.items():
        head = {id(v) for v in assembly.head_variables(name)}
        assert not head & shared
        assert head | shared == {id(v) for v in model.weights}
    assert len(assembly.head_variables("abnormal", trainable_only=True)) == 4  # two Dense kernels and biases


def test_frozen_encoder_is_unchanged_after_a_step_while_the_head_changes(assembly):
    assembly.freeze_shared()
    assert assembly.shared_frozen and assembly.shared_trainable_variables == []
    model = assembly.task_model("lungs")
    shared_before = _values(assembly.shared_variables)  # BN moving statistics included
    head_before = _values(assembly.head_variables("lungs"))
    _step(model, (IMAGES > 0.5).astype("float32"), keras.losses.BinaryCrossentropy())
    for before, variable in zip(shared_before, assembly.shared_variables, strict=True):
        np.testing.assert_array_equal(before, variable.numpy())
    # every kernel moves (conv biases right before batch norm get a zero gradient, so they may not)
    changed = {
        v.path: not np.array_equal(before, v.numpy())
        for before, v in zip(head_before, assembly.head_variables("lungs"), strict=True)
        if v.path.endswith("kernel")
    }
    assert len(changed) == 5 and all(changed.values()), changed


def test_unfrozen_encoder_moves(assembly):
    assembly.freeze_shared()
    assembly.unfreeze_shared()
    assert not assembly.shared_frozen
    before = _values(assembly.encoder.trainable_variables)
    _step(assembly.task_model("lungs"), (IMAGES > 0.5).astype("float32"), keras.losses.BinaryCrossentropy())
    kernels = [v.path for v in assembly.encoder.trainable_variables if v.path.endswith("kernel")]
    moved = [
        v.path
        for old, v in zip(before, assembly.encoder.trainable_variables, strict=True)
        if not np.array_equal(old, v.numpy())
    ]
    assert set(kernels) <= set(moved)


def test_fused_model_is_one_encoder_pass_with_the_task_outputs(assembly):
    fused = assembly.fused_model()
    names = [layer.name for layer in fused.layers]
    assert names.count("enc_conv1") == 1 and len(names) == len(set(names))
    assert fused.get_layer("encoder_out") is assembly.encoder.get_layer("encoder_out")
    outputs = fused(IMAGES)
    assert set(outputs) == {"abnormal", "lungs", "lungs_plain"}
    for name, model in assembly.task_models.items():
        np.testing.assert_allclose(outputs[name].numpy(), model(IMAGES).numpy(), rtol=1e-6, atol=1e-7)


def test_save_and_load_round_trip(assembly, tmp_path):
    assembly.freeze_shared()
    expected = {name: model(IMAGES).numpy() for name, model in assembly.task_models.items()}
    assembly.save(tmp_path / "assembly")
    manifest = json.loads((tmp_path / "assembly" / "manifest.json").read_text())
    assert manifest["heads"]["lungs"]["kind"] == "segmentation"

    loaded = MultiTaskModel.load(tmp_path / "assembly")
    assert loaded.name == "cxr" and loaded.kinds == assembly.kinds and loaded.shared_frozen
    for name, model in loaded.task_models.items():
        np.testing.assert_array_equal(model(IMAGES).numpy(), expected[name])
    # the reloaded task models share the reloaded encoder: one assignment reaches every task
    kernel = loaded.encoder.get_layer("enc_conv1").kernel
    kernel.assign(kernel.numpy() + 1.0)
    for model in loaded.task_models.values():
        np.testing.assert_array_equal(model.get_layer("enc_conv1").kernel.numpy(), kernel.numpy())
    # an on-the-fly head after reloading
    loaded.add_classification_head("severity", n_classes=3, dense_units=4)
    assert loaded.fused_model()(IMAGES)["severity"].shape == (4, 3)


def test_heads_inherit_a_saved_source_bit_for_bit(source, tmp_path):
    path = tmp_path / "source.keras"
    source.save(path)
    saved = {layer.name: [w.copy() for w in layer.get_weights()] for layer in source.layers}
    loaded = keras.saving.load_model(path, compile=False)
    assembly = MultiTaskModel(truncate(loaded))
    classifier = assembly.add_classification_head("abnormal", 2, dense_units=4)
    segmenter = assembly.add_segmentation_head("lungs", autoencoder=loaded)
    for layer in assembly.encoder.layers[1:]:
        for got, want in zip(classifier.get_layer(layer.name).get_weights(), saved[layer.name], strict=True):
            np.testing.assert_array_equal(got, want)
    for name in ("dec_conv1", "dec_bn1", "dec_conv4", "dec_bn4"):
        for got, want in zip(segmenter.get_layer(f"lungs_{name}").get_weights(), saved[name], strict=True):
            np.testing.assert_array_equal(got, want)


def test_summary_table(assembly):
    rows = assembly.summary_table()
    assert [row[0] for row in rows] == ["<encoder>", "abnormal", "lungs", "lungs_plain"]
    encoder_total = assembly.encoder.count_params()
    assert rows[0][2] == encoder_total
    assert rows[1][2] == encoder_total + (5 * 4 + 4) + (4 * 2 + 2)
    assembly.freeze_shared()
    assert assembly.summary_table()[1][1] == (5 * 4 + 4) + (4 * 2 + 2)


# -------------------------------------------------------------------------------------------- errors
def test_duplicate_and_invalid_names(assembly):
    with pytest.raises(ValueError, match="already has a head named 'lungs'"):
        assembly.add_classification_head("lungs", 2)
    with pytest.raises(ValueError, match="head name"):
        assembly.add_classification_head("2lungs", 2)
    with pytest.raises(KeyError, match="heads: abnormal, lungs, lungs_plain"):
        assembly.task_model("heart")


def test_a_head_that_copies_the_encoder_is_refused(source):
    assembly = MultiTaskModel(truncate(source))

    def copied(encoder, name):
        clone = keras.models.clone_model(encoder)
        return classification_head(clone, 2, name=name)

    with pytest.raises(ValueError, match="shared encoder's input"):
        assembly.add_head("copy", copied)


def test_a_head_with_clashing_layer_names_is_refused(source):
    assembly = MultiTaskModel(truncate(source))
    assembly.add_head("first", lambda encoder, name: classification_head(encoder, 2, name="same"))
    with pytest.raises(ValueError, match="reuses layer names"):
        assembly.add_head("second", lambda encoder, name: classification_head(encoder, 2, name="same"))


def test_fusing_without_heads(source):
    with pytest.raises(ValueError, match="no head"):
        MultiTaskModel(truncate(source)).fused_model()


def test_load_errors(assembly, tmp_path):
    with pytest.raises(FileNotFoundError, match="manifest.json is missing"):
        MultiTaskModel.load(tmp_path)
    assembly.save(tmp_path)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["format"] = "other/9"
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="format 'other/9'"):
        MultiTaskModel.load(tmp_path)


# ------------------------------------------------------------------------------------------ baselines
def test_baseline_like_has_the_architecture_and_fresh_weights(assembly):
    head = assembly.task_model("lungs")
    baseline = baseline_like(head)
    assert baseline.name == "lungs_baseline"
    assert [layer.name for layer in baseline.layers] == [layer.name for layer in head.layers]
    assert baseline.count_params() == head.count_params()
    assert not {id(v) for v in baseline.weights} & {id(v) for v in head.weights}
    assert not np.array_equal(
        baseline.get_layer("enc_conv1").kernel.numpy(), head.get_layer("enc_conv1").kernel.numpy()
    )
    assert baseline(IMAGES).shape == head(IMAGES).shape


def test_baseline_denoiser_is_a_fresh_cdae():
    model = baseline_denoiser(input_shape=(32, 32, 1), filters=(2, 2, 2, 2))
    assert model.name == "baseline_denoiser"
    assert model.count_params() == cdae((32, 32, 1), filters=(2, 2, 2, 2)).count_params()


def test_a_segmentation_head_with_context_blocks_saves_and_reloads(source, tmp_path):
    assembly = MultiTaskModel(truncate(source), name="cxr")
    lungs = assembly.add_segmentation_head("lungs", autoencoder=source, context_dilations=(1, 2), context_width=3)
    assert {"lungs_context_conv1", "lungs_context_add2"} <= {layer.name for layer in lungs.layers}
    _randomise(lungs.get_layer("lungs_context_proj1"), 2)  # a trained block, not the identity
    expected = lungs(IMAGES).numpy()
    assembly.save(tmp_path / "assembly")
    manifest = json.loads((tmp_path / "assembly" / "manifest.json").read_text())
    assert manifest["heads"]["lungs"]["config"]["context_dilations"] == [1, 2]
    assert manifest["heads"]["lungs"]["config"]["context_width"] == 3
    assert lungs.get_layer("lungs_context_conv2").filters == 3
    loaded = MultiTaskModel.load(tmp_path / "assembly")
    np.testing.assert_array_equal(loaded.task_models["lungs"](IMAGES).numpy(), expected)
