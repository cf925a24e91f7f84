"""Forward a prediction to the chosen variant; fall back to the control once if it fails."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from router.core.errors import Unavailable
from router.core.metrics import GatewayMetrics
from router.routing.table import Route
from router.upstream.pool import UpstreamFailure


@dataclass(frozen=True, slots=True)
class Served:
    variant: str
    status: int
    body: bytes
    prediction: dict[str, Any] | None
    """The worker's decoded answer (None for a passed-through 4xx)."""
    fallback: bool
    upstream_seconds: float


async def call_variant(route: Route, variant: str, payload: bytes, request_id: str) -> Served:
    upstream = route.upstreams[variant]
    if not upstream.available():
        state = "unhealthy" if upstream.healthy is False else "circuit breaker open"
        raise UpstreamFailure(state)
    response = await upstream.predict(payload, request_id)
    if response.status >= 400:  # the worker refused the input: the client's error, not ours
        return Served(variant, response.status, response.body, None, False, response.seconds)
    try:
        prediction = orjson.loads(response.body)
    except orjson.JSONDecodeError:
        upstream.breaker.record_failure()
        raise UpstreamFailure("upstream answered with invalid JSON") from None
    if not isinstance(prediction, dict):
        upstream.breaker.record_failure()
        raise UpstreamFailure("upstream answered with a non-object")
    return Served(variant, response.status, response.body, prediction, False, response.seconds)


async def forward(
    route: Route, variant: str, payload: bytes, request_id: str, metrics: GatewayMetrics
) -> Served:
    name = route.name
    try:
        return await call_variant(route, variant, payload, request_id)
    except UpstreamFailure as failure:
        metrics.upstream_failures.labels(name, variant).inc()
        reason = failure.reason
    control = route.experiment.control
    if variant == control:
        raise Unavailable(f"{variant} could not answer ({reason})", code="no_upstream")
    metrics.fallbacks.labels(name, variant, _reason_label(reason)).inc()
    try:
        served = await call_variant(route, control, payload, request_id)
    except UpstreamFailure as failure:
        metrics.upstream_failures.labels(name, control).inc()
        raise Unavailable(
            f"{variant} could not answer ({reason}) and neither could the control "
            f"{control} ({failure.reason})",
            code="no_upstream",
        ) from None
    return Served(
        served.variant,
        served.status,
        served.body,
        served.prediction,
        True,
        served.upstream_seconds,
    )


def _reason_label(reason: str) -> str:
    """A bounded label value for the fallback counter."""
    if reason.startswith("upstream answered"):
        return "error_status"
    if reason in ("unhealthy", "circuit breaker open"):
        return reason.replace(" ", "_")
    if "Timeout" in reason:
        return "timeout"
    return "connection"
