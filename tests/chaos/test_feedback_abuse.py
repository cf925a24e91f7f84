"""Feedback no one can park: a flood of future-dated and unknown request ids against the
feedback replica, while legitimate feedback flows across replicas. Future-dated ids are refused,
unknown ones expire with the hold, Redis work stays bounded, and the legitimate feedback is
never refused for a full hold, nor lost."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from pathlib import Path

import aiohttp

from router.core.ids import new_request_id
from router.local.processes import poll_until
from router.local.redis_server import EmbeddedRedis
from router.storage import keys
from tests.chaos.harness import metrics
from tests.conftest import GatewayFactory, canary_yaml, write_experiment

FLOOD_SECONDS = 8.0
UNKNOWN_PER_SECOND = 100
FUTURE_DATED = 1500
HOLD_MAX = 1000
"""Fewer than the future-dated ids sent: held, they alone would fill the hold."""


def future_id() -> str:
    """A well-formed UUIDv7 request id dated a year ahead."""
    return f"{int((time.time() + 365 * 86_400) * 1000):012x}" + new_request_id()[12:]


def commands(redis: EmbeddedRedis) -> int:
    return int(redis.client().info("stats")["total_commands_processed"])


async def flood(a: str, b: str, redis: EmbeddedRedis) -> dict[str, object]:
    """The abusive flood on B and, beside it, two clients predicting on A and sending their
    feedback to B; returns each stream's answers and Redis commands/s over the flood."""
    flood_answers: Counter[tuple[str, int]] = Counter()
    legit: list[tuple[str, int, str]] = []
    end = time.monotonic() + FLOOD_SECONDS
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        limit = asyncio.Semaphore(32)

        async def abusive(kind: str, rid: str) -> None:
            async with (
                limit,
                session.post(f"{b}/feedback", json={"request_id": rid, "reward": 1}) as r,
            ):
                await r.read()
                flood_answers[kind, r.status] += 1

        async def unknown_stream() -> None:
            sends = []
            for _ in range(int(FLOOD_SECONDS * UNKNOWN_PER_SECOND)):
                sends.append(asyncio.create_task(abusive("unknown", f"made-up-{uuid.uuid4()}")))
                await asyncio.sleep(1 / UNKNOWN_PER_SECOND)  # the flood's pace
            await asyncio.gather(*sends)

        async def future_burst() -> None:
            await asyncio.gather(*(abusive("future", future_id()) for _ in range(FUTURE_DATED)))

        async def legitimate(client: int) -> None:
            i = 0
            while time.monotonic() < end:
                body = {"text": f"legit {client} {i}", "user_id": f"legit-{client}-{i}"}
                async with session.post(f"{a}/predict", json=body) as r:
                    rid = (await r.json())["request_id"]
                fb = {"request_id": rid, "reward": 1}
                async with session.post(f"{b}/feedback", json=fb) as r:
                    answer = await r.json()
                    legit.append((rid, r.status, str(answer.get("error", ""))))
                i += 1

        before, started = commands(redis), time.monotonic()
        await asyncio.gather(unknown_stream(), future_burst(), legitimate(0), legitimate(1))
        ops = (commands(redis) - before) / (time.monotonic() - started)
    return {"flood": flood_answers, "legit": legit, "ops": ops}


def test_a_feedback_flood_cannot_park_the_hold(
    start_gateway: GatewayFactory,
    workers: dict[str, str],
    chaos_redis: EmbeddedRedis,
    tmp_path: Path,
) -> None:
    name = f"abuse-{uuid.uuid4().hex[:6]}"
    write_experiment(tmp_path, canary_yaml(workers, {"v1": 50, "v2": 50}, name=name))
    env = {"TURNOUT_REDIS_URL": chaos_redis.url, "TURNOUT_ACCESS_LOG": "false"}
    # A writes its outcomes every second: feedback sent to B at once often finds none yet.
    a = start_gateway(tmp_path, TURNOUT_RECORDING_FLUSH_INTERVAL="1", **env)
    b = start_gateway(
        tmp_path,
        TURNOUT_FEEDBACK_HOLD_SECONDS="10",
        TURNOUT_FEEDBACK_HOLD_MAX=str(HOLD_MAX),
        **env,
    )
    idle_before = commands(chaos_redis)
    idle_started = time.monotonic()
    poll_until(lambda: time.monotonic() - idle_started >= 2, 5, what="an idle window")
    idle = (commands(chaos_redis) - idle_before) / (time.monotonic() - idle_started)

    result = asyncio.run(flood(a.url, b.url, chaos_redis))
    peak_holding = metrics(b)["turnout_feedback_holding"]
    print(
        f"[chaos] feedback flood: Redis {result['ops']:.0f} ops/s, {peak_holding:.0f} held after it"
    )
    poll_until(lambda: metrics(b)["turnout_feedback_holding"] == 0, 40, what="the hold to drain")
    m = metrics(b)
    legit = result["legit"]
    assert isinstance(legit, list)
    client = chaos_redis.client()
    credited = sum(
        int(client.hget(keys.counters(name, v), keys.FEEDBACK_N) or 0) for v in ("v1", "v2")
    )
    legit_answers = dict(sorted(Counter(status for _, status, _ in legit).items()))
    flood_answers = dict(sorted(result["flood"].items()))  # type: ignore[attr-defined]
    ops = result["ops"]
    assert isinstance(ops, float)
    print(
        f"[chaos] feedback flood ({FUTURE_DATED} future-dated, {UNKNOWN_PER_SECOND}/s unknown for "
        f"{FLOOD_SECONDS:.0f} s): Redis {idle:.0f} ops/s idle, {ops:.0f} ops/s during the flood; "
        f"flood answers {flood_answers}; held {m['turnout_feedback_held_total{held}']:.0f} "
        f"(at most {peak_holding:.0f} at once), expired "
        f"{m['turnout_feedback_held_total{expired}']:.0f}, applied "
        f"{m['turnout_feedback_held_total{applied}']:.0f}, refused_full "
        f"{m['turnout_feedback_held_total{refused_full}']:.0f}; legitimate answers "
        f"{legit_answers}, credited {credited}/{len(legit)}; hold Redis commands "
        f"{m['turnout_feedback_hold_redis_commands_total']:.0f}"
    )
    assert not [x for x in legit if x[2] == "feedback_hold_full"]
    assert set(legit_answers) <= {200, 202}
    assert credited == len(legit)  # 0 lost, none twice
    assert ops < 3000
