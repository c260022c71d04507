"""Backbone builders: the papers' exact parameter counts, shapes, stable layer names, bad sizes."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from urep.models import (
    baseline_classifier,
    cdae,
    cdae_parameter_count,
    closest_constant_width,
    dilated_cnn,
    last_conv_layer_name,
    parameter_counts,
    segmentation_decoder,
    segmentation_head_from_encoder,
    super_resolution,
    truncate,
)


# ------------------------------------------------------------------------------ exact counts (256x256)
def test_dilated_cnn_has_the_papers_460115_parameters():
    assert dilated_cnn().count_params() == 460_115


def test_dilated_encoder_plus_decoder_has_the_papers_786497_parameters():
    encoder = truncate(dilated_cnn(input_shape=(256, 256, 1)))
    assert encoder.count_params() == 393_408
    head = segmentation_head_from_encoder(encoder)
    assert head.count_params() == 786_497
    assert head.output.shape == (None, 256, 256, 1)
    assert not any(isinstance(layer, keras.layers.UpSampling2D) for layer in head.layers)


def test_segmentation_decoder_alone():
    assert segmentation_decoder().count_params() == 393_089


def test_baseline_classifier_has_the_papers_1573506_parameters():
    model = baseline_classifier()
    assert model.count_params() == 1_573_506
    assert model.output.shape == (None, 2)


def test_cdae_default_is_the_closest_constant_width_design():
    model = cdae()
    assert model.count_params() == 796_769 == cdae_parameter_count()
    assert parameter_counts(model) == (794_977, 796_769)
    assert closest_constant_width() == 112
    assert abs(model.count_params() - 800_067) / 800_067 < 0.005
    assert model.get_layer("encoder_out").output.shape == (None, 16, 16, 112)


@pytest.mark.parametrize(
    "filters, decoder_filters, channels",
    [((4, 8, 16, 32), None, 1), ((3, 5, 7, 9), (6, 6, 4, 2), 3), ((8, 8), None, 2)],
)
def test_cdae_parameter_count_matches_keras(filters, decoder_filters, channels):
    model = cdae((32, 32, channels), filters=filters, decoder_filters=decoder_filters)
    expected = cdae_parameter_count(filters, decoder_filters, input_channels=channels)
    assert model.count_params() == expected


def test_super_resolution_count():
    assert super_resolution().count_params() == 185_857


# ------------------------------------------------------------------------------------ shapes at 32x32
def test_shapes_at_32():
    images = np.random.default_rng(0).random((2, 32, 32, 1)).astype("float32")
    reconstruction = cdae((32, 32, 1), filters=(4, 4, 4, 4))(images)
    assert reconstruction.shape == (2, 32, 32, 1)
    assert np.all((reconstruction.numpy() >= 0) & (reconstruction.numpy() <= 1))
    probs = dilated_cnn((32, 32, 3), filters=(2, 2, 2, 4, 4, 4), dense_units=4)(np.repeat(images, 3, axis=-1))
    assert probs.shape == (2, 3)
    np.testing.assert_allclose(probs.numpy().sum(axis=1), 1.0, rtol=1e-5)
    probs = baseline_classifier((32, 32, 1), filters=(2, 2, 2, 2, 2, 4))(images)
    assert probs.shape == (2, 2)
    assert super_resolution((16, 16, 1), filters=4, n_convs=2)(images[:, :16, :16]).shape == (2, 32, 32, 1)


def test_baseline_classifier_initializes_its_convolutions_as_asked_and_keeps_its_size():
    import keras

    keras.utils.set_random_seed(0)
    default = baseline_classifier((64, 64, 1))
    he = baseline_classifier((64, 64, 1), kernel_initializer="he_normal")
    assert he.count_params() == default.count_params()
    for i in range(1, 7):
        kernels = [m.get_layer(f"conv{i}").kernel.numpy() for m in (default, he)]
        fan_in, fan_out = np.prod(kernels[0].shape[:-1]), kernels[0].shape[-1] * 9
        # glorot-uniform: std sqrt(2 / (fan_in + fan_out)); He-normal: sqrt(2 / fan_in)
        np.testing.assert_allclose(kernels[0].std(), np.sqrt(2.0 / (fan_in + fan_out)), rtol=0.15)
        np.testing.assert_allclose(kernels[1].std(), np.sqrt(2.0 / fan_in), rtol=0.15)
    with pytest.raises(ValueError, match="no_such_initializer"):
        baseline_classifier((32, 32, 1), kernel_initializer="no_such_initializer")


def test_baseline_classifier_pools_after_every_convolution():
    model = baseline_classifier((64, 64, 1), filters=(2, 2, 2, 2, 2, 2))
    assert model.get_layer("encoder_out").output.shape == (None, 1, 1, 2)
    assert [f"pool{i}" for i in range(1, 6)] == [layer.name for layer in model.layers if "pool" in layer.name]


# ------------------------------------------------------------------------------------ names, dilation
def test_dilated_cnn_layer_names_and_dilation():
    model = dilated_cnn((32, 32, 3))
    for i in range(1, 7):
        expected = (2, 2) if i >= 4 else (1, 1)
        assert model.get_layer(f"conv{i}").dilation_rate == expected
    for name in ("encoder_out", "gap", "fc", "dropout", "predictions"):
        model.get_layer(name)
    assert model.get_layer("dropout").rate == 0.5
    assert last_conv_layer_name(model) == "conv6"


def test_every_backbone_names_its_encoder_out():
    models = [
        cdae((32, 32, 1), filters=(2, 2, 2, 2)),
        dilated_cnn((32, 32, 3), filters=(2,) * 6),
        baseline_classifier((32, 32, 1), filters=(2,) * 6),
        super_resolution((16, 16, 1), filters=2, n_convs=2),
    ]
    for model in models:
        assert len(model.get_layer("encoder_out").output.shape) == 4


def test_cdae_layers():
    model = cdae((32, 32, 1), filters=(2, 3, 4, 5))
    assert [model.get_layer(f"enc_conv{i}").strides for i in range(1, 5)] == [(2, 2)] * 4
    assert [model.get_layer(f"dec_conv{i}").filters for i in range(1, 5)] == [5, 4, 3, 2]
    assert model.get_layer("reconstruction").activation.__name__ == "sigmoid"
    assert model.get_layer("reconstruction").filters == 1


def test_super_resolution_is_residual_learning():
    """With the residual branch zeroed the output is exactly the interpolated input."""
    model = super_resolution((8, 8, 1), filters=4, n_convs=2, interpolation="bilinear")
    residual = model.get_layer("residual")
    residual.set_weights([np.zeros_like(w) for w in residual.get_weights()])
    image = np.random.default_rng(1).random((1, 8, 8, 1)).astype("float32")
    upsampled = keras.layers.UpSampling2D(2, interpolation="bilinear")(image)
    np.testing.assert_allclose(model(image).numpy(), upsampled.numpy(), atol=1e-6)


# ------------------------------------------------------------------------------------------ bad sizes
@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: cdae((40, 40, 1)), "divisible by"),
        (lambda: cdae((32, 32, 1), filters=(4, 0, 4, 4)), "filters"),
        (lambda: cdae((32, 32, 1), filters=(4, 4), decoder_filters=(4,)), "decoder_filters must have 2"),
        (lambda: cdae((32, 32)), "input_shape"),
        (lambda: dilated_cnn((32, 32, 3), dilated_layers=(7,)), "dilated_layers"),
        (lambda: dilated_cnn((32, 32, 3), dropout=1.0), "dropout"),
        (lambda: dilated_cnn((32, 32, 3), n_classes=0), "n_classes"),
        (lambda: segmentation_decoder((8, 8, 4), dilation_rates=(1, 1)), "dilation_rates must have 5"),
        (lambda: segmentation_decoder((8, 8, 4), upsample_levels=6), "upsample_levels"),
        (lambda: super_resolution((8, 8, 1), interpolation="cubic"), "interpolation"),
    ],
)
def test_bad_sizes_raise(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_last_conv_layer_name_without_convolution():
    inputs = keras.Input((4,))
    with pytest.raises(ValueError, match="no 2-D convolution"):
        last_conv_layer_name(keras.Model(inputs, keras.layers.Dense(2)(inputs)))
