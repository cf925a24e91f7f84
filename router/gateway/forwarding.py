"""Forward a prediction to the chosen variant; fall back to the control once if it fails, and to
the experiment's ``fallback`` variants, in order, if the control cannot answer either."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from router.core import logs
from router.core.errors import BadUpstreamAnswer, Unavailable
from router.core.metrics import GatewayMetrics
from router.routing.table import Route
from router.upstream.failures import BadAnswer
from router.upstream.pool import UpstreamFailure
from router.upstream.protocols import Decoded, Payload

log = logging.getLogger("turnout.gateway")


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
    failover: bool = False
    """Answered by one of the experiment's ``fallback`` variants because the control could not
    (counted apart from fallbacks to the control)."""


async def call_variant(
    route: Route,
    variant: str,
    payload: Payload,
    request_id: str,
    patience: float | None = None,
    last_resort: bool = False,
) -> Served:
    """One variant's answer. An unhealthy mark is skipped unless this is the ``last_resort``:
    a health check can be wrong, and a call that may answer beats a certain 503 (an open
    breaker, which saw calls fail, is respected even then)."""
    upstream = route.upstreams[variant]
    if last_resort and upstream.healthy is False:
        if not upstream.breaker.allow():
            raise UpstreamFailure("circuit breaker open", "breaker_open")
    elif not upstream.available():
        if upstream.healthy is False:
            raise UpstreamFailure("unhealthy", "unhealthy")
        raise UpstreamFailure("circuit breaker open", "breaker_open")
    answer = await upstream.predict(payload, request_id, patience)
    return Served(variant, answer.status, answer.body, answer.decoded, False, answer.seconds)


def answer_chain(route: Route, variant: str, failover: bool) -> list[str]:
    """Who may answer, in order: the chosen variant, the control, then (when ``failover``) the
    experiment's fallback variants."""
    experiment = route.experiment
    chain = [variant]
    if experiment.control != variant:
        chain.append(experiment.control)
    if failover:
        chain += [v for v in experiment.fallback if v not in chain]
    return chain


async def forward(
    route: Route,
    variant: str,
    payload: Payload,
    request_id: str,
    metrics: GatewayMetrics,
    *,
    failover: bool = True,
    slow_call_seconds: float | None = None,
) -> Served:
    """Try the answer chain in order. Every variant but the last may hold the request for
    ``slow_call_seconds`` at most; a skipped call (upstream known down) and a failed one are
    counted apart. Nothing answering is a 503 (502 when the last answer came but could not be
    read) whose detail names variants and reasons in words only."""
    name = route.name
    chain = answer_chain(route, variant, failover)
    failures: list[tuple[str, UpstreamFailure]] = []
    for position, candidate in enumerate(chain):
        last = position == len(chain) - 1
        patience = None if last else slow_call_seconds
        try:
            served = await call_variant(route, candidate, payload, request_id, patience, last)
        except UpstreamFailure as failure:
            _count(metrics, name, candidate, failure, request_id)
            failures.append((candidate, failure))
            continue
        if position == 0:
            return served
        if candidate == route.experiment.control:
            metrics.fallbacks.labels(name, variant, failures[0][1].kind).inc()
            return _as_fallback(served, failover=False)
        metrics.failovers.labels(name, candidate, failures[-1][1].kind).inc()
        return _as_fallback(served, failover=True)
    detail = "; ".join(f"{v} could not answer ({f.public})" for v, f in failures)
    if isinstance(failures[-1][1], BadAnswer):
        raise BadUpstreamAnswer(detail)
    raise Unavailable(detail, code="no_upstream")


def _count(
    metrics: GatewayMetrics, name: str, variant: str, failure: UpstreamFailure, request_id: str
) -> None:
    if failure.skipped:
        metrics.upstream_skipped.labels(name, variant, failure.kind).inc()
        return
    metrics.upstream_failures.labels(name, variant).inc()
    # The reason may name the upstream's address and the exception: logs only, never a client.
    logs.event(
        log,
        "upstream_failed",
        logging.WARNING,
        request_id=request_id,
        experiment=name,
        variant=variant,
        kind=failure.kind,
        reason=failure.reason,
    )


def _as_fallback(served: Served, failover: bool) -> Served:
    return Served(
        served.variant,
        served.status,
        served.body,
        served.decoded,
        True,
        served.upstream_seconds,
        failover,
    )
