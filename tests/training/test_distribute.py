"""Distribution and precision: MirroredStrategy over two logical CPUs, global-batch loss scaling, mixed precision."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from training_helpers import batches, disc_phantoms, tiny_encoder_and_heads

from urep.training import TrainConfig, train_model
from urep.training.config import make_optimizer
from urep.training.distribute import mixed_precision_scope, replica_loss, use_xla


@pytest.mark.timeout(600)
def test_mirrored_strategy_on_two_logical_devices_matches_one_device():
    script = Path(__file__).with_name("mirrored_check.py")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=580)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["replicas"] == 2
    one, two = report["one"], report["two"]
    np.testing.assert_allclose(two["single_val_loss"], one["single_val_loss"], rtol=1e-5)
    np.testing.assert_allclose(two["joint_val_loss"], one["joint_val_loss"], rtol=1e-5)
    assert two["gradnorm_weights"] == pytest.approx(one["gradnorm_weights"], rel=1e-5)
    np.testing.assert_allclose(two["lookahead_val_loss"], one["lookahead_val_loss"], rtol=1e-5)
    assert one["lookahead_val_loss"] != one["single_val_loss"]  # a different model and optimizer: not a copy
    assert report["max_weight_diff"] < 1e-5


def test_replica_loss_scales_by_the_global_batch():
    y_true = tf.constant([[0.0], [1.0], [1.0], [0.0]])
    y_pred = tf.constant([[0.5], [0.5], [1.0], [0.0]])
    scaled, loss_sum, n = replica_loss(keras.losses.MeanSquaredError(), y_true, y_pred)
    assert float(n) == 4 and float(loss_sum) == pytest.approx(0.5)
    assert float(scaled) == pytest.approx(0.125)

    def batch_level(t, p):  # a loss defined on the whole mini-batch (e.g. Dice) returns a scalar
        return tf.reduce_mean(tf.abs(t - p))

    scaled, loss_sum, _ = replica_loss(batch_level, y_true, y_pred)
    assert float(scaled) == pytest.approx(0.25) and float(loss_sum) == pytest.approx(1.0)


def test_xla_is_turned_off_for_several_replicas_only():
    assert use_xla(tf.distribute.get_strategy(), True)
    assert not use_xla(tf.distribute.get_strategy(), False)


def test_mixed_bfloat16_training_keeps_float32_losses_and_variables():
    x, y, _ = disc_phantoms(16)
    with mixed_precision_scope("mixed_bfloat16"):
        _, cls, _ = tiny_encoder_and_heads()
    assert keras.config.dtype_policy().name == "float32"
    assert cls.dtype_policy.compute_dtype == "bfloat16"
    config = TrainConfig(epochs=2, mixed_precision="mixed_bfloat16", jit_compile=False, progress_bar=False,
                         learning_rate=1e-2, monitor="loss")
    result = train_model(cls, "categorical_crossentropy", batches(x, y), None, config, name="cls")
    assert all(np.isfinite(result.history["loss"]))
    assert all(v.dtype == "float32" for v in cls.trainable_variables)


def test_mixed_float16_training_updates_every_weight_through_the_loss_scale():
    """The loss scaling is recorded on the tape: scaled outside it, every gradient was None."""
    x, y, _ = disc_phantoms(16)
    with mixed_precision_scope("mixed_float16"):
        _, cls, _ = tiny_encoder_and_heads()
    assert cls.dtype_policy.compute_dtype == "float16"
    before = [v.numpy().copy() for v in cls.trainable_variables]
    config = TrainConfig(epochs=1, mixed_precision="mixed_float16", jit_compile=False, progress_bar=False,
                         learning_rate=1e-2, monitor="loss")
    result = train_model(cls, "categorical_crossentropy", batches(x, y), None, config, name="cls")
    assert all(np.isfinite(result.history["loss"]))
    assert all(not np.allclose(b, v.numpy()) for b, v in zip(before, cls.trainable_variables, strict=True))


def test_mixed_float16_wraps_the_optimizer_in_loss_scaling():
    optimizer = make_optimizer(TrainConfig(mixed_precision="mixed_float16"))
    assert isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
    assert isinstance(make_optimizer(TrainConfig()), keras.optimizers.Adam)
