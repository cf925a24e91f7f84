"""router.reports.evaluation: AUCs against scikit-learn, the bootstrap against simulation."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from router.reports import evaluation
from router.reports.evaluation import compare, decide


def _scored(rng: np.random.Generator, n: int, separation: float) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.integers(0, 2, n)
    scores = 1 / (1 + np.exp(-(rng.normal(0, 1, n) + separation * (2 * labels - 1))))
    return labels, scores


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_roc_auc_equals_scikit_learn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels, scores = _scored(rng, 500, 1.0)
    assert evaluation.roc_auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores))


def test_roc_auc_counts_ties_half() -> None:
    labels = [0, 0, 1, 1, 0, 1]
    scores = [0.5, 0.1, 0.5, 0.9, 0.5, 0.5]
    assert evaluation.roc_auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores))


def test_compare_counts_and_mcnemar_by_hand() -> None:
    labels = np.array([1, 1, 1, 0, 0, 0, 1, 0])
    candidate = np.array([0.9, 0.8, 0.7, 0.2, 0.1, 0.6, 0.4, 0.3])
    production = np.array([0.9, 0.3, 0.4, 0.2, 0.7, 0.1, 0.6, 0.3])
    result = compare(labels, candidate, production, 0.5, np.random.default_rng(0), rounds=200)
    # Right at 0.5: candidate misses rows 5 and 6; production misses rows 1, 2 and 4.
    assert result.accuracy_candidate == pytest.approx(6 / 8)
    assert result.accuracy_production == pytest.approx(5 / 8)
    assert (result.mcnemar["b"], result.mcnemar["c"]) == (3, 2)
    assert result.auc_candidate == pytest.approx(roc_auc_score(labels, candidate))
    assert result.auc_production == pytest.approx(roc_auc_score(labels, production))
    assert result.rows == 8 and result.positives == 4
    assert result.as_dict()["interval"] == list(result.interval)


def test_compare_is_deterministic_for_a_seed() -> None:
    labels, scores = _scored(np.random.default_rng(4), 300, 1.0)
    other = scores + np.random.default_rng(5).normal(0, 0.05, 300)
    first = compare(labels, scores, other, 0.5, np.random.default_rng(9), rounds=300)
    second = compare(labels, scores, other, 0.5, np.random.default_rng(9), rounds=300)
    assert first == second


def test_paired_bootstrap_spread_matches_resampling_the_population() -> None:
    # The bootstrap's spread of the AUC difference should match the spread over fresh samples
    # of the same population (the thing it estimates), within sampling error.
    rng = np.random.default_rng(11)
    n = 600

    def draw() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        labels = rng.integers(0, 2, n)
        signal = rng.normal(0, 1, n) + 1.2 * (2 * labels - 1)
        a = signal + rng.normal(0, 0.6, n)
        b = signal + rng.normal(0, 0.9, n)
        return labels, a, b

    fresh = []
    for _ in range(400):
        labels, a, b = draw()
        fresh.append(roc_auc_score(labels, a) - roc_auc_score(labels, b))
    labels, a, b = draw()
    result = compare(labels, 1 / (1 + np.exp(-a)), 1 / (1 + np.exp(-b)), 0.5, rng, rounds=2000)
    bootstrap_width = result.interval[1] - result.interval[0]
    fresh_width = np.quantile(fresh, 0.975) - np.quantile(fresh, 0.025)
    assert bootstrap_width == pytest.approx(fresh_width, rel=0.25)
    # Pairing: the interval of a model against a near copy of itself is much narrower.
    near = compare(labels, a, a + rng.normal(0, 0.01, n), 0.0, rng, rounds=500)
    assert near.interval[1] - near.interval[0] < bootstrap_width / 5


def test_paired_bootstrap_coverage() -> None:
    # 95% intervals from 120 fresh samples cover the population difference about 95% of the time.
    rng = np.random.default_rng(12)
    n = 400

    def draw(size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        labels = rng.integers(0, 2, size)
        signal = rng.normal(0, 1, size) + 1.0 * (2 * labels - 1)
        return labels, signal + rng.normal(0, 0.5, size), signal + rng.normal(0, 1.0, size)

    big_labels, big_a, big_b = draw(400_000)
    truth = roc_auc_score(big_labels, big_a) - roc_auc_score(big_labels, big_b)
    covered = 0
    trials = 120
    for _ in range(trials):
        labels, a, b = draw(n)
        result = compare(labels, a, b, 0.0, rng, rounds=400)
        covered += result.interval[0] <= truth <= result.interval[1]
    assert 0.87 <= covered / trials <= 1.0


def _evaluation(
    low: float, high: float, b: int = 10, c: int = 10, p: float = 1.0
) -> evaluation.PairedEvaluation:
    return evaluation.PairedEvaluation(
        rows=1000,
        positives=500,
        auc_candidate=0.9,
        auc_production=0.9 - (low + high) / 2,
        auc_difference=(low + high) / 2,
        interval=(low, high),
        confidence=0.95,
        bootstrap_rounds=2000,
        accuracy_candidate=0.9,
        accuracy_production=0.9,
        mcnemar={"b": b, "c": c, "statistic": 0.0, "p_value": p, "method": "chi2"},
    )


def test_decide_accepts_better_recent_and_not_worse_holdout() -> None:
    recent = _evaluation(0.02, 0.08)
    holdout = _evaluation(-0.004, 0.003)
    decision = decide(recent, holdout, margin=0.005)
    assert decision.accepted and decision.reasons == []


@pytest.mark.parametrize(
    ("recent", "holdout", "reason"),
    [
        ((-0.01, 0.05), (-0.001, 0.002), "not better on the recent window"),
        ((0.02, 0.08), (-0.02, 0.001), "possibly worse on the holdout"),
    ],
)
def test_decide_refuses_with_the_numbers(
    recent: tuple[float, float], holdout: tuple[float, float], reason: str
) -> None:
    decision = decide(_evaluation(*recent), _evaluation(*holdout), margin=0.005)
    assert not decision.accepted
    assert any(r.startswith(reason) for r in decision.reasons)
    assert any("[" in r and "n = 1000" in r for r in decision.reasons)


def test_decide_refuses_more_errors_on_the_holdout() -> None:
    holdout = _evaluation(-0.001, 0.003, b=10, c=40, p=0.0001)
    decision = decide(_evaluation(0.02, 0.05), holdout, margin=0.005)
    assert not decision.accepted and "McNemar" in decision.reasons[0]


def test_refuses_impossible_arguments() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="both classes"):
        compare([1, 1], [0.1, 0.2], [0.3, 0.4], 0.5, rng)
    with pytest.raises(ValueError, match="one per label"):
        compare([0, 1], [0.1], [0.3, 0.4], 0.5, rng)
    with pytest.raises(ValueError, match="0 and 1"):
        evaluation.roc_auc([0, 2], [0.1, 0.2])
