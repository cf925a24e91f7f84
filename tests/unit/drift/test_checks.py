"""router.drift.checks: verdicts and their reasons on scores with and without a shift."""

from __future__ import annotations

import numpy as np
import pytest

from router.drift import checks
from router.drift.checks import Params, Reference
from router.drift.stats import Sample

DAY, YEAR = 86_400.0, 365 * 86_400.0
PARAMS = Params(
    alpha=0.05, horizon=YEAR, interval=DAY, psi_min=0.1, distance_min=0.02, min_samples=100
)


def scores(rng: np.random.Generator, n: int, shift: float = 0.0) -> list[float]:
    """Classifier-like scores: a mixture piled up near 0 and near 1."""
    positive = rng.random(n) < 0.8
    logits = np.where(positive, rng.normal(2.5, 1.5, n), rng.normal(-2.0, 1.5, n)) - shift
    return (1 / (1 + np.exp(-logits))).tolist()


def reference(rng: np.random.Generator) -> Reference:
    validation = scores(rng, 5000)
    return Reference(
        Sample.of(np.quantile(validation, np.linspace(0, 1, 1001)), n=5000), "training"
    )


def test_params_spread_alpha_over_a_year_of_daily_checks() -> None:
    assert PARAMS.check_alpha == pytest.approx(0.05 / 365)
    assert PARAMS.as_dict()["check_alpha"] == pytest.approx(0.05 / 365)


def test_a_shifted_version_drifts_with_its_numbers() -> None:
    rng = np.random.default_rng(1)
    result = checks.prediction("v1", scores(rng, 600, shift=2.0), reference(rng), 0.5, PARAMS)
    assert result.verdict == "drift" and result.drift
    assert result.distances is not None and result.distances.psi >= 0.1
    assert result.distances.ks_p < PARAMS.check_alpha
    assert result.positive_rate_current is not None and result.positive_rate_reference is not None
    assert result.positive_rate_current < result.positive_rate_reference - 0.1
    assert "KS" in result.reason and "PSI" in result.reason
    assert result.as_dict()["drift"] is True


def test_the_same_distribution_is_ok() -> None:
    rng = np.random.default_rng(2)
    result = checks.prediction("v1", scores(rng, 3000), reference(rng), 0.5, PARAMS)
    assert result.verdict == "ok"


def test_a_negligible_shift_on_a_huge_window_is_not_drift() -> None:
    rng = np.random.default_rng(3)
    result = checks.prediction("v1", scores(rng, 200_000, shift=0.15), reference(rng), 0.5, PARAMS)
    assert result.distances is not None and result.distances.ks_p < PARAMS.check_alpha
    assert result.verdict == "ok" and "too small to matter" in result.reason


def test_too_few_scores_or_no_reference() -> None:
    rng = np.random.default_rng(4)
    few = checks.prediction("v1", scores(rng, 50, shift=3.0), reference(rng), 0.5, PARAMS)
    assert few.verdict == "insufficient" and "fewer than the 100" in few.reason
    none = checks.prediction("v1", [], reference(rng), 0.5, PARAMS)
    assert none.verdict == "insufficient"
    skipped = checks.prediction("ext", scores(rng, 500), None, 0.5, PARAMS)
    assert skipped.verdict == "skipped" and skipped.distances is None


def test_paired_deltas_that_move_drift() -> None:
    rng = np.random.default_rng(5)
    before = rng.normal(0.0, 0.05, 800).tolist()
    after = rng.normal(-0.15, 0.08, 800).tolist()
    result = checks.paired("v1", "v2", after, before, PARAMS)
    assert result.version == "v2-vs-v1" and result.verdict == "drift"
    assert result.distances is not None and result.distances.wasserstein >= 0.02
    steady = checks.paired("v1", "v2", rng.normal(0.0, 0.05, 800).tolist(), before, PARAMS)
    assert steady.verdict == "ok"
    assert checks.paired("v1", "v2", after, [], PARAMS).verdict == "skipped"
    assert checks.paired("v1", "v2", [], before, PARAMS).verdict == "insufficient"
    assert checks.any_drift([steady, result]) and not checks.any_drift([steady])
