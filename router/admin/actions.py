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

from router.admin.promotion import Promotions
from router.core import logs
from router.core.errors import InvalidInput, Unavailable
from router.flags.cache import FlagCache
from router.flags.store import AuditEvent
from router.flags.values import CLEAR
from router.routing.steering import resolve_variant
from router.routing.table import Route, RouteTable

log = logging.getLogger("turnout.admin")
MAX_REASON = 500
MAX_HISTORY = 1000


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
    promotions: Promotions = field(init=False)

    def __post_init__(self) -> None:
        self.promotions = Promotions(
            self.table, self.flags, self.allowed_hosts, self.clock, redis_call
        )

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
