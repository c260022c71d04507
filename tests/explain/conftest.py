"""Tiny models and images for the explain tests: a CNN trained to spot a bright blob whose place is known."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

SIZE = 32
BLOB = 6  # blob side in pixels


@dataclass
class BlobData:
    images: np.ndarray  # (N, SIZE, SIZE, 1) float32 in [0, 1]
    labels: np.ndarray  # (N,) 1 = blob present
    regions: np.ndarray  # (N, SIZE, SIZE) uint8, the blob (all zero for class 0)


def make_blob_data(n: int, seed: int) -> BlobData:
    """Class 1 has a bright square blob at a random place on a noisy dark background; class 0 has none."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(0.0, 0.3, size=(n, SIZE, SIZE, 1)).astype(np.float32)
    labels = np.arange(n) % 2
    regions = np.zeros((n, SIZE, SIZE), np.uint8)
    for i in np.flatnonzero(labels):
        row, col = rng.integers(2, SIZE - BLOB - 2, size=2)
        images[i, row : row + BLOB, col : col + BLOB, 0] = 1.0
        regions[i, row : row + BLOB, col : col + BLOB] = 1
    return BlobData(images, labels, regions)


def build_encoder(name: str = "encoder"):
    """Small backbone whose last layer is named `encoder_out` (like urep's)."""
    import keras
    from keras import layers

    inputs = keras.Input((SIZE, SIZE, 1))
    x = layers.Conv2D(8, 3, padding="same", activation="relu", name="enc_conv1")(inputs)
    x = layers.Conv2D(16, 3, strides=2, padding="same", name="enc_conv2")(x)
    x = layers.ReLU(name="encoder_out")(x)
    return keras.Model(inputs, x, name=name)


def classification_head(features, num_classes: int = 2, prefix: str = "cls"):
    from keras import layers

    x = layers.GlobalAveragePooling2D(name=f"{prefix}_gap")(features)
    x = layers.Dense(8, activation="relu", name=f"{prefix}_dense")(x)
    x = layers.Dropout(0.1, name=f"{prefix}_dropout")(x)
    return layers.Dense(num_classes, activation="softmax", name=f"{prefix}_softmax")(x)


@dataclass
class BlobModels:
    flat: object  # one Functional model, encoder layers at the top level
    nested: object  # head model that calls the encoder as a sub-model (same weights)
    fused: object  # dict-output multi-task model {"blob": nested head, "recon": decoder}, same weights
    encoder: object
    data: BlobData


@pytest.fixture(scope="session")
def blob_models() -> BlobModels:
    """A blob detector trained 80 steps (about 5 s on 2 CPU cores), in three model shapes sharing weights."""
    import keras
    from keras import layers

    from urep import seed_everything

    seed_everything(0)
    encoder = build_encoder()
    inputs = keras.Input((SIZE, SIZE, 1), name="image")
    nested = keras.Model(inputs, classification_head(encoder(inputs)), name="blob_head")
    nested.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    train = make_blob_data(128, seed=1)
    nested.fit(train.images, train.labels, batch_size=16, epochs=10, verbose=0)

    flat_inputs = keras.Input((SIZE, SIZE, 1), name="image_flat")
    x = flat_inputs
    for layer in encoder.layers[1:]:
        x = layer(x)
    head_layers = [nested.get_layer(n) for n in ("cls_gap", "cls_dense", "cls_dropout", "cls_softmax")]
    for layer in head_layers:
        x = layer(x)
    flat = keras.Model(flat_inputs, x, name="blob_flat")

    fused_inputs = keras.Input((SIZE, SIZE, 1), name="image_fused")
    recon = layers.Conv2D(1, 1, activation="sigmoid", name="recon_out")(layers.UpSampling2D()(encoder(fused_inputs)))
    fused = keras.Model(fused_inputs, {"blob": nested(fused_inputs), "recon": recon}, name="fused")
    return BlobModels(flat, nested, fused, encoder, make_blob_data(16, seed=2))
