"""urep.statistics: McNemar (exact and chi-square branches) and Wilcoxon against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from urep import statistics


def _paired_correctness(both: int, b: int, c: int, neither: int) -> tuple[np.ndarray, np.ndarray]:
    """Correctness vectors realising the 2x2 table [[both, b], [c, neither]] (A right/wrong x B right/wrong)."""
    a = [True] * both + [True] * b + [False] * c + [False] * neither
    model_b = [True] * both + [False] * b + [True] * c + [False] * neither
    return np.array(a), np.array(model_b)


def test_mcnemar_chi_square_worked_example():
    # 2x2 table with discordant cells b = 121, c = 59 (180 >= 25 -> chi-square branch).
    # By hand: (|121 - 59| - 1)^2 / 180 = 61^2 / 180; chi2(1) survival = erfc(sqrt(x / 2)).
    a, b = _paired_correctness(both=794, b=121, c=59, neither=26)
    result = statistics.mcnemar(a, b)
    expected = 61**2 / 180
    assert (result.b, result.c, result.method) == (121, 59, "chi2")
    assert result.statistic == pytest.approx(expected)
    assert result.p_value == pytest.approx(math.erfc(math.sqrt(expected / 2)))
    assert result.p_value < 1e-5


def test_mcnemar_exact_worked_example():
    # b = 2, c = 8 (10 < 25 -> exact). Two-sided binomial: 2 * P(X <= 2 | n=10, p=1/2) = 2 * (1+10+45)/1024.
    a, b = _paired_correctness(both=30, b=2, c=8, neither=5)
    result = statistics.mcnemar(a, b)
    assert (result.b, result.c, result.method) == (2, 8, "exact")
    assert result.statistic == 2.0
    assert result.p_value == pytest.approx(2 * (math.comb(10, 0) + math.comb(10, 1) + math.comb(10, 2)) / 1024)


def test_mcnemar_threshold_and_forcing():
    a, b = _paired_correctness(both=10, b=2, c=8, neither=0)
    forced = statistics.mcnemar(a, b, exact=False)
    assert forced.method == "chi2"
    assert forced.statistic == pytest.approx(5**2 / 10)
    assert statistics.mcnemar(a, b, exact_threshold=10).method == "chi2"
    assert statistics.mcnemar(a, b, exact_threshold=11).method == "exact"


def test_mcnemar_balanced_and_no_discordance():
    a, b = _paired_correctness(both=5, b=30, c=30, neither=5)
    balanced = statistics.mcnemar(a, b)
    assert (balanced.statistic, balanced.p_value) == (0.0, 1.0)
    same = statistics.mcnemar([1, 0, 1], [1, 0, 1])
    assert (same.statistic, same.p_value, same.b, same.c, same.method) == (0.0, 1.0, 0, 0, "exact")
    assert same.to_dict() == {"statistic": 0.0, "p_value": 1.0, "b": 0, "c": 0, "method": "exact"}


def test_mcnemar_bad_input_raises():
    with pytest.raises(ValueError, match="3 samples but correct_b has 2"):
        statistics.mcnemar([1, 0, 1], [1, 0])
    with pytest.raises(ValueError, match="booleans or 0/1"):
        statistics.mcnemar([1, 2], [1, 0])


def test_wilcoxon_all_positive_differences_by_hand():
    # differences 1..5 all positive: W- = 0; exact two-sided p = 2 / 2^5.
    a = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    b = a - np.array([0.01, 0.02, 0.03, 0.04, 0.05])
    result = statistics.wilcoxon_paired(a, b)
    assert result.statistic == 0.0
    assert result.p_value == pytest.approx(2 / 32)
    assert (result.n, result.n_nonzero) == (5, 5)
    assert result.median_difference == pytest.approx(0.03)
    assert statistics.wilcoxon_paired(a, b, alternative="greater").p_value == pytest.approx(1 / 32)


def test_wilcoxon_degenerate_all_equal():
    scores = np.array([0.9, 0.8, 0.85])
    result = statistics.wilcoxon_paired(scores, scores.copy())
    assert (result.statistic, result.p_value, result.n_nonzero) == (0.0, 1.0, 0)
    assert "all paired differences are zero" in result.note


def test_wilcoxon_bad_input_raises():
    with pytest.raises(ValueError, match="same length"):
        statistics.wilcoxon_paired([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="NaN"):
        statistics.wilcoxon_paired([1.0, np.nan], [1.0, 2.0])


# -- DeLong: AUC interval and paired AUC test ------------------------------------------------------------------
def test_auc_interval_worked_example():
    # Positives 0.9, 0.4; negatives 0.5, 0.1, 0.3. Placements: V10 = [1, 2/3], V01 = [1/2, 1, 1];
    # AUC = 5/6; var = var(V10) / 2 + var(V01) / 3 = (1/18) / 2 + (1/12) / 3 = 1/18.
    result = statistics.auc_interval([1, 1, 0, 0, 0], [0.9, 0.4, 0.5, 0.1, 0.3])
    assert result.auc == pytest.approx(5 / 6)
    assert result.se == pytest.approx(math.sqrt(1 / 18))
    assert result.low == pytest.approx(5 / 6 - 1.959964 * math.sqrt(1 / 18), abs=1e-6)
    assert result.high == 1.0  # clipped
    assert (result.n_positive, result.n_negative, result.level) == (2, 3, 0.95)


def test_auc_interval_agrees_with_scikit_learn_and_the_bootstrap():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 80)
    scores = np.round(labels * 0.8 + rng.normal(size=80), 1)  # rounded: ties count 1/2
    result = statistics.auc_interval(labels, scores)
    assert result.auc == pytest.approx(roc_auc_score(labels, scores))
    boot = []
    for _ in range(2000):
        index = rng.integers(0, 80, 80)
        if np.unique(labels[index]).size == 2:
            boot.append(roc_auc_score(labels[index], scores[index]))
    assert result.se == pytest.approx(np.std(boot), rel=0.15)
    assert result.low < result.auc < result.high


def test_delong_is_paired_antisymmetric_and_agrees_with_the_bootstrap():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 120)
    shared = rng.normal(size=120)
    strong = labels * 1.5 + shared
    weak = labels * 0.3 + shared + 0.5 * rng.normal(size=120)
    result = statistics.delong(labels, strong, weak)
    assert result.auc_a == pytest.approx(roc_auc_score(labels, strong))
    assert result.auc_b == pytest.approx(roc_auc_score(labels, weak))
    assert result.difference > 0 and result.p_value < 0.01 and result.n == 120
    swapped = statistics.delong(labels, weak, strong)
    assert swapped.statistic == pytest.approx(-result.statistic) and swapped.p_value == pytest.approx(result.p_value)
    boot = []
    for _ in range(2000):
        index = rng.integers(0, 120, 120)
        if np.unique(labels[index]).size == 2:
            boot.append(roc_auc_score(labels[index], strong[index]) - roc_auc_score(labels[index], weak[index]))
    assert result.difference / result.statistic == pytest.approx(np.std(boot), rel=0.15)
    # The pairing matters: the shared noise makes the difference far more certain than two separate intervals.
    separate = math.hypot(statistics.auc_interval(labels, strong).se, statistics.auc_interval(labels, weak).se)
    assert result.difference / result.statistic < 0.9 * separate


def test_delong_of_two_models_that_rank_alike_is_p_one():
    labels = [0, 1, 0, 1, 1, 0]
    scores = np.array([0.2, 0.7, 0.4, 0.9, 0.6, 0.1])
    result = statistics.delong(labels, scores, 2 * scores + 1)  # same order, other scale
    assert (result.difference, result.statistic, result.p_value) == (0.0, 0.0, 1.0)
    assert "zero variance" in result.note


@pytest.mark.parametrize(
    "labels, scores, message",
    [
        ([1, 1, 1], [0.1, 0.2, 0.3], "needs both classes, got 3 positive and 0 negative"),
        ([0, 2, 1], [0.1, 0.2, 0.3], r"labels must be 0/1"),
        ([0, 1, 1], [0.1, 0.2], "must be 1-D of the same length"),
        ([0, 1, 1], [0.1, np.nan, 0.3], "NaN or infinite"),
    ],
)
def test_auc_interval_rejects_bad_input(labels, scores, message):
    with pytest.raises(ValueError, match=message):
        statistics.auc_interval(labels, scores)


def test_auc_interval_and_delong_reject_bad_arguments():
    with pytest.raises(ValueError, match=r"level must be in \(0, 1\), got 95"):
        statistics.auc_interval([0, 1], [0.1, 0.9], level=95)
    with pytest.raises(ValueError, match="scores_a .* and scores_b .* must have the same shape"):
        statistics.delong([0, 1, 1], [0.1, 0.2, 0.3], [0.1, 0.2])
