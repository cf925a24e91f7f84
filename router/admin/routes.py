"""The admin API: flags, reload, rollback and promotion, behind named bearer tokens.

Every route authenticates before it reads its body or looks anything up, so a forged call
learns nothing and changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from redis.exceptions import RedisError
from starlette.responses import Response

from router.admin.auth import AdminTokens
from router.config.experiments import BlueGreenPolicy, config_version, parse_experiment
from router.config.rewrite import promoted_yaml, write_atomically
from router.core import logs
from router.core.errors import (
    ConfigError,
    Conflict,
    InvalidInput,
    NotFound,
    Unauthorized,
    Unavailable,
)
from router.core.http import json_response, read_json, require_object
from router.core.metrics import GatewayMetrics
from router.flags.flags import CLEAR, AuditEvent, FlagCache, FlagStore
from router.routing.steering import resolve_variant
from router.routing.table import ExperimentStore, Route

log = logging.getLogger("turnout.admin")
MAX_REASON = 500
MAX_HISTORY = 1000


@dataclass(frozen=True)
class AdminContext:
    store: ExperimentStore
    flags: FlagCache
    tokens: AdminTokens
    metrics: GatewayMetrics
    allowed_hosts: list[str]
    max_body_bytes: int
    clock: Callable[[], float] = time.time


def _reason(body: dict[str, Any], required: bool) -> str:
    reason = body.get("reason", "")
    if reason is None:
        reason = ""
    if not isinstance(reason, str):
        raise InvalidInput("'reason' must be a string")
    reason = reason.strip()
    if required and not reason:
        raise InvalidInput("'reason' is required: say why, it goes into the audit history")
    if len(reason) > MAX_REASON:
        raise InvalidInput(f"'reason' is longer than {MAX_REASON} characters")
    return reason


def _string(body: dict[str, Any], key: str, required: bool = True) -> str | None:
    value = body.get(key)
    if value is None:
        if required:
            raise InvalidInput(f"'{key}' is required")
        return None
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"'{key}' must be a non-empty string")
    return value


@asynccontextmanager
async def _redis_call(what: str) -> AsyncIterator[None]:
    try:
        yield
    except (RedisError, OSError) as exc:
        raise Unavailable(f"Redis is unreachable, {what}: {exc}", code="redis_down") from None


def build_admin_router(ctx: AdminContext) -> APIRouter:
    router = APIRouter(prefix="/admin")
    promote_lock = asyncio.Lock()

    async def authenticate(request: Request) -> str:
        actor = ctx.tokens.identify(request.headers.get("authorization"))
        if actor is None:
            ctx.metrics.admin_denied.inc()
            raise Unauthorized("a valid admin token is required: Authorization: Bearer <token>")
        return actor

    Actor = Depends(authenticate)

    def route_of(name: str) -> Route:
        route = ctx.store.snapshot.routes.get(name)
        if route is None:
            known = ", ".join(sorted(ctx.store.snapshot.routes)) or "none"
            raise NotFound(
                f"unknown experiment {name!r} (loaded: {known})", code="unknown_experiment"
            )
        return route

    async def body_of(request: Request) -> dict[str, Any]:
        return require_object(await read_json(request, ctx.max_body_bytes))

    async def change(
        route: Route, flag: str, value: object, actor: str, reason: str, action: str
    ) -> AuditEvent:
        store = ctx.flags.require_store()
        if value is not CLEAR:
            value = ctx.flags.defaults.check(flag, value)
            if flag == "forced_variant" and isinstance(value, str):
                value = resolve_variant(route.experiment, value)
        elif flag not in ctx.flags.defaults.flags:
            ctx.flags.defaults.check(flag, None)  # raises unknown_flag
        async with _redis_call("nothing was changed"):
            event = await store.change(
                route.name, flag, value, actor=actor, reason=reason, action=action
            )
        with suppress(RedisError, OSError):  # here at once; other replicas follow by pub/sub
            await ctx.flags.refresh()
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

    def changed(event: AuditEvent, route: Route) -> Response:
        flags = ctx.flags.for_experiment(route.name)
        return json_response({"event": event.as_dict(), "flags": dict(flags.values)})

    @router.get("/flags")
    async def list_flags(_: str = Actor) -> Response:
        source = "cache"
        overrides = ctx.flags.overrides
        if ctx.flags.store is not None:
            try:
                overrides = await ctx.flags.store.overrides()
                source = "redis"
            except (RedisError, OSError):
                pass
        experiments = {
            name: {
                "flags": dict(ctx.flags.defaults.resolve(name, overrides.get(name, {})).values),
                "overrides": overrides.get(name, {}),
            }
            for name in sorted(ctx.store.snapshot.routes)
        }
        return json_response(
            {
                "experiments": experiments,
                "defaults": dict(ctx.flags.defaults.flags),
                "source": source,
                "cache": ctx.flags.status(),
            }
        )

    @router.get("/flags/history")
    async def history(request: Request, _: str = Actor) -> Response:
        experiment = request.query_params.get("experiment") or None
        raw_limit = request.query_params.get("limit", "50")
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_HISTORY:
            raise InvalidInput(f"'limit' must be an integer from 1 to {MAX_HISTORY}")
        store = ctx.flags.require_store()
        async with _redis_call("history is unavailable"):
            events = await store.history(experiment, int(raw_limit))
        return json_response({"events": [e.as_dict() for e in events]})

    async def set_flag(request: Request, actor: str, experiment: str, flag: str) -> Response:
        body = await body_of(request)
        route = route_of(experiment)
        if "value" not in body:
            raise InvalidInput("'value' is required (null sets the flag to null)")
        event = await change(route, flag, body["value"], actor, _reason(body, False), "set")
        return changed(event, route)

    @router.put("/flags/{experiment}/{flag}")
    async def put_flag(
        request: Request, experiment: str, flag: str, actor: str = Actor
    ) -> Response:
        return await set_flag(request, actor, experiment, flag)

    @router.post("/flags")
    async def post_flag(request: Request, actor: str = Actor) -> Response:
        body = await body_of(request)
        experiment = _string(body, "experiment")
        flag = _string(body, "flag")
        assert experiment is not None and flag is not None
        route = route_of(experiment)
        if "value" not in body:
            raise InvalidInput("'value' is required (null sets the flag to null)")
        event = await change(route, flag, body["value"], actor, _reason(body, False), "set")
        return changed(event, route)

    @router.delete("/flags/{experiment}/{flag}")
    async def clear_flag(
        request: Request, experiment: str, flag: str, actor: str = Actor
    ) -> Response:
        route = route_of(experiment)
        reason = _reason(dict(request.query_params), False)
        event = await change(route, flag, CLEAR, actor, reason, "clear")
        return changed(event, route)

    @router.post("/reload")
    async def reload(actor: str = Actor) -> Response:
        snapshot = await ctx.store.reload()
        with suppress(RedisError, OSError, Unavailable):
            await ctx.flags.refresh()
        logs.event(log, "admin_reload", actor=actor)
        return json_response(
            {
                "experiments": {n: r.config_version for n, r in sorted(snapshot.routes.items())},
                "refused": {str(p): reason for p, reason in snapshot.refused.items()},
                "flags": ctx.flags.status(),
            }
        )

    @router.post("/experiments/{name}/rollback")
    async def rollback(request: Request, name: str, actor: str = Actor) -> Response:
        body = await body_of(request)
        route = route_of(name)
        target = _string(body, "to", required=False) or route.experiment.control
        event = await change(
            route, "forced_variant", target, actor, _reason(body, True), "rollback"
        )
        return changed(event, route)

    @router.delete("/experiments/{name}/rollback")
    async def undo_rollback(request: Request, name: str, actor: str = Actor) -> Response:
        route = route_of(name)
        reason = _reason(dict(request.query_params), False)
        event = await change(route, "forced_variant", CLEAR, actor, reason, "rollback_cleared")
        return changed(event, route)

    @router.post("/experiments/{name}/promote")
    async def promote(request: Request, name: str, actor: str = Actor) -> Response:
        body = await body_of(request)
        route = route_of(name)
        version = _string(body, "version")
        assert version is not None
        variant = resolve_variant(route.experiment, version)
        reason = _reason(body, True)
        store = ctx.flags.require_store()
        async with promote_lock:
            route = route_of(name)
            exp = route.experiment
            policy = exp.policy
            if isinstance(policy, BlueGreenPolicy) and exp.control == policy.active == variant:
                raise Conflict(f"{variant} is already the control at 100%", code="unchanged")
            path = route.loaded.path
            text = _current_text(route)
            stamp = datetime.fromtimestamp(ctx.clock(), UTC).isoformat(timespec="seconds")
            note = (
                f"Promoted {variant} to control (blue-green, 100%) by {actor} at {stamp}: "
                f"{reason}\nWas config_version {route.config_version}; "
                f"`turnout promote {name} --undo` restores it."
            )
            new_text = promoted_yaml(text, variant, note)
            try:
                parse_experiment(new_text, path, ctx.allowed_hosts)
            except ConfigError as exc:
                raise Conflict(f"the promoted file would be refused: {exc.detail}") from None
            new_version = config_version(new_text.encode())
            old = {"control": exp.control, "policy": exp.policy.model_dump()}
            new = {"control": variant, "policy": {"kind": "blue_green", "active": variant}}
            async with _redis_call("nothing was changed"):
                await store.save_promotion(
                    name,
                    {
                        "previous_text": text,
                        "previous_config_version": route.config_version,
                        "config_version": new_version,
                        "ts": ctx.clock(),
                        "actor": actor,
                    },
                )
            write_atomically(path, new_text)
            await ctx.store.reload()
            event = await _audit(
                store,
                name,
                actor,
                "promote",
                {**old, "config_version": route.config_version},
                {**new, "config_version": new_version},
                reason,
            )
        return json_response(_promotion_result(ctx, name, path.name, new_version, event))

    @router.post("/experiments/{name}/promote/undo")
    async def undo_promote(request: Request, name: str, actor: str = Actor) -> Response:
        body = await body_of(request)
        route = route_of(name)
        reason = _reason(body, True)
        store = ctx.flags.require_store()
        async with promote_lock:
            route = route_of(name)
            async with _redis_call("nothing was changed"):
                record = await store.last_promotion(name)
            if record is None:
                raise Conflict(f"{name} has no promotion to undo", code="nothing_to_undo")
            _current_text(route)
            if route.config_version != record.get("config_version"):
                raise Conflict(
                    f"{route.loaded.path.name} changed since the promotion "
                    f"(now {route.config_version}); edit it by hand instead",
                    code="changed_since",
                )
            previous = str(record["previous_text"])
            write_atomically(route.loaded.path, previous)
            await ctx.store.reload()
            async with _redis_call("the file was restored but the undo record remains"):
                await store.forget_promotion(name)
            restored = config_version(previous.encode())
            event = await _audit(
                store,
                name,
                actor,
                "promote_undone",
                {"config_version": route.config_version},
                {"config_version": restored},
                reason,
            )
        return json_response(_promotion_result(ctx, name, route.loaded.path.name, restored, event))

    return router


def _current_text(route: Route) -> str:
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


async def _audit(
    store: FlagStore,
    name: str,
    actor: str,
    action: str,
    old: object,
    new: object,
    reason: str,
) -> AuditEvent | None:
    logs.event(log, "admin_change", actor=actor, action=action, experiment=name, new=new)
    try:
        return await store.record(name, actor=actor, action=action, old=old, new=new, reason=reason)
    except (RedisError, OSError) as exc:  # the file changed already: say so, do not fail
        logs.event(log, "audit_failed", logging.ERROR, action=action, reason=str(exc))
        return None


def _promotion_result(
    ctx: AdminContext, name: str, file: str, expected: str, event: AuditEvent | None
) -> dict[str, object]:
    route = ctx.store.snapshot.routes.get(name)
    loaded = route is not None and route.config_version == expected
    flags = ctx.flags.for_experiment(name)
    result: dict[str, object] = {
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
