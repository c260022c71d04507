"""MultiMix training settings: the paper's ablations (``VARIANTS``) and ``MultiMixConfig``.

Defaults are Haque et al.'s (ISBI 2021, section 3.1) unless a field's docstring marks them as chosen; invalid
values raise ``ValueError`` naming the field. See docs/multimix.md for the choices where the paper is silent.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Annotated, Literal

from urep.constraints import Rule, check_fields
from urep.losses import KL_MODES
from urep.training.config import _check

SELECTIONS = ("balanced", "loss")


@dataclass(frozen=True)
class Variant:
    """Which parts of MultiMix an ablation uses.

    Attributes:
        segmentation: train the decoder on labelled masks (Dice).
        classification: train the classification branch on labels (CE).
        ssl: FixMatch term on unlabelled classification images (weak -> pseudo-label, strong -> CE).
        saliency: the saliency bridge feeds the decoder.
        kl: KL consistency between labelled and unlabelled segmentation predictions.
    """

    segmentation: bool
    classification: bool
    ssl: bool = False
    saliency: bool = False
    kl: bool = False


VARIANTS: dict[str, Variant] = {
    "unet": Variant(segmentation=True, classification=False),
    "encoder": Variant(segmentation=False, classification=True),
    "umtl": Variant(segmentation=True, classification=True),
    "encssl": Variant(segmentation=False, classification=True, ssl=True),
    "umtls": Variant(segmentation=True, classification=True, saliency=True),
    "umtls_ssl": Variant(segmentation=True, classification=True, ssl=True, saliency=True),
    "multimix": Variant(segmentation=True, classification=True, ssl=True, saliency=True, kl=True),
}
"""The paper's models (Table 2): U-Net (segmentation only), Enc (encoder + classification branch only),
UMTL (joint, no SSL, no saliency), EncSSL (classification with FixMatch), UMTLS (joint + saliency bridge),
UMTLS-SSL (+ FixMatch), MultiMix (+ KL consistency on unlabelled segmentation images). All share the same
backbone; the variants without the bridge build the network without it (``saliency_bridge=False``)."""


AT_LEAST_0 = Rule(min=0)
AT_LEAST_1 = Rule(min=1)


def _known_variant(value: str) -> str | None:
    return None if value in VARIANTS else f"must be one of {sorted(VARIANTS)}, got {value!r}"


def _selection_weights(value) -> str | None:
    weights = tuple(value)
    ok = (len(weights) == 2 and all(isinstance(w, (int, float)) and not isinstance(w, bool) and w >= 0
                                    for w in weights) and sum(weights) > 0)
    return None if ok else f"must be two numbers >= 0, not both 0, got {value!r}"


@dataclass
class MultiMixConfig:
    """MultiMix training settings; defaults are the paper's (section 3.1) unless marked as chosen.

    Attributes:
        variant: one of ``VARIANTS`` (the ablations); "multimix" is the full method.
        epochs: the paper does not say; 32 chosen (the public code runs 100, but with x0.1 every 8 epochs the
            learning rate is 1e-8 after epoch 32 and the remaining epochs barely move the weights).
        batch_size: 10, for each of the five batches of a step.
        learning_rate: Adam, 1e-4.
        lr_decay_factor: 0.1, applied every ``lr_decay_epochs``.
        lr_decay_epochs: 8.
        threshold: pseudo-label confidence threshold t = 0.7.
        ssl_weight: λ = 0.25, weight of the FixMatch term.
        dice_weight: α = 5.0, weight of the labelled Dice loss.
        kl_weight: β = 0.01, weight of the KL consistency term.
        kl_mode: "pixelwise" (default: the paper's eq. 2, KL between the i-th labelled and the i-th unlabelled
            prediction, pixel by pixel) or "batch_mean" (each batch averaged into one map first; an option).
        steps_per_epoch: steps per epoch; None = one pass over the largest training stream used by the variant
            (``len // batch_size``, at least 1), like the public code's pass over the unlabelled images.
        strong_ops: number of RandAugment operations per strong view (2).
        pad_fraction: flip/shift padding of weak and strong views as a fraction of the size (0.125 = 32 px at
            256).
        selection: how the best epoch is picked (the paper is silent): "balanced" (default) maximises
            ``w_seg · Dice + w_cls · (balanced accuracy + AUC) / 2``; "loss" minimises the validation loss
            ``CE + dice_weight · Dice loss``. Never plain accuracy, which a constant classifier maximises on an
            imbalanced set.
        selection_weights: (Dice weight, classification weight) of the "balanced" score (chosen: equal).
        restore_best: put back the best epoch's weights at the end.
        seed: seeds data order and augmentation (weights are seeded by the caller, `urep.seed_everything`).
        jit_compile: XLA for the step (off by default: the nested saliency tape is not worth the risk).
        eval_batch_size: batch size for validation predictions.
    """

    variant: Annotated[str, Rule(check=_known_variant)] = "multimix"
    epochs: Annotated[int, AT_LEAST_1] = 32
    batch_size: Annotated[int, AT_LEAST_1] = 10
    learning_rate: Annotated[float, Rule(gt=0)] = 1e-4
    lr_decay_factor: Annotated[float, Rule(gt=0, max=1)] = 0.1
    lr_decay_epochs: Annotated[int, AT_LEAST_1] = 8
    threshold: Annotated[float, Rule(min=0, max=1)] = 0.7
    ssl_weight: Annotated[float, AT_LEAST_0] = 0.25
    dice_weight: Annotated[float, AT_LEAST_0] = 5.0
    kl_weight: Annotated[float, AT_LEAST_0] = 0.01
    kl_mode: Literal["pixelwise", "batch_mean"] = "pixelwise"
    steps_per_epoch: Annotated[int | None, AT_LEAST_1] = None
    strong_ops: Annotated[int, AT_LEAST_0] = 2
    pad_fraction: Annotated[float, Rule(min=0, lt=1)] = 0.125
    selection: Literal["balanced", "loss"] = "balanced"
    selection_weights: Annotated[tuple[float, float], Rule(check=_selection_weights)] = (1.0, 1.0)
    restore_best: bool = True
    seed: Annotated[int, AT_LEAST_0] = 0
    jit_compile: bool = False
    eval_batch_size: Annotated[int, AT_LEAST_1] = 16

    def __post_init__(self) -> None:
        check_fields(self)
        self.selection_weights = (float(self.selection_weights[0]), float(self.selection_weights[1]))

    @property
    def parts(self) -> Variant:
        """The ``Variant`` named by ``variant``."""
        return VARIANTS[self.variant]

    def learning_rate_at(self, epoch: int) -> float:
        """Step schedule: ``learning_rate * lr_decay_factor ** (epoch // lr_decay_epochs)`` (epoch from 0)."""
        return self.learning_rate * self.lr_decay_factor ** (epoch // self.lr_decay_epochs)

    def to_dict(self) -> dict:
        """Plain-dict form (for YAML/JSON records)."""
        record = dataclasses.asdict(self)
        record["selection_weights"] = list(self.selection_weights)
        return record

    @classmethod
    def from_dict(cls, data: dict | MultiMixConfig) -> MultiMixConfig:
        """Build from a dict (unknown keys rejected) or return a ``MultiMixConfig`` as is.

        Raises:
            ValueError: unknown keys or invalid values.
        """
        if isinstance(data, MultiMixConfig):
            return data
        _check(isinstance(data, dict), f"multimix config must be a dict, got {data!r}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        _check(not unknown, f"unknown multimix config keys {unknown}; expected some of {sorted(known)}")
        return cls(**data)

# The field types spell the enumerations; keep them in step with the tuples other modules read.
assert typing.get_args(typing.get_type_hints(MultiMixConfig)["kl_mode"]) == KL_MODES
assert typing.get_args(typing.get_type_hints(MultiMixConfig)["selection"]) == SELECTIONS
