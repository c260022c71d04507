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
