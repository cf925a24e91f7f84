"""How well a binary model's scores read as probabilities: the expected calibration error and the
reliability curve a model card keeps. Pure: scores and labels in, plain data out."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike

ECE_BINS = 10
"""Equal-width bins of the score on [0, 1] (the usual reliability diagram)."""


def reliability_curve(
    labels: ArrayLike, scores: ArrayLike, bins: int = ECE_BINS
) -> list[dict[str, Any]]:
    """Per score bin: its range, the rows in it, their mean score and their share of positives.
    Bins are [k/bins, (k+1)/bins), the last one closed; empty bins are listed with no means."""
    y = np.asarray(labels, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    if y.shape != s.shape or y.ndim != 1 or y.size == 0:
        raise ValueError("need one score per label, at least one")
    if not np.all((s >= 0.0) & (s <= 1.0)):
        raise ValueError("scores must be probabilities in [0, 1]")
    if bins < 1:
        raise ValueError(f"need at least one bin, got {bins}")
    index = np.minimum((s * bins).astype(int), bins - 1)
    curve = []
    for k in range(bins):
        inside = index == k
        rows = int(inside.sum())
        curve.append(
            {
                "low": k / bins,
                "high": (k + 1) / bins,
                "rows": rows,
                "mean_score": float(s[inside].mean()) if rows else None,
                "positive_rate": float(y[inside].mean()) if rows else None,
            }
        )
    return curve


def expected_calibration_error(curve: list[dict[str, Any]]) -> float:
    """Rows-weighted mean gap between each bin's mean score and its share of positives."""
    total = sum(b["rows"] for b in curve)
    if total == 0:
        raise ValueError("an empty reliability curve has no calibration error")
    return float(
        sum(b["rows"] * abs(b["mean_score"] - b["positive_rate"]) for b in curve if b["rows"])
        / total
    )


def calibration(labels: ArrayLike, scores: ArrayLike, bins: int = ECE_BINS) -> dict[str, Any]:
    """What a card keeps: the ECE, how it was computed, and the reliability curve."""
    curve = reliability_curve(labels, scores, bins)
    return {
        "ece": expected_calibration_error(curve),
        "bins": bins,
        "binning": "equal-width on [0, 1]",
        "reliability": curve,
    }
