"""Promotion: a variant becomes the control at 100% by a safe rewrite of its experiment file.

The file stays the source of truth: it is rewritten (a compare-and-swap on its content,
``config.rewrite.replace_if_unchanged``), reloaded, and the previous text is kept in Redis so
``undo`` can restore it. A file edited since it was loaded, even while the promotion runs, is
never overwritten: the promotion is refused (409) instead.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from redis.exceptions import RedisError

from router.config.experiments import BlueGreenPolicy
from router.config.loader import config_version, parse_experiment
from router.config.rewrite import promoted_yaml, replace_if_unchanged
from router.core import logs
from router.core.errors import ConfigError, Conflict
from router.flags.cache import FlagCache
from router.flags.store import AuditEvent, FlagStore
from router.routing.steering import resolve_variant
from router.routing.table import Route, RouteTable
from router.storage import keys
from router.storage.client import RedisClient
from router.upstream.health import check_ready
from router.upstream.pool import Upstream

log = logging.getLogger("turnout.admin")
READY_CHECK_SECONDS = 2.0


async def require_ready(upstream: Upstream, variant: str) -> None:
    """A version about to take traffic must answer its readiness check now (``force`` skips
    this): promoting to a server that is down sends every request to a 503."""
    ok = await check_ready(upstream, READY_CHECK_SECONDS)
    if ok is False or (ok is None and not upstream.ready()):
        raise Conflict(
            f"{variant} ({upstream.url}) is not ready: its readiness check failed; start it "
            'first, or force the change (--force, "force": true)',
            code="not_ready",
        )


class PromotionRecords:
    """The file before each experiment's last promotion, in Redis (for ``undo``)."""

    def __init__(self, redis: RedisClient) -> None:
        self.redis = redis

    async def save(self, experiment: str, record: dict[str, object]) -> None:
        await self.redis.hset(keys.PROMOTIONS, experiment, orjson.dumps(record).decode())

    async def last(self, experiment: str) -> dict[str, Any] | None:
        raw = await self.redis.hget(keys.PROMOTIONS, experiment)
        if raw is None:
            return None
        value = orjson.loads(raw)
        return value if isinstance(value, dict) else None

    async def forget(self, experiment: str) -> None:
        await self.redis.hdel(keys.PROMOTIONS, experiment)

    async def restore(self, experiment: str, record: dict[str, Any] | None) -> None:
        """Put back what a refused rewrite replaced (the earlier promotion's, or nothing)."""
        if record is None:
            await self.forget(experiment)
        else:
            await self.save(experiment, record)


@dataclass
class Promotions:
    """Promote and undo, one at a time per gateway; each is audited."""

    table: RouteTable
    flags: FlagCache
    allowed_hosts: list[str]
    clock: Callable[[], float]
    redis_call: Callable[[str], Any]
    """``admin.actions.redis_call``: Redis trouble becomes a 503 saying what was (not) done."""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    """One file rewrite at a time per gateway (promotions and deploys share it)."""

    async def promote(
        self, route: Route, version: str, actor: str, reason: str, force: bool = False
    ) -> dict[str, Any]:
        variant = resolve_variant(route.experiment, version)
        store = self.flags.require_store()
        records = PromotionRecords(store.redis)
        name = route.name
        async with self.lock:
            route = self.table.require(name)
            exp = route.experiment
            policy = exp.policy
            if isinstance(policy, BlueGreenPolicy) and exp.control == policy.active == variant:
                raise Conflict(f"{variant} is already the control at 100%", code="unchanged")
            if not force:
                await require_ready(route.upstreams[variant], variant)
            path = route.loaded.path
            text = current_text(route)
            stamp = datetime.fromtimestamp(self.clock(), UTC).isoformat(timespec="seconds")
            note = (
                f"Promoted {variant} to control (blue-green, 100%) by {actor} at {stamp}: "
                f"{reason}\nWas config_version {route.config_version}; "
                f"`turnout promote {name} --undo` restores it."
            )
            new_text = promoted_yaml(text, variant, note)
            try:
                parse_experiment(new_text, path, self.allowed_hosts)
            except ConfigError as exc:
                raise Conflict(f"the promoted file would be refused: {exc.detail}") from None
            new_version = config_version(new_text.encode())
            old = {"control": exp.control, "policy": exp.policy.model_dump()}
            new = {
                "control": variant,
                "policy": {"kind": "blue_green", "active": variant},
                "forced": force,
            }
            async with self.redis_call("nothing was changed"):
                earlier = await records.last(name)
                await records.save(
                    name,
                    {
                        "previous_text": text,
                        "previous_config_version": route.config_version,
                        "config_version": new_version,
                        "ts": self.clock(),
                        "actor": actor,
                    },
                )
            try:
                replace_if_unchanged(path, route.config_version, new_text)
            except Conflict:
                async with self.redis_call("nothing was changed but the undo record"):
                    await records.restore(name, earlier)
                raise
            await self.table.reload()
            event = await audit(
                store,
                name,
                actor,
                "promote",
                {**old, "config_version": route.config_version},
                {**new, "config_version": new_version},
                reason,
            )
        return self.result(name, path.name, new_version, event)

    async def undo(self, route: Route, actor: str, reason: str) -> dict[str, Any]:
        store = self.flags.require_store()
        records = PromotionRecords(store.redis)
        name = route.name
        async with self.lock:
            route = self.table.require(name)
            async with self.redis_call("nothing was changed"):
                record = await records.last(name)
            if record is None:
                raise Conflict(f"{name} has no promotion to undo", code="nothing_to_undo")
            current_text(route)
            if route.config_version != record.get("config_version"):
                raise Conflict(
                    f"{route.loaded.path.name} changed since the promotion "
                    f"(now {route.config_version}); edit it by hand instead",
                    code="changed_since",
                )
            previous = str(record["previous_text"])
            replace_if_unchanged(route.loaded.path, route.config_version, previous)
            await self.table.reload()
            async with self.redis_call("the file was restored but the undo record remains"):
                await records.forget(name)
            restored = config_version(previous.encode())
            event = await audit(
                store,
                name,
                actor,
                "promote_undone",
                {"config_version": route.config_version},
                {"config_version": restored},
                reason,
            )
        return self.result(name, route.loaded.path.name, restored, event)

    def result(
        self, name: str, file: str, expected: str, event: AuditEvent | None
    ) -> dict[str, Any]:
        route = self.table.snapshot.routes.get(name)
        loaded = route is not None and route.config_version == expected
        flags = self.flags.for_experiment(name)
        result: dict[str, Any] = {
            "experiment": name,
            "file": file,
            "config_version": expected,
            "loaded": loaded,
            "control": route.experiment.control if route else None,
            "weights": route.experiment.configured_weights() if route else {},
            "event": event.as_dict() if event else None,
            "flags": dict(flags.values),
        }
        active = {"kill_switch": flags.kill_switch, "forced_variant": flags.forced_variant}
        overriding = [f"{k}={v}" for k, v in active.items() if v]
        if overriding:
            result["warning"] = "flags still override the policy: " + ", ".join(overriding)
        return result


def current_text(route: Route) -> str:
    """The file as loaded; a file edited since the last load is not overwritten."""
    path = route.loaded.path
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise Conflict(f"{path.name} is unreadable: {exc}") from None
    if config_version(text.encode()) != route.config_version:
        raise Conflict(
            f"{path.name} changed since it was loaded; reload (POST /admin/reload) and retry",
            code="changed_since",
        )
    return text


async def audit(
    store: FlagStore,
    name: str,
    actor: str,
    action: str,
    old: object,
    new: object,
    reason: str,
) -> AuditEvent | None:
    """Audit a change that already happened (a file was rewritten): a failure is logged."""
    logs.event(log, "admin_change", actor=actor, action=action, experiment=name, new=new)
    try:
        return await store.record(name, actor=actor, action=action, old=old, new=new, reason=reason)
    except (RedisError, OSError) as exc:
        logs.event(log, "audit_failed", logging.ERROR, action=action, reason=str(exc))
        return None
