"""The admin API: flags, reload, rollback and promotion, behind named bearer tokens.

Every route authenticates before it reads its body or looks anything up, so a forged call
learns nothing and changes nothing. The routes only parse and answer; ``AdminActions`` acts.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from router.admin.actions import MAX_HISTORY, AdminActions, check_reason
from router.admin.alertmanager import receive
from router.admin.auth import AdminTokens
from router.core.errors import InvalidInput, Unauthorized
from router.core.http import json_response, read_json, require_object
from router.core.metrics import GatewayMetrics
from router.flags.values import CLEAR
from router.routing.steering import resolve_variant


def _string(body: dict[str, Any], key: str, required: bool = True) -> str | None:
    value = body.get(key)
    if value is None:
        if required:
            raise InvalidInput(f"'{key}' is required")
        return None
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"'{key}' must be a non-empty string")
    return value


def _value(body: dict[str, Any]) -> object:
    if "value" not in body:
        raise InvalidInput("'value' is required (null sets the flag to null)")
    return body["value"]


def _force(body: dict[str, Any]) -> bool:
    value = body.get("force", False)
    if not isinstance(value, bool):
        raise InvalidInput("'force' must be true or false")
    return value


def build_admin_router(
    actions: AdminActions,
    tokens: AdminTokens,
    metrics: GatewayMetrics,
    max_body_bytes: int,
    alert_memory: int = 7 * 86_400,
) -> APIRouter:
    router = APIRouter(prefix="/admin")

    async def authenticate(request: Request) -> str:
        actor = tokens.identify(request.headers.get("authorization"))
        if actor is None:
            metrics.admin_denied.inc()
            raise Unauthorized("a valid admin token is required: Authorization: Bearer <token>")
        return actor

    Actor = Depends(authenticate)

    async def body_of(request: Request) -> dict[str, Any]:
        return require_object(await read_json(request, max_body_bytes))

    def query_reason(request: Request) -> str:
        return check_reason(request.query_params.get("reason"), False)

    @router.get("/flags")
    async def list_flags(_: str = Actor) -> Response:
        return json_response(await actions.list_flags())

    @router.get("/flags/history")
    async def history(request: Request, _: str = Actor) -> Response:
        experiment = request.query_params.get("experiment") or None
        raw_limit = request.query_params.get("limit", "50")
        if not raw_limit.isdigit():
            raise InvalidInput(f"'limit' must be an integer from 1 to {MAX_HISTORY}")
        events = await actions.history(experiment, int(raw_limit))
        return json_response({"events": [e.as_dict() for e in events]})

    @router.put("/flags/{experiment}/{flag}")
    async def put_flag(
        request: Request, experiment: str, flag: str, actor: str = Actor
    ) -> Response:
        body = await body_of(request)
        route = actions.route(experiment)
        value = _value(body)
        reason = check_reason(body.get("reason"), False)
        event = await actions.change_flag(route, flag, value, actor, reason, "set")
        return json_response(actions.changed(event, route))

    @router.post("/flags")
    async def post_flag(request: Request, actor: str = Actor) -> Response:
        body = await body_of(request)
        experiment = _string(body, "experiment")
        flag = _string(body, "flag")
        assert experiment is not None and flag is not None
        route = actions.route(experiment)
        value = _value(body)
        reason = check_reason(body.get("reason"), False)
        event = await actions.change_flag(route, flag, value, actor, reason, "set")
        return json_response(actions.changed(event, route))

    @router.delete("/flags/{experiment}/{flag}")
    async def clear_flag(
        request: Request, experiment: str, flag: str, actor: str = Actor
    ) -> Response:
        route = actions.route(experiment)
        event = await actions.change_flag(route, flag, CLEAR, actor, query_reason(request), "clear")
        return json_response(actions.changed(event, route))

    @router.post("/reload")
    async def reload(actor: str = Actor) -> Response:
        return json_response(await actions.reload(actor))

    @router.post("/experiments/{name}/rollback")
    async def rollback(request: Request, name: str, actor: str = Actor) -> Response:
        body = await body_of(request)
        route = actions.route(name)
        to = _string(body, "to", required=False)
        event = await actions.rollback(route, to, actor, check_reason(body.get("reason"), True))
        return json_response(actions.changed(event, route))

    @router.delete("/experiments/{name}/rollback")
    async def undo_rollback(request: Request, name: str, actor: str = Actor) -> Response:
        route = actions.route(name)
        event = await actions.undo_rollback(route, actor, query_reason(request))
        return json_response(actions.changed(event, route))

    @router.post("/experiments/{name}/promote")
    async def promote(request: Request, name: str, actor: str = Actor) -> Response:
        body = await body_of(request)
        route = actions.route(name)
        version = _string(body, "version")
        assert version is not None
        variant = resolve_variant(route.experiment, version)
        reason = check_reason(body.get("reason"), True)
        return json_response(await actions.promote(route, variant, actor, reason, _force(body)))

    @router.post("/experiments/{name}/promote/undo")
    async def undo_promote(request: Request, name: str, actor: str = Actor) -> Response:
        body = await body_of(request)
        route = actions.route(name)
        reason = check_reason(body.get("reason"), True)
        return json_response(await actions.promotions.undo(route, actor, reason))

    @router.post("/experiments/{name}/deploy")
    async def deploy(request: Request, name: str, actor: str = Actor) -> Response:
        body = await body_of(request)
        route = actions.route(name)
        version, url, mode = (_string(body, key) for key in ("version", "url", "as"))
        assert version is not None and url is not None and mode is not None
        variant = _string(body, "variant", required=False) or version
        reason = check_reason(body.get("reason"), True)
        return json_response(
            await actions.deployments.deploy(
                route, version, variant, url, mode, actor, reason, _force(body)
            )
        )

    @router.post("/experiments/{name}/rollout/{command}")
    async def rollout_command(
        request: Request, name: str, command: str, actor: str = Actor
    ) -> Response:
        body = await body_of(request)
        route = actions.route(name)
        reason = check_reason(body.get("reason"), True)
        return json_response(await actions.rollout_command(route, command, actor, reason))

    @router.post("/alertmanager")
    async def alertmanager(request: Request, actor: str = Actor) -> Response:
        body = await read_json(request, max_body_bytes)
        return json_response(await receive(actions, body, actor, alert_memory))

    return router
