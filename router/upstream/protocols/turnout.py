"""``turnout``: Turnout's own worker API (``POST /predict`` -> ``{"label", "score", ...}``)."""

from __future__ import annotations

from router.upstream.failures import BadAnswer
from router.upstream.protocols.base import (
    Call,
    Decoded,
    Get,
    Payload,
    ProtocolSpec,
    Settings,
    as_label,
    as_score,
    json_body,
    parse_object,
)


class TurnoutSettings(Settings):
    """The worker API has nothing to configure."""


class TurnoutAdapter:
    passes_refusals = True

    def encode(self, payload: Payload, request_id: str) -> Call:
        return Call("/predict", json_body({payload.kind: payload.value()}))

    def decode(self, body: bytes, request_id: str) -> Decoded:
        answer = parse_object(body)
        for name in ("label", "score"):
            if name not in answer:
                raise BadAnswer("missing_field", f"no '{name}' in answer")
        return Decoded(as_label(answer["label"]), as_score(answer["score"], "score"))

    async def ready(self, get: Get) -> bool | None:
        status, _ = await get("/readyz")
        return status == 200


def build(settings: TurnoutSettings) -> TurnoutAdapter:
    return TurnoutAdapter()


SPEC = ProtocolSpec(TurnoutSettings, build, "Turnout's worker API (the default)")
