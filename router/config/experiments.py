"""What an experiment file may say: strict, immutable pydantic models (``loader`` reads files)."""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from router import hashing

NAME = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
WEIGHT_TOLERANCE = 1e-9


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Variant(Strict):
    url: str
    """Base URL of the worker that serves this variant."""
    version: str | None = None
    """Model version this variant serves (defaults to the variant's name)."""

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
    return {"key": value} if isinstance(value, str) else value


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
    _s = field_validator("sticky", mode="before")(classmethod(lambda cls, v: _sticky(v)))


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


class Experiment(Strict):
    name: str = Field(pattern=NAME)
    model: str = Field(pattern=NAME)
    control: str
    variants: dict[str, Variant] = Field(min_length=1)
    policy: PolicyConfig
    shadow: ShadowConfig | None = None
    description: str | None = None

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
        return refs

    def version_of(self, variant: str) -> str:
        return self.variants[variant].version or variant

    def configured_weights(self) -> dict[str, float]:
        """Share of traffic each variant should get, in percent (bandits: uniform baseline)."""
        policy = self.policy
        if isinstance(policy, BlueGreenPolicy):
            return {policy.active: 100.0}
        if isinstance(policy, CanaryPolicy | ABPolicy):
            return dict(policy.weights)
        return {arm: 100.0 / len(policy.arms) for arm in policy.arms}
