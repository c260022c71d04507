"""Questions asked of a built model by name: where its last convolution is, how many parameters it has."""

from __future__ import annotations

import math

import keras

_CONV_TYPES = (
    keras.layers.Conv2D,
    keras.layers.Conv2DTranspose,
    keras.layers.SeparableConv2D,
    keras.layers.DepthwiseConv2D,
)


def last_conv_layer_name(model: keras.Model) -> str:
    """Name of the deepest 2-D convolution layer of `model` (in the model's topological layer order).

    For Grad-CAM prefer the `encoder_out` layer of urep backbones (the activated features); this helper is
    for models that lack one.

    Raises:
        ValueError: `model` has no 2-D convolution layer.
    """
    for layer in reversed(model.layers):
        if isinstance(layer, _CONV_TYPES):
            return layer.name
    raise ValueError(f"model {model.name!r} has no 2-D convolution layer")


def parameter_counts(model: keras.Model) -> tuple[int, int]:
    """Return `(trainable, total)` parameter counts; total includes non-trainable weights (BN statistics)."""
    trainable = sum(math.prod(v.shape) for v in model.trainable_weights)
    return trainable, int(model.count_params())
