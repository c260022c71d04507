"""MultiMix (Haque et al., ISBI 2021): a U-Net with a classification branch and a saliency bridge.

`multimix(...)` builds a `MultiMix` model that segments (lungs) and classifies (pneumonia) a chest radiograph.
The saliency map (`|d max_c z_c / d x|` of the predicted class's logit, a constant input) is concatenated with
the image, downsampled and fed to the first decoder stage, in training and at test time alike. 1,965,155
parameters at 256x256x1. Diagram and details: docs/design.md, "Module notes"; choices where the paper is
silent (each a parameter): docs/multimix.md and docs/choices.md.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import keras
import tensorflow as tf

logger = logging.getLogger(__name__)

SALIENCY_NORMALIZATIONS = ("max", "none")
PUBLIC_PYTORCH_PARAMS = 1_965_173
"""Parameters of the public PyTorch MultiMix model at 256x256x1 (counted from the public code), for comparison."""


def _double_conv(
    x: keras.KerasTensor, filters: int, name: str, dropout: float, leaky_slope: float, norm_affine: bool
) -> keras.KerasTensor:
    for i in (1, 2):
        x = keras.layers.Conv2D(filters, 3, padding="same", name=f"{name}_conv{i}")(x)
        x = keras.layers.GroupNormalization(
            groups=-1, epsilon=1e-5, center=norm_affine, scale=norm_affine, name=f"{name}_inorm{i}"
        )(x)
        x = keras.layers.LeakyReLU(negative_slope=leaky_slope, name=f"{name}_lrelu{i}")(x)
    return keras.layers.Dropout(dropout, name=f"{name}_dropout")(x)


def _validate(input_shape: Sequence[int], channels: Sequence[int], n_classes: int, dropout: float,
              input_std: float) -> None:
    if len(input_shape) != 3 or any(int(d) <= 0 for d in input_shape):
        raise ValueError(f"input_shape must be (height, width, channels) with positive sizes, got {input_shape!r}")
    if len(channels) < 2 or any(int(c) <= 0 for c in channels):
        raise ValueError(f"channels must list at least two positive widths, got {channels!r}")
    factor = 2 ** (len(channels) - 1)
    if input_shape[0] % factor or input_shape[1] % factor:
        raise ValueError(
            f"input height and width must be divisible by {factor} (2 ** (len(channels) - 1)) for "
            f"{len(channels)} levels, got {tuple(input_shape[:2])}"
        )
    if n_classes < 2:
        raise ValueError(f"n_classes must be >= 2, got {n_classes}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    if input_std <= 0:
        raise ValueError(f"input_std must be > 0, got {input_std}")


def multimix_network(
    input_shape: Sequence[int] = (256, 256, 1),
    channels: Sequence[int] = (16, 32, 64, 128, 256),
    n_classes: int = 2,
    dropout: float = 0.25,
    leaky_slope: float = 0.2,
    saliency_bridge: bool = True,
    norm_affine: bool = False,
    input_mean: float = 0.5,
    input_std: float = 0.5,
) -> keras.Model:
    """Build the Functional MultiMix network that takes the saliency map as an explicit input.

    Args:
        input_shape: ``(height, width, channels)``; height and width divisible by ``2 ** (len(channels) - 1)``.
        channels: filters of the encoder levels; the decoder mirrors them (the paper: 16-32-64-128-256).
        n_classes: classes of the classification branch.
        dropout: dropout rate at the end of every double-conv block.
        leaky_slope: negative slope of the LeakyReLU activations.
        saliency_bridge: with False the network has one input (the image) and no bridge (the paper's U-Net /
            UMTL baselines); the decoder's first stage then has ``channels[-1] + channels[-2]`` inputs.
        norm_affine: learn a scale and offset in the instance normalizations.
        input_mean: subtracted from the image by the ``input_normalization`` layer.
        input_std: the image is divided by it after the subtraction.

    Returns:
        A ``keras.Model`` with inputs ``image`` ``(batch, H, W, C)`` float32 in [0, 1] (and, with the bridge,
        ``saliency`` ``(batch, H, W, 1)``), and outputs ``{"segmentation_logits": (batch, H, W, 1),
        "class_logits": (batch, n_classes)}`` (pre-sigmoid / pre-softmax). Stable layer names:
        ``input_normalization``, ``enc{i}_*`` (i = 1..levels), ``encoder_out`` (the bottleneck activation),
        ``class_pool``, ``class_gap``, ``class_logits``, ``saliency_bridge`` (the concatenated image and
        saliency), ``saliency_bridge_pool``, ``dec{i}_*``, ``segmentation_logits``.

    Raises:
        ValueError: on a shape, width, rate or class count that cannot build the network.
    """
    _validate(input_shape, channels, n_classes, dropout, input_std)
    channels = [int(c) for c in channels]
    levels = len(channels)
    image = keras.Input(tuple(int(d) for d in input_shape), name="image")
    x = keras.layers.Rescaling(1.0 / input_std, offset=-input_mean / input_std, name="input_normalization")(image)
    normalized = x
    block = dict(dropout=dropout, leaky_slope=leaky_slope, norm_affine=norm_affine)

    skips = []
    for level, filters in enumerate(channels[:-1], start=1):
        x = _double_conv(x, filters, f"enc{level}", **block)
        skips.append(x)
        x = keras.layers.MaxPooling2D(2, name=f"enc{level}_pool")(x)
    x = _double_conv(x, channels[-1], f"enc{levels}", **block)
    bottleneck = keras.layers.Identity(name="encoder_out")(x)

    pooled = keras.layers.MaxPooling2D(2, padding="same", name="class_pool")(bottleneck)
    pooled = keras.layers.GlobalAveragePooling2D(name="class_gap")(pooled)
    # The two logit layers compute in float32 under a mixed-precision policy (Keras' advice for outputs).
    class_logits = keras.layers.Dense(n_classes, name="class_logits", dtype="float32")(pooled)

    inputs = [image]
    x = bottleneck
    for level in range(levels - 1, 0, -1):
        x = keras.layers.UpSampling2D(2, interpolation="bilinear", name=f"dec{level}_up")(x)
        parts = [x, skips[level - 1]]
        if level == levels - 1 and saliency_bridge:
            saliency = keras.Input((*tuple(int(d) for d in input_shape[:2]), 1), name="saliency")
            inputs.append(saliency)
            bridge = keras.layers.Concatenate(name="saliency_bridge")([normalized, saliency])
            factor = 2 ** (levels - 2)
            parts.append(keras.layers.AveragePooling2D(factor, name="saliency_bridge_pool")(bridge))
        x = keras.layers.Concatenate(name=f"dec{level}_concat")(parts)
        x = _double_conv(x, channels[level - 1], f"dec{level}", **block)
    seg_logits = keras.layers.Conv2D(1, 1, name="segmentation_logits", dtype="float32")(x)
    return keras.Model(
        inputs if saliency_bridge else image,
        {"segmentation_logits": seg_logits, "class_logits": class_logits},
        name="multimix_network",
    )


@keras.saving.register_keras_serializable(package="urep")
class MultiMix(keras.Model):
    """MultiMix with the saliency computed inside ``call`` (training and inference alike).

    ``call(images, training=False)`` takes ``(batch, H, W, C)`` float32 in [0, 1] and returns
    ``{"segmentation": (batch, H, W, 1) sigmoid probabilities, "classification": (batch, n_classes) softmax
    probabilities}``. The layers live in ``self.network`` (see ``multimix_network``); ``self.classifier`` is a
    view of the image -> ``class_logits`` path sharing the same variables. Constructor arguments are those of
    ``multimix_network`` plus ``saliency_normalization`` (``"max"`` or ``"none"``).
    """

    def __init__(
        self,
        input_shape: Sequence[int] = (256, 256, 1),
        channels: Sequence[int] = (16, 32, 64, 128, 256),
        n_classes: int = 2,
        dropout: float = 0.25,
        leaky_slope: float = 0.2,
        saliency_bridge: bool = True,
        norm_affine: bool = False,
        input_mean: float = 0.5,
        input_std: float = 0.5,
        saliency_normalization: str = "max",
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if saliency_normalization not in SALIENCY_NORMALIZATIONS:
            raise ValueError(
                f"saliency_normalization must be one of {SALIENCY_NORMALIZATIONS}, got {saliency_normalization!r}"
            )
        self._config = dict(
            input_shape=[int(d) for d in input_shape], channels=[int(c) for c in channels],
            n_classes=int(n_classes), dropout=float(dropout), leaky_slope=float(leaky_slope),
            saliency_bridge=bool(saliency_bridge), norm_affine=bool(norm_affine), input_mean=float(input_mean),
            input_std=float(input_std), saliency_normalization=saliency_normalization,
        )
        network_args = {k: v for k, v in self._config.items() if k != "saliency_normalization"}
        self.network = multimix_network(**network_args)
        self.classifier = keras.Model(
            self.network.get_layer("image").output, self.network.get_layer("class_logits").output,
            name="multimix_classifier",
        )
        self.saliency_bridge = bool(saliency_bridge)
        self.saliency_normalization = saliency_normalization
        self.n_classes = int(n_classes)
        self.built = True

    def saliency(self, images: tf.Tensor) -> tf.Tensor:
        """The saliency map ``|d max_c z_c / d image|`` of each image, as the bridge receives it.

        Computed with the classification path in inference mode under its own ``tf.GradientTape``; labels
        and optimizers play no part. Images do not interact (instance norm, no batch statistics), so the
        gradient of the batch sum of maxima is each image's own gradient.

        Args:
            images: ``(batch, H, W, C)`` float32 in [0, 1].

        Returns:
            ``(batch, H, W, 1)`` float32, non-negative; in [0, 1] with ``saliency_normalization="max"``.
            A constant (``tf.stop_gradient``) with respect to the weights.
        """
        images = tf.cast(images, tf.float32)
        with tf.GradientTape() as tape:
            tape.watch(images)
            logits = self.classifier(images, training=False)
            score = tf.reduce_sum(tf.reduce_max(tf.cast(logits, tf.float32), axis=-1))
        grads = tf.abs(tape.gradient(score, images))
        saliency = tf.reduce_max(grads, axis=-1, keepdims=True)
        if self.saliency_normalization == "max":
            peak = tf.reduce_max(saliency, axis=(1, 2, 3), keepdims=True)
            saliency = tf.math.divide_no_nan(saliency, peak)
        return tf.stop_gradient(saliency)

    def network_inputs(self, images: tf.Tensor) -> tf.Tensor | list[tf.Tensor]:
        """What ``self.network`` takes for ``images``: the images, plus their saliency with the bridge.

        Under a mixed-precision policy Keras hands ``call`` the images in the compute dtype; they are cast
        back to float32 so the saliency is a float32 gradient of the float32 input, as in float32 training.
        """
        images = tf.cast(images, tf.float32)
        return [images, self.saliency(images)] if self.saliency_bridge else images

    def call(self, images: tf.Tensor, training: bool = False) -> dict[str, tf.Tensor]:
        outputs = self.network(self.network_inputs(images), training=training)
        return {
            "segmentation": tf.sigmoid(tf.cast(outputs["segmentation_logits"], tf.float32)),
            "classification": tf.nn.softmax(tf.cast(outputs["class_logits"], tf.float32), axis=-1),
        }

    def get_config(self) -> dict:
        return {**super().get_config(), **self._config}

    @classmethod
    def from_config(cls, config: dict) -> MultiMix:
        config = dict(config)
        config.pop("trainable", None)
        config.pop("dtype", None)
        return cls(**config)


def multimix(
    input_shape: Sequence[int] = (256, 256, 1),
    channels: Sequence[int] = (16, 32, 64, 128, 256),
    n_classes: int = 2,
    dropout: float = 0.25,
    leaky_slope: float = 0.2,
    saliency_bridge: bool = True,
    norm_affine: bool = False,
    input_mean: float = 0.5,
    input_std: float = 0.5,
    saliency_normalization: str = "max",
    name: str = "multimix",
) -> MultiMix:
    """Build MultiMix with the paper's defaults (section 3.1: channels 16-256, LeakyReLU 0.2, dropout 0.25).

    Args:
        input_shape: ``(height, width, channels)``, height/width divisible by ``2 ** (len(channels) - 1)``.
        channels: encoder widths (the decoder mirrors them).
        n_classes: classes of the classification branch.
        dropout: dropout rate at the end of every block.
        leaky_slope: LeakyReLU negative slope.
        saliency_bridge: include the saliency bridge (False for the U-Net / UMTL / encoder baselines).
        norm_affine: learned scale/offset in the instance norms (False = PyTorch default, public code).
        input_mean: input normalization offset (see the module docstring).
        input_std: input normalization scale.
        saliency_normalization: ``"max"`` (per-image max, default) or ``"none"`` (raw gradients).
        name: model name.

    Returns:
        A built ``MultiMix``; ``model(images)`` -> ``{"segmentation", "classification"}`` probabilities,
        ``model.network`` the Functional layers (``encoder_out`` etc.), ``model.saliency(images)`` the maps.

    Raises:
        ValueError: on arguments that cannot build the network.
    """
    model = MultiMix(
        input_shape=input_shape, channels=channels, n_classes=n_classes, dropout=dropout,
        leaky_slope=leaky_slope, saliency_bridge=saliency_bridge, norm_affine=norm_affine,
        input_mean=input_mean, input_std=input_std, saliency_normalization=saliency_normalization, name=name,
    )
    logger.debug("built %s: %d parameters", name, model.network.count_params())
    return model
