"""Noise for the denoising pre-processing task: Gaussian, Poisson (shot) and speckle.

Images in `[0, 1]` in, noisy images clipped to `[0, 1]` out: `gaussian` (level = sigma) `x + N(0, sigma^2)`;
`poisson` (level = peak) `Poisson(x * peak) / peak`, noise std `sqrt(x / peak)`; `speckle` (level = sigma)
`x + x * N(0, sigma^2)`. `add_noise` (NumPy) and `tf_add_noise` (stateless TensorFlow, for `tf.data`) have the
same statistics but different generators. `DEFAULT_NOISES`: docs/choices.md, "Noise levels".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

KINDS = ("gaussian", "poisson", "speckle")
DEFAULT_GAUSSIAN_SIGMAS = (0.01, 0.03, 0.05, 0.07, 0.10)
DEFAULT_POISSON_PEAK = 100.0


@dataclass(frozen=True)
class NoiseSpec:
    """One kind of noise at one level.

    Attributes:
        kind: `"gaussian"`, `"poisson"` or `"speckle"`.
        level: sigma (gaussian, speckle) or peak photon count (poisson); positive.
    """

    kind: str
    level: float

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown noise kind {self.kind!r}; expected one of {list(KINDS)}")
        level = float(self.level)
        if not math.isfinite(level) or level <= 0:
            what = "peak" if self.kind == "poisson" else "sigma"
            raise ValueError(f"noise {self.kind} needs a positive finite level ({what}), got {self.level!r}")
        object.__setattr__(self, "level", level)

    @property
    def name(self) -> str:
        """Short name for tables and file names, e.g. `"gaussian_0.03"`, `"poisson_100"`."""
        return f"{self.kind}_{self.level:g}"

    def __str__(self) -> str:
        return self.name


DEFAULT_NOISES = tuple(NoiseSpec("gaussian", s) for s in DEFAULT_GAUSSIAN_SIGMAS) + (
    NoiseSpec("poisson", DEFAULT_POISSON_PEAK),
)


def parse_noise(text: str | NoiseSpec) -> NoiseSpec:
    """Parse `"gaussian:0.03"` (or the `.name` form `"gaussian_0.03"`) into a `NoiseSpec`.

    Raises:
        ValueError: not of the form `kind:level`, unknown kind, or a level that is not a positive number.
    """
    if isinstance(text, NoiseSpec):
        return text
    cleaned = str(text).strip()
    for separator in (":", "_", "="):
        kind, found, level = cleaned.partition(separator)
        if found:
            break
    else:
        raise ValueError(f"cannot parse noise {text!r}; expected 'kind:level' such as 'gaussian:0.03' or 'poisson:100'")
    try:
        value = float(level)
    except ValueError as err:
        raise ValueError(f"cannot parse noise {text!r}: level {level!r} is not a number") from err
    return NoiseSpec(kind.strip().lower(), value)


def add_noise(x: np.ndarray, spec: NoiseSpec | str, seed: int | np.random.Generator) -> np.ndarray:
    """Add noise with NumPy, reproducibly.

    Args:
        x: image(s) of any shape, values in `[0, 1]`.
        spec: the noise (a `NoiseSpec` or a string for `parse_noise`).
        seed: integer seed or a `numpy.random.Generator`.

    Returns:
        float32 array of `x`'s shape, clipped to `[0, 1]`.
    """
    spec = parse_noise(spec)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    clean = np.asarray(x, dtype=np.float64)
    if spec.kind == "gaussian":
        noisy = clean + rng.normal(0.0, spec.level, clean.shape)
    elif spec.kind == "poisson":
        noisy = rng.poisson(np.clip(clean, 0.0, None) * spec.level) / spec.level
    else:
        noisy = clean + clean * rng.normal(0.0, spec.level, clean.shape)
    return np.clip(noisy, 0.0, 1.0).astype(np.float32)


def _seed_pair(seed: Any):
    import tensorflow as tf

    if isinstance(seed, (int, np.integer)):
        return tf.constant([int(seed), 0], dtype=tf.int64)
    pair = tf.convert_to_tensor(seed)
    if pair.dtype not in (tf.int32, tf.int64):
        raise ValueError(f"seed must be an int or a pair of ints, got dtype {pair.dtype.name}")
    if pair.shape.rank is not None and (pair.shape.rank != 1 or (pair.shape[0] is not None and pair.shape[0] != 2)):
        raise ValueError(f"seed must be an int or a pair of ints (shape [2]), got shape {pair.shape}")
    return tf.cast(pair, tf.int64)


def tf_add_noise(x: Any, spec: NoiseSpec | str, seed: Any) -> Any:
    """Add noise with TensorFlow stateless random ops (usable inside `tf.data.Dataset.map`).

    The same `(x, spec, seed)` always gives the same result, on any run. Inside `tf.data`, give each
    element its own seed, e.g. `ds.enumerate().map(lambda i, x: tf_add_noise(x, spec, [base, i]))`.

    Args:
        x: float tensor of any shape, values in `[0, 1]`.
        spec: the noise (a `NoiseSpec` or a string for `parse_noise`).
        seed: int, or a shape `[2]` int32/int64 tensor or sequence.

    Returns:
        Tensor of `x`'s shape and float dtype, clipped to `[0, 1]`.

    Raises:
        ValueError: bad spec or seed.
    """
    import tensorflow as tf

    spec = parse_noise(spec)
    pair = _seed_pair(seed)
    clean = tf.convert_to_tensor(x)
    if not clean.dtype.is_floating:
        clean = tf.cast(clean, tf.float32)
    shape = tf.shape(clean)
    if spec.kind == "gaussian":
        noisy = clean + tf.random.stateless_normal(shape, pair, stddev=spec.level, dtype=clean.dtype)
    elif spec.kind == "poisson":
        rate = tf.maximum(tf.cast(clean, tf.float32), 0.0) * spec.level
        counts = tf.random.stateless_poisson(shape, pair, lam=rate, dtype=tf.float32)
        noisy = tf.cast(counts / spec.level, clean.dtype)
    else:
        noisy = clean + clean * tf.random.stateless_normal(shape, pair, stddev=spec.level, dtype=clean.dtype)
    return tf.clip_by_value(noisy, 0.0, 1.0)


def epoch_noise(clean: np.ndarray, noises: Any, seed: int, epoch: int) -> np.ndarray:
    """The noisy copy of `clean` for one epoch: each image gets one of `noises`, in turn.

    Image `j` gets `noises[(j + epoch) % len(noises)]`, so every image meets every noise over
    `len(noises)` epochs; the draws of noise `i` come from `default_rng([seed, epoch, i])`. This is what the
    experiment pipeline and the tuner train the denoising source on.

    Args:
        clean: `(N, ...)` images in `[0, 1]`.
        noises: a sequence of noises, each a `NoiseSpec`, a string for `parse_noise`, or anything with `kind`
            and `level` (e.g. the experiment config's `NoiseLevel`).
        seed: the run's seed.
        epoch: the epoch (or any other stream number, e.g. a large one for a fixed validation copy).

    Returns:
        float32 array of `clean`'s shape.
    """
    specs = [n if isinstance(n, (NoiseSpec, str)) else NoiseSpec(n.kind, n.level) for n in noises]
    noisy = np.empty_like(clean)
    assignment = (np.arange(len(clean)) + epoch) % len(specs)
    for i, spec in enumerate(specs):
        index = np.flatnonzero(assignment == i)
        if index.size:
            noisy[index] = add_noise(clean[index], spec, np.random.default_rng([seed, epoch, i]))
    return noisy
