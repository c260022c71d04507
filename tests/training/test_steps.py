"""Compiled steps trace once per input structure: the smaller last batch of an epoch reuses the trace."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from training_helpers import disc_phantoms, tiny_encoder_and_heads


def test_batch_function_traces_once_over_batch_sizes_and_again_for_a_new_structure():
    import tensorflow as tf

    from urep.training.steps import BatchFunction

    double = BatchFunction(lambda x, y: (2 * x, y))
    for n in (16, 5, 16, 1):
        out, _ = double(tf.ones((n, 3)), tf.zeros((n,), tf.int64))
        assert out.shape == (n, 3)
        np.testing.assert_array_equal(out.numpy(), 2 * np.ones((n, 3)))
    assert double.traces == 1
    double(tf.ones((4, 7)), tf.zeros((4,), tf.int64))  # another feature shape: a second trace, no error
    assert double.traces == 2


def _dataset(images, targets, batch_size=8):
    import tensorflow as tf

    return tf.data.Dataset.from_tensor_slices((images, targets)).batch(batch_size)


def test_task_steps_train_and_evaluate_with_a_remainder_batch_in_one_trace_each(caplog):
    import keras
    import tensorflow as tf

    from urep.training.steps import TaskSteps

    images, labels, _ = disc_phantoms(21)  # batches of 8, 8, 5
    _, cls_model, _ = tiny_encoder_and_heads()
    steps = TaskSteps("cls", cls_model, keras.losses.CategoricalCrossentropy(), keras.optimizers.Adam(1e-2),
                      tf.distribute.get_strategy(), jit_compile=False,
                      metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")])
    with caplog.at_level(logging.WARNING, logger="tensorflow"):
        losses = []
        for _ in range(3):
            losses += [float(steps.train_step(x, y)) for x, y in _dataset(images, labels)]
            results = steps.evaluate(_dataset(images, labels))
    assert steps._train.traces == 1
    assert steps.evaluator._eval.traces == 1
    assert steps.evaluator._update_metrics.traces == 1
    assert len(losses) == 9 and all(np.isfinite(losses))
    assert set(results) == {"loss", "accuracy"} and 0.0 <= results["accuracy"] <= 1.0
    assert "retracing" not in caplog.text


def test_joint_step_with_an_inactive_task_updates_only_the_active_model():
    import keras
    import tensorflow as tf

    from urep.training.loss_weighting import FixedWeights
    from urep.training.steps import JointStep

    images, labels, masks = disc_phantoms(12)
    _, cls_model, seg_model = tiny_encoder_and_heads()
    dist_strategy = tf.distribute.get_strategy()
    weighting = FixedWeights()
    weighting.build(["cls", "seg"], ["classification", "segmentation"], [1.0, 1.0], dist_strategy)
    step = JointStep(["cls", "seg"], [cls_model, seg_model],
                     [keras.losses.CategoricalCrossentropy(), keras.losses.BinaryCrossentropy()],
                     weighting, keras.optimizers.SGD(0.1), dist_strategy,
                     jit_compile=False)
    seg_head = seg_model.get_layer("seg_out").kernel
    cls_head = cls_model.get_layer("cls_out").kernel
    seg_before, cls_before = seg_head.numpy().copy(), cls_head.numpy().copy()
    for n in (8, 4):  # a full and a last, smaller batch
        total, losses = step.train_step([(images[:n], labels[:n]), None], active=(True, False))
        assert float(losses[1]) == 0.0 and float(total) == pytest.approx(float(losses[0]))
    assert step._train_active[(True, False)].traces == 1
    np.testing.assert_array_equal(seg_head.numpy(), seg_before)
    assert not np.allclose(cls_head.numpy(), cls_before)
    total, losses = step.train_step([(images[:8], labels[:8]), (images[:8], masks[:8])])
    assert float(losses[1]) > 0.0
