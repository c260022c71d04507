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

__all__ = ["ArrayBatches"]


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
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, (int, np.integer)) \
                or self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {self.batch_size!r}")

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
