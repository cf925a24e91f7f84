"""One way to reach Redis, whatever its topology: one instance, Sentinel, or Cluster.

``connect(settings)`` is the only place a client is made: the recorder, feedback, flags (and
their pub/sub), bandits and reports all use it, so a Sentinel or Cluster setting reaches every
one of them. Clients fail fast (no silent retries): callers buffer, back off or answer 503.
"""

from __future__ import annotations

from typing import Any, TypeAlias

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import ClusterNode, ClusterPipeline, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.exceptions import (
    AskError,
    ClusterDownError,
    ConnectionError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisClusterException,
    RedisError,
    ResponseError,
    TryAgainError,
)

from router.core.settings import Settings


def closed_under_us(exc: Exception) -> bool:
    """A command whose connection another task closed mid-use. When one command of a shared
    Cluster client fails to connect, redis-py re-learns the slot map and closes the connections
    of the old node objects, including those other tasks are using right then: their commands
    fail with the transport's bare ``RuntimeError`` ("the handler is closed") or with an
    ``AttributeError`` on the cleared stream."""
    text = str(exc)
    if isinstance(exc, RuntimeError):
        return "closed" in text
    return isinstance(exc, AttributeError) and "'NoneType' object" in text


class Cluster(RedisCluster):
    """A Cluster client whose "no node answers", "slot not covered" and "connection closed
    under us" are connection errors like any other (redis-py raises bare exceptions for them),
    so every caller's buffering and backoff applies to them too. None is retried here: the
    command may have run."""

    async def initialize(self, *args: Any, **kwargs: Any) -> Cluster:
        try:
            await super().initialize(*args, **kwargs)
        except RedisClusterException as exc:
            raise ConnectionError(str(exc)) from exc
        return self

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().execute_command(*args, **kwargs)
        except RedisClusterException as exc:
            raise ConnectionError(str(exc)) from exc
        except (RuntimeError, AttributeError) as exc:
            if not closed_under_us(exc):
                raise
            raise ConnectionError(f"connection closed while in use: {exc}") from exc

    def pipeline(self, transaction: Any = None, shard_hint: Any = None) -> ClusterPipeline:
        return _Pipeline(self, transaction)  # type: ignore[abstract]


class _Pipeline(ClusterPipeline):
    async def execute(self, *args: Any, **kwargs: Any) -> list[Any]:
        try:
            return await super().execute(*args, **kwargs)
        except RedisClusterException as exc:
            raise ConnectionError(str(exc)) from exc
        except (RuntimeError, AttributeError) as exc:
            if not closed_under_us(exc):
                raise
            raise ConnectionError(f"connection closed while in use: {exc}") from exc


RedisClient: TypeAlias = aioredis.Redis | RedisCluster
"""What ``connect`` returns: a plain (or Sentinel-backed) client, or a Cluster client."""

TRANSIENT_REPLIES = ("BUSY", "LOADING", "OOM", "READONLY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN")
"""Error replies that mean "try again later", as opposed to a script or data error."""
TRANSIENT_ERRORS = (OutOfMemoryError, ReadOnlyError, TryAgainError, ClusterDownError, AskError)
"""The same replies as redis-py raises them (it strips the code from the message): a replica
that was the primary (READONLY), a cluster slot moving or without a primary yet."""


def redis_configured(settings: Settings) -> bool:
    """True when some Redis topology is set (a URL, sentinels or cluster nodes)."""
    return bool(settings.redis_url or settings.redis_sentinels or settings.redis_cluster_nodes)


def topology(settings: Settings) -> str:
    """``single``, ``sentinel`` or ``cluster`` (``none`` when no Redis is set)."""
    if settings.redis_sentinels:
        return "sentinel"
    if settings.redis_cluster_nodes:
        return "cluster"
    return "single" if settings.redis_url else "none"


def describe(settings: Settings) -> str:
    """Where Redis is, for logs and errors: never a password."""
    if settings.redis_sentinels:
        return (
            f"Sentinel master {settings.redis_sentinel_master!r} "
            f"via {', '.join(settings.redis_sentinels)}"
        )
    if settings.redis_cluster_nodes:
        return f"Redis Cluster via {', '.join(settings.redis_cluster_nodes)}"
    if settings.redis_url:
        from urllib.parse import urlsplit

        url = urlsplit(settings.redis_url)
        return f"Redis at {url.hostname}:{url.port or 6379}"
    return "no Redis"


def feedback_replicas(settings: Settings) -> int:
    """Replicas a feedback write waits for (``WAIT``): see ``Settings.feedback_wait_replicas``."""
    if settings.redis_cluster_nodes:
        return 0
    if settings.feedback_wait_replicas is not None:
        return settings.feedback_wait_replicas
    return 1 if settings.redis_sentinels else 0


def address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def _secret(value: Any) -> str | None:
    return None if value is None else str(value.get_secret_value())


def once_more() -> Retry:
    """One immediate retry on a broken connection, never on a timeout (a command that timed
    out may have run). After a restart or a failover, pooled connections to the old server
    fail once each; the retry reconnects (to the primary the sentinels name now)."""
    return Retry(NoBackoff(), 1, supported_errors=(ConnectionError,))


def connect(settings: Settings, name: str = "turnout-gateway") -> RedisClient:
    """A client with no other retries: callers buffer, back off or answer 503 themselves."""
    if not redis_configured(settings):
        raise ValueError(
            "no Redis configured (TURNOUT_REDIS_URL, TURNOUT_REDIS_SENTINELS or "
            "TURNOUT_REDIS_CLUSTER_NODES)"
        )
    timeouts: dict[str, Any] = {
        "socket_timeout": settings.redis_socket_timeout,
        "socket_connect_timeout": settings.redis_connect_timeout,
    }
    username, password = settings.redis_username, _secret(settings.redis_password)
    if settings.redis_sentinels:
        sentinel = Sentinel(
            [address(a) for a in settings.redis_sentinels],
            sentinel_kwargs={"password": _secret(settings.redis_sentinel_password), **timeouts},
        )
        assert settings.redis_sentinel_master is not None  # the settings refuse it otherwise
        master: aioredis.Redis = sentinel.master_for(
            settings.redis_sentinel_master,
            redis_class=aioredis.Redis,
            db=settings.redis_db,
            retry=once_more(),
            decode_responses=True,
            client_name=name,
            username=username,
            password=password,
            **timeouts,
        )
        return master
    if settings.redis_cluster_nodes:
        return Cluster(
            startup_nodes=[ClusterNode(*address(a)) for a in settings.redis_cluster_nodes],
            # Experiments whose shard answers keep recording while another shard is down.
            require_full_coverage=False,
            retry=once_more(),
            decode_responses=True,
            client_name=name,
            username=username,
            password=password,
            socket_timeout=settings.redis_socket_timeout,
            socket_connect_timeout=settings.redis_connect_timeout,
        )
    assert settings.redis_url is not None
    extra: dict[str, Any] = {
        k: v for k, v in (("username", username), ("password", password)) if v is not None
    }
    client: aioredis.Redis = aioredis.Redis.from_url(
        settings.redis_url,
        retry=once_more(),
        decode_responses=True,
        client_name=name,
        **timeouts,
        **extra,
    )
    return client


def pubsub(client: RedisClient) -> PubSub:
    """A pub/sub connection of ``client`` (on a Cluster: to the node of the channel's slot;
    classic PUBLISH reaches every node, so any node would do)."""
    return client.pubsub()


async def ready(client: RedisClient) -> RedisClient:
    """A Cluster client learns the slot map before its first pub/sub subscription needs it."""
    if isinstance(client, RedisCluster):
        await client.initialize()
    return client


def is_transient(exc: RedisError) -> bool:
    """Connection trouble and "busy" replies are retried; a refused script is not."""
    if isinstance(exc, TRANSIENT_ERRORS):
        return True
    if isinstance(exc, ResponseError):
        return str(exc).startswith(TRANSIENT_REPLIES)
    return True
