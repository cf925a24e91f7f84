"""router.drift.stats against scipy, closed forms and hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from model_workers.references import REFERENCE_QUANTILES, score_reference
from router.drift import stats


def _rng() -> np.random.Generator:
    return np.random.default_rng(20170101)


@pytest.mark.parametrize(("n", "m", "shift"), [(50, 80, 0.0), (400, 300, 0.2), (2000, 150, 0.05)])
def test_ks_equals_scipy_asymptotic(n: int, m: int, shift: float) -> None:
    rng = _rng()
    a, b = rng.beta(2, 5, n), rng.beta(2, 5, m) + shift
    statistic, p_value = stats.ks(stats.Sample.of(a), stats.Sample.of(b))
    expected = sps.ks_2samp(a, b, method="asymp")
    assert statistic == pytest.approx(expected.statistic, abs=1e-12)
    assert p_value == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-15)


def test_ks_with_ties_equals_scipy() -> None:
    a = np.array([0.0, 0.0, 0.5, 0.5, 0.5, 1.0])
    b = np.array([0.5, 1.0, 1.0, 1.0])
    statistic, _ = stats.ks(stats.Sample.of(a), stats.Sample.of(b))
    assert statistic == pytest.approx(sps.ks_2samp(a, b).statistic)


@pytest.mark.parametrize("shift", [0.0, 0.1, 0.4])
def test_wasserstein_equals_scipy(shift: float) -> None:
    rng = _rng()
    a, b = rng.random(300), rng.random(170) + shift
    got = stats.wasserstein(stats.Sample.of(a), stats.Sample.of(b))
    assert got == pytest.approx(sps.wasserstein_distance(a, b), rel=1e-12)


def test_wasserstein_of_a_point_shift_is_the_shift() -> None:
    a = np.linspace(0, 1, 101)
    assert stats.wasserstein(stats.Sample.of(a), stats.Sample.of(a + 0.25)) == pytest.approx(0.25)
    assert stats.wasserstein(stats.Sample.of([0.3]), stats.Sample.of([0.3])) == 0.0


def test_psi_of_shares_by_hand() -> None:
    # Textbook form: sum (a - e) ln(a / e).
    expected = [0.25, 0.25, 0.5]
    actual = [0.5, 0.25, 0.25]
    by_hand = (0.5 - 0.25) * math.log(0.5 / 0.25) + 0 + (0.25 - 0.5) * math.log(0.25 / 0.5)
    assert stats.psi_of_shares(expected, actual) == pytest.approx(by_hand)
    assert stats.psi_of_shares(expected, expected) == 0.0


def test_psi_floors_empty_bins() -> None:
    # Every current point falls in the reference's first decile; the nine others are empty.
    reference = stats.Sample.of(np.arange(1, 1001) / 1000)
    current = stats.Sample.of(np.full(50, 0.05))
    f = stats.PSI_FLOOR
    by_hand = (1 - 0.1) * math.log(1 / 0.1) + 9 * (f - 0.1) * math.log(f / 0.1)
    assert stats.psi(reference, current) == pytest.approx(by_hand, rel=1e-9)


def test_psi_bins_are_the_reference_deciles() -> None:
    reference = stats.Sample.of(np.arange(1, 1001) / 1000)
    edges = stats.psi_edges(reference)
    assert edges == pytest.approx(np.quantile(reference.points, np.arange(1, 10) / 10))
    assert stats.shares(reference, edges) == pytest.approx(np.full(10, 0.1))


def test_psi_merges_tied_edges() -> None:
    # A reference with most of its mass on one value has repeated deciles: bins merge.
    reference = stats.Sample.of([0.9] * 95 + [0.1] * 5)
    edges = stats.psi_edges(reference)
    assert len(edges) == len(set(edges.tolist()))
    assert stats.psi(reference, reference) == 0.0


def test_a_cards_quantiles_stand_for_the_validation_scores() -> None:
    scores = _rng().beta(0.5, 0.5, 5000)
    reference = score_reference(scores, 0.5, "validation")
    quantiles = reference["quantiles"]
    assert len(quantiles) == REFERENCE_QUANTILES and reference["rows"] == 5000
    assert quantiles[0] == pytest.approx(scores.min(), abs=1e-6)
    assert quantiles[-1] == pytest.approx(scores.max(), abs=1e-6)
    assert reference["positive_rate"] == pytest.approx(np.mean(scores >= 0.5))
    summary = stats.Sample.of(quantiles, n=reference["rows"])
    full = stats.Sample.of(scores)
    # The quantile summary's CDF is within one level (1/1000) of the sample's everywhere.
    assert stats.ks(summary, full)[0] <= 1.0 / (REFERENCE_QUANTILES - 1) + 1e-3
    assert stats.wasserstein(summary, full) < 1e-3
    assert summary.share_at_least(0.5) == pytest.approx(full.share_at_least(0.5), abs=1e-3)


def test_sample_refuses_what_no_data_gives() -> None:
    with pytest.raises(ValueError, match="finite"):
        stats.Sample.of([0.1, float("nan")])
    with pytest.raises(ValueError, match="stand for"):
        stats.Sample.of([], n=3)
    with pytest.raises(ValueError, match="at least one"):
        stats.ks(stats.Sample.of([]), stats.Sample.of([0.2]))


def test_check_alpha_spreads_alpha_over_the_horizon() -> None:
    day, year = 86_400.0, 365 * 86_400.0
    assert stats.check_alpha(0.05, day, year) == pytest.approx(0.05 / 365)
    assert stats.check_alpha(0.05, 3600.0, year) == pytest.approx(0.05 / 8760)
    assert stats.check_alpha(0.05, 2 * year, year) == 0.05
    with pytest.raises(ValueError):
        stats.check_alpha(0.0, day, year)
    with pytest.raises(ValueError):
        stats.check_alpha(0.05, 0.0, year)


@pytest.mark.parametrize(
    ("p_value", "large", "enough", "expected"),
    [
        (1e-6, True, True, "drift"),
        (1e-6, False, True, "ok"),  # significant but negligible
        (0.01, True, True, "ok"),  # large but not significant at the check's level
        (1e-6, True, False, "insufficient"),
        (None, True, True, "insufficient"),
    ],
)
def test_verdict_needs_significance_and_effect(
    p_value: float | None, large: bool, enough: bool, expected: str
) -> None:
    assert stats.verdict(p_value, large, 1e-4, enough) == expected


def test_auc_null_matches_mann_whitney() -> None:
    # Var(U / (n m)) under H0 = (n + m + 1) / (12 n m).
    assert stats.auc_null_sd(250, 250) == pytest.approx(math.sqrt(501 / (12 * 250 * 250)))
    threshold = stats.auc_threshold(250, 250, 0.05 / 365, floor=0.55)
    assert threshold == pytest.approx(0.5 + sps.norm.isf(0.05 / 365) * stats.auc_null_sd(250, 250))
    assert stats.auc_threshold(10_000, 10_000, 0.05, floor=0.6) == 0.6
    assert stats.auc_p_value(0.5, 100, 100) == pytest.approx(0.5)


def test_auc_null_by_simulation() -> None:
    # Held-out AUCs of a score unrelated to the side: their spread is the formula's.
    rng = _rng()
    n = 200
    aucs = []
    for _ in range(2000):
        scores = rng.random(2 * n)
        ranks = sps.rankdata(scores)
        aucs.append((ranks[n:].sum() - n * (n + 1) / 2) / (n * n))
    assert np.std(aucs) == pytest.approx(stats.auc_null_sd(n, n), rel=0.05)
