"""The rollout driver: every replica runs it, the one holding an experiment's lease drives it.

Each ``rollout_check_interval`` seconds a replica tries to take (or renew) each watched
experiment's lease. The holder reads the state and the current window's counters, decides
(``gates.decide``, pure) and writes the result with its fencing token, compare-and-set on the
state's sequence number. Only a transition that was written is then acted on (a rollback flag,
a promotion) and audited, through the ``Operator`` the app wires in (``AdminActions``), so a
controller's change is audited exactly like an operator's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any, Protocol

from redis.exceptions import RedisError

from router.config.experiments import RewardGate
from router.core import logs
from router.core.metrics import GatewayMetrics
from router.rollout.gates import Evaluation, Look, decide, srm_of
from router.rollout.runtime import RolloutRuntime, watched
from router.rollout.sequential import Moments
from router.rollout.state import (
    ACTIVE,
    ENTRY,
    RolloutState,
    fingerprint,
    first_step,
    step_percent,
    weights_in_force,
)
from router.rollout.store import OK, Lease, RolloutStore
from router.rollout.window import matured_slot, parse_window
from router.routing.table import Route, RouteTable
from router.storage import keys

log = logging.getLogger("turnout.rollout")
ACTOR = "rollout"
DOWN_LOOKS = 3
"""Consecutive looks the candidate must be seen down before that fails the rollout (one failed
health probe is no evidence)."""


class Operator(Protocol):
    """What the driver asks of the admin layer (``AdminActions``): audited changes."""

    async def rollout_rollback(self, route: Route, reason: str) -> None: ...

    async def rollout_promote(self, route: Route, variant: str, reason: str) -> None: ...

    async def rollout_audit(
        self, route: Route, action: str, old: object, new: object, reason: str, actor: str
    ) -> None: ...


def position(experiment: Any, state: RolloutState) -> dict[str, Any]:
    """Where a rollout stands, for audit events and history."""
    weights = weights_in_force(experiment, state)
    return {
        "phase": state.phase,
        "step": state.step,
        "percent": step_percent(experiment, state.step) if state.known else None,
        "weights": weights,
        "window": state.window,
    }


def gate_numbers(evaluation: Evaluation) -> list[dict[str, Any]]:
    return [g.as_dict() for g in evaluation.gates]


class RolloutController:
    def __init__(
        self,
        store: RolloutStore,
        table: RouteTable,
        runtime: RolloutRuntime,
        operator: Operator,
        metrics: GatewayMetrics,
        check_interval: float,
        lease_ttl: float,
        slot_seconds: float,
        clock: Callable[[], float] = time.time,
        look_interval: float = 30.0,
        users_max: int = 1_000_000,
    ) -> None:
        self.store = store
        self.users_max = users_max
        self.table = table
        self.runtime = runtime
        self.operator = operator
        self.metrics = metrics
        self.check_interval = check_interval
        self.lease_ttl = lease_ttl
        self.slot_seconds = slot_seconds
        self.clock = clock
        self.owner = uuid.uuid4().hex[:12]
        self.leases: dict[str, Lease] = {}
        self.down_looks: dict[str, int] = {}
        self.look_interval = look_interval
        self.last_kept: dict[str, float] = {}

    async def run(self) -> None:
        while True:
            try:
                await self.tick()
            except (RedisError, OSError) as exc:
                logs.event(log, "rollout_check_failed", logging.WARNING, reason=str(exc))
            except Exception as exc:  # a bug must not stop the driver for good
                logs.event(log, "rollout_check_failed", logging.ERROR, reason=repr(exc))
            await asyncio.sleep(self.check_interval)

    async def close(self) -> None:
        for lease in list(self.leases.values()):
            with contextlib.suppress(RedisError, OSError):
                await self.store.release(lease)
        self.leases.clear()

    async def tick(self) -> None:
        for route in [r for r in self.table.snapshot.routes.values() if watched(r)]:
            lease = await self.store.acquire(route.name, self.owner, self.lease_ttl)
            if lease is None:
                self.leases.pop(route.name, None)
                continue
            self.leases[route.name] = lease
            await self.drive(route, lease)
        await self.runtime.refresh()

    async def drive(self, route: Route, lease: Lease) -> None:
        exp = route.experiment
        name = route.name
        state = await self.store.state(name)
        now = self.clock()
        if exp.rollout is None:
            await self._srm_only(route, lease, state, now)
            return
        if not state.known or state.fingerprint != fingerprint(exp):
            await self._start(route, lease, state, now)
            return
        if state.phase not in ACTIVE:
            return
        candidate = exp.rollout.candidate
        pair = (exp.control, candidate) if state.step == ENTRY else None
        recorded = await self.store.recorded(name, state.window, pair, None)
        window = dict(recorded.window)
        if exp.analysis_unit == "user" and state.step != ENTRY:
            window |= await self._unit_sums(route, state, now)
        shadow = None
        if pair is not None:
            pairs = float(recorded.shadow.get(keys.SHADOW_PAIRS, 0))
            agree = float(recorded.shadow.get(keys.SHADOW_AGREE, 0))
            shadow = Moments.of_rate(agree, pairs)
        look = Look(
            parse_window(window),
            now,
            self.slot_seconds,
            candidate_down=self._still_down(route, candidate),
            shadow=shadow,
            matured=matured_slot(window),
        )
        evaluation = decide(exp, state, look)
        await self._apply(route, lease, state, evaluation, now)

    async def _unit_sums(self, route: Route, state: RolloutState, now: float) -> dict[str, str]:
        """Fold feedback on requests older than the longest label delay into the per-user
        reward sums, then read the window's per-user sums."""
        exp = route.experiment
        assert exp.rollout is not None
        delays = [g.label_delay for g in exp.rollout.gates if isinstance(g, RewardGate)]
        if delays:
            last_slot = int((now - max(delays)) // self.slot_seconds) - 1
            first_slot = int(state.step_started // self.slot_seconds) - 1
            await self.store.fold_rewards(
                route.name, state.window, first_slot, last_slot, self.users_max
            )
        variants = (exp.control, exp.rollout.candidate)
        return await self.store.unit_sums(route.name, state.window, variants)

    def _still_down(self, route: Route, candidate: str) -> bool:
        looks = self.down_looks.get(route.name, 0) + 1 if route.upstreams[candidate].down() else 0
        self.down_looks[route.name] = looks
        return looks >= DOWN_LOOKS

    async def _start(self, route: Route, lease: Lease, state: RolloutState, now: float) -> None:
        exp = route.experiment
        fields: dict[str, object] = {
            "fingerprint": fingerprint(exp),
            "phase": "running",
            "step": str(first_step(exp)),
            "window": str(state.window + 1),
            "step_started": repr(now),
            "reason": "rollout started",
            "updated": repr(now),
            "gates": [],
            "srm": "",
            "srm_status": "ok",
            "next_action": "",
        }
        new = RolloutState.from_hash(
            {k: v if isinstance(v, str) else "" for k, v in fields.items()}
        )
        await self._transition(route, lease, state, fields, "start", "rollout started", [], new)

    async def _apply(
        self,
        route: Route,
        lease: Lease,
        state: RolloutState,
        evaluation: Evaluation,
        now: float,
    ) -> None:
        exp = route.experiment
        assert exp.rollout is not None
        gates = gate_numbers(evaluation)
        common: dict[str, object] = {
            "gates": gates,
            "checked_at": repr(now),
            "next_action": evaluation.next_action,
        }
        srm = evaluation.srm
        if srm is not None:
            common["srm"] = srm.as_dict()
            if srm.mismatch and state.srm_status == "ok":
                common["srm_status"] = "warn" if exp.srm and exp.srm.action == "warn" else "halt"
        action = evaluation.action
        if action == "none":
            reply = await self.store.write(route.name, lease, state.seq, common, None)
            if reply == OK:
                await self._keep_look(route, state, gates, now, False)
            if reply == OK and common.get("srm_status") == "warn":
                await self.operator.rollout_audit(
                    route,
                    "srm_warning",
                    None,
                    srm.as_dict() if srm else None,
                    "sample ratio mismatch",
                    ACTOR,
                )
            return
        fields: dict[str, object] = {**common, "reason": evaluation.reason, "updated": repr(now)}
        if action == "advance":
            fields |= {
                "step": str(state.step + 1),
                "window": str(state.window + 1),
                "step_started": repr(now),
            }
        elif action in ("rollback", "pause", "halt", "promote", "complete"):
            phase = {
                "rollback": "rolled_back",
                "pause": "paused",
                "halt": "halted",
                "promote": "promoted",
                "complete": "completed",
            }[action]
            fields["phase"] = phase
            if action == "rollback":
                fields["window"] = str(state.window + 1)
            if action == "halt":
                fields["srm_status"] = "halt"
        new = RolloutState.from_hash(
            {
                **{k: v for k, v in _flat(state).items()},
                **{k: v for k, v in fields.items() if isinstance(v, str)},
            }
        )
        if not await self._transition(
            route, lease, state, fields, action, evaluation.reason, gates, new
        ):
            return
        await self._keep_look(route, state, gates, now, True)
        if action == "rollback":
            await self.operator.rollout_rollback(route, f"rollout: {evaluation.reason}")
        elif action == "promote":
            await self.operator.rollout_promote(
                route, exp.rollout.candidate, f"rollout reached 100%: {evaluation.reason}"
            )

    async def _keep_look(
        self,
        route: Route,
        state: RolloutState,
        gates: list[dict[str, Any]],
        now: float,
        transition: bool,
    ) -> None:
        """Keep this look's gate numbers for the timeline: every transition, and otherwise one
        look per ``look_interval``. Losing one only leaves a gap in a chart."""
        if not transition and now - self.last_kept.get(route.name, 0.0) < self.look_interval:
            return
        look = {
            "ts": repr(now),
            "step": str(state.step),
            "percent": step_percent(route.experiment, state.step),
            "phase": state.phase,
            "gates": [
                {k: g.get(k) for k in ("gate", "verdict", "estimate", "interval", "n")}
                for g in gates
            ],
        }
        try:
            await self.store.add_look(route.name, look)
        except (RedisError, OSError) as exc:
            logs.event(log, "rollout_look_not_kept", logging.WARNING, reason=str(exc))
            return
        self.last_kept[route.name] = now

    async def _transition(
        self,
        route: Route,
        lease: Lease,
        state: RolloutState,
        fields: dict[str, object],
        action: str,
        reason: str,
        gates: list[dict[str, Any]],
        new: RolloutState,
    ) -> bool:
        exp = route.experiment
        old_position = position(exp, state) if state.known else None
        new_position = position(exp, new)
        history = {
            "action": action,
            "ts": repr(self.clock()),
            "actor": ACTOR,
            "reason": reason,
            "from": old_position,
            "to": new_position,
            "gates": gates,
        }
        reply = await self.store.write(route.name, lease, state.seq, fields, history)
        if reply != OK:
            logs.event(log, "rollout_write_refused", experiment=route.name, reply=reply)
            return False
        self.metrics.rollout_transitions.labels(route.name, action).inc()
        logs.event(log, "rollout_transition", experiment=route.name, action=action, reason=reason)
        await self.operator.rollout_audit(
            route,
            f"rollout_{action}",
            old_position,
            {**new_position, "gates": gates},
            reason,
            ACTOR,
        )
        await self.runtime.refresh()
        return True

    async def _srm_only(self, route: Route, lease: Lease, state: RolloutState, now: float) -> None:
        """An experiment without a rollout: the sequential SRM test of its file's weights."""
        exp = route.experiment
        if exp.analysis_unit == "user":
            assigned = await self.store.config_users(route.name, route.config_version, exp.variants)
        else:
            recorded = await self.store.recorded(route.name, None, None, route.config_version)
            assigned = recorded.assigned
        look = Look({}, now, self.slot_seconds, assigned=assigned)
        srm = srm_of(exp, None, look)
        fields: dict[str, object] = {"checked_at": repr(now), "srm_scope": route.config_version}
        if srm is not None:
            fields["srm"] = srm.as_dict()
        status = state.srm_status
        if state.srm_scope != route.config_version:  # a new config: its assignments count afresh
            status = fields["srm_status"] = "ok"
        if srm is not None and srm.mismatch and status == "ok":
            assert exp.srm is not None
            status = exp.srm.action if exp.srm.action == "warn" else "halt"
            fields |= {
                "srm_status": status,
                "reason": "sample ratio mismatch",
                "updated": repr(now),
            }
            history = {
                "action": f"srm_{status}",
                "ts": repr(now),
                "actor": ACTOR,
                "srm": srm.as_dict(),
            }
            if await self.store.write(route.name, lease, state.seq, fields, history) == OK:
                self.metrics.rollout_transitions.labels(route.name, f"srm_{status}").inc()
                await self.operator.rollout_audit(
                    route, f"srm_{status}", None, srm.as_dict(), "sample ratio mismatch", ACTOR
                )
            return
        await self.store.write(route.name, lease, state.seq, fields, None)


def _flat(state: RolloutState) -> dict[str, str]:
    return {
        "fingerprint": state.fingerprint,
        "phase": state.phase,
        "step": str(state.step),
        "window": str(state.window),
        "step_started": repr(state.step_started),
        "seq": str(state.seq),
        "srm_status": state.srm_status,
    }
