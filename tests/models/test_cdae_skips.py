"""The skip-connected CDAE variant (`cdae(skips=...)`): shapes, parameter count, live skips, heads."""

from __future__ import annotations

import numpy as np
import pytest

from urep.models import (
    cdae,
    cdae_parameter_count,
    classification_head,
    reconstruction_head_from_autoencoder,
    segmentation_head_from_autoencoder,
    truncate,
)
from urep.models.cdae import DEFAULT_FILTERS

IMAGES = np.random.default_rng(0).random((2, 32, 32, 1)).astype("float32")


def _randomised(model):
    """Signed random weights (the sigmoid output must not saturate), positive BatchNorm variances."""
    rng = np.random.default_rng(1)
    for w in model.weights:
        if "variance" in w.path:
            w.assign(rng.uniform(0.5, 1.5, w.shape).astype("float32"))
        else:
            w.assign(rng.normal(0.0, 0.5, w.shape).astype("float32"))
    return model


def _zero_bottleneck(model):
    """`encoder_out` = ReLU(0) = 0 in inference mode (BatchNorm gamma and beta of the last level zeroed)."""
    bn = model.get_layer("enc_bn4")
    bn.gamma.assign(np.zeros(bn.gamma.shape, "float32"))
    bn.beta.assign(np.zeros(bn.beta.shape, "float32"))


@pytest.mark.parametrize("skips", ["add", "concat"])
@pytest.mark.parametrize("output", ["direct", "residual"])
@pytest.mark.parametrize("channels", [1, 3])
def test_skip_variant_shapes_and_parameter_count(skips, output, channels):
    model = cdae((32, 32, channels), filters=(2, 3, 4, 5), output=output, skips=skips)
    assert model(np.zeros((2, 32, 32, channels), "float32")).shape == (2, 32, 32, channels)
    assert model.get_layer("encoder_out").output.shape == (None, 2, 2, 5)
    merges = [layer.name for layer in model.layers if layer.name.startswith("dec_skip") and "proj" not in layer.name]
    assert merges == [f"dec_skip{i}" for i in range(1, 5)]
    expected = cdae_parameter_count((2, 3, 4, 5), input_channels=channels, output=output, skips=skips)
    assert model.count_params() == expected


def test_parameter_counts_of_the_default_widths():
    plain = cdae_parameter_count(DEFAULT_FILTERS)
    assert plain == 796_769
    # add: equal widths need no projection except the image level (1 -> 112 channels, 224 parameters)
    assert cdae_parameter_count(DEFAULT_FILTERS, skips="add", output="residual") == plain + 224 + 2
    # concat: decoder levels 1-3 read 112 more channels, the last level one (the image)
    assert cdae_parameter_count(DEFAULT_FILTERS, skips="concat") == plain + 3 * 112 * 9 * 112 + 1 * 9 * 112


@pytest.mark.parametrize("skips", ["add", "concat"])
def test_skips_carry_shallow_encoder_detail_past_a_zeroed_bottleneck(skips):
    """With the bottleneck forced to zero, the skip variant's output still depends on `enc_conv1`; the
    papers' layout (no skips) then returns the same image whatever `enc_conv1` holds."""
    outputs = {}
    for variant in (None, skips):
        model = _randomised(cdae((32, 32, 1), filters=(4, 4, 4, 4), skips=variant))
        _zero_bottleneck(model)
        np.testing.assert_array_equal(truncate(model)(IMAGES, training=False).numpy(), 0.0)
        before = model(IMAGES, training=False).numpy()
        kernel = model.get_layer("enc_conv1").kernel
        kernel.assign(kernel.numpy() * -3.0)
        outputs[variant] = (before, model(IMAGES, training=False).numpy())
    np.testing.assert_array_equal(*outputs[None])
    assert np.abs(outputs[skips][0] - outputs[skips][1]).max() > 1e-3


@pytest.mark.parametrize("skips", ["add", "concat"])
def test_heads_from_a_skip_variant_keep_the_skips_and_share_the_encoder(skips):
    autoencoder = _randomised(cdae((32, 32, 1), filters=(2, 3, 4, 5), skips=skips))
    encoder = truncate(autoencoder)
    assert encoder.output.shape == (None, 2, 2, 5)
    classifier = classification_head(encoder, n_classes=2, dense_units=4, name="cls")
    assert classifier(IMAGES).shape == (2, 2)

    seg = segmentation_head_from_autoencoder(autoencoder, encoder=encoder, name="lungs")
    assert seg(IMAGES).shape == (2, 32, 32, 1)
    assert seg.count_params() == autoencoder.count_params()  # the whole network, last convolution replaced
    for i in range(1, 5):
        assert seg.get_layer(f"lungs_dec_skip{i}") is not None
    assert seg.get_layer("enc_conv1") is autoencoder.get_layer("enc_conv1")  # shared, not copied
    np.testing.assert_array_equal(
        seg.get_layer("lungs_dec_conv4").kernel.numpy(), autoencoder.get_layer("dec_conv4").kernel.numpy()
    )

    denoise = reconstruction_head_from_autoencoder(autoencoder, encoder=encoder, name="denoise")
    np.testing.assert_allclose(denoise(IMAGES, training=False).numpy(),
                               autoencoder(IMAGES, training=False).numpy(), rtol=1e-5, atol=1e-6)

    _zero_bottleneck(autoencoder)  # the heads' skips are live: the shared enc_conv1 still reaches the mask
    before = seg(IMAGES, training=False).numpy()
    kernel = autoencoder.get_layer("enc_conv1").kernel
    kernel.assign(kernel.numpy() * -3.0)
    assert np.abs(seg(IMAGES, training=False).numpy() - before).max() > 1e-4


def test_residual_skip_variant_reconstruction_head_is_the_decoder_path():
    autoencoder = cdae((32, 32, 1), filters=(2, 2, 2, 2), output="residual", skips="concat")
    head = segmentation_head_from_autoencoder(autoencoder, name="seg")
    names = [layer.name for layer in head.layers]
    assert "input_skip" not in names and names[-2:] == ["seg_mask", "seg_mask_sigmoid"]
    assert head(IMAGES).shape == (2, 32, 32, 1)


def test_bad_skips_value():
    with pytest.raises(ValueError, match="skips must be None, 'add' or 'concat', got 'unet'"):
        cdae((32, 32, 1), filters=(2, 2), skips="unet")


def test_multitask_assembly_on_a_skip_variant_fuses_into_one_encoder_pass():
    from urep.models import MultiTaskModel

    source = _randomised(cdae((32, 32, 1), filters=(2, 3, 4, 5), output="residual", skips="add"))
    assembly = MultiTaskModel(truncate(source), name="cxr")
    assembly.add_classification_head("abnormal", n_classes=2, dense_units=4)
    assembly.add_segmentation_head("lungs", autoencoder=source)
    fused = assembly.fused_model()
    names = [layer.name for layer in fused.layers]
    assert names.count("enc_conv1") == 1 and "lungs_dec_skip4" in names
    outputs = fused(IMAGES, training=False)
    for name, model in assembly.task_models.items():
        np.testing.assert_allclose(outputs[name].numpy(), model(IMAGES, training=False).numpy(),
                                   rtol=1e-5, atol=1e-6)
