"""Active health checks: every upstream's readiness, polled in the background."""

from __future__ import annotations

import asyncio
import logging

import aiohttp

from router.core import logs
from router.upstream.pool import Upstream, UpstreamPool

log = logging.getLogger("turnout.upstream")


async def check_ready(upstream: Upstream, limit_seconds: float) -> bool:
    try:
        async with upstream.session.get(
            f"{upstream.url}/readyz", timeout=aiohttp.ClientTimeout(total=limit_seconds)
        ) as response:
            ok = response.status == 200
    except (aiohttp.ClientError, TimeoutError, OSError):
        ok = False
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
