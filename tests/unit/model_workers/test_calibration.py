"""model_workers.calibration: ECE and the reliability curve by hand and by simulation."""

from __future__ import annotations

import numpy as np
import pytest

from model_workers.calibration import (
    calibration,
    expected_calibration_error,
    reliability_curve,
)


def test_reliability_curve_by_hand() -> None:
    labels = [0, 1, 1, 0, 1]
    scores = [0.05, 0.15, 0.95, 0.92, 1.0]
    curve = reliability_curve(labels, scores, bins=10)
    assert [b["rows"] for b in curve] == [1, 1, 0, 0, 0, 0, 0, 0, 0, 3]
    assert curve[0]["mean_score"] == pytest.approx(0.05) and curve[0]["positive_rate"] == 0.0
    assert curve[2]["mean_score"] is None and curve[2]["positive_rate"] is None
    assert curve[9]["mean_score"] == pytest.approx((0.95 + 0.92 + 1.0) / 3)
    assert curve[9]["positive_rate"] == pytest.approx(2 / 3)
    # ECE = sum over bins of rows/N * |mean score - positive rate|.
    by_hand = (1 * 0.05 + 1 * 0.85 + 3 * abs((0.95 + 0.92 + 1.0) / 3 - 2 / 3)) / 5
    assert expected_calibration_error(curve) == pytest.approx(by_hand)


def test_perfectly_calibrated_scores_have_small_ece() -> None:
    rng = np.random.default_rng(3)
    scores = rng.random(200_000)
    labels = (rng.random(scores.size) < scores).astype(int)
    assert calibration(labels, scores)["ece"] < 0.005


def test_overconfident_scores_have_large_ece() -> None:
    rng = np.random.default_rng(4)
    truth = rng.random(100_000)
    labels = (rng.random(truth.size) < truth).astype(int)
    overconfident = np.clip(0.5 + 2 * (truth - 0.5), 0, 1)
    assert calibration(labels, overconfident)["ece"] > 0.1


def test_refuses_what_is_not_a_probability() -> None:
    with pytest.raises(ValueError, match="probabilities"):
        reliability_curve([0, 1], [0.2, 1.2])
    with pytest.raises(ValueError, match="one score per label"):
        reliability_curve([0, 1], [0.2])
