"""How one shadow comparison is written to Redis: guard, counters, streams (no raw text)."""

from __future__ import annotations

import bisect

from router.core.metrics import SCORE_DELTA_BUCKETS
from router.gateway.mirror import ShadowComparison
from router.storage import keys
from router.storage.scripts import Command, dumps


def _num(value: float) -> str:
    return repr(float(value))


def bucket(prefix: str, bounds: tuple[float, ...], value: float) -> str:
    """Non-cumulative bucket field: the first upper bound >= value, else ``+Inf``."""
    index = bisect.bisect_left(bounds, value)
    return prefix + (f"{bounds[index]:g}" if index < len(bounds) else "+Inf")


def guard_key(comparison: ShadowComparison) -> str:
    return keys.shadow_request(comparison.request_id, comparison.shadow)


def guard_fields(comparison: ShadowComparison) -> dict[str, str]:
    fields = {"experiment": comparison.experiment, "primary": comparison.primary}
    if comparison.shadow_label is not None:
        fields["label"] = dumps(comparison.shadow_label)
    return fields


def event_fields(comparison: ShadowComparison) -> dict[str, str]:
    fields = {
        "request_id": comparison.request_id,
        "config_version": comparison.config_version,
        "primary": comparison.primary,
        "shadow": comparison.shadow,
        "primary_latency_ms": _num(comparison.primary_latency_ms),
        "ts": _num(comparison.ts),
    }
    optional = {
        "primary_label": None
        if comparison.primary_label is None
        else dumps(comparison.primary_label),
        "shadow_label": None if comparison.shadow_label is None else dumps(comparison.shadow_label),
        "primary_score": None
        if comparison.primary_score is None
        else _num(comparison.primary_score),
        "shadow_score": None if comparison.shadow_score is None else _num(comparison.shadow_score),
        "shadow_latency_ms": None
        if comparison.shadow_latency_ms is None
        else _num(comparison.shadow_latency_ms),
        "error": comparison.error,
        "agree": None if not comparison.compared else ("1" if comparison.agree else "0"),
    }
    fields.update({k: v for k, v in optional.items() if v is not None})
    return fields


def stream_commands(comparison: ShadowComparison, stream_maxlen: int) -> list[Command]:
    flat = tuple(item for pair in event_fields(comparison).items() for item in pair)
    cap = ("MAXLEN", "~", str(stream_maxlen), "*")
    commands: list[Command] = [("XADD", keys.shadow_events(comparison.experiment), (*cap, *flat))]
    if comparison.compared and not comparison.agree:
        commands.append(("XADD", keys.disagreements(comparison.experiment), (*cap, *flat)))
    if comparison.shadow_label is not None:
        # Feedback on the request later scores the shadow's label too (accuracy on same requests).
        field = keys.SHADOW_LABEL + comparison.shadow
        commands.append(
            ("HSET", keys.request(comparison.request_id), (field, dumps(comparison.shadow_label)))
        )
    return commands


def count_comparison(
    incr: dict[tuple[str, str], int],
    add: dict[tuple[str, str], float],
    members: dict[str, set[str]],
    comparison: ShadowComparison,
    latency_bounds_ms: tuple[float, ...],
) -> None:
    """Counter increments of one comparison, summed into the batch's tallies."""
    exp = comparison.experiment
    key = keys.shadow_counters(exp, comparison.primary, comparison.shadow)
    members.setdefault(keys.shadow_pairs(exp), set()).add(
        f"{comparison.primary}|{comparison.shadow}"
    )

    def inc(field: str, amount: int = 1) -> None:
        incr[key, field] = incr.get((key, field), 0) + amount

    def plus(field: str, amount: float) -> None:
        add[key, field] = add.get((key, field), 0.0) + amount

    if comparison.error is not None:
        inc(keys.SHADOW_DROPPED if comparison.error.startswith("dropped") else keys.SHADOW_ERRORS)
        return
    inc(keys.SHADOW_PAIRS)
    if comparison.agree:
        inc(keys.SHADOW_AGREE)
    inc(
        f"{keys.SHADOW_CONFUSION}{dumps(comparison.primary_label)}|{dumps(comparison.shadow_label)}"
    )
    inc(bucket(keys.SHADOW_PRIMARY_LATENCY, latency_bounds_ms, comparison.primary_latency_ms))
    if comparison.shadow_latency_ms is not None:
        inc(bucket(keys.SHADOW_SHADOW_LATENCY, latency_bounds_ms, comparison.shadow_latency_ms))
    delta = comparison.score_delta
    if delta is not None:
        inc(keys.SHADOW_DELTA_N)
        plus(keys.SHADOW_DELTA_SUM, delta)
        plus(keys.SHADOW_DELTA_SUMSQ, delta * delta)
        inc(bucket(keys.SHADOW_DELTA_BUCKET, SCORE_DELTA_BUCKETS, delta))
