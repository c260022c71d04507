"""Loss weighting for the joint strategy: fixed, homoscedastic uncertainty, GradNorm."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from training_helpers import disc_phantoms, tiny_encoder_and_heads

from urep.training.loss_weighting import (
    FixedWeights,
    GradNorm,
    UncertaintyWeighting,
    make_loss_weighting,
)
from urep.training.steps import JointStep
from urep.training.strategies import last_shared_kernel, shared_variables

NAMES, KINDS = ["cls", "seg"], ["classification", "segmentation"]


def _joint(weighting, steps=4, kinds=KINDS):
    x, y, m = disc_phantoms(8, seed=2)
    encoder, cls, seg = tiny_encoder_and_heads()
    dist_strategy = tf.distribute.get_strategy()
    layer = last_shared_kernel([cls, seg], shared_variables(None, [cls, seg]))
    weighting.build(NAMES, kinds, [1.0, 1.0], dist_strategy, layer)
    step = JointStep(NAMES, [cls, seg], [keras.losses.CategoricalCrossentropy(), keras.losses.BinaryCrossentropy()],
                     weighting, keras.optimizers.Adam(1e-2), dist_strategy, jit_compile=False)
    results = [step.train_step([(x, y), (x, m)]) for _ in range(steps)]
    return layer, [(float(t), losses.numpy()) for t, losses in results]


def test_uncertainty_combine_follows_kendall_with_kind_factors():
    weighting = UncertaintyWeighting(initial_log_variance=0.5)
    weighting.build(["rec", "cls"], ["reconstruction", "classification"], [1, 1], tf.distribute.get_strategy())
    total = float(weighting.combine([tf.constant(2.0), tf.constant(3.0)], num_replicas=1))
    expected = 0.5 * np.exp(-0.5) * 2.0 + 0.25 + 1.0 * np.exp(-0.5) * 3.0 + 0.25
    assert total == pytest.approx(expected, rel=1e-6)
    assert weighting.weights() == pytest.approx({"rec": 0.5 * np.exp(-0.5), "cls": np.exp(-0.5)})


def test_uncertainty_weights_are_learned():
    weighting = UncertaintyWeighting()
    _, steps = _joint(weighting)
    s = weighting.log_variances.numpy()
    assert np.all(s != 0.0)
    # first step: s = 0, so the combined loss is the plain sum of the task losses
    total, losses = steps[0]
    assert total == pytest.approx(losses.sum(), rel=1e-5)
    assert weighting.weights()["cls"] == pytest.approx(np.exp(-s[0]))


def test_gradnorm_updates_weights_and_keeps_their_sum():
    weighting = GradNorm(alpha=1.5, learning_rate=0.05)
    layer, steps = _joint(weighting)
    assert [v.path for v in layer] == ["encoder_out/kernel"]
    weights = weighting.task_weights.numpy()
    assert not np.allclose(weights, 1.0)
    assert weights.sum() == pytest.approx(2.0, rel=1e-5)
    np.testing.assert_allclose(weighting.initial_losses.numpy(), steps[0][1], rtol=1e-5)
    # the network's loss uses the weights of before the update of that step: replay the steps one at a time
    weighting = GradNorm(alpha=1.5, learning_rate=0.05)
    x, y, m = disc_phantoms(8, seed=2)
    encoder, cls, seg = tiny_encoder_and_heads()
    dist_strategy = tf.distribute.get_strategy()
    shared = last_shared_kernel([cls, seg], shared_variables(None, [cls, seg]))
    weighting.build(NAMES, KINDS, [1.0, 1.0], dist_strategy, shared)
    step = JointStep(NAMES, [cls, seg], [keras.losses.CategoricalCrossentropy(), keras.losses.BinaryCrossentropy()],
                     weighting, keras.optimizers.Adam(1e-2), dist_strategy, jit_compile=False)
    for _ in range(3):
        before = weighting.task_weights.numpy().copy()
        total, losses = step.train_step([(x, y), (x, m)])
        after = weighting.task_weights.numpy()
        assert float(total) == pytest.approx(float(np.dot(before, losses.numpy())), rel=1e-5)
        assert not np.allclose(before, after), "the weights change at every step"


def test_gradnorm_needs_a_shared_layer_and_valid_alpha():
    with pytest.raises(ValueError, match="alpha"):
        GradNorm(alpha=-1)
    with pytest.raises(ValueError, match="last shared layer"):
        GradNorm().build(NAMES, KINDS, [1, 1], tf.distribute.get_strategy(), [])


def test_fixed_weights_and_factory():
    weighting = make_loss_weighting({"seg": 2.0})
    assert isinstance(weighting, FixedWeights)
    weighting.build(NAMES, KINDS, [0.5, 1.0], tf.distribute.get_strategy())
    assert weighting.weights() == {"cls": 0.5, "seg": 2.0}
    assert float(weighting.combine([tf.constant(1.0), tf.constant(1.0)], 1)) == pytest.approx(2.5)
    with pytest.raises(ValueError, match="unknown tasks"):
        FixedWeights({"other": 1.0}).build(NAMES, KINDS, [1, 1], tf.distribute.get_strategy())
    with pytest.raises(ValueError, match="unknown loss weighting"):
        make_loss_weighting("dwa")
    assert isinstance(make_loss_weighting("gradnorm", alpha=0.5), GradNorm)
    with pytest.raises(ValueError, match="kind 'detection'"):
        UncertaintyWeighting().build(["a"], ["detection"], [1], tf.distribute.get_strategy())
