"""What an experiment file may say: strict, immutable pydantic models (``loader`` reads files)."""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)

from router import hashing
from router.core.errors import TurnoutError
from router.core.http import check_text
from router.core.inputs import FeatureType, InputKind, check_features
from router.upstream.protocols import DEFAULT_PROTOCOL, PROTOCOLS, Payload
from router.upstream.protocols import Settings as ProtocolSettings

NAME = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
FEATURE_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
WEIGHT_TOLERANCE = 1e-9
MAX_SAMPLE_CHARS = 10_000


class FieldError(ValueError):
    """A refusal about one key that a cross-field check found (the loader reports its line)."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class VariantFields(Strict):
    """What every variant says, whatever its protocol."""

    url: str
    """Base URL of the model server that serves this variant."""
    version: str | None = None
    """Model version this variant serves (defaults to the variant's name)."""
    protocol: str = DEFAULT_PROTOCOL
    """How the gateway talks to it: a key of ``router.upstream.protocols.PROTOCOLS``."""

    @field_validator("url")
    @classmethod
    def _check_url(cls, url: str, info: ValidationInfo) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"url scheme must be http or https, got {parts.scheme or 'none'!r}")
        allowed = (info.context or {}).get("allowed_hosts")
        if not parts.hostname:
            raise ValueError(f"url {url!r} has no host")
        if allowed is not None and parts.hostname not in allowed:
            raise ValueError(
                f"host {parts.hostname!r} is not in the allowed hosts "
                f"({', '.join(allowed)}; setting TURNOUT_ALLOWED_HOSTS)"
            )
        return url.rstrip("/")

    def settings(self) -> ProtocolSettings:
        """The protocol's own settings, apart from the variant's url and version."""
        model = PROTOCOLS[self.protocol].settings
        return model.model_validate({k: getattr(self, k) for k in model.model_fields})


def _variant_model(protocol: str, settings: type[ProtocolSettings]) -> type[VariantFields]:
    """A variant of one protocol: the common fields plus that protocol's settings, nothing else."""
    bases: tuple[type[BaseModel], ...] = (VariantFields, settings)
    model = create_model(
        f"{protocol.title().replace('_', '')}Variant",
        __base__=bases,
        __module__=__name__,
        protocol=(Literal[protocol], protocol),  # type: ignore[arg-type]
    )
    return model  # type: ignore[return-value]


VARIANT_MODELS = {name: _variant_model(name, spec.settings) for name, spec in PROTOCOLS.items()}


def protocol_of(value: Any) -> str:
    raw = value.get("protocol", DEFAULT_PROTOCOL) if isinstance(value, dict) else value.protocol
    return raw if isinstance(raw, str) else "?"


def protocol_settings(protocol: str) -> list[str]:
    """The settings a variant of ``protocol`` may have beside url, version and protocol."""
    return sorted(PROTOCOLS[protocol].settings.model_fields)


if TYPE_CHECKING:
    Variant = VariantFields
else:
    Variant = Annotated[
        Union[tuple(Annotated[m, Tag(n)] for n, m in VARIANT_MODELS.items())],  # noqa: UP007
        Discriminator(
            protocol_of,
            custom_error_type="unknown_protocol",
            custom_error_message=f"unknown protocol (known: {', '.join(PROTOCOLS)})",
        ),
    ]


class InputConfig(Strict):
    """What the experiment's model takes; the gateway checks every request against it once."""

    kind: InputKind = "text"
    """``text`` (one string, today's rules) or ``features`` (a JSON object of named values)."""
    names: list[str] | None = None
    """Feature names, in the order tensors and data frames take them (``features`` only)."""
    types: FeatureType | dict[str, FeatureType] = "number"
    """One type for every feature, or a type per name (unnamed ones: ``number``)."""

    @field_validator("names")
    @classmethod
    def _check_names(cls, names: list[str] | None) -> list[str] | None:
        if names is None:
            return None
        if not names:
            raise ValueError("names must list at least one feature")
        bad = [n for n in names if not re.match(FEATURE_NAME, n)]
        if bad:
            raise ValueError(f"feature names must match {FEATURE_NAME}: {', '.join(bad)}")
        if len(set(names)) != len(names):
            raise ValueError("feature names must not repeat")
        return names

    @model_validator(mode="after")
    def _check_kind(self) -> InputConfig:
        if self.kind == "text":
            stray = sorted(self.model_fields_set & {"names", "types"})
            if stray:
                raise ValueError(f"{', '.join(stray)} apply to kind: features only")
            return self
        if self.names is None:
            raise ValueError("kind: features needs names (the feature names, in order)")
        if isinstance(self.types, dict):
            unknown = sorted(set(self.types) - set(self.names))
            if unknown:
                raise ValueError(f"types names unknown features: {', '.join(unknown)}")
        return self

    def type_map(self) -> dict[str, FeatureType]:
        names = self.names or []
        if isinstance(self.types, str):
            return dict.fromkeys(names, self.types)
        return {n: self.types.get(n, "number") for n in names}

    def payload(self, body: Mapping[str, Any], max_chars: int) -> Payload:
        """The request's input as every adapter takes it; a refusal is a 422 naming the field."""
        if self.kind == "text":
            return Payload("text", text=check_text(body.get("text"), max_chars))
        names = self.names or []
        values = check_features(body.get("features"), names, self.type_map(), max_chars)
        return Payload("features", features=values)


# Scheme-specific settings; setting one the chosen scheme ignores is refused, not ignored.
_SCHEME_SETTINGS: dict[str, frozenset[str]] = {
    "turnout": frozenset({"salt"}),
    "growthbook": frozenset({"seed", "hash_version", "coverage"}),
    "unleash": frozenset({"group_id"}),
    "eppo": frozenset({"salt", "total_shards"}),
}


class StickyConfig(Strict):
    """How a request key maps to a variant (each scheme: ``router.routing.policies.weighted``)."""

    key: Literal["user_id"] = "user_id"
    """Request field the assignment hashes."""
    hash: hashing.HashScheme = hashing.DEFAULT_HASH_SCHEME
    """Bucketing scheme: Turnout's own, or one that agrees with an experimentation platform."""
    salt: str | None = None
    """Salt of the turnout and eppo schemes (defaults to the experiment name)."""
    seed: str | None = None
    """GrowthBook seed (defaults to the experiment name, as GrowthBook's to its key)."""
    hash_version: Literal[1, 2] = 2
    """GrowthBook hash version."""
    coverage: float = Field(1.0, ge=0.0, le=1.0)
    """GrowthBook coverage: share of users included; the rest get the control."""
    group_id: str | None = None
    """Unleash groupId (defaults to the experiment name)."""
    total_shards: int = Field(10_000, gt=0)
    """Eppo total shards."""

    @field_validator("salt", "group_id")
    @classmethod
    def _check_encodable(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                value.encode()
            except UnicodeEncodeError:
                raise ValueError("must be valid Unicode (it holds a lone surrogate)") from None
        return value

    @field_validator("group_id")
    @classmethod
    def _check_group_id(cls, group_id: str | None) -> str | None:
        if group_id is not None and ('"' in group_id or group_id.endswith("\\")):
            raise ValueError(
                "must not contain '\"' or end with '\\': Unleash's engine mis-reads such a "
                "groupId (the strategy matches nobody, or hashes another group)"
            )
        return group_id

    @field_validator("total_shards")
    @classmethod
    def _check_total_shards(cls, total: int) -> int:
        if total > hashing.EPPO_MAX_TOTAL_SHARDS:
            raise ValueError(
                f"must be below 2**32: Eppo stores totalShards as a 32-bit unsigned integer, "
                f"got {total}"
            )
        return total

    @model_validator(mode="after")
    def _check_settings_apply(self) -> StickyConfig:
        allowed = _SCHEME_SETTINGS[self.hash]
        stray = sorted(self.model_fields_set - allowed - {"key", "hash"})
        if stray:
            raise ValueError(
                f"{', '.join(stray)} not used by hash: {self.hash} "
                f"(it takes {', '.join(sorted(allowed))})"
            )
        return self


def _check_vendor_scheme(sticky: StickyConfig, control: str, weights: dict[str, float]) -> None:
    """Refuse weights the sticky scheme's vendor would not evaluate as written."""
    try:
        not_finite = [name for name, weight in weights.items() if not math.isfinite(weight)]
        if not_finite:  # e.g. GrowthBook would silently fall back to equal weights
            raise ValueError(f"weights must be finite numbers: {', '.join(not_finite)}")
        if sticky.hash == "growthbook" and len(weights) < 2:
            raise ValueError(
                "GrowthBook runs no experiment with fewer than two variations; "
                "weights must name at least two variants"
            )
        if sticky.hash == "unleash":
            hashing.unleash_rollout_plan([w for name, w in weights.items() if name != control])
        if sticky.hash == "eppo":
            hashing.eppo_shard_ranges(list(weights.values()), sticky.total_shards)
    except ValueError as exc:
        raise ValueError(f"policy.sticky: hash: {sticky.hash}: {exc}") from None


def _sticky(value: Any) -> Any:
    """``sticky: user_id`` is short for ``{key: user_id}``; ``sticky: false`` says "not sticky"
    (random per request), as omitting it does; ``sticky: true`` names no key."""
    if value is True:
        raise ValueError("sticky: true names no key: give it, e.g. sticky: user_id")
    if value is False:
        return None
    return {"key": value} if isinstance(value, str) else value


def _sticky_required(value: Any) -> Any:
    if value is False or value is None:
        raise ValueError("an A/B test is sticky by definition: name the key (sticky: user_id)")
    return _sticky(value)


StickyField = Annotated[StickyConfig | None, Field(default=None)]


def _check_weights(weights: dict[str, float]) -> dict[str, float]:
    if not weights:
        raise ValueError("weights must name at least one variant")
    not_finite = [k for k, w in weights.items() if not math.isfinite(w)]
    if not_finite:
        raise ValueError(f"weights must be finite numbers: {', '.join(not_finite)}")
    negative = [k for k, w in weights.items() if w < 0]
    if negative:
        raise ValueError(f"weights must not be negative: {', '.join(negative)}")
    total = sum(weights.values())
    if abs(total - 100.0) > WEIGHT_TOLERANCE:
        raise ValueError(f"weights must sum to 100, they sum to {total:g}")
    return weights


class BlueGreenPolicy(Strict):
    kind: Literal["blue_green"]
    active: str
    """The variant that takes all traffic."""


class CanaryPolicy(Strict):
    kind: Literal["canary"]
    weights: dict[str, float]
    """Percentages per variant, summing to 100."""
    sticky: StickyField = None
    """Hash key for sticky assignment; requests without it are assigned at random."""

    _w = field_validator("weights")(classmethod(lambda cls, v: _check_weights(v)))
    _s = field_validator("sticky", mode="before")(classmethod(lambda cls, v: _sticky(v)))


class ABPolicy(Strict):
    kind: Literal["ab"]
    weights: dict[str, float]
    """Percentages per variant, summing to 100."""
    sticky: StickyConfig
    """Hash key (and scheme) for sticky assignment; required for an A/B test."""

    _w = field_validator("weights")(classmethod(lambda cls, v: _check_weights(v)))
    _s = field_validator("sticky", mode="before")(classmethod(lambda cls, v: _sticky_required(v)))


class BanditPolicy(Strict):
    kind: Literal["bandit"]
    arms: list[str] = Field(min_length=1)
    """Variants the bandit chooses between."""
    reward: Literal["feedback"] = "feedback"
    """Where rewards come from: ``POST /feedback``."""
    prior: tuple[float, float] | None = None
    """Beta(alpha, beta) prior per arm (default from TURNOUT_BANDIT_PRIOR)."""
    min_share: float = Field(0.0, ge=0.0, lt=1.0)
    """Floor of traffic share per arm, so no arm is starved of exploration."""
    warmup: int = Field(0, ge=0)
    """Route uniformly until every arm has this many rewards."""
    sticky: StickyField = None
    """Keep a user on the arm first drawn for them, for TURNOUT_BANDIT_STICKY_TTL seconds."""

    _s = field_validator("sticky", mode="before")(classmethod(lambda cls, v: _sticky(v)))

    @field_validator("prior")
    @classmethod
    def _check_prior(cls, prior: tuple[float, float] | None) -> tuple[float, float] | None:
        if prior is not None and (prior[0] <= 0 or prior[1] <= 0):
            raise ValueError("prior alpha and beta must both be > 0")
        return prior

    @model_validator(mode="after")
    def _check_floor(self) -> BanditPolicy:
        if len(set(self.arms)) != len(self.arms):
            raise ValueError("arms must not repeat")
        if self.min_share * len(self.arms) >= 1.0:
            raise ValueError(
                f"min_share {self.min_share} x {len(self.arms)} arms leaves nothing to learn"
            )
        return self


PolicyConfig = Annotated[
    BlueGreenPolicy | CanaryPolicy | ABPolicy | BanditPolicy, Field(discriminator="kind")
]


class ShadowConfig(Strict):
    targets: list[str] = Field(min_length=1)
    """Variants that receive a mirrored copy of requests (their answers are compared)."""
    sample: float = Field(1.0, ge=0.0, le=1.0)
    """Share of requests mirrored; sticky by request key when there is one."""


# --- rollouts and sample-ratio checks (router.rollout) -------------------------------------

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86_400.0}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)\s*$")
_UNIT_BYTES = {
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "KiB": 2**10,
    "MiB": 2**20,
    "GiB": 2**30,
    "TiB": 2**40,
}


def parse_duration(value: Any) -> float:
    """``"10m"`` -> 600.0 seconds; a bare number or any other text is refused (no guessing)."""
    match = _DURATION.match(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(
            f"malformed duration {value!r}: a number with a unit ms, s, m, h or d "
            "(500ms, 10m, 2h, 7d)"
        )
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def parse_size(value: Any) -> int:
    """``"1GiB"`` -> 1073741824 bytes; a bare number or any other text is refused."""
    match = _SIZE.match(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(
            f"malformed size {value!r}: a number with a unit B, KB, MB, GB, KiB, MiB or GiB "
            "(500MiB, 1GiB)"
        )
    return int(float(match.group(1)) * _UNIT_BYTES[match.group(2)])


Duration = Annotated[float, BeforeValidator(parse_duration)]
Size = Annotated[int, BeforeValidator(parse_size)]


class ErrorRateGate(Strict):
    metric: Literal["error_rate"]
    max_increase: float = Field(gt=0.0, lt=1.0)
    """Largest tolerated increase of the candidate's error rate over the control's (absolute)."""
    hard_increase: float = Field(0.05, gt=0.0, le=1.0)
    """An increase shown at this size is a hard failure: it may act before ``min_samples``."""


class LatencyGate(Strict):
    metric: Literal["latency_p99"]
    max_ratio: float = Field(gt=1.0)
    """Largest tolerated ratio of the candidate's p99 latency to the control's."""


class RewardGate(Strict):
    metric: Literal["reward"]
    max_decrease: float = Field(gt=0.0, lt=1.0)
    """Largest tolerated decrease of the mean reward (from ``POST /feedback``), absolute."""
    label_delay: Duration = 0.0
    """Only requests at least this old count, so that their feedback had time to arrive."""


class ShadowAgreementGate(Strict):
    metric: Literal["shadow_agreement"]
    min: float = Field(gt=0.0, le=1.0)
    """Least share of mirrored requests on which the candidate (as a shadow) agreed."""


Gate = Annotated[
    ErrorRateGate | LatencyGate | RewardGate | ShadowAgreementGate, Field(discriminator="metric")
]
GATE_METRICS = ("error_rate", "latency_p99", "reward", "shadow_agreement")


class RolloutSettings(Strict):
    """A rollout's settings but its candidate (what ``retrain.rollout`` holds)."""

    steps: list[float] = Field(min_length=1)
    """The candidate's weight in percent at each step, strictly increasing, in (0, 100]."""
    interval: Duration
    """Least time spent on each step."""
    max_interval: Duration | None = None
    """A step still inconclusive after this long takes ``on_inconclusive`` (unset: never)."""
    min_samples: int = Field(500, ge=1)
    """Requests per arm and step before a gate that is not hard may decide."""
    gates: list[Gate] = Field(default_factory=list)
    """Candidate-vs-control checks on the same window (one per metric)."""
    alpha: float = Field(0.05, gt=0.0, le=0.5)
    """Bound on the rollout's false-rollback probability under continuous monitoring."""
    on_fail: Literal["rollback", "pause"] = "rollback"
    on_inconclusive: Literal["pause", "advance", "rollback"] = "pause"
    on_success: Literal["promote", "hold"] = "promote"

    @field_validator("steps")
    @classmethod
    def _check_steps(cls, steps: list[float]) -> list[float]:
        outside = [s for s in steps if not (math.isfinite(s) and 0.0 < s <= 100.0)]
        if outside:
            raise ValueError(f"steps must be in (0, 100], got {', '.join(map(str, outside))}")
        for before, after in itertools.pairwise(steps):
            if after <= before:
                raise ValueError(f"steps must be strictly increasing: {before:g} then {after:g}")
        return steps

    @field_validator("interval", "max_interval")
    @classmethod
    def _check_positive(cls, seconds: float | None) -> float | None:
        if seconds is not None and seconds <= 0:
            raise ValueError("must be a positive duration")
        return seconds

    @field_validator("gates")
    @classmethod
    def _check_gates(cls, gates: list[Any]) -> list[Any]:
        metrics = [g.metric for g in gates]
        repeated = sorted({m for m in metrics if metrics.count(m) > 1})
        if repeated:
            raise ValueError(f"one gate per metric; repeated: {', '.join(repeated)}")
        return gates

    @model_validator(mode="after")
    def _check_max_interval(self) -> RolloutSettings:
        if self.max_interval is not None and self.max_interval < self.interval:
            raise FieldError(("max_interval",), "must be at least the interval")
        return self


class RolloutConfig(RolloutSettings):
    candidate: str
    """The variant being rolled out against the control."""


class SrmConfig(Strict):
    action: Literal["warn", "halt"] = "warn"
    """``halt`` freezes the weights (no advance, no promotion) and fires an alert."""
    p: float = Field(0.001, gt=0.0, lt=0.5)
    """False-alarm bound of the sequential test, under continuous checking."""


# --- data capture and retraining (router.capture, turnout drift, turnout retrain) ---------------


class CaptureConfig(Strict):
    """Opt-in capture of sampled requests to files under the state folder."""

    sample: float = Field(0.05, ge=0.0, le=1.0)
    """Share of requests captured, sticky by request id (a request's outcome and its shadows'
    comparisons are captured together or not at all)."""
    inputs: bool = False
    """Keep the validated request input too (text or features): personal data, off by default.
    Without it only what is recorded anyway is kept (versions, labels, scores)."""
    retention: Duration = 7 * 86_400.0
    """Captured files older than this are deleted."""
    max_bytes: Size = 2**30
    """Most bytes of captured files per experiment; past it the oldest files are deleted."""

    @field_validator("retention")
    @classmethod
    def _check_retention(cls, seconds: float) -> float:
        if seconds <= 0:
            raise ValueError("must be a positive duration")
        return seconds

    @field_validator("max_bytes")
    @classmethod
    def _check_max_bytes(cls, size: int) -> int:
        if size < 2**20:
            raise ValueError(f"must be at least 1MiB, got {size} bytes")
        return size


class RetrainConfig(Strict):
    """How ``turnout retrain --deploy`` brings a retrained version in."""

    rollout: RolloutSettings | None = None
    """The rollout a retrained version starts with ``--deploy rollout`` (it is the candidate).
    Unset: the experiment's own ``rollout`` block's settings."""
    shadow_sample: float = Field(1.0, ge=0.0, le=1.0)
    """Share mirrored to a version added with ``--deploy shadow`` when the experiment has no
    shadow block yet."""


FeedbackAuth = Literal["open", "signed", "token"]


class FeedbackConfig(Strict):
    """Who may send ``POST /feedback`` for this experiment's requests."""

    auth: FeedbackAuth = "open"
    """``open``: anyone who can reach the gateway (and knows a request id); ``signed``: only
    with the feedback token of the response (HMAC under TURNOUT_FEEDBACK_SECRET, with an
    expiry); ``token``: only a label source's credential (TURNOUT_FEEDBACK_TOKENS)."""


class Experiment(Strict):
    name: str = Field(pattern=NAME)
    model: str = Field(pattern=NAME)
    control: str
    variants: dict[str, Variant] = Field(min_length=1)
    policy: PolicyConfig
    shadow: ShadowConfig | None = None
    fallback: list[str] = Field(default_factory=list)
    """Variants that answer, in order, when the control itself cannot (never the control);
    used only then, and counted apart (``turnout_failovers_total``)."""
    description: str | None = None
    rollout: RolloutConfig | None = None
    """A stepped rollout of a candidate, decided by gates (``router.rollout``)."""
    srm: SrmConfig | None = None
    """Sequential sample-ratio-mismatch check of the assignments against the weights."""
    input: InputConfig = InputConfig()
    """What the model takes: ``{kind: text}`` (the default) or named ``features``."""
    sample_input: dict[str, Any] | None = None
    """One request body (``{text: ...}`` or ``{features: {...}}``) for ``validate --probe``."""

    @field_validator("sample_input")
    @classmethod
    def _check_sample(
        cls, sample: dict[str, Any] | None, info: ValidationInfo
    ) -> dict[str, Any] | None:
        spec = info.data.get("input")
        if sample is not None and isinstance(spec, InputConfig):
            try:
                spec.payload(sample, MAX_SAMPLE_CHARS)
            except TurnoutError as exc:
                raise ValueError(exc.detail) from None
        return sample

    capture: CaptureConfig | None = None
    """Opt-in capture of sampled requests (``router.capture``); unset: nothing is captured."""
    retrain: RetrainConfig | None = None
    """Settings of ``turnout retrain --deploy``."""
    feedback: FeedbackConfig = FeedbackConfig()
    """Who may send feedback (``docs/reliability.md``, "Feedback trust model")."""

    @field_validator("variants")
    @classmethod
    def _check_variant_names(cls, variants: dict[str, Variant]) -> dict[str, Variant]:
        bad = [n for n in variants if not re.match(NAME, n)]
        if bad:
            raise ValueError(f"variant names must match {NAME}: {', '.join(bad)}")
        return variants

    @model_validator(mode="after")
    def _check_references(self) -> Experiment:
        known = set(self.variants)
        if self.control not in known:
            raise ValueError(f"control {self.control!r} is not one of the variants")
        for label, names in self.referenced().items():
            unknown = [n for n in names if n not in known]
            if unknown:
                raise ValueError(f"{label} names unknown variants: {', '.join(unknown)}")
        return self

    @model_validator(mode="after")
    def _check_fallback(self) -> Experiment:
        if self.control in self.fallback:
            raise ValueError("fallback must not name the control (it is tried before them)")
        if len(set(self.fallback)) != len(self.fallback):
            raise ValueError("fallback must not repeat a variant")
        return self

    @model_validator(mode="after")
    def _check_sticky_scheme(self) -> Experiment:
        policy = self.policy
        sticky = getattr(policy, "sticky", None)
        if sticky is None or sticky.hash == "turnout":
            return self
        if isinstance(policy, CanaryPolicy | ABPolicy):
            _check_vendor_scheme(sticky, self.control, policy.weights)
        else:
            raise ValueError(
                f"policy.sticky: hash: {sticky.hash} applies to canary and ab only; a "
                f"{policy.kind} keeps users on the arm drawn for them instead of hashing"
            )
        return self

    @model_validator(mode="after")
    def _check_rollout(self) -> Experiment:
        policy, rollout = self.policy, self.rollout
        weighted = isinstance(policy, CanaryPolicy | ABPolicy)
        if self.srm is not None and not weighted:
            raise FieldError(
                ("srm",), f"applies to weighted policies (canary, ab), not {policy.kind}"
            )
        if rollout is None:
            return self
        if not weighted:
            raise FieldError(
                ("policy", "kind"), f"a rollout needs policy canary or ab, not {policy.kind}"
            )
        if rollout.candidate == self.control:
            raise FieldError(("rollout", "candidate"), f"{rollout.candidate!r} is the control")
        if rollout.candidate not in self.variants:
            raise FieldError(
                ("rollout", "candidate"),
                f"{rollout.candidate!r} is not one of the variants "
                f"({', '.join(sorted(self.variants))})",
            )
        for index, gate in enumerate(rollout.gates):
            if isinstance(gate, ShadowAgreementGate) and (
                self.shadow is None or rollout.candidate not in self.shadow.targets
            ):
                raise FieldError(
                    ("rollout", "gates", index),
                    f"shadow_agreement needs the candidate {rollout.candidate!r} among "
                    "shadow.targets: there is nothing to agree with otherwise",
                )
        sticky = getattr(policy, "sticky", None)
        if sticky is not None and sticky.hash != "turnout":
            for percent in rollout.steps:
                try:
                    _check_vendor_scheme(sticky, self.control, self.step_weights(percent))
                except ValueError as exc:
                    raise FieldError(("rollout", "steps"), f"step {percent:g}: {exc}") from None
        return self

    def step_weights(self, percent: float) -> dict[str, float]:
        """The weights in force while a rollout's candidate has ``percent`` (control first)."""
        assert self.rollout is not None
        return {self.control: 100.0 - percent, self.rollout.candidate: percent}

    def referenced(self) -> dict[str, list[str]]:
        policy = self.policy
        refs: dict[str, list[str]] = {}
        if isinstance(policy, BlueGreenPolicy):
            refs["policy.active"] = [policy.active]
        elif isinstance(policy, CanaryPolicy | ABPolicy):
            refs["policy.weights"] = list(policy.weights)
        else:
            refs["policy.arms"] = list(policy.arms)
        if self.shadow:
            refs["shadow.targets"] = list(self.shadow.targets)
        if self.fallback:
            refs["fallback"] = list(self.fallback)
        return refs

    def warnings(self) -> list[str]:
        """What loads but deserves a second look (``turnout validate`` prints these, a gateway
        logs them as ``config_warning``)."""
        if self.feedback.auth != "open":
            return []
        found = []
        if isinstance(self.policy, BanditPolicy):
            found.append("policy bandit")
        if self.rollout is not None and any(isinstance(g, RewardGate) for g in self.rollout.gates):
            found.append("the rollout's reward gate")
        return [
            f"{what} acts on rewards, and feedback.auth is open: anyone who can reach "
            "POST /feedback can steer it with false rewards (set feedback.auth: signed or token)"
            for what in found
        ]

    def version_of(self, variant: str) -> str:
        return self.variants[variant].version or variant

    @property
    def analysis_unit(self) -> Literal["user", "request"]:
        """The unit that was randomized, so the unit every statistic counts: the user when
        assignment is sticky, else the request."""
        return "user" if getattr(self.policy, "sticky", None) is not None else "request"

    def configured_weights(self) -> dict[str, float]:
        """Share of traffic each variant should get, in percent (bandits: uniform baseline)."""
        policy = self.policy
        if isinstance(policy, BlueGreenPolicy):
            return {policy.active: 100.0}
        if isinstance(policy, CanaryPolicy | ABPolicy):
            return dict(policy.weights)
        return {arm: 100.0 / len(policy.arms) for arm in policy.arms}
