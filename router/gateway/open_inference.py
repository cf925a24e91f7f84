"""The Open Inference Protocol (KServe V2) front door: ``POST /v2/models/{model}/infer``.

It routes exactly like ``POST /models/{model}/predict`` (same pipeline, same recording) and
answers in the protocol's form, so clients that already speak it change only the URL. The user
key comes from the request's ``user_id`` parameter or the ``X-User-Id`` header. Tensors are
JSON only (the binary extension is refused with a reason).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from router.config.experiments import Experiment
from router.core.bounded_json import flatten
from router.core.errors import (
    BadRequest,
    InvalidInput,
    NotFound,
    TurnoutError,
    Unavailable,
    cut,
    echo,
)
from router.core.http import json_response, read_json, require_object
from router.gateway.forwarding import Served
from router.gateway.predict import Decided, PredictInput, PredictPipeline
from router.routing.table import Route, RouteTable

NUMERIC = frozenset(
    {"BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64"}
    | {"FP16", "FP32", "FP64", "BF16"}
)
OUTPUTS = ("label", "score")
MAX_ID = 256
MAX_DIMS = 8
"""Most dimensions of an input tensor: a text is ``[1]``, a row of features ``[1, n]``."""


def tensor_values(tensor: Mapping[str, Any], index: int) -> list[Any]:
    """The tensor's ``data`` flattened, once its ``shape`` is known to describe it: a list of
    at most ``MAX_DIMS`` non-negative integers whose product is the number of values."""
    where = f"'inputs[{index}].shape'"
    shape = tensor.get("shape")
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) for d in shape
    ):
        raise BadRequest(f"{where} must be a list of integers", code="invalid_shape")
    if len(shape) > MAX_DIMS:
        raise BadRequest(
            f"{where} has {len(shape)} dimensions; the limit is {MAX_DIMS}", code="invalid_shape"
        )
    if any(d < 0 for d in shape):
        raise BadRequest(f"{where} must hold non-negative integers: {shape}", code="invalid_shape")
    values = flatten(tensor["data"])
    if math.prod(shape) != len(values):
        raise BadRequest(
            f"{where} {shape} does not describe 'inputs[{index}].data', which holds "
            f"{len(values)} values",
            code="invalid_shape",
        )
    return values


def tensors_to_body(body: Mapping[str, Any], experiment: Experiment) -> dict[str, Any]:
    """The request's input tensors as a predict body (``text`` or ``features``), to be checked
    by the experiment's input rules like any other request."""
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not inputs or not all(isinstance(i, dict) for i in inputs):
        raise InvalidInput("'inputs' must be a non-empty list of tensors")
    for index, tensor in enumerate(inputs):
        if not isinstance(tensor.get("datatype"), str) or "data" not in tensor:
            raise InvalidInput(f"'inputs[{index}]' needs a 'datatype' and JSON 'data'")
    data = [tensor_values(tensor, index) for index, tensor in enumerate(inputs)]
    spec = experiment.input
    if spec.kind == "text":
        if len(inputs) != 1 or inputs[0]["datatype"] != "BYTES":
            raise InvalidInput("this model takes one BYTES input tensor holding one text")
        values = data[0]
        if len(values) != 1:
            raise InvalidInput(f"'inputs[0].data' must hold one text, got {len(values)} items")
        return {"text": values[0]}
    names = spec.names or []
    if len(inputs) == 1 and inputs[0]["datatype"] in NUMERIC:
        values = data[0]
        if len(values) != len(names):
            raise InvalidInput(
                f"'inputs[0].data' must hold one row of {len(names)} features "
                f"({', '.join(names)}), got {len(values)} values"
            )
        return {"features": dict(zip(names, values, strict=True))}
    features: dict[str, Any] = {}
    for index, (tensor, values) in enumerate(zip(inputs, data, strict=True)):
        if len(values) != 1:
            raise InvalidInput(f"'inputs[{index}].data' must hold one value")
        features[str(tensor.get("name"))] = values[0]
    return {"features": features}


def user_parameters(body: Mapping[str, Any]) -> dict[str, Any]:
    parameters = body.get("parameters")
    if parameters is None:
        return {}
    if not isinstance(parameters, dict):
        raise InvalidInput("'parameters' must be a JSON object")
    user = parameters.get("user_id")
    return {} if user is None else {"user_id": user}


def requested_outputs(body: Mapping[str, Any]) -> tuple[str, ...]:
    outputs = body.get("outputs")
    if outputs is None:
        return OUTPUTS
    if not isinstance(outputs, list) or not all(isinstance(o, dict) for o in outputs):
        raise InvalidInput("'outputs' must be a list of {name}")
    names = tuple(str(o.get("name")) for o in outputs)
    unknown = [n for n in names if n not in OUTPUTS]
    if unknown:
        raise InvalidInput(
            f"unknown outputs {cut(repr(unknown))}; this gateway answers {list(OUTPUTS)}"
        )
    return names


def tensor(name: str, value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        datatype = "BOOL"
    elif isinstance(value, int):
        datatype = "INT64"
    elif isinstance(value, float):
        datatype = "FP64"
    else:
        datatype, value = "BYTES", str(value)
    return {"name": name, "shape": [1], "datatype": datatype, "data": [value]}


def answer(
    route: Route,
    accepted: PredictInput,
    decided: Decided,
    served: Served,
    client_id: str | None,
    wanted: tuple[str, ...],
) -> dict[str, Any]:
    assert served.decoded is not None
    values = {"label": served.decoded.label, "score": served.decoded.score}
    decision = decided.steering.decision
    return {
        "model_name": route.experiment.model,
        "model_version": route.experiment.version_of(served.variant),
        "id": client_id if client_id is not None else accepted.request_id,
        "parameters": {
            "request_id": accepted.request_id,
            "experiment": route.name,
            "variant": decision.variant,
            "served_variant": served.variant,
            "fallback": served.fallback,
            "sticky": decision.sticky,
            "config_version": route.config_version,
            # The upstream's own answer, untouched, for clients that need it.
            "prediction": served.body.decode("utf-8", "replace"),
        },
        "outputs": [tensor(n, values[n]) for n in wanted if values[n] is not None],
    }


def refusal(body: bytes) -> dict[str, str]:
    """A worker's 4xx body, as the error it is (whatever its shape)."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        parsed = None
    if isinstance(parsed, dict):
        return {
            "error": str(parsed.get("error", "invalid_input")),
            "detail": str(parsed.get("detail", "")),
        }
    return {"error": "invalid_input", "detail": body[:200].decode("utf-8", "replace")}


def model_metadata(route: Route) -> dict[str, Any]:
    exp = route.experiment
    if exp.input.kind == "text":
        inputs = [{"name": "text", "datatype": "BYTES", "shape": [1]}]
    else:
        names = exp.input.names or []
        inputs = [{"name": "features", "datatype": "FP64", "shape": [1, len(names)]}]
    return {
        "name": exp.model,
        "versions": sorted({exp.version_of(v) for v in exp.variants}),
        "platform": "turnout",
        "inputs": inputs,
        "outputs": [
            {"name": "label", "datatype": "BYTES", "shape": [1]},
            {"name": "score", "datatype": "FP64", "shape": [1]},
        ],
        "parameters": {"experiment": exp.name, "control": exp.control},
    }


def open_inference_router(pipeline: PredictPipeline, table: RouteTable, version: str) -> APIRouter:
    router = APIRouter(prefix="/v2")

    def model_route(model: str) -> Route:
        route = table.snapshot.by_model.get(model)
        if route is None:
            raise NotFound(f"unknown model {echo(model)}", code="unknown_model")
        return route

    @router.get("")
    async def server_metadata() -> Response:
        return json_response({"name": "turnout", "version": version, "extensions": []})

    @router.get("/health/live")
    async def live() -> Response:
        return json_response({"live": True})

    @router.get("/health/ready")
    async def ready() -> Response:
        down = table.snapshot.not_ready()
        if not table.snapshot.routes or down:
            raise Unavailable(
                f"the control cannot answer for: {', '.join(down) or 'no experiment'}",
                code="not_ready",
            )
        return json_response({"ready": True})

    @router.get("/models/{model}")
    async def metadata(model: str) -> Response:
        return json_response(model_metadata(model_route(model)))

    @router.get("/models/{model}/ready")
    async def model_ready(model: str) -> Response:
        route = model_route(model)
        if not route.control_ready():
            raise Unavailable(
                f"control {route.experiment.control} of {route.name} cannot answer",
                code="not_ready",
            )
        return json_response({"name": model, "ready": True})

    @router.post("/models/{model}/infer")
    async def infer(request: Request, model: str) -> Response:
        started = time.perf_counter()
        try:
            if "inference-header-content-length" in request.headers:
                raise BadRequest(
                    "binary tensor data is not supported: send JSON tensors "
                    "(tritonclient: binary_data=False)",
                    code="unsupported_binary",
                )
            route = pipeline.route(model)
            raw = await read_json(
                request, pipeline.settings.max_body_bytes, lenient_numbers=True, untyped=True
            )
            body = require_object(raw)
            client_id = body.get("id")
            if client_id is not None and (
                not isinstance(client_id, str) or len(client_id) > MAX_ID
            ):
                raise InvalidInput(f"'id' must be a string of at most {MAX_ID} characters")
            wanted = requested_outputs(body)
            request_body = {**tensors_to_body(body, route.experiment), **user_parameters(body)}
            accepted = pipeline.accept(request_body, request.headers, route.experiment.input)
        except TurnoutError as exc:
            pipeline.metrics.rejected.labels(exc.code).inc()
            raise
        decided, served = await pipeline.serve(route, accepted, request.headers, started)
        if served.decoded is None:  # the worker refused the input: its reason, our form
            headers = pipeline.response_headers(accepted, None)
            return json_response(refusal(served.body), served.status, headers)
        token = pipeline.feedback_token(accepted, decided, served)
        headers = pipeline.response_headers(accepted, token)
        content = answer(route, accepted, decided, served, client_id, wanted)
        return json_response(content, 200, headers)

    return router
