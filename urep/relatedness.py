"""Task relatedness: is a target task's data close enough to the source modality to share its representation?

Intensity distances (1-Wasserstein, Kolmogorov-Smirnov on pooled pixels), feature distances on the shared
encoder's features (Fréchet distance, kernel MMD with a permutation p-value), a verdict per target
(`relatedness_table`) and empirical pairing (`run_pairwise_transfer`, `transfer_matrix`); after the preprint's
"Inter-task Relatedness". The choices where the preprint is silent: docs/design.md, "Task relatedness".
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.linalg
import scipy.stats

logger = logging.getLogger(__name__)

#: Largest normalized Fréchet distance (`normalized_frechet_distance`) still called related. Measured on the
#: small real public subsets at 64x64 with a Shenzhen source (150 images) against Montgomery (40),
#: JSRT (150), Kermany pediatric (150) and the 8 real Doppler frames: other CXR collections score 1.1-1.6 with
#: 8x8 thumbnails, 1.8-2.3 with an untrained `cdae` encoder and 2.4-2.8 with an untrained `dilated_cnn`
#: encoder; the Doppler frames 15.7, 37 and 71. Phantoms (64x64): a second CXR phantom set 0.26, Doppler
#: phantoms 7.6. 4 sits between "another collection of the same modality" and "another modality"; the margin
#: is smallest (1.4x) above CXR with the dilated CNN's features, so check it for a new encoder.
DEFAULT_THRESHOLD = 4.0
#: Level of the MMD permutation test.
DEFAULT_ALPHA = 0.05

TABLE_COLUMNS = (
    "n_source", "n_target", "wasserstein", "ks_statistic", "frechet", "frechet_normalized", "frechet_baseline",
    "mmd2", "mmd_p_value", "related",
)


# ---------------------------------------------------------------------------------------------- inputs
def _as_images(images: Any, name: str) -> np.ndarray:
    """Validate an image stack `(n, height, width)` or `(n, height, width, channels)`; return float64."""
    array = np.asarray(images)
    if array.ndim not in (3, 4):
        raise ValueError(
            f"{name}: expected images of shape (n, height, width) or (n, height, width, channels), "
            f"got shape {array.shape}"
        )
    if not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"{name}: expected numeric images, got dtype {array.dtype}")
    if array.shape[0] < 2:
        raise ValueError(f"{name}: need at least 2 images, got {array.shape[0]}")
    array = array.astype(np.float64)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name}: images contain NaN or infinite values")
    return array


def _as_features(features: Any, name: str) -> np.ndarray:
    """Validate a feature matrix `(n, dim)` with n >= 2; return float64."""
    array = np.asarray(features, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(f"{name}: expected features of shape (n, dim), got shape {array.shape}")
    if array.shape[0] < 2:
        raise ValueError(f"{name}: need at least 2 samples, got {array.shape[0]}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name}: features contain NaN or infinite values")
    return array


# ------------------------------------------------------------------------------------ intensity distances
def _pooled_pixels(images: np.ndarray, max_pixels: int, rng: np.random.Generator) -> np.ndarray:
    pixels = images.reshape(-1)
    if pixels.size > max_pixels:
        pixels = rng.choice(pixels, size=max_pixels, replace=False)
    return pixels


def intensity_distances(
    source: Any, target: Any, max_pixels: int = 200_000, seed: int = 0
) -> dict[str, float]:
    """Distances between the pooled pixel intensities of two image sets.

    Args:
        source: images `(n, height, width[, channels])`, float in [0, 1].
        target: images `(m, height', width'[, channels'])`, float in [0, 1]; sizes may differ from `source`.
        max_pixels: at most this many pixels are drawn (without replacement, seeded) from each set.
        seed: seed of the pixel draw.

    Returns:
        `{"wasserstein": W1 in intensity units, "ks_statistic": KS D in [0, 1]}`; both 0 for identical sets.

    Raises:
        ValueError: malformed images or `max_pixels < 1`.
    """
    if max_pixels < 1:
        raise ValueError(f"max_pixels must be >= 1, got {max_pixels}")
    rng = np.random.default_rng(seed)
    u = _pooled_pixels(_as_images(source, "source"), max_pixels, rng)
    v = _pooled_pixels(_as_images(target, "target"), max_pixels, rng)
    return {
        "wasserstein": float(scipy.stats.wasserstein_distance(u, v)),
        "ks_statistic": float(scipy.stats.ks_2samp(u, v).statistic),
    }


# -------------------------------------------------------------------------------------------- features
def thumbnail_features(images: Any, thumbnail_size: int = 8) -> np.ndarray:
    """Model-free features: each image area-resized to a square thumbnail and flattened.

    Channels are averaged first, so grayscale and RGB sets are comparable.

    Args:
        images: `(n, height, width[, channels])`.
        thumbnail_size: side of the thumbnail.

    Returns:
        `(n, thumbnail_size ** 2)` float64.
    """
    import cv2

    array = _as_images(images, "images")
    if thumbnail_size < 1:
        raise ValueError(f"thumbnail_size must be >= 1, got {thumbnail_size}")
    if array.ndim == 4:
        array = array.mean(axis=-1)
    size = (thumbnail_size, thumbnail_size)
    thumbs = [cv2.resize(image.astype(np.float32), size, interpolation=cv2.INTER_AREA) for image in array]
    return np.stack(thumbs).reshape(len(thumbs), -1).astype(np.float64)


def encoder_features(
    images: Any, encoder: Any, layer_name: str = "encoder_out", batch_size: int = 32
) -> np.ndarray:
    """Globally average-pooled activations of the shared encoder.

    Args:
        images: `(n, height, width[, channels])` matching the encoder's input size. A one-channel set fed to
            a three-channel encoder is repeated over channels (U-Rep 2 takes 3-channel input).
        encoder: a Keras model. If it has a layer named `layer_name` whose output is not already the model's
            output (a whole source model, not a truncated encoder), the features are taken at that layer.
        layer_name: the documented truncation point.
        batch_size: prediction batch size.

    Returns:
        `(n, channels_of_layer)` float64 (features of a 4-D activation are averaged over height and width).

    Raises:
        ValueError: the images do not fit the encoder's input shape.
    """
    import keras

    array = _as_images(images, "images")
    if array.ndim == 3:
        array = array[..., None]
    model = encoder
    names = [layer.name for layer in encoder.layers]
    if layer_name in names and encoder.get_layer(layer_name).output is not encoder.outputs[0]:
        model = keras.Model(encoder.inputs, encoder.get_layer(layer_name).output)
    expected = tuple(model.inputs[0].shape[1:])
    if array.shape[-1] == 1 and expected[-1] == 3:
        array = np.repeat(array, 3, axis=-1)
    for got, want in zip(array.shape[1:], expected, strict=True):
        if want is not None and got != want:
            raise ValueError(
                f"images of shape {array.shape[1:]} do not fit the encoder's input shape {expected}"
            )
    activations = np.asarray(model.predict(array.astype(np.float32), batch_size=batch_size, verbose=0))
    if activations.ndim == 4:
        activations = activations.mean(axis=(1, 2))
    return activations.reshape(len(activations), -1).astype(np.float64)


# ---------------------------------------------------------------------------------- Fréchet distance
def _covariance(features: np.ndarray, shrinkage: str | float | None) -> np.ndarray:
    if shrinkage == "ledoit-wolf":
        from sklearn.covariance import ledoit_wolf

        return ledoit_wolf(features)[0]
    sample = np.atleast_2d(np.cov(features, rowvar=False))
    if shrinkage is None:
        return sample
    if isinstance(shrinkage, str) or not 0.0 <= float(shrinkage) <= 1.0:
        raise ValueError(f"shrinkage must be 'ledoit-wolf', None or a float in [0, 1], got {shrinkage!r}")
    dim = sample.shape[0]
    target = np.trace(sample) / dim * np.eye(dim)
    return (1.0 - float(shrinkage)) * sample + float(shrinkage) * target


def _sqrtm_psd(matrix: np.ndarray, eps: float) -> np.ndarray:
    """Symmetric square root of a (numerically) positive semi-definite matrix with scipy.linalg.sqrtm."""
    matrix = (matrix + matrix.T) / 2.0
    root = scipy.linalg.sqrtm(matrix)
    if not np.all(np.isfinite(root)):
        root = scipy.linalg.sqrtm(matrix + eps * np.eye(matrix.shape[0]))
    return np.real(root)


def _frechet_parts(
    features_a: Any, features_b: Any, shrinkage: str | float | None, eps: float
) -> tuple[float, float, float]:
    """(squared Fréchet distance, tr C_a, tr C_b)."""
    a = _as_features(features_a, "features_a")
    b = _as_features(features_b, "features_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature dimensions differ: {a.shape[1]} vs {b.shape[1]}")
    cov_a = _covariance(a, shrinkage)
    cov_b = _covariance(b, shrinkage)
    root_a = _sqrtm_psd(cov_a, eps)
    cross = _sqrtm_psd(root_a @ cov_b @ root_a, eps)
    diff = a.mean(axis=0) - b.mean(axis=0)
    trace_a, trace_b = float(np.trace(cov_a)), float(np.trace(cov_b))
    value = float(diff @ diff + trace_a + trace_b - 2.0 * np.trace(cross))
    return max(value, 0.0), trace_a, trace_b


def frechet_distance(
    features_a: Any, features_b: Any, shrinkage: str | float | None = "ledoit-wolf", eps: float = 1e-6
) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (the FID formula).

    `d² = |mu_a - mu_b|² + tr(C_a + C_b - 2 (C_a^½ C_b C_a^½)^½)`. The symmetric form of the cross term has
    the same trace as `(C_a C_b)^½` and keeps both square roots (`scipy.linalg.sqrtm`) on symmetric PSD
    matrices.

    Args:
        features_a: `(n, dim)`, n >= 2.
        features_b: `(m, dim)`, m >= 2.
        shrinkage: covariance estimate: `"ledoit-wolf"` (default; automatic shrinkage towards a scaled
            identity, well-conditioned when n < dim), a float in [0, 1] (fixed shrinkage towards
            `tr(C)/dim * I`), or None (plain sample covariance).
        eps: diagonal offset added only if `sqrtm` returns non-finite values.

    Returns:
        The squared Fréchet distance (as in FID), >= 0; 0 for identical sets up to rounding.

    Raises:
        ValueError: malformed features or different feature dimensions.
    """
    return _frechet_parts(features_a, features_b, shrinkage, eps)[0]


def normalized_frechet_distance(
    features_a: Any, features_b: Any, shrinkage: str | float | None = "ledoit-wolf", eps: float = 1e-6
) -> float:
    """Fréchet distance divided by the total variance of both sets, `d² / (tr C_a + tr C_b)`.

    A scale-free effect size: invariant to a global rescaling of the features (encoder activations have no
    natural unit), 0 for identical sets. The covariance term contributes at most 1, so values well above 1
    mean the set means lie apart by more than the sets' own spread: `d²/(tr C_a + tr C_b) > 4` implies a
    mean shift of more than `sqrt(3 (tr C_a + tr C_b))`.

    Args:
        features_a: `(n, dim)`, n >= 2.
        features_b: `(m, dim)`, m >= 2.
        shrinkage: see `frechet_distance`.
        eps: see `frechet_distance`.

    Returns:
        The normalized distance, >= 0 (0 when both sets have zero variance and equal means).
    """
    value, trace_a, trace_b = _frechet_parts(features_a, features_b, shrinkage, eps)
    total = trace_a + trace_b
    if total <= 0:
        return 0.0 if value == 0 else float("inf")
    return value / total


# ----------------------------------------------------------------------------------------------- MMD
@dataclass(frozen=True)
class MMDResult:
    """Kernel two-sample test result.

    Attributes:
        mmd2: biased (V-statistic) MMD² estimate, in [0, 2].
        p_value: permutation p-value `(1 + #{perm >= observed}) / (1 + n_permutations)`.
        bandwidth: RBF bandwidth sigma used, `k(x, y) = exp(-|x - y|² / (2 sigma²))`.
        n_permutations: number of label permutations drawn.
    """

    mmd2: float
    p_value: float
    bandwidth: float
    n_permutations: int


def _squared_distances(z: np.ndarray) -> np.ndarray:
    norms = np.einsum("ij,ij->i", z, z)
    d2 = norms[:, None] + norms[None, :] - 2.0 * z @ z.T
    np.fill_diagonal(d2, 0.0)
    return np.maximum(d2, 0.0)


def median_bandwidth(features: Any) -> float:
    """Median heuristic: sigma = sqrt(median of the pairwise squared distances / 2) over distinct pairs.

    With `k = exp(-d² / (2 sigma²))` this is `exp(-d² / median(d²))`. Falls back to 1.0 when all points
    coincide (median 0).
    """
    z = _as_features(features, "features")
    d2 = _squared_distances(z)
    median = float(np.median(d2[np.triu_indices(len(z), k=1)]))
    return float(np.sqrt(median / 2.0)) if median > 0 else 1.0


def mmd_test(
    features_a: Any,
    features_b: Any,
    n_permutations: int = 200,
    seed: int = 0,
    bandwidth: float | None = None,
) -> MMDResult:
    """Kernel MMD two-sample test with an RBF kernel and a permutation p-value.

    The bandwidth (median heuristic on the pooled sample by default) and the kernel matrix are computed once;
    each permutation reassigns the pooled samples to two groups of the original sizes.

    Args:
        features_a: `(n, dim)`, n >= 2.
        features_b: `(m, dim)`, m >= 2.
        n_permutations: label permutations for the p-value (>= 1).
        seed: seed of the permutations.
        bandwidth: RBF sigma; None for the median heuristic.

    Returns:
        An `MMDResult`.

    Raises:
        ValueError: malformed features, different dimensions, `n_permutations < 1` or `bandwidth <= 0`.
    """
    a = _as_features(features_a, "features_a")
    b = _as_features(features_b, "features_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature dimensions differ: {a.shape[1]} vs {b.shape[1]}")
    if n_permutations < 1:
        raise ValueError(f"n_permutations must be >= 1, got {n_permutations}")
    pooled = np.concatenate([a, b])
    sigma = median_bandwidth(pooled) if bandwidth is None else float(bandwidth)
    if sigma <= 0:
        raise ValueError(f"bandwidth must be > 0, got {bandwidth}")
    kernel = np.exp(-_squared_distances(pooled) / (2.0 * sigma**2))
    n, m = len(a), len(b)

    def statistic(member_a: np.ndarray) -> np.ndarray:
        """MMD² for rows of `member_a`: 0/1 indicators (..., n + m) of group A."""
        weights = member_a / n - (1.0 - member_a) / m
        return np.einsum("...i,ij,...j->...", weights, kernel, weights)

    observed = float(statistic(np.concatenate([np.ones(n), np.zeros(m)])))
    rng = np.random.default_rng(seed)
    labels = np.zeros((n_permutations, n + m))
    for row in labels:
        row[rng.permutation(n + m)[:n]] = 1.0
    permuted = statistic(labels)
    exceed = int(np.sum(permuted >= observed - 1e-12))
    return MMDResult(
        mmd2=max(observed, 0.0),
        p_value=(1.0 + exceed) / (1.0 + n_permutations),
        bandwidth=sigma,
        n_permutations=n_permutations,
    )


# -------------------------------------------------------------------------------- within-source baseline
def source_baseline(
    source_features: Any,
    sample_size: int,
    n_splits: int = 5,
    seed: int = 0,
    shrinkage: str | float | None = "ledoit-wolf",
) -> float:
    """Normalized Fréchet distance between two disjoint parts of the source: the sampling-noise floor.

    For each of `n_splits` random splits the source is cut into halves A and B, and A is compared with a
    `min(|B|, sample_size)`-sample of B. Passing the target's size as `sample_size` matches the small-sample
    bias of the source-vs-target distance (the Fréchet distance of finite samples is biased upwards, more so
    for small sets), so a target indistinguishable from the source scores about this value.

    Args:
        source_features: `(n, dim)`, n >= 4.
        sample_size: size of the comparison sample (the target's size), >= 2.
        n_splits: random splits averaged.
        seed: seed of the splits and subsamples.
        shrinkage: see `frechet_distance`.

    Returns:
        The mean `normalized_frechet_distance` over the splits.

    Raises:
        ValueError: fewer than 4 source samples, `sample_size < 2` or `n_splits < 1`.
    """
    source = _as_features(source_features, "source_features")
    if len(source) < 4:
        raise ValueError(f"the within-source baseline needs at least 4 source samples, got {len(source)}")
    if sample_size < 2:
        raise ValueError(f"sample_size must be >= 2, got {sample_size}")
    if n_splits < 1:
        raise ValueError(f"n_splits must be >= 1, got {n_splits}")
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_splits):
        order = rng.permutation(len(source))
        half_a, half_b = source[order[: len(source) // 2]], source[order[len(source) // 2:]]
        sample_b = half_b[rng.permutation(len(half_b))[: min(len(half_b), sample_size)]]
        values.append(normalized_frechet_distance(half_a, sample_b, shrinkage))
    return float(np.mean(values))


# ------------------------------------------------------------------------------------------- the table
def relatedness_table(
    source_images: Any,
    targets: Mapping[str, Any],
    encoder: Any = None,
    threshold: float = DEFAULT_THRESHOLD,
    alpha: float = DEFAULT_ALPHA,
    n_permutations: int = 200,
    n_splits: int = 5,
    seed: int = 0,
    shrinkage: str | float | None = "ledoit-wolf",
    max_pixels: int = 200_000,
    thumbnail_size: int = 8,
    source_name: str = "source",
) -> pd.DataFrame:
    """Distribution relatedness of each target set to the source set, with a verdict and warnings.

    Args:
        source_images: the source modality's images `(n, height, width[, channels])` in [0, 1], n >= 4.
        targets: target name -> images `(m, height, width[, channels])`, m >= 2. With an encoder, every set
            must fit its input shape; without one, sizes may differ.
        encoder: the shared encoder (a Keras model; features at `encoder_out`, see `encoder_features`), or
            None for thumbnail features (`thumbnail_features`).
        threshold: largest `frechet_normalized` still called related (see `DEFAULT_THRESHOLD`).
        alpha: level of the MMD permutation test.
        n_permutations: permutations of the MMD test.
        n_splits: random source splits of the baseline.
        seed: seed of every random draw (pixel sampling, splits, permutations).
        shrinkage: covariance estimate of the Fréchet distance (see `frechet_distance`).
        max_pixels: pixels drawn per set for the intensity distances.
        thumbnail_size: thumbnail side when `encoder` is None.
        source_name: how the source is named in log messages.

    Returns:
        A DataFrame indexed by target name (index name `target`) with columns `TABLE_COLUMNS`:
        `n_source, n_target`, the intensity distances `wasserstein, ks_statistic`, the feature distances
        `frechet` (squared Fréchet distance), `frechet_normalized` (divided by the total variance),
        `frechet_baseline` (the normalized distance between two source halves at the target's sample size,
        `source_baseline`), `mmd2, mmd_p_value`, and `related` (bool): False when
        `frechet_normalized > threshold` and `mmd_p_value < alpha`. A warning is logged for each unrelated
        target.

    Raises:
        ValueError: no targets, bad threshold/alpha, or malformed images.
    """
    if not targets:
        raise ValueError("targets is empty: give at least one target set")
    if not threshold > 0:
        raise ValueError(f"threshold must be > 0, got {threshold}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    source = _as_images(source_images, source_name)

    def features(images: np.ndarray) -> np.ndarray:
        if encoder is None:
            return thumbnail_features(images, thumbnail_size)
        return encoder_features(images, encoder)

    source_features = features(source)
    rows = []
    for name, images in targets.items():
        target = _as_images(images, f"target {name!r}")
        target_features = features(target)
        intensity = intensity_distances(source, target, max_pixels=max_pixels, seed=seed)
        distance, trace_source, trace_target = _frechet_parts(source_features, target_features, shrinkage, 1e-6)
        total = trace_source + trace_target
        normalized = distance / total if total > 0 else (0.0 if distance == 0 else float("inf"))
        baseline = source_baseline(
            source_features, len(target), n_splits=n_splits, seed=seed, shrinkage=shrinkage
        )
        mmd = mmd_test(source_features, target_features, n_permutations=n_permutations, seed=seed)
        related = not (normalized > threshold and mmd.p_value < alpha)
        rows.append({
            "target": name,
            "n_source": len(source),
            "n_target": len(target),
            **intensity,
            "frechet": distance,
            "frechet_normalized": normalized,
            "frechet_baseline": baseline,
            "mmd2": mmd.mmd2,
            "mmd_p_value": mmd.p_value,
            "related": related,
        })
        if not related:
            logger.warning(
                "target %r looks unrelated to %s: normalized Fréchet distance %.2f > threshold %.2f "
                "(within-%s baseline %.2f) and the MMD test rejects equal distributions (p=%.3g < %.3g); "
                "sharing the %s representation with it risks negative transfer",
                name, source_name, normalized, threshold, source_name, baseline, mmd.p_value, alpha,
                source_name,
            )
        else:
            logger.info(
                "target %r: normalized Fréchet distance %.2f (threshold %.2f), MMD p=%.3g -> related",
                name, normalized, threshold, mmd.p_value,
            )
    return pd.DataFrame(rows).set_index("target")[list(TABLE_COLUMNS)]


# ----------------------------------------------------------------------------------- empirical pairing
def _orient(higher_is_better: Mapping[str, bool] | bool, tasks: Sequence[str]) -> dict[str, bool]:
    if isinstance(higher_is_better, bool):
        return dict.fromkeys(tasks, higher_is_better)
    missing = [task for task in tasks if task not in higher_is_better]
    if missing:
        raise ValueError(f"higher_is_better has no entry for tasks {missing}")
    return {task: bool(higher_is_better[task]) for task in tasks}


def transfer_matrix(
    alone_scores: Mapping[str, float],
    pair_scores: Mapping[tuple[str, str], float],
    higher_is_better: Mapping[str, bool] | bool = True,
) -> pd.DataFrame:
    """Gain (> 0) or loss (< 0) of each task from being trained together with each partner.

    `gain[task, partner] = score(task | trained with partner) - score(task | trained alone)`, sign-flipped
    for metrics where lower is better (losses, errors), so a positive entry always means positive transfer
    and a negative one negative transfer. Units are those of each task's metric.

    Args:
        alone_scores: task -> its score trained alone.
        pair_scores: `(task, partner)` -> the task's score when trained jointly with the partner.
        higher_is_better: one bool for all tasks, or task -> bool.

    Returns:
        Square DataFrame, rows `task`, columns `partner`, both in the order of `alone_scores`; the diagonal
        and pairs absent from `pair_scores` are NaN (absent pairs are logged).

    Raises:
        ValueError: a pair names a task without an alone score, pairs a task with itself, or a score is
            not finite.
    """
    tasks = list(alone_scores)
    if not tasks:
        raise ValueError("alone_scores is empty")
    orient = _orient(higher_is_better, tasks)
    for task, score in alone_scores.items():
        if not np.isfinite(score):
            raise ValueError(f"alone score of task {task!r} is not finite: {score!r}")
    matrix = pd.DataFrame(np.nan, index=pd.Index(tasks, name="task"), columns=pd.Index(tasks, name="partner"))
    for key, score in pair_scores.items():
        if not (isinstance(key, tuple) and len(key) == 2):
            raise ValueError(f"pair_scores keys must be (task, partner) tuples, got {key!r}")
        task, partner = key
        unknown = [name for name in key if name not in alone_scores]
        if unknown:
            raise ValueError(f"pair {key!r} names tasks without an alone score: {unknown}")
        if task == partner:
            raise ValueError(f"pair {key!r} pairs a task with itself")
        if not np.isfinite(score):
            raise ValueError(f"score of pair {key!r} is not finite: {score!r}")
        gain = float(score) - float(alone_scores[task])
        matrix.loc[task, partner] = gain if orient[task] else -gain
    absent = [(t, p) for t in tasks for p in tasks if t != p and (t, p) not in pair_scores]
    if absent:
        logger.info("transfer matrix: no joint score for %d pairs, left NaN: %s", len(absent), absent)
    return matrix


@dataclass
class PairwiseTransfer:
    """Result of `run_pairwise_transfer`.

    Attributes:
        alone: task -> score trained alone.
        pairs: `(task, partner)` -> the task's score trained jointly with the partner.
        matrix: `transfer_matrix(alone, pairs, higher_is_better)`.
    """

    alone: dict[str, float]
    pairs: dict[tuple[str, str], float]
    matrix: pd.DataFrame


def _scores(result: Any, group: tuple[str, ...]) -> dict[str, float]:
    if not isinstance(result, Mapping):
        raise TypeError(f"train_fn{group!r} must return a mapping task -> score, got {type(result).__name__}")
    missing = [task for task in group if task not in result]
    if missing:
        raise ValueError(f"train_fn{group!r} returned no score for tasks {missing} (got {sorted(result)})")
    return {task: float(result[task]) for task in group}


def run_pairwise_transfer(
    tasks: Sequence[str],
    train_fn: Callable[[tuple[str, ...]], Mapping[str, float]],
    higher_is_better: Mapping[str, bool] | bool = True,
) -> PairwiseTransfer:
    """Train each task alone and every unordered pair jointly, and tabulate the transfer.

    `train_fn(group)` trains the tasks of `group` (a 1-tuple or a 2-tuple of task names) together on the same
    shared representation, starting from the same initial weights every call, and returns each task's
    validation/test score. The experiments runner passes a closure around the real joint strategy; tests
    pass a fake. `len(tasks) + len(tasks) * (len(tasks) - 1) / 2` calls are made, in a fixed order.

    Args:
        tasks: distinct task names, at least 2.
        train_fn: see above.
        higher_is_better: one bool for all tasks, or task -> bool.

    Returns:
        A `PairwiseTransfer`.

    Raises:
        ValueError: fewer than 2 or duplicate tasks, or `train_fn` returned no score for a task it trained.
        TypeError: `train_fn` did not return a mapping.
    """
    tasks = list(tasks)
    if len(tasks) < 2:
        raise ValueError(f"pairwise transfer needs at least 2 tasks, got {tasks}")
    if len(set(tasks)) != len(tasks):
        raise ValueError(f"task names must be distinct, got {tasks}")
    alone: dict[str, float] = {}
    for task in tasks:
        logger.info("pairwise transfer: training %r alone", task)
        alone[task] = _scores(train_fn((task,)), (task,))[task]
    pairs: dict[tuple[str, str], float] = {}
    for first, second in itertools.combinations(tasks, 2):
        logger.info("pairwise transfer: training %r with %r", first, second)
        scores = _scores(train_fn((first, second)), (first, second))
        pairs[(first, second)] = scores[first]
        pairs[(second, first)] = scores[second]
    return PairwiseTransfer(alone, pairs, transfer_matrix(alone, pairs, higher_is_better))


def plot_transfer_matrix(matrix: pd.DataFrame, path: str | os.PathLike, title: str | None = None) -> Path:
    """Heat map of a transfer matrix: blue = positive transfer, red = negative, annotated values.

    The colour scale is symmetric around 0 so the sign reads at a glance. Saved atomically.

    Args:
        matrix: a `transfer_matrix` result (rows task, columns partner).
        path: output image file (`.png`, `.pdf`, `.svg`).
        title: figure title; defaults to "Transfer: gain of each task from each partner".

    Returns:
        The written path.
    """
    from urep.io import atomic_save
    from urep.plotting import new_figure

    values = matrix.to_numpy(dtype=float)
    finite = values[np.isfinite(values)]
    limit = float(np.max(np.abs(finite))) if finite.size and np.max(np.abs(finite)) > 0 else 1.0
    size = 1.2 + 0.9 * max(len(matrix.columns), 2)
    fig = new_figure(figsize=(size + 1.5, size))
    ax = fig.subplots()
    image = ax.imshow(np.ma.masked_invalid(values), cmap="RdBu", vmin=-limit, vmax=limit)
    ax.set_xticks(range(len(matrix.columns)), [str(c) for c in matrix.columns], rotation=45, ha="right")
    ax.set_yticks(range(len(matrix.index)), [str(i) for i in matrix.index])
    ax.set_xlabel("partner (trained jointly with)")
    ax.set_ylabel("task (scored)")
    for (row, col), value in np.ndenumerate(values):
        text = "—" if not np.isfinite(value) else f"{value:+.3f}"
        ax.text(col, row, text, ha="center", va="center", fontsize=9,
                color="white" if np.isfinite(value) and abs(value) > 0.6 * limit else "black")
    fig.colorbar(image, ax=ax, label="gain over training alone")
    ax.set_title(title or "Transfer: gain of each task from each partner")
    fig.tight_layout()
    return atomic_save(path, lambda tmp: fig.savefig(tmp, dpi=120))
