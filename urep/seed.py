"""The one seed function: make a run repeatable."""

from __future__ import annotations

import logging
import os
import random

import numpy as np

logger = logging.getLogger(__name__)


def seed_everything(seed: int, deterministic: bool = False) -> int:
    """Seed Python, NumPy, TensorFlow and Keras from one integer.

    Args:
        seed: a non-negative integer.
        deterministic: also ask TensorFlow for deterministic kernels
            (`tf.config.experimental.enable_op_determinism`). Slower; needed for bit-exact resume tests.

    Returns:
        The seed, so callers can record it.

    Raises:
        ValueError: if `seed` is not a non-negative integer.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    seed = int(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    random.seed(seed)
    np.random.seed(seed)
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)  # seeds python, numpy and the TF/Keras backends together
    tf.random.set_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()
        logger.info("TensorFlow deterministic ops enabled (seed %d)", seed)
    return seed
