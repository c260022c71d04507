"""Visual explanation of classification heads: Grad-CAM, Grad-CAM++ and Score-CAM through tf-keras-vis.

The papers' derivable task 1 (preprint Fig. 6; journal Fig. 8): class activation maps computed on the last
layer of the shared encoder, found by name (`encoder_out` in every urep backbone), never by index. Nested and
multi-output models are first reduced to the chosen output and flattened with the same layers (same weights);
the caller's model is never modified (docs/design.md, "Module notes").
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import cv2
import numpy as np

from urep.io import atomic_write_bytes

logger = logging.getLogger(__name__)

METHODS = ("gradcam", "gradcam++", "scorecam")
#: Score-CAM runs one forward pass per kept channel and image; keep only the `max_n` most variable channels
#: (tf-keras-vis' "Faster Score-CAM"). The papers used Grad-CAM only.
DEFAULT_SCORECAM_MAX_N = 8
#: Outline colour (RGB) of the ground-truth mask in overlays.
MASK_COLOUR = (0, 255, 0)


def _select_output(model: Any, task: str | int | None) -> Any:
    """A single-output model for `task` (an output name or index); the model itself if it has one output."""
    import keras

    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    outputs = model.output
    if isinstance(outputs, Mapping):
        if task is None:
            if len(outputs) == 1:
                return keras.Model(inputs, next(iter(outputs.values())))
            raise ValueError(f"model {model.name!r} has outputs {sorted(outputs)}; pass task= to pick one")
        if task not in outputs:
            raise ValueError(f"model {model.name!r} has no output {task!r}; outputs are {sorted(outputs)}")
        return keras.Model(inputs, outputs[task])
    if isinstance(outputs, (list, tuple)):
        if len(outputs) == 1:
            return keras.Model(inputs, outputs[0])
        names = list(getattr(model, "output_names", []) or [])
        if isinstance(task, str) and task in names:
            return keras.Model(inputs, outputs[names.index(task)])
        if isinstance(task, int) and 0 <= task < len(outputs):
            return keras.Model(inputs, outputs[task])
        raise ValueError(
            f"model {model.name!r} has {len(outputs)} outputs {names}; pass task= (a name or an index) to pick one"
        )
    return model


def _single_input(model: Any) -> Any:
    """The model's one input tensor (Grad-CAM here explains single-input image models)."""
    if len(model.inputs) != 1:
        raise ValueError(f"model {model.name!r} has {len(model.inputs)} inputs; gradcam expects one image input")
    return model.inputs[0]


def find_layer_path(model: Any, layer_name: str) -> list[str] | None:
    """Names of the nested models leading to the first layer called `layer_name` (depth first).

    Returns:
        `[]` when the layer is a top-level layer of `model`, `["encoder"]` when it sits inside the sub-model
        `encoder`, and so on; `None` when there is no such layer.
    """
    import keras

    for layer in model.layers:
        if layer.name == layer_name:
            return []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            inner = find_layer_path(layer, layer_name)
            if inner is not None:
                return [layer.name, *inner]
    return None


def _flatten(model: Any, layer_name: str | None = None) -> tuple[Any, Any]:
    """Flat copy of `model` (same layer objects) and the symbolic output of the last call of `layer_name`."""
    import keras

    recorded: dict[str, Any] = {}

    def identity(layer: Any) -> Any:
        return layer

    def call_inlined(layer: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(layer, keras.Sequential):
            tensor = args[0]
            for inner in layer.layers:
                tensor = call_inlined(inner, tensor)
            return tensor
        if isinstance(layer, keras.Model):
            inner_model = keras.models.clone_model(
                layer, input_tensors=args[0], clone_function=identity, call_function=call_inlined
            )
            return inner_model.output
        output = layer(*args, **kwargs)
        if layer.name == layer_name:
            recorded["output"] = output
        return output

    inputs = _single_input(model)
    flat = keras.models.clone_model(
        keras.Model(inputs, model.output), clone_function=identity, call_function=call_inlined
    )
    flat = keras.Model(_single_input(flat), flat.output, name=f"{model.name}_flat")
    return flat, recorded.get("output")


def flatten_model(model: Any) -> Any:
    """Inline every nested Functional/Sequential sub-model into one flat Functional graph.

    The flat model reuses the very same layer objects (same variables), so its outputs equal the original's.

    Args:
        model: a single-input Functional `keras.Model`.

    Returns:
        A Functional `keras.Model` whose layers contain no `keras.Model`.
    """
    return _flatten(model)[0]


def prepare_for_gradcam(
    model: Any, layer_name: str = "encoder_out", task: str | int | None = None
) -> tuple[Any, tuple[int | None, ...]]:
    """The single-output, flat model tf-keras-vis needs, with `layer_name` as a top-level layer.

    Args:
        model: a classification model, a head over a nested encoder, or a multi-output (dict) model.
        layer_name: the layer to explain (default `encoder_out`, the truncation point of urep backbones).
        task: output to explain when the model has several (dict key, output name or index).

    Returns:
        `(flat_model, layer_output_shape)`: a Functional `keras.Model` sharing `model`'s layers, and the
        shape `(None, h, w, channels)` of the named layer's output.

    Raises:
        ValueError: no output `task`, no layer `layer_name` in the chosen output's graph (the message lists
            the model's layers), or a layer output that is not a feature map `(batch, h, w, channels)`.
    """
    selected = _select_output(model, task)
    if find_layer_path(selected, layer_name) is None:
        names = [layer.name for layer in selected.layers]
        raise ValueError(f"model {model.name!r} has no layer named {layer_name!r}; its layers are {names}")
    flat, feature = _flatten(selected, layer_name)
    if feature is None:
        raise ValueError(f"layer {layer_name!r} of model {model.name!r} is not on the path to output {task!r}")
    shape = tuple(feature.shape)
    if len(shape) != 4:
        raise ValueError(f"layer {layer_name!r} outputs shape {shape}; Grad-CAM needs (batch, h, w, channels)")
    if len(flat.output.shape) != 2:
        raise ValueError(f"output shape {flat.output.shape} is not (batch, classes); pick a classification task")
    return flat, shape


def _in_float32(flat: Any) -> Any:
    """`flat` itself when every layer computes in float32, else a float32 copy with the same weights.

    A model trained in mixed precision (`mixed_bfloat16`, `mixed_float16`) is explained in float32:
    tf-keras-vis casts float16 feature maps back but not bfloat16 ones, whose CAM its SciPy upsampling then
    refuses; full precision also keeps the gradient weights of near-zero channels from rounding away.
    """
    import keras

    if all(getattr(layer, "compute_dtype", "float32") == "float32" for layer in flat.layers):
        return flat

    def to_float32(layer):
        return layer.__class__.from_config({**layer.get_config(), "dtype": "float32"})

    copy = keras.models.clone_model(flat, clone_function=to_float32)
    copy.set_weights(flat.get_weights())
    return copy


def _as_model_batch(images: Any, input_shape: Sequence[int | None]) -> np.ndarray:
    batch = np.asarray(images, dtype=np.float32)
    if batch.ndim == 3 and input_shape[-1] == 1:
        batch = batch[..., None]
    if batch.ndim != 4:
        raise ValueError(f"images must be (N, H, W) or (N, H, W, C), got shape {batch.shape}")
    expected = tuple(input_shape[1:])
    if any(e is not None and e != got for e, got in zip(expected, batch.shape[1:], strict=True)):
        raise ValueError(f"images have shape {batch.shape[1:]} but the model expects {expected}")
    if not np.all(np.isfinite(batch)):
        raise ValueError("images contain NaN or infinite values")
    return batch


def _class_indices(class_index: int | Sequence[int] | None, probs: np.ndarray) -> list[int]:
    num, num_classes = probs.shape
    if class_index is None:
        indices = probs.argmax(axis=1).tolist()
    elif isinstance(class_index, (int, np.integer)):
        indices = [int(class_index)] * num
    else:
        indices = [int(i) for i in class_index]
        if len(indices) != num:
            raise ValueError(f"class_index has {len(indices)} entries for {num} images")
    bad = [i for i in indices if not 0 <= i < num_classes]
    if bad:
        raise ValueError(f"class_index {bad[0]} is outside [0, {num_classes - 1}]")
    return indices


@contextlib.contextmanager
def _quiet_predict() -> Iterator[None]:
    """Score-CAM calls `model.predict` on a list input: hide its progress bar and Keras' structure warning."""
    import keras

    interactive = keras.config.is_interactive_logging_enabled()
    keras.config.disable_interactive_logging()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The structure of `inputs` doesn't match")
            yield
    finally:
        if interactive:
            keras.config.enable_interactive_logging()


def gradcam(
    model: Any,
    images: Any,
    class_index: int | Sequence[int] | None = None,
    layer_name: str = "encoder_out",
    method: str = "gradcam",
    task: str | int | None = None,
    scorecam_max_n: int = DEFAULT_SCORECAM_MAX_N,
) -> np.ndarray:
    """Class activation maps of a classification model on the named encoder layer.

    Args:
        model: a Keras classification model (flat, nested or multi-output; see the module docstring).
        images: `(N, H, W)` (single-channel models) or `(N, H, W, C)` float32, preprocessed exactly as the
            model was trained (e.g. mean-normalised).
        class_index: class to explain: `None` = each image's predicted class, an int for all images, or one
            int per image.
        layer_name: layer whose feature maps are weighted (default `encoder_out`).
        method: `"gradcam"`, `"gradcam++"` or `"scorecam"` (Faster Score-CAM on the `scorecam_max_n` most
            variable channels).
        task: which output of a multi-output model to explain.
        scorecam_max_n: channels kept by Score-CAM (clipped to the layer's channel count).

    Returns:
        `(N, H, W)` float32 maps in [0, 1] (each map min-max normalised by tf-keras-vis; an all-zero map stays
        zero), at the input resolution (bilinear upsampling of the layer's grid).

    Raises:
        ValueError: unknown method, bad image shape or class index, or see `prepare_for_gradcam`.
    """
    from tf_keras_vis.gradcam import Gradcam
    from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
    from tf_keras_vis.scorecam import Scorecam
    from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
    from tf_keras_vis.utils.scores import CategoricalScore

    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    flat, feature_shape = prepare_for_gradcam(model, layer_name, task)
    flat = _in_float32(flat)
    batch = _as_model_batch(images, flat.inputs[0].shape)
    probs = np.asarray(flat(batch, training=False))
    score = CategoricalScore(_class_indices(class_index, probs))
    options = {"penultimate_layer": layer_name, "seek_penultimate_conv_layer": False}
    if method == "scorecam":
        channels = int(feature_shape[-1])
        visualizer = Scorecam(flat, model_modifier=ReplaceToLinear(), clone=True)
        with _quiet_predict():
            cams = visualizer(score, batch, max_N=min(scorecam_max_n, channels), batch_size=32, **options)
    else:
        cls = Gradcam if method == "gradcam" else GradcamPlusPlus
        visualizer = cls(flat, model_modifier=ReplaceToLinear(), clone=True)
        cams = visualizer(score, batch, **options)
    cams = np.nan_to_num(np.asarray(cams, dtype=np.float32), nan=0.0)
    return np.clip(cams.reshape(batch.shape[:3]), 0.0, 1.0)


def predict_probabilities(model: Any, images: Any, task: str | int | None = None) -> np.ndarray:
    """Class probabilities `(N, K)` of a (possibly multi-output) classification model."""
    selected = _select_output(model, task)
    batch = _as_model_batch(images, selected.inputs[0].shape)
    return np.asarray(selected(batch, training=False), dtype=np.float64)


# --------------------------------------------------------------------------------------------------------
# Overlays and quantification
# --------------------------------------------------------------------------------------------------------


def _gray_to_rgb_uint8(image: Any) -> np.ndarray:
    array = np.asarray(image, dtype=np.float32)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] != 3:
        raise ValueError(f"image must be (H, W), (H, W, 1) or (H, W, 3), got shape {array.shape}")
    return np.round(np.clip(array, 0.0, 1.0) * 255).astype(np.uint8)


def _resize_to(array: np.ndarray, shape: tuple[int, int], interpolation: int) -> np.ndarray:
    if array.shape[:2] == shape:
        return array
    return cv2.resize(array, (shape[1], shape[0]), interpolation=interpolation)


def overlay(
    image: Any,
    heatmap: Any,
    mask: Any | None = None,
    alpha: float = 0.4,
    colormap: int = cv2.COLORMAP_JET,
) -> np.ndarray:
    """Blend a heat map over an image and outline a ground-truth mask.

    Args:
        image: `(H, W)`, `(H, W, 1)` or `(H, W, 3)` float in [0, 1] (the un-normalised image; clipped).
        heatmap: `(h, w)` in [0, 1]; resized bilinearly to `(H, W)` when needed.
        mask: optional `(h, w)` binary mask (non-zero = inside), resized nearest-neighbour; its outline
            (`cv2.findContours`) is drawn 1 px wide in `MASK_COLOUR`.
        alpha: heat map weight in the blend (0 = image only, 1 = heat map only).
        colormap: OpenCV colour map of the heat map.

    Returns:
        `(H, W, 3)` RGB uint8.

    Raises:
        ValueError: bad shapes or `alpha` outside [0, 1].
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
    rgb = _gray_to_rgb_uint8(image)
    shape = rgb.shape[:2]
    heat = np.asarray(heatmap, dtype=np.float32)
    if heat.ndim != 2:
        raise ValueError(f"heatmap must be (H, W), got shape {heat.shape}")
    heat = _resize_to(np.clip(np.nan_to_num(heat), 0.0, 1.0), shape, cv2.INTER_LINEAR)
    coloured = cv2.cvtColor(cv2.applyColorMap(np.round(heat * 255).astype(np.uint8), colormap), cv2.COLOR_BGR2RGB)
    blended = cv2.addWeighted(rgb, 1.0 - alpha, coloured, alpha, 0.0)
    if mask is not None:
        mask_array = np.asarray(mask)
        if mask_array.ndim == 3 and mask_array.shape[-1] == 1:
            mask_array = mask_array[..., 0]
        if mask_array.ndim != 2:
            raise ValueError(f"mask must be (H, W), got shape {mask_array.shape}")
        binary = _resize_to((mask_array > 0).astype(np.uint8), shape, cv2.INTER_NEAREST)
        contours, _ = cv2.findContours(binary, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(blended, contours, -1, MASK_COLOUR, thickness=1)
    return blended


def save_overlay(
    path: str | os.PathLike, image: Any, heatmap: Any, mask: Any | None = None, **overlay_options: Any
) -> os.PathLike:
    """Write `overlay(image, heatmap, mask)` as a PNG, atomically.

    Returns:
        The written path.

    Raises:
        ValueError: `path` does not end in `.png`, or see `overlay`.
    """
    if not str(path).lower().endswith(".png"):
        raise ValueError(f"overlay path must end in .png, got {path}")
    rgb = overlay(image, heatmap, mask, **overlay_options)
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"OpenCV could not encode the overlay for {path}")
    return atomic_write_bytes(path, encoded.tobytes())


def energy_inside(heatmap: Any, mask: Any) -> float:
    """Fraction of the heat map's energy (sum of its values) that falls inside the mask.

    Args:
        heatmap: `(H, W)` non-negative map (e.g. from `gradcam`).
        mask: `(H, W)` binary mask, same shape (non-zero = inside).

    Returns:
        `sum(heatmap * mask) / sum(heatmap)` in [0, 1]; NaN when the heat map is all zero (no energy to
        attribute).

    Raises:
        ValueError: shapes differ or the heat map has negative or non-finite values.
    """
    heat = np.asarray(heatmap, dtype=np.float64)
    inside = np.asarray(mask) > 0
    if inside.ndim == 3 and inside.shape[-1] == 1:
        inside = inside[..., 0]
    if heat.shape != inside.shape:
        raise ValueError(f"heatmap {heat.shape} and mask {inside.shape} must have the same shape")
    if not np.all(np.isfinite(heat)) or np.any(heat < 0):
        raise ValueError("heatmap must be finite and non-negative")
    total = heat.sum()
    if total == 0:
        return float("nan")
    return float(heat[inside].sum() / total)


def energy_by_class(
    heatmaps: Any, masks: Any, labels: Any, class_names: Sequence[str] | None = None
) -> dict[str, dict[str, Any]]:
    """`energy_inside` per image, summarised per class (the journal's lung-mask check of Grad-CAM).

    Args:
        heatmaps: `(N, H, W)` maps.
        masks: `(N, H, W)` binary masks.
        labels: `(N,)` class indices (true or predicted, say which in your report).
        class_names: optional names for the class indices; default their string form.

    Returns:
        `{class name: {"mean", "std" (population), "n", "undefined" (all-zero maps, left out), "values"}}`
        for every class present in `labels`.

    Raises:
        ValueError: lengths differ or a label has no name.
    """
    heatmaps = np.asarray(heatmaps)
    masks = np.asarray(masks)
    labels = np.asarray(labels).astype(int)
    if not (len(heatmaps) == len(masks) == len(labels)):
        raise ValueError(f"got {len(heatmaps)} heat maps, {len(masks)} masks and {len(labels)} labels")
    energies = np.array([energy_inside(h, m) for h, m in zip(heatmaps, masks, strict=True)])
    result: dict[str, dict[str, Any]] = {}
    for label in np.unique(labels):
        if class_names is not None and not 0 <= label < len(class_names):
            raise ValueError(f"label {label} has no name in class_names {list(class_names)}")
        name = class_names[label] if class_names is not None else str(label)
        values = energies[labels == label]
        defined = values[~np.isnan(values)]
        result[name] = {
            "mean": float(defined.mean()) if defined.size else float("nan"),
            "std": float(defined.std()) if defined.size else float("nan"),
            "n": int(defined.size),
            "undefined": int(values.size - defined.size),
            "values": values.tolist(),
        }
    return result
