"""HTTP plumbing shared by the gateway and the workers: bounded JSON bodies and error mapping."""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from router.core import bounded_json, logs
from router.core.errors import (
    ClientDisconnected,
    InvalidEncoding,
    InvalidInput,
    InvalidJSON,
    PayloadTooLarge,
    RequestTimeout,
    TurnoutError,
    UnsupportedMediaType,
    cut,
)

JSON_TYPE = "application/json"
log = logging.getLogger("turnout.http")


def json_response(
    content: Any, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    body = orjson.dumps(content)
    return Response(body, status_code=status, media_type=JSON_TYPE, headers=headers)


def error_body(code: str, detail: str) -> dict[str, str]:
    return {"error": code, "detail": detail}


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The whole body, refused (413) as soon as it is known to exceed ``max_bytes``."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLarge(f"body of {declared} bytes exceeds the limit of {max_bytes} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_bytes:
                raise PayloadTooLarge(f"body exceeds the limit of {max_bytes} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        raise ClientDisconnected("the client disconnected before sending its whole body") from None
    return b"".join(chunks)


async def read_json(
    request: Request,
    max_bytes: int,
    lenient_numbers: bool = False,
    untyped: bool = False,
) -> Any:
    """Read and decode a JSON body, refusing oversize bodies before they are read whole.

    ``lenient_numbers`` also reads ``NaN``, ``Infinity`` and overflowing numbers (as Python's
    own ``json`` writes them), so the input rules can name the field that holds one.
    ``untyped`` also takes a body sent without a content-type (Open Inference clients do).
    """
    content_type = request.headers.get("content-type", "")
    if untyped and not content_type:
        content_type = JSON_TYPE
    if content_type.split(";", 1)[0].strip().lower() != JSON_TYPE:
        raise UnsupportedMediaType(
            f"content-type must be {JSON_TYPE}, got {content_type or 'none'!r}"
        )
    raw = await read_body(request, max_bytes)
    try:
        return bounded_json.loads(raw, lenient=lenient_numbers)
    except bounded_json.TooDeep as exc:
        raise InvalidJSON(f"body is {exc}") from None
    except bounded_json.NotJSON as exc:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidEncoding("body is not valid UTF-8") from None
        raise InvalidJSON(f"body is not valid JSON: {exc}") from None


def require_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InvalidInput("body must be a JSON object")
    return body


def check_text(value: Any, max_chars: int, field: str = "text") -> str:
    """The input rules every predict route shares: a non-blank string of bounded length."""
    if value is None:
        raise InvalidInput(f"'{field}' is required")
    if not isinstance(value, str):
        raise InvalidInput(f"'{field}' must be a string, got {type(value).__name__}")
    try:
        value.encode("utf-8")  # JSON may escape a lone surrogate; no model server can read one
    except UnicodeEncodeError:
        raise InvalidInput(f"'{field}' must be valid Unicode: it holds a lone surrogate") from None
    if not value.strip():
        raise InvalidInput(f"'{field}' must not be empty or whitespace only")
    if len(value) > max_chars:
        raise InvalidInput(f"'{field}' has {len(value)} characters; the limit is {max_chars}")
    return value


YOUNG_COLLECTION_THRESHOLD = 20_000
"""Allocations between young-generation collections (CPython's default: 700). A request makes
a few hundred short-lived containers; at 700 the collector ran every few requests."""


def freeze_startup_objects() -> None:
    """Move everything alive after start-up out of the collector's reach, and collect the
    young generation less often.

    A full collection over the ~120k objects that imports leave behind takes ~70 ms here and
    shows up as a p99 latency spike; frozen objects are never scanned again.
    """
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, middle, old)


SHOWN_ERRORS = 5
"""Validation errors a 422 detail lists; the rest are counted."""

ErrorPage = Callable[[Request, int, str, str], Response | None]
"""Renders an error as a page for the requests it claims (the console's HTML routes); None
leaves the error to the JSON body. Called with the request, status, code and detail."""


class ErrorResponses:
    """Every error as ``{"error", "detail"}`` with the right status, in one place (or as
    ``page``'s rendering of the same status, code and detail): FastAPI's exception handlers and
    the gateway's raw predict route both answer through it.

    A client that went away mid-body is an ordinary event: counted (``on_client_gone``) and
    logged at info, without a traceback. Anything unexpected is a 500 that names no
    internals; its traceback goes to the log."""

    def __init__(
        self, on_client_gone: Callable[[], object] | None = None, page: ErrorPage | None = None
    ) -> None:
        self.on_client_gone = on_client_gone
        self.page = page

    def respond(
        self,
        request: Request,
        status: int,
        code: str,
        detail: str,
        headers: dict[str, str] | None = None,
    ) -> Response:
        rendered = self.page(request, status, code, detail) if self.page is not None else None
        if rendered is None:
            return json_response(error_body(code, detail), status, headers)
        rendered.headers.update(headers or {})
        return rendered

    async def turnout(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, TurnoutError)
        if isinstance(exc, ClientDisconnected):
            if self.on_client_gone is not None:
                self.on_client_gone()
            logs.event(log, "client_disconnected", path=request.url.path)
        # A body that stopped halfway leaves the connection unreadable: close it.
        headers = {"connection": "close"} if isinstance(exc, RequestTimeout) else None
        return self.respond(request, exc.status, exc.code, exc.detail, headers)

    async def unexpected(self, request: Request, exc: Exception) -> Response:
        log.error(
            "unhandled_error",
            exc_info=exc,
            extra={"fields": {"path": request.url.path, "error": type(exc).__name__}},
        )
        detail = "internal error; the server's log has the details"
        return self.respond(request, 500, "internal_error", detail)

    async def http(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        codes = {404: "not_found", 405: "method_not_allowed"}
        code = codes.get(exc.status_code, "http_error")
        detail = str(exc.detail) if exc.detail else code
        return self.respond(request, exc.status_code, code, detail)

    async def validation(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = exc.errors()
        reasons = "; ".join(  # the location holds the client's keys: cut like any echo
            f"{cut('.'.join(str(p) for p in err.get('loc', ())))}: {cut(str(err.get('msg')))}"
            for err in errors[:SHOWN_ERRORS]
        )
        if len(errors) > SHOWN_ERRORS:
            reasons += f"; and {len(errors) - SHOWN_ERRORS} more"
        return self.respond(request, 422, "invalid_input", reasons)

    def install(self, app: FastAPI) -> None:
        app.add_exception_handler(TurnoutError, self.turnout)
        app.add_exception_handler(StarletteHTTPException, self.http)
        app.add_exception_handler(RequestValidationError, self.validation)
        app.add_exception_handler(Exception, self.unexpected)


def install_error_handlers(
    app: FastAPI,
    on_client_gone: Callable[[], object] | None = None,
    page: ErrorPage | None = None,
) -> ErrorResponses:
    """Map every error to ``{"error", "detail"}`` with the right status, or to ``page``'s
    rendering (``ErrorResponses``)."""
    responses = ErrorResponses(on_client_gone, page)
    responses.install(app)
    return responses
