"""Outcomes under rollout weights count into their window; feedback into the request's slot."""

from __future__ import annotations

from router.recording.events import Outcome, Tally, attribution_fields, window_feedback_commands
from router.storage import keys


def outcome(**kw: object) -> Outcome:
    values: dict[str, object] = {
        "request_id": "r1",
        "experiment": "e",
        "config_version": "c",
        "variant": "v2",
        "served_variant": "v2",
        "version": "v2",
        "sticky": True,
        "propensity": 0.1,
        "user_hash": "h",
        "status": 200,
        "latency_ms": 4.0,
        "label": 1,
        "score": 0.9,
        "fallback": False,
        "ts": 100.0,
        "window": 3,
        "slot": 10,
    }
    values.update(kw)
    return Outcome(**values)  # type: ignore[arg-type]


def window_counts(event: Outcome) -> dict[str, int]:
    tally = Tally()
    event.count(tally)
    key = keys.rollout_window("e", 3)
    return {field: n for (k, field), n in tally.ints.items() if k == key}


def test_a_decision_counts_assigned_latency_and_failure_in_its_window() -> None:
    assert window_counts(outcome()) == {"v2|assigned": 1, "v2|lat_le:5": 1}
    failed = window_counts(outcome(fallback=True, served_variant="v1"))
    assert failed["v2|failed"] == 1 and failed["v2|assigned"] == 1
    assert window_counts(outcome(served_variant=None, status=503))["v2|failed"] == 1
    assert window_counts(outcome(forced="kill_switch")) == {}  # flags are no policy decision
    assert window_counts(outcome(window=None)) == {}


def test_attribution_carries_the_window_and_slot_for_feedback() -> None:
    fields = attribution_fields(outcome())
    assert (fields["window"], fields["slot"]) == ("3", "10")
    assert "window" not in attribution_fields(outcome(window=None, slot=None))
    commands = window_feedback_commands("e", 3, 10, "v2", 0.5)
    key = keys.rollout_window("e", 3)
    assert commands == [
        ("HINCRBY", key, ("v2|fb_n|10", "1")),
        ("HINCRBYFLOAT", key, ("v2|fb_sum|10", "0.5")),
        ("HINCRBYFLOAT", key, ("v2|fb_sumsq|10", "0.25")),
    ]
