"""`urep.models.set_batchnorm_momentum` (every BatchNormalization layer, nested models included) and
`urep.models.BatchNorm` (the fused layer)."""

from __future__ import annotations

import keras
import pytest

from urep.models import set_batchnorm_momentum


def _nested_model() -> keras.Model:
    inner_in = keras.Input((8, 8, 1))
    inner = keras.Model(inner_in, keras.layers.BatchNormalization(name="inner_bn")(inner_in), name="inner")
    outer_in = keras.Input((8, 8, 1))
    x = keras.layers.BatchNormalization(name="outer_bn")(inner(outer_in))
    return keras.Model(outer_in, x, name="outer")


@pytest.mark.parametrize(("momentum", "expected"), [(0.9, 0.9), (None, 0.99)])
def test_sets_every_layer_including_nested(momentum, expected):
    model = _nested_model()
    assert set_batchnorm_momentum(model, momentum) is model
    assert model.get_layer("outer_bn").momentum == pytest.approx(expected)
    assert model.get_layer("inner").get_layer("inner_bn").momentum == pytest.approx(expected)


def test_pipeline_and_tuner_share_one_function():
    from urep import tuning
    from urep.experiments import pipeline

    assert tuning.hypermodels.set_batchnorm_momentum is set_batchnorm_momentum
    assert not hasattr(pipeline, "set_batchnorm_momentum")


# --- urep.models.BatchNorm: TensorFlow's fused kernel, the Keras layer's numbers -------------------------------

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from urep.models import BatchNorm, cdae, unet  # noqa: E402


def _pair(shape, momentum=0.9, seed=0, **kwargs):
    """A Keras BatchNormalization and a BatchNorm with the same (random, non-trivial) weights."""
    rng = np.random.default_rng(seed)
    keras_bn = keras.layers.BatchNormalization(momentum=momentum, **kwargs)
    fused_bn = BatchNorm(momentum=momentum, **kwargs)
    keras_bn.build(shape)
    fused_bn.build(shape)
    weights = [rng.normal(size=v.shape).astype("float32") for v in keras_bn.weights]
    weights[-1] = np.abs(weights[-1]) + 0.5  # moving variance > 0
    keras_bn.set_weights(weights)
    fused_bn.set_weights(weights)
    return keras_bn, fused_bn


def _input(shape, seed=1):
    return tf.constant(np.random.default_rng(seed).normal(2.0, 3.0, shape).astype("float32"))


@pytest.mark.parametrize("training", [True, False])
def test_fused_matches_keras_outputs_statistics_and_gradients(training):
    x = _input((4, 8, 8, 5))
    keras_bn, fused_bn = _pair(x.shape)
    initial_mean = fused_bn.moving_mean.numpy()
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        expected, got = keras_bn(x, training=training), fused_bn(x, training=training)
        loss_expected, loss_got = (tf.reduce_sum(y * tf.sin(y)) for y in (expected, got))
    np.testing.assert_allclose(got, expected, atol=1e-5)
    # moving statistics: updated identically in training (Bessel's correction undone), untouched otherwise
    for a, b in zip(keras_bn.get_weights(), fused_bn.get_weights(), strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-6)
    assert np.allclose(fused_bn.moving_mean.numpy(), initial_mean) is not training
    for a, b in zip(tape.gradient(loss_expected, [x, *keras_bn.trainable_weights]),
                    tape.gradient(loss_got, [x, *fused_bn.trainable_weights]), strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-3)


def test_training_moves_the_moving_statistics_by_the_momentum():
    x = _input((2, 4, 4, 3))
    _, bn = _pair(x.shape, momentum=0.75)
    before_mean, before_var = bn.moving_mean.numpy(), bn.moving_variance.numpy()
    bn(x, training=True)
    flat = x.numpy().reshape(-1, 3)
    np.testing.assert_allclose(bn.moving_mean, 0.75 * before_mean + 0.25 * flat.mean(0), rtol=1e-5)
    np.testing.assert_allclose(bn.moving_variance, 0.75 * before_var + 0.25 * flat.var(0), rtol=1e-5)


def test_frozen_layer_uses_the_moving_statistics_even_when_training():
    x = _input((2, 4, 4, 3))
    keras_bn, fused_bn = _pair(x.shape)
    keras_bn.trainable = fused_bn.trainable = False
    before = fused_bn.get_weights()
    np.testing.assert_allclose(fused_bn(x, training=True), keras_bn(x, training=True), atol=1e-5)
    for a, b in zip(before, fused_bn.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_bfloat16_inputs_follow_the_float32_result():
    x = _input((4, 8, 8, 5))
    keras_bn, fused_bn = _pair(x.shape)
    fused_bn_bf16 = BatchNorm(momentum=0.9, dtype="mixed_bfloat16")
    fused_bn_bf16.build(x.shape)
    fused_bn_bf16.set_weights(keras_bn.get_weights())
    got = fused_bn_bf16(x, training=True)
    assert got.dtype == tf.bfloat16
    np.testing.assert_allclose(tf.cast(got, "float32"), keras_bn(x, training=True), atol=0.05)
    np.testing.assert_allclose(fused_bn_bf16.moving_mean, keras_bn.moving_mean, rtol=1e-2)


@pytest.mark.parametrize("case", ["fused_off", "rank3", "no_scale_no_center"])
def test_cases_outside_the_kernel_give_the_keras_result(case):
    shape = (4, 6, 5) if case == "rank3" else (4, 6, 6, 5)
    kwargs = {"center": False, "scale": False} if case == "no_scale_no_center" else {}
    x = _input(shape)
    keras_bn, fused_bn = _pair(x.shape, **kwargs)
    if case == "fused_off":
        fused_bn = BatchNorm.from_config({**fused_bn.get_config(), "fused": False})
        fused_bn.build(x.shape)
        fused_bn.set_weights(keras_bn.get_weights())
    np.testing.assert_allclose(fused_bn(x, training=True), keras_bn(x, training=True), atol=1e-5)
    np.testing.assert_allclose(fused_bn.moving_variance, keras_bn.moving_variance, rtol=1e-6)


def test_fused_kernel_is_the_op_that_runs():
    x = _input((2, 8, 8, 4))
    _, bn = _pair(x.shape)
    assert _runs_fused(bn, x)
    bn.fused = False
    assert not _runs_fused(bn, x)


def _runs_fused(bn: BatchNorm, x: tf.Tensor) -> bool:
    graph = tf.function(lambda t: bn(t, training=True)).get_concrete_function(x).graph
    return any(op.type.startswith("FusedBatchNorm") for op in graph.get_operations())


@pytest.mark.skipif(bool(tf.config.list_physical_devices("GPU")), reason="the rule is for machines without a GPU")
@pytest.mark.parametrize(("channels", "fused", "expected"), [
    (8, None, False), (24, None, False), (16, None, True), (48, None, True), (8, True, True), (16, False, False)])
def test_automatic_choice_in_bfloat16_follows_the_channel_count(channels, fused, expected):
    """On a CPU, oneDNN's bfloat16 kernel was measured slower than Keras' layer for channels not a multiple of
    16: `fused=None` keeps the Keras layer there, `fused=True` forces the kernel."""
    bn = BatchNorm(fused=fused, dtype="mixed_bfloat16")
    x = tf.cast(_input((2, 4, 4, channels)), tf.bfloat16)
    bn.build(x.shape)
    assert _runs_fused(bn, x) is expected


def test_automatic_choice_in_float32_is_always_the_kernel():
    bn = BatchNorm()
    x = _input((2, 4, 4, 8))
    bn.build(x.shape)
    assert _runs_fused(bn, x)


def test_fused_must_be_none_true_or_false():
    with pytest.raises(ValueError, match=r"fused='yes'.*None \(automatic\), True or False"):
        BatchNorm(fused="yes")


def test_saved_model_keeps_the_layer_and_its_setting(tmp_path):
    inputs = keras.Input((8, 8, 2))
    model = keras.Model(inputs, BatchNorm(fused=False, name="bn")(inputs))
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    layer = loaded.get_layer("bn")
    assert type(layer) is BatchNorm and layer.fused is False
    x = _input((2, 8, 8, 2))
    np.testing.assert_allclose(loaded(x), model(x), atol=1e-6)


def test_builders_use_the_fused_layer_and_momentum_setting_reaches_it():
    for model in (cdae(input_shape=(32, 32, 1), filters=[8, 8]), unet(input_shape=(32, 32, 1), filters=[4, 8])):
        norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
        assert norms and all(type(layer) is BatchNorm and layer.fused is None for layer in norms)
        set_batchnorm_momentum(model, 0.5)
        assert all(layer.momentum == 0.5 for layer in norms)
