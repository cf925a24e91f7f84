"""Forward a prediction to the chosen variant; fall back to the control once if it fails."""

from __future__ import annotations

from dataclasses import dataclass

from router.core.errors import BadUpstreamAnswer, Unavailable
from router.core.metrics import GatewayMetrics
from router.routing.table import Route
from router.upstream.failures import BadAnswer
from router.upstream.pool import UpstreamFailure
from router.upstream.protocols import Decoded, Payload


@dataclass(frozen=True, slots=True)
class Served:
    variant: str
    status: int
    body: bytes
    """The model server's own answer, untouched."""
    decoded: Decoded | None
    """The normalized label and score (None for a passed-through 4xx)."""
    fallback: bool
    upstream_seconds: float


async def call_variant(route: Route, variant: str, payload: Payload, request_id: str) -> Served:
    upstream = route.upstreams[variant]
    if not upstream.available():
        state = "unhealthy" if upstream.healthy is False else "circuit breaker open"
        raise UpstreamFailure(state)
    answer = await upstream.predict(payload, request_id)
    return Served(variant, answer.status, answer.body, answer.decoded, False, answer.seconds)


async def forward(
    route: Route, variant: str, payload: Payload, request_id: str, metrics: GatewayMetrics
) -> Served:
    name = route.name
    try:
        return await call_variant(route, variant, payload, request_id)
    except UpstreamFailure as failure:
        metrics.upstream_failures.labels(name, variant).inc()
        first = failure
    control = route.experiment.control
    if variant == control:
        raise _no_answer(f"{variant} could not answer ({first.reason})", first)
    metrics.fallbacks.labels(name, variant, _reason_label(first)).inc()
    try:
        served = await call_variant(route, control, payload, request_id)
    except UpstreamFailure as failure:
        metrics.upstream_failures.labels(name, control).inc()
        raise _no_answer(
            f"{variant} could not answer ({first.reason}) and neither could the control "
            f"{control} ({failure.reason})",
            failure,
        ) from None
    return Served(
        served.variant,
        served.status,
        served.body,
        served.decoded,
        True,
        served.upstream_seconds,
    )


def _no_answer(detail: str, failure: UpstreamFailure) -> BadUpstreamAnswer | Unavailable:
    """502 when the last answer came but could not be read, 503 when nothing answered."""
    if isinstance(failure, BadAnswer):
        return BadUpstreamAnswer(detail)
    return Unavailable(detail, code="no_upstream")


def _reason_label(failure: UpstreamFailure) -> str:
    """A bounded label value for the fallback counter."""
    if failure.kind is not None:
        return failure.kind
    reason = failure.reason
    if reason.startswith("upstream answered"):
        return "error_status"
    if reason in ("unhealthy", "circuit breaker open"):
        return reason.replace(" ", "_")
    if "Timeout" in reason:
        return "timeout"
    return "connection"
