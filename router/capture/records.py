"""What one captured line holds, and which requests are captured. Pure: no I/O, no clock.

A line is one JSON object: a request's outcome (``kind: outcome``) or one shadow's comparison for
a mirrored request (``kind: shadow``). Neither holds the user key, raw or hashed. Only with
``inputs: true`` does an outcome carry the validated request input, as ``input``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from router.hashing import turnout_unit
from router.recording.events import Outcome, ShadowComparison

SCHEMA = 1
"""Written as ``v`` in every line; a reader skips lines of a schema it does not know."""


def sampled(experiment: str, request_id: str, sample: float) -> bool:
    """Sticky by request id: a request's outcome and its comparisons go together or not at all."""
    if sample >= 1.0:
        return True
    if sample <= 0.0:
        return False
    return turnout_unit(f"{experiment}\x1fcapture", request_id) < sample


def outcome_record(outcome: Outcome, inputs: Mapping[str, Any] | None) -> dict[str, Any]:
    record: dict[str, Any] = {
        "v": SCHEMA,
        "kind": "outcome",
        "ts": outcome.ts,
        "request_id": outcome.request_id,
        "experiment": outcome.experiment,
        "config_version": outcome.config_version,
        "variant": outcome.variant,
        "served_variant": outcome.served_variant,
        "version": outcome.version,
        "status": outcome.status,
        "fallback": outcome.fallback,
        "label": outcome.label,
        "score": outcome.score,
    }
    if inputs is not None:
        record["input"] = dict(inputs)
    return record


def comparison_record(
    comparison: ShadowComparison, primary_version: str | None, shadow_version: str | None
) -> dict[str, Any]:
    return {
        "v": SCHEMA,
        "kind": "shadow",
        "ts": comparison.ts,
        "request_id": comparison.request_id,
        "experiment": comparison.experiment,
        "config_version": comparison.config_version,
        "primary": comparison.primary,
        "shadow": comparison.shadow,
        "primary_version": primary_version,
        "shadow_version": shadow_version,
        "primary_label": comparison.primary_label,
        "shadow_label": comparison.shadow_label,
        "primary_score": comparison.primary_score,
        "shadow_score": comparison.shadow_score,
        "error": comparison.error,
    }
