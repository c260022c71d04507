"""Paired significance tests between two models evaluated on the same samples.

* `mcnemar`: per-sample correctness of two classifiers (the papers' test, p < 0.05 between strategies and
  against the baseline).
* `wilcoxon_paired`: per-image scores (e.g. Dice from `urep.metrics.segmentation_metrics(...)["per_image"]`)
  of two segmentation models.
* `auc_interval` and `delong`: the variance of a binary ROC AUC and the paired test of two AUCs on the same
  samples (DeLong, DeLong & Clarke-Pearson, Biometrics 1988), e.g. to say whether an AUC of 0.58 on 40 images
  is distinguishable from chance or from a reference's 0.72.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats

logger = logging.getLogger(__name__)

#: Discordant-pair count below which McNemar's test uses the exact binomial distribution.
EXACT_THRESHOLD = 25


@dataclass(frozen=True)
class McNemarResult:
    """Outcome of McNemar's test.

    Attributes:
        statistic: `min(b, c)` for the exact test; the continuity-corrected chi-square otherwise.
        p_value: two-sided p-value.
        b: samples model A got right and model B got wrong.
        c: samples model A got wrong and model B got right.
        method: `"exact"` (binomial) or `"chi2"` (chi-square, 1 degree of freedom, continuity corrected).
    """

    statistic: float
    p_value: float
    b: int
    c: int
    method: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class WilcoxonResult:
    """Outcome of the Wilcoxon signed-rank test on paired scores.

    Attributes:
        statistic: SciPy's statistic (the smaller rank sum for a two-sided test); 0 when all differences are 0.
        p_value: p-value; 1.0 when all paired differences are zero (no evidence of any difference).
        n: number of pairs.
        n_nonzero: pairs with a non-zero difference (the ones the default `zero_method="wilcox"` ranks).
        median_difference: median of `scores_a - scores_b`.
        note: empty, or why the result was set without running the test.
    """

    statistic: float
    p_value: float
    n: int
    n_nonzero: int
    median_difference: float
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _as_bool_vector(values: Any, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a 1-D sequence of per-sample correctness, got shape {array.shape}")
    if array.dtype != bool:
        if not np.all(np.isin(array, (0, 1))):
            raise ValueError(f"{name} must hold booleans or 0/1, got values {np.unique(array)[:5].tolist()}")
        array = array.astype(bool)
    return array


def mcnemar(
    correct_a: Any,
    correct_b: Any,
    exact: bool | None = None,
    exact_threshold: int = EXACT_THRESHOLD,
) -> McNemarResult:
    """McNemar's test of two classifiers on the same samples.

    Only discordant pairs matter: `b` = A right / B wrong, `c` = A wrong / B right. Under the null hypothesis
    (equal error rates) `b ~ Binomial(b + c, 1/2)`.

    * exact (default when `b + c < exact_threshold`): two-sided binomial p-value
      `scipy.stats.binomtest(min(b, c), b + c, 0.5)`; statistic `min(b, c)`.
    * chi-square otherwise: `(max(|b - c| - 1, 0))**2 / (b + c)` with Edwards' continuity correction, p-value
      from the chi-square distribution with 1 degree of freedom. The `max(., 0)` keeps `b == c` at statistic 0
      and p = 1 (the unclamped textbook formula would give `1 / (b + c)` there).
    * no discordant pairs (`b + c == 0`): the models never disagree, statistic 0, p-value 1, method
      `"exact"`.

    Args:
        correct_a: `(N,)` booleans (or 0/1): was model A right on each sample.
        correct_b: `(N,)` same for model B, same samples in the same order.
        exact: force the exact (`True`) or chi-square (`False`) test; `None` picks by `exact_threshold`.
        exact_threshold: discordant count below which the exact test is used (25, the common rule of thumb).

    Returns:
        `McNemarResult(statistic, p_value, b, c, method)`.

    Raises:
        ValueError: the inputs are not 1-D boolean-like vectors of the same length.
    """
    a = _as_bool_vector(correct_a, "correct_a")
    b_vec = _as_bool_vector(correct_b, "correct_b")
    if a.shape != b_vec.shape:
        raise ValueError(f"correct_a has {a.size} samples but correct_b has {b_vec.size}")
    b = int(np.sum(a & ~b_vec))
    c = int(np.sum(~a & b_vec))
    discordant = b + c
    if exact is None:
        exact = discordant < exact_threshold
    if discordant == 0:
        return McNemarResult(statistic=0.0, p_value=1.0, b=b, c=c, method="exact")
    if exact:
        p_value = stats.binomtest(min(b, c), discordant, 0.5, alternative="two-sided").pvalue
        return McNemarResult(statistic=float(min(b, c)), p_value=float(p_value), b=b, c=c, method="exact")
    statistic = max(abs(b - c) - 1, 0) ** 2 / discordant
    p_value = stats.chi2.sf(statistic, df=1)
    return McNemarResult(statistic=float(statistic), p_value=float(p_value), b=b, c=c, method="chi2")


def wilcoxon_paired(
    scores_a: Any,
    scores_b: Any,
    alternative: str = "two-sided",
    zero_method: str = "wilcox",
) -> WilcoxonResult:
    """Wilcoxon signed-rank test on paired per-image scores (`scipy.stats.wilcoxon`).

    Degenerate input: when every paired difference is zero (identical scores, e.g. two models with the same
    Dice on every image) the test is undefined; the result is statistic 0, p-value 1.0 and a `note` saying
    so, instead of SciPy's error or NaN.

    Args:
        scores_a: `(N,)` per-image scores of model A.
        scores_b: `(N,)` per-image scores of model B, same images in the same order.
        alternative: `"two-sided"`, `"greater"` (A > B) or `"less"`.
        zero_method: how zero differences are treated (SciPy's `"wilcox"`, `"pratt"` or `"zsplit"`).

    Returns:
        `WilcoxonResult(statistic, p_value, n, n_nonzero, median_difference, note)`.

    Raises:
        ValueError: the inputs are not 1-D, differ in length, are empty or hold NaN/inf.
    """
    a = np.asarray(scores_a, dtype=np.float64)
    b = np.asarray(scores_b, dtype=np.float64)
    if a.ndim != 1 or b.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"scores_a {a.shape} and scores_b {b.shape} must be 1-D and of the same length")
    if a.size == 0:
        raise ValueError("wilcoxon_paired needs at least one pair, got 0")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("scores contain NaN or infinite values; drop or fill them explicitly first")
    differences = a - b
    n_nonzero = int(np.count_nonzero(differences))
    median = float(np.median(differences))
    if n_nonzero == 0:
        note = "all paired differences are zero: no evidence of a difference (p = 1)"
        logger.info("wilcoxon_paired: %s", note)
        return WilcoxonResult(0.0, 1.0, int(a.size), 0, median, note)
    result = stats.wilcoxon(a, b, zero_method=zero_method, alternative=alternative)
    return WilcoxonResult(float(result.statistic), float(result.pvalue), int(a.size), n_nonzero, median)


@dataclass(frozen=True)
class AucInterval:
    """A binary ROC AUC with DeLong's standard error and a normal-approximation interval.

    Attributes:
        auc: the ROC AUC (ties count 1/2, as `sklearn.metrics.roc_auc_score`).
        se: DeLong's standard error.
        low: lower end of the interval, clipped to [0, 1].
        high: upper end, clipped to [0, 1].
        level: the interval's coverage (0.95).
        n_positive: samples of the positive class.
        n_negative: samples of the negative class.
    """

    auc: float
    se: float
    low: float
    high: float
    level: float
    n_positive: int
    n_negative: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DeLongResult:
    """Outcome of DeLong's paired test of two ROC AUCs on the same samples.

    Attributes:
        auc_a: AUC of model A.
        auc_b: AUC of model B.
        difference: `auc_a - auc_b`.
        statistic: the z statistic `difference / se(difference)` (0 when the difference and its se are 0).
        p_value: two-sided p-value from the standard normal distribution.
        n: number of samples.
        note: empty, or why the result was set without the normal approximation.
    """

    auc_a: float
    auc_b: float
    difference: float
    statistic: float
    p_value: float
    n: int
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _placements(labels: Any, scores: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
    """DeLong's structural components: for each positive the fraction of negatives it outranks (V10), for
    each negative the fraction of positives that outrank it (V01); ties count 1/2. Computed from mid-ranks
    (Sun & Xu, IEEE Signal Processing Letters 2014), O(N log N). `scores` may be `(N,)` or `(K, N)`."""
    y = np.asarray(labels)
    x = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    if y.ndim != 1 or x.shape[1] != y.size:
        raise ValueError(f"{name}: labels {y.shape} and scores {np.shape(scores)} must be 1-D of the same length")
    if not np.all(np.isin(y, (0, 1))):
        raise ValueError(f"{name}: labels must be 0/1 (1 = positive), got values {np.unique(y)[:5].tolist()}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name}: scores contain NaN or infinite values")
    positive = y.astype(bool)
    m, n = int(positive.sum()), int((~positive).sum())
    if m == 0 or n == 0:
        raise ValueError(f"{name}: needs both classes, got {m} positive and {n} negative samples")
    combined = stats.rankdata(x, axis=1)
    within_pos = stats.rankdata(x[:, positive], axis=1)
    within_neg = stats.rankdata(x[:, ~positive], axis=1)
    v10 = (combined[:, positive] - within_pos) / n
    v01 = 1.0 - (combined[:, ~positive] - within_neg) / m
    return v10, v01


def _delong_covariance(v10: np.ndarray, v01: np.ndarray) -> np.ndarray:
    """Covariance matrix of the K AUCs: S10 / m + S01 / n (DeLong et al. 1988, eq. for the U-statistics)."""
    m, n = v10.shape[1], v01.shape[1]
    s10 = np.atleast_2d(np.cov(v10)) if m > 1 else np.zeros((len(v10), len(v10)))
    s01 = np.atleast_2d(np.cov(v01)) if n > 1 else np.zeros((len(v01), len(v01)))
    return s10 / m + s01 / n


def auc_interval(labels: Any, scores: Any, level: float = 0.95) -> AucInterval:
    """ROC AUC of binary `scores` with DeLong's standard error and the interval `auc +- z * se`.

    The normal approximation is rough with very few samples of one class or an AUC near 0 or 1 (the interval
    is then clipped to [0, 1]); with 40 test images it says how far a measured AUC can be from the true one.

    Args:
        labels: `(N,)` 0/1 labels (1 = positive).
        scores: `(N,)` scores of the positive class (e.g. its probability).
        level: coverage of the interval, in (0, 1).

    Returns:
        `AucInterval(auc, se, low, high, level, n_positive, n_negative)`.

    Raises:
        ValueError: labels not 0/1, one class absent, lengths differ, scores not finite, or `level` outside
            (0, 1).
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    v10, v01 = _placements(labels, scores, "auc_interval")
    auc = float(v10.mean())
    se = float(np.sqrt(max(_delong_covariance(v10, v01)[0, 0], 0.0)))
    z = float(stats.norm.ppf(0.5 + level / 2))
    return AucInterval(auc, se, max(auc - z * se, 0.0), min(auc + z * se, 1.0), level, v10.shape[1],
                       v01.shape[1])


def delong(labels: Any, scores_a: Any, scores_b: Any) -> DeLongResult:
    """DeLong's test of equal ROC AUCs for two models scored on the same samples (two-sided).

    The two AUCs' covariance comes from the same samples' placements, so the test is paired (it uses that the
    models see the same images), unlike comparing two separate intervals.

    Args:
        labels: `(N,)` 0/1 labels (1 = positive).
        scores_a: `(N,)` positive-class scores of model A.
        scores_b: `(N,)` positive-class scores of model B, same samples in the same order.

    Returns:
        `DeLongResult(auc_a, auc_b, difference, statistic, p_value, n, note)`; when the difference's variance is
        0 (e.g. identical rankings) the p-value is 1 if the AUCs are equal, else 0, and `note` says so.

    Raises:
        ValueError: as `auc_interval`, or the score vectors differ in length.
    """
    a, b = np.asarray(scores_a, dtype=np.float64), np.asarray(scores_b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"scores_a {a.shape} and scores_b {b.shape} must have the same shape")
    v10, v01 = _placements(labels, np.stack([a, b]), "delong")
    auc_a, auc_b = (float(v) for v in v10.mean(axis=1))
    cov = _delong_covariance(v10, v01)
    variance = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    difference = auc_a - auc_b
    if variance <= 1e-15:
        note = "the AUC difference has zero variance (the models rank the samples alike)"
        return DeLongResult(auc_a, auc_b, difference, 0.0, 1.0 if abs(difference) < 1e-12 else 0.0, int(a.size),
                            note)
    z = difference / np.sqrt(variance)
    return DeLongResult(auc_a, auc_b, difference, float(z), float(2 * stats.norm.sf(abs(z))), int(a.size))
