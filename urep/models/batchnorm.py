"""Batch normalization: a fused layer for TensorFlow, and settings applied to a built model.

`BatchNorm` is `keras.layers.BatchNormalization` whose 4-D, last-axis case runs TensorFlow's fused kernel
(`FusedBatchNormV3`: one op forward and one backward, oneDNN's on a CPU, cuDNN's on a GPU) instead of Keras
3's composite of moments, casts and element-wise ops. Same variables, same statistics, same outputs to float
rounding; every other case (a mask, renormalisation, `synchronized=True` across replicas, another backend or
rank or dtype, `fused=False`) runs the Keras layer unchanged.

By default (`fused=None`) one more case keeps the Keras layer: bfloat16 on a machine without a GPU when the
channels are not a multiple of 16. Measured forward + backward on 8-image batches, TensorFlow 2.21 with
oneDNN on an Intel Xeon with AMX: bfloat16 with 8, 12 or 24 channels, the fused kernel took 1.6-3.4x the
Keras layer's time (a U-Net whose first level has 8 channels trained 2.8-3.2x slower), with 16, 32, 48 or 64
channels 0.33-0.45x (128 channels: 0.6x on a 16x16 map, 1.3x on an 8x8 one, microseconds either way); in
float32 it was faster at every width tried (4-64). Numbers: docs/benchmarks.md ("Batch normalization").
"""

from __future__ import annotations

import keras

__all__ = ["BatchNorm", "set_batchnorm_momentum"]


def _has_gpu() -> bool:
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


@keras.saving.register_keras_serializable(package="urep")
class BatchNorm(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` with TensorFlow's fused kernel where it applies.

    Args:
        fused: True: run the fused kernel where it applies (TensorFlow backend, 4-D input normalised over its
            last axis, float16/bfloat16/float32, no mask, no renormalisation, not synchronized across
            replicas); None (default): the same, except bfloat16 on a machine without a GPU with a channel
            count that is not a multiple of 16 (slower fused there, see the module docstring); False: always
            the Keras layer.
        **kwargs: as `keras.layers.BatchNormalization`.

    The moving statistics follow Keras' update, `moving = moving * momentum + batch * (1 - momentum)`, with the
    batch variance without Bessel's correction (the kernel returns it corrected; the correction is undone).
    Normalisation runs in float32 for bfloat16/float16 inputs, as in the Keras layer.
    """

    def __init__(self, fused: bool | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        if fused not in (None, True, False):
            raise ValueError(f"BatchNorm fused={fused!r}: expected None (automatic), True or False")
        self.fused = fused

    def _use_fused(self, inputs, mask) -> bool:
        if self.fused is False or keras.backend.backend() != "tensorflow":
            return False
        applies = (mask is None and not self.renorm and not self.synchronized and len(inputs.shape) == 4
                   and self.axis in (-1, 3) and inputs.dtype in ("float16", "bfloat16", "float32"))
        if not applies or self.fused is True:
            return applies
        channels = inputs.shape[-1]
        return not (inputs.dtype == "bfloat16" and (channels is None or channels % 16) and not _has_gpu())

    def call(self, inputs, training=None, mask=None):
        if not self._use_fused(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        ones = tf.ones_like(self.moving_mean)
        scale = tf.cast(self.gamma, "float32") if self.scale else ones
        offset = tf.cast(self.beta, "float32") if self.center else tf.zeros_like(ones)
        if training and self.trainable:
            outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
                inputs, scale, offset, epsilon=self.epsilon, data_format="NHWC", is_training=True)
            count = tf.cast(tf.size(inputs) // tf.shape(inputs)[-1], "float32")
            variance = variance * tf.maximum(count - 1.0, 1.0) / tf.maximum(count, 1.0)
            self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
            self.moving_variance.assign(
                self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
        else:
            outputs, _, _ = tf.compat.v1.nn.fused_batch_norm(
                inputs, scale, offset, mean=tf.cast(self.moving_mean, "float32"),
                variance=tf.cast(self.moving_variance, "float32"), epsilon=self.epsilon, data_format="NHWC",
                is_training=False)
        return tf.cast(outputs, self.compute_dtype)

    def get_config(self) -> dict:
        return {**super().get_config(), "fused": self.fused}


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
