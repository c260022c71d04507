"""Heads: shapes on 32x32 and 256x256, shared encoder layers, inherited (copied) decoder weights, names."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from urep.models import (
    cdae,
    classification_head,
    dilated_cnn,
    reconstruction_head_from_autoencoder,
    segmentation_head_from_autoencoder,
    segmentation_head_from_encoder,
    truncate,
    unet,
)
from urep.models.outputs import probability_map

IMAGES = np.random.default_rng(0).random((2, 32, 32, 1)).astype("float32")


@pytest.fixture()
def autoencoder():
    model = cdae((32, 32, 1), filters=(2, 3, 4, 5))
    rng = np.random.default_rng(1)
    model.set_weights([rng.normal(size=w.shape).astype("float32") ** 2 + 0.1 for w in model.get_weights()])
    return model


@pytest.fixture()
def doppler_encoder():
    return truncate(dilated_cnn((32, 32, 1), filters=(2, 2, 2, 4, 4, 4), dense_units=4))


def _shares_encoder(head: keras.Model, encoder: keras.Model) -> bool:
    return all(head.get_layer(layer.name) is layer for layer in encoder.layers[1:])


def test_classification_head(doppler_encoder):
    head = classification_head(doppler_encoder, n_classes=3, dense_units=8, dropout=0.3, name="flow")
    probs = head(IMAGES).numpy()
    assert probs.shape == (2, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert [layer.name for layer in head.layers[-4:]] == [
        "flow_gap",
        "flow_fc",
        "flow_dropout",
        "flow_predictions",
    ]
    assert head.get_layer("flow_dropout").rate == 0.3
    assert head.name == "flow"
    assert _shares_encoder(head, doppler_encoder)


def test_segmentation_head_from_encoder_without_upsampling(doppler_encoder):
    head = segmentation_head_from_encoder(doppler_encoder, decoder_filters=(4, 4, 2, 2, 2), name="envelope")
    mask = head(IMAGES).numpy()
    assert mask.shape == (2, 32, 32, 1)
    assert np.all((mask > 0) & (mask < 1))
    assert head.get_layer("envelope_mask").kernel_size == (1, 1)
    assert head.get_layer("envelope_dec_conv1").dilation_rate == (2, 2)
    assert head.get_layer("envelope_dec_conv4").dilation_rate == (1, 1)
    assert _shares_encoder(head, doppler_encoder)


def test_segmentation_head_from_a_downsampling_encoder_upsamples(autoencoder):
    head = segmentation_head_from_encoder(truncate(autoencoder), decoder_filters=(2,) * 5, name="lungs")
    assert head(IMAGES).shape == (2, 32, 32, 1)
    upsampling = [layer.name for layer in head.layers if isinstance(layer, keras.layers.UpSampling2D)]
    assert upsampling == ["lungs_dec_up1", "lungs_dec_up2", "lungs_dec_up3", "lungs_dec_up4"]


def test_segmentation_head_from_autoencoder_inherits_the_decoder(autoencoder):
    encoder = truncate(autoencoder)
    head = segmentation_head_from_autoencoder(autoencoder, encoder=encoder, name="lungs")
    assert head(IMAGES).shape == (2, 32, 32, 1)
    assert head.count_params() == autoencoder.count_params()
    assert _shares_encoder(head, encoder)
    for i in range(1, 5):
        for kind in ("dec_conv", "dec_bn"):
            copy, original = head.get_layer(f"lungs_{kind}{i}"), autoencoder.get_layer(f"{kind}{i}")
            assert copy is not original
            for a, b in zip(copy.weights, original.weights, strict=True):
                assert a is not b
                np.testing.assert_array_equal(a.numpy(), b.numpy())
    mask = head.get_layer("lungs_mask")
    assert mask.filters == 1 and mask.kernel_size == (3, 3)
    assert head.layers[-1].name == "lungs_mask_sigmoid" and head.layers[-1].activation is keras.activations.sigmoid
    # the copy is independent: training the head's decoder leaves the denoiser alone
    copy = head.get_layer("lungs_dec_conv1").kernel
    copy.assign(copy.numpy() + 1.0)
    assert not np.array_equal(autoencoder.get_layer("dec_conv1").kernel.numpy(), copy.numpy())


def test_reconstruction_head_reproduces_the_autoencoder(autoencoder):
    head = reconstruction_head_from_autoencoder(autoencoder, name="denoise")
    np.testing.assert_allclose(head(IMAGES).numpy(), autoencoder(IMAGES).numpy(), rtol=1e-6, atol=1e-7)
    assert head.get_layer("denoise_reconstruction").filters == 1


def test_two_heads_coexist_in_one_graph(autoencoder):
    encoder = truncate(autoencoder)
    first = segmentation_head_from_autoencoder(autoencoder, encoder=encoder, name="left")
    second = classification_head(encoder, 2, dense_units=4, name="right")
    fused = keras.Model(encoder.input, [first.output, second.output])
    names = [layer.name for layer in fused.layers]
    assert len(names) == len(set(names))
    assert names.count("encoder_out") == 1


def test_heads_at_256():
    encoder = truncate(cdae((256, 256, 1), filters=(2, 2, 2, 2)))
    assert classification_head(encoder, 2).output.shape == (None, 2)
    assert segmentation_head_from_encoder(encoder, decoder_filters=(2,) * 5).output.shape == (
        None,
        256,
        256,
        1,
    )
    autoencoder = cdae((256, 256, 1), filters=(2, 2, 2, 2))
    assert segmentation_head_from_autoencoder(autoencoder).output.shape == (None, 256, 256, 1)
    doppler = truncate(dilated_cnn((256, 256, 3), filters=(2,) * 6))
    assert segmentation_head_from_encoder(doppler, decoder_filters=(2,) * 5).output.shape == (
        None,
        256,
        256,
        1,
    )
    assert classification_head(doppler, 3).output.shape == (None, 3)


# -------------------------------------------------------------------------------------------- errors
def test_bad_head_name(doppler_encoder):
    with pytest.raises(ValueError, match="head name"):
        classification_head(doppler_encoder, 2, name="flow type")


def test_encoder_without_feature_map(doppler_encoder):
    flat = keras.Model(doppler_encoder.input, keras.layers.Flatten()(doppler_encoder.output))
    with pytest.raises(ValueError, match="one 4-D output"):
        classification_head(flat, 2)


def test_encoder_that_does_not_fit_the_decoder(autoencoder, doppler_encoder):
    with pytest.raises(ValueError, match="expects"):
        segmentation_head_from_autoencoder(autoencoder, encoder=doppler_encoder)


def test_decoder_that_is_not_a_chain():
    inputs = keras.Input((8, 8, 1))
    features = keras.layers.Conv2D(2, 3, strides=2, padding="same", name="encoder_out")(inputs)
    up = keras.layers.UpSampling2D(name="up")(features)
    skip = keras.layers.Concatenate(name="skip")([up, inputs])
    output = keras.layers.Conv2D(1, 3, padding="same", name="out")(skip)
    with pytest.raises(ValueError, match="not a plain chain"):
        segmentation_head_from_autoencoder(keras.Model(inputs, output))


def test_upsampling_that_cannot_be_inferred():
    inputs = keras.Input((24, 24, 1))
    features = keras.layers.Conv2D(2, 3, strides=3, padding="same", name="encoder_out")(inputs)
    with pytest.raises(ValueError, match="power-of-two"):
        segmentation_head_from_encoder(keras.Model(inputs, features))


def test_outputs_stay_float32_under_mixed_precision():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        autoencoder = cdae((32, 32, 1), filters=(2, 2, 2, 2))
        encoder = truncate(autoencoder)
        heads = [
            autoencoder,
            classification_head(encoder, 2, dense_units=4, name="cls"),
            segmentation_head_from_autoencoder(autoencoder, name="seg"),
            segmentation_head_from_encoder(encoder, decoder_filters=(2,) * 5, name="seg2"),
            unet((32, 32, 1), filters=(2, 2)),
        ]
        assert encoder.output.dtype == "float16"
        for model in heads:
            assert model.output.dtype == "float32", model.name
        # segmentation models: the mask convolution computes in float16, only its sigmoid in float32
        for model, mask in zip(heads[2:], ("seg_mask", "seg2_mask", "mask"), strict=True):
            assert model.get_layer(mask).compute_dtype == "float16"
            last = model.layers[-1]
            assert last.name == f"{mask}_sigmoid" and last.compute_dtype == "float32"
            assert last.activation is keras.activations.sigmoid
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_mask_layers_in_float32_are_the_papers_convolution_with_sigmoid(autoencoder):
    """In float32, `{name}_mask` + `{name}_mask_sigmoid` give the values of one sigmoid convolution."""
    head = segmentation_head_from_autoencoder(autoencoder, name="seg")
    mask = head.get_layer("seg_mask")
    assert mask.activation is keras.activations.linear
    features = keras.Model(head.input, mask.input)
    single = keras.layers.Conv2D(1, mask.kernel_size, padding=mask.padding, activation="sigmoid")
    x = np.random.default_rng(0).random((2, *head.input.shape[1:]), dtype=np.float32)
    single.build(features.output.shape)
    single.set_weights(mask.get_weights())
    np.testing.assert_allclose(head(x).numpy(), single(features(x)).numpy(), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("skips", [None, "add"])
def test_context_blocks_start_as_the_papers_head_and_train_while_the_encoder_is_frozen(skips):
    source = cdae((32, 32, 1), filters=(2, 3, 4, 5), output="residual", skips=skips)
    plain = segmentation_head_from_autoencoder(source, name="seg")
    head = segmentation_head_from_autoencoder(source, context_dilations=(1, 2), name="seg")
    head.get_layer("seg_mask").set_weights(plain.get_layer("seg_mask").get_weights())
    np.testing.assert_array_equal(plain.predict(IMAGES, verbose=0), head.predict(IMAGES, verbose=0))
    # two blocks on the 2x2x5 map: 3x3 convolution + BN (4 per channel) + 1x1 projection, each with biases
    block = 5 * 9 * 5 + 5 + 4 * 5 + 5 * 5 + 5
    assert head.count_params() - plain.count_params() == 2 * block
    assert head.get_layer("seg_context_conv2").dilation_rate == (2, 2)
    encoder = [layer for layer in head.layers if layer.name.startswith("enc_")]
    for layer in encoder:
        layer.trainable = False
    frozen = [w.numpy().copy() for layer in encoder for w in layer.weights]
    head.compile(optimizer=keras.optimizers.Adam(0.01), loss="binary_crossentropy")
    head.fit(IMAGES, (IMAGES > 0.5).astype("float32"), epochs=2, verbose=0)
    for before, w in zip(frozen, [w for layer in encoder for w in layer.weights], strict=True):
        np.testing.assert_array_equal(before, w.numpy())
    assert np.abs(head.get_layer("seg_context_proj1").kernel.numpy()).max() > 0  # left its zero start


def test_context_dilations_are_checked(autoencoder):
    with pytest.raises(ValueError, match=r"context_dilations must be a non-empty sequence of positive integers"):
        segmentation_head_from_autoencoder(autoencoder, context_dilations=(0, 2))


@pytest.mark.parametrize("skips", [None, "add"])
def test_narrow_context_blocks_keep_the_receptive_field_with_fewer_parameters(skips):
    source = cdae((32, 32, 1), filters=(2, 3, 4, 5), output="residual", skips=skips)
    plain = segmentation_head_from_autoencoder(source, name="seg")
    wide = segmentation_head_from_autoencoder(source, context_dilations=(1, 2, 4), name="seg")
    narrow = segmentation_head_from_autoencoder(source, context_dilations=(1, 2, 4), context_width=2, name="seg")
    # per block on the 5-channel map: 3x3 convolution to `width` filters + BN (4 per filter) + 1x1 back to 5
    assert narrow.count_params() - plain.count_params() == 3 * (5 * 9 * 2 + 2 + 4 * 2 + 2 * 5 + 5)
    assert wide.count_params() - plain.count_params() == 3 * (5 * 9 * 5 + 5 + 4 * 5 + 5 * 5 + 5)
    assert narrow.get_layer("seg_context_conv3").dilation_rate == (4, 4)
    assert narrow.get_layer("seg_context_add3").output.shape == wide.get_layer("seg_context_add3").output.shape
    narrow.get_layer("seg_mask").set_weights(plain.get_layer("seg_mask").get_weights())
    np.testing.assert_array_equal(plain.predict(IMAGES, verbose=0), narrow.predict(IMAGES, verbose=0))
    assert narrow.get_layer("seg_context_proj1").kernel.shape == (1, 1, 2, 5)


def test_context_width_is_checked(autoencoder):
    with pytest.raises(ValueError, match=r"context_width=8 needs context_dilations"):
        segmentation_head_from_autoencoder(autoencoder, context_width=8)
    with pytest.raises(ValueError, match=r"context_width must be a positive integer, got 0"):
        segmentation_head_from_autoencoder(autoencoder, context_dilations=(1,), context_width=0)


def test_weights_of_the_single_float32_mask_layer_load_into_the_split_layout(tmp_path):
    """A weights file saved when the mask was one float32 sigmoid convolution loads unchanged (the activation
    layer has no weights), as `urep.models.outputs` states."""
    inputs = keras.Input((8, 8, 1))
    features = keras.layers.Conv2D(4, 3, padding="same", name="features")(inputs)
    old = keras.Model(inputs, keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid", dtype="float32",
                                                  name="seg_mask")(features))
    path = tmp_path / "old.weights.h5"
    old.save_weights(path)
    inputs = keras.Input((8, 8, 1))
    features = keras.layers.Conv2D(4, 3, padding="same", name="features")(inputs)
    new = keras.Model(inputs, probability_map(features, 1, 3, name="seg_mask"))
    new.load_weights(path)
    x = np.random.default_rng(1).random((2, 8, 8, 1), dtype=np.float32)
    np.testing.assert_allclose(new(x).numpy(), old(x).numpy(), rtol=1e-6, atol=1e-7)
    assert [layer.name for layer in new.layers[-2:]] == ["seg_mask", "seg_mask_sigmoid"]
