"""Per-user sums of a rollout window on a real Redis (one instance and a cluster): written by the
recorder's batch script and the feedback script, folded by slot, read back by the rollout store,
and equal to a direct per-user computation. Bounds and lost sums make the gates wait."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import uuid
from collections import defaultdict
from pathlib import Path

from router.core.metrics import GatewayMetrics
from router.core.settings import Settings
from router.local.redis_server import RedisTopology
from router.recording.events import Outcome
from router.recording.feedback import FeedbackInput, FeedbackWriter
from router.recording.recorder import RedisRecorder, unit_bounds
from router.reports.units import UnitSums
from router.rollout.store import RolloutStore
from router.rollout.window import matured_slot, parse_window
from router.storage import keys

WINDOW = 3


def outcome(
    name: str, rid: str, variant: str, user: str | None, failed: bool, slot: int
) -> Outcome:
    return Outcome(
        rid,
        name,
        "cv1",
        variant,
        None if failed else variant,
        variant,
        user is not None,
        0.5,
        user,
        503 if failed else 200,
        2.0,
        0,
        0.1,
        False,
        slot * 10.0,
        window=WINDOW,
        slot=slot,
        by_user=True,
    )


def test_per_user_sums_are_exact_on_every_topology(
    redis_server: RedisTopology, tmp_path: Path
) -> None:
    settings = Settings(**redis_server.settings, experiments_dir=tmp_path, rollout_users_max=1000)
    name = f"units-{uuid.uuid4().hex[:8]}"
    rng = random.Random(5)
    users = [f"{i:016x}" for i in range(60)]
    arm_of = {u: ("v1" if i % 3 else "v2") for i, u in enumerate(users)}
    sent: list[Outcome] = []
    for i in range(600):
        user = rng.choice(users[:5] * 20 + users)  # five heavy users
        sent.append(
            outcome(name, f"{name}-{i}", arm_of[user], user, rng.random() < 0.1, 100 + i // 60)
        )
    sent += [outcome(name, f"{name}-k{i}", "v1", None, False, 100) for i in range(7)]

    async def scenario() -> dict[str, str]:
        recorder = RedisRecorder(settings, GatewayMetrics())
        for event in sent:
            recorder.record(event)
        while recorder.buffer:
            assert await recorder.flush()
        writer = FeedbackWriter(recorder.redis, 100, units=unit_bounds(settings))
        store = RolloutStore(recorder.redis, 100)
        # rewards on even requests, fold slots up to 104, then rewards on odd ones: those of
        # slots up to 104 are folded at once, later ones are held until their slot matures
        labelled = [e for e in sent if e.user_hash and e.status == 200]
        for event in labelled[::2]:
            await writer.accept(FeedbackInput(event.request_id, 0.25, None), 2.0)
        await store.fold_rewards(name, WINDOW, 99, 104, 1000)
        for event in labelled[1::2]:
            await writer.accept(FeedbackInput(event.request_id, 0.75, None), 2.0)
        await store.fold_rewards(name, WINDOW, 99, 107, 1000)
        raw = dict((await store.recorded(name, WINDOW, None, None)).window)
        raw |= await store.unit_sums(name, WINDOW, ("v1", "v2"))
        await recorder.close()
        return raw

    labelled = [e for e in sent if e.user_hash and e.status == 200]
    raw = asyncio.run(scenario())
    arms = parse_window(raw)
    assert matured_slot(raw) == 107
    for variant in ("v1", "v2"):
        per_user: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
        rewards: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
        for event in sent:
            if event.variant != variant or event.user_hash is None:
                continue
            per_user[event.user_hash][0] += 1
            per_user[event.user_hash][1] += event.status >= 500
            if event.status == 200 and event.slot is not None and event.slot <= 107:
                rewards[event.user_hash][0] += 1
                rewards[event.user_hash][1] += 0.25 if labelled.index(event) % 2 == 0 else 0.75
        expected = UnitSums.of_units([(n, y) for n, y in per_user.values()])
        got = arms[variant].users
        assert got == dataclasses.replace(expected, n=float(expected.n), y=float(expected.y))
        expected_r = UnitSums.of_units([(n, y) for n, y in rewards.values()])
        got_r = arms[variant].reward_users
        assert got_r.units == expected_r.units and got_r.n == expected_r.n
        for a, b in ((got_r.y, expected_r.y), (got_r.yy, expected_r.yy), (got_r.ny, expected_r.ny)):
            assert abs(a - b) < 1e-6
        assert arms[variant].users_complete()
    assert arms["v1"].keyless == 7 and arms["v2"].keyless == 0


def test_the_user_bound_marks_the_sums_partial(redis_server: RedisTopology, tmp_path: Path) -> None:
    settings = Settings(**redis_server.settings, experiments_dir=tmp_path, rollout_users_max=10)
    name = f"bound-{uuid.uuid4().hex[:8]}"

    async def scenario() -> dict[str, str]:
        recorder = RedisRecorder(settings, GatewayMetrics())
        for i in range(25):
            recorder.record(outcome(name, f"{name}-{i}", "v1", f"{i:016x}", False, 100))
        while recorder.buffer:
            assert await recorder.flush()
        store = RolloutStore(recorder.redis, 100)
        raw = (await store.recorded(name, WINDOW, None, None)).window
        raw |= await store.unit_sums(name, WINDOW, ("v1", "v2"))
        await recorder.close()
        return raw

    arm = parse_window(asyncio.run(scenario()))["v1"]
    assert arm.units_full and arm.users.units == 10 and arm.assigned == 25
    assert not arm.users_complete()
    client = redis_server.client()
    ttl = client.ttl(keys.rollout_units(name, WINDOW))
    assert 0 < ttl <= settings.rollout_units_ttl


def test_feedback_on_users_whose_sums_are_gone_is_counted_and_skipped(
    redis_server: RedisTopology, tmp_path: Path
) -> None:
    """The per-user sums expired (or Redis lost them) while the requests' attributions live on:
    feedback is still credited per request, counted as orphaned, kept out of the per-user
    sums, and the gates wait instead of deciding on what is left."""
    settings = Settings(**redis_server.settings, experiments_dir=tmp_path, rollout_users_max=100)
    name = f"orphan-{uuid.uuid4().hex[:8]}"
    sent = [outcome(name, f"{name}-{i}", "v1", f"{i % 3:016x}", False, 100) for i in range(6)]
    client = redis_server.client()

    async def scenario() -> dict[str, str]:
        recorder = RedisRecorder(settings, GatewayMetrics())
        for event in sent:
            recorder.record(event)
        while recorder.buffer:
            assert await recorder.flush()
        client.delete(keys.rollout_units(name, WINDOW), keys.config_units(name, "cv1"))
        writer = FeedbackWriter(recorder.redis, 100, units=unit_bounds(settings))
        store = RolloutStore(recorder.redis, 100)
        for event in sent[:4]:
            await writer.accept(FeedbackInput(event.request_id, 1.0, None), 2.0)
        await store.fold_rewards(name, WINDOW, 99, 104, 1000)
        raw = dict((await store.recorded(name, WINDOW, None, None)).window)
        raw |= await store.unit_sums(name, WINDOW, ("v1", "v2"))
        await recorder.close()
        return raw

    arm = parse_window(asyncio.run(scenario()))["v1"]
    assert arm.rewards(None).n == 4  # credited per request
    assert arm.orphan_feedback == 4 and arm.reward_users.units == 0
    assert not arm.users_complete()  # the gates wait on a fresh window
    config = client.hgetall(keys.config_units(name, "cv1"))
    assert config.get("v1|fb_orphan") == "4"
    assert not any(field.endswith("|r_") for field in config)
