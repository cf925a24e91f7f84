"""What a gateway says about itself: experiments in force, liveness, readiness, metrics."""

from __future__ import annotations

from fastapi import APIRouter
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response

from router.core.errors import Unavailable
from router.core.http import json_response
from router.core.metrics import GatewayMetrics
from router.reports.status import experiment_status
from router.rollout.runtime import RolloutRuntime
from router.routing.table import RouteTable


def status_router(
    table: RouteTable, metrics: GatewayMetrics, rollouts: RolloutRuntime | None = None
) -> APIRouter:
    router = APIRouter()

    @router.get("/experiments")
    async def experiments() -> Response:
        snapshot = table.snapshot
        items = [
            experiment_status(route, rollouts.summary(route) if rollouts else None)
            for route in snapshot.routes.values()
        ]
        refused = {str(p): reason for p, reason in snapshot.refused.items()}
        return json_response({"experiments": items, "refused": refused})

    @router.get("/healthz")
    async def healthz() -> Response:
        return json_response({"status": "ok"})

    @router.get("/readyz")
    async def readyz() -> Response:
        routes = table.snapshot.routes
        if not routes:
            raise Unavailable("no experiment is loaded", code="not_ready")
        down = table.snapshot.not_ready()
        if down:
            raise Unavailable(
                "neither the control nor a fallback variant can answer for: "
                + ", ".join(sorted(down)),
                code="not_ready",
            )
        return json_response({"status": "ready", "experiments": sorted(routes)})

    @router.get("/metrics")
    async def metrics_route() -> Response:
        for route in table.snapshot.routes.values():
            for variant, upstream in route.upstreams.items():
                metrics.breaker_state.labels(route.name, variant).set(upstream.breaker.state)
                metrics.upstream_healthy.labels(route.name, variant).set(
                    1 if upstream.ready() else 0
                )
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return router
