"""A residual-learning super-resolution network: the third kind of shared representation the preprint names.

The papers give no architecture; this one is small and VDSR-like: interpolation inside the model
(`upsample`), a stack of 3x3 convolutions predicting the missing detail (`residual`), output = interpolation +
residual (`reconstruction`); heads attach to `encoder_out` at the high resolution. Defaults (64 filters,
6 convolutions, bicubic, x2): 185,857 parameters; docs/choices.md, "Super-resolution source".
"""

from __future__ import annotations

from collections.abc import Sequence

import keras

from urep.models._checks import check_input_shape, check_positive_int

_INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos3", "lanczos5")


def super_resolution(
    input_shape: Sequence[int] = (128, 128, 1),
    scale: int = 2,
    filters: int = 64,
    n_convs: int = 6,
    kernel_size: int = 3,
    interpolation: str = "bicubic",
    name: str = "super_resolution",
) -> keras.Model:
    """Build the residual-learning x`scale` super-resolution network.

    Layers: `upsample` (interpolation by `scale`), `conv{i}` -> `relu{i}` for i = 1..n_convs (the last
    ReLU named `encoder_out`), `residual` (linear convolution to the image's channels), `reconstruction`
    (`upsample` + `residual`).

    Args:
        input_shape: low-resolution `(height, width, channels)`; the default up-scales to the papers'
            256x256 working size.
        scale: up-scaling factor.
        filters: width of every feature convolution.
        n_convs: number of feature convolutions.
        kernel_size: kernel size of every convolution.
        interpolation: interpolation of `upsample`, one of nearest, bilinear, bicubic, lanczos3, lanczos5.
        name: model name.

    Returns:
        A Functional `keras.Model` mapping `(batch, h, w, C)` to `(batch, h * scale, w * scale, C)`.

    Raises:
        ValueError: malformed sizes or an unknown interpolation.
    """
    height, width, channels = check_input_shape(input_shape)
    scale = check_positive_int(scale, "scale")
    filters = check_positive_int(filters, "filters")
    n_convs = check_positive_int(n_convs, "n_convs")
    kernel_size = check_positive_int(kernel_size, "kernel_size")
    if interpolation not in _INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {', '.join(_INTERPOLATIONS)}, got {interpolation!r}")
    inputs = keras.Input((height, width, channels), name="low_resolution")
    upsampled = keras.layers.UpSampling2D(scale, interpolation=interpolation, name="upsample")(inputs)
    x = upsampled
    for i in range(1, n_convs + 1):
        x = keras.layers.Conv2D(filters, kernel_size, padding="same", name=f"conv{i}")(x)
        x = keras.layers.ReLU(name="encoder_out" if i == n_convs else f"relu{i}")(x)
    residual = keras.layers.Conv2D(channels, kernel_size, padding="same", dtype="float32", name="residual")(x)
    outputs = keras.layers.Add(dtype="float32", name="reconstruction")([upsampled, residual])
    return keras.Model(inputs, outputs, name=name)
