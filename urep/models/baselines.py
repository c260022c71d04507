"""The traditional approach the papers compare against: one separately trained, randomly initialised model
per task, after a separate denoising model (journal section 3.4 and Fig. 4; Tables 4, 6, 8 and 10).

- `baseline_classifier`: the separate classification model of Tables 4, 6, 8 and 10 (1,573,506 params).
- `baseline_like`: the same architecture as any (head) model, fresh random weights, nothing shared.
- `baseline_denoiser`: the separate denoising model (a fresh CDAE).
"""

from __future__ import annotations

from collections.abc import Sequence

import keras

from urep.models._checks import check_input_shape, check_positive_int
from urep.models.cdae import cdae
from urep.models.dilated_cnn import dilated_convolutions

#: Journal Tables 4, 6, 8 and 10: "Separate ... Classification Model".
PAPER_PARAMS = 1_573_506
DEFAULT_FILTERS = (16, 32, 64, 128, 256, 512)


def baseline_classifier(
    input_shape: Sequence[int] = (256, 256, 1),
    filters: Sequence[int] = DEFAULT_FILTERS,
    kernel_size: int = 3,
    dilation_rate: int = 2,
    dilated_layers: Sequence[int] = (4, 5, 6),
    pool_size: int = 2,
    n_classes: int = 2,
    name: str = "baseline_classifier",
    kernel_initializer: str = "glorot_uniform",
) -> keras.Model:
    """Build the separate-model classifier of the traditional approach.

    Layers: `conv{i}` -> `relu{i}` -> `pool{i}` for i = 1..6 (the last pooling is named `encoder_out`),
    `gap`, `predictions` (Dense softmax). Defaults give exactly the journal's 1,573,506 parameters:
    convolutions 160 + 4,640 + 18,496 + 73,856 + 295,168 + 1,180,160 = 1,572,480 plus Dense 512 * 2 + 2.
    Pooling uses same padding (the papers are silent) so small test inputs (down to 1x1 feature maps) work.

    Args:
        input_shape: `(height, width, channels)` (journal: 256x256x1).
        filters: widths of the six convolutions.
        kernel_size: kernel size of every convolution.
        dilation_rate: dilation of the layers in `dilated_layers`.
        dilated_layers: 1-based numbers of the dilated convolutions.
        pool_size: max-pooling size after every convolution.
        n_classes: softmax outputs.
        name: model name.
        kernel_initializer: initializer of the convolution kernels. The default (Keras' own, glorot_uniform,
            as in the authors' public code) shrinks the signal through six ReLU layers without normalization;
            "he_normal" (He et al. 2015) keeps its scale (docs/real_data.md section 23).

    Returns:
        A Functional `keras.Model` mapping `(batch, H, W, C)` to class probabilities `(batch, n_classes)`.
    """
    shape = check_input_shape(input_shape)
    n_classes = check_positive_int(n_classes, "n_classes")
    inputs = keras.Input(shape, name="image")
    x = dilated_convolutions(inputs, filters, kernel_size, dilation_rate, dilated_layers, pool_size=pool_size,
                             kernel_initializer=kernel_initializer)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(n_classes, activation="softmax", dtype="float32", name="predictions")(x)
    return keras.Model(inputs, outputs, name=name)


def baseline_like(model: keras.Model, name: str | None = None) -> keras.Model:
    """Return a model with `model`'s architecture and layer names but fresh, randomly initialised weights.

    Nothing is shared with `model` (new layers, new variables): this is the papers' "same architecture,
    trained separately with random initialization" baseline for a head built on a shared encoder.

    Args:
        model: a Functional model (e.g. a task model from `urep.models.heads`).
        name: name of the new model; default `"{model.name}_baseline"`.

    Returns:
        A new Functional `keras.Model` with the same input and output shapes.
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"baseline_like expects a keras.Model, got {type(model).__name__}")
    clone = keras.models.clone_model(model)
    clone.name = name or f"{model.name}_baseline"
    return clone


def baseline_denoiser(name: str = "baseline_denoiser", **cdae_kwargs) -> keras.Model:
    """The separate denoising model of the traditional approach: a fresh `cdae(**cdae_kwargs)`."""
    return cdae(name=name, **cdae_kwargs)
