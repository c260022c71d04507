"""A standard U-Net (Ronneberger et al. 2015) with skip connections: the segmentation reference of a run.

Not a model of the papers: a plain, widely used segmenter trained beside U-Rep with the same data, budget
and protocol, so a report can say whether U-Rep's segmentation is good in absolute terms. Every design
choice is a keyword argument. Layer names: `enc{i}_conv{j}`, `enc{i}_pool`, `bottleneck_conv{j}`,
`dec{i}_up`, `dec{i}_skip` (the concatenation with encoder level i), `dec{i}_conv{j}`, `mask` (the final 1x1
convolution) and `mask_{output_activation}` (its activation, in float32: `urep.models.outputs.probability_map`).
"""

from __future__ import annotations

from collections.abc import Sequence

import keras

from urep.models._checks import check_filters, check_input_shape, check_positive_int
from urep.models.batchnorm import BatchNorm
from urep.models.outputs import probability_map

__all__ = ["unet"]


def unet(
    input_shape: Sequence[int] = (256, 256, 1),
    filters: Sequence[int] = (8, 16, 32, 64),
    bottleneck_filters: int | None = None,
    convs_per_level: int = 2,
    kernel_size: int = 3,
    batch_norm: bool = True,
    dropout: float = 0.0,
    activation: str = "relu",
    upsampling: str = "transpose",
    output_channels: int = 1,
    output_activation: str = "sigmoid",
    name: str = "unet",
) -> keras.Model:
    """Build a U-Net: `len(filters)` encoder levels (convolutions, then 2x2 max-pooling), a bottleneck, and a
    mirrored decoder whose every level concatenates the upsampled features with the encoder level of the
    same resolution (the skip connection).

    With the defaults at 64x64x1: 487,881 parameters, the size of the CDAE segmentation baseline of the
    real-data configs (filters 32/64/64/128: 408,961); widths 16/32/64/128 give 1,945,233.

    Args:
        input_shape: `(height, width, channels)`; height and width divisible by `2 ** len(filters)`.
        filters: widths of the encoder levels (the decoder mirrors them).
        bottleneck_filters: width of the bottleneck; default twice the last encoder width.
        convs_per_level: convolutions per level (the original U-Net: 2).
        kernel_size: kernel size of every convolution but the final 1x1.
        batch_norm: batch normalization after every convolution (before the activation).
        dropout: dropout rate applied in the bottleneck (0 = none).
        activation: activation of every hidden convolution.
        upsampling: `transpose` (2x2 transposed convolution, the original) or `bilinear` (bilinear
            upsampling followed by the level's convolutions).
        output_channels: channels of the mask output.
        output_activation: activation after the final 1x1 convolution (`sigmoid` for binary masks).
        name: model name.

    Returns:
        A Functional `keras.Model` mapping `(batch, H, W, C)` to `(batch, H, W, output_channels)`.

    Raises:
        ValueError: a malformed size or width, an unknown `upsampling`, a dropout outside [0, 1), or an
            input size not divisible by `2 ** len(filters)`.
    """
    height, width, _ = check_input_shape(input_shape)
    filters = check_filters(filters)
    bottleneck = check_positive_int(2 * filters[-1] if bottleneck_filters is None else bottleneck_filters,
                                    "bottleneck_filters")
    convs_per_level = check_positive_int(convs_per_level, "convs_per_level")
    kernel_size = check_positive_int(kernel_size, "kernel_size")
    output_channels = check_positive_int(output_channels, "output_channels")
    if upsampling not in ("transpose", "bilinear"):
        raise ValueError(f"upsampling must be 'transpose' or 'bilinear', got {upsampling!r}")
    if not 0.0 <= float(dropout) < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
    total = 2 ** len(filters)
    if height % total or width % total:
        raise ValueError(f"input_shape {tuple(input_shape)}: height and width must be divisible by "
                         f"2 ** len(filters) = {total} for {len(filters)} pooling levels")

    def block(x, width_: int, prefix: str):
        for j in range(convs_per_level):
            x = keras.layers.Conv2D(width_, kernel_size, padding="same", use_bias=not batch_norm,
                                    name=f"{prefix}_conv{j}")(x)
            if batch_norm:
                x = BatchNorm(name=f"{prefix}_bn{j}")(x)
            x = keras.layers.Activation(activation, name=f"{prefix}_act{j}")(x)
        return x

    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = inputs
    skips = []
    for i, width_ in enumerate(filters):
        x = block(x, width_, f"enc{i}")
        skips.append(x)
        x = keras.layers.MaxPooling2D(2, name=f"enc{i}_pool")(x)
    x = block(x, bottleneck, "bottleneck")
    if dropout:
        x = keras.layers.Dropout(float(dropout), name="bottleneck_dropout")(x)
    for i in reversed(range(len(filters))):
        if upsampling == "transpose":
            x = keras.layers.Conv2DTranspose(filters[i], 2, strides=2, padding="same", name=f"dec{i}_up")(x)
        else:
            x = keras.layers.UpSampling2D(2, interpolation="bilinear", name=f"dec{i}_up")(x)
        x = keras.layers.Concatenate(name=f"dec{i}_skip")([x, skips[i]])
        x = block(x, filters[i], f"dec{i}")
    outputs = probability_map(x, output_channels, 1, activation=output_activation, name="mask")
    return keras.Model(inputs, outputs, name=name)
