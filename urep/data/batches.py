"""`ArrayBatches`: in-memory arrays as an `epoch -> tf.data.Dataset` training source whose inputs can be swapped.

The order of an epoch's batches depends only on the number of examples, `seed` and the epoch (shuffle seed
`seed * 1009 + epoch`, as the experiment pipeline has always used), never on the images. So
`batches.with_inputs(features)` yields exactly the same examples in the same batches with `features` in place
of the images; the independent strategy uses it to train heads on a frozen encoder's features computed once
(see `urep.training.features`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["ArrayBatches", "AugmentedBatches"]


def _check_batch_size(batch_size) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")


@dataclass(frozen=True, eq=False)
class ArrayBatches:
    """Batches `(x, y)` of in-memory arrays; call it with a 0-based epoch to get that epoch's dataset.

    Attributes:
        x: `(N, ...)` network inputs, e.g. `(N, H, W, C)` float32 normalized images.
        y: `(N, ...)` targets (or a nest of them).
        batch_size: examples per batch (the last batch may be smaller).
        seed: shuffle seed; each epoch is shuffled with `seed * 1009 + epoch`. `None`: the arrays' order,
            the same every epoch (validation).
    """

    x: np.ndarray
    y: Any
    batch_size: int
    seed: int | None = None

    def __post_init__(self) -> None:
        _check_batch_size(self.batch_size)

    def __len__(self) -> int:
        return len(self.x)

    def __call__(self, epoch: int = 0):
        import tensorflow as tf

        dataset = tf.data.Dataset.from_tensor_slices((self.x, self.y))
        if self.seed is not None:
            dataset = dataset.shuffle(len(self.x), seed=self.seed * 1009 + epoch, reshuffle_each_iteration=False)
        return dataset.batch(self.batch_size)

    def with_inputs(self, x: np.ndarray) -> ArrayBatches:
        """The same batches (same examples, order, targets) with `x` (one row per example) as inputs.

        Raises:
            ValueError: `x` has another number of rows.
        """
        if len(x) != len(self.x):
            raise ValueError(f"with_inputs needs {len(self.x)} rows, got {len(x)}")
        return dataclasses.replace(self, x=x)


@dataclass(frozen=True, eq=False)
class AugmentedBatches:
    """Training batches `(normalize(augment(x)), y)` drawn anew every epoch; call with a 0-based epoch.

    The epoch's order is `ArrayBatches`' (shuffle seed `seed * 1009 + epoch`); the augmentation of the i-th
    element of epoch e uses the stateless seed `fold_in((seed, e), i)`, so a run is reproducible and every
    epoch sees new draws. Augmentation acts on the images in [0, 1] (before the mean normalization, so
    intensity changes keep their meaning); the normalization `(x - mean) / scale` follows inside the map.
    Not an `ArrayBatches`: the independent strategy's precomputed features (`urep.training.features`) do not
    apply to it, and the frozen encoder runs at every step (its inputs change every epoch).

    Attributes:
        x: `(N, H, W, C)` float32 images in [0, 1] (NOT normalized).
        y: `(N, ...)` targets; masks `(N, H, W, 1)` when `masks`, else passed through (e.g. one-hot labels).
        batch_size: examples per batch.
        seed: shuffle and augmentation seed.
        options: keyword arguments of `urep.data.augment.paired_augment` (rotation, zoom, ...).
        masks: `y` holds masks that get the image's geometric transform.
        mean: subtracted after augmentation (the run's normalizer).
        scale: divisor after subtracting `mean`.
    """

    x: np.ndarray
    y: Any
    batch_size: int
    seed: int
    options: dict
    masks: bool = False
    mean: float = 0.0
    scale: float = 1.0

    def __post_init__(self) -> None:
        _check_batch_size(self.batch_size)

    def __len__(self) -> int:
        return len(self.x)

    def __call__(self, epoch: int = 0):
        import tensorflow as tf

        from urep.data.augment import paired_augment

        options, masks, mean, scale = dict(self.options), self.masks, float(self.mean), float(self.scale)
        base = tf.constant([self.seed, epoch], dtype=tf.int64)

        def view(index, element):
            image, target = element
            seed = tf.random.experimental.stateless_fold_in(base, index)
            image, mask = paired_augment(image, target if masks else None, seed, **options)
            return (image - mean) / scale, (mask if masks else target)

        dataset = tf.data.Dataset.from_tensor_slices((self.x, self.y))
        dataset = dataset.shuffle(len(self.x), seed=self.seed * 1009 + epoch, reshuffle_each_iteration=False)
        return dataset.enumerate().map(view, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True) \
            .batch(self.batch_size)
