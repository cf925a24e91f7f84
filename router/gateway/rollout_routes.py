"""Public rollout routes: the rollout as plain data, and a verdict for Argo Rollouts and Flagger.

``GET /experiments/{name}/rollout``: state, weights in force, each gate's latest numbers and the
transition history (what ``turnout rollout status`` and the console's timeline draw).

``GET /experiments/{name}/verdict``: ``{"verdict": "pass" | "fail" | "inconclusive", ...}``,
always 200, for Argo Rollouts' ``web`` metric provider (``successCondition: result.verdict ==
"pass"``, ``failureCondition: result.verdict == "fail"``); with ``?http_status=true`` the status
code says it, for a Flagger webhook (which POSTs): 200 pass, 412 fail, 425 inconclusive.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from redis.exceptions import RedisError
from starlette.responses import Response

from router.core.errors import Conflict, Unavailable
from router.core.http import json_response
from router.rollout.report import rollout_report
from router.rollout.runtime import RolloutRuntime
from router.rollout.state import RolloutState, fingerprint, step_percent
from router.rollout.store import RolloutStore
from router.routing.table import RouteTable

VERDICT_STATUS = {"pass": 200, "fail": 412, "inconclusive": 425}


def verdict_of(state: RolloutState, current: bool) -> tuple[str, str]:
    """The verdict of a rollout's latest look, and why."""
    if not current:
        return "inconclusive", "the rollout has not started yet"
    if state.phase in ("rolled_back", "aborted"):
        return "fail", f"the rollout was {state.phase.replace('_', ' ')}: {state.reason}"
    if state.phase == "halted":
        return "fail", f"halted: {state.reason}"
    if state.phase in ("promoted", "completed"):
        return "pass", f"the rollout is {state.phase}"
    verdicts = [g.get("verdict") for g in state.gates]
    if "fail" in verdicts:
        return "fail", "a gate fails"
    if verdicts and all(v == "pass" for v in verdicts):
        return "pass", "every gate passes"
    return "inconclusive", state.next_action or "waiting for evidence"


def rollout_router(
    table: RouteTable,
    store: RolloutStore | None,
    runtime: RolloutRuntime,
    clock: Callable[[], float],
) -> APIRouter:
    router = APIRouter()

    def require_store() -> RolloutStore:
        if store is None:
            raise Unavailable("rollouts need Redis: set TURNOUT_REDIS_URL", code="recording_off")
        return store

    @router.get("/experiments/{name}/rollout")
    async def rollout(name: str) -> Response:
        route = table.require(name)
        redis_store = require_store()
        try:
            state = await redis_store.state(name)
            history = await redis_store.history(name)
        except RedisError as exc:
            raise Unavailable(
                f"Redis is unreachable ({type(exc).__name__})", code="redis_unavailable"
            ) from None
        return json_response(
            rollout_report(route.experiment, state, history, runtime.weights(route), clock())
        )

    @router.get("/experiments/{name}/verdict")
    @router.post("/experiments/{name}/verdict")  # Flagger's webhooks POST (the body is ignored)
    async def verdict(name: str, request: Request) -> Response:
        route = table.require(name)
        exp = route.experiment
        if exp.rollout is None:
            raise Conflict(f"{name} has no rollout block, so no gates to judge", code="no_rollout")
        try:
            state = await require_store().state(name)
        except RedisError as exc:
            raise Unavailable(
                f"Redis is unreachable ({type(exc).__name__})", code="redis_unavailable"
            ) from None
        current = state.known and state.fingerprint == fingerprint(exp)
        word, reason = verdict_of(state, current)
        body: dict[str, Any] = {
            "experiment": name,
            "verdict": word,
            "reason": reason,
            "phase": state.phase if current else "starting",
            "step": state.step if current else None,
            "percent": step_percent(exp, state.step) if current else None,
            "weights": runtime.weights(route),
            "gates": [
                {k: g.get(k) for k in ("gate", "verdict", "estimate", "interval", "n")}
                for g in (state.gates if current else [])
            ],
        }
        status = 200
        if request.query_params.get("http_status", "").lower() in ("1", "true", "yes"):
            status = VERDICT_STATUS[word]
        return json_response(body, status)

    return router
