"""Active health checks: every upstream's readiness, as its protocol defines it."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import orjson

from router.core import bounded_json, logs
from router.upstream.pool import Upstream, UpstreamFailure, UpstreamPool

log = logging.getLogger("turnout.upstream")


async def check_ready(upstream: Upstream, limit_seconds: float, misses: int = 1) -> bool | None:
    """Ask the adapter; None: passive health only (the breaker decides). It takes ``misses``
    failed checks in a row to mark an upstream unhealthy: one slow answer on a busy machine
    must not take a healthy control out."""

    async def get(path: str) -> tuple[int, bytes]:
        return await upstream.get(path, limit_seconds)

    try:
        ok = await upstream.adapter.ready(get)
    except (aiohttp.ClientError, TimeoutError, OSError, UpstreamFailure):
        ok = False  # an answer past the cap or in a bad encoding too
    if ok is None:
        upstream.passive = True
        return None
    if ok and not upstream.info_checked:
        await learn_labels(upstream, limit_seconds)
    upstream.health_misses = 0 if ok else upstream.health_misses + 1
    healthy = True if ok else (False if upstream.health_misses >= misses else upstream.healthy)
    if healthy != upstream.healthy:
        logs.event(log, "upstream_health", url=upstream.url, healthy=healthy)
    upstream.healthy = healthy
    return ok


async def learn_labels(upstream: Upstream, limit_seconds: float) -> None:
    """The labels a ready Turnout worker answers, from its model card at ``/info``: ``classes``
    (what the card says the model answers), else ``label_names`` (labels 0..n-1). Other
    protocols, and a server with no such card, leave them unknown (feedback labels are then
    only type-checked)."""
    if upstream.protocol != "turnout":
        upstream.info_checked = True
        return
    try:
        status, body = await upstream.get("/info", limit_seconds)
        card = bounded_json.loads(body) if status == 200 else None
    except (aiohttp.ClientError, TimeoutError, OSError, UpstreamFailure, ValueError):
        return  # asked again at the next check
    upstream.info_checked = True
    if not isinstance(card, dict):
        return
    classes = card.get("classes")
    names = card.get("label_names")
    if isinstance(classes, list) and classes:
        upstream.labels = frozenset(orjson.dumps(label).decode() for label in classes)
    elif isinstance(names, list) and names:
        upstream.labels = frozenset(str(i) for i in range(len(names)))


async def check_all(pool: UpstreamPool, interval: float, misses: int = 1) -> None:
    timeout = min(interval, 2.0)
    await asyncio.gather(*(check_ready(u, timeout, misses) for u in list(pool.upstreams.values())))


async def health_loop(pool: UpstreamPool, interval: float, misses: int = 1) -> None:
    while True:
        await check_all(pool, interval, misses)
        await asyncio.sleep(interval)
