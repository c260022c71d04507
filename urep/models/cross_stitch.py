"""Soft parameter sharing with cross-stitch units (Misra et al., CVPR 2016), the comparison for hard sharing.

Each task gets its own column of the same architecture; after chosen layers a `CrossStitch` unit replaces the
columns' activations by learned linear combinations `x~_i = sum_j alpha_ij x_j`. `cross_stitch_network`
builds the columns, `cross_stitch_from_assembly` turns a `MultiTaskModel` into its soft-sharing twin.
Initialization, stitch points and per-channel mixing: docs/choices.md, "Cross-stitch units".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import keras
import numpy as np

_NONLINEAR_LAYERS = (
    keras.layers.ReLU, keras.layers.LeakyReLU, keras.layers.ELU, keras.layers.PReLU, keras.layers.Activation,
)


@keras.saving.register_keras_serializable(package="urep")
class CrossStitch(keras.layers.Layer):
    """A cross-stitch unit: learned linear mixing of the same-shaped activations of n task columns.

    Input: a list of n >= 2 tensors of the same shape `(batch, ..., channels)`. Output: a list of n tensors of
    that shape, `out_i = sum_j alpha[i, j] * in_j` (per channel `c`: `alpha[c, i, j]` when `per_channel`).

    Args:
        self_weight: initial diagonal `alpha_ii`; off-diagonal entries start at `(1 - self_weight) / (n - 1)`
            so every row sums to 1 (Misra et al.: 0.9 / 0.1). `1.0` starts from independent columns.
        per_channel: one `(n, n)` matrix per channel (`alpha` of shape `(channels, n, n)`) instead of one
            matrix shared by all channels (`alpha` of shape `(n, n)`).
        **kwargs: `keras.layers.Layer` arguments (name, dtype, trainable).

    Raises:
        ValueError: `self_weight` outside [0, 1]; at build time, fewer than 2 inputs or inputs of different
            shapes.
    """

    def __init__(self, self_weight: float = 0.9, per_channel: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(self_weight, bool) or not isinstance(self_weight, (int, float)) or not (
            0.0 <= self_weight <= 1.0
        ):
            raise ValueError(f"CrossStitch self_weight must be a number in [0, 1], got {self_weight!r}")
        self.self_weight = float(self_weight)
        self.per_channel = bool(per_channel)
        self.n_inputs: int | None = None

    def _initial_alpha(self, shape: tuple[int, ...], dtype: Any = None) -> Any:
        n = shape[-1]
        off = (1.0 - self.self_weight) / (n - 1)
        matrix = np.full((n, n), off) + np.eye(n) * (self.self_weight - off)
        return keras.ops.convert_to_tensor(np.broadcast_to(matrix, shape).copy(), dtype=dtype)

    def build(self, input_shape: Sequence[Sequence[int | None]]) -> None:
        shapes = [tuple(shape) for shape in input_shape]
        if len(shapes) < 2:
            raise ValueError(f"{self.name}: a cross-stitch unit needs at least 2 inputs, got {len(shapes)}")
        if any(shape[1:] != shapes[0][1:] for shape in shapes):
            raise ValueError(f"{self.name}: all inputs must have the same shape, got {shapes}")
        self.n_inputs = len(shapes)
        n = self.n_inputs
        shape = (shapes[0][-1], n, n) if self.per_channel else (n, n)
        self.alpha = self.add_weight(name="alpha", shape=shape, initializer=self._initial_alpha, trainable=True)

    def call(self, inputs: Sequence[Any]) -> list[Any]:
        stacked = keras.ops.stack(list(inputs), axis=-1)  # (batch, ..., channels, n)
        equation = "...cj,cij->...ci" if self.per_channel else "...j,ij->...i"
        mixed = keras.ops.einsum(equation, stacked, keras.ops.cast(self.alpha, stacked.dtype))
        return [mixed[..., i] for i in range(len(inputs))]

    def compute_output_shape(self, input_shape: Sequence[Sequence[int | None]]) -> list[tuple]:
        return [tuple(shape) for shape in input_shape]

    @property
    def mixing_matrix(self) -> np.ndarray:
        """The current `alpha` as NumPy, `(n, n)` or `(channels, n, n)`."""
        return keras.ops.convert_to_numpy(self.alpha)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "self_weight": self.self_weight, "per_channel": self.per_channel}


def _chain_layers(column: keras.Model) -> list[keras.layers.Layer]:
    """The column's layers in order, checking that each consumes exactly the previous layer's output."""
    if len(column.inputs) != 1 or len(column.outputs) != 1:
        raise ValueError(
            f"column {column.name!r} must have one input and one output, got {len(column.inputs)} inputs and "
            f"{len(column.outputs)} outputs"
        )
    layers = [layer for layer in column.layers if not isinstance(layer, keras.layers.InputLayer)]
    previous = column.inputs[0]
    for layer in layers:
        try:
            consumed = layer.input
        except (AttributeError, ValueError) as error:
            raise ValueError(
                f"column {column.name!r}: layer {layer.name!r} is used more than once or has several inputs; "
                "cross-stitch columns must be plain chains of single-input layers"
            ) from error
        if consumed is not previous:
            raise ValueError(
                f"column {column.name!r}: layer {layer.name!r} does not consume the previous layer's output; "
                "cross-stitch columns must be plain chains of single-input layers (no skips or branches)"
            )
        previous = layer.output
    if previous is not column.outputs[0]:
        raise ValueError(f"column {column.name!r}: its last layer is not its output")
    return layers


def _is_nonlinearity(layer: keras.layers.Layer) -> bool:
    if isinstance(layer, _NONLINEAR_LAYERS):
        return True
    activation = layer.get_config().get("activation")
    return activation not in (None, "linear")


def default_stitch_points(column: keras.Model) -> tuple[str, ...]:
    """Names of the column's non-linearities: ReLU/activation layers and layers with a non-linear activation.

    Args:
        column: a chain Functional model (see `cross_stitch_network`).

    Returns:
        Layer names in order.
    """
    return tuple(layer.name for layer in _chain_layers(column) if _is_nonlinearity(layer))


def _clone_layer(layer: keras.layers.Layer, name: str, trainable: bool | None) -> keras.layers.Layer:
    config = {**layer.get_config(), "name": name}
    if trainable is not None:
        config["trainable"] = trainable
    return type(layer).from_config(config)


def cross_stitch_network(
    column_builder: Callable[[], keras.Model],
    n_tasks: int = 2,
    stitch_after: Sequence[str] | None = None,
    heads: Mapping[str, Callable[[Any], Any]] | Sequence[Callable[[Any], Any]] | None = None,
    self_weight: float = 0.9,
    per_channel: bool = False,
    copy_weights: bool = True,
    trainable: bool | None = None,
    name: str = "cross_stitch",
) -> keras.Model:
    """Build n task columns of the same architecture linked by cross-stitch units, with one head per column.

    The builder is called once for a template; each column is a copy of its layers renamed
    `f"{task}_{layer_name}"` (so `f"{task}_encoder_out"` is each column's Grad-CAM/truncation point). After
    every layer named in `stitch_after`, a `CrossStitch` unit named `f"cross_stitch_{layer_name}"` mixes the
    columns. Column i then feeds head i.

    Args:
        column_builder: returns a Functional `keras.Model` that is a plain chain of single-input layers
            (e.g. a truncated CDAE encoder or a `dilated_cnn` truncated at `encoder_out`), input
            `(batch, H, W, C)`.
        n_tasks: number of columns; must equal `len(heads)` when heads are given.
        stitch_after: template layer names after which to stitch; None for `default_stitch_points`.
        heads: task name -> callable mapping a column's output tensor to the task's output tensor (a
            `keras.Model`/layer, or a function creating layers), or a sequence of such callables (tasks named
            `task1`, `task2`, ...). None: the columns' outputs are the model's outputs.
        self_weight: initial diagonal of every mixing matrix (see `CrossStitch`); 1.0 = independent start.
        per_channel: one mixing matrix per channel (see `CrossStitch`).
        copy_weights: start every column from the template's weights (otherwise each column is freshly
            initialized by its layers' initializers).
        trainable: force every column layer trainable (True) or frozen (False); None keeps each template
            layer's flag.
        name: model name.

    Returns:
        A Functional model with one input (the template's) and a dict of outputs `{task: tensor}` in task
        order.

    Raises:
        ValueError: `n_tasks < 2`, heads of another length, a stitch point that is not a template layer,
            duplicate stitch points, or a template that is not a chain.
    """
    if heads is None:
        if isinstance(n_tasks, bool) or not isinstance(n_tasks, int) or n_tasks < 2:
            raise ValueError(f"n_tasks must be an integer >= 2, got {n_tasks!r}")
        head_map: dict[str, Callable[[Any], Any] | None] = {f"task{i}": None for i in range(1, n_tasks + 1)}
    else:
        head_map = dict(heads) if isinstance(heads, Mapping) else {
            f"task{i}": head for i, head in enumerate(heads, start=1)
        }
        if len(head_map) != n_tasks:
            raise ValueError(f"n_tasks={n_tasks!r} but {len(head_map)} heads were given ({list(head_map)})")
        if n_tasks < 2:
            raise ValueError(f"cross-stitch needs at least 2 tasks, got {list(head_map)}")
    template = column_builder()
    layers = _chain_layers(template)
    names = [layer.name for layer in layers]
    stitch_points = default_stitch_points(template) if stitch_after is None else tuple(stitch_after)
    unknown = [point for point in stitch_points if point not in names]
    if unknown:
        raise ValueError(f"stitch_after names {unknown} that are not layers of the column (layers: {names})")
    if len(set(stitch_points)) != len(stitch_points):
        raise ValueError(f"stitch_after has duplicates: {list(stitch_points)}")

    tasks = list(head_map)
    input_layers = [layer for layer in template.layers if isinstance(layer, keras.layers.InputLayer)]
    inputs = keras.Input(tuple(template.inputs[0].shape[1:]), name=input_layers[0].name if input_layers else "image")
    tensors = [inputs] * len(tasks)
    for layer in layers:
        clones = [_clone_layer(layer, f"{task}_{layer.name}", trainable) for task in tasks]
        tensors = [clone(tensor) for clone, tensor in zip(clones, tensors, strict=True)]
        if copy_weights:
            for clone in clones:
                clone.set_weights(layer.get_weights())
        if layer.name in stitch_points:
            unit = CrossStitch(self_weight=self_weight, per_channel=per_channel, name=f"cross_stitch_{layer.name}")
            tensors = unit(tensors)
    outputs = {}
    for task, tensor in zip(tasks, tensors, strict=True):
        head = head_map[task]
        outputs[task] = tensor if head is None else head(tensor)
    return keras.Model(inputs, outputs, name=name)


def cross_stitch_units(model: keras.Model) -> list[CrossStitch]:
    """The `CrossStitch` layers of a model, in order."""
    return [layer for layer in model.layers if isinstance(layer, CrossStitch)]


class CrossStitchAssembly:
    """A cross-stitch network with one task model per output (the soft-sharing twin of `MultiTaskModel`).

    Args:
        network: a `cross_stitch_network` model with dict outputs `{task: tensor}`.
        kinds: task -> head kind ("classification", "segmentation", ...).
        settings: how it was built (stitch points, initialization), kept for results.

    Attributes:
        task_models: task -> `keras.Model(network.input, network.output[task])`; the models share every layer
            (both columns and all cross-stitch units), so each task's prediction uses every column.
    """

    def __init__(self, network: keras.Model, kinds: Mapping[str, str] | None = None,
                 settings: Mapping[str, Any] | None = None) -> None:
        if not isinstance(network.output, dict):
            raise ValueError(f"network {network.name!r} must have dict outputs {{task: tensor}}")
        self.network = network
        self.task_models = {
            task: keras.Model(network.input, tensor, name=f"{network.name}_{task}")
            for task, tensor in network.output.items()
        }
        self.kinds = dict(kinds or {})
        self.settings = dict(settings or {})

    @property
    def task_names(self) -> list[str]:
        """Task names in output order."""
        return list(self.task_models)

    def task_model(self, name: str) -> keras.Model:
        """The task model of `name` (as `MultiTaskModel.task_model`).

        Raises:
            KeyError: unknown task, listing the known ones.
        """
        if name not in self.task_models:
            raise KeyError(f"no task {name!r} in cross-stitch network {self.network.name!r} "
                           f"(tasks: {self.task_names})")
        return self.task_models[name]

    def kind(self, name: str) -> str:
        """The head kind of task `name` ("custom" when unknown)."""
        self.task_model(name)
        return self.kinds.get(name, "custom")

    @property
    def units(self) -> list[CrossStitch]:
        """The cross-stitch units, in order."""
        return cross_stitch_units(self.network)

    def mixing_matrices(self) -> dict[str, list]:
        """Unit name -> its current mixing matrix as nested lists (JSON-ready)."""
        return {unit.name: unit.mixing_matrix.tolist() for unit in self.units}


def _head_copy(assembly: Any, task: str) -> keras.Model:
    """A copy (new layers, same weights, all trainable) of one head of a `MultiTaskModel`."""
    encoder = assembly.encoder
    task_model = assembly.task_models[task]
    head = keras.Model(encoder.output, task_model.output, name=f"{task}_head")
    copy = keras.models.clone_model(head)
    copy.set_weights(head.get_weights())
    for layer in copy.layers:
        layer.trainable = True
    return copy


def cross_stitch_from_assembly(
    assembly: Any,
    tasks: Sequence[str] | None = None,
    stitch_after: Sequence[str] | None = None,
    self_weight: float = 0.9,
    per_channel: bool = False,
    name: str = "cross_stitch",
) -> CrossStitchAssembly:
    """The soft-sharing counterpart of a hard-sharing `MultiTaskModel`: same encoder, same heads, two+ columns.

    Every column is a copy of the shared encoder with its current weights (the UMS-Rep representation) and
    every head a copy of the assembly's head with its weights, so cross-stitch starts where the hard-sharing
    strategies start; the assembly itself is not changed. All copied layers are trainable.

    Args:
        assembly: a `urep.models.MultiTaskModel` (anything with `encoder`, `task_models` and `kinds`).
        tasks: the tasks to keep, in column order (default: all, in the assembly's order); at least 2.
        stitch_after: encoder layer names after which to stitch (default: every non-linearity).
        self_weight: initial diagonal of the mixing matrices.
        per_channel: one mixing matrix per channel.
        name: network name.

    Returns:
        A `CrossStitchAssembly`.

    Raises:
        KeyError: a task that the assembly does not have.
        ValueError: fewer than 2 tasks, or an encoder that is not a chain of layers.
    """
    names = list(assembly.task_models) if tasks is None else list(tasks)
    unknown = [task for task in names if task not in assembly.task_models]
    if unknown:
        raise KeyError(f"tasks {unknown} are not heads of the assembly (heads: {list(assembly.task_models)})")
    heads = {task: _head_copy(assembly, task) for task in names}
    network = cross_stitch_network(
        lambda: assembly.encoder, n_tasks=len(names), stitch_after=stitch_after, heads=heads,
        self_weight=self_weight, per_channel=per_channel, copy_weights=True, trainable=True, name=name,
    )
    kinds = getattr(assembly, "kinds", {})
    settings = {
        "column_layers": [layer.name for layer in _chain_layers(assembly.encoder)],
        "stitch_after": [unit.name.removeprefix("cross_stitch_") for unit in cross_stitch_units(network)],
        "self_weight": self_weight, "per_channel": per_channel,
    }
    return CrossStitchAssembly(network, {task: kinds.get(task, "custom") for task in names}, settings)
