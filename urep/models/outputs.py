"""The probability maps that end the segmentation models, built for mixed precision.

Every segmentation model ends in a convolution to the mask's channels and a sigmoid. Under a mixed policy
(`mixed_bfloat16`, `mixed_float16`) the convolution runs in the compute dtype like the layers before it and
only the activation runs in float32 (`{name}_{activation}`), so the model's output, the losses and the metrics
see float32 probabilities: the layout the Keras mixed-precision guide recommends (its example ends in a Dense
layer followed by `Activation("softmax", dtype="float32")`). With float32 everywhere the result is the
single convolution-with-sigmoid the papers describe (same weights, same values).

Measured: the 128x128 segmentation head of the real-data configs on a frozen CDAE encoder, bfloat16 on a CPU
with AMX, trains 11-21% more images per second (256x256: 14-17%) than with the whole final convolution in
float32, where the oneDNN kernel for one output channel and its input's cast to float32 took about a sixth of
the op time (docs/benchmarks.md, "Mixed-precision output layers"). Weights saved from the earlier layout (one
float32 convolution named `{name}`) load unchanged: the activation layer has no weights.
"""

from __future__ import annotations

import keras

__all__ = ["probability_map"]


def probability_map(x: keras.KerasTensor, channels: int, kernel_size: int | tuple[int, int], *, name: str,
                    activation: str | None = "sigmoid", padding: str = "same") -> keras.KerasTensor:
    """`Conv2D(channels, kernel_size, name=name)` (no activation, the model's compute dtype) followed by
    `Activation(activation, dtype="float32", name=f"{name}_{activation}")`.

    The convolution keeps the name the model's documentation gives its mask layer, so its weights are found
    as before; `activation=None` gives float32 logits (layer `{name}_linear`).
    """
    logits = keras.layers.Conv2D(channels, kernel_size, padding=padding, name=name)(x)
    label = getattr(activation, "__name__", activation) or "linear"
    return keras.layers.Activation(activation, dtype="float32", name=f"{name}_{label}")(logits)
