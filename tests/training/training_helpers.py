"""Tiny models and data for the training tests: a 32x32 encoder shared by a classification and a
segmentation head, and a disc-phantom dataset (class = disc present, mask = the disc)."""

from __future__ import annotations

import numpy as np


def tiny_encoder_and_heads(seed: int = 0, dropout: float = 0.0):
    """An encoder (two strided convs + batch norm) and two task models sharing it: `cls`, `seg`."""
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((32, 32, 1), name="image")
    h = keras.layers.Conv2D(4, 3, strides=2, padding="same", name="enc_conv1")(inputs)
    h = keras.layers.BatchNormalization(name="enc_bn1")(h)
    h = keras.layers.ReLU(name="enc_relu1")(h)
    h = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="encoder_out")(h)
    c = keras.layers.GlobalAveragePooling2D(name="cls_gap")(h)
    if dropout:
        c = keras.layers.Dropout(dropout, name="cls_dropout")(c)
    c = keras.layers.Dense(2, activation="softmax", name="cls_out")(c)
    s = keras.layers.UpSampling2D(4, name="seg_up")(h)
    s = keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid", name="seg_out")(s)
    encoder = keras.Model(inputs, h, name="encoder")
    return encoder, keras.Model(inputs, c, name="cls_model"), keras.Model(inputs, s, name="seg_model")


def disc_phantoms(n: int, seed: int = 0):
    """`n` 32x32 images: noise plus, for half of them, a bright disc; labels one-hot (n, 2), masks."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:32, :32]
    images = rng.uniform(0.0, 0.3, (n, 32, 32, 1)).astype("float32")
    masks = np.zeros((n, 32, 32, 1), "float32")
    labels = np.zeros((n, 2), "float32")
    for i in range(n):
        present = i % 2
        labels[i, present] = 1.0
        if present:
            cy, cx, r = rng.integers(10, 22), rng.integers(10, 22), rng.integers(5, 9)
            disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
            images[i, disc, 0] += 0.6
            masks[i, disc, 0] = 1.0
    return images, labels, masks


def batches(x, y, batch_size: int = 8, seed: int | None = None):
    """A `epoch -> tf.data.Dataset` factory: shuffled with seed (seed + epoch) when `seed` is given."""
    import tensorflow as tf

    def make(epoch: int):
        dataset = tf.data.Dataset.from_tensor_slices((x, y))
        if seed is not None:
            dataset = dataset.shuffle(len(x), seed=seed + epoch, reshuffle_each_iteration=False)
        return dataset.batch(batch_size)

    return make


def autotune_spy(monkeypatch, *modules):
    """Replace `epoch_dataset` in `modules` by a wrapper that records each returned dataset's autotune flag
    (`options().autotune.enabled`); returns the list it appends to."""
    from urep.training import loop

    seen = []
    original = loop.epoch_dataset

    def spy(source, epoch, autotune=False):
        dataset = original(source, epoch, autotune)
        seen.append(dataset.options().autotune.enabled)
        return dataset

    for module in modules:
        monkeypatch.setattr(module, "epoch_dataset", spy)
    return seen
