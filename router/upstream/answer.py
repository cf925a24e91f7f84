"""What the gateway reads out of a model server's answer."""

from __future__ import annotations

from typing import Any


def score_of(prediction: dict[str, Any] | None) -> float | None:
    """The answer's numeric ``score``, or None (booleans are not scores)."""
    if prediction is None:
        return None
    score = prediction.get("score")
    return float(score) if isinstance(score, int | float) and not isinstance(score, bool) else None
