"""What every protocol adapter shares: the payload it encodes, the answer it decodes, its rules.

An adapter turns a validated ``Payload`` into one HTTP call (``Call``), and an answer's bytes
into the normalized ``Decoded`` label and score that reports, shadows, feedback and the bandit
use. A label or score that the answer cannot give is None; an answer that breaks the configured
contract (a missing field, a NaN score) raises ``BadAnswer`` with a bounded reason.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Protocol

import orjson
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from router.core import bounded_json
from router.core.inputs import FeatureValue, InputKind
from router.upstream.failures import BadAnswer
from router.upstream.protocols.fields import Path, missing, parse_path, read_path, show

Label = str | int | bool
JSON_HEADERS = {"content-type": "application/json"}


def _check_path(text: str) -> str:
    parse_path(text)
    return text


FieldPath = Annotated[str, AfterValidator(_check_path)]
"""A path into the answer, checked when the experiment file loads."""
LabelValue = StrictBool | StrictInt | StrictStr


@dataclass(frozen=True, slots=True)
class Payload:
    """One request's validated input, the same for every variant it may go to."""

    kind: InputKind
    text: str = ""
    features: Mapping[str, FeatureValue] = field(default_factory=dict)
    """Named features in the experiment's declared order."""

    def value(self) -> str | dict[str, FeatureValue]:
        return self.text if self.kind == "text" else dict(self.features)


@dataclass(frozen=True, slots=True)
class Call:
    """One HTTP POST: the path under the variant's base URL and the JSON body."""

    path: str
    body: bytes


@dataclass(frozen=True, slots=True)
class Decoded:
    """The normalized answer: ``label`` and ``score``, None when the answer cannot give them."""

    label: Label | None
    score: float | None


Get = Callable[[str], Awaitable[tuple[int, bytes]]]
"""GET a path under the variant's base URL: (status, body). Raises on connection errors."""


class Adapter(Protocol):
    """One variant's way of talking to its model server."""

    passes_refusals: bool
    """True: a 4xx answer is the client's error, passed through (Turnout's own worker)."""

    def encode(self, payload: Payload, request_id: str) -> Call: ...

    def decode(self, body: bytes, request_id: str) -> Decoded:
        """Decode a 2xx answer; raise ``BadAnswer`` when it breaks the contract."""

    async def ready(self, get: Get) -> bool | None:
        """Readiness now; None: passive health only (the breaker and real traffic decide)."""


class Settings(BaseModel):
    """Base of every protocol's settings: strict and immutable, like the experiment file."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class LabelRules(Settings):
    """How a score becomes a label, and how upstream labels map to the experiment's."""

    threshold: float | None = Field(None, allow_inf_nan=False)
    """Label = 1 when score >= threshold, 0 otherwise (when the answer gives no label)."""
    labels: dict[LabelValue, LabelValue] | None = None
    """Map the upstream's labels to the experiment's (e.g. ``{true: 1, false: 0}``)."""


class AnswerRules(LabelRules):
    """Where the label and score are in an answer, for protocols whose answers vary."""

    label: FieldPath | None = None
    """Field path of the label (e.g. ``is_profane``); unset: the answer's ``label``, if any."""
    score: FieldPath | None = None
    """Field path of the score (e.g. ``confidence``); unset: the answer's ``score``, if any."""
    probabilities: FieldPath | None = None
    """Field path of a list of class probabilities: two classes give score = P(class 1), more
    give score = the top probability and label = its index."""


@dataclass(frozen=True)
class Reader:
    """``AnswerRules`` compiled: parsed paths and the label map keyed by JSON text."""

    label: Path | None
    score: Path | None
    probabilities: Path | None
    threshold: float | None
    labels: dict[str, Label] | None
    default_paths: bool
    """No path was configured: read ``label`` and ``score`` when the answer has them."""

    @classmethod
    def of(cls, rules: LabelRules, **defaults: str) -> Reader:
        configured = {
            name: getattr(rules, name, None) for name in ("label", "score", "probabilities")
        }
        chosen = configured if any(configured.values()) else {**configured, **defaults}
        paths = {k: parse_path(v) if v else None for k, v in chosen.items()}
        mapped = None
        if rules.labels is not None:
            mapped = {orjson.dumps(k).decode(): v for k, v in rules.labels.items()}
        return cls(
            paths["label"],
            paths["score"],
            paths["probabilities"],
            rules.threshold,
            mapped,
            not any(chosen.values()),
        )

    def read(self, answer: Any) -> Decoded:
        label: Any = None
        score: float | None = None
        if self.default_paths:
            if isinstance(answer, dict):
                label = answer.get("label")
                raw = answer.get("score")
                score = None if raw is None else as_score(raw, "score")
        else:
            if self.probabilities is not None:
                probs = read_path(answer, self.probabilities)
                if missing(probs):
                    raise BadAnswer("missing_field", f"no '{show(self.probabilities)}' in answer")
                label, score = from_probabilities(probs, self.threshold, show(self.probabilities))
            if self.score is not None:
                score = as_score(required(answer, self.score), show(self.score))
            if self.label is not None:
                label = required(answer, self.label)
        if label is None and score is not None and self.threshold is not None:
            label = int(score >= self.threshold)
        return Decoded(self.map_label(label), score)

    def map_label(self, raw: Any) -> Label | None:
        label = as_label(raw)
        if label is None or self.labels is None:
            return label
        key = orjson.dumps(label).decode()
        if key not in self.labels:
            raise BadAnswer("bad_label", f"label {key} is not one of labels: {sorted(self.labels)}")
        return self.labels[key]


def required(answer: Any, path: Path) -> Any:
    value = read_path(answer, path)
    if missing(value):
        raise BadAnswer("missing_field", f"no '{show(path)}' in answer")
    return value


def as_score(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadAnswer("bad_score", f"'{where}' is not a number: {_brief(value)}")
    score = float(value)
    if not math.isfinite(score):
        raise BadAnswer("bad_score", f"'{where}' is not finite: {value!r}")
    return score


def as_label(value: Any) -> Label | None:
    """A scalar label; an integral float becomes an int (numpy answers 1.0 for class 1)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise BadAnswer("bad_label", f"label is not a string, integer or boolean: {_brief(value)}")


def from_probabilities(value: Any, threshold: float | None, where: str) -> tuple[int | None, float]:
    """Class probabilities -> (label, score): two classes give P(class 1) and the threshold's
    label (default 0.5); more give the top class and its probability."""
    flat = (
        value[0]
        if isinstance(value, list) and len(value) == 1 and isinstance(value[0], list)
        else value
    )
    if not isinstance(flat, list) or not flat:
        raise BadAnswer("bad_score", f"'{where}' is not a list of probabilities: {_brief(value)}")
    probs = [as_score(p, where) for p in flat]
    if len(probs) == 1:
        score = probs[0]
        return (None if threshold is None else int(score >= threshold)), score
    if len(probs) == 2:
        cut = 0.5 if threshold is None else threshold
        return int(probs[1] >= cut), probs[1]
    top = max(range(len(probs)), key=probs.__getitem__)
    return top, probs[top]


def parse_answer(body: bytes) -> Any:
    try:
        return bounded_json.loads(body)
    except bounded_json.TooDeep as exc:
        raise BadAnswer("too_deep", f"answer is {exc}") from None
    except bounded_json.NotJSON:
        pass
    try:  # Python's json writes NaN and Infinity: name the likely culprit, a broken score
        bounded_json.loads(body, lenient=True)
    except bounded_json.TooDeep as exc:
        raise BadAnswer("too_deep", f"answer is {exc}") from None
    except bounded_json.NotJSON:
        raise BadAnswer("not_json", f"answer is not JSON: {_brief(body)}") from None
    raise BadAnswer("bad_score", "answer holds NaN or Infinity, which JSON does not allow")


def parse_object(body: bytes) -> dict[str, Any]:
    answer = parse_answer(body)
    if not isinstance(answer, dict):
        raise BadAnswer("not_object", f"answer is not a JSON object: {_brief(answer)}")
    return answer


def _brief(value: Any, limit: int = 80) -> str:
    """A short, printable excerpt of a bad value for the error's detail."""
    if isinstance(value, bytes):
        text = value[:limit].decode("utf-8", "replace")
    else:
        text = repr(value)[:limit]
    return "".join(c if c.isprintable() else " " for c in text)


def json_body(content: Any) -> bytes:
    return orjson.dumps(content)


async def all_ready(get: Get, paths: list[str]) -> bool:
    for path in paths:
        status, _ = await get(path)
        if status != 200:
            return False
    return True


@dataclass(frozen=True)
class ProtocolSpec:
    """A registry entry: the settings model a variant validates against, and the builder."""

    settings: type[Settings]
    build: Callable[[Any], Adapter]
    summary: str
