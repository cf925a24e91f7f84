"""Upstream workers: one pooled aiohttp client each, a circuit breaker, active health checks."""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp

from router.core import logs

log = logging.getLogger("turnout.upstream")


class BreakerState(enum.IntEnum):
    CLOSED = 0
    OPEN = 1
    HALF_OPEN = 2


class CircuitBreaker:
    """N consecutive failures open it; after ``reset_seconds`` one probe may close it again."""

    def __init__(
        self,
        failures_to_open: int,
        reset_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failures_to_open = failures_to_open
        self.reset_seconds = reset_seconds
        self.clock = clock
        self.state = BreakerState.CLOSED
        self.failures = 0
        self.opened_at = 0.0
        self.probe_in_flight = False

    def allow(self) -> bool:
        if self.state is BreakerState.CLOSED:
            return True
        if self.state is BreakerState.OPEN:
            if self.clock() - self.opened_at < self.reset_seconds:
                return False
            self.state = BreakerState.HALF_OPEN
            self.probe_in_flight = False
        if self.probe_in_flight:
            return False
        self.probe_in_flight = True
        return True

    def record_success(self) -> None:
        self.state = BreakerState.CLOSED
        self.failures = 0
        self.probe_in_flight = False

    def record_failure(self) -> None:
        self.failures += 1
        if self.state is BreakerState.HALF_OPEN or self.failures >= self.failures_to_open:
            self.state = BreakerState.OPEN
            self.opened_at = self.clock()
            self.probe_in_flight = False


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

    async def check_ready(self, limit_seconds: float) -> bool:
        try:
            async with self.session.get(
                f"{self.url}/readyz", timeout=aiohttp.ClientTimeout(total=limit_seconds)
            ) as response:
                ok = response.status == 200
        except (aiohttp.ClientError, TimeoutError, OSError):
            ok = False
        if ok != self.healthy:
            logs.event(log, "upstream_health", url=self.url, healthy=ok)
        self.healthy = ok
        return ok

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
        health_interval: float,
    ) -> None:
        self.timeouts = timeouts
        self.breaker_factory = breaker_factory
        self.health_interval = health_interval
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

    async def check_all(self) -> None:
        upstreams = list(self.upstreams.values())
        timeout = min(self.health_interval, 2.0)
        await asyncio.gather(*(u.check_ready(timeout) for u in upstreams))

    async def health_loop(self) -> None:
        while True:
            await self.check_all()
            await asyncio.sleep(self.health_interval)

    async def close(self) -> None:
        await asyncio.gather(*(u.close() for u in self.upstreams.values()))
        self.upstreams.clear()
