"""Heads trained on a frozen encoder's features, computed once instead of at every step of every epoch.

`head_on_features` trains the head on `(encoder(x), y)` when that is exactly the same computation as training
the whole task model (frozen, deterministic encoder; `ArrayBatches` data; features within `max_bytes`), and
returns None otherwise, logging why; the caller then trains the whole model. Conditions and bookkeeping:
docs/design.md, "Precomputed features".
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import keras
import numpy as np

from urep.data.batches import ArrayBatches
from urep.models.truncation import ENCODER_OUT

logger = logging.getLogger(__name__)

#: Default cap on the memory the features of one task may take.
DEFAULT_MAX_BYTES = 1 << 30
#: Layers that draw random numbers when called with `training=True`, even when frozen.
RANDOM_LAYERS = (keras.layers.Dropout, keras.layers.GaussianNoise, keras.layers.GaussianDropout,
                 keras.layers.AlphaDropout, keras.layers.SpatialDropout1D, keras.layers.SpatialDropout2D,
                 keras.layers.SpatialDropout3D)

__all__ = ["DEFAULT_MAX_BYTES", "HeadOnFeatures", "compute_features", "head_on_features", "split_at_encoder"]


@dataclass
class HeadOnFeatures:
    """A task model split at its encoder output, with its data as features.

    Attributes:
        encoder: task input -> `encoder_out` features (the task model's own layers).
        head: `encoder_out` features -> task output (the task model's own head layers and variables).
        train: the training batches with features as inputs.
        val: the validation batches with features as inputs, or None.
        seconds: wall clock of computing the features.
    """

    encoder: keras.Model
    head: keras.Model
    train: ArrayBatches
    val: ArrayBatches | None
    seconds: float


def split_at_encoder(model: keras.Model, layer_name: str = ENCODER_OUT) -> tuple[keras.Model, keras.Model] | None:
    """`(encoder, head)` sharing `model`'s layers, or None when `model` has no single `layer_name` output that
    separates input from output (no such layer, a nested encoder, or a head that also reads the input)."""
    try:
        split = model.get_layer(layer_name).output
        encoder = keras.Model(model.inputs, split, name=f"{model.name}_encoder")
        head = keras.Model(split, model.outputs, name=f"{model.name}_head")
    except (ValueError, AttributeError) as error:
        logger.debug("%s cannot be split at %s: %s", model.name, layer_name, error)
        return None
    if len(model.inputs) != 1 or not head.weights:
        return None
    return encoder, head


def _leaf_layers(layer) -> list:
    sublayers = getattr(layer, "layers", None)
    if not sublayers:
        return [layer]
    return [leaf for sub in sublayers for leaf in _leaf_layers(sub)]


def _not_frozen_reason(encoder: keras.Model) -> str | None:
    if encoder.trainable_weights:
        return f"its encoder has {len(encoder.trainable_weights)} trainable variables"
    random_layers = [layer.name for layer in _leaf_layers(encoder) if isinstance(layer, RANDOM_LAYERS)]
    if random_layers:
        return f"its encoder has random layers {random_layers}"
    return None


def compute_features(encoder: keras.Model, x: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """`encoder(x, training=False)` in batches, as one float32 array `(N, ...)`.

    Eager calls, not `keras.Model.predict`: every task and fold has its own encoder, used for a few batches,
    so a traced predict function per encoder (two with a smaller last batch) makes TensorFlow warn about
    retracing; eager batches trace nothing and give the same features (bit-equal on CPU).
    """
    if len(x) == 0:
        return np.zeros((0, *encoder.output.shape[1:]), np.float32)
    return np.concatenate([np.asarray(encoder(x[start:start + batch_size], training=False), dtype=np.float32)
                           for start in range(0, len(x), batch_size)])


def head_on_features(model: keras.Model, train, val=None, max_bytes: int = DEFAULT_MAX_BYTES,
                     layer_name: str = ENCODER_OUT) -> HeadOnFeatures | None:
    """The head of a frozen-encoder task model and its data as features, or None when that is not exact or too
    big (see the module docstring); the reason is logged.

    Args:
        model: the task model (encoder frozen by the caller).
        train: the task's training data (`ArrayBatches` for this to apply).
        val: the task's validation data (`ArrayBatches` or None for this to apply).
        max_bytes: the most memory the features may take.
        layer_name: the layer ending the encoder.
    """
    def skip(reason: str) -> None:
        logger.info("%s: training the whole model each step (features not precomputed: %s)", model.name, reason)

    if not isinstance(train, ArrayBatches) or not (val is None or isinstance(val, ArrayBatches)):
        return skip("its data is not ArrayBatches, so it may change between epochs")
    split = split_at_encoder(model, layer_name)
    if split is None:
        return skip(f"it cannot be split at a layer {layer_name!r}")
    encoder, head = split
    reason = _not_frozen_reason(encoder)
    if reason is not None:
        return skip(reason)
    n = len(train) + (len(val) if val is not None else 0)
    size = n * int(np.prod(encoder.output.shape[1:])) * 4
    if size > max_bytes:
        return skip(f"its features would take {size / 2**20:.0f} MiB > max_bytes {max_bytes / 2**20:.0f} MiB")
    start = time.perf_counter()
    batch = max(train.batch_size, 64)
    train_features = train.with_inputs(compute_features(encoder, train.x, batch))
    val_features = None if val is None else val.with_inputs(compute_features(encoder, val.x, batch))
    seconds = time.perf_counter() - start
    logger.info("%s: head trained on precomputed %s features of %d images (%.1f MiB, %.2f s)", model.name,
                tuple(encoder.output.shape[1:]), n, size / 2**20, seconds)
    return HeadOnFeatures(encoder, head, train_features, val_features, seconds)
