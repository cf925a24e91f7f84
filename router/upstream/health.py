"""Active health checks: every upstream's readiness, as its protocol defines it."""

from __future__ import annotations

import asyncio
import logging

import aiohttp

from router.core import logs
from router.upstream.pool import Upstream, UpstreamPool

log = logging.getLogger("turnout.upstream")


async def check_ready(upstream: Upstream, limit_seconds: float) -> bool | None:
    """Ask the adapter; None: passive health only (the breaker decides)."""

    async def get(path: str) -> tuple[int, bytes]:
        return await upstream.get(path, limit_seconds)

    try:
        ok = await upstream.adapter.ready(get)
    except (aiohttp.ClientError, TimeoutError, OSError):
        ok = False
    if ok is None:
        upstream.passive = True
        return None
    if ok != upstream.healthy:
        logs.event(log, "upstream_health", url=upstream.url, healthy=ok)
    upstream.healthy = ok
    return ok


async def check_all(pool: UpstreamPool, interval: float) -> None:
    timeout = min(interval, 2.0)
    await asyncio.gather(*(check_ready(u, timeout) for u in list(pool.upstreams.values())))


async def health_loop(pool: UpstreamPool, interval: float) -> None:
    while True:
        await check_all(pool, interval)
        await asyncio.sleep(interval)
