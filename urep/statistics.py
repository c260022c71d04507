"""Paired significance tests between two models evaluated on the same samples.

* `mcnemar`: per-sample correctness of two classifiers (the papers' test, p < 0.05 between strategies and
  against the baseline).
* `wilcoxon_paired`: per-image scores (e.g. Dice from `urep.metrics.segmentation_metrics(...)["per_image"]`)
  of two segmentation models.
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
