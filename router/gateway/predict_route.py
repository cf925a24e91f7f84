"""The predict paths as raw ASGI, in front of FastAPI's routing.

``POST /predict`` and ``POST /models/{model}/predict`` are the hot path: matching them through
FastAPI's router, dependency solving and per-request exit stacks cost more than the pipeline's
own steps. This middleware answers them straight from the pipeline, with the same error
mapping (``ErrorResponses``); an unexpected error propagates to the app's server-error handler,
as before. Every other request, and every other method on these paths (405), goes on to
FastAPI. The request's bookkeeping (metrics, outcome, access log) runs right after the
response is written, with no wait in between unless the client stops reading (the write
buffer full): no other request is handled in between.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from router.core.errors import TurnoutError
from router.core.http import ErrorResponses
from router.gateway.predict import Finish, PredictPipeline

PREFIX, SUFFIX = "/models/", "/predict"


def predict_target(scope: Scope) -> tuple[bool, str | None]:
    """``(True, model)`` for a predict request (``model`` None on ``/predict``), else
    ``(False, None)``; a model is one path segment, as FastAPI's ``{model}`` matches."""
    if scope["type"] != "http" or scope["method"] != "POST":
        return False, None
    path: str = scope["path"]
    if path == SUFFIX:
        return True, None
    if path.startswith(PREFIX) and path.endswith(SUFFIX):
        model = path[len(PREFIX) : -len(SUFFIX)]
        if model and "/" not in model:
            return True, model
    return False, None


class PredictRoute:
    """ASGI middleware: predict requests go to ``pipeline``, the rest to ``app``."""

    def __init__(self, app: ASGIApp, pipeline: PredictPipeline, errors: ErrorResponses) -> None:
        self.app = app
        self.pipeline = pipeline
        self.errors = errors

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        matched, model = predict_target(scope)
        if not matched:
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        later: list[Finish] = []
        try:
            try:
                response = await self.pipeline.handle(request, model, later)
            except TurnoutError as exc:
                response = await self.errors.turnout(request, exc)
            await response(scope, receive, send)
        finally:
            for finish in later:  # the client has its answer; the books are kept now
                finish()
