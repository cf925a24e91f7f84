"""``open_inference``: the Open Inference Protocol (KServe V2) REST API: MLServer, KServe, Triton.

Text goes as a ``BYTES`` tensor, numeric features as one ``FP64`` row tensor (features with
strings as one tensor per feature). Which output tensors hold the label and the score is set in
the experiment or read once from the model's metadata; the request id goes as ``id`` and must
come back.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from router.core import bounded_json
from router.core.bounded_json import flatten
from router.upstream.failures import BadAnswer
from router.upstream.protocols.base import (
    Call,
    Decoded,
    Get,
    LabelRules,
    Payload,
    ProtocolSpec,
    Reader,
    as_score,
    from_probabilities,
    json_body,
    parse_object,
)

NAME = r"^[A-Za-z0-9_.-]{1,128}$"
SCORE_TYPES = frozenset({"FP16", "FP32", "FP64", "BF16"})
SCORE_NAMES = ("predict_proba", "probabilities", "probability", "score", "scores")
LABEL_NAMES = ("predict", "label", "labels", "class", "classes")


class OpenInferenceSettings(LabelRules):
    model: str = Field(pattern=NAME)
    """Model name on the server (required)."""
    model_version: str | None = Field(None, pattern=NAME)
    """Model version on the server (default: the server's choice)."""
    input_name: str | None = Field(None, pattern=NAME)
    """Name of the input tensor (default: the first input in the model's metadata)."""
    label_output: str | None = Field(None, pattern=NAME)
    """Output tensor holding the label (default: from the model's metadata)."""
    score_output: str | None = Field(None, pattern=NAME)
    """Output tensor holding the score or class probabilities (default: from the metadata)."""


class OpenInferenceAdapter:
    passes_refusals = False

    def __init__(self, settings: OpenInferenceSettings) -> None:
        self.settings = settings
        base = f"/v2/models/{settings.model}"
        if settings.model_version:
            base += f"/versions/{settings.model_version}"
        self.model_path = base
        self.input_name = settings.input_name
        self.label_output = settings.label_output
        self.score_output = settings.score_output
        self.metadata_read = False
        self.reader = Reader.of(settings)

    @property
    def needs_metadata(self) -> bool:
        s = self.settings
        return not self.metadata_read and (
            s.input_name is None or (s.label_output is None and s.score_output is None)
        )

    def encode(self, payload: Payload, request_id: str) -> Call:
        name = self.input_name or "input-0"
        parameters: dict[str, str] = {}
        if payload.kind == "text":
            inputs = [
                {
                    "name": name,
                    "shape": [1],
                    "datatype": "BYTES",
                    "data": [payload.text],
                    "parameters": {"content_type": "str"},
                }
            ]
        elif all(not isinstance(v, str) for v in payload.features.values()):
            values = list(payload.features.values())
            inputs = [{"name": name, "shape": [1, len(values)], "datatype": "FP64", "data": values}]
        else:  # mixed types: one column tensor per feature, decoded as a data frame
            parameters["content_type"] = "pd"
            inputs = [
                {"name": k, "shape": [1], "datatype": "BYTES", "data": [v]}
                if isinstance(v, str)
                else {"name": k, "shape": [1], "datatype": "FP64", "data": [v]}
                for k, v in payload.features.items()
            ]
        body: dict[str, Any] = {"id": request_id, "inputs": inputs}
        if parameters:
            body["parameters"] = parameters
        wanted = [o for o in (self.label_output, self.score_output) if o]
        if wanted:
            body["outputs"] = [{"name": o} for o in dict.fromkeys(wanted)]
        return Call(f"{self.model_path}/infer", json_body(body))

    def decode(self, body: bytes, request_id: str) -> Decoded:
        answer = parse_object(body)
        if answer.get("error") is not None:
            raise BadAnswer("upstream_error", str(answer["error"])[:200])
        if answer.get("id") != request_id:
            raise BadAnswer(
                "id_mismatch", f"answer id {answer.get('id')!r} is not the request's {request_id!r}"
            )
        outputs = answer.get("outputs")
        if not isinstance(outputs, list) or not all(isinstance(o, dict) for o in outputs):
            raise BadAnswer("missing_field", "no 'outputs' list in answer")
        tensors = {str(o.get("name")): o for o in outputs}
        label_name, score_name = self.label_output, self.score_output
        if label_name is None and score_name is None:
            label_name, score_name = _guess(outputs)
        label: Any = None
        score: float | None = None
        if score_name is not None:
            values = flatten(_tensor(tensors, score_name).get("data"))
            shape = _tensor(tensors, score_name).get("shape")
            width = shape[-1] if isinstance(shape, list) and shape else 1
            if isinstance(width, int) and width > 1:
                label, score = from_probabilities(values[:width], self.reader.threshold, score_name)
            elif values:
                score = as_score(values[0], score_name)
                if self.reader.threshold is not None:
                    label = int(score >= self.reader.threshold)
            else:
                raise BadAnswer("missing_field", f"output '{score_name}' has no data")
        if label_name is not None:
            values = flatten(_tensor(tensors, label_name).get("data"))
            if not values:
                raise BadAnswer("missing_field", f"output '{label_name}' has no data")
            label = values[0]
        return Decoded(self.reader.map_label(label), score)

    async def ready(self, get: Get) -> bool | None:
        status, _ = await get("/v2/health/ready")
        if status != 200:
            return False
        status, _ = await get(f"{self.model_path}/ready")
        if status != 200:
            return False
        if self.needs_metadata:
            status, body = await get(self.model_path)
            if status != 200:
                return False
            self.learn(body)
        return True

    def learn(self, body: bytes) -> None:
        """Fill what the experiment left unset from the model's metadata."""
        try:
            meta = bounded_json.loads(body)
        except ValueError:
            return
        if not isinstance(meta, dict):
            return
        inputs = [i for i in meta.get("inputs") or [] if isinstance(i, dict)]
        if self.settings.input_name is None and inputs:
            self.input_name = str(inputs[0].get("name"))
        outputs = [o for o in meta.get("outputs") or [] if isinstance(o, dict)]
        if self.settings.label_output is None and self.settings.score_output is None:
            self.label_output, self.score_output = _guess(outputs)
        self.metadata_read = True


def _tensor(tensors: dict[str, dict[str, Any]], name: str) -> dict[str, Any]:
    tensor = tensors.get(name)
    if tensor is None:
        raise BadAnswer("missing_field", f"no output '{name}' in answer")
    return tensor


def _guess(outputs: list[dict[str, Any]]) -> tuple[str | None, str | None]:
    """(label output, score output) by name, else by datatype: floats are scores."""
    names = [str(o.get("name")) for o in outputs]
    score = next((n for n in SCORE_NAMES if n in names), None)
    label = next((n for n in LABEL_NAMES if n in names), None)
    for output in outputs:
        name = str(output.get("name"))
        floats = output.get("datatype") in SCORE_TYPES
        if score is None and floats and name != label:
            score = name
        if label is None and not floats and name != score:
            label = name
    return label, score


SPEC = ProtocolSpec(
    OpenInferenceSettings,
    OpenInferenceAdapter,
    "Open Inference Protocol / KServe V2 (MLServer, KServe, Triton)",
)
