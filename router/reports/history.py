"""Time series from the recorder's history buckets, as plain data. Pure; ``reads.py`` fetches.

A range (``15m`` .. ``90d``, ending now or at ``end``) is read from the finest tier that covers
it cheaply: per-minute buckets for ranges up to two days that the minute tier still holds,
per-hour buckets otherwise. Buckets are then summed into at most ``MAX_POINTS`` points of a
round width (5 minutes, 3 hours...), aligned to the epoch so live refreshes do not shift them.
Sums are exact: a point is the total of the buckets it covers, never a sample of them.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from router.core.errors import InvalidInput, echo
from router.storage import keys

MAX_POINTS = 240
"""Most points per series: about one per 5 pixels of a wide chart."""
MINUTE_TIER_LONGEST = 2 * 86_400
"""Longest range read from per-minute buckets (48 hashes of at most 60 buckets each)."""
STEPS = {
    "m": (60, 120, 300, 600, 900, 1800, 3600),
    "h": (3600, 7200, 10_800, 21_600, 43_200, 86_400, 172_800, 604_800),
}
"""Point widths in seconds each tier may sum its buckets into."""
SPAN = re.compile(r"^(\d{1,6})(m|h|d)$")
UNIT = {"m": 60, "h": 3600, "d": 86_400}
COUNTERS = {
    keys.HIST_ASSIGNED: "assigned",
    keys.HIST_ERRORS: "errors",
    keys.HIST_FALLBACKS: "fallbacks",
    keys.HIST_LATENCY: "latency_sum_ms",
    keys.HIST_PAIRS: "pairs",
    keys.HIST_AGREE: "agree",
}


@dataclass(frozen=True)
class TimeRange:
    start: float
    end: float
    span: str
    """As asked, e.g. ``6h``."""

    @property
    def seconds(self) -> float:
        return self.end - self.start


def parse_span(text: str) -> int:
    """``15m``, ``6h``, ``30d`` -> seconds; ``InvalidInput`` (422) with the reason otherwise."""
    match = SPAN.match(text.strip())
    if match is None:
        raise InvalidInput(
            f"range {echo(text, 40)} does not parse: a whole number and a unit m, h or d "
            "(15m, 6h, 30d)"
        )
    seconds = int(match.group(1)) * UNIT[match.group(2)]
    if seconds < 300:
        raise InvalidInput(f"range {echo(text, 40)} is shorter than the shortest range, 5m")
    return seconds


def parse_end(text: str) -> float:
    """An ISO 8601 time (UTC unless it says otherwise) or epoch seconds."""
    raw = text.strip()
    try:
        value = float(raw)
    except ValueError:
        try:
            when = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidInput(
                f"end {echo(text, 40)} does not parse: an ISO 8601 time (2026-11-30T12:00:00Z) "
                "or epoch seconds"
            ) from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        value = when.timestamp()
    if not math.isfinite(value) or value < 0:
        raise InvalidInput(f"end {echo(text, 40)} is not a time")
    return value


def parse_range(span: str | None, end: str | None, now: float, longest: int) -> TimeRange:
    """The range a console request asks for (default: the last hour, ending now)."""
    span = span or "1h"
    seconds = parse_span(span)
    if seconds > longest:
        raise InvalidInput(
            f"range {span!r} is longer than the history kept ({longest // 86_400}d, "
            "TURNOUT_HISTORY_HOUR_RETENTION)"
        )
    stop = now if end is None or not end.strip() else parse_end(end)
    return TimeRange(stop - seconds, stop, span)


@dataclass(frozen=True)
class Plan:
    """Which bucket hashes one range reads, and how their buckets sum into points."""

    tier: str
    width: int
    step: int
    start: int
    points: int
    keys: list[str]
    groups: list[int]

    def times(self) -> list[int]:
        return [self.start + i * self.step for i in range(self.points)]


def plan(experiment: str, wanted: TimeRange, now: float, minute_retention: int) -> Plan:
    covered = wanted.start >= now - minute_retention
    tier = "m" if wanted.seconds <= MINUTE_TIER_LONGEST and covered else "h"
    width, period = keys.HISTORY_TIERS[tier]
    needed = wanted.seconds / MAX_POINTS
    step = next((s for s in STEPS[tier] if s >= needed), STEPS[tier][-1])
    start = int(wanted.start // step) * step
    stop = math.ceil(wanted.end / step) * step
    points = max(1, (stop - start) // step)
    first, last = start // period, (stop - 1) // period
    groups = list(range(first, last + 1))
    return Plan(
        tier,
        width,
        step,
        start,
        points,
        [keys.history(experiment, tier, g) for g in groups],
        groups,
    )


def series_from(plan: Plan, hashes: list[dict[str, str]]) -> dict[str, dict[str, list[float]]]:
    """Series name -> counter -> one sum per point, from the plan's hashes (in its order)."""
    _, period = keys.HISTORY_TIERS[plan.tier]
    per_group = period // plan.width
    out: dict[str, dict[str, list[float]]] = {}
    for group, raw in zip(plan.groups, hashes, strict=True):
        base = group * per_group
        for field, value in raw.items():
            offset, series, counter = field.split("|", 2)
            point = ((base + int(offset)) * plan.width - plan.start) // plan.step
            if not 0 <= point < plan.points or counter not in COUNTERS:
                continue
            sums = out.setdefault(series, {})
            row = sums.get(COUNTERS[counter])
            if row is None:
                row = sums[COUNTERS[counter]] = [0.0] * plan.points
            row[point] += float(value)
    return out


def history_report(
    plan: Plan, wanted: TimeRange, hashes: list[dict[str, str]], variants: list[str]
) -> dict[str, Any]:
    """Traffic per variant (and its share of each point), errors, fallbacks, mean latency, and
    shadow agreement per pair, over time. ``variants`` come first, in order; others follow."""
    sums = series_from(plan, hashes)
    names = list(variants) + sorted(s for s in sums if ">" not in s and s not in variants)
    zero = [0.0] * plan.points
    totals = [0.0] * plan.points
    for name in names:
        for i, n in enumerate(sums.get(name, {}).get("assigned", zero)):
            totals[i] += n
    out_variants: dict[str, Any] = {}
    for name in names:
        row = sums.get(name, {})
        assigned = row.get("assigned", zero)
        latency = row.get("latency_sum_ms", zero)
        out_variants[name] = {
            "assigned": [int(n) for n in assigned],
            "errors": [int(n) for n in row.get("errors", zero)],
            "fallbacks": [int(n) for n in row.get("fallbacks", zero)],
            "share_pct": [_ratio(100.0 * n, t) for n, t in zip(assigned, totals, strict=True)],
            "latency_mean_ms": [_ratio(s, n) for s, n in zip(latency, assigned, strict=True)],
        }
    shadow: dict[str, Any] = {}
    for name in sorted(s for s in sums if ">" in s):
        primary, target = name.split(">", 1)
        pairs, agree = sums[name].get("pairs", zero), sums[name].get("agree", zero)
        shadow[name] = {
            "primary": primary,
            "shadow": target,
            "pairs": [int(n) for n in pairs],
            "agree": [int(n) for n in agree],
            "agreement": [_ratio(a, n) for a, n in zip(agree, pairs, strict=True)],
        }
    return {
        "range": {
            "span": wanted.span,
            "start": wanted.start,
            "end": wanted.end,
            "tier": "minute" if plan.tier == "m" else "hour",
            "step_s": plan.step,
            "points": plan.points,
        },
        "t": plan.times(),
        "total": [int(n) for n in totals],
        "variants": out_variants,
        "shadow": shadow,
    }


def _ratio(part: float, whole: float) -> float | None:
    return part / whole if whole else None
