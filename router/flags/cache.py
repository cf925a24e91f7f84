"""A replica's flags: read with no I/O on the hot path, kept fresh in the background.

``FlagCache.for_experiment`` is a dict lookup. A background task follows changes by pub/sub, with
a periodic refresh as a safety net, and keeps the last known flags while Redis is unreachable.

Flags fail safe. Every refresh reads the dataset's epoch (``keys.epoch``) with the overrides; an
epoch gone or changed means Redis lost its data (a restart without its append-only file, a
flush). The cache then never installs the emptied flags: it writes the last known overrides back
(audited as ``restore``), counts ``turnout_redis_data_loss_total`` and logs at error level. The
last known overrides also live in the state folder (``flags.json``), so a gateway restarted
after the loss restores them too: an experiment rolled back stays rolled back until someone
clears the flag.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from redis.exceptions import RedisError

from router.core import logs
from router.core.errors import Unavailable
from router.core.metrics import GatewayMetrics
from router.core.settings import Settings
from router.core.state import StateFolder
from router.flags.store import FlagStore
from router.flags.values import CLEAR, ExperimentFlags, FlagDefaults, load_defaults
from router.storage import keys
from router.storage.client import connect, describe, redis_configured
from router.storage.follow import follow

log = logging.getLogger("turnout.flags")

PRIME_SECONDS = 2.0


class FlagCache:
    """Per-replica flags: read without I/O, refreshed in the background, stale-tolerant."""

    def __init__(
        self,
        store: FlagStore | None,
        defaults: FlagDefaults,
        refresh_interval: float,
        metrics: GatewayMetrics | None = None,
        clock: Callable[[], float] = time.time,
        state: StateFolder | None = None,
        redis_url: str = "",
    ) -> None:
        self.store = store
        self.defaults = defaults
        self.refresh_interval = refresh_interval
        self.metrics = metrics
        self.clock = clock
        self.state = state
        self.redis_url = redis_url
        """The Redis the flags live in: the state folder keeps flags per Redis."""
        self.epoch: str | None = None
        """The Redis dataset these flags came from (None until the first refresh)."""
        saved = state.read_flags(redis_url) if state else None
        self._saved_epoch: str | None = saved[0] if saved else None
        self._saved: dict[str, dict[str, object]] = saved[1] if saved else {}
        """The last known overrides from the state folder, for a data loss seen at start-up."""
        self.overrides: dict[str, dict[str, object]] = {}
        self.refreshed_at: float | None = None
        self.redis_error: str | None = None if store else "no Redis configured"
        self._flags: dict[str, ExperimentFlags] = {}
        self._base: dict[str, ExperimentFlags] = {}

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        metrics: GatewayMetrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> FlagCache:
        """Defaults from the flags file; overrides from TURNOUT_REDIS_URL when it is set."""
        defaults = load_defaults(settings.flags_file)
        store = None
        if redis_configured(settings):
            store = FlagStore(connect(settings), defaults, settings.audit_maxlen, clock)
        state = StateFolder(settings.state_dir)
        return cls(
            store,
            defaults,
            settings.flags_refresh_interval,
            metrics,
            clock,
            state,
            settings.redis_url or f"{describe(settings)} db {settings.redis_db}",
        )

    def for_experiment(self, name: str) -> ExperimentFlags:
        flags = self._flags.get(name)
        if flags is None:
            flags = self._base.get(name)
            if flags is None:
                flags = self._base[name] = self.defaults.resolve(name, {})
        return flags

    def require_store(self) -> FlagStore:
        if self.store is None:
            raise Unavailable("flags need Redis: set TURNOUT_REDIS_URL", code="no_redis")
        return self.store

    async def refresh(self) -> None:
        """Fetch the epoch and every override (one round trip) and swap the cache whole; after
        a data loss, restore the last known overrides first."""
        store = self.require_store()
        epoch, overrides = await store.snapshot()
        known = self.epoch or self._saved_epoch
        if epoch is None:
            epoch = await store.claim_epoch()
        if known is not None and epoch != known:
            overrides = await self._recover(store, known, epoch, overrides)
        if self.state is not None and (epoch, overrides) != (self.epoch, self.overrides):
            self.state.save_flags(self.redis_url, epoch, overrides)
        self.epoch = epoch
        self._install(overrides)
        self.refreshed_at = self.clock()
        if self.redis_error is not None:
            logs.event(log, "flags_redis_back")
        self.redis_error = None

    async def _recover(
        self,
        store: FlagStore,
        lost: str,
        epoch: str,
        overrides: dict[str, dict[str, object]],
    ) -> dict[str, dict[str, object]]:
        """Redis lost its data: put back every override it no longer holds."""
        known = self.overrides if self.epoch is not None else self._saved
        restored = []
        for experiment, flags in sorted(known.items()):
            for flag, value in sorted(flags.items()):
                if flag in overrides.get(experiment, {}):
                    continue  # set again since the loss (or restored by another replica)
                await store.change(
                    experiment,
                    flag,
                    value,
                    actor="turnout",
                    reason=f"Redis lost its data (epoch {lost} is now {epoch}); restored the "
                    "last known value",
                    action="restore",
                )
                restored.append(keys.flag_field(experiment, flag))
        if self.metrics is not None:
            self.metrics.redis_data_loss.inc()
        logs.event(
            log,
            "redis_data_lost",
            logging.ERROR,
            previous_epoch=lost,
            epoch=epoch,
            flags_restored=restored,
            detail="Redis came back without its data: outcomes, reports, feedback attribution "
            "and bandit evidence recorded before are gone; flag overrides were restored",
        )
        return await store.overrides() if restored else overrides

    async def prime(self) -> None:
        """First load before serving, so a restarted replica does not start on defaults."""
        if self.store is None:
            return
        try:
            async with asyncio.timeout(PRIME_SECONDS):
                await self.refresh()
        except (RedisError, OSError, TimeoutError) as exc:
            self._down(exc)

    def _install(self, overrides: dict[str, dict[str, object]]) -> None:
        if self.metrics is not None:
            for experiment in set(overrides) | set(self.overrides):
                before = self.overrides.get(experiment, {})
                after = overrides.get(experiment, {})
                for flag in set(before) | set(after):
                    if before.get(flag, CLEAR) != after.get(flag, CLEAR):
                        self.metrics.flag_changes.labels(experiment, flag).inc()
        self._flags = {n: self.defaults.resolve(n, o) for n, o in overrides.items()}
        self.overrides = overrides

    def _down(self, exc: BaseException) -> None:
        reason = f"{type(exc).__name__}: {exc}"
        if self.redis_error is None:
            logs.event(log, "flags_redis_down", logging.WARNING, reason=reason)
        self.redis_error = reason

    async def run(self) -> None:
        """Follow changes over pub/sub, refresh every interval; survive Redis outages."""
        if self.store is None:
            return
        await follow(
            self.store.redis,
            keys.FLAGS_CHANNEL,
            self.refresh,
            self.refresh_interval,
            self._down,
            log,
            "flags_follow_failed",
        )

    async def close(self) -> None:
        if self.store is not None:
            await self.store.close()

    def status(self) -> dict[str, object]:
        return {
            "redis": "down" if self.redis_error else "up",
            "error": self.redis_error,
            "refreshed_at": self.refreshed_at,
            "refresh_interval": self.refresh_interval,
        }
