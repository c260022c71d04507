"""Batch-normalization settings applied to a built model (before training)."""

from __future__ import annotations

import keras

__all__ = ["set_batchnorm_momentum"]


def set_batchnorm_momentum(model: keras.Model, momentum: float | None) -> keras.Model:
    """Set the moving-statistics momentum of every BatchNormalization layer, nested models included.

    The experiment config's `batchnorm_momentum` and the tuner's hypermodels both use it, so a trial trains
    like `urep run` would.

    Args:
        model: a built Keras model; changed in place.
        momentum: the new momentum in [0, 1); `None` leaves every layer as it is (Keras' default 0.99).

    Returns:
        `model` itself.
    """
    if momentum is None:
        return model
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = momentum
        elif isinstance(layer, keras.Model):
            set_batchnorm_momentum(layer, momentum)
    return model
