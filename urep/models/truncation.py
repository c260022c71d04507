"""Truncation with weight inheritance: cut a trained model at a named layer and keep its layers.

The truncated model is a new Functional model over the SAME layer objects as the source (not copies), so
its variables are the source's variables: a head built on it starts from the trained weights, and training
the head's encoder part changes the source model too. Clone the source first
(`urep.models.baselines.baseline_like`, or `keras.models.clone_model` plus `set_weights`) when an
independent copy is wanted.
"""

from __future__ import annotations

import keras

#: The layer name every urep backbone gives the last layer of its encoder.
ENCODER_OUT = "encoder_out"


def truncate(model: keras.Model, layer_name: str = ENCODER_OUT, name: str | None = None) -> keras.Model:
    """Return the part of `model` from its input(s) up to the output of layer `layer_name`.

    Args:
        model: a Functional model (built by a urep builder, or loaded from `.keras`).
        layer_name: the layer to cut at; its output becomes the new model's output.
        name: name of the new model; default `"{model.name}_{layer_name}"`.

    Returns:
        `keras.Model(model.input, model.get_layer(layer_name).output)`, sharing the source's layers and
        variables. Shapes: input as `model`'s, output `(batch, h, w, c)` of that layer.

    Raises:
        ValueError: `layer_name` is not a layer of `model` (the message lists the available names), or
            the layer was called more than once so its output is ambiguous.
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"truncate expects a keras.Model, got {type(model).__name__}")
    names = [layer.name for layer in model.layers]
    if layer_name not in names:
        raise ValueError(
            f"model {model.name!r} has no layer {layer_name!r}; available layers: {', '.join(names)}"
        )
    layer = model.get_layer(layer_name)
    try:
        output = layer.output
    except (AttributeError, ValueError) as error:
        raise ValueError(
            f"layer {layer_name!r} of model {model.name!r} has no single output to cut at ({error})"
        ) from error
    return keras.Model(model.input, output, name=name or f"{model.name}_{layer_name}")
