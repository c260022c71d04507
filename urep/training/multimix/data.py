"""The arrays of one MultiMix run (``MultiMixData``) and the zipped per-step batch stream.

``MultiMixData`` checks shapes, ranges and labels on construction; ``training_dataset`` yields, per step, the
five batches a variant needs (labelled / unlabelled segmentation, labelled classification, weak and strong
views of the same unlabelled classification images); ``data_from_tasks`` reads ``urep.training.Task`` batches.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf

from urep.data.augment import STRONG_OPS, weak_strong_pairs, weakly_augmented
from urep.training.config import _check
from urep.training.loop import epoch_dataset
from urep.training.multimix.config import MultiMixConfig, Variant


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
