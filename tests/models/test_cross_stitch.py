"""Cross-stitch units and networks: mixing, identity = independent columns, serialization, bad input."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from urep.models.cross_stitch import (
    CrossStitch,
    cross_stitch_network,
    cross_stitch_units,
    default_stitch_points,
)

SIZE = 16


def column() -> keras.Model:
    inputs = keras.Input((SIZE, SIZE, 1), name="image")
    x = keras.layers.Conv2D(4, 3, strides=2, padding="same", name="conv1")(inputs)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU(name="relu1")(x)
    x = keras.layers.Conv2D(6, 3, padding="same", dilation_rate=2, activation="relu", name="encoder_out")(x)
    return keras.Model(inputs, x, name="column")


def head(n_classes: int, tag: str):
    def build(x):
        x = keras.layers.GlobalAveragePooling2D(name=f"{tag}_gap")(x)
        return keras.layers.Dense(n_classes, activation="softmax", name=f"{tag}_probs")(x)

    return build


def images(n: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, SIZE, SIZE, 1)).astype("float32")


def test_unit_mixes_with_its_matrix():
    unit = CrossStitch(self_weight=0.9)
    a = np.ones((2, 3, 3, 2), "float32")
    b = np.full((2, 3, 3, 2), 2.0, "float32")
    out_a, out_b = unit([a, b])
    np.testing.assert_allclose(unit.mixing_matrix, [[0.9, 0.1], [0.1, 0.9]], rtol=1e-6)
    np.testing.assert_allclose(out_a, 0.9 * 1 + 0.1 * 2, rtol=1e-6)
    np.testing.assert_allclose(out_b, 0.1 * 1 + 0.9 * 2, rtol=1e-6)


def test_unit_three_inputs_rows_sum_to_one():
    unit = CrossStitch(self_weight=0.8)
    unit([np.zeros((1, 4)), np.zeros((1, 4)), np.zeros((1, 4))])
    matrix = unit.mixing_matrix
    np.testing.assert_allclose(np.diag(matrix), 0.8, rtol=1e-6)
    np.testing.assert_allclose(matrix[0, 1], 0.1, rtol=1e-6)
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0, rtol=1e-6)


def test_per_channel_unit_uses_one_matrix_per_channel():
    unit = CrossStitch(per_channel=True)
    a = np.ones((1, 2, 2, 3), "float32")
    b = np.zeros((1, 2, 2, 3), "float32")
    unit([a, b])
    assert unit.mixing_matrix.shape == (3, 2, 2)
    alpha = unit.mixing_matrix.copy()
    alpha[1] = [[0.0, 1.0], [1.0, 0.0]]  # channel 1 swaps the columns
    unit.alpha.assign(alpha)
    out_a, out_b = (np.asarray(t) for t in unit([a, b]))
    np.testing.assert_allclose(out_a[..., 0], 0.9, rtol=1e-6)
    np.testing.assert_allclose(out_a[..., 1], 0.0, atol=1e-7)
    np.testing.assert_allclose(out_b[..., 1], 1.0, rtol=1e-6)


@pytest.mark.parametrize("bad", [-0.1, 1.5, True, "0.9"])
def test_unit_rejects_bad_self_weight(bad):
    with pytest.raises(ValueError, match="self_weight"):
        CrossStitch(self_weight=bad)


def test_unit_rejects_mismatched_or_single_inputs():
    with pytest.raises(ValueError, match="same shape"):
        CrossStitch()([np.zeros((1, 4)), np.zeros((1, 5))])
    with pytest.raises(ValueError, match="at least 2"):
        CrossStitch().build([(None, 4)])


def test_default_stitch_points_are_the_nonlinearities():
    assert default_stitch_points(column()) == ("relu1", "encoder_out")


def test_network_layout_names_and_outputs():
    net = cross_stitch_network(column, heads={"seg": head(2, "seg"), "cls": head(3, "cls")})
    names = [layer.name for layer in net.layers]
    for task in ("seg", "cls"):
        for layer in ("conv1", "bn1", "relu1", "encoder_out"):
            assert f"{task}_{layer}" in names
    assert [unit.name for unit in cross_stitch_units(net)] == ["cross_stitch_relu1", "cross_stitch_encoder_out"]
    out = net(images())
    assert set(out) == {"seg", "cls"}
    assert out["seg"].shape == (3, 2) and out["cls"].shape == (3, 3)


def test_columns_start_from_template_weights():
    template = column()
    template.get_layer("conv1").set_weights([np.full((3, 3, 1, 4), 0.5, "float32"), np.zeros(4, "float32")])
    net = cross_stitch_network(lambda: template, stitch_after=("relu1",))
    for task in ("task1", "task2"):
        np.testing.assert_array_equal(net.get_layer(f"{task}_conv1").get_weights()[0], 0.5)
    fresh = cross_stitch_network(lambda: template, stitch_after=("relu1",), copy_weights=False)
    assert not np.allclose(fresh.get_layer("task1_conv1").get_weights()[0], 0.5)


def reference_column(net: keras.Model, task: str, tag: str, n_classes: int) -> keras.Model:
    """A standalone column + head holding the network's weights for `task`."""
    ref_column = column()
    for layer in ref_column.layers[1:]:
        layer.set_weights(net.get_layer(f"{task}_{layer.name}").get_weights())
    out = head(n_classes, f"ref_{tag}")(ref_column.output)
    ref = keras.Model(ref_column.input, out)
    for suffix in ("gap", "probs"):
        ref.get_layer(f"ref_{tag}_{suffix}").set_weights(net.get_layer(f"{tag}_{suffix}").get_weights())
    return ref


def test_identity_mixing_reduces_to_independent_columns():
    keras.utils.set_random_seed(1)
    net = cross_stitch_network(
        column, heads={"seg": head(2, "seg"), "cls": head(3, "cls")}, self_weight=1.0, copy_weights=False
    )
    # the two columns hold different weights (copy_weights=False), so equal outputs are not a coincidence
    assert not np.allclose(net.get_layer("seg_conv1").get_weights()[0], net.get_layer("cls_conv1").get_weights()[0])
    x = tf.constant(images(4))
    out = net(x, training=False)
    for task, n_classes in (("seg", 2), ("cls", 3)):
        expected = reference_column(net, task, task, n_classes)(x, training=False)
        np.testing.assert_allclose(out[task], expected, rtol=1e-5, atol=1e-6)

    # no gradient crosses: task "seg"'s loss does not depend on column "cls" and vice versa
    for task, other in (("seg", "cls"), ("cls", "seg")):
        other_vars = [v for layer in net.layers if layer.name.startswith(f"{other}_") for v in layer.trainable_variables]
        own_vars = [v for layer in net.layers if layer.name.startswith(f"{task}_") for v in layer.trainable_variables]
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(net(x, training=False)[task] ** 2)
        grads = tape.gradient(loss, other_vars + own_vars)
        for variable, grad in zip(other_vars, grads[: len(other_vars)], strict=True):
            assert grad is None or float(tf.reduce_max(tf.abs(grad))) == 0.0, variable.path
        assert any(float(tf.reduce_max(tf.abs(g))) > 0 for g in grads[len(other_vars):] if g is not None)


def test_non_identity_mixing_couples_the_columns():
    keras.utils.set_random_seed(2)
    net = cross_stitch_network(column, heads={"seg": head(2, "seg"), "cls": head(3, "cls")}, copy_weights=False)
    x = tf.constant(images(2))
    other_vars = [v for layer in net.layers if layer.name.startswith("cls_") for v in layer.trainable_variables]
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(net(x, training=False)["seg"] ** 2)
    grads = tape.gradient(loss, other_vars)
    assert any(g is not None and float(tf.reduce_max(tf.abs(g))) > 0 for g in grads)


def test_save_load_round_trip(tmp_path):
    net = cross_stitch_network(column, heads=[head(2, "a"), head(2, "b")], per_channel=True)
    unit = cross_stitch_units(net)[0]
    unit.alpha.assign(unit.mixing_matrix * 0.5)
    path = tmp_path / "cs.keras"
    net.save(path)
    loaded = keras.models.load_model(path)
    x = images(2)
    for task in ("task1", "task2"):
        np.testing.assert_allclose(loaded(x)[task], net(x)[task], rtol=1e-6)
    np.testing.assert_allclose(cross_stitch_units(loaded)[0].mixing_matrix, unit.mixing_matrix)


def test_network_rejects_bad_arguments():
    with pytest.raises(ValueError, match="not layers of the column"):
        cross_stitch_network(column, stitch_after=("nope",))
    with pytest.raises(ValueError, match="duplicates"):
        cross_stitch_network(column, stitch_after=("relu1", "relu1"))
    with pytest.raises(ValueError, match="n_tasks"):
        cross_stitch_network(column, n_tasks=3, heads=[head(2, "a"), head(2, "b")])
    with pytest.raises(ValueError, match="n_tasks"):
        cross_stitch_network(column, n_tasks=1)


def test_network_rejects_columns_that_are_not_chains():
    def branched() -> keras.Model:
        inputs = keras.Input((SIZE, SIZE, 1))
        a = keras.layers.Conv2D(2, 3, padding="same", name="a")(inputs)
        b = keras.layers.Conv2D(2, 3, padding="same", name="b")(inputs)
        return keras.Model(inputs, keras.layers.Add(name="add")([a, b]))

    with pytest.raises(ValueError, match="plain chains"):
        cross_stitch_network(branched)
