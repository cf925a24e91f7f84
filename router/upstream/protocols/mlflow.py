"""``mlflow``: ``mlflow models serve`` (``POST /invocations`` -> ``{"predictions": [...]}``)."""

from __future__ import annotations

from typing import Literal

from router.upstream.failures import BadAnswer
from router.upstream.protocols.base import (
    AnswerRules,
    Call,
    Decoded,
    Get,
    Payload,
    ProtocolSpec,
    Reader,
    json_body,
    parse_object,
)


class MlflowSettings(AnswerRules):
    format: Literal["inputs", "dataframe_split"] | None = None
    """Request format: ``inputs`` (a tensor; the default for text) or ``dataframe_split`` (named
    columns; the default for features)."""


class MlflowAdapter:
    passes_refusals = False

    def __init__(self, settings: MlflowSettings) -> None:
        self.format = settings.format
        # A model saved with predict_proba answers one probability row per input.
        self.reader = Reader.of(settings, probabilities="predictions.0")

    def encode(self, payload: Payload, request_id: str) -> Call:
        form = self.format or ("inputs" if payload.kind == "text" else "dataframe_split")
        if form == "dataframe_split":
            columns: list[str] = ["text"]
            row: list[object] = [payload.text]
            if payload.kind == "features":
                columns, row = list(payload.features), list(payload.features.values())
            split = {"columns": columns, "data": [row]}
            return Call("/invocations", json_body({"dataframe_split": split}))
        if payload.kind == "text":
            return Call("/invocations", json_body({"inputs": [payload.text]}))
        return Call("/invocations", json_body({"inputs": [list(payload.features.values())]}))

    def decode(self, body: bytes, request_id: str) -> Decoded:
        answer = parse_object(body)
        if "error_code" in answer:
            raise BadAnswer(
                "upstream_error", str(answer.get("message", answer["error_code"]))[:200]
            )
        return self.reader.read(answer)

    async def ready(self, get: Get) -> bool | None:
        status, _ = await get("/ping")
        return status == 200


SPEC = ProtocolSpec(MlflowSettings, MlflowAdapter, "mlflow models serve")
