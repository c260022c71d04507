"""Lookahead around the Keras optimizers: the slow/fast arithmetic, where it is built, what it refuses."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from urep.training.config import OptimizerConfig, make_optimizer
from urep.training.lookahead import lookahead_class, with_lookahead


def _trajectory(mode: str, steps: int, k: int, alpha: float) -> np.ndarray:
    weights = keras.Variable(np.array([1.0, -2.0], dtype="float32"))
    optimizer = with_lookahead(keras.optimizers.SGD, k, alpha, learning_rate=0.1)
    optimizer.build([weights])
    gradient = tf.constant([1.0, 2.0])

    def step():
        optimizer.apply([gradient], [weights])

    if mode != "eager":
        step = tf.function(step, jit_compile=mode == "xla")
    out = []
    for _ in range(steps):
        step()
        out.append(weights.numpy().copy())
    return np.array(out)


@pytest.mark.parametrize("mode", ["eager", "function", "xla"])
def test_slow_weights_merge_every_k_steps(mode):
    """SGD with a constant gradient: fast steps of -0.1 g; after every 3rd step the weights go half-way back
    to where the last merge left them."""
    got = _trajectory(mode, 7, k=3, alpha=0.5)
    w0, g, lr = np.array([1.0, -2.0]), np.array([1.0, 2.0]), 0.1
    expected, slow, fast = [], w0.copy(), w0.copy()
    for step in range(1, 8):
        fast = fast - lr * g
        if step % 3 == 0:
            slow = slow + 0.5 * (fast - slow)
            fast = slow.copy()
        expected.append(fast.copy())
    np.testing.assert_allclose(got, np.array(expected), rtol=1e-6)
    assert got[2, 0] == pytest.approx(0.85)  # 1 - 0.5 * 3 * 0.1
    np.testing.assert_allclose(_trajectory(mode, 4, k=1, alpha=1.0), [w0 - lr * g * n for n in range(1, 5)],
                               rtol=1e-6)  # k 1, alpha 1: plain SGD


@pytest.mark.parametrize("name, base", [("adam", keras.optimizers.Adam), ("rmsprop", keras.optimizers.RMSprop),
                                        ("sgd", keras.optimizers.SGD)])
def test_make_optimizer_wraps_each_kind_and_keeps_its_settings(name, base):
    optimizer = make_optimizer(OptimizerConfig(name, 0.01, momentum=0.5 if name != "adam" else 0.0,
                                               lookahead_steps=5, lookahead_alpha=0.8))
    assert isinstance(optimizer, base) and type(optimizer) is lookahead_class(base)
    assert (optimizer.lookahead_steps, optimizer.lookahead_alpha) == (5, 0.8)
    assert float(optimizer.learning_rate) == pytest.approx(0.01)
    if name != "adam":
        assert optimizer.momentum == 0.5
    weights = [keras.Variable(np.ones((2, 3), "float32")), keras.Variable(np.zeros(3, "float32"))]
    optimizer.build(weights)
    slow = [v for v in optimizer.variables if v.path.endswith("_slow")]
    assert [tuple(v.shape) for v in slow] == [(2, 3), (3,)]  # checkpointed with the optimizer's variables
    assert type(make_optimizer(name)) is base  # off by default
    scaled = make_optimizer({"name": name, "lookahead_steps": 2}, mixed_float16=True)
    assert type(scaled.inner_optimizer) is lookahead_class(base)


@pytest.mark.parametrize("kwargs, message", [
    ({"lookahead_steps": 0}, "optimizer lookahead_steps must be at least 1, got 0"),
    ({"lookahead_steps": 2.5}, "optimizer lookahead_steps must be an integer or None, got 2.5"),
    ({"lookahead_alpha": 0.0}, r"optimizer lookahead_alpha must be in \(0, 1\], got 0.0"),
    ({"lookahead_alpha": 1.5}, r"optimizer lookahead_alpha must be in \(0, 1\], got 1.5"),
])
def test_bad_lookahead_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        OptimizerConfig("adam", **kwargs)
    with pytest.raises(ValueError, match="lookahead"):
        with_lookahead(keras.optimizers.Adam, kwargs.get("lookahead_steps", 5), kwargs.get("lookahead_alpha", 0.5))
    with pytest.raises(TypeError, match="wraps a Keras optimizer class"):
        lookahead_class(dict)


def test_slow_weights_start_from_the_weights_at_build_and_steps_on_a_subset_merge_that_subset():
    a, b = keras.Variable(np.array([1.0], "float32")), keras.Variable(np.array([5.0], "float32"))
    optimizer = with_lookahead(keras.optimizers.SGD, 2, 0.5, learning_rate=1.0)
    optimizer.build([a, b])
    slow = {v.path.split("/")[-1]: float(v.numpy()[0]) for v in optimizer.variables if v.path.endswith("_slow")}
    assert sorted(slow.values()) == [1.0, 5.0]
    optimizer.apply([tf.constant([1.0])], [a])  # step 1: a only
    optimizer.apply([tf.constant([1.0])], [a])  # step 2: a merges half-way back from -1 to 1; b untouched
    assert (float(a.numpy()[0]), float(b.numpy()[0])) == (0.0, 5.0)
    optimizer.apply([tf.constant([1.0]), tf.constant([2.0])], [a, b])
    optimizer.apply([tf.constant([1.0]), tf.constant([2.0])], [a, b])  # step 4: both merge from their slow weights
    assert (float(a.numpy()[0]), float(b.numpy()[0])) == (-1.0, 3.0)


def test_building_inside_a_traced_step_is_refused():
    weights = keras.Variable(np.ones(2, "float32"))
    optimizer = with_lookahead(keras.optimizers.Adam)

    @tf.function
    def step():
        optimizer.apply([tf.ones(2)], [weights])

    with pytest.raises(RuntimeError, match="must be built eagerly before the training step is traced"):
        step()
