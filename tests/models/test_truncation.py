"""truncate: the truncated encoder IS the source's layers (shared variables), cut at a named layer."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from urep.models import cdae, dilated_cnn, truncate


@pytest.fixture()
def source():
    return dilated_cnn((32, 32, 3), filters=(2, 2, 4, 4, 4, 4), dense_units=4)


def test_truncated_layers_are_the_source_layers(source):
    encoder = truncate(source)
    assert [layer.name for layer in encoder.layers][-1] == "encoder_out"
    for layer in encoder.layers[1:]:
        assert layer is source.get_layer(layer.name)
    assert encoder.output.shape == (None, 32, 32, 4)
    assert "gap" not in [layer.name for layer in encoder.layers]


def test_changing_the_encoder_changes_the_source_and_back(source):
    encoder = truncate(source)
    images = np.random.default_rng(0).random((2, 32, 32, 3)).astype("float32")
    before = source(images).numpy()
    kernel = encoder.get_layer("conv6").kernel
    kernel.assign(kernel.numpy() * 3.0 + 0.5)
    assert not np.allclose(source(images).numpy(), before)
    np.testing.assert_array_equal(source.get_layer("conv6").kernel.numpy(), kernel.numpy())

    source_bias = source.get_layer("conv1").bias
    source_bias.assign(np.full(source_bias.shape, 7.0, dtype="float32"))
    np.testing.assert_array_equal(encoder.get_layer("conv1").bias.numpy(), 7.0)


def test_truncated_output_equals_the_source_intermediate(source):
    images = np.random.default_rng(1).random((2, 32, 32, 3)).astype("float32")
    features = truncate(source, "relu3")(images).numpy()
    probe = keras.Model(source.input, source.get_layer("relu3").output)
    np.testing.assert_array_equal(features, probe(images).numpy())


def test_missing_layer_lists_the_available_names(source):
    with pytest.raises(ValueError, match=r"no layer 'nope'; available layers: .*conv1.*encoder_out"):
        truncate(source, "nope")


def test_not_a_model():
    with pytest.raises(TypeError, match="keras.Model"):
        truncate("model.keras")


def test_truncating_a_loaded_model_keeps_its_weights(tmp_path):
    model = cdae((32, 32, 1), filters=(2, 2, 2, 2))
    path = tmp_path / "cdae.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, compile=False)
    encoder = truncate(loaded, name="cxr_encoder")
    assert encoder.name == "cxr_encoder"
    for variable, saved in zip(encoder.weights, truncate(model).weights, strict=True):
        np.testing.assert_array_equal(variable.numpy(), saved.numpy())
