"""Sign-out that ends a session on every replica, while checking a session stays synchronous.

A session is its cookie's nonce. Signing out adds the nonce, with the cookie's expiry, to a
sorted set in Redis and publishes it; every replica keeps the set in memory, follows the
channel and reads the whole set every ``TURNOUT_UI_SIGNOUT_REFRESH_INTERVAL`` as a backstop,
so ``ended`` is a set lookup. A sign-out Redis could not take is kept here (this replica
refuses the cookie at once) and written when Redis answers again: nothing is dropped.

While this replica cannot read the set, ``current`` is False: sessions may still view, but
the console refuses their actions (fail closed); a bearer token still acts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import cast

from redis.exceptions import RedisError

from router.core import logs
from router.core.settings import Settings
from router.storage import keys
from router.storage.client import RedisClient, connect, redis_configured
from router.storage.codec import text
from router.storage.follow import follow

log = logging.getLogger("turnout.console")

PRIME_SECONDS = 2.0
STALE_AFTER = 3
"""Refresh intervals without a successful read after which the set counts as unknown."""


class SignedOut:
    """Ended sessions (nonce -> the cookie's expiry), forgotten once the cookie expires (pure)."""

    def __init__(self) -> None:
        self.entries: dict[str, float] = {}

    def add(self, nonce: str, expires: float) -> None:
        self.entries[nonce] = max(expires, self.entries.get(nonce, expires))

    def replace(self, entries: Iterable[tuple[str, float]], kept: dict[str, float]) -> None:
        """Install what Redis holds, plus ``kept`` (sign-outs Redis has not taken yet)."""
        self.entries = dict(entries)
        for nonce, expires in kept.items():
            self.add(nonce, expires)

    def prune(self, now: float) -> None:
        self.entries = {n: e for n, e in self.entries.items() if e >= now}

    def __contains__(self, nonce: str) -> bool:
        return nonce in self.entries


class SignOuts:
    """A replica's view of the signed-out sessions: read without I/O, followed in Redis."""

    def __init__(
        self,
        redis: RedisClient | None = None,
        refresh_interval: float = 5.0,
        session_ttl: int = 8 * 3600,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.redis = redis
        self.refresh_interval = refresh_interval
        self.session_ttl = session_ttl
        self.clock = clock
        self.signed_out = SignedOut()
        self.pending: dict[str, float] = {}
        """Sign-outs Redis has not taken yet."""
        self.refreshed_at: float | None = None
        self.redis_error: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings, clock: Callable[[], float]) -> SignOuts:
        redis = connect(settings, "turnout-console") if redis_configured(settings) else None
        return cls(redis, settings.ui_signout_refresh_interval, settings.ui_session_ttl, clock)

    def ended(self, nonce: str) -> bool:
        return nonce in self.signed_out

    def current(self) -> bool:
        """Whether a sign-out on another replica would be seen here (no Redis: one replica)."""
        if self.redis is None:
            return True
        if self.redis_error is not None or self.refreshed_at is None:
            return False
        return self.clock() - self.refreshed_at <= STALE_AFTER * self.refresh_interval

    async def sign_out(self, nonce: str, expires: float) -> None:
        """End the session here at once, and everywhere once Redis has it."""
        self.signed_out.add(nonce, expires)
        if self.redis is None:
            return
        self.pending[nonce] = expires
        try:
            async with asyncio.timeout(PRIME_SECONDS):
                await self._write()
        except (RedisError, OSError, TimeoutError) as exc:
            self._down(exc)  # kept in ``pending``: the follower writes it when Redis is back

    async def _write(self) -> None:
        assert self.redis is not None
        if not self.pending:
            return
        written = dict(self.pending)
        now = self.clock()
        await self.redis.zadd(keys.CONSOLE_SIGNED_OUT, written)
        await self.redis.zremrangebyscore(keys.CONSOLE_SIGNED_OUT, "-inf", now)
        await self.redis.expire(keys.CONSOLE_SIGNED_OUT, self.session_ttl)
        await self.redis.publish(keys.CONSOLE_SIGNED_OUT_CHANNEL, "")
        for nonce in written:
            self.pending.pop(nonce, None)

    async def refresh(self) -> None:
        """Write what waits, then read the whole set (one round trip) and swap it in."""
        assert self.redis is not None
        await self._write()
        now = self.clock()
        rows = cast(
            list[tuple[bytes | str, float]],
            await self.redis.zrangebyscore(keys.CONSOLE_SIGNED_OUT, now, "+inf", withscores=True),
        )
        self.signed_out.replace(((text(n), float(e)) for n, e in rows), self.pending)
        self.signed_out.prune(now)
        self.refreshed_at = now
        if self.redis_error is not None:
            logs.event(log, "console_signouts_redis_back")
        self.redis_error = None

    async def prime(self) -> None:
        if self.redis is None:
            return
        try:
            async with asyncio.timeout(PRIME_SECONDS):
                await self.refresh()
        except (RedisError, OSError, TimeoutError) as exc:
            self._down(exc)

    def _down(self, exc: BaseException) -> None:
        reason = f"{type(exc).__name__}: {exc}"
        if self.redis_error is None:
            logs.event(log, "console_signouts_redis_down", logging.WARNING, reason=reason)
        self.redis_error = reason

    async def run(self) -> None:
        """Follow sign-outs over pub/sub, read the set every interval; survive Redis outages."""
        if self.redis is None:
            return
        await follow(
            self.redis,
            keys.CONSOLE_SIGNED_OUT_CHANNEL,
            self.refresh,
            self.refresh_interval,
            self._down,
            log,
            "console_signouts_follow_failed",
        )

    async def close(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()
