"""What an operator (or a controller, or an alert) may change, each change audited the same way.

The admin API, the console and the Alertmanager receiver all act through ``AdminActions``, so a
rollback is the same audited flag change whichever door it came through.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import RedisError

from router.admin.deploy import Deployments
from router.admin.promotion import Promotions
from router.core import logs
from router.core.errors import Conflict, InvalidInput, TurnoutError, Unavailable, echo
from router.flags.cache import FlagCache
from router.flags.store import AuditEvent
from router.flags.values import CLEAR
from router.rollout.controller import ACTOR, position
from router.rollout.report import rollout_report
from router.rollout.runtime import RolloutRuntime
from router.rollout.state import ACTIVE, RolloutState, fingerprint
from router.rollout.store import OK, RolloutStore
from router.routing.steering import resolve_variant
from router.routing.table import Route, RouteTable

log = logging.getLogger("turnout.admin")
MAX_REASON = 500
MAX_HISTORY = 1000
ROLLOUT_COMMANDS = ("pause", "resume", "abort", "promote", "rollback")


@asynccontextmanager
async def redis_call(what: str) -> AsyncIterator[None]:
    """Redis trouble during an admin action: a 503 that says what was (not) done."""
    try:
        yield
    except (RedisError, OSError) as exc:
        raise Unavailable(f"Redis is unreachable, {what}: {exc}", code="redis_down") from None


def check_reason(value: object, required: bool) -> str:
    reason = "" if value is None else value
    if not isinstance(reason, str):
        raise InvalidInput("'reason' must be a string")
    reason = reason.strip()
    if required and not reason:
        raise InvalidInput("'reason' is required: say why, it goes into the audit history")
    if len(reason) > MAX_REASON:
        raise InvalidInput(f"'reason' is longer than {MAX_REASON} characters")
    return reason


@dataclass
class AdminActions:
    table: RouteTable
    flags: FlagCache
    allowed_hosts: list[str]
    clock: Callable[[], float] = time.time
    rollout_store: RolloutStore | None = None
    rollout_runtime: RolloutRuntime | None = None
    promotions: Promotions = field(init=False)
    deployments: Deployments = field(init=False)

    def __post_init__(self) -> None:
        self.promotions = Promotions(
            self.table, self.flags, self.allowed_hosts, self.clock, redis_call
        )
        self.deployments = Deployments(self.promotions, self.rollout_state_of)

    def route(self, name: str) -> Route:
        return self.table.require(name)

    async def change_flag(
        self, route: Route, flag: str, value: object, actor: str, reason: str, action: str
    ) -> AuditEvent:
        """Set (or with ``CLEAR`` remove) one flag of one experiment, audited."""
        store = self.flags.require_store()
        if value is not CLEAR:
            value = self.flags.defaults.check(flag, value)
            if flag == "forced_variant" and isinstance(value, str):
                value = resolve_variant(route.experiment, value)
        elif flag not in self.flags.defaults.flags:
            self.flags.defaults.check(flag, None)  # raises unknown_flag
        async with redis_call("nothing was changed"):
            event = await store.change(
                route.name, flag, value, actor=actor, reason=reason, action=action
            )
        with suppress(RedisError, OSError):  # here at once; other replicas follow by pub/sub
            await self.flags.refresh()
        logs.event(
            log,
            "admin_change",
            actor=actor,
            action=action,
            experiment=route.name,
            flag=flag,
            old=event.old,
            new=event.new,
        )
        return event

    async def rollback(self, route: Route, to: str | None, actor: str, reason: str) -> AuditEvent:
        target = to or route.experiment.control
        return await self.change_flag(route, "forced_variant", target, actor, reason, "rollback")

    async def undo_rollback(self, route: Route, actor: str, reason: str) -> AuditEvent:
        return await self.change_flag(
            route, "forced_variant", CLEAR, actor, reason, "rollback_cleared"
        )

    def changed(self, event: AuditEvent, route: Route) -> dict[str, Any]:
        flags = self.flags.for_experiment(route.name)
        return {"event": event.as_dict(), "flags": dict(flags.values)}

    async def list_flags(self) -> dict[str, Any]:
        source = "cache"
        overrides = self.flags.overrides
        if self.flags.store is not None:
            try:
                overrides = await self.flags.store.overrides()
                source = "redis"
            except (RedisError, OSError):
                pass
        experiments = {
            name: {
                "flags": dict(self.flags.defaults.resolve(name, overrides.get(name, {})).values),
                "overrides": overrides.get(name, {}),
            }
            for name in sorted(self.table.snapshot.routes)
        }
        return {
            "experiments": experiments,
            "defaults": dict(self.flags.defaults.flags),
            "source": source,
            "cache": self.flags.status(),
        }

    async def history(self, experiment: str | None, limit: int) -> list[AuditEvent]:
        if not 1 <= limit <= MAX_HISTORY:
            raise InvalidInput(f"'limit' must be an integer from 1 to {MAX_HISTORY}")
        store = self.flags.require_store()
        async with redis_call("history is unavailable"):
            return await store.history(experiment, limit)

    async def reload(self, actor: str) -> dict[str, Any]:
        snapshot = await self.table.reload()
        with suppress(RedisError, OSError, Unavailable):
            await self.flags.refresh()
        logs.event(log, "admin_reload", actor=actor)
        return {
            "experiments": {n: r.config_version for n, r in sorted(snapshot.routes.items())},
            "refused": {str(p): reason for p, reason in snapshot.refused.items()},
            "flags": self.flags.status(),
        }

    # --- promotion, refused while a sample-ratio mismatch halts the experiment ------------
    async def promote(
        self, route: Route, variant: str, actor: str, reason: str, force: bool = False
    ) -> dict[str, Any]:
        state = await self.rollout_state_of(route) if self.rollout_store else None
        halted = state is not None and state.srm_status == "halt"
        if halted and state is not None and route.experiment.rollout is None:
            halted = state.srm_scope == route.config_version
        if halted:
            raise Conflict(
                f"{route.name} is halted by a sample ratio mismatch: find its cause first "
                "(turnout rollout status)",
                code="srm_halted",
            )
        return await self.promotions.promote(route, variant, actor, reason, force)

    # --- rollouts: what the driver asks (router.rollout.controller.Operator) -------------
    async def rollout_rollback(self, route: Route, reason: str) -> None:
        try:
            await self.rollback(route, None, ACTOR, reason[:MAX_REASON])
        except TurnoutError as exc:  # the rollout state already sends everything to control
            logs.event(log, "rollout_rollback_flag_failed", logging.ERROR, reason=exc.detail)

    async def rollout_promote(self, route: Route, variant: str, reason: str) -> None:
        try:
            await self.promotions.promote(route, variant, ACTOR, reason[:MAX_REASON])
        except TurnoutError as exc:
            logs.event(log, "rollout_promotion_failed", logging.ERROR, reason=exc.detail)
            await self.rollout_audit(route, "rollout_promote_failed", None, None, exc.detail, ACTOR)

    async def rollout_audit(
        self, route: Route, action: str, old: object, new: object, reason: str, actor: str
    ) -> None:
        store = self.flags.store
        logs.event(log, "admin_change", actor=actor, action=action, experiment=route.name)
        if store is None:
            return
        try:
            await store.record(
                route.name, actor=actor, action=action, old=old, new=new, reason=reason
            )
        except (RedisError, OSError) as exc:
            logs.event(log, "audit_failed", logging.ERROR, action=action, reason=str(exc))

    # --- rollouts: what an operator (or an alert) asks -----------------------------------
    def require_rollouts(self) -> RolloutStore:
        if self.rollout_store is None:
            raise Unavailable("rollouts need Redis: set TURNOUT_REDIS_URL", code="no_redis")
        return self.rollout_store

    async def rollout_state_of(self, route: Route) -> RolloutState:
        store = self.require_rollouts()
        async with redis_call("the rollout state is unavailable"):
            return await store.state(route.name)

    async def rollout_status(self, route: Route) -> dict[str, Any]:
        store = self.require_rollouts()
        async with redis_call("the rollout state is unavailable"):
            state = await store.state(route.name)
            history = await store.history(route.name)
        runtime = self.rollout_runtime
        weights = runtime.weights(route) if runtime else route.experiment.configured_weights()
        return rollout_report(route.experiment, state, history, weights, self.clock())

    async def rollout_command(
        self, route: Route, command: str, actor: str, reason: str
    ) -> dict[str, Any]:
        """pause, resume, abort or promote a rollout, as an audited transition."""
        exp = route.experiment
        if command not in ROLLOUT_COMMANDS:
            raise InvalidInput(
                f"unknown rollout command {echo(command)} ({', '.join(ROLLOUT_COMMANDS)})"
            )
        if exp.rollout is None:
            raise Conflict(f"{route.name} has no rollout block", code="no_rollout")
        store = self.require_rollouts()
        state = await self.rollout_state_of(route)
        if not state.known or state.fingerprint != fingerprint(exp):
            raise Conflict(
                f"{route.name}'s rollout has not started yet (the driver starts it at its next "
                "look); retry in a moment",
                code="not_started",
            )
        allowed = {
            "pause": {"running"},
            "resume": {"paused", "halted"},
            "abort": set(ACTIVE),
            "rollback": set(ACTIVE),
            "promote": set(ACTIVE) | {"completed"},
        }[command]
        if state.phase not in allowed:
            raise Conflict(
                f"cannot {command} a rollout that is {state.phase} "
                f"(it must be {' or '.join(sorted(allowed))})",
                code="rollout_state",
            )
        now = self.clock()
        fields: dict[str, object] = {
            "reason": f"{command} by {actor}: {reason}",
            "updated": repr(now),
        }
        if command == "pause":
            fields["phase"] = "paused"
        elif command == "resume":
            fields["phase"] = "running"
            if state.phase == "halted":  # the mismatch is understood: count afresh
                fields |= {"window": str(state.window + 1), "step_started": repr(now)}
                fields["srm_status"] = "ok"
        elif command in ("abort", "rollback"):
            phase = "aborted" if command == "abort" else "rolled_back"
            fields |= {"phase": phase, "window": str(state.window + 1)}
        else:
            fields["phase"] = "promoted"
        new = RolloutState.from_hash(
            {
                "fingerprint": state.fingerprint,
                "phase": str(fields.get("phase", state.phase)),
                "step": str(state.step),
                "window": str(fields.get("window", state.window)),
            }
        )
        history = {
            "action": command,
            "ts": repr(now),
            "actor": actor,
            "reason": reason,
            "from": position(exp, state),
            "to": position(exp, new),
        }
        if command == "promote":  # the file first: a refused rewrite changes nothing
            await self.promotions.promote(route, exp.rollout.candidate, actor, reason)
        async with redis_call("nothing was changed"):
            reply = await store.write(route.name, None, state.seq, fields, history)
        if reply != OK and command != "promote":  # a promoted file stands regardless
            raise Conflict(
                f"the rollout moved on while this was decided ({reply}); look again and retry",
                code="changed_since",
            )
        await self.rollout_audit(
            route, f"rollout_{command}", position(exp, state), position(exp, new), reason, actor
        )
        if self.rollout_runtime is not None:
            with suppress(RedisError, OSError):
                await self.rollout_runtime.refresh()
        return await self.rollout_status(self.table.require(route.name))
