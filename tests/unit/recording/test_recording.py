"""Pure parts of recording, feedback and reports: the buffer, the encoders, the validators."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.config.experiments import Experiment
from router.core.errors import InvalidInput
from router.recording.buffer import OutcomeBuffer, Pending
from router.recording.events import (
    LATENCY_BOUNDS_MS,
    Outcome,
    Tally,
    attribution_fields,
    count_outcome,
    event_fields,
    is_positive,
    label_type,
    latency_field,
    stream_command,
)
from router.recording.feedback import parse_feedback
from router.recording.recorder import encode_batch
from router.reports.experiment import build_report, latency_buckets
from router.reports.reads import Recorded
from router.storage import keys


def outcome(rid: str = "r1", **changes: Any) -> Outcome:
    base: dict[str, Any] = {
        "request_id": rid,
        "experiment": "exp",
        "config_version": "cv1",
        "variant": "v2",
        "served_variant": "v2",
        "version": "v2",
        "sticky": True,
        "propensity": 0.1,
        "user_hash": "0123456789abcdef",
        "status": 200,
        "latency_ms": 4.2,
        "label": 1,
        "score": 0.75,
        "fallback": False,
        "ts": 1_700_000_000.5,
    }
    base.update(changes)
    return Outcome(**base)


def pending(i: int) -> Pending:
    return Pending(f"t:{i}", outcome(f"r{i}"))


# --- buffer -------------------------------------------------------------------------------


def test_buffer_is_fifo_and_drops_the_oldest_when_full() -> None:
    buf = OutcomeBuffer(3)
    assert [buf.append(pending(i)) for i in range(3)] == [None, None, None]
    dropped = buf.append(pending(3))
    assert dropped is not None and dropped.token == "t:0"
    assert len(buf) == 3
    assert not buf.holds("r0") and buf.holds("r3")
    assert [p.token for p in buf.take(10)] == ["t:1", "t:2", "t:3"]


def test_batch_in_flight_is_never_dropped_and_comes_back_in_order() -> None:
    buf = OutcomeBuffer(4)
    for i in range(4):
        buf.append(pending(i))
    batch = buf.take(2)
    assert [p.token for p in batch] == ["t:0", "t:1"]
    assert (len(buf), buf.in_flight) == (4, 2)
    # Full: the oldest event *not in flight* makes room.
    dropped = buf.append(pending(4))
    assert dropped is not None and dropped.token == "t:2"
    buf.restore()
    assert [p.token for p in buf.take(10)] == ["t:0", "t:1", "t:3", "t:4"]


def test_newcomer_is_dropped_when_everything_held_is_in_flight() -> None:
    buf = OutcomeBuffer(2)
    buf.append(pending(0))
    buf.append(pending(1))
    buf.take(5)
    newcomer = pending(2)
    assert buf.append(newcomer) is newcomer
    assert len(buf) == 2
    assert [p.token for p in buf.commit()] == ["t:0", "t:1"]
    assert len(buf) == 0 and not buf.holds("r0")


def test_one_batch_in_flight_at_a_time() -> None:
    buf = OutcomeBuffer(5)
    buf.append(pending(0))
    buf.take(1)
    with pytest.raises(RuntimeError):
        buf.take(1)


def test_holds_counts_repeated_request_ids() -> None:
    buf = OutcomeBuffer(5)
    buf.append(Pending("a", outcome("same")))
    buf.append(Pending("b", outcome("same")))
    buf.take(1)
    buf.commit()
    assert buf.holds("same")
    assert buf.clear() == 1
    assert not buf.holds("same")


@settings(max_examples=200, deadline=None)
@given(
    capacity=st.integers(1, 8),
    ops=st.lists(st.sampled_from(["add", "take", "commit", "restore"]), max_size=60),
)
def test_identity_produced_equals_written_plus_buffered_plus_dropped(
    capacity: int, ops: list[str]
) -> None:
    buf = OutcomeBuffer(capacity)
    produced = written = dropped = 0
    for i, op in enumerate(ops):
        if op == "add":
            produced += 1
            if buf.append(pending(i)) is not None:
                dropped += 1
        elif op == "take" and not buf.in_flight:
            buf.take(3)
        elif op == "commit":
            written += len(buf.commit())
        elif op == "restore":
            buf.restore()
        assert len(buf) <= capacity
        assert produced == written + len(buf) + dropped


# --- encoding -----------------------------------------------------------------------------


def test_latency_fields_follow_the_bucket_bounds() -> None:
    assert latency_field(0.0) == keys.LATENCY_BUCKET + "0.5"
    assert latency_field(0.5) == keys.LATENCY_BUCKET + "0.5"
    assert latency_field(0.51) == keys.LATENCY_BUCKET + "1"
    assert latency_field(7.5) == keys.LATENCY_BUCKET + "7.5"
    assert latency_field(1e9) == keys.LATENCY_BUCKET + "+Inf"


def test_label_types_and_positives() -> None:
    assert [label_type(v) for v in (True, 1, 1.0, "1", None)] == [
        "bool",
        "int",
        "float",
        "str",
        "other",
    ]
    assert is_positive(1) and is_positive(True)
    assert not is_positive(0) and not is_positive("1") and not is_positive(1.0)


def test_event_has_no_raw_text_and_only_the_hashed_user() -> None:
    fields = event_fields(outcome())
    assert "text" not in fields and "user_id" not in fields
    assert fields["user_hash"] == "0123456789abcdef"
    assert fields["label"] == "1" and fields["score"] == "0.75"
    bare = event_fields(outcome(served_variant=None, version=None, label=None, score=None))
    assert not {"served_variant", "version", "label", "score"} & set(bare)


def counted(*outcomes: Outcome) -> Tally:
    tally = Tally()
    for o in outcomes:
        count_outcome(tally, o)
    return tally


def test_fallback_counts_on_the_chosen_variant_answers_on_the_control() -> None:
    tally = counted(outcome(served_variant="v1", version="v1", fallback=True))
    chosen, control = keys.counters("exp", "v2"), keys.counters("exp", "v1")
    assert tally.ints[chosen, keys.ASSIGNED] == tally.ints[chosen, keys.FALLBACKS] == 1
    assert tally.ints[control, keys.SERVED] == tally.ints[control, keys.POSITIVE] == 1
    assert (chosen, keys.SERVED) not in tally.ints
    assert tally.floats[control, keys.SCORE_SUM] == 0.75
    assert tally.members[keys.variants("exp")] == {"v1", "v2"}
    name, key, args = stream_command(outcome(), 100)
    assert (name, key, args[:4]) == ("XADD", keys.events("exp"), ("MAXLEN", "~", "100", "*"))


def test_nothing_answered_is_an_error_of_the_chosen_variant() -> None:
    tally = counted(outcome(served_variant=None, version=None, status=503, label=None, score=None))
    assert tally.ints[keys.counters("exp", "v2"), keys.ERRORS] == 1
    assert not any(field == keys.SERVED for _, field in tally.ints)


def test_only_an_answer_with_a_prediction_can_be_credited() -> None:
    assert attribution_fields(outcome())["served_variant"] == "v2"
    refused = outcome(status=422, label=None, score=None)
    assert "served_variant" not in attribution_fields(refused)
    assert "served_variant" not in attribution_fields(outcome(served_variant=None, status=503))


def test_a_batch_sums_its_counters_and_sends_a_repeated_request_id_once() -> None:
    items = [Pending("a", outcome("r1")), Pending("b", outcome("r2")), Pending("c", outcome("r1"))]
    encoded = encode_batch(items, 100, 60)
    assert [p.token for p in encoded.sent] == ["a", "b"]
    assert (encoded.repeated, encoded.unencodable) == (1, 0)
    tally = counted(outcome("r1"), outcome("r2"))
    assert tally.ints[keys.counters("exp", "v2"), keys.ASSIGNED] == 2
    assert tally.floats[keys.counters("exp", "v2"), keys.LATENCY_SUM] == pytest.approx(8.4)


# --- feedback validation --------------------------------------------------------------------

BAD_FEEDBACK = [
    ("not an object", ["r1"]),
    ("missing id", {"reward": 1}),
    ("id not a string", {"request_id": 5, "reward": 1}),
    ("id with spaces", {"request_id": "a b", "reward": 1}),
    ("neither reward nor label", {"request_id": "r1"}),
    ("both reward and label", {"request_id": "r1", "reward": 1, "label": 1}),
    ("reward above 1", {"request_id": "r1", "reward": 1.5}),
    ("reward below 0", {"request_id": "r1", "reward": -0.1}),
    ("reward a string", {"request_id": "r1", "reward": "1"}),
    ("reward a boolean", {"request_id": "r1", "reward": True}),
    ("reward null", {"request_id": "r1", "reward": None}),
    ("reward nan", {"request_id": "r1", "reward": math.nan}),
    ("label a list", {"request_id": "r1", "label": [1]}),
    ("label null", {"request_id": "r1", "label": None}),
    ("label an object", {"request_id": "r1", "label": {"class": 1}}),
    ("unknown field", {"request_id": "r1", "reward": 1, "text": "raw"}),
]


@pytest.mark.parametrize(("case", "body"), BAD_FEEDBACK, ids=[c for c, _ in BAD_FEEDBACK])
def test_bad_feedback_is_refused(case: str, body: Any) -> None:
    with pytest.raises(InvalidInput):
        parse_feedback(body)


def test_good_feedback_parses() -> None:
    assert parse_feedback({"request_id": "r:1", "reward": 0}).reward == 0.0
    assert parse_feedback({"request_id": "r1", "reward": 0.25}).reward == 0.25
    assert parse_feedback({"request_id": "r1", "label": "spam"}).label == "spam"
    assert parse_feedback({"request_id": "r1", "label": False}).label is False


# --- reports --------------------------------------------------------------------------------


def experiment(weights: dict[str, float] | None = None) -> Experiment:
    weights = weights or {"v1": 90, "v2": 10}
    return Experiment.model_validate(
        {
            "name": "exp",
            "model": "profanity",
            "control": "v1",
            "variants": {v: {"url": f"http://127.0.0.1:81{i:02d}"} for i, v in enumerate(weights)},
            "policy": {"kind": "canary", "weights": weights},
        }
    )


def test_report_of_an_experiment_without_traffic_is_valid_zeros() -> None:
    report = build_report(experiment(), "cv1", Recorded({}, {}), 0.0)
    assert report["totals"] == {
        "assigned": 0,
        "served": 0,
        "errors": 0,
        "fallbacks": 0,
        "failovers": 0,
        "feedback": 0,
    }
    assert [r["variant"] for r in report["variants"]] == ["v1", "v2"]
    for row in report["variants"]:
        assert row["assigned"] == row["served"] == row["feedback"]["count"] == 0
        assert row["share_pct"] == 0.0
        assert row["latency_ms"] == {"mean": None, "p50": None, "p95": None, "p99": None}
        assert row["feedback"]["interval"] is None
    assert report["srm"]["mismatch"] is False
    assert report["comparisons"][0]["reward"]["difference"] is None


def test_report_numbers_from_counters() -> None:
    v1 = {
        keys.ASSIGNED: "90",
        keys.SERVED: "92",
        keys.LATENCY_SUM: "450",
        keys.LATENCY_BUCKET + "5": "60",
        keys.LATENCY_BUCKET + "10": "30",
        keys.LABELLED: "92",
        keys.POSITIVE: "46",
        keys.FEEDBACK_N: "40",
        keys.FEEDBACK_SUM: "30",
        keys.FEEDBACK_SUMSQ: "30",
        keys.FEEDBACK_BINARY: "40",
    }
    v2 = {
        keys.ASSIGNED: "10",
        keys.SERVED: "8",
        keys.FALLBACKS: "2",
        keys.FEEDBACK_N: "4",
        keys.FEEDBACK_SUM: "1.5",
        keys.FEEDBACK_SUMSQ: "0.75",
        keys.FEEDBACK_BINARY: "2",
    }
    report = build_report(experiment(), "cv1", Recorded({"v1": v1, "v2": v2}, {}), 0.0)
    r1, r2 = report["variants"]
    assert (r1["share_pct"], r2["share_pct"]) == (90.0, 10.0)
    assert r1["latency_ms"]["mean"] == 5.0
    # Rank 45 of 90 falls in the (3, 5] ms bucket (the empty buckets below it still count
    # as edges): 3 + 45/60 * (5 - 3).
    assert r1["latency_ms"]["p50"] == pytest.approx(3.0 + 45 / 60 * 2.0)
    assert r1["positive_rate"] == 0.5
    assert r1["feedback"]["interval_method"] == "wilson"
    assert r2["feedback"]["interval_method"] == "t"
    assert r2["fallback_rate"] == 0.2
    assert report["comparisons"][0]["reward"]["difference"] == pytest.approx(0.375 - 0.75)


def test_srm_is_flagged_when_assignments_disagree_with_weights() -> None:
    fine = build_report(experiment(), "cv1", Recorded({}, {"v1": 905, "v2": 95}), 0.0)
    skewed = build_report(experiment(), "cv1", Recorded({}, {"v1": 800, "v2": 200}), 0.0)
    assert fine["srm"]["mismatch"] is False
    assert skewed["srm"]["mismatch"] is True and skewed["srm"]["p_value"] < 0.001


def test_latency_buckets_are_cumulated_in_bound_order() -> None:
    raw = {keys.LATENCY_BUCKET + "+Inf": "1", keys.LATENCY_BUCKET + "10": "2", "other": "9"}
    raw[keys.LATENCY_BUCKET + "3"] = "3"
    bounds, cumulative = latency_buckets(raw)
    assert bounds == [*LATENCY_BOUNDS_MS, math.inf]  # empty buckets too: they are edges
    at = dict(zip(bounds, cumulative, strict=True))
    assert (at[2.0], at[3.0], at[7.5], at[10.0], at[5000.0], at[math.inf]) == (0, 3, 3, 5, 5, 6)
