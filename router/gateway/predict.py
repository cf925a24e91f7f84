"""The predict pipeline: one request from the front door to the recorded outcome.

Steps, in the order a request meets them (each a method, so each can be tested alone):
``accept`` (validate the body), ``route`` (the experiment that owns the model), ``steer`` (flags,
then the policy), ``forward`` (the variant, falling back to the control once), ``respond``, and
``finish`` (metrics, the outcome to the recorder's buffer, the access log, the shadow mirror).
Nothing here waits on Redis.
"""

from __future__ import annotations

import hashlib
import logging
import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from router.admin.auth import AdminTokens
from router.bandit.runtime import BanditRuntime
from router.capture.writer import CaptureWriter
from router.config.experiments import NAME, InputConfig
from router.core import logs
from router.core.errors import InvalidInput, NotFound, TurnoutError, echo
from router.core.http import read_json, require_object
from router.core.ids import REQUEST_ID_RULE, new_request_id, valid_request_id
from router.core.metrics import GatewayMetrics
from router.core.settings import Settings
from router.flags.cache import FlagCache
from router.flags.values import ExperimentFlags
from router.gateway.forwarding import Served, forward
from router.gateway.mirror import ShadowMirror
from router.recording.events import Outcome
from router.recording.feedback_auth import PROOF_FIELD, PROOF_HEADER, feedback_secret, mint
from router.recording.recorder import Recorder
from router.rollout.runtime import RolloutRuntime
from router.routing.steering import HEADER, Steering, steer
from router.routing.table import Route, RouteTable
from router.upstream.protocols import Payload

log = logging.getLogger("turnout.gateway")
MAX_USER_ID = 256
TEXT_INPUT = InputConfig()
MODEL_NAME = re.compile(NAME)
Finish = Callable[[], None]
"""A request's bookkeeping (metrics, outcome, access log), to run after its response."""


def user_hash(salt: str, key: str) -> str:
    """The only form a user key is ever stored in: salted, hashed, truncated."""
    return hashlib.sha256(f"{salt}\x00{key}".encode("utf-8", "surrogatepass")).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class PredictInput:
    """A request the front door accepted."""

    payload: Payload
    """The input, checked against the experiment's declared input."""
    key: str | None
    """The user key (body ``user_id``, else the ``X-User-Id`` header), if any."""
    request_id: str


@dataclass(frozen=True, slots=True)
class Decided:
    """Where a request goes and why."""

    route: Route
    steering: Steering
    flags: ExperimentFlags
    user_hash: str | None
    held_until: float | None
    """Set when this request made a sticky bandit user's first draw."""
    window: int | None = None
    """The rollout weights window the policy decided under (None: no rollout)."""


def request_key(body: Mapping[str, Any], headers: Mapping[str, str]) -> str | None:
    """``user_id`` in the body, then the ``X-User-Id`` header, then none."""
    value = body.get("user_id")
    source = "user_id"
    if value is None:
        value = headers.get("x-user-id")
        source = "X-User-Id"
        if value is None:
            return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidInput(f"'{source}' must be a string or an integer")
    key = str(value)
    if not key.strip() or len(key) > MAX_USER_ID:
        raise InvalidInput(f"'{source}' must be 1 to {MAX_USER_ID} characters, not blank")
    return key


def request_id_of(headers: Mapping[str, str]) -> str:
    given = headers.get("x-request-id")
    if given is None:
        return new_request_id()
    if not valid_request_id(given):
        raise InvalidInput(f"X-Request-Id must be {REQUEST_ID_RULE}")
    return given


class PredictPipeline:
    def __init__(
        self,
        settings: Settings,
        table: RouteTable,
        flags: FlagCache,
        bandits: BanditRuntime,
        tokens: AdminTokens,
        recorder: Recorder,
        mirror: ShadowMirror,
        metrics: GatewayMetrics,
        rng: random.Random,
        clock: Callable[[], float] = time.time,
        rollouts: RolloutRuntime | None = None,
        capture: CaptureWriter | None = None,
    ) -> None:
        self.settings = settings
        self.capture = capture
        self.rollouts = rollouts
        self.table = table
        self.flags = flags
        self.bandits = bandits
        self.tokens = tokens
        self.recorder = recorder
        self.mirror = mirror
        self.metrics = metrics
        self.rng = rng
        self.clock = clock
        self.models_dir: Path = settings.models_dir
        self.feedback_secret = feedback_secret(settings)

    async def handle(
        self, request: Request, model: str | None, later: list[Finish] | None = None
    ) -> Response:
        """One predict request. With ``later``, the bookkeeping (``finish``) is appended there
        for the caller to run once the response is on its way, instead of before it."""
        self.metrics.in_flight.inc()
        try:
            return await self._handle(request, model, later)
        finally:
            self.metrics.in_flight.dec()

    async def _handle(
        self, request: Request, model: str | None, later: list[Finish] | None
    ) -> Response:
        started = time.perf_counter()
        try:
            route = self.route(model)
            body = await read_json(request, self.settings.max_body_bytes, lenient_numbers=True)
            accepted = self.accept(require_object(body), request.headers, route.experiment.input)
        except TurnoutError as exc:
            self.metrics.rejected.labels(exc.code).inc()
            raise
        decided, served = await self.serve(route, accepted, request.headers, started, later)
        return self.respond(accepted, decided, served)

    async def serve(
        self,
        route: Route,
        accepted: PredictInput,
        headers: Mapping[str, str],
        started: float,
        later: list[Finish] | None = None,
    ) -> tuple[Decided, Served]:
        """Steer, forward, finish and mirror one accepted request (every front door's core);
        ``finish`` goes to ``later`` when given (see ``handle``)."""
        try:
            decided = self.steer(route, accepted, headers)
        except TurnoutError as exc:
            self.metrics.rejected.labels(exc.code).inc()
            raise
        served: Served | None = None
        try:
            served = await forward(
                decided.route,
                decided.steering.decision.variant,
                accepted.payload,
                accepted.request_id,
                self.metrics,
                # A kill switch or a rollback flag names who answers: no failover past it.
                failover=decided.steering.forced_by in (None, HEADER),
                slow_call_seconds=self.settings.upstream_slow_call_seconds,
            )
        finally:
            elapsed = time.perf_counter() - started
            if later is None:
                self.finish(accepted, decided, served, elapsed)
            else:
                later.append(partial(self.finish, accepted, decided, served, elapsed))
        if served.decoded is not None:
            self.mirror_after(accepted, decided, served)
        return decided, served

    # --- the steps ------------------------------------------------------------------------
    def accept(
        self,
        body: Mapping[str, Any],
        headers: Mapping[str, str],
        spec: InputConfig = TEXT_INPUT,
    ) -> PredictInput:
        """The front door: the experiment's input rules; a refusal is a 4xx naming the field."""
        payload = spec.payload(body, self.settings.max_text_chars)
        key = request_key(body, headers)
        context = body.get("context")
        if context is not None and not isinstance(context, dict):
            raise InvalidInput("'context' must be a JSON object")
        return PredictInput(payload, key, request_id_of(headers))

    def route(self, model: str | None) -> Route:
        """The experiment that owns ``model`` (the only one, when no model is named)."""
        snapshot = self.table.snapshot
        if model is None:
            if len(snapshot.by_model) == 1 and not snapshot.conflicts:
                return next(iter(snapshot.by_model.values()))
            models = sorted({*snapshot.by_model, *snapshot.conflicts})
            if not models:
                raise NotFound("no experiment is loaded", code="no_experiment")
            if len(models) > 1:
                raise InvalidInput(
                    "several models are routed; name one with POST /models/{model}/predict "
                    f"(models: {', '.join(models)})"
                )
            model = models[0]
        route = snapshot.by_model.get(model)
        if route is None:
            files = snapshot.conflicts.get(model)
            if files:
                raise NotFound(
                    f"model {model!r} is claimed by several experiment files "
                    f"({', '.join(f.name for f in files)}); none serves it until only one does",
                    code="conflicting_experiments",
                )
            if not MODEL_NAME.match(model):  # never a file system path of a client's making
                raise NotFound(f"unknown model {echo(model, 64)}", code="unknown_model")
            if (self.models_dir / model).is_dir():
                raise NotFound(
                    f"model {model!r} has no active experiment in {self.settings.experiments_dir}",
                    code="no_experiment",
                )
            raise NotFound(f"unknown model {model!r}", code="unknown_model")
        return route

    def steer(self, route: Route, accepted: PredictInput, headers: Mapping[str, str]) -> Decided:
        """Flags first (kill switch, forced variant, an authorised header), then the policy."""
        key = accepted.key
        uhash = user_hash(self.settings.user_hash_salt, key) if key else None
        flags = self.flags.for_experiment(route.name)
        view = self.bandits.view(route, flags, uhash)
        policy, window = self.rollouts.policy(route) if self.rollouts else (route.policy, None)
        steering = steer(
            route.experiment,
            policy,
            flags,
            key,
            self.rng,
            headers.get("x-turnout-variant"),
            lambda: self.tokens.identify(headers.get("authorization")) is not None,
            view,
        )
        if steering.ignored:
            self.metrics.forced_ignored.inc()
        held = None
        if not steering.forced_by:
            held = self.bandits.hold(route, view, uhash, steering.decision)
        return Decided(route, steering, flags, uhash, held, window)

    def outcome(
        self, accepted: PredictInput, decided: Decided, served: Served | None, elapsed: float
    ) -> Outcome:
        """What happened, as the recorder stores it (no raw text, no raw key)."""
        route, decision = decided.route, decided.steering.decision
        decoded = served.decoded if served else None
        ts = self.clock()
        window = decided.window
        return Outcome(
            request_id=accepted.request_id,
            experiment=route.name,
            config_version=route.config_version,
            variant=decision.variant,
            served_variant=served.variant if served else None,
            version=route.experiment.version_of(served.variant) if served else None,
            sticky=decision.sticky,
            propensity=decision.probability,
            user_hash=decided.user_hash,
            status=served.status if served else 503,
            latency_ms=elapsed * 1000.0,
            label=decoded.label if decoded else None,
            score=decoded.score if decoded else None,
            fallback=bool(served and served.fallback),
            failover=bool(served and served.failover),
            ts=ts,
            forced=decided.steering.forced_by,
            sticky_until=decided.held_until,
            window=window,
            slot=self.rollouts.slot(ts) if self.rollouts and window is not None else None,
            by_user=route.experiment.analysis_unit == "user",
        )

    def finish(
        self, accepted: PredictInput, decided: Decided, served: Served | None, elapsed: float
    ) -> None:
        """Metrics, the outcome into the recorder's buffer, and the access log line."""
        outcome = self.outcome(accepted, decided, served, elapsed)
        name, variant = outcome.experiment, outcome.variant
        kind = "fallback" if outcome.fallback else "ok"
        if served is None or outcome.status >= 500:
            kind = "error"
        elif outcome.status >= 400:
            kind = "rejected"
        metrics = self.metrics
        metrics.bound(metrics.requests, name, variant, outcome.version or "none", kind).inc()
        metrics.bound(metrics.request_seconds, name, variant).observe(elapsed)
        if served is not None:
            upstream = metrics.bound(metrics.upstream_seconds, name, served.variant)
            upstream.observe(served.upstream_seconds)
        self.recorder.record(outcome)
        capture = decided.route.experiment.capture
        if capture is not None and self.capture is not None:
            self.capture.offer_outcome(outcome, capture, accepted.payload)
        if self.settings.access_log:
            logs.event(
                log,
                "request",
                request_id=outcome.request_id,
                experiment=name,
                variant=variant,
                version=outcome.version,
                status=outcome.status,
                latency_ms=round(outcome.latency_ms, 3),
                fallback=outcome.fallback,
                sticky=outcome.sticky,
            )

    def feedback_token(
        self, accepted: PredictInput, decided: Decided, served: Served
    ) -> str | None:
        """The token that lets this answer's feedback be credited (``feedback.auth: signed``)."""
        route = decided.route
        if route.experiment.feedback.auth != "signed" or self.feedback_secret is None:
            return None
        expires = int(self.clock()) + self.settings.feedback_token_ttl
        version = route.experiment.version_of(served.variant)
        return mint(self.feedback_secret, accepted.request_id, route.name, version, expires)

    def response_headers(self, accepted: PredictInput, token: str | None) -> dict[str, str]:
        headers = {"x-request-id": accepted.request_id}
        if token is not None:
            headers[PROOF_HEADER] = token
        return headers

    def respond(self, accepted: PredictInput, decided: Decided, served: Served) -> Response:
        if served.decoded is None:  # the worker refused the input: pass its 4xx through
            headers = self.response_headers(accepted, None)
            return Response(served.body, served.status, headers, media_type="application/json")
        token = self.feedback_token(accepted, decided, served)
        headers = self.response_headers(accepted, token)
        route, steering = decided.route, decided.steering
        head = orjson.dumps({"label": served.decoded.label, "score": served.decoded.score})
        tail = orjson.dumps(
            {
                "model": route.experiment.model,
                "model_version": route.experiment.version_of(served.variant),
                "experiment": route.name,
                "variant": steering.decision.variant,
                "served_variant": served.variant,
                "request_id": accepted.request_id,
                "fallback": served.fallback,
                "sticky": steering.decision.sticky,
                "config_version": route.config_version,
                "forced": steering.forced_by is not None,
                "forced_by": steering.forced_by,
                "forced_ignored": steering.ignored,
                **({PROOF_FIELD: token} if token is not None else {}),
            }
        )
        # Splice the upstream's bytes in untouched: parsed once already, never re-encoded.
        content = head[:-1] + b',"prediction":' + served.body + b"," + tail[1:]
        return Response(content, 200, headers, media_type="application/json")

    def mirror_after(self, accepted: PredictInput, decided: Decided, served: Served) -> None:
        """Scheduled, not awaited: the mirror call starts once the response is on its way."""
        route = decided.route
        if route.experiment.shadow is None or not decided.flags.shadow_active:
            return
        assert served.decoded is not None
        self.mirror.mirror(
            route,
            served.variant,
            accepted.key,
            accepted.payload,
            accepted.request_id,
            served.decoded,
            served.upstream_seconds * 1000.0,
            self.rng,
            decided.user_hash if route.experiment.analysis_unit == "user" else None,
        )
