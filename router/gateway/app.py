"""The gateway: ``create_app(settings, ...)`` wires the parts together; it holds no logic."""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import random
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from starlette.responses import Response

from router.admin.actions import AdminActions
from router.admin.auth import AdminTokens, FeedbackSources
from router.admin.routes import build_admin_router
from router.bandit.runtime import BanditRuntime
from router.capture.writer import CaptureSink, CaptureWriter
from router.console.access import Access, resolve_mode
from router.console.routes import mount_console
from router.console.signout import SignOuts
from router.console.views import ConsoleData
from router.core import logs
from router.core.http import freeze_startup_objects, install_error_handlers
from router.core.metrics import GatewayMetrics
from router.core.settings import Settings
from router.core.state import StateFolder
from router.drift.runtime import DriftVerdicts
from router.flags.cache import FlagCache
from router.gateway.drift_routes import drift_router
from router.gateway.host_guard import HostGuard
from router.gateway.mirror import ShadowMirror
from router.gateway.open_inference import open_inference_router
from router.gateway.outcome_routes import outcomes_router
from router.gateway.predict import PredictPipeline
from router.gateway.predict_route import PredictRoute
from router.gateway.rollout_routes import rollout_router
from router.gateway.startup import check_startup
from router.gateway.status_routes import status_router
from router.recording.feedback_service import FeedbackService
from router.recording.recorder import (
    Recorder,
    RedisRecorder,
    recorder_for,
    start_recording,
    stop_recording,
)
from router.rollout.controller import RolloutController
from router.rollout.runtime import RolloutRuntime
from router.rollout.store import RolloutStore
from router.routing.table import Reading, RouteTable
from router.storage.client import connect, redis_configured
from router.upstream.breaker import CircuitBreaker
from router.upstream.health import check_all, health_loop
from router.upstream.pool import UpstreamPool, UpstreamTimeouts

log = logging.getLogger("turnout.gateway")


def package_version() -> str:
    try:
        return importlib.metadata.version("turnout")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def create_app(
    settings: Settings,
    *,
    recorder: Recorder | None = None,
    rng: random.Random | None = None,
    metrics: GatewayMetrics | None = None,
    clock: Callable[[], float] = time.time,
) -> FastAPI:
    """Build a gateway. Refuses to start without Redis (unless told to), or in production with
    the public default salt; a refused experiment file costs only its own experiment."""
    check_startup(settings, has_recorder=recorder is not None)
    metrics = metrics or GatewayMetrics()
    pool = UpstreamPool(
        UpstreamTimeouts(
            settings.upstream_connect_timeout,
            settings.upstream_timeout,
            settings.upstream_pool_size,
            settings.shadow_max_in_flight,
            settings.shadow_timeout,
            settings.upstream_max_answer_bytes,
        ),
        lambda: CircuitBreaker(settings.breaker_failures, settings.breaker_reset_seconds),
    )
    reading = Reading(
        settings.experiment_max_bytes,
        settings.experiment_delete_grace,
        settings.experiment_read_timeout,
        isolated=True,
        state=StateFolder(settings.state_dir),
        feedback_secret=settings.feedback_secret is not None,
    )
    table = RouteTable(
        settings.experiments_dir, settings.allowed_hosts, pool, metrics, reading=reading
    )
    initial = table.initial()
    recorder = recorder or recorder_for(settings, metrics)
    rng = rng or random.Random(settings.seed)
    flags = FlagCache.from_settings(settings, metrics, clock)
    bandits = BanditRuntime.from_settings(settings, table, flags, metrics, clock)
    tokens = AdminTokens.from_settings(settings)
    signouts = SignOuts.from_settings(settings, clock)
    capture = CaptureWriter(settings, metrics, clock)
    mirror = ShadowMirror(
        CaptureSink(recorder, capture, table), metrics, settings.shadow_max_in_flight, clock
    )
    feedback = FeedbackService.for_recorder(
        settings, recorder, metrics, clock, bandits, table, table.feedback_auth
    )
    # Rollouts and SRM checks: every replica follows the weights, the lease holder drives.
    rollout_store = None
    if redis_configured(settings):
        client = connect(settings, "turnout-rollout")
        rollout_store = RolloutStore(
            client, settings.rollout_history_maxlen, settings.rollout_looks_maxlen
        )
    rollouts = RolloutRuntime(
        rollout_store,
        table,
        metrics,
        settings.rollout_refresh_interval,
        settings.rollout_slot_seconds,
        clock,
    )
    actions = AdminActions(table, flags, settings.allowed_hosts, clock, rollout_store, rollouts)
    controller = None
    if rollout_store is not None:
        controller = RolloutController(
            rollout_store,
            table,
            rollouts,
            actions,
            metrics,
            settings.rollout_check_interval,
            settings.rollout_lease_ttl,
            settings.rollout_slot_seconds,
            clock,
            settings.rollout_look_interval,
            settings.rollout_users_max,
        )
    pipeline = PredictPipeline(
        settings,
        table,
        flags,
        bandits,
        tokens,
        recorder,
        mirror,
        metrics,
        rng,
        clock,
        rollouts,
        capture,
    )
    drift = DriftVerdicts(
        connect(settings, "turnout-drift") if redis_configured(settings) else None,
        table,
        metrics,
        settings.drift_refresh_interval,
    )
    tasks: set[asyncio.Task[None]] = set()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        table.install_initial(initial)
        await check_all(pool, settings.health_interval, settings.health_misses)
        await flags.prime()
        await bandits.prime()
        await rollouts.prime()
        await signouts.prime()
        jobs = [
            health_loop(pool, settings.health_interval, settings.health_misses),
            table.watch(settings.reload_poll_interval, settings.watch_files),
            flags.run(),
            bandits.run(),
            rollouts.run(),
            drift.run(),
            signouts.run(),
        ]
        if controller is not None:
            jobs.append(controller.run())
        for job in jobs:
            tasks.add(asyncio.create_task(job))
        await start_recording(recorder)
        capture.start()
        if feedback is not None:
            feedback.start()
        freeze_startup_objects()
        logs.event(log, "gateway_started", experiments=sorted(table.snapshot.routes))
        try:
            yield
        finally:
            await mirror.close()  # their comparisons still reach the recorder's final flush
            await asyncio.to_thread(capture.close)  # what waits is written, files closed
            if feedback is not None:
                await feedback.close()  # queued feedback, while the recorder's Redis is open
            await stop_recording(recorder)  # final flush, bounded by its own timeout
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if controller is not None:
                await controller.close()  # hand the leases over at once
            if rollout_store is not None:
                await rollout_store.redis.aclose()
            await pool.close()
            await flags.close()
            await bandits.close()
            await drift.close()
            await signouts.close()

    app = FastAPI(title="turnout gateway", lifespan=lifespan, docs_url=None, redoc_url=None)
    page = None
    mode = resolve_mode(settings.ui, settings.host)
    if mode != "off":  # the console, mounted first so its pages render its errors
        redis = recorder.redis if isinstance(recorder, RedisRecorder) else None
        data = ConsoleData(settings, actions, redis, bandits, clock)
        page = mount_console(app, data, Access(tokens, mode, settings.ui_session_ttl, signouts))
    errors = install_error_handlers(app, on_client_gone=metrics.client_disconnects.inc, page=page)
    # Added first, so it sits inside PredictRoute: predict requests (never guarded) skip it.
    app.add_middleware(HostGuard, trusted=settings.trusted_hosts, errors=errors)
    # The hot path skips FastAPI's routing; these two routes stay for what it does not take.
    app.add_middleware(PredictRoute, pipeline=pipeline, errors=errors)

    @app.post("/predict")
    async def predict_default(request: Request) -> Response:
        return await pipeline.handle(request, None)

    @app.post("/models/{model}/predict")
    async def predict_model(request: Request, model: str) -> Response:
        return await pipeline.handle(request, model)

    app.include_router(
        outcomes_router(
            settings,
            recorder,
            table,
            metrics,
            clock,
            bandits,
            feedback,
            FeedbackSources.from_settings(settings, tokens),
        )
    )
    app.include_router(status_router(table, metrics, rollouts))
    app.include_router(rollout_router(table, rollout_store, rollouts, clock))
    app.include_router(drift_router(table, drift))
    app.include_router(open_inference_router(pipeline, table, package_version()))
    if tokens.enabled:  # no token configured: the admin API is off (404), not open
        app.include_router(
            build_admin_router(
                actions, tokens, metrics, settings.max_body_bytes, settings.alertmanager_memory
            )
        )
    return app
