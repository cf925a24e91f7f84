"""The gateway: ``create_app(settings, ...)`` assembles it; routes stay thin."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import FastAPI, Request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response

from router.admin.auth import AdminTokens
from router.admin.routes import AdminContext, build_admin_router
from router.bandit.runtime import BanditRuntime
from router.config.experiments import load_directory
from router.core import logs
from router.core.errors import ConfigError, InvalidInput, NotFound, TurnoutError, Unavailable
from router.core.http import (
    check_text,
    freeze_startup_objects,
    install_error_handlers,
    json_response,
    read_json,
    require_object,
)
from router.core.metrics import GatewayMetrics
from router.core.settings import Settings
from router.flags.flags import FlagCache
from router.gateway.forwarding import Served, forward
from router.gateway.mirror import ShadowMirror
from router.gateway.outcome_routes import outcomes_router
from router.recording.events import Outcome, Recorder
from router.recording.feedback_service import DeferredFeedback
from router.recording.recorder import recorder_for, start_recording, stop_recording
from router.routing.steering import steer
from router.routing.table import ExperimentStore, Route
from router.upstream.pool import CircuitBreaker, UpstreamPool, UpstreamTimeouts

log = logging.getLogger("turnout.gateway")
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
MAX_USER_ID = 256


def user_hash(salt: str, key: str) -> str:
    return hashlib.sha256(f"{salt}\x00{key}".encode("utf-8", "surrogatepass")).hexdigest()[:16]


def request_key(body: dict[str, Any], request: Request) -> str | None:
    """``user_id`` in the body, then the ``X-User-Id`` header, then none."""
    value = body.get("user_id")
    source = "user_id"
    if value is None:
        value = request.headers.get("x-user-id")
        source = "X-User-Id"
        if value is None:
            return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidInput(f"'{source}' must be a string or an integer")
    key = str(value)
    if not key.strip() or len(key) > MAX_USER_ID:
        raise InvalidInput(f"'{source}' must be 1 to {MAX_USER_ID} characters, not blank")
    return key


def request_id_of(request: Request) -> str:
    given = request.headers.get("x-request-id")
    if given is None:
        return uuid.uuid4().hex
    if not REQUEST_ID.match(given):
        raise InvalidInput("X-Request-Id must be 1-128 characters of [A-Za-z0-9._:-]")
    return given


def create_app(
    settings: Settings,
    *,
    recorder: Recorder | None = None,
    rng: random.Random | None = None,
    metrics: GatewayMetrics | None = None,
    clock: Callable[[], float] = time.time,
) -> FastAPI:
    """Build a gateway. Refuses to start on an invalid experiments folder."""
    report = load_directory(settings.experiments_dir, settings.allowed_hosts)
    if report.errors:
        raise ConfigError("; ".join(e.detail for e in report.errors.values()))
    metrics = metrics or GatewayMetrics()
    recorder = recorder or recorder_for(settings, metrics)
    rng = rng or random.Random(settings.seed)
    pool = UpstreamPool(
        UpstreamTimeouts(
            settings.upstream_connect_timeout,
            settings.upstream_timeout,
            settings.upstream_pool_size,
            settings.shadow_max_in_flight,
            settings.shadow_timeout,
        ),
        lambda: CircuitBreaker(settings.breaker_failures, settings.breaker_reset_seconds),
        settings.health_interval,
    )
    store = ExperimentStore(settings.experiments_dir, settings.allowed_hosts, pool, metrics)
    flags = FlagCache.from_settings(settings, metrics, clock)
    bandits = BanditRuntime.from_settings(settings, store, flags, metrics, clock)
    tokens = AdminTokens.from_settings(settings)
    mirror = ShadowMirror(recorder, metrics, settings.shadow_max_in_flight, clock)
    deferred = DeferredFeedback.for_recorder(settings, recorder, metrics, clock, bandits)
    tasks: set[asyncio.Task[None]] = set()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        store.load_initial()
        await pool.check_all()
        await flags.prime()
        await bandits.prime()
        for job in (
            pool.health_loop(),
            store.watch(settings.reload_poll_interval, settings.watch_files),
            flags.run(),
            bandits.run(),
        ):
            tasks.add(asyncio.create_task(job))
        await start_recording(recorder)
        if deferred is not None:
            deferred.start()
        freeze_startup_objects()
        logs.event(log, "gateway_started", experiments=sorted(store.snapshot.routes))
        try:
            yield
        finally:
            await mirror.close()  # their comparisons still reach the recorder's final flush
            if deferred is not None:
                await deferred.close()  # queued feedback, while the recorder's Redis is open
            await stop_recording(recorder)  # final flush, bounded by its own timeout
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await pool.close()
            await flags.close()
            await bandits.close()

    app = FastAPI(title="turnout gateway", lifespan=lifespan, docs_url=None, redoc_url=None)
    install_error_handlers(app)
    app.state.store = store
    app.state.metrics = metrics
    app.state.pool = pool
    app.state.flags = flags
    app.include_router(
        outcomes_router(settings, recorder, store, metrics, clock, bandits, deferred)
    )
    if tokens.enabled:  # no token configured: the admin API is off (404), not open
        app.include_router(
            build_admin_router(
                AdminContext(
                    store, flags, tokens, metrics, settings.allowed_hosts, settings.max_body_bytes
                )
            )
        )

    def route_for(model: str | None) -> Route:
        snapshot = store.snapshot
        if model is None:
            if len(snapshot.by_model) == 1:
                return next(iter(snapshot.by_model.values()))
            if not snapshot.by_model:
                raise NotFound("no experiment is loaded", code="no_experiment")
            raise InvalidInput(
                "several models are routed; name one with POST /models/{model}/predict "
                f"(models: {', '.join(sorted(snapshot.by_model))})"
            )
        route = snapshot.by_model.get(model)
        if route is None:
            if (settings.models_dir / model).is_dir():
                raise NotFound(
                    f"model {model!r} has no active experiment in {settings.experiments_dir}",
                    code="no_experiment",
                )
            raise NotFound(f"unknown model {model!r}", code="unknown_model")
        return route

    async def predict(request: Request, model: str | None) -> Response:
        started = time.perf_counter()
        try:
            body = require_object(await read_json(request, settings.max_body_bytes))
            text = check_text(body.get("text"), settings.max_text_chars)
            key = request_key(body, request)
            context = body.get("context")
            if context is not None and not isinstance(context, dict):
                raise InvalidInput("'context' must be a JSON object")
            request_id = request_id_of(request)
            route = route_for(model)
            uhash = user_hash(settings.user_hash_salt, key) if key else None
            route_flags = flags.for_experiment(route.name)
            view = bandits.view(route, route_flags, uhash)
            steering = steer(
                route.experiment,
                route.policy,
                route_flags,
                key,
                rng,
                request.headers.get("x-turnout-variant"),
                lambda: tokens.identify(request.headers.get("authorization")) is not None,
                view,
            )
        except TurnoutError as exc:
            metrics.rejected.labels(exc.code).inc()
            raise
        if steering.ignored:
            metrics.forced_ignored.inc()
        decision = steering.decision
        held_until = bandits.hold(route, view, uhash, decision) if not steering.forced_by else None
        experiment = route.experiment
        payload = orjson.dumps({"text": text})
        served: Served | None = None
        try:
            served = await forward(route, decision.variant, payload, request_id, metrics)
        finally:
            elapsed = time.perf_counter() - started
            status = served.status if served else 503
            version = experiment.version_of(served.variant) if served else None
            prediction = served.prediction if served else None
            outcome = "fallback" if served and served.fallback else "ok"
            if served is None or status >= 500:
                outcome = "error"
            elif status >= 400:
                outcome = "rejected"
            metrics.requests.labels(route.name, decision.variant, version or "none", outcome).inc()
            metrics.request_seconds.labels(route.name, decision.variant).observe(elapsed)
            if served is not None:
                metrics.upstream_seconds.labels(route.name, served.variant).observe(
                    served.upstream_seconds
                )
            recorder.record(
                Outcome(
                    request_id=request_id,
                    experiment=route.name,
                    config_version=route.config_version,
                    variant=decision.variant,
                    served_variant=served.variant if served else None,
                    version=version,
                    sticky=decision.sticky,
                    propensity=decision.probability,
                    user_hash=uhash,
                    status=status,
                    latency_ms=elapsed * 1000.0,
                    label=prediction.get("label") if prediction else None,
                    score=_score(prediction),
                    fallback=bool(served and served.fallback),
                    ts=clock(),
                    forced=steering.forced_by,
                    sticky_until=held_until,
                )
            )
            if settings.access_log:
                logs.event(
                    log,
                    "request",
                    request_id=request_id,
                    experiment=route.name,
                    variant=decision.variant,
                    version=version,
                    status=status,
                    latency_ms=round(elapsed * 1000.0, 3),
                    fallback=bool(served and served.fallback),
                    sticky=decision.sticky,
                )
        headers = {"x-request-id": request_id}
        if prediction is None:  # the worker refused the input: pass its 4xx through
            return Response(served.body, served.status, headers, media_type="application/json")
        tail = orjson.dumps(
            {
                "model": experiment.model,
                "model_version": version,
                "experiment": route.name,
                "variant": decision.variant,
                "served_variant": served.variant,
                "request_id": request_id,
                "fallback": served.fallback,
                "sticky": decision.sticky,
                "config_version": route.config_version,
                "forced": steering.forced_by is not None,
                "forced_by": steering.forced_by,
                "forced_ignored": steering.ignored,
            }
        )
        # Splice the worker's bytes in: it was parsed once already, never re-encoded.
        content = b'{"prediction":' + served.body + b"," + tail[1:]
        if experiment.shadow is not None and route_flags.shadow_active:
            # Scheduled, not awaited: the mirror call starts once this response is on its way.
            mirror.mirror(
                route,
                served.variant,
                key,
                payload,
                request_id,
                prediction,
                served.upstream_seconds * 1000.0,
                rng,
            )
        return Response(content, 200, headers, media_type="application/json")

    @app.post("/predict")
    async def predict_default(request: Request) -> Response:
        return await predict(request, None)

    @app.post("/models/{model}/predict")
    async def predict_model(request: Request, model: str) -> Response:
        return await predict(request, model)

    @app.get("/experiments")
    async def experiments() -> Response:
        snapshot = store.snapshot
        items = []
        for route in snapshot.routes.values():
            exp = route.experiment
            items.append(
                {
                    "name": exp.name,
                    "model": exp.model,
                    "policy": exp.policy.kind,
                    "control": exp.control,
                    "weights": exp.configured_weights(),
                    "config_version": route.config_version,
                    "file": route.loaded.path.name,
                    "shadow": exp.shadow.model_dump() if exp.shadow else None,
                    "upstreams": {
                        v: {
                            "url": u.url,
                            "version": exp.version_of(v),
                            "healthy": u.healthy,
                            "breaker": u.breaker.state.name.lower(),
                        }
                        for v, u in route.upstreams.items()
                    },
                }
            )
        refused = {str(p): reason for p, reason in snapshot.refused.items()}
        return json_response({"experiments": items, "refused": refused})

    @app.get("/healthz")
    async def healthz() -> Response:
        return json_response({"status": "ok"})

    @app.get("/readyz")
    async def readyz() -> Response:
        routes = store.snapshot.routes
        if not routes:
            raise Unavailable("no experiment is loaded", code="not_ready")
        down = [r.name for r in routes.values() if not any(u.healthy for u in r.upstreams.values())]
        if down:
            raise Unavailable(
                f"no healthy upstream for: {', '.join(sorted(down))}", code="not_ready"
            )
        return json_response({"status": "ready", "experiments": sorted(routes)})

    @app.get("/metrics")
    async def metrics_route() -> Response:
        for route in store.snapshot.routes.values():
            for variant, upstream in route.upstreams.items():
                metrics.breaker_state.labels(route.name, variant).set(upstream.breaker.state)
                metrics.upstream_healthy.labels(route.name, variant).set(
                    1 if upstream.healthy else 0
                )
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


def _score(prediction: dict[str, Any] | None) -> float | None:
    if prediction is None:
        return None
    score = prediction.get("score")
    return float(score) if isinstance(score, int | float) and not isinstance(score, bool) else None
