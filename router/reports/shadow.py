"""Shadow-vs-primary comparison report, computed from the counters the recorder keeps in Redis.

``reads.read_shadow`` fetches the counters (one MULTI snapshot); ``build_shadow_report`` is pure,
so every number can be recomputed from the same Redis data. One row per (primary, shadow) pair: the
primary is the variant whose answer the client got on the mirrored requests.
"""

from __future__ import annotations

from typing import Any

from router.core.metrics import SCORE_DELTA_BUCKETS
from router.recording.events import LATENCY_BOUNDS_MS
from router.reports.experiment import Z95, dense_buckets
from router.reports.reads import ShadowRecorded
from router.reports.stats import (
    SIGNED_UNIT,
    bowker,
    mcnemar,
    mean_interval,
    quantiles_from_histogram,
    wilson_interval,
)
from router.reports.units import normal_interval, parse_unit_sums
from router.storage import keys


def confusion(raw: dict[str, str]) -> dict[str, dict[str, int]]:
    """Primary label -> shadow label -> count (labels as their JSON text)."""
    table: dict[str, dict[str, int]] = {}
    for field, count in raw.items():
        if field.startswith(keys.SHADOW_CONFUSION):
            primary, shadow = field.removeprefix(keys.SHADOW_CONFUSION).split("|", 1)
            table.setdefault(primary, {})[shadow] = int(count)
    return {p: dict(sorted(row.items())) for p, row in sorted(table.items())}


def _int(raw: dict[str, str], field: str) -> int:
    return int(raw.get(field, "0"))


def _float(raw: dict[str, str], field: str) -> float:
    return float(raw.get(field, "0"))


def pair_row(
    primary: str, shadow: str, raw: dict[str, str], units: dict[str, str] | None = None
) -> dict[str, Any]:
    """One pair's comparison; with ``units`` (a sticky experiment: pairs repeat per user) the
    agreement and score-delta intervals are per user, by the delta method."""
    pairs = _int(raw, keys.SHADOW_PAIRS)
    agree = _int(raw, keys.SHADOW_AGREE)
    table = confusion(raw)
    labels = sorted({*table, *(s for row in table.values() for s in row)})
    binary = set(labels) <= {"0", "1"}
    positive_primary = sum(table.get("1", {}).values())
    positive_shadow = sum(row.get("1", 0) for row in table.values())
    n_delta = _int(raw, keys.SHADOW_DELTA_N)
    delta_sum = _float(raw, keys.SHADOW_DELTA_SUM)
    delta_bounds, delta_cumulative = dense_buckets(
        raw, keys.SHADOW_DELTA_BUCKET, SCORE_DELTA_BUCKETS
    )
    p5, p50, p95 = quantiles_from_histogram(delta_bounds, delta_cumulative, (0.05, 0.5, 0.95))
    primary_latency = quantiles_from_histogram(
        *dense_buckets(raw, keys.SHADOW_PRIMARY_LATENCY, LATENCY_BOUNDS_MS), (0.5, 0.99)
    )
    shadow_latency = quantiles_from_histogram(
        *dense_buckets(raw, keys.SHADOW_SHADOW_LATENCY, LATENCY_BOUNDS_MS), (0.5, 0.99)
    )
    fb_n = _int(raw, keys.SHADOW_FEEDBACK_N)
    primary_correct = _int(raw, keys.SHADOW_PRIMARY_CORRECT)
    shadow_correct = _int(raw, keys.SHADOW_SHADOW_CORRECT)
    interval: Any = wilson_interval(agree, pairs)
    delta_interval = _listed(
        mean_interval(delta_sum, _float(raw, keys.SHADOW_DELTA_SUMSQ), n_delta, SIGNED_UNIT)
    )
    unit = "request"
    users = None
    if units is not None:
        unit = "user"
        agreement = parse_unit_sums(units, "pair", keys.SHADOW_UNITS_AGREE)
        deltas = parse_unit_sums(units, "pair", keys.SHADOW_UNITS_DELTA)
        users = agreement.units
        interval = normal_interval(agreement, Z95)
        delta_interval = normal_interval(deltas, Z95, (-1.0, 1.0))
    return {
        "unit": unit,
        "users": users,
        "primary": primary,
        "shadow": shadow,
        "pairs": pairs,
        "agreement": agree / pairs if pairs else None,
        "agreement_interval": list(interval) if interval else None,
        "confusion": table,
        "positive_rate": {
            "primary": positive_primary / pairs if pairs and binary else None,
            "shadow": positive_shadow / pairs if pairs and binary else None,
        },
        "mcnemar": paired_test(table, labels),
        "score_delta": {
            "n": n_delta,
            "mean": delta_sum / n_delta if n_delta else None,
            "interval": delta_interval,
            "p5": p5,
            "p50": p50,
            "p95": p95,
            "buckets": list(SCORE_DELTA_BUCKETS),
        },
        "latency_ms": {
            "primary": {"p50": primary_latency[0], "p99": primary_latency[1]},
            "shadow": {"p50": shadow_latency[0], "p99": shadow_latency[1]},
        },
        "shadow_errors": _int(raw, keys.SHADOW_ERRORS),
        "shadow_dropped": _int(raw, keys.SHADOW_DROPPED),
        "labelled_feedback": {
            "n": fb_n,
            "primary_accuracy": primary_correct / fb_n if fb_n else None,
            "shadow_accuracy": shadow_correct / fb_n if fb_n else None,
        },
    }


def paired_test(table: dict[str, dict[str, int]], labels: list[str]) -> dict[str, Any] | None:
    """McNemar's test for two labels (b = primary 1 and shadow 0 when they are 0 and 1), Bowker's
    symmetry test for more; None before any pair."""
    if len(labels) > 2:
        return dict(bowker(table))
    first, second = (["0", "1"] if set(labels) <= {"0", "1"} else [*labels, "", ""])[:2]
    return dict(mcnemar(table.get(second, {}).get(first, 0), table.get(first, {}).get(second, 0)))


def _listed(pair: tuple[float, float] | None) -> list[float] | None:
    return list(pair) if pair else None


def build_shadow_report(
    experiment: str, recorded: ShadowRecorded, by_user: bool = False
) -> dict[str, Any]:
    return {
        "experiment": experiment,
        "unit": "user" if by_user else "request",
        "pairs": [
            pair_row(p, s, raw, recorded.units.get((p, s), {}) if by_user else None)
            for (p, s), raw in sorted(recorded.pairs.items())
        ],
        "recent_disagreements": recorded.disagreements,
    }
