"""What the gateway keeps: feedback racing across replicas is never lost, and no raw user id or
text reaches Redis, its append-only file, logs or metrics (nor can ids be recovered from the
hashes with the public default salt)."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
import redis

from router.local.processes import poll_until
from router.local.redis_server import EmbeddedRedis
from router.storage import keys
from tests.chaos.harness import metrics
from tests.conftest import GatewayFactory, canary_yaml, write_experiment
from tests.support import LocalStack


async def race(a: str, b: str, count: int, delay: float) -> list[tuple[str, int]]:
    """``count`` predictions on replica A, each followed after ``delay`` by feedback on B."""
    async with aiohttp.ClientSession() as session:

        async def one(i: int) -> tuple[str, int]:
            body = {"text": f"race {i}", "user_id": f"racer-{i}"}
            async with session.post(f"{a}/predict", json=body) as r:
                rid = (await r.json())["request_id"]
            await asyncio.sleep(delay)
            async with session.post(f"{b}/feedback", json={"request_id": rid, "reward": 1}) as r:
                await r.read()
                return rid, r.status

        return await asyncio.gather(*(one(i) for i in range(count)))


def test_feedback_races_across_replicas_lose_nothing(
    start_gateway: GatewayFactory,
    workers: dict[str, str],
    chaos_redis: EmbeddedRedis,
    tmp_path: Path,
) -> None:
    name = f"race-{uuid.uuid4().hex[:6]}"
    write_experiment(tmp_path, canary_yaml(workers, {"v1": 50, "v2": 50}, name=name))
    env = {"TURNOUT_REDIS_URL": chaos_redis.url, "TURNOUT_ACCESS_LOG": "false"}
    a, b = start_gateway(tmp_path, **env), start_gateway(tmp_path, **env)
    client = chaos_redis.client()
    sent = 0
    for delay in (0.0, 0.02):
        results = asyncio.run(race(a.url, b.url, 200, delay))
        sent += len(results)
        poll_until(lambda: metrics(b)["turnout_feedback_holding"] == 0, 30, what="held feedback")
        credited = sum(
            int(client.hget(keys.counters(name, v), keys.FEEDBACK_N) or 0) for v in ("v1", "v2")
        )
        statuses = Counter(status for _, status in results)
        answers = dict(sorted(statuses.items()))
        print(
            f"[chaos] feedback race at {delay * 1000:.0f} ms: answers {answers}, "
            f"credited {credited}/{sent}, lost {sent - credited}"
        )
        assert set(statuses) <= {200, 202}
        assert credited == sent  # 0 lost, none twice


@pytest.fixture
def stack(tmp_path: Path, models_dir: Path) -> Iterator[LocalStack]:
    running = LocalStack(tmp_path, models_dir, TURNOUT_ACCESS_LOG="true")
    yield running
    running.process.stop(30)


def everything_in_redis(client: redis.Redis) -> tuple[int, bytes]:
    """Every key's name and contents, as one blob to search."""
    blob: list[bytes] = []
    count = 0
    for key in client.scan_iter(count=1000):
        count += 1
        kind = client.type(key)
        value: Any
        if kind == "string":
            value = client.get(key)
        elif kind == "hash":
            value = client.hgetall(key)
        elif kind == "stream":
            value = client.xrange(key)
        elif kind == "set":
            value = client.smembers(key)
        elif kind == "list":
            value = client.lrange(key, 0, -1)
        elif kind == "zset":
            value = client.zrange(key, 0, -1, withscores=True)
        else:
            value = kind
        blob.append(f"{key} {value!r}".encode())
    return count, b"\n".join(blob)


def test_pii_search_finds_no_user_id_or_text_anywhere(stack: LocalStack) -> None:
    stack.wait_ready()
    marker = secrets.token_hex(4)
    users = [f"pii-user-{marker}-{i}" for i in range(50)]
    texts = [f"pii secret text {marker} number {i}" for i in range(50)]
    with httpx.Client(timeout=10) as http:
        for i, (user, text) in enumerate(zip(users, texts, strict=True)):
            headers = {"x-user-id": user} if i % 2 else {}
            body = {"text": text} if i % 2 else {"text": text, "user_id": user}
            r = http.post(f"{stack.url}/predict", json=body, headers=headers)
            assert r.status_code == 200
            label = r.json()["prediction"]["label"]
            http.post(
                f"{stack.url}/feedback", json={"request_id": r.json()["request_id"], "label": label}
            )
    gateway_metrics = httpx.get(f"{stack.url}/metrics").text
    poll_until(
        lambda: "turnout_events_buffered 0.0" in httpx.get(f"{stack.url}/metrics").text,
        10,
        what="flush",
    )
    keys_seen, redis_blob = everything_in_redis(stack.redis())
    worker_metrics = "".join(
        httpx.get(f"http://127.0.0.1:{port}/metrics").text for port in stack.ports.values()
    )
    files = [*stack.state.glob("logs/*.log"), *stack.state.glob("redis/*"), stack.root / "up.log"]
    places = {
        "redis": redis_blob,
        "gateway and worker metrics": (gateway_metrics + worker_metrics).encode(),
        **{str(f.relative_to(stack.root)): f.read_bytes() for f in files if f.is_file()},
    }
    salt = (stack.state / "salt").read_text().strip()
    public = [hashlib.sha256(f"turnout\x00{u}".encode()).hexdigest()[:16] for u in users]
    secret = [hashlib.sha256(f"{salt}\x00{u}".encode()).hexdigest()[:16] for u in users]
    needles = [*users, *texts, marker]
    hits = {where: [n for n in needles if n.encode() in blob] for where, blob in places.items()}
    recovered = sum(h.encode() in redis_blob for h in public)
    hashed = sum(h.encode() in redis_blob for h in secret)
    searched = sum(len(b) for b in places.values())
    print(
        f"[chaos] pii search: {keys_seen} Redis keys and {len(places) - 1} files/pages, "
        f"{searched / 1e6:.1f} MB searched, raw hits {sum(len(h) for h in hits.values())}, "
        f"ids recovered with the public salt {recovered}/{len(users)} "
        f"(hashes with the stack's salt present: {hashed})"
    )
    assert not any(hits.values()), {k: v for k, v in hits.items() if v}
    assert recovered == 0
    assert hashed == len(users)  # the hashes are there: only the secret salt makes them useless
