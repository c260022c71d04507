"""Task heads appended to a shared (truncated) encoder.

Every head is a Functional model from the encoder's input to the head's output, built on the encoder's output
tensor: encoder layers are shared, never copied; head layers are named `{head name}_{layer}`.
`classification_head`, `segmentation_head_from_encoder` (U-Rep 2), `segmentation_head_from_autoencoder`
(U-Rep 1) and `reconstruction_head_from_autoencoder` (journal section 3.2, Figs. 6 and 8). Autoencoder-based
heads copy the decoder with its trained weights (docs/choices.md, "Heads built from an autoencoder").
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Sequence

import keras

from urep.models._checks import check_filters, check_positive_int, check_rate
from urep.models.batchnorm import BatchNorm
from urep.models.decoders import DEFAULT_DILATION_RATES, DEFAULT_FILTERS, decoder_layers
from urep.models.outputs import probability_map
from urep.models.truncation import ENCODER_OUT, truncate

_NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def check_head_name(name: str) -> str:
    """Return `name` if it can prefix layer names (a letter, then letters, digits or underscores).

    Raises:
        ValueError: otherwise.
    """
    if not isinstance(name, str) or not _NAME_PATTERN.match(name):
        raise ValueError(
            f"head name must start with a letter and contain only letters, digits and '_', got {name!r}"
        )
    return name


def classification_head(
    encoder: keras.Model,
    n_classes: int,
    dense_units: int = 256,
    dropout: float = 0.5,
    name: str = "classification",
) -> keras.Model:
    """Append GAP, a fully connected layer, dropout and a softmax to `encoder` (shared, not copied).

    Layers: `{name}_gap`, `{name}_fc` (Dense, ReLU), `{name}_dropout`, `{name}_predictions` (softmax).
    Defaults: the journal's (Dense 256 as in U-Rep 2, dropout 0.5; sections 4.1.2 and 4.2.2).

    Args:
        encoder: a model whose output is a feature map `(batch, h, w, c)` (e.g. `truncate(source)`).
        n_classes: number of classes.
        dense_units: units of the fully connected layer.
        dropout: dropout rate.
        name: head name; prefixes the head's layers and names the returned model.

    Returns:
        A Functional `keras.Model` from `encoder.input` to probabilities `(batch, n_classes)`.

    Raises:
        ValueError: bad sizes or name, or an encoder output that is not a 4-D feature map.
    """
    name = check_head_name(name)
    n_classes = check_positive_int(n_classes, "n_classes")
    dense_units = check_positive_int(dense_units, "dense_units")
    dropout = check_rate(dropout, "dropout")
    features = _feature_map(encoder)
    x = keras.layers.GlobalAveragePooling2D(name=f"{name}_gap")(features)
    x = keras.layers.Dense(dense_units, activation="relu", name=f"{name}_fc")(x)
    x = keras.layers.Dropout(dropout, name=f"{name}_dropout")(x)
    outputs = keras.layers.Dense(
        n_classes, activation="softmax", dtype="float32", name=f"{name}_predictions"
    )(x)
    return keras.Model(encoder.input, outputs, name=name)


def segmentation_head_from_encoder(
    encoder: keras.Model,
    decoder_filters: Sequence[int] = DEFAULT_FILTERS,
    kernel_size: int = 3,
    dilation_rates: Sequence[int] | None = DEFAULT_DILATION_RATES,
    upsample_levels: int | None = None,
    output_channels: int = 1,
    name: str = "segmentation",
) -> keras.Model:
    """Append the symmetric segmentation decoder (`urep.models.decoders`) to `encoder`.

    With the U-Rep 2 encoder on 256x256x1 and the defaults: exactly 786,497 parameters (journal Table 8).

    Args:
        encoder: a model whose output is a feature map `(batch, h, w, c)`.
        decoder_filters: widths of the decoder convolutions (journal: 128/64/32/16/8).
        kernel_size: kernel size of the decoder convolutions.
        dilation_rates: per-convolution dilation (see `urep.models.decoders`); None for none.
        upsample_levels: decoder levels that up-sample by 2. None: inferred from the ratio of the input's
            height to the feature map's (0 for the dilated CNN, 4 for a CDAE encoder).
        output_channels: mask channels.
        name: head name; prefixes the decoder's layers (`{name}_dec_conv1` ... `{name}_mask`).

    Returns:
        A Functional `keras.Model` from `encoder.input` to a sigmoid mask `(batch, H, W, output_channels)`.

    Raises:
        ValueError: bad sizes or name, an encoder without a 4-D output, or a size ratio that is not a
            power of two no larger than `2 ** len(decoder_filters)` when `upsample_levels` is None.
    """
    name = check_head_name(name)
    features = _feature_map(encoder)
    if upsample_levels is None:
        upsample_levels = _upsample_levels(encoder, features, len(tuple(decoder_filters)))
    outputs = decoder_layers(
        features,
        decoder_filters,
        kernel_size,
        dilation_rates,
        upsample_levels=upsample_levels,
        output_channels=output_channels,
        prefix=f"{name}_",
    )
    return keras.Model(encoder.input, outputs, name=name)


def segmentation_head_from_autoencoder(
    autoencoder: keras.Model,
    encoder: keras.Model | None = None,
    encoder_layer: str = ENCODER_OUT,
    output_layer: str | None = None,
    output_channels: int = 1,
    context_dilations: Sequence[int] | None = None,
    context_width: int | None = None,
    name: str = "segmentation",
) -> keras.Model:
    """The whole autoencoder with its final convolution replaced by a sigmoid convolution to a mask.

    Encoder layers are shared with `encoder` (default: `truncate(autoencoder, encoder_layer)`); the
    decoder layers between `encoder_layer` and `output_layer` are copied with their trained weights and
    renamed `{name}_{original name}`; the final layer becomes `{name}_mask`, a fresh convolution with
    `output_channels` filters and the replaced one's kernel size and padding, followed by `{name}_mask_sigmoid`
    in float32 (`urep.models.outputs.probability_map`). For the default
    `cdae` the count equals the CDAE's (796,769).

    Args:
        autoencoder: the trained source (e.g. `cdae(...)` or loaded from `.keras`); its decoder must be a
            plain chain of layers from `encoder_layer` to `output_layer`.
        encoder: the shared encoder to build on (its output must have the shape of `encoder_layer`'s
            output); default: the autoencoder's own layers, truncated.
        encoder_layer: name of the autoencoder's last encoder layer.
        output_layer: name of the final convolution to replace; default: the autoencoder's output layer.
        output_channels: mask channels.
        context_dilations: None (the papers' head, the default) or a variant not in the papers: one
            residual context block per rate between the encoder's output and the decoder
            (`context_block`), trainable head layers that widen the receptive field, which the frozen
            encoder of the independent strategy fixes in pixels (docs/real_data.md section 15).
        context_width: filters of each block's dilated convolution; None (default): the feature map's
            width. A narrower block keeps the receptive field with fewer parameters (needs
            `context_dilations`).
        name: head name.

    Returns:
        A Functional `keras.Model` from the encoder's input to a sigmoid mask `(batch, H, W, channels)`.

    Raises:
        ValueError: unknown layer names, a non-chain decoder, a final layer that is not a convolution, an
            encoder whose output shape does not fit the decoder, a dilation rate or `context_width` that is
            not a positive integer, or `context_width` without `context_dilations`.
    """
    name = check_head_name(name)
    output_channels = check_positive_int(output_channels, "output_channels")
    context = None
    if context_width is not None:
        context_width = check_positive_int(context_width, "context_width")
        if context_dilations is None:
            raise ValueError(f"context_width={context_width} needs context_dilations (the blocks it sizes)")
    if context_dilations is not None:
        rates = check_filters(context_dilations, "context_dilations")
        context = functools.partial(context_block, dilation_rates=rates, prefix=f"{name}_", width=context_width)
    if _has_skips(autoencoder):
        encoder, x, final = _skip_decoder(autoencoder, encoder, encoder_layer, output_layer, name, context)
    else:
        encoder, decoder, final = _autoencoder_parts(autoencoder, encoder, encoder_layer, output_layer)
    if not isinstance(final, keras.layers.Conv2D):
        raise ValueError(
            f"layer {final.name!r} of {autoencoder.name!r} is a {type(final).__name__}, expected the final "
            "Conv2D to replace"
        )
    if not _has_skips(autoencoder):
        features = _feature_map(encoder)
        x = _apply_copies(features if context is None else context(features), decoder, name)
    outputs = probability_map(x, output_channels, final.kernel_size, padding=final.padding, name=f"{name}_mask")
    return keras.Model(encoder.input, outputs, name=name)


def context_block(x: keras.KerasTensor, dilation_rates: Sequence[int], prefix: str = "",
                  width: int | None = None) -> keras.KerasTensor:
    """Residual dilated convolutions that widen a feature map's receptive field (not in the papers).

    Per rate r (1-based index i): `{prefix}context_conv{i}` (3x3, dilation r, `width` filters) ->
    `{prefix}context_bn{i}` -> `{prefix}context_relu{i}` -> `{prefix}context_proj{i}` (1x1, initialised to
    zero) added to the block's input in `{prefix}context_add{i}`. The zero projection makes each block the
    identity when built, so a head with context blocks starts as the head without them; rates (1, 2, 4) on a
    CDAE's 1/16 feature map add 2 * 16 * 7 = 224 pixels to the receptive field.

    Args:
        x: feature map `(batch, h, w, c)`.
        dilation_rates: one block per rate.
        prefix: prepended to every layer name.
        width: filters of the dilated convolution; None: the map's width `c`. The projection always
            returns `c` channels, so the receptive field does not depend on `width`, the parameters do.

    Returns:
        A tensor of `x`'s shape.
    """
    channels = x.shape[-1]
    filters = channels if width is None else width
    for i, rate in enumerate(dilation_rates, start=1):
        y = keras.layers.Conv2D(filters, 3, padding="same", dilation_rate=rate, name=f"{prefix}context_conv{i}")(x)
        y = BatchNorm(name=f"{prefix}context_bn{i}")(y)
        y = keras.layers.ReLU(name=f"{prefix}context_relu{i}")(y)
        y = keras.layers.Conv2D(channels, 1, kernel_initializer="zeros", name=f"{prefix}context_proj{i}")(y)
        x = keras.layers.Add(name=f"{prefix}context_add{i}")([x, y])
    return x


def reconstruction_head_from_autoencoder(
    autoencoder: keras.Model,
    encoder: keras.Model | None = None,
    encoder_layer: str = ENCODER_OUT,
    output_layer: str | None = None,
    name: str = "denoising",
) -> keras.Model:
    """The autoencoder's decoder, final layer included, as a head on `encoder` (weights inherited).

    Same sharing rule as `segmentation_head_from_autoencoder`: encoder shared, decoder copied with its
    trained weights, layers renamed `{name}_{original name}`. Use it to keep the denoising task in a
    multi-task assembly.

    Returns:
        A Functional `keras.Model` from the encoder's input to the reconstruction `(batch, H, W, C)`.

    Raises:
        ValueError: as `segmentation_head_from_autoencoder`.
    """
    name = check_head_name(name)
    if _has_skips(autoencoder):
        encoder, x, final = _skip_decoder(autoencoder, encoder, encoder_layer, output_layer, name)
        return keras.Model(encoder.input, _apply_copies(x, [final], name), name=name)
    encoder, decoder, final = _autoencoder_parts(autoencoder, encoder, encoder_layer, output_layer)
    outputs = _apply_copies(encoder.output, [*decoder, final], name)
    return keras.Model(encoder.input, outputs, name=name)


def _feature_map(encoder: keras.Model) -> keras.KerasTensor:
    if not isinstance(encoder, keras.Model):
        raise TypeError(f"encoder must be a keras.Model, got {type(encoder).__name__}")
    if len(encoder.outputs) != 1 or len(encoder.outputs[0].shape) != 4:
        shapes = [tuple(t.shape) for t in encoder.outputs]
        raise ValueError(
            f"encoder {encoder.name!r} must have one 4-D output (batch, h, w, c), got outputs {shapes}"
        )
    return encoder.outputs[0]


def _upsample_levels(encoder: keras.Model, features: keras.KerasTensor, n_levels: int) -> int:
    in_height = encoder.inputs[0].shape[1]
    out_height = features.shape[1]
    if in_height is None or out_height is None:
        raise ValueError(f"encoder {encoder.name!r} has a dynamic height; pass upsample_levels explicitly")
    ratio = in_height / out_height
    levels = round(math.log2(ratio)) if ratio >= 1 else -1
    if levels < 0 or 2**levels != ratio or levels > n_levels:
        raise ValueError(
            f"encoder {encoder.name!r} maps height {in_height} to {out_height}: the decoder can only undo a "
            f"power-of-two reduction up to 2**{n_levels}; pass upsample_levels explicitly"
        )
    return levels


def _autoencoder_parts(
    autoencoder: keras.Model,
    encoder: keras.Model | None,
    encoder_layer: str,
    output_layer: str | None,
) -> tuple[keras.Model, list[keras.layers.Layer], keras.layers.Layer]:
    """Split `autoencoder` into (shared encoder, decoder chain, final layer)."""
    source_encoder = truncate(autoencoder, encoder_layer)
    names = [layer.name for layer in autoencoder.layers]
    if output_layer is None:  # a residual `cdae` ends in an Add; its decoder's last convolution is named so
        output_layer = "reconstruction" if "reconstruction" in names else autoencoder.layers[-1].name
    if output_layer not in names:
        raise ValueError(
            f"model {autoencoder.name!r} has no layer {output_layer!r}; available layers: {', '.join(names)}"
        )
    start, stop = names.index(encoder_layer), names.index(output_layer)
    if stop <= start:
        raise ValueError(f"layer {output_layer!r} does not follow {encoder_layer!r} in {autoencoder.name!r}")
    chain = autoencoder.layers[start : stop + 1]
    # layers off the decoder path (e.g. a residual `cdae`'s input skip) may sit between them in the list
    chain = [chain[0]] + [layer for layer in chain[1:] if not _reads_model_input(layer, autoencoder)]
    for previous, layer in zip(chain, chain[1:], strict=False):
        if layer.input is not previous.output:
            raise ValueError(
                f"the decoder of {autoencoder.name!r} is not a plain chain: {layer.name!r} does not take "
                f"its input from {previous.name!r}"
            )
    if encoder is None:
        encoder = source_encoder
    else:
        expected = tuple(source_encoder.outputs[0].shape[1:])
        got = tuple(_feature_map(encoder).shape[1:])
        if got != expected:
            raise ValueError(
                f"encoder {encoder.name!r} outputs {got}, but the decoder of {autoencoder.name!r} expects "
                f"{expected} (the output of {encoder_layer!r})"
            )
    return encoder, chain[1:-1], chain[-1]


def _has_skips(autoencoder: keras.Model) -> bool:
    """Whether `autoencoder` is a `cdae(skips=...)`: its decoder reads encoder maps, not a plain chain."""
    return any(layer.name.startswith("dec_skip") for layer in autoencoder.layers)


def _skip_decoder(
    autoencoder: keras.Model,
    encoder: keras.Model | None,
    encoder_layer: str,
    output_layer: str | None,
    prefix: str,
    context=None,
) -> tuple[keras.Model, keras.KerasTensor, keras.layers.Layer]:
    """Copy a skip-connected decoder onto `encoder`: (encoder, copied input of the final layer, final layer).

    The graph from `encoder_layer` (and from the encoder maps the skips read, by layer name) to the final
    layer's input is rebuilt from copies of the decoder layers (same config and weights, renamed
    `{prefix}_{name}`); encoder layers, skip sources included, are `encoder`'s own (shared). `context`, when
    given, maps the encoder's output before the decoder reads it (`context_block`).
    """
    source_encoder = truncate(autoencoder, encoder_layer)
    names = [layer.name for layer in autoencoder.layers]
    if output_layer is None:
        output_layer = "reconstruction" if "reconstruction" in names else autoencoder.layers[-1].name
    if output_layer not in names:
        raise ValueError(
            f"model {autoencoder.name!r} has no layer {output_layer!r}; available layers: {', '.join(names)}"
        )
    final = autoencoder.get_layer(output_layer)
    if encoder is None:
        encoder = source_encoder
    features = _feature_map(encoder)
    expected = tuple(source_encoder.outputs[0].shape[1:])
    if tuple(features.shape[1:]) != expected:
        raise ValueError(
            f"encoder {encoder.name!r} outputs {tuple(features.shape[1:])}, but the decoder of "
            f"{autoencoder.name!r} expects {expected} (the output of {encoder_layer!r})"
        )
    if context is not None:
        features = context(features)
    encoder_names = {layer.name for layer in source_encoder.layers}
    copies: dict[str, keras.KerasTensor] = {}

    def rebuild(tensor: keras.KerasTensor) -> keras.KerasTensor:
        layer = tensor._keras_history.operation
        if layer.name == encoder_layer:
            return features
        if isinstance(layer, keras.layers.InputLayer):
            return encoder.inputs[0]
        if layer.name in encoder_names:  # a skip source: the shared encoder's own map
            try:
                return encoder.get_layer(layer.name).output
            except ValueError as error:
                raise ValueError(
                    f"encoder {encoder.name!r} has no layer {layer.name!r}, which a skip connection of "
                    f"{autoencoder.name!r} reads"
                ) from error
        if layer.name not in copies:
            inputs = layer.input
            args = [rebuild(t) for t in inputs] if isinstance(inputs, list | tuple) else rebuild(inputs)
            copy = type(layer).from_config({**layer.get_config(), "name": f"{prefix}_{layer.name}"})
            copies[layer.name] = copy(args)
            copy.set_weights(layer.get_weights())
        return copies[layer.name]

    return encoder, rebuild(final.input), final


def _reads_model_input(layer: keras.layers.Layer, model: keras.Model) -> bool:
    """Whether `layer` takes one of `model`'s inputs directly (so it is not part of the decoder chain)."""
    inputs = layer.input if isinstance(layer.input, list | tuple) else [layer.input]
    return any(tensor is model_input for tensor in inputs for model_input in model.inputs)


def _apply_copies(x: keras.KerasTensor, layers: list[keras.layers.Layer], prefix: str) -> keras.KerasTensor:
    """Apply fresh copies of `layers` (same config, name prefixed, same weights) to `x` in order."""
    for layer in layers:
        config = {**layer.get_config(), "name": f"{prefix}_{layer.name}"}
        copy = type(layer).from_config(config)
        x = copy(x)
        copy.set_weights(layer.get_weights())
    return x
