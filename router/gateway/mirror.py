"""Shadow mirroring: copy sampled requests to shadow versions after the response, compare."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Protocol

from router.config.experiments import ShadowConfig
from router.core import logs
from router.core.metrics import GatewayMetrics
from router.hashing import turnout_unit
from router.recording.events import ShadowComparison
from router.routing.table import Route
from router.upstream.pool import UpstreamFailure
from router.upstream.protocols import Decoded, Payload

log = logging.getLogger("turnout.shadow")


class ShadowSink(Protocol):
    def record_shadow(self, comparison: ShadowComparison) -> None:
        """Accept a comparison without blocking; it is written later."""


def mirrored(shadow: ShadowConfig, experiment: str, key: str | None, rng: random.Random) -> bool:
    """Sticky by key (a user is always or never mirrored), by chance without one."""
    if shadow.sample >= 1.0:
        return True
    if shadow.sample <= 0.0:
        return False
    if key is not None:
        return turnout_unit(f"{experiment}\x1fshadow", key) < shadow.sample
    return rng.random() < shadow.sample


class ShadowMirror:
    """Fire-and-forget mirror calls with a bound on how many run at once (past it: dropped)."""

    def __init__(
        self,
        sink: ShadowSink,
        metrics: GatewayMetrics,
        max_in_flight: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.sink = sink
        self.metrics = metrics
        self.max_in_flight = max_in_flight
        self.clock = clock
        self.tasks: set[asyncio.Task[None]] = set()

    def mirror(
        self,
        route: Route,
        served: str,
        key: str | None,
        payload: Payload,
        request_id: str,
        primary: Decoded,
        primary_latency_ms: float,
        rng: random.Random,
        unit: str | None = None,
    ) -> None:
        shadow = route.experiment.shadow
        if shadow is None or not mirrored(shadow, route.name, key, rng):
            return
        for target in shadow.targets:
            if target == served:  # a target that takes live traffic is only mirrored to
                continue  # when the request went elsewhere
            base = ShadowComparison(
                request_id,
                route.name,
                route.config_version,
                served,
                target,
                primary.label,
                primary.score,
                primary_latency_ms,
                ts=self.clock(),
                unit=unit,
            )
            if len(self.tasks) >= self.max_in_flight:
                self._give_up(base, "dropped:overloaded")
                continue
            task = asyncio.create_task(self._call(route, base, payload))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _call(self, route: Route, base: ShadowComparison, payload: Payload) -> None:
        upstream = route.upstreams[base.shadow]
        if upstream.healthy is False:
            self._give_up(base, "dropped:unhealthy")
            return
        try:
            answer = await upstream.mirror(payload, base.request_id)
        except UpstreamFailure as exc:
            self.metrics.shadow_errors.labels(base.experiment, base.shadow).inc()
            logs.event(log, "shadow_failed", logging.DEBUG, shadow=base.shadow, reason=str(exc))
            self._give_up(base, "error")
            return
        if answer.decoded is None:  # the shadow refused the input
            self.metrics.shadow_errors.labels(base.experiment, base.shadow).inc()
            self._give_up(base, "error")
            return
        comparison = replace(
            base,
            shadow_label=answer.decoded.label,
            shadow_score=answer.decoded.score,
            shadow_latency_ms=answer.seconds * 1000.0,
        )
        labels = (base.experiment, base.primary, base.shadow)
        self.metrics.shadow_comparisons.labels(*labels, str(comparison.agree).lower()).inc()
        delta = comparison.score_delta
        if delta is not None:
            self.metrics.shadow_score_delta.labels(*labels).observe(delta)
        self.sink.record_shadow(comparison)

    def _give_up(self, base: ShadowComparison, reason: str) -> None:
        if reason.startswith("dropped:"):
            self.metrics.shadow_dropped.labels(reason.removeprefix("dropped:")).inc()
        self.sink.record_shadow(replace(base, error=reason))

    async def close(self, grace_seconds: float = 2.0) -> None:
        """Let in-flight mirror calls finish for a moment, then cancel the rest."""
        if self.tasks:
            _, pending = await asyncio.wait(set(self.tasks), timeout=grace_seconds)
            for task in pending:
                task.cancel()
