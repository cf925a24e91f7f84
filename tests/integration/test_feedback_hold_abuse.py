"""The feedback hold cannot be parked: a future-dated request id is never held past the hold,
cannot fill it, and a held id costs Redis a bounded number of commands a second."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import httpx
import pytest

from router.core.ids import new_request_id
from router.local.processes import poll_until
from router.local.redis_server import EmbeddedRedis
from tests.chaos.harness import metrics
from tests.conftest import Gateway, GatewayFactory, WorkerFactory, canary_yaml, write_experiment

NAME = f"abuse-{uuid.uuid4().hex[:6]}"
HOLD_SECONDS = 10


def request_id_at(seconds: float) -> str:
    """A well-formed UUIDv7 request id whose time field says ``seconds`` (Unix time)."""
    return f"{int(seconds * 1000):012x}" + new_request_id()[12:]


@pytest.fixture(scope="module")
def redis_alone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    """A Redis of this module's own: its command counts are these gateways' only."""
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis-abuse")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def folder(start_worker: WorkerFactory, tmp_path_factory: pytest.TempPathFactory) -> Path:
    workers = {v: start_worker(v).url for v in ("v1", "v2")}
    path = tmp_path_factory.mktemp("experiments")
    write_experiment(path, canary_yaml(workers, {"v1": 50, "v2": 50}, name=NAME))
    return path


@pytest.fixture(scope="module")
def serving(start_gateway: GatewayFactory, folder: Path, redis_alone: EmbeddedRedis) -> Gateway:
    """Replica A: serves, and writes its outcomes only in batches of five (or every 30 s)."""
    return start_gateway(
        folder,
        TURNOUT_REDIS_URL=redis_alone.url,
        TURNOUT_RECORDING_FLUSH_INTERVAL="30",
        TURNOUT_RECORDING_BATCH_SIZE="5",
        TURNOUT_ACCESS_LOG="false",
    )


def feedback_replica(
    start_gateway: GatewayFactory, folder: Path, redis: EmbeddedRedis, **env: str
) -> Gateway:
    """Replica B: takes the feedback, waits 0.1 s for an unrecorded request, then holds it."""
    defaults = {
        "TURNOUT_REDIS_URL": redis.url,
        "TURNOUT_FEEDBACK_HOLD_WAIT": "0.1",
        "TURNOUT_FEEDBACK_HOLD_SECONDS": str(HOLD_SECONDS),
        "TURNOUT_ACCESS_LOG": "false",
    }
    return start_gateway(folder, **{**defaults, **env})


async def send_feedback(url: str, rids: list[str]) -> list[tuple[int, dict[str, object]]]:
    async with aiohttp.ClientSession() as session:
        limit = asyncio.Semaphore(20)

        async def one(rid: str) -> tuple[int, dict[str, object]]:
            async with (
                limit,
                session.post(f"{url}/feedback", json={"request_id": rid, "reward": 1}) as r,
            ):
                return r.status, await r.json()

        return await asyncio.gather(*(one(rid) for rid in rids))


def holding(gateway: Gateway) -> float:
    return metrics(gateway)["turnout_feedback_holding"]


def test_a_future_dated_request_id_is_refused_not_held(
    start_gateway: GatewayFactory, folder: Path, redis_alone: EmbeddedRedis
) -> None:
    b = feedback_replica(start_gateway, folder, redis_alone)
    far = request_id_at(time.time() + 86_400 * 365)
    r = httpx.post(f"{b.url}/feedback", json={"request_id": far, "reward": 1})
    assert r.status_code == 404, r.text
    assert r.json()["error"] == "unknown_request"
    assert "future" in r.json()["detail"]
    assert holding(b) == 0


def test_a_request_id_a_little_ahead_is_held_no_longer_than_the_hold(
    start_gateway: GatewayFactory, folder: Path, redis_alone: EmbeddedRedis
) -> None:
    """Within the clock skew allowance: held, for the usual hold at most, then expired."""
    b = feedback_replica(start_gateway, folder, redis_alone)
    ahead = request_id_at(time.time() + 1.0)
    r = httpx.post(f"{b.url}/feedback", json={"request_id": ahead, "reward": 1})
    assert r.status_code == 202, r.text
    assert f"for up to {HOLD_SECONDS}s" in r.json()["detail"]
    poll_until(lambda: holding(b) == 0, HOLD_SECONDS + 5, what="the held feedback to expire")
    assert metrics(b)["turnout_feedback_held_total{expired}"] == 1


def test_future_dated_ids_cannot_fill_the_hold(
    start_gateway: GatewayFactory,
    folder: Path,
    redis_alone: EmbeddedRedis,
    serving: Gateway,
) -> None:
    b = feedback_replica(start_gateway, folder, redis_alone, TURNOUT_FEEDBACK_HOLD_MAX="200")
    future = [request_id_at(time.time() + 3600 + i) for i in range(200)]
    asyncio.run(send_feedback(b.url, future))
    # Legitimate feedback for a request replica A has not flushed yet.
    rid = httpx.post(f"{serving.url}/predict", json={"text": "legit"}).json()["request_id"]
    r = httpx.post(f"{b.url}/feedback", json={"request_id": rid, "reward": 1})
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "held"
    for i in range(5):  # a batch's worth: A writes everything it holds
        assert httpx.post(f"{serving.url}/predict", json={"text": f"nudge {i}"}).status_code == 200
    poll_until(
        lambda: metrics(b)["turnout_feedback_held_total{applied}"] == 1,
        15,
        what="the legitimate feedback to be applied",
    )


def commands(redis: EmbeddedRedis) -> int:
    return int(redis.client().info("stats")["total_commands_processed"])


def rate(redis: EmbeddedRedis, seconds: float) -> float:
    """Redis commands a second over ``seconds`` (the INFO calls themselves left out)."""
    start = commands(redis)
    time.sleep(seconds)  # a measurement window, not a synchronisation
    return (commands(redis) - start - 1) / seconds


def test_a_held_id_costs_redis_a_bounded_number_of_commands(
    start_gateway: GatewayFactory, folder: Path, redis_alone: EmbeddedRedis
) -> None:
    b = feedback_replica(start_gateway, folder, redis_alone, TURNOUT_FEEDBACK_HOLD_SECONDS="60")
    idle = rate(redis_alone, 3.0)
    count = 200
    unknown = [f"flood-{uuid.uuid4().hex}" for _ in range(count)]
    answers = asyncio.run(send_feedback(b.url, unknown))
    assert {status for status, _ in answers} == {202}
    time.sleep(4.0)  # past the first, closer checks: the steady state is what is bounded
    flood = rate(redis_alone, 4.0)
    per_id = (flood - idle) / count
    published = metrics(b)["turnout_feedback_hold_redis_commands_total"]
    print(
        f"Redis commands/s idle {idle:.0f}, with {count} held ids {flood:.0f}: "
        f"{per_id:.2f} per held id per second (the hold's counter: {published:.0f})"
    )
    assert per_id <= 1.0
    assert published > 0
