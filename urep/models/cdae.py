"""U-Rep 1: the convolutional denoising autoencoder (CDAE) trained once on a modality's unlabeled images.

Journal section 4.1.1 and Fig. 6: four 3x3 stride-2 convolutions with batch normalization and ReLU, a
symmetric up-sampling decoder, MSE loss, RMSprop. The papers give 800,067 parameters but no widths; the default
constant width 112 gives 796,769 (`cdae_parameter_count`, `closest_constant_width`; docs/choices.md, "CDAE
filter widths"). `output="residual"` and `skips=` are variants not in the papers (docs/denoising.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np

from urep.models._checks import check_filters, check_input_shape, check_positive_int
from urep.models.batchnorm import BatchNorm

#: Journal Table 4, "Shared Source" / "Separate Denoising Model".
PAPER_PARAMS = 800_067
#: Default encoder widths (see the module docstring for the search behind them).
DEFAULT_FILTERS = (112, 112, 112, 112)


def cdae(
    input_shape: Sequence[int] = (256, 256, 1),
    filters: Sequence[int] = DEFAULT_FILTERS,
    kernel_size: int = 3,
    strides: int = 2,
    decoder_filters: Sequence[int] | None = None,
    output_channels: int | None = None,
    output_activation: str | None = None,
    output: str = "direct",
    skips: str | None = None,
    name: str = "cdae",
) -> keras.Model:
    """Build the convolutional denoising autoencoder (U-Rep 1 source model).

    Encoder level i: `enc_conv{i}` (strided convolution) -> `enc_bn{i}` -> `enc_relu{i}`; the last ReLU is
    named `encoder_out` (the truncation point). Decoder level i: `dec_up{i}` (nearest upsampling by
    `strides`) -> `dec_conv{i}` -> `dec_bn{i}` -> `dec_relu{i}`; then `reconstruction`, a convolution to
    `output_channels` with `output_activation`. With the defaults: 796,769 parameters (paper: 800,067,
    journal Table 4; see the module docstring).

    Args:
        input_shape: `(height, width, channels)`; height and width divisible by `strides ** len(filters)`.
        filters: encoder widths, one per strided convolution (papers: four convolutions).
        kernel_size: every convolution's kernel size (journal: 3, chosen by Talos from 3/5/7).
        strides: encoder stride and decoder upsampling factor (journal: 2).
        decoder_filters: decoder widths, one per level; default: `filters` reversed (symmetric decoder).
        output_channels: reconstruction channels; default: the input's channels.
        output_activation: activation of the model's output; default "sigmoid" (images in [0, 1]) for
            `output="direct"`, "linear" for `output="residual"` (the evaluation clips to [0, 1]).
        output: "direct" (the papers' layout: the decoder's last convolution is the image) or "residual"
            (a variant, not in the papers: `denoised = input_skip(input) + reconstruction(decoder)`, where
            `input_skip` is a linear 1x1 convolution initialised to the identity, so the decoder learns the
            correction and fine detail need not pass the 16x-down-sampled bottleneck; the encoder and the
            decoder chain up to `reconstruction` are unchanged, so truncation and segmentation heads are too).
        skips: None (the papers' layout, the default) or a variant not in the papers (they give no skip
            details): symmetric encoder->decoder skip connections as in RED-Net (Mao et al., NeurIPS 2016).
            Before `dec_conv{i}` the upsampled map is merged, in layer `dec_skip{i}`, with the encoder map of
            the same resolution (`enc_relu{L-i}`, and the input image at the last, full-resolution level):
            "add" sums them (a linear 1x1 convolution `dec_skip_proj{i}` matches the channels when they
            differ, RED-Net style), "concat" stacks them (U-Net style). Use with `output="residual"`; the
            4x4 bottleneck then no longer limits the detail the decoder can restore (docs/denoising.md).
        name: model name.

    Returns:
        A Functional `keras.Model` mapping `(batch, H, W, C)` float32 in [0, 1] to `(batch, H, W,
        output_channels)`.

    Raises:
        ValueError: a malformed size, a decoder with a different number of levels than the encoder, or
            an input size not divisible by the total stride.
    """
    if output not in ("direct", "residual"):
        raise ValueError(f"output must be 'direct' or 'residual', got {output!r}")
    if skips not in (None, "add", "concat"):
        raise ValueError(f"skips must be None, 'add' or 'concat', got {skips!r}")
    if output_activation is None:
        output_activation = "sigmoid" if output == "direct" else "linear"
    height, width, channels = check_input_shape(input_shape)
    filters = check_filters(filters)
    kernel_size = check_positive_int(kernel_size, "kernel_size")
    strides = check_positive_int(strides, "strides")
    decoder_filters = check_filters(
        tuple(reversed(filters)) if decoder_filters is None else decoder_filters,
        "decoder_filters",
        len(filters),
    )
    output_channels = check_positive_int(
        channels if output_channels is None else output_channels, "output_channels"
    )
    total_stride = strides ** len(filters)
    if height % total_stride or width % total_stride:
        raise ValueError(
            f"input_shape {tuple(input_shape)!r}: height and width must be divisible by "
            f"strides ** len(filters) = {total_stride} so the reconstruction has the input's size"
        )

    inputs = keras.Input((height, width, channels), name="image")
    x = inputs
    if output == "residual":  # built first so the decoder stays a plain chain of layers (segmentation heads)
        skip_layer = keras.layers.Conv2D(output_channels, 1, dtype="float32", name="input_skip")
        skip = skip_layer(inputs)
        if channels == output_channels:  # start as the identity: the untrained model returns its input
            skip_layer.kernel.assign(np.eye(channels, dtype="float32")[None, None])
    levels = [inputs]  # encoder maps by resolution, full resolution first (the skip sources)
    for i, width_i in enumerate(filters, start=1):
        x = keras.layers.Conv2D(width_i, kernel_size, strides=strides, padding="same", name=f"enc_conv{i}")(x)
        x = BatchNorm(name=f"enc_bn{i}")(x)
        x = keras.layers.ReLU(name="encoder_out" if i == len(filters) else f"enc_relu{i}")(x)
        levels.append(x)
    for i, width_i in enumerate(decoder_filters, start=1):
        x = keras.layers.UpSampling2D(strides, name=f"dec_up{i}")(x)
        if skips is not None:
            x = _merge_skip(x, levels[len(filters) - i], skips, f"dec_skip{i}", f"dec_skip_proj{i}")
        x = keras.layers.Conv2D(width_i, kernel_size, padding="same", name=f"dec_conv{i}")(x)
        x = BatchNorm(name=f"dec_bn{i}")(x)
        x = keras.layers.ReLU(name=f"dec_relu{i}")(x)
    if output == "direct":
        outputs = keras.layers.Conv2D(
            output_channels, kernel_size, padding="same", activation=output_activation, dtype="float32",
            name="reconstruction",
        )(x)
        return keras.Model(inputs, outputs, name=name)
    correction = keras.layers.Conv2D(
        output_channels, kernel_size, padding="same", dtype="float32", kernel_initializer="zeros",
        name="reconstruction",
    )(x)
    outputs = keras.layers.Add(name="residual_sum", dtype="float32")([skip, correction])
    outputs = keras.layers.Activation(output_activation, dtype="float32", name="denoised")(outputs)
    return keras.Model(inputs, outputs, name=name)


def _merge_skip(x, skip, mode: str, name: str, projection_name: str):
    """Merge the upsampled decoder map `x` with the encoder map `skip` of the same resolution."""
    if mode == "concat":
        return keras.layers.Concatenate(name=name)([x, skip])
    if skip.shape[-1] != x.shape[-1]:
        skip = keras.layers.Conv2D(x.shape[-1], 1, name=projection_name)(skip)
    return keras.layers.Add(name=name)([x, skip])


def cdae_parameter_count(
    filters: Sequence[int] = DEFAULT_FILTERS,
    decoder_filters: Sequence[int] | None = None,
    kernel_size: int = 3,
    input_channels: int = 1,
    output_channels: int | None = None,
    output: str = "direct",
    skips: str | None = None,
) -> int:
    """Count `cdae(...)`'s parameters without building it (what `model.count_params()` returns).

    Args:
        filters: encoder widths.
        decoder_filters: decoder widths; default `filters` reversed.
        kernel_size: convolution kernel size.
        input_channels: channels of the input image.
        output_channels: channels of the reconstruction; default `input_channels`.
        output: "direct" or "residual" (adds the 1x1 `input_skip`), as in `cdae`.
        skips: None, "add" or "concat", as in `cdae`.

    Returns:
        Total parameters, batch-normalization moving statistics included.
    """
    filters = check_filters(filters)
    decoder_filters = check_filters(
        tuple(reversed(filters)) if decoder_filters is None else decoder_filters,
        "decoder_filters",
        len(filters),
    )
    out_channels = input_channels if output_channels is None else output_channels
    total = 0
    previous = input_channels
    sources = (input_channels, *filters[:-1])  # skip sources by resolution, full resolution first
    for level, width in enumerate((*filters, *decoder_filters)):
        if level >= len(filters) and skips is not None:  # decoder level i reads sources[len(filters) - i]
            source = sources[2 * len(filters) - 1 - level]
            if skips == "concat":
                previous += source
            elif source != previous:
                total += source * previous + previous  # the 1x1 projection `dec_skip_proj{i}`
        total += previous * kernel_size * kernel_size * width + width  # convolution kernel and bias
        total += 4 * width  # batch normalization: gamma, beta, moving mean, moving variance
        previous = width
    if output == "residual":
        total += input_channels * out_channels + out_channels
    return total + previous * kernel_size * kernel_size * out_channels + out_channels


def closest_constant_width(
    target: int = PAPER_PARAMS, max_width: int = 512, levels: int = 4, **kwargs
) -> int:
    """The constant encoder/decoder width whose `cdae` parameter count is closest to `target`.

    Args:
        target: parameter count to approach (default: the paper's 800,067).
        max_width: largest width tried (widths 1..max_width).
        levels: number of encoder levels.
        **kwargs: passed to `cdae_parameter_count` (kernel_size, input_channels, output_channels).

    Returns:
        The width `w` minimising `|cdae_parameter_count((w,) * levels) - target|` (112 for the defaults).
    """
    check_positive_int(max_width, "max_width")
    return min(
        range(1, max_width + 1),
        key=lambda w: abs(cdae_parameter_count((w,) * levels, **kwargs) - target),
    )


def set_residual_skip(model: keras.Model, scale: float, offset: float) -> bool:
    """Set a residual `cdae`'s `input_skip` to `scale * input + offset` (per channel, no channel mixing).

    With normalised network inputs `x_norm = (x - mean) / std`, `scale = std, offset = mean` makes the
    untrained model return the un-normalised noisy image `x`, so training starts at the noisy input's PSNR.

    Args:
        model: a `cdae(..., output="residual")`; other models are left unchanged.
        scale: the skip's gain.
        offset: the skip's bias.

    Returns:
        Whether the model had an `input_skip` layer.
    """
    try:
        layer = model.get_layer("input_skip")
    except ValueError:
        return False
    kernel = layer.kernel
    channels_in, channels_out = kernel.shape[-2], kernel.shape[-1]
    eye = np.eye(channels_in, channels_out, dtype="float32")[None, None]
    kernel.assign(eye * np.float32(scale))
    layer.bias.assign(np.full((channels_out,), offset, dtype="float32"))
    return True
