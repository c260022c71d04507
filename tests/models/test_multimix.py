"""Tests of urep/models/multimix.py: shapes, the saliency bridge, instance norm, parameter count, saving."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from urep.models.multimix import PUBLIC_PYTORCH_PARAMS, MultiMix, multimix, multimix_network

SMALL = (4, 8, 16)


def _images(n: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, size, size, 1)).astype("float32")


@pytest.fixture(scope="module")
def small_model() -> MultiMix:
    keras.utils.set_random_seed(0)
    return multimix((32, 32, 1), channels=SMALL)


@pytest.mark.parametrize("size, channels", [(32, (4, 8, 16, 32, 64)), (64, SMALL)])
@pytest.mark.parametrize("bridge", [True, False])
def test_output_shapes_and_ranges(size, channels, bridge):
    model = multimix((size, size, 1), channels=channels, n_classes=3, saliency_bridge=bridge)
    out = model(_images(2, size))
    assert out["segmentation"].shape == (2, size, size, 1)
    assert out["classification"].shape == (2, 3)
    np.testing.assert_allclose(out["classification"].numpy().sum(axis=-1), 1.0, rtol=1e-5)
    seg = out["segmentation"].numpy()
    assert seg.min() >= 0.0 and seg.max() <= 1.0
    bottleneck = size // 2 ** (len(channels) - 1)
    assert model.network.get_layer("encoder_out").output.shape[1:] == (bottleneck, bottleneck, channels[-1])
    assert [i.name for i in model.network.inputs] == (["image", "saliency"] if bridge else ["image"])


def test_bridge_reaches_first_decoder_stage_at_one_eighth():
    network = multimix_network((64, 64, 1))
    pool = network.get_layer("saliency_bridge_pool")
    assert pool.output.shape[1:] == (8, 8, 2)  # image + saliency at the first decoder stage's resolution
    assert network.get_layer("dec4_concat").output.shape[-1] == 256 + 128 + 2


def test_saliency_shape_nonzero_normalized_and_input_dependent(small_model):
    x1, x2 = _images(2, 32, seed=1), _images(2, 32, seed=2)
    s1 = small_model.saliency(x1).numpy()
    s2 = small_model.saliency(x2).numpy()
    assert s1.shape == (2, 32, 32, 1)
    assert np.all(s1 >= 0) and np.count_nonzero(s1) > 0.5 * s1.size
    np.testing.assert_allclose(s1.max(axis=(1, 2, 3)), 1.0, rtol=1e-6)  # per-image max normalization
    assert np.abs(s1 - s2).max() > 1e-3


def test_saliency_is_gradient_of_predicted_class_logit(small_model):
    raw = multimix((32, 32, 1), channels=SMALL, saliency_normalization="none")
    raw.network.set_weights(small_model.network.get_weights())
    x = tf.constant(_images(3, 32, seed=3))
    with tf.GradientTape() as tape:
        tape.watch(x)
        logits = raw.network([x, tf.zeros_like(x)], training=False)["class_logits"]
        predicted = tf.gather(logits, tf.argmax(logits, axis=-1), batch_dims=1)
        score = tf.reduce_sum(predicted)
    expected = tf.abs(tape.gradient(score, x)).numpy()
    np.testing.assert_allclose(raw.saliency(x).numpy(), expected, rtol=1e-5, atol=1e-9)
    normalized = expected / expected.max(axis=(1, 2, 3), keepdims=True)
    np.testing.assert_allclose(small_model.saliency(x).numpy(), normalized, rtol=1e-4, atol=1e-7)


def test_saliency_of_each_image_does_not_depend_on_the_batch(small_model):
    x = _images(3, 32, seed=4)
    together = small_model.saliency(x).numpy()
    alone = np.concatenate([small_model.saliency(x[i:i + 1]).numpy() for i in range(3)])
    np.testing.assert_allclose(together, alone, rtol=1e-3, atol=1e-5)


def test_segmentation_depends_on_the_saliency_input(small_model):
    x = tf.constant(_images(2, 32, seed=5))
    with_saliency = small_model.network([x, small_model.saliency(x)], training=False)["segmentation_logits"]
    with_zeros = small_model.network([x, tf.zeros_like(x)], training=False)["segmentation_logits"]
    assert np.abs(with_saliency.numpy() - with_zeros.numpy()).max() > 1e-4
    # call() is exactly the network fed with the model's own saliency, and inference is deterministic.
    out = small_model(x)["segmentation"].numpy()
    np.testing.assert_allclose(out, tf.sigmoid(with_saliency).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out, small_model(x)["segmentation"].numpy())


def test_group_norm_with_groups_minus_one_is_instance_norm(small_model):
    probe = keras.Model(small_model.network.get_layer("image").output,
                        small_model.network.get_layer("enc1_inorm1").output)
    values = probe(_images(2, 32, seed=6)).numpy()
    np.testing.assert_allclose(values.mean(axis=(1, 2)), 0.0, atol=1e-4)  # per image, per channel
    np.testing.assert_allclose(values.std(axis=(1, 2)), 1.0, atol=1e-2)


def test_parameter_count_at_256_against_public_pytorch_model():
    network = multimix_network((256, 256, 1))
    # The public model's 1,965,173 includes an unused 17 -> 1 1x1 conv (`conv_last_saliency`, 18 weights).
    assert network.count_params() == 1_965_155 == PUBLIC_PYTORCH_PARAMS - 18
    affine = multimix_network((256, 256, 1), norm_affine=True)
    norm_channels = 2 * (16 + 32 + 64 + 128 + 256) + 2 * (16 + 32 + 64 + 128)
    assert affine.count_params() == 1_965_155 + 2 * norm_channels


def test_keras_save_load_round_trip(small_model, tmp_path):
    path = tmp_path / "multimix.keras"
    small_model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, MultiMix) and loaded.saliency_bridge
    x = _images(2, 32, seed=7)
    for key in ("segmentation", "classification"):
        np.testing.assert_allclose(loaded(x)[key].numpy(), small_model(x)[key].numpy(), rtol=1e-5, atol=1e-6)


def test_input_normalization_is_inside_the_model():
    model = multimix((32, 32, 1), channels=SMALL, input_mean=0.25, input_std=0.5)
    probe = keras.Model(model.network.get_layer("image").output,
                        model.network.get_layer("input_normalization").output)
    np.testing.assert_allclose(probe(np.full((1, 32, 32, 1), 0.75, "float32")).numpy(), 1.0, rtol=1e-6)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"input_shape": (30, 32, 1)}, "divisible by 16"),
        ({"input_shape": (32, 32)}, "input_shape"),
        ({"n_classes": 1}, "n_classes"),
        ({"dropout": 1.0}, "dropout"),
        ({"channels": (8,)}, "channels"),
        ({"input_std": 0.0}, "input_std"),
        ({"saliency_normalization": "l2"}, "saliency_normalization"),
    ],
)
def test_bad_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        multimix(**kwargs)
