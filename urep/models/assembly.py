"""The multi-task assembly: one shared encoder (UMS-Rep) and any number of named task heads.

Every task model shares the encoder's layers and variables; a head can be added at any time with one call
(journal, section 3.2). `fused_model()` gathers all heads in one inference model (the encoder runs once per
batch). `freeze_shared()` makes the encoder untrainable, batch-normalization statistics included; heads stay
trainable. Notes: docs/design.md, "Module notes".
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras

from urep.io import atomic_save, atomic_write_json
from urep.models.decoders import DEFAULT_DILATION_RATES, DEFAULT_FILTERS
from urep.models.heads import (
    check_head_name,
    classification_head,
    reconstruction_head_from_autoencoder,
    segmentation_head_from_autoencoder,
    segmentation_head_from_encoder,
)
from urep.models.inspection import parameter_counts
from urep.models.truncation import ENCODER_OUT, truncate

logger = logging.getLogger(__name__)

#: Version tag written into the manifest of a saved assembly.
MANIFEST_FORMAT = "urep.multitask/1"
FUSED_FILE = "fused.keras"
MANIFEST_FILE = "manifest.json"

HeadBuilder = Callable[[keras.Model, str], keras.Model]


@dataclass
class _Head:
    model: keras.Model
    kind: str
    config: dict[str, Any] = field(default_factory=dict)


class MultiTaskModel:
    """One shared encoder and named task heads built on it.

    Args:
        encoder: the shared encoder, a single-input model with one 4-D output, e.g.
            `truncate(trained_source, "encoder_out")`. Its layers are used as they are (not copied).
        name: name of the assembly (and of its fused model, `"{name}_fused"`).

    Raises:
        ValueError: an encoder with several inputs or outputs.
    """

    def __init__(self, encoder: keras.Model, name: str = "multitask") -> None:
        if not isinstance(encoder, keras.Model):
            raise TypeError(f"encoder must be a keras.Model, got {type(encoder).__name__}")
        if len(encoder.inputs) != 1 or len(encoder.outputs) != 1:
            raise ValueError(
                f"encoder {encoder.name!r} must have one input and one output, got "
                f"{len(encoder.inputs)} and {len(encoder.outputs)}"
            )
        self.name = check_head_name(name)
        self._encoder = encoder
        self._heads: dict[str, _Head] = {}

    # ----------------------------------------------------------------------------------------- heads
    def add_head(
        self, name: str, build_fn: HeadBuilder, kind: str = "custom", config: dict[str, Any] | None = None
    ) -> keras.Model:
        """Add a head built by `build_fn(encoder, name)`, which must build on `encoder.output`.

        Args:
            name: task name (an identifier; prefixes the head's layer names).
            build_fn: called with the shared encoder and `name`; returns a model from `encoder.input` to
                the head's output that contains the encoder's layers (not copies).
            kind: "classification", "segmentation", "reconstruction" or any other label (saved).
            config: JSON-serialisable facts about the head, kept in the saved manifest.

        Returns:
            The task model.

        Raises:
            ValueError: a duplicate or invalid name, layer names that clash with the existing graph, or a
                model that does not share the encoder's layers.
        """
        check_head_name(name)
        if name in self._heads:
            raise ValueError(f"assembly {self.name!r} already has a head named {name!r}")
        model = build_fn(self._encoder, name)
        self._check_head(name, model)
        self._heads[name] = _Head(model=model, kind=str(kind), config=dict(config or {}))
        logger.debug("added %s head %r (%d parameters)", kind, name, model.count_params())
        return model

    def add_classification_head(
        self, name: str, n_classes: int, dense_units: int = 256, dropout: float = 0.5
    ) -> keras.Model:
        """Add `classification_head(encoder, n_classes, dense_units, dropout, name=name)`."""
        return self.add_head(
            name,
            lambda encoder, head: classification_head(encoder, n_classes, dense_units, dropout, name=head),
            kind="classification",
            config={"n_classes": n_classes, "dense_units": dense_units, "dropout": dropout},
        )

    def add_segmentation_head(
        self,
        name: str,
        autoencoder: keras.Model | None = None,
        decoder_filters: Sequence[int] = DEFAULT_FILTERS,
        kernel_size: int = 3,
        dilation_rates: Sequence[int] | None = DEFAULT_DILATION_RATES,
        upsample_levels: int | None = None,
        encoder_layer: str = ENCODER_OUT,
        context_dilations: Sequence[int] | None = None,
        context_width: int | None = None,
    ) -> keras.Model:
        """Add a segmentation head.

        Args:
            name: task name.
            autoencoder: when given, the head is `segmentation_head_from_autoencoder(autoencoder,
                encoder=shared encoder)` (U-Rep 1: the CDAE's decoder copied with its weights, final
                convolution replaced); otherwise `segmentation_head_from_encoder` (U-Rep 2 decoder).
            decoder_filters, kernel_size, dilation_rates, upsample_levels: for the decoder built from the
                encoder (ignored with `autoencoder`).
            encoder_layer: the autoencoder's last encoder layer (with `autoencoder`).
            context_dilations: residual dilated context blocks between the encoder and the copied
                decoder (with `autoencoder`; a variant not in the papers, `segmentation_head_from_autoencoder`).
            context_width: the blocks' convolution filters (default: the encoder output's width).

        Returns:
            The task model, a sigmoid mask `(batch, H, W, 1)`.
        """
        if autoencoder is not None:
            return self.add_head(
                name,
                lambda encoder, head: segmentation_head_from_autoencoder(
                    autoencoder, encoder=encoder, encoder_layer=encoder_layer,
                    context_dilations=context_dilations, context_width=context_width, name=head
                ),
                kind="segmentation",
                config={"source": "autoencoder", "autoencoder": autoencoder.name,
                        "context_dilations": None if context_dilations is None else list(context_dilations),
                        "context_width": context_width},
            )
        return self.add_head(
            name,
            lambda encoder, head: segmentation_head_from_encoder(
                encoder, decoder_filters, kernel_size, dilation_rates, upsample_levels, name=head
            ),
            kind="segmentation",
            config={"source": "encoder", "decoder_filters": list(decoder_filters)},
        )

    def add_reconstruction_head(
        self, name: str, autoencoder: keras.Model, encoder_layer: str = ENCODER_OUT
    ) -> keras.Model:
        """Add the autoencoder's own decoder (weights inherited) as the denoising/reconstruction task."""
        return self.add_head(
            name,
            lambda encoder, head: reconstruction_head_from_autoencoder(
                autoencoder, encoder=encoder, encoder_layer=encoder_layer, name=head
            ),
            kind="reconstruction",
            config={"autoencoder": autoencoder.name},
        )

    # ------------------------------------------------------------------------------------ properties
    @property
    def encoder(self) -> keras.Model:
        """The shared encoder."""
        return self._encoder

    @property
    def task_names(self) -> list[str]:
        """Task names in the order the heads were added."""
        return list(self._heads)

    @property
    def task_models(self) -> dict[str, keras.Model]:
        """Task name -> task model (encoder input to head output; encoder layers shared)."""
        return {name: head.model for name, head in self._heads.items()}

    @property
    def kinds(self) -> dict[str, str]:
        """Task name -> head kind ("classification", "segmentation", "reconstruction", ...)."""
        return {name: head.kind for name, head in self._heads.items()}

    def task_model(self, name: str) -> keras.Model:
        """The task model of head `name` (KeyError listing the heads if unknown)."""
        return self._head(name).model

    def kind(self, name: str) -> str:
        """The kind of head `name`."""
        return self._head(name).kind

    @property
    def shared_variables(self) -> list[keras.Variable]:
        """All variables of the shared encoder (trainable and batch-norm statistics)."""
        return list(self._encoder.weights)

    @property
    def shared_trainable_variables(self) -> list[keras.Variable]:
        """The encoder's trainable variables (empty while frozen)."""
        return list(self._encoder.trainable_weights)

    def head_variables(self, name: str, trainable_only: bool = False) -> list[keras.Variable]:
        """Variables of head `name` that are not the encoder's.

        Args:
            name: task name.
            trainable_only: return only trainable variables.
        """
        model = self._head(name).model
        shared = {id(v) for v in self._encoder.weights}
        variables = model.trainable_weights if trainable_only else model.weights
        return [v for v in variables if id(v) not in shared]

    # -------------------------------------------------------------------------------------- freezing
    def freeze_shared(self) -> None:
        """Make every encoder layer non-trainable (batch norm then also runs in inference mode)."""
        self._set_shared_trainable(False)

    def unfreeze_shared(self) -> None:
        """Make every encoder layer trainable again."""
        self._set_shared_trainable(True)

    @property
    def shared_frozen(self) -> bool:
        """True when no encoder layer with weights is trainable."""
        return not any(layer.trainable for layer in self._encoder.layers if layer.weights)

    # ------------------------------------------------------------------------------------- inference
    def fused_model(self) -> keras.Model:
        """One model whose outputs are all heads, as a dict keyed by task name, from ONE encoder pass.

        Returns:
            A Functional `keras.Model` from the encoder's input to `{task: output}`; its layers are the
            assembly's layers (weights shared with the task models).

        Raises:
            ValueError: the assembly has no head.
        """
        if not self._heads:
            raise ValueError(f"assembly {self.name!r} has no head; add one before fusing")
        outputs = {name: head.model.outputs[0] for name, head in self._heads.items()}
        return keras.Model(self._encoder.input, outputs, name=f"{self.name}_fused")

    def summary_table(self) -> list[tuple[str, int, int]]:
        """Rows `(name, trainable, total)` parameters: first `"<encoder>"`, then each full task model."""
        rows = [("<encoder>", *parameter_counts(self._encoder))]
        rows += [(name, *parameter_counts(head.model)) for name, head in self._heads.items()]
        return rows

    # ----------------------------------------------------------------------------------- persistence
    def save(self, directory: str | Path) -> Path:
        """Write `fused.keras` (every layer and weight) and `manifest.json` (heads, kinds, configs).

        Args:
            directory: folder to write into (created if needed; both files replaced atomically).

        Returns:
            The folder.
        """
        directory = Path(directory)
        fused = self.fused_model()
        atomic_save(directory / FUSED_FILE, fused.save)
        manifest = {
            "format": MANIFEST_FORMAT,
            "name": self.name,
            "encoder_output_layer": _output_layer_name(self._encoder),
            "encoder_name": self._encoder.name,
            "shared_frozen": self.shared_frozen,
            "heads": {
                name: {
                    "kind": head.kind,
                    "output_layer": _output_layer_name(head.model),
                    "config": head.config,
                }
                for name, head in self._heads.items()
            },
        }
        atomic_write_json(directory / MANIFEST_FILE, manifest)
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> MultiTaskModel:
        """Rebuild an assembly written by `save`: task models share the reloaded encoder's layers.

        Raises:
            FileNotFoundError: a missing `fused.keras` or `manifest.json`.
            ValueError: a manifest of another format, or naming layers absent from the model.
        """
        directory = Path(directory)
        manifest_path = directory / MANIFEST_FILE
        model_path = directory / FUSED_FILE
        for path in (manifest_path, model_path):
            if not path.is_file():
                raise FileNotFoundError(
                    f"{path} is missing; expected a folder written by MultiTaskModel.save"
                )
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        if manifest.get("format") != MANIFEST_FORMAT:
            raise ValueError(
                f"{manifest_path}: format {manifest.get('format')!r}, expected {MANIFEST_FORMAT!r}"
            )
        fused = keras.saving.load_model(model_path, compile=False)
        encoder = truncate(fused, manifest["encoder_output_layer"], name=manifest.get("encoder_name"))
        assembly = cls(encoder, name=manifest["name"])
        for task, entry in manifest["heads"].items():
            output = truncate(fused, entry["output_layer"], name=task)
            assembly.add_head(task, lambda _encoder, _name, m=output: m, entry["kind"], entry.get("config"))
        return assembly

    # -------------------------------------------------------------------------------------- helpers
    def _head(self, name: str) -> _Head:
        if name not in self._heads:
            raise KeyError(f"assembly {self.name!r} has no head {name!r}; heads: {', '.join(self._heads)}")
        return self._heads[name]

    def _set_shared_trainable(self, trainable: bool) -> None:
        for layer in self._encoder.layers:
            layer.trainable = trainable

    def _check_head(self, name: str, model: keras.Model) -> None:
        if not isinstance(model, keras.Model) or len(model.outputs) != 1:
            raise ValueError(f"head {name!r}: build_fn must return a keras.Model with one output")
        if model.inputs[0] is not self._encoder.inputs[0]:
            raise ValueError(f"head {name!r}: the task model must take the shared encoder's input")
        head_layers = {id(layer) for layer in model.layers}
        missing = [layer.name for layer in self._encoder.layers if id(layer) not in head_layers]
        if missing:
            raise ValueError(
                f"head {name!r} does not share the encoder's layers (missing: {', '.join(missing)}); build it "
                "on encoder.output"
            )
        taken = {layer.name: id(layer) for head in self._heads.values() for layer in head.model.layers}
        clashes = [layer.name for layer in model.layers if taken.get(layer.name, id(layer)) != id(layer)]
        if clashes:
            raise ValueError(
                f"head {name!r} reuses layer names already in the assembly: {', '.join(clashes)}; prefix "
                "its layers with the head name"
            )


def _output_layer_name(model: keras.Model) -> str:
    """Name of the layer that produces `model`'s (single) output."""
    output = model.outputs[0]
    for layer in reversed(model.layers):
        try:
            if layer.output is output:
                return layer.name
        except (AttributeError, ValueError):
            continue
    raise ValueError(f"cannot find the layer producing the output of {model.name!r}")
