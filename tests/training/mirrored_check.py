"""Run as a script (by test_distribute.py, in its own process): train the same tiny models on one device and
with MirroredStrategy over two logical CPU devices, and print the losses and the largest weight difference as
JSON. The logical devices must be configured before any other TensorFlow call, hence the separate process."""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from training_helpers import batches, disc_phantoms  # noqa: E402

from urep.training import Task, TrainConfig, finetune, train_model  # noqa: E402


def models(seed: int):
    """A conv encoder without batch norm (per-replica batch statistics would differ) and two heads."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((32, 32, 1))
    h = keras.layers.Conv2D(4, 3, strides=2, padding="same", activation="relu")(inputs)
    h = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="encoder_out")(h)
    c = keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(h))
    s = keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid")(keras.layers.UpSampling2D(4)(h))
    return keras.Model(inputs, c), keras.Model(inputs, s)


def run(dist_strategy):
    x, y, m = disc_phantoms(32, seed=0)
    config = TrainConfig(epochs=2, optimizer="sgd", learning_rate=0.1, progress_bar=False, jit_compile=False)
    scoped = dist_strategy if dist_strategy is not None else tf.distribute.get_strategy()
    with scoped.scope():
        cls, _ = models(0)
    single = train_model(cls, "categorical_crossentropy", batches(x, y, seed=1), batches(x, y), config,
                         name="cls", dist_strategy=dist_strategy)
    with scoped.scope():
        cls3, _ = models(2)
    lookahead = train_model(cls3, "categorical_crossentropy", batches(x, y, seed=1), batches(x, y),
                            TrainConfig(epochs=2, optimizer={"name": "sgd", "lookahead_steps": 3}, learning_rate=0.1,
                                        progress_bar=False, jit_compile=False), name="cls", dist_strategy=dist_strategy)
    with scoped.scope():
        cls2, seg2 = models(1)
    tasks = [Task("cls", "classification", cls2, "categorical_crossentropy", batches(x, y, seed=1),
                  batches(x, y), n_train=32),
             Task("seg", "segmentation", seg2, "binary_crossentropy", batches(x, m, seed=2), batches(x, m),
                  n_train=32)]
    joint = finetune(None, tasks, "joint", config, dist_strategy=dist_strategy, loss_weighting="gradnorm")
    return {"single_val_loss": single.history["val_loss"],
            "joint_val_loss": [joint["cls"].history["val_loss"], joint["seg"].history["val_loss"]],
            "gradnorm_weights": joint["cls"].extra["final_loss_weights"],
            "lookahead_val_loss": lookahead.history["val_loss"],
            "weights": [v.numpy() for v in cls.weights + cls2.weights + seg2.weights + cls3.weights]}


def main() -> None:
    one = run(None)
    mirrored_strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    two = run(mirrored_strategy)
    diff = max(float(np.max(np.abs(a - b))) for a, b in zip(one.pop("weights"), two.pop("weights"), strict=True))
    print(json.dumps({"one": one, "two": two, "replicas": mirrored_strategy.num_replicas_in_sync,
                      "max_weight_diff": diff}))


if __name__ == "__main__":
    main()
