"""MultiMix training (Haque et al., ISBI 2021): semi-supervised joint classification and segmentation.

``config`` (``VARIANTS``, ``MultiMixConfig``), ``data`` (``MultiMixData``, the per-step batch stream), ``step``
(network per variant, training step, prediction, test scores) and ``train`` (``train_multimix``, the "multimix"
strategy). The loss terms live in ``urep.losses``, label budgets in ``urep.data.splits`` and the scores in
``urep.metrics``; they are re-exported here. Design, deviations from the paper: docs/multimix.md.
"""

from urep.data.splits import label_budget
from urep.losses import KL_MODES, fixmatch_loss, segmentation_kl
from urep.metrics import balanced_scores, classification_scores, segmentation_scores
from urep.training.multimix.config import SELECTIONS, VARIANTS, MultiMixConfig, Variant
from urep.training.multimix.data import MultiMixData, data_from_tasks, steps_per_epoch, training_dataset
from urep.training.multimix.step import (
    evaluate_multimix,
    make_train_step,
    multimix_for_variant,
    predict_multimix,
    train_step_body,
)
from urep.training.multimix.train import (
    MultiMixResult,
    compute_dtype,
    multimix_optimizer,
    multimix_strategy,
    train_multimix,
)

__all__ = [
    "KL_MODES",
    "SELECTIONS",
    "VARIANTS",
    "MultiMixConfig",
    "MultiMixData",
    "MultiMixResult",
    "Variant",
    "balanced_scores",
    "classification_scores",
    "compute_dtype",
    "data_from_tasks",
    "evaluate_multimix",
    "fixmatch_loss",
    "label_budget",
    "make_train_step",
    "multimix_for_variant",
    "multimix_optimizer",
    "multimix_strategy",
    "predict_multimix",
    "segmentation_kl",
    "segmentation_scores",
    "steps_per_epoch",
    "train_multimix",
    "train_step_body",
    "training_dataset",
]
