"""`ArrayBatches`: in-memory arrays as an `epoch -> tf.data.Dataset` training source whose inputs can be swapped.

The order of an epoch's batches depends only on the number of examples, `seed` and the epoch (shuffle seed
`seed * 1009 + epoch`, as the experiment pipeline has always used), never on the images. So
`batches.with_inputs(features)` yields exactly the same examples in the same batches with `features` in place
of the images; the independent strategy uses it to train heads on a frozen encoder's features computed once
(see `urep.training.features`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["ArrayBatches", "AugmentedBatches"]


def _as_tensors(cache: dict, x, y):
    """`x` and `y` as tensors, converted at the first call and kept in `cache`: an epoch's dataset gathers its
    rows from them instead of copying the arrays into a new dataset every epoch. (`cache` may hold other
    entries, e.g. `AugmentedBatches`' traced augmentation.)"""
    if "x" not in cache:
        import tensorflow as tf

        cache["x"] = tf.convert_to_tensor(x)
        cache["y"] = tf.nest.map_structure(tf.convert_to_tensor, y)
    return cache["x"], cache["y"]


def _order(n: int, shuffle_seed: int | None):
    """The row indices of one epoch: `0..n-1`, shuffled with `shuffle_seed` unless None. A shuffle's order
    depends on its seed and the number of elements only, so it is the order shuffling the rows themselves gave."""
    import tensorflow as tf

    rows = tf.data.Dataset.range(n)
    return rows if shuffle_seed is None else rows.shuffle(n, seed=shuffle_seed, reshuffle_each_iteration=False)


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
    _tensors: dict = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        _check_batch_size(self.batch_size)

    def __len__(self) -> int:
        return len(self.x)

    def __call__(self, epoch: int = 0):
        import tensorflow as tf

        x, y = _as_tensors(self._tensors, self.x, self.y)
        dataset = _order(len(self.x), None if self.seed is None else self.seed * 1009 + epoch).batch(self.batch_size)
        return dataset.map(lambda rows: (tf.gather(x, rows), tf.nest.map_structure(lambda t: tf.gather(t, rows), y)),
                           num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

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
    _tensors: dict = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        _check_batch_size(self.batch_size)

    def __len__(self) -> int:
        return len(self.x)

    def __call__(self, epoch: int = 0):
        import tensorflow as tf

        base = tf.constant([self.seed, epoch], dtype=tf.int64)
        view = self._view()
        dataset = _order(len(self.x), self.seed * 1009 + epoch)
        return dataset.enumerate().map(lambda index, row: view(base, index, row),
                                       num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).batch(self.batch_size)

    def _view(self):
        """The augmented, normalized example `(base seed, position, row) -> (x, y)`, one `tf.function` for
        every epoch (its epoch is in the base seed), so the augmentation is traced once, not once per epoch."""
        if "view" not in self._tensors:
            import tensorflow as tf

            from urep.data.augment import paired_augment

            options, masks, mean, scale = dict(self.options), self.masks, float(self.mean), float(self.scale)
            x, y = _as_tensors(self._tensors, self.x, self.y)

            @tf.function(autograph=False, input_signature=[tf.TensorSpec([2], tf.int64), tf.TensorSpec([], tf.int64),
                                                             tf.TensorSpec([], tf.int64)])
            def view(base, index, row):
                target = tf.nest.map_structure(lambda t: tf.gather(t, row), y)
                seed = tf.random.experimental.stateless_fold_in(base, index)
                image, mask = paired_augment(tf.gather(x, row), target if masks else None, seed, **options)
                return (image - mean) / scale, (mask if masks else target)

            self._tensors["view"] = view
        return self._tensors["view"]
