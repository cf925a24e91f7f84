"""The route table: the experiments in force, an immutable snapshot swapped whole on reload."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import watchfiles

from router.config.experiments import Experiment
from router.config.isolated import ScanFailed, scan_isolated, scan_isolated_sync
from router.config.loader import (
    DEFAULT_MAX_BYTES,
    LoadedExperiment,
    LoadReport,
    refuse_unsigned,
    scan_directory,
)
from router.config.resolve import last_good_in, resolve
from router.core import logs
from router.core.errors import ConfigError, NotFound, echo
from router.core.metrics import GatewayMetrics
from router.core.state import StateFolder
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
    conflicts: dict[str, tuple[Path, ...]] = field(default_factory=dict)
    """Models several files claim, none serving them (model -> the files)."""

    def not_ready(self) -> list[str]:
        """Experiments whose control and fallbacks cannot answer, each with its control's name."""
        return sorted(
            f"{r.name} (control {r.experiment.control})"
            for r in self.routes.values()
            if not r.control_ready()
        )


@dataclass(frozen=True)
class Reading:
    """How a table reads its folder: limits, and where last good versions are kept."""

    max_bytes: int = DEFAULT_MAX_BYTES
    delete_grace: float = 0.0
    timeout: float = 60.0
    isolated: bool = True
    """Parse in a child process (the gateway); in-process for tests and tools."""
    state: StateFolder | None = None
    feedback_secret: bool = False
    """TURNOUT_FEEDBACK_SECRET is set: without it an experiment with signed feedback is
    refused (its tokens could be neither made nor checked)."""


class RouteTable:
    """The experiment serving each model, kept in step with the experiments folder."""

    def __init__(
        self,
        directory: Path,
        allowed_hosts: list[str],
        pool: UpstreamPool,
        metrics: GatewayMetrics,
        on_change: Callable[[Snapshot], None] | None = None,
        reading: Reading | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.directory = directory
        self.allowed_hosts = allowed_hosts
        self.pool = pool
        self.metrics = metrics
        self.on_change = on_change
        self.reading = reading or Reading(isolated=False)
        self.clock = clock
        self.snapshot = Snapshot()
        self.missing: dict[Path, float] = {}
        self._saved: dict[Path, str] = {}
        state = self.reading.state
        self._kept = last_good_in(state, directory, allowed_hosts) if state else None
        self._lock = asyncio.Lock()
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[Snapshot]] = set()

    def require(self, name: str) -> Route:
        """The experiment named ``name``, or a 404 listing the loaded ones."""
        route = self.snapshot.routes.get(name)
        if route is None:
            known = ", ".join(sorted(self.snapshot.routes)) or "none"
            raise NotFound(
                f"unknown experiment {echo(name)} (loaded: {known})", code="unknown_experiment"
            )
        return route

    def labels_of(self, experiment: str, variant: str) -> frozenset[str] | None:
        """The labels a variant's model server says it answers (JSON text), if it says."""
        route = self.snapshot.routes.get(experiment)
        upstream = route.upstreams.get(variant) if route else None
        return upstream.labels if upstream else None

    def feedback_auth(self, experiment: str) -> str:
        """Who may send an experiment's feedback (``feedback.auth``); ``open`` when it is not
        loaded here, as before the setting existed."""
        route = self.snapshot.routes.get(experiment)
        return route.experiment.feedback.auth if route else "open"

    def known_labels(self) -> frozenset[str] | None:
        """Every label a routed variant answers; None if any server does not say."""
        known: set[str] = set()
        for route in self.snapshot.routes.values():
            for upstream in route.upstreams.values():
                if upstream.labels is None:
                    return None
                known |= upstream.labels
        return frozenset(known)

    # --- reading --------------------------------------------------------------------------
    def _scan_here(self) -> dict[Path, LoadedExperiment | ConfigError]:
        return scan_directory(self.directory, self.allowed_hosts, self.reading.max_bytes)

    def initial(self) -> LoadReport:
        """The first load, before serving: a refused file takes down its own experiment only
        (its last good version from the state folder serves, if there is one)."""
        reading = self.reading
        try:
            if reading.isolated:
                scan = scan_isolated_sync(
                    self.directory, self.allowed_hosts, reading.max_bytes, reading.timeout
                )
            else:
                scan = self._scan_here()
        except ScanFailed as exc:
            logs.event(log, "config_read_isolated_failed", logging.WARNING, reason=str(exc))
            scan = self._scan_here()
        scan = refuse_unsigned(scan, reading.feedback_secret)
        resolution = resolve(scan, kept=self._kept)
        self._announce(resolution.refused, {})
        return resolution.report()

    def install_initial(self, report: LoadReport) -> Snapshot:
        """Serve what ``initial`` read (needs the event loop: upstreams open pools)."""
        refused = {path: error.detail for path, error in report.errors.items()}
        serving = {item.path: item for item in report.experiments.values()}
        self._install(serving, refused, dict(report.conflicts))
        self._remember(serving, refused)
        return self.snapshot

    async def reload(self) -> Snapshot:
        """Apply valid edits; keep the last good version of every refused file."""
        async with self._lock:
            return await self._reload()

    async def _reload(self) -> Snapshot:
        reading = self.reading
        try:
            if reading.isolated:
                scan = await scan_isolated(
                    self.directory, self.allowed_hosts, reading.max_bytes, reading.timeout
                )
            else:
                scan = self._scan_here()
        except (ScanFailed, ConfigError) as exc:
            self.metrics.config_reloads.labels("refused").inc()
            logs.event(log, "config_read_failed", logging.ERROR, reason=str(exc))
            return self.snapshot
        scan = refuse_unsigned(scan, reading.feedback_secret)
        running = {r.loaded.path: r.loaded for r in self.snapshot.routes.values()}
        now = self.clock()
        resolution = resolve(
            scan,
            running=running,
            kept=self._kept,
            missing=self.missing,
            now=now,
            grace=reading.delete_grace,
        )
        self._track_missing(set(scan), resolution.missing, running, now)
        for _ in resolution.refused:
            self.metrics.config_reloads.labels("refused").inc()
        self._announce(resolution.refused, self.snapshot.refused)
        before = {n: r.config_version for n, r in self.snapshot.routes.items()}
        after = {e.experiment.name: e.config_version for e in resolution.serving.values()}
        if before != after or resolution.conflicts != self.snapshot.conflicts:
            self._install(resolution.serving, resolution.refused, resolution.conflicts)
            await self.pool.retain(
                {
                    self.pool.key_of(u)
                    for r in self.snapshot.routes.values()
                    for u in r.upstreams.values()
                }
            )
            self.metrics.config_reloads.labels("applied").inc()
            logs.event(log, "config_applied", experiments=after)
        elif resolution.refused != self.snapshot.refused:
            snap = self.snapshot
            self.snapshot = Snapshot(snap.routes, snap.by_model, resolution.refused, snap.conflicts)
            self.metrics.config_refused_files.set(len(resolution.refused))
        self._remember(resolution.serving, resolution.refused)
        return self.snapshot

    def _announce(self, refused: dict[Path, str], before: dict[Path, str]) -> None:
        """Say loudly which file is refused, once per new reason."""
        for path, reason in refused.items():
            if before.get(path) != reason:
                logs.event(log, "config_refused", logging.ERROR, file=str(path), reason=reason)

    def _track_missing(
        self,
        present: set[Path],
        missing: dict[Path, float],
        running: dict[Path, LoadedExperiment],
        now: float,
    ) -> None:
        """Log files that went missing, came back or were removed; wake up when a grace ends."""
        grace = self.reading.delete_grace
        for path in missing.keys() - self.missing.keys():
            logs.event(
                log,
                "config_file_missing",
                logging.WARNING,
                file=str(path),
                experiment=running[path].experiment.name,
                grace_seconds=grace,
            )
        for path in self.missing.keys() & present:
            logs.event(log, "config_file_back", file=str(path))
        for path in running.keys() - present - missing.keys():
            logs.event(
                log,
                "config_file_removed",
                logging.WARNING,
                file=str(path),
                experiment=running[path].experiment.name,
            )
            self._saved.pop(path, None)
            if self.reading.state is not None:
                self.reading.state.forget_last_good(self.directory, path.name)
        self.missing = missing
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if missing:
            due = min(missing.values()) + grace - now
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(max(0.0, due) + 0.05, self._reload_later)

    def _reload_later(self) -> None:
        task = asyncio.get_running_loop().create_task(self.reload())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _remember(self, serving: dict[Path, LoadedExperiment], refused: dict[Path, str]) -> None:
        """Keep each file's version that loaded as its last good one (state folder)."""
        state = self.reading.state
        if state is None:
            return
        for path, item in serving.items():
            if path in refused or path in self.missing or not item.content:
                continue
            if self._saved.get(path) != item.config_version:
                state.save_last_good(self.directory, path.name, item.content)
                self._saved[path] = item.config_version

    def _install(
        self,
        serving: dict[Path, LoadedExperiment],
        refused: dict[Path, str],
        conflicts: dict[str, tuple[Path, ...]],
    ) -> None:
        routes = {}
        before = self.snapshot.routes
        for item in serving.values():
            exp = item.experiment
            known = before.get(exp.name)
            if known is None or known.config_version != item.config_version:
                for warning in exp.warnings():
                    logs.event(
                        log, "config_warning", logging.WARNING, file=str(item.path), reason=warning
                    )
            upstreams = {
                v: self.pool.get(cfg.url, cfg.protocol, cfg.settings())
                for v, cfg in exp.variants.items()
            }
            routes[exp.name] = Route(item, build_policy(exp), upstreams)
        by_model = {r.experiment.model: r for r in routes.values()}
        self.snapshot = Snapshot(routes, by_model, refused, conflicts)
        self.metrics.config_refused_files.set(len(refused))
        self._export(routes)
        if self.on_change:
            self.on_change(self.snapshot)

    def _export(self, routes: dict[str, Route]) -> None:
        self.metrics.config_info.clear()
        self.metrics.configured_weight.clear()
        for route in routes.values():
            exp = route.experiment
            self.metrics.config_info.labels(
                exp.name, exp.model, exp.policy.kind, route.config_version, exp.analysis_unit
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
