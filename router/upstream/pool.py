"""Upstreams: one pooled aiohttp client per model server URL, shared by every experiment."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp

from router.upstream.breaker import CircuitBreaker


class UpstreamFailure(Exception):
    """The upstream could not answer: connection error, timeout, 5xx or an open breaker."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class UpstreamResponse:
    status: int
    body: bytes
    seconds: float


@dataclass(frozen=True)
class UpstreamTimeouts:
    connect: float
    total: float
    pool_size: int
    mirror_pool_size: int = 16
    mirror_total: float = 2.0


class Upstream:
    """One worker base URL with its own connection pool and breaker."""

    def __init__(self, url: str, timeouts: UpstreamTimeouts, breaker: CircuitBreaker) -> None:
        self.url = url
        self.predict_url = f"{url}/predict"
        self.breaker = breaker
        self.healthy: bool | None = None  # unknown until the first active check
        connector = aiohttp.TCPConnector(
            limit=timeouts.pool_size, keepalive_timeout=30, enable_cleanup_closed=True
        )
        self.session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=timeouts.total, sock_connect=timeouts.connect),
            skip_auto_headers=("User-Agent",),
            raise_for_status=False,
        )
        self.mirror_pool_size = timeouts.mirror_pool_size
        self.mirror_timeout = timeouts.mirror_total
        self.mirror_session: aiohttp.ClientSession | None = None

    def available(self) -> bool:
        """Not known to be down; consumes the half-open probe slot when there is one."""
        return self.healthy is not False and self.breaker.allow()

    async def predict(self, body: bytes, request_id: str) -> UpstreamResponse:
        try:
            response = await _post(self.session, self.predict_url, body, request_id)
        except UpstreamFailure:
            self.breaker.record_failure()
            raise
        if response.status >= 500:
            self.breaker.record_failure()
            raise UpstreamFailure(f"upstream answered {response.status}")
        self.breaker.record_success()
        return response

    async def mirror(self, body: bytes, request_id: str) -> UpstreamResponse:
        """A shadow call: its own small pool and timeout, and no say in the breaker, so a slow
        or failing shadow can neither starve nor trip the variant's live traffic."""
        if self.mirror_session is None:
            self.mirror_session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.mirror_pool_size),
                timeout=aiohttp.ClientTimeout(total=self.mirror_timeout),
                skip_auto_headers=("User-Agent",),
            )
        response = await _post(self.mirror_session, self.predict_url, body, request_id)
        if response.status >= 500:
            raise UpstreamFailure(f"upstream answered {response.status}")
        return response

    def down(self) -> bool:
        """Known to be down: unhealthy, or its breaker open and still cooling down (once the
        cooldown is over it may be chosen again, so the breaker gets its probe)."""
        return self.healthy is False or self.breaker.cooling_down()

    async def close(self) -> None:
        await self.session.close()
        if self.mirror_session is not None:
            await self.mirror_session.close()


async def _post(
    session: aiohttp.ClientSession, url: str, body: bytes, request_id: str
) -> UpstreamResponse:
    started = time.perf_counter()
    try:
        async with session.post(
            url, data=body, headers={"content-type": "application/json", "x-request-id": request_id}
        ) as response:
            payload = await response.read()
            status = response.status
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise UpstreamFailure(f"{type(exc).__name__}: {exc}".rstrip(": ")) from None
    return UpstreamResponse(status, payload, time.perf_counter() - started)


class UpstreamPool:
    """Upstreams by URL, shared by every experiment that names the URL."""

    def __init__(
        self,
        timeouts: UpstreamTimeouts,
        breaker_factory: Callable[[], CircuitBreaker],
    ) -> None:
        self.timeouts = timeouts
        self.breaker_factory = breaker_factory
        self.upstreams: dict[str, Upstream] = {}

    def get(self, url: str) -> Upstream:
        upstream = self.upstreams.get(url)
        if upstream is None:
            upstream = Upstream(url, self.timeouts, self.breaker_factory())
            self.upstreams[url] = upstream
        return upstream

    async def retain(self, urls: set[str]) -> None:
        """Close the pools of URLs that no experiment names any more."""
        for url in [u for u in self.upstreams if u not in urls]:
            await self.upstreams.pop(url).close()

    async def close(self) -> None:
        await asyncio.gather(*(u.close() for u in self.upstreams.values()))
        self.upstreams.clear()
