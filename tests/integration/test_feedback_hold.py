"""Feedback sent to a replica before the serving one flushed: held, never lost, exactly once."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from router.local.processes import poll_until
from router.local.redis_server import RedisTopology
from router.storage import keys
from tests.conftest import Gateway, GatewayFactory, WorkerFactory, canary_yaml, write_experiment

NAME = f"hold-{uuid.uuid4().hex[:6]}"
BATCH = 5
"""Replica A writes outcomes in batches of this many (or every 30 s)."""


@pytest.fixture(scope="module")
def replicas(
    start_worker: WorkerFactory,
    start_gateway: GatewayFactory,
    redis_server: RedisTopology,
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Gateway, Gateway]:
    """A serves, and writes its outcomes only in batches of five (or every 30 s): until five
    wait, the last ones are recorded nowhere. B takes the feedback, and waits 0.1 s for an
    unrecorded request before holding its feedback."""
    workers = {v: start_worker(v).url for v in ("v1", "v2")}
    folder = tmp_path_factory.mktemp("experiments")
    write_experiment(folder, canary_yaml(workers, {"v1": 50, "v2": 50}, name=NAME))
    env = {**redis_server.env, "TURNOUT_FEEDBACK_HOLD_SECONDS": "10"}
    a = start_gateway(
        folder,
        TURNOUT_RECORDING_FLUSH_INTERVAL="30",
        TURNOUT_RECORDING_BATCH_SIZE=str(BATCH),
        **env,
    )
    b = start_gateway(
        folder, TURNOUT_RECORDING_FLUSH_INTERVAL="0.05", TURNOUT_FEEDBACK_HOLD_WAIT="0.1", **env
    )
    return a, b


def flush(a: Gateway) -> None:
    """A batch's worth of requests: A writes everything it holds."""
    for i in range(BATCH):
        assert httpx.post(f"{a.url}/predict", json={"text": f"nudge {i}"}).status_code == 200


def buffered(a: Gateway) -> float:
    for family in text_string_to_metric_families(httpx.get(f"{a.url}/metrics").text):
        for sample in family.samples:
            if sample.name == "turnout_events_buffered":
                return sample.value
    raise AssertionError("no turnout_events_buffered in A's metrics")


def empty(a: Gateway) -> None:
    """Nudge A until its buffer is empty, so the next request waits for a batch to fill:
    an earlier test may have left up to four events behind."""
    for i in range(2 * BATCH):
        poll_until(lambda: buffered(a) < BATCH, 10, what="A to write a full batch")
        if buffered(a) == 0:
            return
        assert httpx.post(f"{a.url}/predict", json={"text": f"empty {i}"}).status_code == 200
    raise AssertionError(f"A still buffers {buffered(a)} events")


def held(gateway: Gateway) -> dict[str, float]:
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(httpx.get(f"{gateway.url}/metrics").text):
        for sample in family.samples:
            if sample.name == "turnout_feedback_held_total":
                out[sample.labels["result"]] = sample.value
            elif sample.name == "turnout_feedback_holding":
                out["holding"] = sample.value
    settled = sum(v for k, v in out.items() if k not in ("held", "holding", "refused_full"))
    assert out["held"] == settled + out["holding"], out
    return out


async def predict_then_feedback(a: str, b: str, count: int, delay: float) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession() as session:

        async def one(i: int) -> dict[str, Any]:
            body = {"text": f"tweet {i}", "user_id": f"user-{i}"}
            async with session.post(f"{a}/predict", json=body) as r:
                rid = (await r.json())["request_id"]
            await asyncio.sleep(delay)
            async with session.post(f"{b}/feedback", json={"request_id": rid, "reward": 1}) as r:
                return {**(await r.json()), "request_id": rid, "http": r.status}

        return await asyncio.gather(*(one(i) for i in range(count)))


def credited(server: RedisTopology) -> int:
    client = server.client()
    return sum(int(client.hget(keys.counters(NAME, v), keys.FEEDBACK_N) or 0) for v in ("v1", "v2"))


def test_feedback_to_another_replica_at_once_is_never_lost(
    replicas: tuple[Gateway, Gateway], redis_server: RedisTopology
) -> None:
    a, b = replicas
    results = asyncio.run(predict_then_feedback(a.url, b.url, 100, 0.0))
    statuses = Counter(r["http"] for r in results)
    print(f"feedback to the other replica at 0 ms: {dict(statuses)}")
    bad = [r for r in results if r["http"] not in (200, 202)]
    assert not bad, (bad, b.process.output()[-6000:])
    # A Redis command that times out on a busy machine queues its feedback instead (202
    # "queued"): also applied exactly once, by the retry queue rather than the hold.
    kinds = Counter(r["status"] for r in results if r["http"] == 202)
    assert set(kinds) <= {"held", "queued"}, kinds
    flush(a)  # the last requests of the race wait for a batch to fill
    poll_until(lambda: held(b)["holding"] == 0, 15, what="the held feedback to be applied")
    assert held(b)["applied"] == kinds["held"]
    poll_until(lambda: credited(redis_server) >= 100, 30, what="every feedback to be counted")
    assert credited(redis_server) == 100  # 0 lost, none twice


def test_held_feedback_counts_duplicates_and_ids_never_recorded(
    replicas: tuple[Gateway, Gateway],
) -> None:
    a, b = replicas
    before = held(b)
    empty(a)
    rid = httpx.post(f"{a.url}/predict", json={"text": "twice"}).json()["request_id"]
    first = httpx.post(f"{b.url}/feedback", json={"request_id": rid, "reward": 1})
    second = httpx.post(f"{b.url}/feedback", json={"request_id": rid, "reward": 0})
    assert (first.status_code, second.status_code) == (202, 202), (first.text, second.text)
    assert "earlier feedback for this request is held" in second.json()["detail"]
    never = httpx.post(f"{b.url}/feedback", json={"request_id": "typo-id", "reward": 1})
    assert never.status_code == 202
    flush(a)
    poll_until(lambda: held(b)["holding"] == 0, 20, what="everything held to settle")
    after = held(b)
    assert after["applied"] - before["applied"] == 1
    assert after["duplicate"] - before["duplicate"] == 1
    assert after["expired"] - before["expired"] == 1
    assert "held_feedback_not_applied" in b.process.output()


def test_a_label_no_version_answers_is_refused_before_it_is_held(
    replicas: tuple[Gateway, Gateway], tmp_path: Path
) -> None:
    a, b = replicas
    rid = httpx.post(f"{a.url}/predict", json={"text": "label"}).json()["request_id"]
    r = httpx.post(f"{b.url}/feedback", json={"request_id": rid, "label": 7})
    assert r.status_code == 422 and "0, 1" in r.json()["detail"]
