"""The symmetric segmentation decoder appended at an encoder's truncation point.

Journal section 4.2.2 and Fig. 8: 3x3 convolutions 128/64/32/16/8 with biases, then a 1x1 sigmoid convolution,
which gives exactly the papers' 786,497 parameters with U-Rep 2's encoder (docs/design.md, "Parameter counts
against the papers"). ReLU after every convolution and dilation mirroring the encoder
(`dilation_rates=(2, 2, 2, 1, 1)`) are urep's choices (docs/choices.md); the decoder up-samples only when the
encoder's features are smaller than the image.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras

from urep.models._checks import check_filters, check_input_shape, check_positive_int
from urep.models.outputs import probability_map

#: Journal Tables 4 and 8: every segmentation model (U-Rep 2 encoder + this decoder, 256x256x1 input).
PAPER_PARAMS = 786_497
DEFAULT_FILTERS = (128, 64, 32, 16, 8)
DEFAULT_DILATION_RATES = (2, 2, 2, 1, 1)


def decoder_layers(
    x: keras.KerasTensor,
    filters: Sequence[int] = DEFAULT_FILTERS,
    kernel_size: int = 3,
    dilation_rates: Sequence[int] | None = DEFAULT_DILATION_RATES,
    upsample_levels: int = 0,
    upsampling: int = 2,
    output_channels: int = 1,
    output_activation: str = "sigmoid",
    prefix: str = "",
) -> keras.KerasTensor:
    """Apply the segmentation decoder's layers to a feature map.

    Level i (1-based): `{prefix}dec_up{i}` (only for the first `upsample_levels` levels; nearest
    up-sampling by `upsampling`) -> `{prefix}dec_conv{i}` (same padding, ReLU); then `{prefix}mask`, a 1x1
    convolution to `output_channels`, and `{prefix}mask_{output_activation}`, the activation in float32
    (`urep.models.outputs.probability_map`: under a mixed policy the convolution runs in the compute dtype).

    Args:
        x: feature map `(batch, h, w, c)`.
        filters: widths of the decoder convolutions (journal: 128/64/32/16/8).
        kernel_size: kernel size of the decoder convolutions.
        dilation_rates: one dilation per convolution; None for no dilation. Default: the encoder's mirror.
        upsample_levels: how many of the first levels up-sample (0 for the dilated CNN).
        upsampling: up-sampling factor of each such level.
        output_channels: mask channels (1 for a binary mask).
        output_activation: activation of the mask layer.
        prefix: prepended to every layer name (a head's name plus "_"), so several decoders coexist.

    Returns:
        The mask tensor `(batch, h * upsampling ** upsample_levels, w * ..., output_channels)`.

    Raises:
        ValueError: malformed sizes, `dilation_rates` of another length than `filters`, or more
            up-sampling levels than convolutions.
    """
    filters = check_filters(filters, "decoder filters")
    kernel_size = check_positive_int(kernel_size, "kernel_size")
    rates = (
        (1,) * len(filters)
        if dilation_rates is None
        else check_filters(dilation_rates, "dilation_rates", len(filters))
    )
    if (
        isinstance(upsample_levels, bool)
        or not isinstance(upsample_levels, int)
        or not (0 <= upsample_levels <= len(filters))
    ):
        raise ValueError(f"upsample_levels must be an integer in 0..{len(filters)}, got {upsample_levels!r}")
    upsampling = check_positive_int(upsampling, "upsampling")
    output_channels = check_positive_int(output_channels, "output_channels")
    for i, (width, rate) in enumerate(zip(filters, rates, strict=True), start=1):
        if i <= upsample_levels:
            x = keras.layers.UpSampling2D(upsampling, name=f"{prefix}dec_up{i}")(x)
        x = keras.layers.Conv2D(
            width,
            kernel_size,
            padding="same",
            dilation_rate=rate,
            activation="relu",
            name=f"{prefix}dec_conv{i}",
        )(x)
    return probability_map(x, output_channels, 1, activation=output_activation, name=f"{prefix}mask")


def segmentation_decoder(
    input_shape: Sequence[int] = (256, 256, 256),
    filters: Sequence[int] = DEFAULT_FILTERS,
    kernel_size: int = 3,
    dilation_rates: Sequence[int] | None = DEFAULT_DILATION_RATES,
    upsample_levels: int = 0,
    upsampling: int = 2,
    output_channels: int = 1,
    output_activation: str = "sigmoid",
    name: str = "segmentation_decoder",
) -> keras.Model:
    """Build the decoder alone as a model on a feature-map input (to inspect or count it).

    Heads do not nest this model: `segmentation_head_from_encoder` applies `decoder_layers` directly to
    the encoder's output so every layer stays addressable by name. With the defaults: 393,089 parameters;
    with the 1-channel U-Rep 2 encoder, 786,497 (journal Tables 4 and 8).

    Args:
        input_shape: feature map `(h, w, c)` (default: U-Rep 2's `encoder_out` at 256x256).
        filters, kernel_size, dilation_rates, upsample_levels, upsampling, output_channels,
            output_activation: see `decoder_layers`.
        name: model name.

    Returns:
        A Functional `keras.Model` mapping `(batch, h, w, c)` to a mask `(batch, H, W, output_channels)`.
    """
    inputs = keras.Input(check_input_shape(input_shape), name="features")
    outputs = decoder_layers(
        inputs,
        filters,
        kernel_size,
        dilation_rates,
        upsample_levels,
        upsampling,
        output_channels,
        output_activation,
    )
    return keras.Model(inputs, outputs, name=name)
