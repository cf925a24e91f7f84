"""``bentoml``: BentoML 1.x services (``POST /{api}`` with a body named after its parameter)."""

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
    parse_answer,
)
from router.upstream.protocols.http_json import BodyField


class BentoMLSettings(AnswerRules):
    api: str = Field("predict", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    """Name of the ``@bentoml.api`` method (its route)."""
    input_field: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    """The API's parameter that takes the input (default ``text``, or ``features``)."""


class BentoMLAdapter:
    passes_refusals = False

    def __init__(self, settings: BentoMLSettings) -> None:
        self.path = f"/{settings.api}"
        self.body = BodyField(settings.input_field)
        self.reader = Reader.of(settings)

    def encode(self, payload: Payload, request_id: str) -> Call:
        return Call(self.path, self.body.body(payload))

    def decode(self, body: bytes, request_id: str) -> Decoded:
        return self.reader.read(parse_answer(body))

    async def ready(self, get: Get) -> bool | None:
        status, _ = await get("/readyz")
        return status == 200


SPEC = ProtocolSpec(BentoMLSettings, BentoMLAdapter, "BentoML 1.x services")
