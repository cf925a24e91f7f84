"""A replica's view of its rollouts: the weights in force, read from memory on every request.

``policy(route)`` is a dict lookup on the hot path. A background task rereads every rollout's
state from Redis each ``rollout_refresh_interval`` seconds (one pipelined round trip), rebuilds
the weighted policy of a step that changed, and exports the rollout metrics. While Redis is
away the last known weights keep serving; before the first read, a rollout serves its first
step (the least exposure).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError

from router.config.experiments import ABPolicy, CanaryPolicy, Experiment, RewardGate
from router.core import logs
from router.core.metrics import GatewayMetrics
from router.rollout.gates import LABEL_ARRIVAL, VERDICTS
from router.rollout.state import (
    ACTIVE,
    ENTRY,
    PHASES,
    RolloutState,
    fingerprint,
    weights_in_force,
)
from router.rollout.store import RolloutStore
from router.routing.policies.base import Policy
from router.routing.policies.weighted import WeightedAssigner, WeightedPolicy
from router.routing.table import Route, RouteTable

log = logging.getLogger("turnout.rollout")
PRIME_SECONDS = 2.0


def watched(route: Route) -> bool:
    """Experiments the rollout machinery looks after: a rollout, or an SRM check."""
    exp = route.experiment
    return exp.rollout is not None or exp.srm is not None


@dataclass(frozen=True)
class InForce:
    config_version: str
    seq: int
    fingerprint_ok: bool
    policy: Policy
    window: int | None
    weights: dict[str, float]


def build_policy(experiment: Experiment, weights: dict[str, float]) -> Policy:
    config = experiment.policy
    assert isinstance(config, CanaryPolicy | ABPolicy)
    return WeightedPolicy(WeightedAssigner.for_experiment(experiment, weights, config.sticky))


def in_force(route: Route, state: RolloutState | None) -> InForce:
    exp = route.experiment
    weights = weights_in_force(exp, state)
    matches = state is not None and state.known and state.fingerprint == fingerprint(exp)
    window = state.window if matches and state is not None and state.phase in ACTIVE else None
    return InForce(
        route.config_version,
        state.seq if state else -1,
        matches,
        build_policy(exp, weights),
        window,
        weights,
    )


class RolloutRuntime:
    def __init__(
        self,
        store: RolloutStore | None,
        table: RouteTable,
        metrics: GatewayMetrics,
        interval: float,
        slot_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.table = table
        self.metrics = metrics
        self.interval = interval
        self.slot_seconds = slot_seconds
        self.clock = clock
        self.states: dict[str, RolloutState] = {}
        self.refreshed_at: float | None = None
        self.error: str | None = None
        self._in_force: dict[str, InForce] = {}

    # --- the hot path ---------------------------------------------------------------------
    def policy(self, route: Route) -> tuple[Policy, int | None]:
        """The policy in force for ``route`` and the rollout window it records under."""
        if route.experiment.rollout is None:
            return route.policy, None
        current = self._in_force.get(route.name)
        if current is None or current.config_version != route.config_version:
            current = self._in_force[route.name] = in_force(route, self.states.get(route.name))
        return current.policy, current.window

    def slot(self, ts: float) -> int:
        return int(ts // self.slot_seconds)

    # --- refreshing -------------------------------------------------------------------------
    def routes(self) -> list[Route]:
        return [r for r in self.table.snapshot.routes.values() if watched(r)]

    async def refresh(self) -> None:
        if self.store is None:
            return
        routes = self.routes()
        states = await self.store.states(r.name for r in routes)
        self.install(routes, states)
        self.refreshed_at = self.clock()
        if self.error is not None:
            logs.event(log, "rollout_redis_back")
        self.error = None

    def install(self, routes: list[Route], states: dict[str, RolloutState]) -> None:
        self.states = states
        for route in routes:
            if route.experiment.rollout is None:
                continue
            state = states.get(route.name)
            current = self._in_force.get(route.name)
            seq = state.seq if state else -1
            if (
                current is None
                or current.config_version != route.config_version
                or current.seq != seq
            ):
                self._in_force[route.name] = in_force(route, state)
        live = {r.name for r in routes}
        for name in set(self._in_force) - live:
            del self._in_force[name]
        self._export(routes)

    def _export(self, routes: list[Route]) -> None:
        m = self.metrics
        m.rollout_step.clear()
        m.rollout_state.clear()
        m.rollout_gate.clear()
        m.srm_mismatch.clear()
        m.label_arrival.clear()
        for route in routes:
            exp, state = route.experiment, self.states.get(route.name)
            if exp.srm is not None:
                status = state.srm_status if state else "ok"
                m.srm_mismatch.labels(exp.name, exp.srm.action).set(0 if status == "ok" else 1)
            if exp.rollout is None:
                continue
            current = self._in_force.get(route.name)
            phase = state.phase if state and state.known else "running"
            step = state.step if state and state.known else ENTRY
            m.rollout_step.labels(exp.name).set(step + 1)
            for name in PHASES:
                m.rollout_state.labels(exp.name, name).set(1 if name == phase else 0)
            if any(isinstance(g, RewardGate) for g in exp.rollout.gates):
                gates = state.gates if state else []
                held = any(g.get("held") == LABEL_ARRIVAL for g in gates)
                m.label_arrival.labels(exp.name).set(1 if held else 0)
            for gate in state.gates if state else []:
                for verdict in VERDICTS:
                    value = 1 if gate.get("verdict") == verdict else 0
                    m.rollout_gate.labels(exp.name, str(gate.get("gate")), verdict).set(value)
            if current is not None:
                for variant in exp.variants:
                    weight = current.weights.get(variant, 0.0)
                    m.configured_weight.labels(exp.name, variant).set(weight)

    async def prime(self) -> None:
        """First read before serving, so a restarted replica resumes at the step in Redis."""
        try:
            async with asyncio.timeout(PRIME_SECONDS):
                await self.refresh()
        except (RedisError, OSError, TimeoutError) as exc:
            self._down(exc)

    async def run(self) -> None:
        if self.store is None:
            return
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.refresh()
            except (RedisError, OSError) as exc:
                self._down(exc)
            except Exception as exc:  # a bug must not stop refreshing for good
                logs.event(log, "rollout_refresh_failed", logging.ERROR, reason=repr(exc))

    def _down(self, exc: BaseException) -> None:
        reason = f"{type(exc).__name__}: {exc}"
        if self.error is None:
            logs.event(log, "rollout_redis_down", logging.WARNING, reason=reason)
        self.error = reason

    # --- plain data for status, the CLI and the console -----------------------------------
    def weights(self, route: Route) -> dict[str, float]:
        """The weights in force (the file's for an experiment without a rollout)."""
        current = self._in_force.get(route.name)
        if route.experiment.rollout is None or current is None:
            return route.experiment.configured_weights()
        return dict(current.weights)

    def summary(self, route: Route) -> dict[str, Any] | None:
        """What ``GET /experiments`` shows of a rollout or SRM check; None if it has neither."""
        if not watched(route):
            return None
        exp, state = route.experiment, self.states.get(route.name)
        srm = None
        if exp.srm is not None:
            srm = {
                "action": exp.srm.action,
                "p": exp.srm.p,
                "status": state.srm_status if state else "ok",
                "last": state.srm if state else None,
            }
        out: dict[str, Any] = {"srm": srm, "weights": self.weights(route)}
        if exp.rollout is not None:
            known = state is not None and state.known and state.fingerprint == fingerprint(exp)
            assert state is not None or not known
            out["rollout"] = {
                "candidate": exp.rollout.candidate,
                "steps": exp.rollout.steps,
                "phase": state.phase if known and state else "starting",
                "step": state.step if known and state else None,
                "reason": state.reason if known and state else "",
                "next": state.next_action if known and state else "",
            }
        return out


def finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None
