"""A replica's bandit state: cached posteriors and sticky arms, refreshed in the background.

The hot path (``view``, ``hold``) only reads and writes memory. ``refresh`` runs every
``bandit_refresh_interval`` seconds: one pipelined read of every bandit experiment's evidence
and of the sticky assignments written since the last read, then, for a posterior that changed,
the Thompson table of the arms available now. While Redis is down the
last posteriors keep serving and their age grows (report, ``/metrics``).

Sticky arms: a user's first draw is held in this replica's memory at once and written to a
capped Redis stream by the recorder (``Outcome.sticky_until``); every replica pulls the stream.
The earliest entry for a user in the stream wins everywhere, so two replicas that drew for the
same user within one refresh agree after it (the user may switch once, in that window).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError

from router.bandit.evidence import (
    BanditStore,
    BanditTarget,
    RedisBanditStore,
    StreamEntry,
    arm_stats,
    parse_evidence,
)
from router.config.experiments import BanditPolicy, Experiment
from router.core import logs
from router.core.metrics import GatewayMetrics
from router.core.settings import Settings
from router.flags.cache import FlagCache
from router.flags.values import ExperimentFlags
from router.routing.policies.bandit import Bandit, Posteriors
from router.routing.policies.base import Decision, HeldArm, RoutingView
from router.routing.table import Route, RouteTable
from router.storage.client import connect, redis_configured

log = logging.getLogger("turnout.bandit")

STICKY_PAGE = 10_000
"""Most sticky entries read per experiment and refresh (a backlog takes a few refreshes)."""
PRIME_SECONDS = 2.0


def unavailable(route: Route) -> frozenset[str]:
    """Variants known to be down right now (a bandit does not draw them)."""
    down = [v for v, u in route.upstreams.items() if u.down()]
    return frozenset(down) if down else frozenset()


@dataclass(frozen=True, slots=True)
class Held:
    arm: str
    propensity: float
    expires: float
    confirmed: bool
    """Read back from the shared stream (False: this replica's own draw, not yet seen there)."""


class StickyArms:
    """User hash -> held arm per experiment, oldest first; bounded, expired entries pruned."""

    def __init__(self, ttl: float, capacity: int) -> None:
        self.ttl = ttl
        self.capacity = capacity
        self._held: OrderedDict[tuple[str, str], Held] = OrderedDict()

    def __len__(self) -> int:
        return len(self._held)

    def get(self, experiment: str, user: str, now: float) -> HeldArm | None:
        held = self._held.get((experiment, user))
        if held is None or held.expires <= now:
            return None
        return HeldArm(held.arm, held.propensity)

    def hold(self, experiment: str, user: str, arm: str, propensity: float, now: float) -> float:
        """Hold this replica's fresh draw; returns when it expires."""
        expires = now + self.ttl
        self._put((experiment, user), Held(arm, propensity, expires, False))
        return expires

    def merge(self, experiment: str, entries: list[StreamEntry]) -> None:
        """Entries in stream order: the first live one per user is the assignment."""
        for _, fields in entries:
            try:
                user, arm = fields["u"], fields["v"]
                propensity, expires = float(fields["p"]), float(fields["x"])
            except (KeyError, ValueError):
                continue
            key = (experiment, user)
            current = self._held.get(key)
            drawn_at = expires - self.ttl
            if current is None or not current.confirmed or current.expires <= drawn_at:
                self._put(key, Held(arm, propensity, expires, True))

    def prune(self, now: float) -> None:
        while self._held:
            key, held = next(iter(self._held.items()))
            if held.expires > now and len(self._held) <= self.capacity:
                break
            del self._held[key]

    def _put(self, key: tuple[str, str], held: Held) -> None:
        self._held[key] = held
        self._held.move_to_end(key)
        if len(self._held) > self.capacity:
            self._held.popitem(last=False)


@dataclass(frozen=True)
class CachedBandit:
    """One experiment's posteriors as of a refresh, for one configuration."""

    experiment: Experiment
    raw: dict[str, str]
    """The evidence hash it was built from (an unchanged hash keeps the tables)."""
    posteriors: Posteriors


class BanditRuntime:
    """Posterior cache and sticky arms of every bandit experiment this replica serves."""

    def __init__(
        self,
        store: BanditStore | None,
        routes: Callable[[], Mapping[str, Route]],
        frozen_default: Callable[[str], bool],
        settings: Settings,
        metrics: GatewayMetrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.routes = routes
        """The routes in force (the experiment store's snapshot)."""
        self.frozen_default = frozen_default
        self.prior = settings.bandit_prior
        self.interval = settings.bandit_refresh_interval
        self.metrics = metrics
        self.clock = clock
        self.sticky = StickyArms(settings.bandit_sticky_ttl, settings.bandit_sticky_max)
        self.cached: dict[str, CachedBandit] = {}
        self.refreshed_at: float | None = None
        """When the last read from Redis succeeded (None: never)."""
        self.started_at = clock()
        self.redis_error: str | None = None if store else "no Redis configured"
        self._sticky_after: dict[str, str] = {}

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        experiments: RouteTable,
        flags: FlagCache,
        metrics: GatewayMetrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> BanditRuntime:
        store = None
        if redis_configured(settings):
            store = RedisBanditStore(connect(settings))
        return cls(
            store,
            lambda: experiments.snapshot.routes,
            lambda name: flags.defaults.default(name, "frozen") is True,
            settings,
            metrics,
            clock,
        )

    # --- the hot path: memory only ---------------------------------------------------------
    def view(self, route: Route, flags: ExperimentFlags, user: str | None) -> RoutingView | None:
        """What a bandit decides from (None for other policies)."""
        policy = route.policy
        if not isinstance(policy, Bandit):
            return None
        cached = self.cached.get(route.name)
        stats = cached.posteriors if cached is not None else {}
        config = route.experiment.policy
        held = None
        if user is not None and isinstance(config, BanditPolicy) and config.sticky is not None:
            held = self.sticky.get(route.name, user, self.clock())
        return RoutingView(unavailable(route), stats, flags.values, held)

    def hold(
        self, route: Route, view: RoutingView | None, user: str | None, decision: Decision
    ) -> float | None:
        """After a fresh draw for a sticky user with no live arm: keep them on it. Returns the
        expiry to record (None: nothing to hold)."""
        config = route.experiment.policy
        if (
            view is None
            or user is None
            or view.held is not None
            or decision.sticky
            or not isinstance(config, BanditPolicy)
            or config.sticky is None
            or decision.variant not in config.arms
        ):
            return None
        return self.sticky.hold(
            route.name, user, decision.variant, decision.probability, self.clock()
        )

    # --- the feedback path --------------------------------------------------------------
    def target(self, experiment: str) -> BanditTarget | None:
        route = self.routes().get(experiment)
        if route is None or not isinstance(route.experiment.policy, BanditPolicy):
            return None
        arms = frozenset(route.experiment.policy.arms)
        return BanditTarget(arms, self.frozen_default(experiment))

    # --- background ---------------------------------------------------------------------
    def bandit_routes(self) -> list[Route]:
        return [r for r in self.routes().values() if isinstance(r.policy, Bandit)]

    async def refresh(self) -> None:
        """Read every bandit's evidence and new sticky entries; rebuild what changed."""
        routes = self.bandit_routes()
        now = self.clock()
        if self.store is None or not routes:
            await self._install(routes, {})
            return
        names = [r.name for r in routes]
        sticky_after = {}
        for route in routes:
            config = route.experiment.policy
            if isinstance(config, BanditPolicy) and config.sticky is not None:
                default = f"{max(0, int((now - self.sticky.ttl) * 1000))}-0"
                sticky_after[route.name] = self._sticky_after.get(route.name, default)
        read = await self.store.read(names, sticky_after, STICKY_PAGE)
        for name, entries in read.sticky.items():
            self.sticky.merge(name, entries)
            if entries:
                self._sticky_after[name] = f"({entries[-1][0]}"
        self.sticky.prune(now)
        self.refreshed_at = now
        if self.redis_error is not None:
            logs.event(log, "bandit_redis_back")
        self.redis_error = None
        await self._install(routes, read.evidence)

    async def _install(self, routes: list[Route], evidence: dict[str, dict[str, str]]) -> None:
        cached: dict[str, CachedBandit] = {}
        for route in routes:
            experiment = route.experiment
            config = experiment.policy
            assert isinstance(config, BanditPolicy)
            old = self.cached.get(route.name)
            raw = evidence.get(route.name, old.raw if old else {})
            if old is not None and old.experiment == experiment and old.raw == raw:
                cached[route.name] = old
                continue
            stats = arm_stats(parse_evidence(raw), config.arms, config.prior or self.prior)
            fresh = CachedBandit(experiment, raw, Posteriors(stats))
            policy = route.policy
            assert isinstance(policy, Bandit)
            # Builds the table the hot path draws from (well under a millisecond for a few arms).
            policy.share(RoutingView(unavailable(route), fresh.posteriors))
            cached[route.name] = fresh
        self.cached = cached
        self._export(routes)

    async def prime(self) -> None:
        """First read before serving, so a restarted replica does not start from the prior."""
        try:
            async with asyncio.timeout(PRIME_SECONDS):
                await self.refresh()
        except (RedisError, OSError, TimeoutError) as exc:
            self._down(exc)
            await self._install(self.bandit_routes(), {})

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.refresh()
            except (RedisError, OSError) as exc:
                self._down(exc)
                await self._install(self.bandit_routes(), {})
            except Exception as exc:  # a bug must not stop refreshing for good
                logs.event(log, "bandit_refresh_failed", logging.ERROR, reason=repr(exc))

    def _down(self, exc: BaseException) -> None:
        reason = f"{type(exc).__name__}: {exc}"
        if self.redis_error is None:
            logs.event(log, "bandit_redis_down", logging.WARNING, reason=reason)
        self.redis_error = reason

    async def close(self) -> None:
        if isinstance(self.store, RedisBanditStore):
            await self.store.close()

    # --- reporting ----------------------------------------------------------------------
    def age(self) -> float:
        """Seconds since the posteriors were last read from Redis (since start if never)."""
        return self.clock() - (self.refreshed_at or self.started_at)

    def share(self, route: Route) -> dict[str, float]:
        """Probability that the next fresh draw picks each arm, as this replica sees it now."""
        policy = route.policy
        if not isinstance(policy, Bandit):
            return {}
        cached = self.cached.get(route.name)
        stats = cached.posteriors if cached is not None else {}
        return policy.share(RoutingView(unavailable(route), stats))

    def status(self, route: Route) -> dict[str, Any]:
        return {
            "age_seconds": self.age(),
            "refreshed_at": self.refreshed_at,
            "refresh_interval": self.interval,
            "redis": "down" if self.redis_error else "up",
            "error": self.redis_error,
            "traffic_share": self.share(route),
            "sticky_users_cached": len(self.sticky),
        }

    def _export(self, routes: list[Route]) -> None:
        metrics = self.metrics
        if metrics is None:
            return
        metrics.bandit_posterior_mean.clear()
        metrics.bandit_traffic_share.clear()
        metrics.bandit_posterior_age.clear()
        for route in routes:
            cached = self.cached.get(route.name)
            if cached is None:
                continue
            config = route.experiment.policy
            assert isinstance(config, BanditPolicy)
            for arm in config.arms:
                stats = cached.posteriors[arm]
                mean = stats.alpha / (stats.alpha + stats.beta)
                metrics.bandit_posterior_mean.labels(route.name, arm).set(mean)
            for arm, share in self.share(route).items():
                metrics.bandit_traffic_share.labels(route.name, arm).set(share)
            metrics.bandit_posterior_age.labels(route.name).set_function(self.age)
