"""One way to reach Redis: a client that fails fast, with the configured timeouts."""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError

from router.core.settings import Settings

TRANSIENT_REPLIES = ("BUSY", "LOADING", "OOM", "READONLY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN")
"""Error replies that mean "try again later", as opposed to a script or data error."""


def connect(settings: Settings, name: str = "turnout-gateway") -> aioredis.Redis:
    """A client with no silent retries: callers buffer, back off or answer 503 themselves."""
    if not settings.redis_url:
        raise ValueError("no Redis configured (TURNOUT_REDIS_URL)")
    client: aioredis.Redis = aioredis.Redis.from_url(
        settings.redis_url,
        decode_responses=True,
        socket_timeout=settings.redis_socket_timeout,
        socket_connect_timeout=settings.redis_connect_timeout,
        retry=Retry(NoBackoff(), 0),
        client_name=name,
    )
    return client


def is_transient(exc: RedisError) -> bool:
    """Connection trouble and "busy" replies are retried; a refused script is not."""
    if isinstance(exc, ResponseError):
        return str(exc).startswith(TRANSIENT_REPLIES)
    return True
