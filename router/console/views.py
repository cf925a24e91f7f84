"""What each console page shows, gathered from the gateway's parts as plain data.

Reads go through the reports' and the rollout store's readers. A Redis that does not answer
costs the sections that need it (each says so), never the page: the configuration, upstream
health and flags come from this replica's memory.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from redis.exceptions import RedisError

from router.admin.actions import AdminActions
from router.bandit.runtime import BanditRuntime
from router.console import charts
from router.core import logs
from router.core.errors import NotFound, TurnoutError
from router.core.settings import Settings
from router.reports.experiment import BanditLive, build_report
from router.reports.history import TimeRange, history_report, parse_range, plan
from router.reports.reads import read_history, read_recorded, read_shadow
from router.reports.shadow import build_shadow_report
from router.reports.status import experiment_status
from router.routing.table import Route, RouteTable
from router.storage.client import RedisClient

log = logging.getLogger("turnout.console")
T = TypeVar("T")
AUDIT_ROWS = 50
SPARK_RANGE = "1h"
RANGES = ("15m", "1h", "6h", "24h", "7d", "30d")


@dataclass
class ConsoleData:
    settings: Settings
    actions: AdminActions
    redis: RedisClient | None
    """The recorder's client; None when this gateway records nothing."""
    bandits: BanditRuntime
    clock: Callable[[], float] = time.time

    @property
    def table(self) -> RouteTable:
        return self.actions.table

    def route(self, name: str) -> Route:
        route = self.table.snapshot.routes.get(name)
        if route is None:
            raise NotFound(f"no experiment named {name!r} is loaded", code="unknown_experiment")
        return route

    async def _guarded(
        self, what: str, notices: list[str], read: Callable[[], Awaitable[T]]
    ) -> T | None:
        """One section's Redis reads; a failure becomes a notice and an empty section."""
        try:
            return await read()
        except (RedisError, OSError) as exc:
            logs.event(log, "console_read_failed", logging.WARNING, section=what, reason=str(exc))
            notices.append(f"{what}: Redis is unreachable ({type(exc).__name__})")
        except TurnoutError as exc:
            notices.append(f"{what}: {exc.detail}")
        return None

    def _range(self, span: str | None, end: str | None) -> TimeRange:
        return parse_range(span, end, self.clock(), self.settings.history_hour_retention)

    async def _history(self, route: Route, wanted: TimeRange) -> dict[str, Any]:
        assert self.redis is not None
        now = self.clock()
        chosen = plan(route.name, wanted, now, self.settings.history_minute_retention)
        hashes = await read_history(self.redis, chosen.keys)
        return history_report(chosen, wanted, hashes, list(route.experiment.variants))

    def _status(self, route: Route) -> dict[str, Any]:
        runtime = self.actions.rollout_runtime
        status = experiment_status(route, runtime.summary(route) if runtime else None)
        flags = self.actions.flags.for_experiment(route.name)
        status["flags"] = dict(flags.values)
        status["overrides"] = dict(self.actions.flags.overrides.get(route.name, {}))
        status["weights_in_force"] = (
            runtime.weights(route) if runtime else route.experiment.configured_weights()
        )
        share = self.bandits.share(route)
        if share:  # a bandit's weights are its draws: what the next request would get
            status["weights_in_force"] = {arm: 100.0 * p for arm, p in share.items()}
        return status

    # --- the overview -------------------------------------------------------------------
    async def overview(self) -> dict[str, Any]:
        notices: list[str] = []
        snapshot = self.table.snapshot
        routes = [snapshot.routes[n] for n in sorted(snapshot.routes)]
        wanted = self._range(SPARK_RANGE, None)
        items = []
        sparks: dict[str, Any] = {}
        if self.redis is None:
            notices.append("this gateway records no outcomes (TURNOUT_REDIS_URL is unset)")
        else:

            async def spark_all() -> list[dict[str, Any]]:
                return list(await asyncio.gather(*(self._history(r, wanted) for r in routes)))

            histories = await self._guarded("traffic", notices, spark_all)
            for route, history in zip(routes, histories or [], strict=False):
                sparks[route.name] = history
        for route in routes:
            status = self._status(route)
            spark = sparks.get(route.name)
            status["requests_last_hour"] = sum(spark["total"]) if spark else None
            status["spark"] = charts.sparkline(spark) if spark else None
            items.append(status)
        return {
            "generated_at": self.clock(),
            "refresh_s": self.settings.ui_refresh_interval,
            "experiments": items,
            "refused": {str(p): reason for p, reason in snapshot.refused.items()},
            "notices": notices,
        }

    # --- one experiment -----------------------------------------------------------------
    async def experiment(self, name: str, span: str | None, end: str | None) -> dict[str, Any]:
        route = self.route(name)
        wanted = self._range(span, end)
        exp = route.experiment
        notices: list[str] = []
        out: dict[str, Any] = {
            "name": name,
            "generated_at": self.clock(),
            "refresh_s": self.settings.ui_refresh_interval,
            "live": end is None or not end.strip(),
            "span": wanted.span,
            "ranges": RANGES,
            "status": self._status(route),
            "known_flags": sorted(self.actions.flags.defaults.flags),
            "variants": list(exp.variants),
            "history": None,
            "report": None,
            "shadow": None,
            "rollout": None,
            "audit": None,
            "drift": None,
            "charts": {},
            "notices": notices,
        }
        specs: dict[str, Any] = out["charts"]
        rollout = await self._guarded("rollout", notices, lambda: self._rollout(route, wanted))
        out["rollout"] = rollout
        if self.redis is None:
            notices.append("this gateway records no outcomes (TURNOUT_REDIS_URL is unset)")
        else:
            redis = self.redis
            history = await self._guarded("history", notices, lambda: self._history(route, wanted))
            if history is not None:
                out["history"] = history["range"]
                weights = charts.weights_over_time(
                    rollout, out["status"]["weights_in_force"], wanted.start, wanted.end
                )
                if exp.policy.kind == "bandit":  # its shares follow rewards: no weights to show
                    weights = {}
                specs["traffic"] = charts.traffic(history, weights)
                specs["volume"] = charts.volume(history)
                specs["latency"] = charts.latency(history)
                if history["shadow"]:
                    specs["agreement"] = charts.agreement(history)

            async def report() -> dict[str, Any]:
                recorded = await read_recorded(redis, name, route.config_version, exp.variants)
                live = BanditLive(self.settings.bandit_prior, self.bandits.status(route))
                return build_report(exp, route.config_version, recorded, self.clock(), live)

            built = await self._guarded("report", notices, report)
            out["report"] = built
            if built is not None:
                specs["forest"] = charts.forest(built)
                if built.get("bandit"):
                    specs["posteriors"] = charts.posteriors(built["bandit"])
                    specs["bandit_shares"] = charts.bandit_shares(built["bandit"])
            shadow = await self._guarded("shadow", notices, lambda: read_shadow(redis, name))
            if shadow is not None and shadow.pairs:
                by_user = exp.analysis_unit == "user"
                shadow_report = build_shadow_report(name, shadow, by_user)
                out["shadow"] = shadow_report
                specs["shadow"] = [
                    {
                        "pair": f"{row['primary']} → {row['shadow']}",
                        "confusion": charts.confusion(row),
                        "deltas": charts.score_deltas(
                            row, shadow.pairs[(row["primary"], row["shadow"])]
                        ),
                    }
                    for row in shadow_report["pairs"]
                ]
        if rollout is not None:
            looks = rollout.pop("looks", [])
            steps = charts.rollout_steps(rollout, looks, self.clock())
            if steps is not None:
                specs["rollout_steps"] = steps
                specs["gates"] = charts.gate_bands(looks)
        out["audit"] = await self._guarded(
            "audit history", notices, lambda: self._audit(route.name)
        )
        return out

    async def _rollout(self, route: Route, wanted: TimeRange) -> dict[str, Any] | None:
        exp = route.experiment
        store = self.actions.rollout_store
        if store is None or (exp.rollout is None and exp.srm is None):
            return None
        report = await self.actions.rollout_status(route)
        report["looks"] = await store.looks(route.name, wanted.start)
        return report

    async def _audit(self, name: str) -> list[dict[str, Any]] | None:
        if self.actions.flags.store is None:
            return None
        events = await self.actions.history(name, AUDIT_ROWS)
        return [e.as_dict() for e in events]
