"""``http_json``: any JSON-over-HTTP model service, told where its label and score are."""

from __future__ import annotations

from pydantic import Field

from router.upstream.protocols.base import (
    AnswerRules,
    Call,
    Decoded,
    Get,
    Payload,
    ProtocolSpec,
    Reader,
    json_body,
    parse_answer,
)

URL_PATH = r"^/[A-Za-z0-9._~/%-]*$"


class HttpJsonSettings(AnswerRules):
    path: str = Field("/predict", pattern=URL_PATH)
    """Path the request is POSTed to."""
    health: str = Field("/readyz", pattern=r"^(none|/[A-Za-z0-9._~/%-]*)$")
    """Readiness path (200 = ready), or ``none`` for passive health only."""
    input_field: str | None = Field(None, min_length=1)
    """Body field holding the input (default ``text``, or ``features`` for named features)."""


class BodyField:
    """``{<field>: <input>}``: the body shape of http_json and BentoML."""

    def __init__(self, field: str | None) -> None:
        self.field = field

    def body(self, payload: Payload) -> bytes:
        return json_body({self.field or payload.kind: payload.value()})


class HttpJsonAdapter:
    passes_refusals = False

    def __init__(self, settings: HttpJsonSettings) -> None:
        self.path = settings.path
        self.health: str | None = None if settings.health == "none" else settings.health
        self.body = BodyField(settings.input_field)
        self.reader = Reader.of(settings)

    def encode(self, payload: Payload, request_id: str) -> Call:
        return Call(self.path, self.body.body(payload))

    def decode(self, body: bytes, request_id: str) -> Decoded:
        return self.reader.read(parse_answer(body))

    async def ready(self, get: Get) -> bool | None:
        if self.health is None:
            return None
        status, _ = await get(self.health)
        return status == 200


SPEC = ProtocolSpec(HttpJsonSettings, HttpJsonAdapter, "any JSON-over-HTTP model service")
