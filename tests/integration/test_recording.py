"""The recorder against a real redis-server, inside a real (in-process) gateway app.

In-process so the test can pause the flusher and read the recorder's own metrics; the workers
are real processes, Redis is a real server, and the requests go through the whole ASGI app.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from router.core.errors import NotFound
from router.core.metrics import GatewayMetrics
from router.core.settings import Settings
from router.gateway.app import create_app
from router.local.processes import free_port
from router.local.redis_server import EmbeddedRedis, RedisTopology
from router.recording.events import Outcome
from router.recording.feedback import FeedbackInput, FeedbackWriter
from router.recording.recorder import RedisRecorder, encode_batch
from router.storage import keys
from router.storage.scripts import WRITE_EVENTS_LUA
from tests.conftest import WorkerFactory, canary_yaml, write_experiment


@pytest.fixture(scope="module")
def workers(start_worker: WorkerFactory) -> dict[str, str]:
    return {v: start_worker(v).url for v in ("v1", "v2")}


@pytest.fixture
def quiet_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A Redis of this test's own, so that server-wide command statistics are ours alone."""
    server = EmbeddedRedis(tmp_path / "redis").start()
    yield server
    server.stop()


QUIET: dict[str, Any] = {
    "access_log": False,
    "health_interval": 30.0,
    "flags_refresh_interval": 3600.0,
    "watch_files": False,
    "reload_poll_interval": 3600.0,
    "recording_flush_interval": 0.05,
    "recording_retry_max": 0.2,
    "seed": 1,
}
"""In-process gateway settings with no background chatter but the recorder's flushes."""


def make_settings(tmp_path: Path, workers: dict[str, str], models_dir: Path, **kw: Any) -> Settings:
    name = f"rec-{uuid.uuid4().hex[:8]}"
    folder = tmp_path / "experiments"
    write_experiment(folder, canary_yaml(workers, {"v1": 50, "v2": 50}, name=name))
    return Settings(**{"experiments_dir": folder, "models_dir": models_dir, **QUIET, **kw})


@asynccontextmanager
async def gateway(settings: Settings, recorder: RedisRecorder) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, recorder=recorder, metrics=recorder.metrics)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            yield client


def experiment_of(settings: Settings) -> str:
    return next(settings.experiments_dir.glob("*.yaml")).read_text().split("\n")[0].split()[1]


async def send(client: httpx.AsyncClient, count: int) -> list[str]:
    ids = []
    for i in range(count):
        r = await client.post("/predict", json={"text": f"hello number {i}"})
        assert r.status_code == 200, r.text
        ids.append(r.json()["request_id"])
    return ids


def sample(metrics: GatewayMetrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels or None)
    return 0.0 if value is None else value


def identity(metrics: GatewayMetrics) -> tuple[float, float, float, float]:
    produced = sample(metrics, "turnout_events_produced_total")
    written = sample(metrics, "turnout_events_written_total")
    buffered = sample(metrics, "turnout_events_buffered")
    dropped = sum(
        s.value
        for m in metrics.registry.collect()
        if m.name == "turnout_events_dropped"
        for s in m.samples
        if s.name == "turnout_events_dropped_total"
    )
    assert produced == written + buffered + dropped, (produced, written, buffered, dropped)
    return produced, written, buffered, dropped


async def until(check: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def command_calls(client: redis.Redis) -> dict[str, int]:
    stats = client.info("commandstats")
    return {k: v["calls"] for k, v in stats.items() if k != "cmdstat_info"}


def test_serving_a_request_issues_no_redis_command(
    tmp_path: Path, workers: dict[str, str], models_dir: Path, quiet_redis: EmbeddedRedis
) -> None:
    settings = make_settings(tmp_path, workers, models_dir, redis_url=quiet_redis.url)
    direct = quiet_redis.client()

    async def scenario() -> None:
        recorder = RedisRecorder(settings, GatewayMetrics())
        async with gateway(settings, recorder) as client:
            recorder.pause()
            await send(client, 3)  # warm up every connection the app opens lazily
            # Background start-up work (flag subscription) settles: two equal snapshots.
            previous: dict[str, int] = {}
            deadline = time.monotonic() + 20
            while (current := command_calls(direct)) != previous:
                assert time.monotonic() < deadline, "Redis never went quiet"
                previous = current
                await asyncio.sleep(0.2)
            await send(client, 40)
            assert command_calls(direct) == previous, "a request issued a Redis command"
            assert len(recorder.buffer) == 43
            recorder.resume()
            await until(lambda: len(recorder.buffer) == 0, 20, "the buffer to drain")
            identity(recorder.metrics)
            after = command_calls(direct)
            # 43 events, written in a handful of script calls (one per batch, not per request).
            assert 1 <= after.get("cmdstat_evalsha", 0) - previous.get("cmdstat_evalsha", 0) <= 3
            name = experiment_of(settings)
            assigned = direct.hgetall(keys.assigned(name, next(iter(_config_versions(direct)))))
            assert sum(int(v) for v in assigned.values()) == 43
            assert direct.xlen(keys.events(name)) == 43

    asyncio.run(scenario())


def _config_versions(client: redis.Redis) -> list[str]:
    return [k.rsplit(":", 1)[1] for k in client.scan_iter(match="turnout:exp:*:assigned:*")]


def test_overflow_drops_the_oldest_counts_them_and_writes_the_rest_later(
    tmp_path: Path, workers: dict[str, str], models_dir: Path
) -> None:
    port = free_port()
    settings = make_settings(
        tmp_path,
        workers,
        models_dir,
        redis_url=f"redis://127.0.0.1:{port}/0",
        recording_buffer_size=20,
        recording_batch_size=5,
    )
    server = EmbeddedRedis(tmp_path / "late-redis", port=port)

    async def scenario() -> None:
        metrics = GatewayMetrics()
        recorder = RedisRecorder(settings, metrics)
        async with gateway(settings, recorder) as client:
            ids = await send(client, 50)  # Redis is down: every request is still served
            produced, _, buffered, dropped = identity(metrics)
            assert (produced, buffered, dropped) == (50, 20, 30)
            assert sample(metrics, "turnout_events_dropped_total", reason="buffer_full") == 30
            assert sample(metrics, "turnout_redis_up") == 0
            await asyncio.to_thread(server.start)
            try:
                await until(lambda: len(recorder.buffer) == 0, 30, "the buffer to drain")
                assert identity(metrics) == (50, 20, 0, 30)
                assert sample(metrics, "turnout_redis_up") == 1
                direct = server.client()
                stream = direct.xrange(keys.events(experiment_of(settings)))
                # Drop-oldest: the 20 most recent requests are the ones kept, in order.
                assert [fields["request_id"] for _, fields in stream] == ids[-20:]
            finally:
                await recorder.close()
                server.stop()

    asyncio.run(scenario())


def make_outcome(rid: str, experiment: str) -> Outcome:
    return Outcome(
        rid, experiment, "cv1", "v1", "v1", "v1", False, 0.5, None, 200, 2.0, 0, 0.1, False, 1.0
    )


def test_a_retried_flush_never_double_counts(redis_server: RedisTopology, tmp_path: Path) -> None:
    settings = Settings(**redis_server.settings, experiments_dir=tmp_path)
    name = f"idem-{uuid.uuid4().hex[:8]}"
    direct = redis_server.client()

    async def scenario() -> None:
        metrics = GatewayMetrics()
        recorder = RedisRecorder(settings, metrics)
        for i in range(3):
            recorder.record(make_outcome(f"{name}-{i}", name))
        # The first attempt reaches Redis but its reply is lost: replay it from a second client.
        batch = recorder.buffer.take(10)
        encoded = encode_batch(batch, 1000, 60)
        recorder.buffer.restore()
        script = direct.register_script(WRITE_EVENTS_LUA)
        assert script(keys=encoded.keys, args=[encoded.payload]) == [1, 1, 1, 1]
        assert await recorder.flush()  # the retry: same tokens, so nothing is applied twice
        assert identity(metrics) == (3, 3, 0, 0)
        assert script(keys=encoded.keys, args=[encoded.payload]) == [0, 2, 2, 2]
        await recorder.close()

    asyncio.run(scenario())
    assert direct.hget(keys.counters(name, "v1"), keys.ASSIGNED) == "3"
    assert direct.xlen(keys.events(name)) == 3
    assert 0 < direct.ttl(keys.attribution(name, f"{name}-0")) <= 60  # the guard expires
    assert 0 < direct.ttl(keys.request(f"{name}-0")) <= 86_400  # and so does the locator
    assert direct.get(keys.request(f"{name}-0")) == name


def test_a_request_id_used_twice_is_recorded_once_and_the_second_counted_dropped(
    redis_server: RedisTopology, tmp_path: Path
) -> None:
    settings = Settings(**redis_server.settings, experiments_dir=tmp_path)
    name = f"dup-{uuid.uuid4().hex[:8]}"

    async def scenario() -> GatewayMetrics:
        metrics = GatewayMetrics()
        recorder = RedisRecorder(settings, metrics)
        recorder.record(make_outcome(f"{name}-x", name))
        recorder.record(make_outcome(f"{name}-x", name))  # same batch
        assert await recorder.flush()
        recorder.record(make_outcome(f"{name}-y", name))
        recorder.record(make_outcome(f"{name}-x", name))  # a later batch: the guard refuses it
        recorder.record(make_outcome(f"{name}-z", name))
        assert await recorder.flush()
        await recorder.close()
        return metrics

    metrics = asyncio.run(scenario())
    assert identity(metrics) == (5, 3, 0, 2)
    assert sample(metrics, "turnout_events_dropped_total", reason="duplicate_request_id") == 2
    client = redis_server.client()
    assert client.hget(keys.counters(name, "v1"), keys.ASSIGNED) == "3"
    assert [f["request_id"] for _, f in client.xrange(keys.events(name))] == [
        f"{name}-x",
        f"{name}-y",
        f"{name}-z",
    ]


def test_feedback_for_a_request_still_buffered_writes_it_first(
    tmp_path: Path, workers: dict[str, str], models_dir: Path, redis_server: RedisTopology
) -> None:
    settings = make_settings(tmp_path, workers, models_dir, **redis_server.settings)

    async def scenario() -> None:
        recorder = RedisRecorder(settings, GatewayMetrics())
        async with gateway(settings, recorder) as client:
            recorder.pause()
            [rid] = await send(client, 1)
            assert recorder.buffer.holds(rid)
            r = await client.post("/feedback", json={"request_id": rid, "reward": 1})
            assert r.status_code == 200, r.text
            assert not recorder.buffer.holds(rid)
            again = await client.post("/feedback", json={"request_id": rid, "reward": 0})
            assert again.status_code == 409

    asyncio.run(scenario())


def test_feedback_needs_a_prediction_to_credit(redis_server: RedisTopology, tmp_path: Path) -> None:
    settings = Settings(**redis_server.settings, experiments_dir=tmp_path)
    name = f"none-{uuid.uuid4().hex[:8]}"
    failed = Outcome(
        f"{name}-1",
        name,
        "cv1",
        "v1",
        None,
        None,
        False,
        1.0,
        None,
        503,
        9.0,
        None,
        None,
        False,
        1.0,
    )

    async def scenario() -> None:
        recorder = RedisRecorder(settings, GatewayMetrics())
        recorder.record(failed)
        assert await recorder.flush()
        writer = FeedbackWriter(recorder.redis, 100)
        with pytest.raises(NotFound) as refused:
            await writer.accept(FeedbackInput(f"{name}-1", 1.0, None), 2.0)
        assert refused.value.code == "no_prediction"
        await recorder.close()

    asyncio.run(scenario())


def test_history_buckets_are_written_with_each_batch_on_every_topology(
    redis_server: RedisTopology, tmp_path: Path
) -> None:
    """The console's per-minute and per-hour buckets go in the same per-experiment script call
    as every other counter, so they work on a cluster too, and read back whole."""
    from router.reports.history import history_report, parse_range, plan
    from router.reports.reads import read_history

    settings = Settings(**redis_server.settings, experiments_dir=tmp_path)
    names = [f"hist-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    now = time.time()

    async def scenario() -> dict[str, int]:
        recorder = RedisRecorder(settings, GatewayMetrics())
        for i in range(30):
            for n, name in enumerate(names):
                event = make_outcome(f"{name}-{i}", name)
                ts = now - 60 * (i % 5)
                recorder.record(dataclasses.replace(event, ts=ts, variant=f"v{n + 1}"))
        assert await recorder.flush()
        totals = {}
        for name in names:
            wanted = parse_range("15m", None, now, settings.history_hour_retention)
            chosen = plan(name, wanted, now, settings.history_minute_retention)
            hashes = await read_history(recorder.redis, chosen.keys)
            totals[name] = sum(history_report(chosen, wanted, hashes, [])["total"])
        await recorder.close()
        return totals

    assert asyncio.run(scenario()) == dict.fromkeys(names, 30)
    direct = redis_server.client()
    minute = keys.history(names[0], "m", int(now) // 3600)
    assert 0 < direct.ttl(minute) <= settings.history_minute_retention + 3600
