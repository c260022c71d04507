"""MultiMix training: semi-supervised joint classification and segmentation (Haque et al., ISBI 2021).

One step draws five batches: labelled segmentation images + masks, unlabelled segmentation images, labelled
classification images (weakly augmented) + labels, and weak/strong views of the *same* unlabelled
classification images (``urep.data.augment.weak_strong_pairs``: one map call makes both views). The loss is

```
L = CE(labelled cls) + λ · mean_i( CE(strong_i, argmax weak_i) · [max softmax(weak_i) >= t] )      (paper eq. 1)
  + α · Dice(labelled seg) + β · KL(labelled seg predictions ‖ unlabelled seg predictions)             (paper eq. 2)
```

with the paper's defaults (section 3.1) Adam 1e-4, x0.1 every 8 epochs, batch 10, t = 0.7, λ = 0.25, α = 5, β = 0.01.
The saliency bridge input of the segmentation batches is computed inside the step by ``MultiMix.saliency``
(an inner ``GradientTape`` in inference mode; a constant for the outer tape).

Fixes of the public PyTorch code's defects (see docs/multimix.md for these and every deviation from the paper):

- **KL that carries signal.** The public code applies ``softmax`` over the single output channel, which is 1
  everywhere, so its KL is identically 0. Here each pixel's sigmoid output ``p`` is a 2-class (background,
  foreground) distribution ``(1 - p, p)``. The default ``kl_mode="pixelwise"`` is the paper's eq. 2: the
  i-th labelled and the i-th unlabelled prediction are compared pixel by pixel (what the public code would
  have computed with two channels). ``kl_mode="batch_mean"`` (an option) first averages each batch into one
  per-pixel foreground map. Gradients flow into both sides, as in the public code.
- **Validation that validates.** After every epoch the model predicts the validation sets (with the saliency
  bridge, as at test time); the best epoch maximises Dice and (balanced accuracy + AUC) / 2 (or minimises
  the validation loss, ``selection="loss"``), never plain accuracy, and its weights are kept and restored.
- **One normalization.** The model normalizes its own input (``input_normalization`` layer), so training,
  validation and test images cannot be normalized differently.
- **Strong-view padding** 32 px at 256 (0.125 of the size), not 4 px (see ``urep.data.augment``).

Ablations (the paper's Table 2) are ``MultiMixConfig.variant`` values, see ``VARIANTS``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from urep.data.augment import STRONG_OPS, weak_strong_pairs, weakly_augmented
from urep.io import atomic_save, atomic_write_json
from urep.losses import dice_loss
from urep.metrics import classification_metrics, reconstruction_metrics, segmentation_metrics
from urep.models.multimix import MultiMix, multimix
from urep.training.config import _check, _is_int, _is_number
from urep.training.loop import TrainResult, epoch_dataset

logger = logging.getLogger(__name__)

KL_MODES = ("pixelwise", "batch_mean")
SELECTIONS = ("balanced", "loss")
SEGMENTATION_BUDGETS = (10, 50, "all")
"""Labelled segmentation images per run in the paper (section 3.1)."""
CLASSIFICATION_BUDGETS = (100, 1000, "all")
"""Labelled classification images per run in the paper (section 3.1)."""


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

    variant: str = "multimix"
    epochs: int = 32
    batch_size: int = 10
    learning_rate: float = 1e-4
    lr_decay_factor: float = 0.1
    lr_decay_epochs: int = 8
    threshold: float = 0.7
    ssl_weight: float = 0.25
    dice_weight: float = 5.0
    kl_weight: float = 0.01
    kl_mode: str = "pixelwise"
    steps_per_epoch: int | None = None
    strong_ops: int = 2
    pad_fraction: float = 0.125
    selection: str = "balanced"
    selection_weights: tuple[float, float] = (1.0, 1.0)
    restore_best: bool = True
    seed: int = 0
    jit_compile: bool = False
    eval_batch_size: int = 16

    def __post_init__(self) -> None:
        _check(self.variant in VARIANTS, f"variant must be one of {sorted(VARIANTS)}, got {self.variant!r}")
        for key in ("epochs", "batch_size", "lr_decay_epochs", "eval_batch_size"):
            value = getattr(self, key)
            _check(_is_int(value) and value >= 1, f"{key} must be an integer >= 1, got {value!r}")
        _check(self.steps_per_epoch is None or (_is_int(self.steps_per_epoch) and self.steps_per_epoch >= 1),
               f"steps_per_epoch must be None or an integer >= 1, got {self.steps_per_epoch!r}")
        _check(_is_number(self.learning_rate) and self.learning_rate > 0,
               f"learning_rate must be a positive number, got {self.learning_rate!r}")
        _check(_is_number(self.lr_decay_factor) and 0 < self.lr_decay_factor <= 1,
               f"lr_decay_factor must be in (0, 1], got {self.lr_decay_factor!r}")
        _check(_is_number(self.threshold) and 0 <= self.threshold <= 1,
               f"threshold must be in [0, 1], got {self.threshold!r}")
        for key in ("ssl_weight", "dice_weight", "kl_weight"):
            value = getattr(self, key)
            _check(_is_number(value) and value >= 0, f"{key} must be a number >= 0, got {value!r}")
        _check(self.kl_mode in KL_MODES, f"kl_mode must be one of {KL_MODES}, got {self.kl_mode!r}")
        _check(self.selection in SELECTIONS, f"selection must be one of {SELECTIONS}, got {self.selection!r}")
        _check(_is_int(self.strong_ops) and self.strong_ops >= 0,
               f"strong_ops must be an integer >= 0, got {self.strong_ops!r}")
        _check(_is_number(self.pad_fraction) and 0 <= self.pad_fraction < 1,
               f"pad_fraction must be in [0, 1), got {self.pad_fraction!r}")
        weights = tuple(self.selection_weights)
        _check(len(weights) == 2 and all(_is_number(w) and w >= 0 for w in weights) and sum(weights) > 0,
               f"selection_weights must be two numbers >= 0, not both 0, got {self.selection_weights!r}")
        self.selection_weights = (float(weights[0]), float(weights[1]))
        _check(_is_int(self.seed) and self.seed >= 0, f"seed must be an integer >= 0, got {self.seed!r}")

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


def _images(array: Any, name: str) -> np.ndarray | None:
    if array is None:
        return None
    images = np.asarray(array, dtype=np.float32)
    if images.ndim == 3:
        images = images[..., np.newaxis]
    _check(images.ndim == 4, f"{name} must be (N, H, W) or (N, H, W, C), got shape {images.shape}")
    _check(len(images) > 0, f"{name} is empty")
    _check(bool(np.all(np.isfinite(images))), f"{name} contains NaN or infinite values")
    low, high = float(images.min()), float(images.max())
    _check(low >= 0.0 and high <= 1.0, f"{name} must be in [0, 1] (before normalization), got [{low}, {high}]")
    return images


def _masks(array: Any, name: str, images: np.ndarray | None) -> np.ndarray | None:
    if array is None:
        return None
    masks = np.asarray(array, dtype=np.float32)
    if masks.ndim == 3:
        masks = masks[..., np.newaxis]
    _check(masks.ndim == 4 and masks.shape[-1] == 1, f"{name} must be (N, H, W) or (N, H, W, 1), got {masks.shape}")
    _check(images is not None and masks.shape[:3] == images.shape[:3],
           f"{name} {masks.shape} must match its images {None if images is None else images.shape}")
    values = np.unique(masks)
    _check(bool(np.all(np.isin(values, (0.0, 1.0)))), f"{name} must hold 0/1 values, got {values[:10]}")
    return masks


def _labels(array: Any, name: str, images: np.ndarray | None, n_classes: int | None = None) -> np.ndarray | None:
    if array is None:
        return None
    labels = np.asarray(array)
    _check(labels.ndim == 1 and np.issubdtype(labels.dtype, np.integer),
           f"{name} must be a 1-D integer array of class indices, got {labels.dtype} {labels.shape}")
    _check(images is not None and len(labels) == len(images),
           f"{name} has {len(labels)} labels for {None if images is None else len(images)} images")
    if n_classes is not None:
        _check(int(labels.min()) >= 0 and int(labels.max()) < n_classes,
               f"{name} must be in [0, {n_classes}), got [{labels.min()}, {labels.max()}]")
    return labels.astype(np.int32)


@dataclass
class MultiMixData:
    """The arrays of one MultiMix run: images ``(N, H, W, C)`` (or ``(N, H, W)``) float32 in [0, 1].

    Attributes:
        seg_images, seg_masks: labelled segmentation set (masks 0/1).
        seg_unlabelled: unlabelled segmentation images (KL term); defaults to none.
        cls_images, cls_labels: labelled classification set (labels are class indices).
        cls_unlabelled: unlabelled classification images (FixMatch term).
        val_seg_images, val_seg_masks, val_cls_images, val_cls_labels: validation sets for checkpoint
            selection.
    """

    seg_images: Any = None
    seg_masks: Any = None
    seg_unlabelled: Any = None
    cls_images: Any = None
    cls_labels: Any = None
    cls_unlabelled: Any = None
    val_seg_images: Any = None
    val_seg_masks: Any = None
    val_cls_images: Any = None
    val_cls_labels: Any = None

    def __post_init__(self) -> None:
        for name in ("seg_images", "seg_unlabelled", "cls_images", "cls_unlabelled", "val_seg_images",
                     "val_cls_images"):
            setattr(self, name, _images(getattr(self, name), name))
        self.seg_masks = _masks(self.seg_masks, "seg_masks", self.seg_images)
        self.val_seg_masks = _masks(self.val_seg_masks, "val_seg_masks", self.val_seg_images)
        self.cls_labels = _labels(self.cls_labels, "cls_labels", self.cls_images)
        self.val_cls_labels = _labels(self.val_cls_labels, "val_cls_labels", self.val_cls_images)
        shapes = {name: getattr(self, name).shape[1:] for name in (
            "seg_images", "seg_unlabelled", "cls_images", "cls_unlabelled", "val_seg_images", "val_cls_images",
        ) if getattr(self, name) is not None}
        _check(len(set(shapes.values())) <= 1, f"all images must share one (H, W, C), got {shapes}")

    def check(self, variant: Variant, n_classes: int) -> None:
        """Raise ``ValueError`` naming the missing field when ``variant`` needs data that is absent."""
        needs = []
        if variant.segmentation:
            needs += ["seg_images", "seg_masks", "val_seg_images", "val_seg_masks"]
        if variant.kl:
            needs.append("seg_unlabelled")
        if variant.classification:
            needs += ["cls_images", "cls_labels", "val_cls_images", "val_cls_labels"]
        if variant.ssl:
            needs.append("cls_unlabelled")
        missing = [name for name in needs if getattr(self, name) is None]
        _check(not missing, f"this MultiMix variant needs {missing}, which are not given")
        for name in ("cls_labels", "val_cls_labels"):
            labels = getattr(self, name)
            if labels is not None:
                _labels(labels, name, labels, n_classes)


@dataclass
class MultiMixResult:
    """What ``train_multimix`` returns.

    Attributes:
        variant: the variant trained.
        history: per-epoch lists (like ``urep.training.TrainResult``): the mean training loss terms ("loss",
            "ce", "ssl", "mask_rate" = fraction of pseudo-labels kept, "dice", "kl" as the variant has them),
            "lr", "seconds", and the validation metrics: "val_dice", "val_dice_loss", "val_accuracy",
            "val_balanced_accuracy", "val_auc", "val_positive_fraction", "val_ce", "val_loss", "val_score"
            (as the variant has them; see ``_validation_metrics``).
        best_epoch: 1-based epoch with the highest ``val_score`` (the first on ties).
        best_score: that score.
        best_metrics: that epoch's validation metrics.
        epochs_run: epochs completed.
        steps_run: optimizer steps taken.
        seconds: wall-clock training time (validation included).
        trainable_params: trainable parameters of the network.
        total_params: all parameters.
        checkpoint: path of the best weights (``best.weights.h5``, for ``model.network.load_weights``) when a
            run directory was given.
        config: the ``MultiMixConfig`` as a dict.
    """

    variant: str
    history: dict[str, list[float]] = field(default_factory=dict)
    best_epoch: int | None = None
    best_score: float = float("-inf")
    best_metrics: dict[str, float] = field(default_factory=dict)
    epochs_run: int = 0
    steps_run: int = 0
    seconds: float = 0.0
    trainable_params: int = 0
    total_params: int = 0
    checkpoint: str | None = None
    config: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------------------------------------
# Loss terms
# --------------------------------------------------------------------------------------------------------


def fixmatch_loss(weak_logits: tf.Tensor, strong_logits: tf.Tensor, threshold: float) -> tuple[tf.Tensor, tf.Tensor]:
    """FixMatch's unsupervised term: ``mean_i CE(strong_i, argmax weak_i) · [max softmax(weak_i) >= t]``.

    The pseudo-labels and the mask are constants (no gradient through the weak view). The mean runs over the
    whole unlabelled batch, masked-out images count as 0 (FixMatch; the public code).

    Args:
        weak_logits: ``(batch, n_classes)`` logits of the weak views.
        strong_logits: ``(batch, n_classes)`` logits of the strong views of the same images.
        threshold: confidence t.

    Returns:
        ``(loss, mask)``: a scalar and the ``(batch,)`` float32 0/1 mask of kept pseudo-labels.
    """
    probs = tf.nn.softmax(tf.stop_gradient(tf.cast(weak_logits, tf.float32)), axis=-1)
    pseudo = tf.argmax(probs, axis=-1, output_type=tf.int32)
    mask = tf.cast(tf.reduce_max(probs, axis=-1) >= threshold, tf.float32)
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=pseudo, logits=tf.cast(strong_logits, tf.float32))
    return tf.reduce_mean(ce * mask), mask


def segmentation_kl(labelled_probs: tf.Tensor, unlabelled_probs: tf.Tensor, mode: str = "pixelwise",
                    epsilon: float = 1e-6) -> tf.Tensor:
    """KL between labelled and unlabelled segmentation predictions, each pixel a (background, foreground) pair.

    Args:
        labelled_probs: ``(batch_l, H, W, 1)`` sigmoid foreground probabilities on labelled images (P).
        unlabelled_probs: ``(batch_u, H, W, 1)`` the same on unlabelled images (Q).
        mode: ``"pixelwise"`` (the paper's): ``KL(P_i ‖ Q_i)`` per pixel of the i-th pair, averaged (equal
            batches); ``"batch_mean"``: ``KL(mean_b P ‖ mean_b Q)`` per pixel, averaged over pixels (batch sizes
            may differ).
        epsilon: probabilities are clipped to ``[epsilon, 1 - epsilon]``.

    Returns:
        A non-negative scalar; 0 exactly when the compared distributions are equal.

    Raises:
        ValueError: unknown ``mode``.
    """
    _check(mode in KL_MODES, f"kl mode must be one of {KL_MODES}, got {mode!r}")
    p = tf.cast(labelled_probs, tf.float32)
    q = tf.cast(unlabelled_probs, tf.float32)
    if mode == "batch_mean":
        p = tf.reduce_mean(p, axis=0)
        q = tf.reduce_mean(q, axis=0)
    p = tf.clip_by_value(p, epsilon, 1.0 - epsilon)
    q = tf.clip_by_value(q, epsilon, 1.0 - epsilon)
    kl = p * (tf.math.log(p) - tf.math.log(q)) + (1.0 - p) * (tf.math.log(1.0 - p) - tf.math.log(1.0 - q))
    return tf.reduce_mean(kl)


# --------------------------------------------------------------------------------------------------------
# Model, data and step
# --------------------------------------------------------------------------------------------------------


def multimix_for_variant(variant: str, **model_kwargs: Any) -> MultiMix:
    """Build the network an ablation needs: ``urep.models.multimix.multimix`` with the bridge on or off.

    Args:
        variant: one of ``VARIANTS``.
        **model_kwargs: passed to ``multimix`` (``input_shape``, ``channels``, ...); ``saliency_bridge`` is set
            from the variant.

    Returns:
        A ``MultiMix`` model.

    Raises:
        ValueError: unknown variant, or a ``saliency_bridge`` argument that contradicts it.
    """
    _check(variant in VARIANTS, f"variant must be one of {sorted(VARIANTS)}, got {variant!r}")
    wanted = VARIANTS[variant].saliency
    _check(model_kwargs.pop("saliency_bridge", wanted) == wanted,
           f"variant {variant!r} needs saliency_bridge={wanted}")
    return multimix(saliency_bridge=wanted, **model_kwargs)


def _stream(arrays: tuple[np.ndarray, ...], seed: int) -> tf.data.Dataset:
    dataset = tf.data.Dataset.from_tensor_slices(arrays if len(arrays) > 1 else arrays[0])
    return dataset.shuffle(len(arrays[0]), seed=seed, reshuffle_each_iteration=True).repeat()


def training_dataset(data: MultiMixData, config: MultiMixConfig) -> tf.data.Dataset:
    """The zipped, infinite stream of per-step batches the variant needs.

    Args:
        data: the run's arrays.
        config: batch size, seed, augmentation settings, variant.

    Returns:
        A ``tf.data.Dataset`` of dicts with (as the variant needs) ``seg_images`` ``(B, H, W, C)``,
        ``seg_masks`` ``(B, H, W, 1)``, ``seg_unlabelled``, ``cls_images`` (weak views), ``cls_labels``
        ``(B,)`` int32, ``weak`` and ``strong`` (paired views of the same unlabelled images).
    """
    parts, seed, batch = config.parts, config.seed, config.batch_size
    streams: dict[str, tf.data.Dataset] = {}
    if parts.segmentation:
        streams["seg"] = _stream((data.seg_images, data.seg_masks), seed)
    if parts.kl:
        streams["seg_unlabelled"] = _stream((data.seg_unlabelled,), seed + 1)
    if parts.classification:
        streams["cls"] = weakly_augmented(_stream((data.cls_images, data.cls_labels), seed + 2), seed=seed + 2,
                                          pad_fraction=config.pad_fraction)
    if parts.ssl:
        streams["pairs"] = weak_strong_pairs(_stream((data.cls_unlabelled,), seed + 3), seed=seed + 3,
                                             n_ops=config.strong_ops, pad_fraction=config.pad_fraction,
                                             ops=STRONG_OPS)
    batched = {name: stream.batch(batch, drop_remainder=True) for name, stream in streams.items()}

    def to_dict(*elements):
        out = {}
        for name, element in zip(batched, elements, strict=True):
            if name == "seg":
                out["seg_images"], out["seg_masks"] = element
            elif name == "seg_unlabelled":
                out["seg_unlabelled"] = element
            elif name == "cls":
                out["cls_images"], out["cls_labels"] = element
            else:
                out["weak"], out["strong"] = element
        return out

    return tf.data.Dataset.zip(tuple(batched.values())).map(to_dict).prefetch(tf.data.AUTOTUNE)


def steps_per_epoch(data: MultiMixData, config: MultiMixConfig) -> int:
    """``config.steps_per_epoch``, or one pass over the largest stream the variant uses (at least 1)."""
    if config.steps_per_epoch is not None:
        return config.steps_per_epoch
    parts = config.parts
    sizes = [len(a) for a, used in (
        (data.seg_images, parts.segmentation), (data.seg_unlabelled, parts.kl),
        (data.cls_images, parts.classification), (data.cls_unlabelled, parts.ssl),
    ) if used]
    return max(1, max(sizes) // config.batch_size)


def _make_train_step(model: MultiMix, optimizer: keras.optimizers.Optimizer, config: MultiMixConfig):
    parts = config.parts
    network = model.network
    variables = network.trainable_variables

    def step(batch: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        if parts.segmentation:
            seg_x = batch["seg_images"]
            n_labelled = tf.shape(seg_x)[0]
            if parts.kl:
                seg_x = tf.concat([seg_x, batch["seg_unlabelled"]], axis=0)
            seg_inputs = model.network_inputs(seg_x)  # saliency: inner tape, inference mode, constant
        if parts.classification:
            cls_x = batch["cls_images"]
            n_cls = tf.shape(cls_x)[0]
            if parts.ssl:
                n_weak = tf.shape(batch["weak"])[0]
                cls_x = tf.concat([cls_x, batch["weak"], batch["strong"]], axis=0)
        terms: dict[str, tf.Tensor] = {}
        with tf.GradientTape() as tape:
            total = tf.constant(0.0)
            if parts.segmentation:
                logits = network(seg_inputs, training=True)["segmentation_logits"]
                probs = tf.sigmoid(tf.cast(logits, tf.float32))
                # Soft Dice per image (smooth 1), averaged over the batch: the public code's dice_loss.
                terms["dice"] = tf.reduce_mean(dice_loss(batch["seg_masks"], probs[:n_labelled], per_image=True))
                total += config.dice_weight * terms["dice"]
                if parts.kl:
                    terms["kl"] = segmentation_kl(probs[:n_labelled], probs[n_labelled:], config.kl_mode)
                    total += config.kl_weight * terms["kl"]
            if parts.classification:
                logits = tf.cast(model.classifier(cls_x, training=True), tf.float32)
                terms["ce"] = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
                    labels=batch["cls_labels"], logits=logits[:n_cls]))
                total += terms["ce"]
                if parts.ssl:
                    weak, strong = logits[n_cls:n_cls + n_weak], logits[n_cls + n_weak:]
                    terms["ssl"], mask = fixmatch_loss(weak, strong, config.threshold)
                    terms["mask_rate"] = tf.reduce_mean(mask)
                    total += config.ssl_weight * terms["ssl"]
        grads = tape.gradient(total, variables)
        # Parts a variant does not train (e.g. the decoder of "encoder") get zero gradients: Adam leaves them
        # exactly unchanged, and one optimizer serves every variant.
        grads = [tf.zeros_like(v) if g is None else g for g, v in zip(grads, variables, strict=True)]
        optimizer.apply_gradients(zip(grads, variables, strict=True))
        terms["loss"] = total
        return terms

    return tf.function(step, jit_compile=config.jit_compile)


# --------------------------------------------------------------------------------------------------------
# Prediction and evaluation
# --------------------------------------------------------------------------------------------------------


def predict_multimix(model: MultiMix, images: Any, batch_size: int = 16) -> dict[str, np.ndarray]:
    """Predict in inference mode, the saliency bridge computed as in ``MultiMix.call`` (no labels needed).

    Args:
        model: a ``MultiMix``.
        images: ``(N, H, W, C)`` or ``(N, H, W)`` float32 in [0, 1].
        batch_size: prediction batch size.

    Returns:
        ``{"segmentation": (N, H, W, 1), "classification": (N, n_classes)}`` probabilities.
    """
    images = _images(images, "images")
    predict = _predict_fn(model)
    outputs: dict[str, list[np.ndarray]] = {"segmentation": [], "classification": []}
    for start in range(0, len(images), batch_size):
        batch = predict(tf.constant(images[start:start + batch_size]))
        for key in outputs:
            outputs[key].append(batch[key].numpy())
    return {key: np.concatenate(values) for key, values in outputs.items()}


_PREDICT_FNS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _predict_fn(model: MultiMix):
    """One traced inference function per model (the saliency's inner tape included)."""
    if model not in _PREDICT_FNS:
        shape = model.network.get_layer("image").output.shape
        spec = tf.TensorSpec([None, *shape[1:]], tf.float32)
        _PREDICT_FNS[model] = tf.function(lambda x: model(x, training=False), input_signature=[spec])
    return _PREDICT_FNS[model]


def evaluate_multimix(
    model: MultiMix,
    seg_images: Any = None,
    seg_masks: Any = None,
    cls_images: Any = None,
    cls_labels: Any = None,
    class_names: Sequence[str] | None = ("normal", "pneumonia"),
    batch_size: int = 16,
    threshold: float = 0.5,
) -> dict[str, Any]:
    """The paper's metrics on one test set: accuracy and F1 per class; Dice, average Hausdorff and SSIM.

    Segmentation and classification are evaluated on their own images (in the paper JSRT/Montgomery for
    segmentation, CheX/NIH for classification); pass either pair or both. SSIM compares the binarised predicted
    mask with the reference mask (both in {0, 1}, ``max_val`` 1; ``tf.image.ssim`` via
    ``urep.metrics.reconstruction_metrics``; NaN for images smaller than its 11-pixel window).

    Args:
        model: a trained ``MultiMix``.
        seg_images: ``(N, H, W[, C])`` in [0, 1], with ``seg_masks`` ``(N, H, W[, 1])`` 0/1.
        seg_masks: reference masks.
        cls_images: ``(M, H, W[, C])`` in [0, 1], with ``cls_labels`` ``(M,)`` class indices.
        cls_labels: reference classes.
        class_names: names of the classes (keys of ``f1_per_class``); None = "0", "1", ...
        batch_size: prediction batch size.
        threshold: mask binarisation threshold.

    Returns:
        ``{"classification": {"accuracy", "balanced_accuracy", "auc", "positive_fraction" (see
        ``balanced_scores``), "f1_per_class": {name: f1}, "metrics": full
        urep.metrics.classification_metrics dict, "predicted": (M,) int, "correct": (M,) bool},
        "segmentation": {"dice", "avg_hausdorff", "ssim", "metrics": full segmentation_metrics dict,
        "per_image": {"dice", "avg_hausdorff", "ssim": (N,) arrays}}}`` — only the tasks given. The per-sample
        arrays feed ``urep.statistics.mcnemar`` / ``wilcoxon_paired``.

    Raises:
        ValueError: when neither task's data is given, or the arrays are inconsistent.
    """
    _check(seg_images is not None or cls_images is not None, "evaluate_multimix needs seg_images or cls_images")
    _check((seg_images is None) == (seg_masks is None), "seg_images and seg_masks must be given together")
    _check((cls_images is None) == (cls_labels is None), "cls_images and cls_labels must be given together")
    result: dict[str, Any] = {}
    if cls_images is not None:
        images = _images(cls_images, "cls_images")
        labels = _labels(cls_labels, "cls_labels", images, model.n_classes)
        probs = predict_multimix(model, images, batch_size)["classification"]
        result["classification"] = classification_scores(labels, probs, class_names)
    if seg_images is not None:
        images = _images(seg_images, "seg_images")
        masks = _masks(seg_masks, "seg_masks", images)
        probs = predict_multimix(model, images, batch_size)["segmentation"]
        result["segmentation"] = segmentation_scores(masks, probs, threshold)
    return result


def classification_scores(labels: Any, probs: Any, class_names: Sequence[str] | None = None) -> dict[str, Any]:
    """The paper's classification metrics from predicted probabilities (any model, for like-for-like tables).

    Args:
        labels: ``(M,)`` reference class indices.
        probs: ``(M, n_classes)`` predicted probabilities.
        class_names: names of the classes (keys of ``f1_per_class``); None = "0", "1", ...

    Returns:
        The ``"classification"`` entry of ``evaluate_multimix``.
    """
    labels = np.asarray(labels)
    probs = np.asarray(probs)
    names = list(class_names) if class_names is not None else None
    _check(names is None or len(names) == probs.shape[-1],
           f"class_names has {None if names is None else len(names)} names for {probs.shape[-1]} classes")
    metrics = classification_metrics(labels, probs, class_names=names)
    predicted = probs.argmax(axis=-1)
    balanced = balanced_scores(labels, probs)
    return {
        "accuracy": metrics["accuracy"],
        "balanced_accuracy": balanced["balanced_accuracy"],
        "auc": balanced["auc"],
        "positive_fraction": balanced["positive_fraction"],
        "f1_per_class": {name: values["f1"] for name, values in metrics["per_class"].items()},
        "metrics": metrics,
        "predicted": predicted,
        "correct": predicted == labels,
    }


def segmentation_scores(masks: Any, probs: Any, threshold: float = 0.5) -> dict[str, Any]:
    """The paper's segmentation metrics (Dice, average Hausdorff, SSIM of the binarised mask) from predictions.

    Args:
        masks: ``(N, H, W, 1)`` reference masks in {0, 1}.
        probs: ``(N, H, W, 1)`` predicted foreground probabilities.
        threshold: mask binarisation threshold.

    Returns:
        The ``"segmentation"`` entry of ``evaluate_multimix``.
    """
    masks = np.asarray(masks, dtype=np.float32)
    probs = np.asarray(probs, dtype=np.float32)
    seg = segmentation_metrics(masks, probs, threshold=threshold)
    binary = (probs >= threshold).astype(np.float32)
    ssim = reconstruction_metrics(masks, binary, max_val=1.0)["per_image"]["ssim"]
    return {
        "dice": seg["dice"],
        "avg_hausdorff": seg["avg_hausdorff"],
        "ssim": float(np.mean(ssim)),
        "metrics": seg,
        "per_image": {"dice": seg["per_image"]["dice"], "avg_hausdorff": seg["per_image"]["avg_hausdorff"],
                      "ssim": ssim},
    }


def balanced_scores(labels: Any, probs: Any) -> dict[str, float]:
    """Class-balance-aware classification scores (scikit-learn): they expose a constant classifier.

    Args:
        labels: ``(M,)`` reference class indices.
        probs: ``(M, K)`` predicted probabilities.

    Returns:
        ``{"accuracy", "balanced_accuracy", "auc", "positive_fraction"}``: ``auc`` is the ROC AUC of class 1
        (binary) or the macro one-vs-rest AUC, NaN when the labels hold one class; ``positive_fraction`` is the
        fraction of images predicted as any class other than 0 (class 0 = "normal" by the datasets' label
        order). A constant classifier has balanced accuracy ``1 / K`` and positive fraction 0 or 1.
    """
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    labels = np.asarray(labels).reshape(-1)
    probs = np.asarray(probs, dtype=np.float64)
    predicted = probs.argmax(axis=-1)
    auc = float("nan")
    if len(np.unique(labels)) > 1:
        if probs.shape[-1] == 2:
            auc = float(roc_auc_score(labels, probs[:, 1]))
        else:
            present = np.unique(labels)
            if len(present) == probs.shape[-1]:
                auc = float(roc_auc_score(labels, probs / probs.sum(axis=-1, keepdims=True), multi_class="ovr"))
    return {
        "accuracy": float(np.mean(predicted == labels)),
        "balanced_accuracy": float(balanced_accuracy_score(labels, predicted)),
        "auc": auc,
        "positive_fraction": float(np.mean(predicted != 0)),
    }


def _validation_metrics(model: MultiMix, data: MultiMixData, config: MultiMixConfig) -> dict[str, float]:
    """Validation metrics and the checkpoint-selection score ``val_score`` (higher is better).

    ``selection="balanced"``: ``w_seg · Dice + w_cls · (balanced accuracy + AUC) / 2`` divided by the weights
    used (AUC left out when undefined); ``selection="loss"``: minus the validation loss
    ``CE + dice_weight · soft-Dice loss`` of the tasks the variant trains. Plain accuracy never selects: on an
    imbalanced set a constant classifier scores high (0.757 on Kermany's test split).
    """
    parts = config.parts
    metrics: dict[str, float] = {}
    score = 0.0
    weights = 0.0
    loss = 0.0
    if parts.segmentation:
        probs = predict_multimix(model, data.val_seg_images, config.eval_batch_size)["segmentation"]
        metrics["val_dice"] = segmentation_metrics(data.val_seg_masks, probs)["dice"]
        metrics["val_dice_loss"] = float(tf.reduce_mean(dice_loss(
            tf.constant(data.val_seg_masks), tf.constant(probs), per_image=True)))
        loss += config.dice_weight * metrics["val_dice_loss"]
        score += config.selection_weights[0] * metrics["val_dice"]
        weights += config.selection_weights[0]
    if parts.classification:
        probs = predict_multimix(model, data.val_cls_images, config.eval_batch_size)["classification"]
        scores = balanced_scores(data.val_cls_labels, probs)
        metrics.update({f"val_{key}": value for key, value in scores.items()})
        picked = np.clip(probs[np.arange(len(probs)), data.val_cls_labels], 1e-7, 1.0)
        metrics["val_ce"] = float(-np.mean(np.log(picked)))
        loss += metrics["val_ce"]
        balanced = scores["balanced_accuracy"] if math.isnan(scores["auc"]) else \
            (scores["balanced_accuracy"] + scores["auc"]) / 2
        score += config.selection_weights[1] * balanced
        weights += config.selection_weights[1]
    _check(weights > 0, f"selection_weights {config.selection_weights} give variant {config.variant!r} no score")
    metrics["val_loss"] = loss
    metrics["val_score"] = -loss if config.selection == "loss" else score / weights
    return metrics


# --------------------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------------------


def _run_dir(run: Any, variant: str) -> Path | None:
    """Where a run keeps this variant's checkpoint: ``RUN/checkpoints/multimix/<variant>``."""
    if run is None:
        return None
    if isinstance(run, (str, os.PathLike)):
        root = Path(run)
    elif isinstance(getattr(run, "root", None), (str, os.PathLike)):
        root = Path(run.root)
    else:
        raise ValueError(f"run must be None, a run directory path or a urep.training.Run, got {run!r}")
    return root / "checkpoints" / "multimix" / variant


def train_multimix(model: MultiMix, data: MultiMixData, config: MultiMixConfig | dict | None = None,
                   run: Any = None) -> MultiMixResult:
    """Train MultiMix (or one of its ablations) and keep the epoch with the best validation score.

    Args:
        model: a ``MultiMix`` whose ``saliency_bridge`` matches the variant (see ``multimix_for_variant``).
        data: the labelled/unlabelled/validation arrays the variant needs.
        config: a ``MultiMixConfig`` or a dict of its fields; None = the paper's defaults.
        run: None, a run directory path, or a ``urep.training.Run``: the best weights are written (atomically)
            to ``RUN/checkpoints/multimix/<variant>/best.weights.h5`` whenever the score improves, and the
            result to ``.../result.json`` at the end. (No mid-training resume.)

    Returns:
        A ``MultiMixResult``. With ``restore_best`` the model holds the best epoch's weights on return.

    Raises:
        ValueError: a bad config, data missing for the variant, a model whose bridge/classes/input do not fit,
            or a non-finite training loss.
    """
    config = MultiMixConfig.from_dict(config if config is not None else {})
    parts = config.parts
    _check(isinstance(model, MultiMix), f"model must be a urep.models.multimix.MultiMix, got {type(model).__name__}")
    _check(model.saliency_bridge == parts.saliency,
           f"variant {config.variant!r} needs a model with saliency_bridge={parts.saliency}, got "
           f"{model.saliency_bridge} (build it with multimix_for_variant)")
    data.check(parts, model.n_classes)
    expected = tuple(model.network.get_layer("image").output.shape[1:])
    shapes = {a.shape[1:] for a in (data.seg_images, data.cls_images, data.seg_unlabelled, data.cls_unlabelled,
                                    data.val_seg_images, data.val_cls_images) if a is not None}
    _check(all(s == expected for s in shapes), f"images {sorted(shapes)} do not fit the model input {expected}")
    checkpoint_dir = _run_dir(run, config.variant)

    optimizer = keras.optimizers.Adam(learning_rate=config.learning_rate)
    optimizer.build(model.network.trainable_variables)
    step = _make_train_step(model, optimizer, config)
    n_steps = steps_per_epoch(data, config)
    iterator = iter(training_dataset(data, config))
    result = MultiMixResult(
        variant=config.variant,
        trainable_params=int(sum(int(np.prod(v.shape)) for v in model.network.trainable_variables)),
        total_params=int(model.network.count_params()),
        config=config.to_dict(),
    )
    best_weights = None
    start = time.perf_counter()
    for epoch in range(config.epochs):
        epoch_start = time.perf_counter()
        learning_rate = config.learning_rate_at(epoch)
        optimizer.learning_rate = learning_rate
        sums: dict[str, float] = {}
        for _ in range(n_steps):
            terms = step(next(iterator))
            for key, value in terms.items():
                sums[key] = sums.get(key, 0.0) + float(value)
        record = {key: value / n_steps for key, value in sums.items()}
        _check(math.isfinite(record["loss"]), f"MultiMix training loss is not finite at epoch {epoch + 1}: {record}")
        record.update(_validation_metrics(model, data, config))
        record.update(lr=learning_rate, seconds=time.perf_counter() - epoch_start)
        for key, value in record.items():
            result.history.setdefault(key, []).append(float(value))
        result.epochs_run, result.steps_run = epoch + 1, result.steps_run + n_steps
        logger.info("multimix %s epoch %d/%d: %s", config.variant, epoch + 1, config.epochs,
                    ", ".join(f"{k}={v:.4g}" for k, v in record.items()))
        if record["val_score"] > result.best_score:
            result.best_epoch, result.best_score = epoch + 1, record["val_score"]
            result.best_metrics = {k: v for k, v in record.items() if k.startswith("val_")}
            best_weights = model.network.get_weights()
            if checkpoint_dir is not None:
                path = checkpoint_dir / "best.weights.h5"
                atomic_save(path, model.network.save_weights)
                result.checkpoint = str(path)
    result.seconds = time.perf_counter() - start
    if config.restore_best and best_weights is not None:
        model.network.set_weights(best_weights)
    if checkpoint_dir is not None:
        atomic_write_json(checkpoint_dir / "result.json", result.to_dict())
    return result


def label_budget(data: Any, n: int | str | None, seed: int = 0, stratify: Any = None) -> tuple[Any, Any]:
    """Split a training set into ``n`` labelled items and the rest (used as unlabelled), reproducibly.

    Args:
        data: a pandas DataFrame, a NumPy array, or a tuple of arrays sharing their first dimension
            (e.g. ``(images, masks)``).
        n: labelled items to keep (the paper: segmentation 10 / 50 / "all", classification 100 / 1000 / "all");
            ``"all"`` or None keeps everything labelled (the unlabelled part is then empty).
        seed: random seed of the draw.
        stratify: class labels to keep the class proportions in the labelled part (an array of length N, or
            for a DataFrame the name of a column); None = a uniform random draw (as the public code's
            ``random_split``).

    Returns:
        ``(labelled, unlabelled)`` of the same type as ``data``.

    Raises:
        ValueError: ``n`` is not a positive integer <= N (nor "all"/None), or the arrays disagree in length.
    """
    import pandas as pd
    from sklearn.model_selection import train_test_split

    is_frame = isinstance(data, pd.DataFrame)
    if is_frame:
        length = len(data)
    elif isinstance(data, tuple):
        _check(len(data) > 0, "label_budget got an empty tuple")
        lengths = {len(a) for a in data}
        _check(len(lengths) == 1, f"label_budget: arrays must share their first dimension, got {sorted(lengths)}")
        length = lengths.pop()
    else:
        data = np.asarray(data)
        length = len(data)
    index = np.arange(length)
    if n is None or n == "all":
        labelled_idx, unlabelled_idx = index, index[:0]
    else:
        _check(_is_int(n) and 1 <= n <= length, f"label budget n must be 'all' or an integer in [1, {length}], got {n!r}")
        labels = data[stratify].to_numpy() if is_frame and isinstance(stratify, str) else stratify
        if n == length:
            labelled_idx, unlabelled_idx = index, index[:0]
        else:
            labelled_idx, unlabelled_idx = train_test_split(index, train_size=n, random_state=seed, stratify=labels)
            labelled_idx, unlabelled_idx = np.sort(labelled_idx), np.sort(unlabelled_idx)

    def take(idx: np.ndarray) -> Any:
        if is_frame:
            return data.iloc[idx]
        if isinstance(data, tuple):
            return tuple(np.asarray(a)[idx] for a in data)
        return data[idx]

    return take(labelled_idx), take(unlabelled_idx)


# --------------------------------------------------------------------------------------------------------
# The "multimix" fine-tuning strategy (urep.training.strategies.STRATEGIES)
# --------------------------------------------------------------------------------------------------------


def _arrays(source: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Materialize a task's ``(x, y)`` batches (a dataset, or a function epoch -> dataset) into arrays."""
    xs, ys = [], []
    for element in epoch_dataset(source, 0):
        _check(isinstance(element, (tuple, list)) and len(element) == 2, f"{what} must yield (x, y) batches")
        xs.append(np.asarray(element[0]))
        ys.append(np.asarray(element[1]))
    _check(bool(xs), f"{what} is empty")
    return np.concatenate(xs), np.concatenate(ys)


def _class_indices(labels: np.ndarray) -> np.ndarray:
    return labels.argmax(axis=-1) if labels.ndim == 2 else labels.reshape(-1).astype(np.int64)


def data_from_tasks(tasks: Sequence[Any], seg_unlabelled: Any = None, cls_unlabelled: Any = None) -> MultiMixData:
    """``MultiMixData`` from at most one segmentation and one classification ``urep.training.Task``.

    Each task's ``train`` and ``val`` batches are read once into arrays (labels may be one-hot); the unlabelled
    images, which tasks cannot hold, come as arguments.

    Raises:
        ValueError: other task kinds, two tasks of a kind, or a task without validation data.
    """
    by_kind: dict[str, Any] = {}
    for task in tasks:
        _check(task.kind in ("segmentation", "classification"),
               f"multimix trains segmentation and classification tasks, got {task.name!r} of kind {task.kind!r}")
        _check(task.kind not in by_kind, f"multimix takes one {task.kind} task, got {by_kind.get(task.kind)!r} "
                                         f"and {task.name!r}")
        _check(task.val is not None, f"multimix task {task.name!r} needs validation data (checkpoint selection)")
        by_kind[task.kind] = task
    fields: dict[str, Any] = {"seg_unlabelled": seg_unlabelled, "cls_unlabelled": cls_unlabelled}
    if "segmentation" in by_kind:
        task = by_kind["segmentation"]
        fields["seg_images"], fields["seg_masks"] = _arrays(task.train, f"task {task.name!r} train")
        fields["val_seg_images"], fields["val_seg_masks"] = _arrays(task.val, f"task {task.name!r} val")
    if "classification" in by_kind:
        task = by_kind["classification"]
        images, labels = _arrays(task.train, f"task {task.name!r} train")
        fields["cls_images"], fields["cls_labels"] = images, _class_indices(labels)
        images, labels = _arrays(task.val, f"task {task.name!r} val")
        fields["val_cls_images"], fields["val_cls_labels"] = images, _class_indices(labels)
    return MultiMixData(**fields)


def multimix_strategy(assembly: Any, tasks: Sequence[Any], config: Any = None, run: Any = None,
                      data: MultiMixData | None = None, multimix: MultiMixConfig | dict | None = None,
                      seg_unlabelled: Any = None, cls_unlabelled: Any = None) -> dict[str, Any]:
    """The "multimix" entry of ``STRATEGIES``: ``finetune(model, tasks, "multimix", config, run, ...)``.

    Args:
        assembly: the ``MultiMix`` model.
        tasks: a segmentation and/or a classification ``Task`` (their data is read into arrays), ignored when
            ``data`` is given except for naming the results.
        config: the ``TrainConfig`` of the registry signature. MultiMix keeps its own paper schedule (Adam 1e-4,
            x0.1 every 8 epochs, batch 10): its settings come from ``multimix``, not from this.
        run: None, a run directory or a ``urep.training.Run``.
        data: the arrays directly (then ``seg_unlabelled``/``cls_unlabelled`` must be inside it).
        multimix: a ``MultiMixConfig`` or a dict of its fields (variant, epochs, ...).
        seg_unlabelled: unlabelled segmentation images (with tasks).
        cls_unlabelled: unlabelled classification images (with tasks).

    Returns:
        ``{task name: urep.training.TrainResult}`` (phase ``multimix/<variant>``, monitor ``val_score``; the
        MultiMix result dict in ``extra["multimix"]``).
    """
    _check(isinstance(assembly, MultiMix), f"the multimix strategy needs a MultiMix model, got {type(assembly).__name__}")
    if data is None:
        data = data_from_tasks(tasks, seg_unlabelled=seg_unlabelled, cls_unlabelled=cls_unlabelled)
    else:
        _check(seg_unlabelled is None and cls_unlabelled is None,
               "give the unlabelled images inside data, not as separate arguments")
    if config is not None:
        logger.info("multimix strategy: the TrainConfig is not used; MultiMix settings come from `multimix`")
    settings = MultiMixConfig.from_dict(multimix if multimix is not None else {})
    outcome = train_multimix(assembly, data, settings, run=run)
    names = [task.name for task in tasks] or [settings.variant]
    return {
        name: TrainResult(
            name=name, phase=f"multimix/{settings.variant}", strategy="multimix", history=outcome.history,
            epochs_run=outcome.epochs_run, steps_run=outcome.steps_run, seconds=outcome.seconds,
            phase_seconds=outcome.seconds, best_epoch=outcome.best_epoch, best_value=outcome.best_score,
            monitor="val_score", stop_reason="max_epochs", trainable_params=outcome.trainable_params,
            total_params=outcome.total_params, checkpoint=outcome.checkpoint,
            learning_rate=settings.learning_rate_at(settings.epochs - 1), extra={"multimix": outcome.to_dict()},
        )
        for name in names
    }


def _register() -> None:
    from urep.training.strategies import STRATEGIES

    STRATEGIES.setdefault("multimix", multimix_strategy)


_register()
