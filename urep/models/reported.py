"""The parameter counts the papers report, next to the counts of the models built here.

Journal Tables 4, 6, 8 and 10 ("training parameters"); urep's counts are `count_params()` (batch-normalization
statistics included). U-Rep 2, every segmentation model and the baseline classifier match exactly; the CDAE's
widths are unpublished and the classification heads' 295,715 could not be reproduced (the searches: docs/design.md,
"Parameter counts against the papers").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import keras

from urep.models.baselines import PAPER_PARAMS as BASELINE_CLASSIFIER_PAPER_PARAMS
from urep.models.baselines import baseline_classifier
from urep.models.cdae import PAPER_PARAMS as CDAE_PAPER_PARAMS
from urep.models.cdae import cdae
from urep.models.decoders import PAPER_PARAMS as SEGMENTATION_PAPER_PARAMS
from urep.models.dilated_cnn import PAPER_PARAMS as DILATED_CNN_PAPER_PARAMS
from urep.models.dilated_cnn import dilated_cnn
from urep.models.heads import (
    classification_head,
    segmentation_head_from_autoencoder,
    segmentation_head_from_encoder,
)
from urep.models.inspection import parameter_counts
from urep.models.super_resolution import super_resolution
from urep.models.truncation import truncate

#: Journal Tables 4, 6, 8 and 10: every classification head.
CLASSIFICATION_HEAD_PAPER_PARAMS = 295_715


@dataclass(frozen=True)
class ParameterRow:
    """One model: its parameters here, the head-only part, and the paper's number (None if none)."""

    model: str
    source: str
    total: int
    trainable: int
    head_only: int | None
    paper: int | None

    @property
    def difference(self) -> int | None:
        """`total - paper`, or None without a paper number."""
        return None if self.paper is None else self.total - self.paper


def parameter_report(size: int = 256) -> list[ParameterRow]:
    """Build every model of the papers at `size` x `size` and compare its parameter count with the paper's.

    Parameter counts do not depend on the image size; a small `size` only builds faster.

    Args:
        size: image height and width, a positive multiple of 16 (the CDAE halves it four times).

    Returns:
        One `ParameterRow` per model.

    Raises:
        ValueError: a size that is not a positive multiple of 16.
    """
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0 or size % 16:
        raise ValueError(f"size must be a positive multiple of 16, got {size!r}")
    cxr = cdae((size, size, 1))
    cxr_encoder = truncate(cxr)
    doppler = dilated_cnn((size, size, 3))
    doppler_encoder = truncate(doppler)
    doppler_gray_encoder = truncate(dilated_cnn((size, size, 1)))
    rows = [
        _row("cdae", "U-Rep 1 source (journal Table 4)", cxr, None, CDAE_PAPER_PARAMS),
        _row("dilated_cnn", "U-Rep 2 source (Tables 8, 10)", doppler, None, DILATED_CNN_PAPER_PARAMS),
        _row(
            "segmentation_head_from_encoder",
            "U-Rep 2 encoder (1 channel) + decoder (Tables 4, 8)",
            segmentation_head_from_encoder(doppler_gray_encoder),
            doppler_gray_encoder,
            SEGMENTATION_PAPER_PARAMS,
        ),
        _row(
            "segmentation_head_from_autoencoder",
            "U-Rep 1 with a mask output (Table 4)",
            segmentation_head_from_autoencoder(cxr),
            cxr_encoder,
            SEGMENTATION_PAPER_PARAMS,
        ),
        _row(
            "classification_head",
            "on U-Rep 2, 3 classes (Tables 8, 10; not matched)",
            classification_head(doppler_encoder, 3),
            doppler_encoder,
            CLASSIFICATION_HEAD_PAPER_PARAMS,
        ),
        _row(
            "classification_head",
            "on U-Rep 1, 2 classes (Tables 4, 6; not matched)",
            classification_head(cxr_encoder, 2),
            cxr_encoder,
            CLASSIFICATION_HEAD_PAPER_PARAMS,
        ),
        _row(
            "baseline_classifier",
            "separate classifier (Tables 4, 6, 8, 10)",
            baseline_classifier((size, size, 1)),
            None,
            BASELINE_CLASSIFIER_PAPER_PARAMS,
        ),
        _row(
            "super_resolution",
            "residual x2 SR (preprint; no count given)",
            super_resolution((size // 2, size // 2, 1)),
            None,
            None,
        ),
    ]
    return rows


def _row(
    model_name: str, source: str, model: keras.Model, encoder: keras.Model | None, paper: int | None
) -> ParameterRow:
    trainable, total = parameter_counts(model)
    head_only = None
    if encoder is not None:
        shared = {id(v) for v in encoder.weights}
        head_only = sum(math.prod(v.shape) for v in model.weights if id(v) not in shared)
    return ParameterRow(model_name, source, total, trainable, head_only, paper)
