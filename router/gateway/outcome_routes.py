"""Routes over recorded outcomes: ``POST /feedback`` and ``GET /experiments/{name}/report``."""

from __future__ import annotations

import logging
from collections.abc import Callable

from fastapi import APIRouter, Request
from redis.exceptions import RedisError
from starlette.responses import Response

from router.admin.auth import FeedbackSources
from router.bandit.runtime import BanditRuntime
from router.core import logs
from router.core.errors import Forbidden, NotFound, Unauthorized, Unavailable, echo
from router.core.http import json_response, read_json
from router.core.metrics import GatewayMetrics
from router.core.settings import Settings
from router.recording.feedback import parse_feedback
from router.recording.feedback_auth import PROOF_HEADER, UntrustedFeedback
from router.recording.feedback_hold import HeldReply
from router.recording.feedback_service import FeedbackService, Queued
from router.recording.recorder import Recorder, RedisRecorder
from router.reports.experiment import BanditLive, build_report
from router.reports.reads import read_recorded, read_shadow
from router.reports.shadow import build_shadow_report
from router.routing.table import RouteTable

log = logging.getLogger("turnout.outcomes")


def outcomes_router(
    settings: Settings,
    recorder: Recorder,
    table: RouteTable,
    metrics: GatewayMetrics,
    clock: Callable[[], float],
    bandits: BanditRuntime | None = None,
    feedback_service: FeedbackService | None = None,
    sources: FeedbackSources | None = None,
) -> APIRouter:
    """``feedback_service`` is the feedback path (``FeedbackService.for_recorder``), whose drain
    task the app's lifespan starts and stops; ``sources`` checks a label source's credential."""
    router = APIRouter()
    redis_recorder = recorder if isinstance(recorder, RedisRecorder) else None

    def require_redis() -> RedisRecorder:
        if redis_recorder is None:
            raise Unavailable(
                "outcomes are not recorded by this gateway: set TURNOUT_REDIS_URL",
                code="recording_off",
            )
        return redis_recorder

    def redis_down(exc: RedisError) -> Unavailable:
        metrics.redis_up.set(0)
        logs.event(log, "redis_read_failed", logging.WARNING, reason=type(exc).__name__)
        return Unavailable(f"Redis is unreachable ({type(exc).__name__})", code="redis_unavailable")

    @router.post("/feedback")
    async def feedback(request: Request) -> Response:
        try:
            source = sources.identify(request.headers.get("authorization")) if sources else None
            body = await read_json(request, settings.max_body_bytes)
            feedback = parse_feedback(body, source, request.headers.get(PROOF_HEADER))
            require_redis()
            assert feedback_service is not None
            credit = await feedback_service.accept(feedback)
        except RedisError as exc:
            raise redis_down(exc) from None
        except (UntrustedFeedback, Unauthorized, Forbidden) as exc:
            metrics.feedback_untrusted.labels(exc.code).inc()
            raise
        if isinstance(credit, Queued):
            body = {"status": "queued", "request_id": credit.request_id, "detail": credit.detail}
            return json_response(body, 202)
        if isinstance(credit, HeldReply):
            body = {"status": "held", "request_id": credit.request_id, "detail": credit.detail}
            return json_response(body, 202)
        metrics.feedback.labels(credit.experiment, credit.version or "none").inc()
        return json_response(
            {
                "status": "accepted",
                "request_id": credit.request_id,
                "experiment": credit.experiment,
                "variant": credit.variant,
                "credited_variant": credit.credited_variant,
                "credited_version": credit.version,
                "fallback": credit.fallback,
                "reward": credit.reward,
                "correct": credit.correct,
                "bandit": credit.bandit,
            }
        )

    @router.get("/experiments/{name}/report")
    async def report(name: str) -> Response:
        route = table.snapshot.routes.get(name)
        if route is None:
            raise NotFound(f"no experiment named {echo(name)} is loaded", code="unknown_experiment")
        rec = require_redis()
        experiment = route.experiment
        try:
            recorded = await read_recorded(
                rec.redis, name, route.config_version, experiment.variants
            )
        except RedisError as exc:
            raise redis_down(exc) from None
        live = None
        if bandits is not None:
            live = BanditLive(settings.bandit_prior, bandits.status(route))
        return json_response(
            build_report(experiment, route.config_version, recorded, clock(), live)
        )

    @router.get("/experiments/{name}/shadow")
    async def shadow(name: str) -> Response:
        if name not in table.snapshot.routes:
            raise NotFound(f"no experiment named {echo(name)} is loaded", code="unknown_experiment")
        rec = require_redis()
        try:
            recorded = await read_shadow(rec.redis, name)
        except RedisError as exc:
            raise redis_down(exc) from None
        by_user = table.snapshot.routes[name].experiment.analysis_unit == "user"
        return json_response(build_shadow_report(name, recorded, by_user))

    return router
