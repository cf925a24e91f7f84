"""The key layout: every multi-key script call touches one Redis Cluster slot, and the old
layout maps onto the new one key by key (``turnout migrate-keys``)."""

from __future__ import annotations

from typing import Any

import pytest
from redis.crc import key_slot

from router.bandit.evidence import evidence_commands
from router.recording.buffer import Pending
from router.recording.events import Outcome, ShadowComparison
from router.recording.feedback import FeedbackWriter
from router.recording.recorder import by_experiment, encode_batch
from router.storage import keys
from router.storage.migrate import plan_experiment_key, plan_request_key
from router.storage.scripts import KeyTable


def slots(names: list[str]) -> set[int]:
    return {key_slot(name.encode()) for name in names}


def outcome(rid: str, experiment: str) -> Outcome:
    return Outcome(
        rid, experiment, "cv", "v1", "v1", "v1", False, 0.5, "u", 200, 1.0, 1, 0.5, False, 1.0
    )


def shadow(rid: str, experiment: str) -> ShadowComparison:
    return ShadowComparison(rid, experiment, "cv", "v1", "v3", 1, 0.5, 2.0, 0, 0.1, 3.0)


def test_a_batch_of_many_experiments_becomes_one_single_slot_call_each() -> None:
    names = ["checkout", "search-ranking", "exp.7", "a"]
    batch = [
        Pending(f"t{i}", event)
        for i, event in enumerate(
            [outcome(f"r{i}", n) for i, n in enumerate(names * 3)]
            + [shadow(f"r{i}", n) for i, n in enumerate(names)]
        )
    ]
    parts = by_experiment(batch)
    assert list(parts) == names
    for name, items in parts.items():
        encoded = encode_batch(items, 100, 60)
        assert len(slots(encoded.keys)) == 1, encoded.keys
        assert slots(encoded.keys) == {key_slot(keys.slot_tag(name)[1:-1].encode())}
    with pytest.raises(ValueError, match="one experiment"):
        encode_batch(batch, 100, 60)


def test_every_key_of_an_experiment_shares_its_slot_and_a_locator_has_its_own() -> None:
    e = "checkout"
    per_experiment = [
        keys.variants(e),
        keys.counters(e, "v1"),
        keys.assigned(e, "cv"),
        keys.events(e),
        keys.feedback(e),
        keys.attribution(e, "rid-1"),
        keys.bandit(e),
        keys.bandit_sticky(e),
        keys.shadow_pairs(e),
        keys.shadow_counters(e, "v1", "v3"),
        keys.shadow_events(e),
        keys.disagreements(e),
        keys.shadow_request(e, "rid-1", "v3"),
    ]
    assert len(slots(per_experiment)) == 1
    assert all("{checkout}" in k for k in per_experiment)
    assert "{" not in keys.request("rid-1")  # spread over the cluster by request id
    assert len(slots([keys.FLAGS, keys.AUDIT, keys.PROMOTIONS])) == 1  # one flag script


def test_the_feedback_script_touches_one_slot() -> None:
    writer: Any = FeedbackWriter.__new__(FeedbackWriter)
    writer.stream_maxlen = 100
    attribution = {
        "experiment": "checkout",
        "variant": "v1",
        "served_variant": "v1",
        "propensity": "0.5",
        "label": "1",
        "shadow_label:v3": "1",
    }
    commands = writer._commands("rid-1", attribution, "v1", 1.0, 1, True, 2.0)
    commands += evidence_commands("checkout", "v1", 1.0)
    table = KeyTable()
    table.ref(keys.attribution("checkout", "rid-1"))
    table.encode(commands)
    assert len(slots(table.keys)) == 1, table.keys


def test_old_keys_map_to_the_new_layout() -> None:
    move = plan_experiment_key("turnout:exp:checkout:variant:v1")
    assert move is not None and move.new == keys.counters("checkout", "v1")
    assert move.merge == "sum"
    events = plan_experiment_key("turnout:exp:checkout:events")
    assert events is not None and (events.new, events.merge) == (keys.events("checkout"), "keep")
    bandit = plan_experiment_key("turnout:exp:checkout:bandit")
    assert bandit is not None and bandit.merge == "sum"
    assert plan_experiment_key(keys.events("checkout")) is None  # already the new layout
    request = plan_request_key("turnout:req:a:b", {"experiment": "checkout", "variant": "v1"})
    assert request is not None
    assert (request.new, request.locator) == (
        keys.attribution("checkout", "a:b"),
        keys.request("a:b"),
    )
    guard = plan_request_key(
        "turnout:req:r9:shadow:v3", {"experiment": "checkout", "primary": "v1", "token": "t"}
    )
    assert guard is not None and guard.new == keys.shadow_request("checkout", "r9", "v3")
    assert guard.locator is None
    assert plan_request_key("turnout:req:orphan", {"shadow_label:v3": "1"}) is None
