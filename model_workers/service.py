"""The worker service: one process serves one model version behind the worker API."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.responses import Response

from model_workers.registry import LoadedModel
from router.core import logs
from router.core.errors import InvalidInput, TurnoutError, Unavailable
from router.core.http import (
    check_text,
    freeze_startup_objects,
    install_error_handlers,
    json_response,
    read_json,
    require_object,
)
from router.core.inputs import FeatureType, check_features
from router.core.observe import RequestObserver
from router.core.settings import Settings

log = logging.getLogger("turnout.worker")

ModelSource = LoadedModel | Callable[[], LoadedModel]
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class WorkerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "turnout_worker_requests", "Worker requests.", ["route", "status"], registry=r
        )
        self.latency = Histogram(
            "turnout_worker_request_seconds",
            "Worker request latency.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.scores = Histogram(
            "turnout_worker_score",
            "Predicted scores.",
            buckets=[i / 10 for i in range(1, 11)],
            registry=r,
        )
        self.labels = Counter(
            "turnout_worker_predictions", "Predicted labels.", ["label"], registry=r
        )
        self.inflight = Gauge("turnout_worker_inflight", "Requests in flight.", registry=r)
        self.info = Gauge(
            "turnout_worker_info", "Model served.", ["model", "version", "recipe"], registry=r
        )
        self.ready = Gauge("turnout_worker_ready", "1 once loaded and warmed.", registry=r)


@dataclass
class WorkerState:
    model: LoadedModel | None = None
    error: str | None = None
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)


ROUTES = {"/predict", "/predict/batch", "/healthz", "/readyz", "/info", "/metrics"}


def create_app(settings: Settings, model: ModelSource) -> FastAPI:
    """Build a worker app; ``model`` is a loaded model or a loader run at start-up."""
    metrics = WorkerMetrics()
    state = WorkerState()

    def attach(loaded: LoadedModel) -> None:
        loaded.outputs(loaded.warm_input())  # the first call pays lazy set-up costs, not a client
        state.model = loaded
        metrics.info.labels(loaded.name, loaded.version, str(loaded.card.get("recipe"))).set(1)
        freeze_startup_objects()
        metrics.ready.set(1)
        logs.event(log, "model_ready", model=loaded.name, version=loaded.version)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if isinstance(model, LoadedModel):
            attach(model)
        else:

            async def load_in_background() -> None:
                try:
                    attach(await asyncio.to_thread(model))
                except TurnoutError as exc:
                    state.error = exc.detail
                    logs.event(log, "model_load_failed", logging.ERROR, reason=exc.detail)
                except Exception as exc:  # an artifact from another code version, say
                    state.error = f"the model could not be loaded: {type(exc).__name__}: {exc}"
                    log.exception("model_load_failed")

            task = asyncio.create_task(load_in_background())
            state.tasks.add(task)
            task.add_done_callback(state.tasks.discard)
        yield

    app = FastAPI(title="turnout worker", lifespan=lifespan, docs_url=None, redoc_url=None)
    install_error_handlers(app)
    delay = settings.worker_fault_delay_ms / 1000.0

    def ready_model() -> LoadedModel:
        if state.model is None:
            raise Unavailable(state.error or "model is still loading", code="not_ready")
        return state.model

    async def injected_faults() -> None:
        if delay:
            await asyncio.sleep(delay)
        if settings.worker_fault_status is not None:
            raise TurnoutError("injected fault (TURNOUT_WORKER_FAULT_STATUS)", code="fault")

    def on_request_done(path: str, status: int, elapsed: float, request_id: str | None) -> None:
        route = path if path in ROUTES else "other"
        metrics.requests.labels(route, str(status)).inc()
        metrics.latency.labels(route).observe(elapsed)
        if settings.access_log and route.startswith("/predict"):
            logs.event(
                log,
                "request",
                request_id=request_id,
                route=route,
                status=status,
                latency_ms=round(elapsed * 1000, 3),
            )

    def observe_outputs(outputs: list[dict[str, Any]]) -> None:
        for out in outputs:
            metrics.scores.observe(out["score"])
            metrics.labels.labels(str(out["label"])).inc()

    def one_input(loaded: LoadedModel, body: dict[str, Any]) -> list[str] | np.ndarray:
        """The model's input from a predict body: ``text``, or ``features`` by the card."""
        spec = loaded.input_spec
        if spec.get("kind") != "features":
            return [check_text(body.get("text"), settings.max_text_chars)]
        row = check_features(body.get("features"), *feature_rules(loaded), settings.max_text_chars)
        return loaded.rows([row])  # type: ignore[list-item]

    def feature_rules(loaded: LoadedModel) -> tuple[list[str], dict[str, FeatureType]]:
        return loaded.feature_names, loaded.feature_types()

    async def read_body(request: Request) -> dict[str, Any]:
        raw = await read_json(request, settings.max_body_bytes, lenient_numbers=True)
        return require_object(raw)

    @app.post("/predict")
    async def predict(request: Request) -> Response:
        loaded = ready_model()
        body = await read_body(request)
        inputs = one_input(loaded, body)
        await injected_faults()
        outputs = loaded.outputs(inputs)
        observe_outputs(outputs)
        return json_response(outputs[0])

    @app.post("/predict/batch")
    async def predict_batch(request: Request) -> Response:
        loaded = ready_model()
        body = await read_body(request)
        features = loaded.input_spec.get("kind") == "features"
        field = "features" if features else "texts"
        items = body.get(field)
        if not isinstance(items, list) or not items:
            what = "objects of named features" if features else "strings"
            raise InvalidInput(f"'{field}' must be a non-empty list of {what}")
        if len(items) > settings.max_batch:
            raise InvalidInput(
                f"'{field}' has {len(items)} items; the limit is {settings.max_batch}"
            )
        inputs: list[str] | np.ndarray
        if features:
            names, types = feature_rules(loaded)
            rows = [
                check_features(item, names, types, settings.max_text_chars, f"features[{i}]")
                for i, item in enumerate(items)
            ]
            inputs = loaded.rows(rows)  # type: ignore[arg-type]
        else:
            inputs = [
                check_text(t, settings.max_text_chars, f"texts[{i}]") for i, t in enumerate(items)
            ]
        await injected_faults()
        outputs = await asyncio.to_thread(loaded.outputs, inputs)
        observe_outputs(outputs)
        return json_response({"predictions": outputs})

    @app.get("/healthz")
    async def healthz() -> Response:
        return json_response({"status": "ok"})

    @app.get("/readyz")
    async def readyz() -> Response:
        loaded = ready_model()
        return json_response({"status": "ready", "model": loaded.name, "version": loaded.version})

    @app.get("/info")
    async def info() -> Response:
        return json_response(ready_model().card)

    @app.get("/metrics")
    async def metrics_route() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(
        RequestObserver,
        on_done=on_request_done,
        on_start=metrics.inflight.inc,
        on_end=metrics.inflight.dec,
    )
    return app
