"""FlagStore and FlagCache against a real redis-server: audit, pub/sub, outages."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from redis.exceptions import RedisError

from router.core.metrics import GatewayMetrics
from router.core.settings import Settings
from router.flags.cache import FlagCache
from router.flags.store import FlagStore
from router.flags.values import CLEAR, FlagDefaults
from router.local.redis_server import EmbeddedRedis, RedisTopology
from router.storage import keys
from router.storage.client import RedisClient, connect

DB = 12  # a database of its own on the shared test server


def client_for(server: RedisTopology) -> RedisClient:
    return connect(Settings(**server.settings))


@pytest.fixture
def redis_url(redis_server: RedisTopology) -> Iterator[RedisTopology]:
    """The shared server, on a database of its own where it has several."""
    server = redis_server.with_db(DB)
    yield server
    client = server.client()
    client.delete(keys.FLAGS, keys.AUDIT, keys.PROMOTIONS)
    client.close()


async def until(check: Callable[[], bool], deadline: float, what: str) -> float:
    """Await ``check`` with a deadline; return the seconds it took."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > deadline:
            raise TimeoutError(f"timed out after {deadline}s waiting for {what}")
        await asyncio.sleep(0.01)
    return time.monotonic() - started


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(test())


def test_change_audits_and_publishes(redis_url: RedisTopology) -> None:
    # Names of its own: the test Redis is shared, and other tests leave flags and audit events.
    exp, other = f"exp-{uuid.uuid4().hex[:8]}", f"other-{uuid.uuid4().hex[:8]}"

    async def body() -> None:
        store = FlagStore(client_for(redis_url), FlagDefaults(), audit_maxlen=5)
        first = await store.change(
            exp, "kill_switch", True, actor="ops", reason="incident 42", action="set"
        )
        assert (first.old, first.new, first.actor, first.reason) == (
            False,
            True,
            "ops",
            "incident 42",
        )
        again = await store.change(exp, "kill_switch", CLEAR, actor="ci", reason="", action="clear")
        assert (again.old, again.new) == (True, False)
        mine = {exp, other}
        assert {k: v for k, v in (await store.overrides()).items() if k in mine} == {}
        await store.change(
            other, "forced_variant", "v2", actor="ops", reason="r", action="rollback"
        )
        overrides = await store.overrides()
        assert {k: v for k, v in overrides.items() if k in mine} == {
            other: {"forced_variant": "v2"}
        }
        history = await store.history(exp)
        assert [(e.action, e.actor, e.old, e.new) for e in history] == [
            ("clear", "ci", True, False),
            ("set", "ops", False, True),
        ]
        assert history[0].ts >= history[1].ts
        for i in range(10):
            await store.change(exp, "frozen", i % 2 == 0, actor="ops", reason="", action="set")
        assert await store.redis.xlen(keys.AUDIT) == 5  # capped
        assert len(await store.history(limit=100)) == 5
        await store.close()

    run(body)


def test_cache_follows_changes_by_pubsub_within_a_second(redis_url: RedisTopology) -> None:
    async def body() -> None:
        metrics = GatewayMetrics()
        # A refresh interval far beyond the deadline: only pub/sub can explain the reaction.
        cache = FlagCache(
            FlagStore(client_for(redis_url), FlagDefaults(), 100), FlagDefaults(), 60.0, metrics
        )
        other = FlagStore(client_for(redis_url), FlagDefaults(), 100)
        task = asyncio.create_task(cache.run())
        await until(lambda: cache.refreshed_at is not None, 10, "first refresh")
        assert not cache.for_experiment("exp").kill_switch
        for value in (True, False, True):
            await other.change("exp", "kill_switch", value, actor="ops", reason="", action="set")
            took = await until(
                lambda v=value: cache.for_experiment("exp").kill_switch is v, 5, "pub/sub"
            )
            assert took < 1.0, f"flag change reached the cache after {took:.2f}s"
        assert metrics.flag_changes.labels("exp", "kill_switch")._value.get() == 3
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await cache.close()
        await other.close()

    run(body)


def test_redis_down_keeps_the_last_flags(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "redis", appendonly=True).start()
    try:

        async def body() -> None:
            cache = FlagCache(
                FlagStore(client_for(server), FlagDefaults(), 100), FlagDefaults(), 0.5
            )
            writer = FlagStore(client_for(server), FlagDefaults(), 100)
            await writer.change("exp", "kill_switch", True, actor="ops", reason="", action="set")
            task = asyncio.create_task(cache.run())
            await until(lambda: cache.for_experiment("exp").kill_switch, 10, "kill switch")
            server.stop()
            await until(lambda: cache.redis_error is not None, 10, "the outage to be noticed")
            assert cache.for_experiment("exp").kill_switch  # the last known flags still apply
            assert cache.status()["redis"] == "down"
            started = time.monotonic()
            with pytest.raises(RedisError):
                await writer.change("exp", "frozen", True, actor="ops", reason="", action="set")
            assert time.monotonic() - started < 3.0  # fails fast, no hidden retries
            server.start()
            await writer.change("exp", "forced_variant", "v2", actor="ops", reason="", action="set")
            await until(lambda: cache.for_experiment("exp").forced_variant == "v2", 10, "recovery")
            assert cache.for_experiment("exp").kill_switch  # kept by the server across restart
            assert cache.redis_error is None
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await cache.close()
            await writer.close()

        run(body)
    finally:
        server.stop()


def test_cache_without_redis_serves_defaults() -> None:
    async def body() -> None:
        cache = FlagCache(None, FlagDefaults(), 1.0)
        await cache.prime()
        await asyncio.wait_for(cache.run(), 1.0)  # returns at once: nothing to follow
        assert cache.for_experiment("exp").shadow_active
        assert cache.status()["redis"] == "down"

    run(body)
