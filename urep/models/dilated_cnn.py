"""U-Rep 2: the supervised Doppler backbone, a plain CNN with dilated deeper layers.

Journal section 4.2.1 and Fig. 8: six 3x3 convolutions (filters 8-256, dilation 2 in the fourth to sixth, no
pooling), GAP, a fully connected layer, dropout 0.5 and a three-way softmax (flow type MV / MA / TR), Adam and
categorical cross-entropy; 460,115 parameters at 256x256x3, the papers' count (docs/design.md, "Parameter
counts against the papers").
"""

from __future__ import annotations

from collections.abc import Sequence

import keras

from urep.models._checks import (
    check_filters,
    check_input_shape,
    check_layer_indices,
    check_positive_int,
    check_rate,
)

#: Journal Table 8 / Table 10, "Shared Source" (U-Rep 2).
PAPER_PARAMS = 460_115
DEFAULT_FILTERS = (8, 16, 32, 64, 128, 256)


def dilated_convolutions(
    x: keras.KerasTensor,
    filters: Sequence[int] = DEFAULT_FILTERS,
    kernel_size: int = 3,
    dilation_rate: int = 2,
    dilated_layers: Sequence[int] = (4, 5, 6),
    pool_size: int | None = None,
    kernel_initializer: str = "glorot_uniform",
) -> keras.KerasTensor:
    """Apply the convolution stack shared by `dilated_cnn` and `baseline_classifier` to a tensor.

    Layer i (1-based): `conv{i}` (same padding, dilated when `i in dilated_layers`) -> `relu{i}`, then,
    when `pool_size` is given, `pool{i}` (max pooling, same padding). The last layer of the stack is named
    `encoder_out` instead (the truncation point).

    Args:
        x: input tensor `(batch, H, W, C)`.
        filters: widths of the convolutions.
        kernel_size: kernel size of every convolution.
        dilation_rate: dilation of the layers listed in `dilated_layers`.
        dilated_layers: 1-based numbers of the dilated convolutions.
        pool_size: max-pooling size after every convolution; None for no pooling.
        kernel_initializer: initializer of the convolution kernels (Keras' name; default Keras' own, which
            the authors' public code kept).

    Returns:
        The `encoder_out` tensor.
    """
    filters = check_filters(filters)
    kernel_size = check_positive_int(kernel_size, "kernel_size")
    dilation_rate = check_positive_int(dilation_rate, "dilation_rate")
    dilated = check_layer_indices(dilated_layers, len(filters), "dilated_layers")
    if pool_size is not None:
        pool_size = check_positive_int(pool_size, "pool_size")
    last = len(filters)
    for i, width in enumerate(filters, start=1):
        x = keras.layers.Conv2D(
            width,
            kernel_size,
            padding="same",
            dilation_rate=dilation_rate if i in dilated else 1,
            kernel_initializer=kernel_initializer,
            name=f"conv{i}",
        )(x)
        x = keras.layers.ReLU(name="encoder_out" if i == last and pool_size is None else f"relu{i}")(x)
        if pool_size is not None:
            x = keras.layers.MaxPooling2D(
                pool_size, padding="same", name="encoder_out" if i == last else f"pool{i}"
            )(x)
    return x


def dilated_cnn(
    input_shape: Sequence[int] = (256, 256, 3),
    filters: Sequence[int] = DEFAULT_FILTERS,
    kernel_size: int = 3,
    dilation_rate: int = 2,
    dilated_layers: Sequence[int] = (4, 5, 6),
    dense_units: int = 256,
    dropout: float = 0.5,
    n_classes: int = 3,
    name: str = "dilated_cnn",
) -> keras.Model:
    """Build the U-Rep 2 source model (supervised on Doppler flow type).

    Layers: `conv1`/`relu1` ... `conv6`/`encoder_out` (see `dilated_convolutions`), `gap`, `fc` (Dense,
    ReLU), `dropout`, `predictions` (Dense, softmax). Defaults = the journal's configuration (section
    4.2.1): exactly 460,115 parameters (journal Tables 8 and 10). The preprint used 224x224 inputs.

    Args:
        input_shape: `(height, width, channels)` (journal: 256x256x3).
        filters: widths of the six convolutions.
        kernel_size: kernel size of every convolution.
        dilation_rate: dilation of the layers in `dilated_layers`.
        dilated_layers: 1-based numbers of the dilated convolutions.
        dense_units: units of the fully connected layer after GAP. The activation (ReLU) is not stated in
            the papers.
        dropout: dropout rate after the fully connected layer.
        n_classes: softmax outputs (3 flow types).
        name: model name.

    Returns:
        A Functional `keras.Model` mapping `(batch, H, W, C)` to class probabilities `(batch, n_classes)`.
    """
    shape = check_input_shape(input_shape)
    dense_units = check_positive_int(dense_units, "dense_units")
    dropout = check_rate(dropout, "dropout")
    n_classes = check_positive_int(n_classes, "n_classes")
    inputs = keras.Input(shape, name="image")
    x = dilated_convolutions(inputs, filters, kernel_size, dilation_rate, dilated_layers)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = keras.layers.Dense(dense_units, activation="relu", name="fc")(x)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    outputs = keras.layers.Dense(n_classes, activation="softmax", dtype="float32", name="predictions")(x)
    return keras.Model(inputs, outputs, name=name)
