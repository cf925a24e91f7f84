"""The route table: the experiments in force, an immutable snapshot swapped whole on reload."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import watchfiles

from router.config.experiments import Experiment
from router.config.loader import LoadedExperiment, LoadReport, load_directory
from router.core import logs
from router.core.errors import ConfigError, NotFound
from router.core.metrics import GatewayMetrics
from router.routing.policies import Policy, build_policy
from router.upstream.pool import Upstream, UpstreamPool

log = logging.getLogger("turnout.experiments")


@dataclass(frozen=True)
class Route:
    """One experiment ready to serve: its policy and an upstream per variant."""

    loaded: LoadedExperiment
    policy: Policy
    upstreams: dict[str, Upstream]

    @property
    def experiment(self) -> Experiment:
        return self.loaded.experiment

    @property
    def name(self) -> str:
        return self.loaded.experiment.name

    @property
    def config_version(self) -> str:
        return self.loaded.config_version

    def control_ready(self) -> bool:
        """The control, or one of the experiment's fallback variants, can answer as far as this
        gateway knows (what readiness hangs on: a canary alone cannot carry the traffic)."""
        exp = self.experiment
        return any(self.upstreams[v].ready() for v in (exp.control, *exp.fallback))


@dataclass(frozen=True)
class Snapshot:
    routes: dict[str, Route] = field(default_factory=dict)
    by_model: dict[str, Route] = field(default_factory=dict)
    refused: dict[Path, str] = field(default_factory=dict)
    """Files refused at the last reload (their last good version, if any, keeps serving)."""

    def not_ready(self) -> list[str]:
        """Experiments whose control cannot answer, each with its control's name."""
        return sorted(
            f"{r.name} (control {r.experiment.control})"
            for r in self.routes.values()
            if not r.control_ready()
        )


class RouteTable:
    """The experiment serving each model, kept in step with the experiments folder."""

    def __init__(
        self,
        directory: Path,
        allowed_hosts: list[str],
        pool: UpstreamPool,
        metrics: GatewayMetrics,
        on_change: Callable[[Snapshot], None] | None = None,
    ) -> None:
        self.directory = directory
        self.allowed_hosts = allowed_hosts
        self.pool = pool
        self.metrics = metrics
        self.on_change = on_change
        self.snapshot = Snapshot()

    def require(self, name: str) -> Route:
        """The experiment named ``name``, or a 404 listing the loaded ones."""
        route = self.snapshot.routes.get(name)
        if route is None:
            known = ", ".join(sorted(self.snapshot.routes)) or "none"
            raise NotFound(
                f"unknown experiment {name!r} (loaded: {known})", code="unknown_experiment"
            )
        return route

    def read(self) -> LoadReport:
        """Parse and validate every file of the folder (no upstream is touched)."""
        return load_directory(self.directory, self.allowed_hosts)

    def check_initial(self) -> LoadReport:
        """The first load: any refused file is fatal, since there is no last good config."""
        report = self.read()
        if report.errors:
            raise ConfigError("; ".join(e.detail for e in report.errors.values()))
        return report

    def install_initial(self, report: LoadReport) -> Snapshot:
        """Serve what ``check_initial`` read (needs the event loop: upstreams open pools)."""
        self._install(dict(report.experiments), {})
        return self.snapshot

    async def reload(self) -> Snapshot:
        """Apply valid edits; keep the last good version of every refused file."""
        report = self.read()
        loaded = dict(report.experiments)
        previous = {r.loaded.path: r.loaded for r in self.snapshot.routes.values()}
        taken_models = {exp.experiment.model for exp in loaded.values()}
        for path, error in report.errors.items():
            self.metrics.config_reloads.labels("refused").inc()
            logs.event(log, "config_refused", logging.WARNING, file=str(path), reason=error.detail)
            kept = previous.get(path)
            if kept is not None and kept.experiment.model not in taken_models:
                loaded[kept.experiment.name] = kept
        refused = {p: e.detail for p, e in report.errors.items()}
        before = {n: r.config_version for n, r in self.snapshot.routes.items()}
        after = {n: e.config_version for n, e in loaded.items()}
        if before != after:
            self._install(loaded, refused)
            await self.pool.retain(
                {
                    self.pool.key_of(u)
                    for r in self.snapshot.routes.values()
                    for u in r.upstreams.values()
                }
            )
            self.metrics.config_reloads.labels("applied").inc()
            logs.event(log, "config_applied", experiments=after)
        elif refused != self.snapshot.refused:
            self.snapshot = Snapshot(self.snapshot.routes, self.snapshot.by_model, refused)
        return self.snapshot

    def _install(self, loaded: dict[str, LoadedExperiment], refused: dict[Path, str]) -> None:
        routes = {}
        for name, item in loaded.items():
            exp = item.experiment
            upstreams = {
                v: self.pool.get(cfg.url, cfg.protocol, cfg.settings())
                for v, cfg in exp.variants.items()
            }
            routes[name] = Route(item, build_policy(exp), upstreams)
        by_model = {r.experiment.model: r for r in routes.values()}
        self.snapshot = Snapshot(routes, by_model, refused)
        self._export(routes)
        if self.on_change:
            self.on_change(self.snapshot)

    def _export(self, routes: dict[str, Route]) -> None:
        self.metrics.config_info.clear()
        self.metrics.configured_weight.clear()
        for route in routes.values():
            exp = route.experiment
            self.metrics.config_info.labels(
                exp.name, exp.model, exp.policy.kind, route.config_version
            ).set(1)
            for variant, weight in exp.configured_weights().items():
                self.metrics.configured_weight.labels(exp.name, variant).set(weight)

    async def watch(self, poll_interval: float, use_notifications: bool) -> None:
        """Reload on every change to the folder; polling when notifications are unavailable."""
        self.directory.mkdir(parents=True, exist_ok=True)
        while True:
            try:
                async for _ in watchfiles.awatch(
                    self.directory,
                    force_polling=not use_notifications,
                    poll_delay_ms=int(poll_interval * 1000),
                    debounce=200,
                    step=50,
                    recursive=False,
                ):
                    await self.reload()
            except (OSError, RuntimeError) as exc:
                logs.event(log, "watch_failed", logging.WARNING, reason=str(exc))
                use_notifications = False
                await asyncio.sleep(poll_interval)
