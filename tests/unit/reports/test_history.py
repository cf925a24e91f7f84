"""History buckets: how the recorder counts them, how a range is planned, read and summed."""

from __future__ import annotations

import math
from typing import Any

import pytest

from router.core.errors import InvalidInput
from router.recording.events import (
    HistoryRetention,
    Outcome,
    ShadowComparison,
    Tally,
    count_comparison,
    count_outcome,
)
from router.reports.history import (
    MAX_POINTS,
    history_report,
    parse_end,
    parse_range,
    parse_span,
    plan,
    series_from,
)
from router.storage import keys

T0 = 1_800_000_000.0  # 2027-01-15 08:00:00 UTC, a whole hour
RETENTION = HistoryRetention(minute=7 * 86_400, hour=90 * 86_400)


def outcome(ts: float, variant: str = "v1", **changes: Any) -> Outcome:
    base: dict[str, Any] = {
        "request_id": f"r{ts}",
        "experiment": "exp",
        "config_version": "cv",
        "variant": variant,
        "served_variant": variant,
        "version": variant,
        "sticky": False,
        "propensity": 0.5,
        "user_hash": None,
        "status": 200,
        "latency_ms": 10.0,
        "label": 1,
        "score": 0.9,
        "fallback": False,
        "ts": ts,
    }
    return Outcome(**(base | changes))


def hashes_of(tally: Tally) -> dict[str, dict[str, str]]:
    """What Redis would hold after the tally's commands."""
    out: dict[str, dict[str, str]] = {}
    for (key, field), n in tally.ints.items():
        out.setdefault(key, {})[field] = str(n)
    for (key, field), x in tally.floats.items():
        out.setdefault(key, {})[field] = repr(x)
    return out


# --- counting ------------------------------------------------------------------------------
def test_an_outcome_counts_into_the_minute_and_the_hour_bucket() -> None:
    tally = Tally(RETENTION)
    count_outcome(tally, outcome(T0 + 125.0, latency_ms=12.5))
    minute = keys.history("exp", "m", int(T0) // 3600)
    hour = keys.history("exp", "h", int(T0) // 86_400)
    assert tally.ints[minute, "2|v1|a"] == 1  # the third minute of the hour
    assert tally.floats[minute, "2|v1|l"] == 12.5
    assert tally.ints[hour, "8|v1|a"] == 1  # 08:00 is the ninth hour of the day
    assert (minute, "2|v1|e") not in tally.ints  # a bucket keeps only counters that were hit
    expires = {c[1]: int(c[2][0]) for c in tally.commands() if c[0] == "EXPIRE"}
    assert expires == {minute: RETENTION.minute + 3600, hour: RETENTION.hour + 86_400}


def test_failures_count_on_the_chosen_variant() -> None:
    tally = Tally(RETENTION)
    count_outcome(tally, outcome(T0, "v2", served_variant=None, status=503))
    count_outcome(tally, outcome(T0 + 1, "v2", served_variant="v1", fallback=True))
    minute = keys.history("exp", "m", int(T0) // 3600)
    assert tally.ints[minute, "0|v2|a"] == 2
    assert tally.ints[minute, "0|v2|e"] == 1
    assert tally.ints[minute, "0|v2|f"] == 1


def test_without_history_nothing_is_counted_into_buckets() -> None:
    tally = Tally()
    count_outcome(tally, outcome(T0))
    assert not any(":history:" in key for key, _ in tally.ints)
    assert not any(c[0] == "EXPIRE" for c in tally.commands())


def test_shadow_comparisons_count_pairs_and_agreement() -> None:
    tally = Tally(RETENTION)
    for agree in (True, True, False):
        count_comparison(
            tally,
            ShadowComparison(
                "r", "exp", "cv", "v1", "v3", 1, 0.9, 5.0, 1 if agree else 0, 0.8, 6.0, ts=T0
            ),
        )
    count_comparison(
        tally, ShadowComparison("r", "exp", "cv", "v1", "v3", 1, 0.9, 5.0, error="error", ts=T0)
    )
    minute = keys.history("exp", "m", int(T0) // 3600)
    assert tally.ints[minute, "0|v1>v3|n"] == 3
    assert tally.ints[minute, "0|v1>v3|g"] == 2


# --- ranges ----------------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["", "3x", "1.5h", "h", "-1h", "10", "9999999d", "1h; drop"])
def test_a_span_that_does_not_parse_is_refused_with_the_reason(text: str) -> None:
    with pytest.raises(InvalidInput, match="does not parse"):
        parse_span(text)


def test_spans_and_their_limits() -> None:
    assert parse_span("15m") == 900
    assert parse_span("6h") == 21_600
    assert parse_span("30d") == 30 * 86_400
    with pytest.raises(InvalidInput, match="shortest"):
        parse_span("1m")
    with pytest.raises(InvalidInput, match="longer than the history kept"):
        parse_range("91d", None, T0, 90 * 86_400)


def test_ends_parse_as_iso_or_epoch_and_nothing_else() -> None:
    assert parse_end("2027-01-15T08:00:00Z") == T0
    assert parse_end("2027-01-15T08:00:00") == T0  # UTC unless it says otherwise
    assert parse_end("2027-01-15T09:00:00+01:00") == T0
    assert parse_end(str(T0)) == T0
    for bad in ("yesterday", "nan", "-5", "2027-13-01"):
        with pytest.raises(InvalidInput):
            parse_end(bad)


def test_short_ranges_read_minutes_and_long_ones_hours() -> None:
    day = plan("exp", parse_range("24h", None, T0, 90 * 86_400), T0, 7 * 86_400)
    month = plan("exp", parse_range("30d", None, T0, 90 * 86_400), T0, 7 * 86_400)
    old = plan("exp", parse_range("1h", str(T0 - 10 * 86_400), T0, 90 * 86_400), T0, 7 * 86_400)
    assert (day.tier, day.step) == ("m", 600)
    assert len(day.keys) == 24  # one hash per hour of minutes
    assert (month.tier, month.step) == ("h", 10_800)
    assert len(month.keys) == 31
    assert old.tier == "h"  # the minute tier no longer holds it
    for chosen in (day, month, old):
        assert chosen.points <= MAX_POINTS + 1
        assert chosen.start % chosen.step == 0  # aligned: refreshes do not shift points


def test_buckets_sum_exactly_into_points() -> None:
    tally = Tally(RETENTION)
    for minute in range(180):  # three hours, 3 requests a minute to v1 and 1 to v2
        for _ in range(3):
            count_outcome(tally, outcome(T0 + 60 * minute + 5, "v1"))
        count_outcome(tally, outcome(T0 + 60 * minute + 5, "v2", latency_ms=30.0))
    held = hashes_of(tally)
    wanted = parse_range("6h", None, T0 + 3 * 3600, 90 * 86_400)
    chosen = plan("exp", wanted, T0 + 3 * 3600, 7 * 86_400)
    report = history_report(chosen, wanted, [held.get(k, {}) for k in chosen.keys], ["v1", "v2"])
    assert report["range"]["tier"] == "minute"
    assert sum(report["variants"]["v1"]["assigned"]) == 540
    assert sum(report["variants"]["v2"]["assigned"]) == 180
    assert sum(report["total"]) == 720
    shares = [s for s in report["variants"]["v1"]["share_pct"] if s is not None]
    assert shares and all(math.isclose(s, 75.0) for s in shares)
    means = [m for m in report["variants"]["v2"]["latency_mean_ms"] if m is not None]
    assert all(math.isclose(m, 30.0) for m in means)
    # points before the traffic have no share rather than a zero
    assert report["variants"]["v1"]["share_pct"][0] is None


def test_the_hour_tier_gives_the_same_totals() -> None:
    tally = Tally(RETENTION)
    for minute in range(0, 3 * 86_400 // 60, 7):
        count_outcome(tally, outcome(T0 - 86_400 + 60 * minute, "v1"))
    held = hashes_of(tally)
    now = T0 + 2 * 86_400
    wanted = parse_range("7d", None, now, 90 * 86_400)
    chosen = plan("exp", wanted, now, 86_400)
    assert chosen.tier == "h"
    sums = series_from(chosen, [held.get(k, {}) for k in chosen.keys])
    assert sum(sums["v1"]["assigned"]) == len(range(0, 3 * 86_400 // 60, 7))
