"""What happened to one request, and the interface that records it (off the hot path)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from router.gateway.mirror import ShadowComparison


@dataclass(frozen=True, slots=True)
class Outcome:
    request_id: str
    experiment: str
    config_version: str
    variant: str
    """The variant the policy chose."""
    served_variant: str | None
    """The variant that answered (the control after a fallback; None if nothing answered)."""
    version: str | None
    """Model version of the served variant."""
    sticky: bool
    propensity: float
    user_hash: str | None
    """Salted hash of the request key; the raw key is never recorded."""
    status: int
    latency_ms: float
    label: object | None
    score: float | None
    fallback: bool
    ts: float
    forced: str | None = None
    """What overrode the policy (kill_switch, forced_variant, header); None: the policy chose."""
    sticky_until: float | None = None
    """Set on a sticky bandit user's first draw: the user keeps ``variant`` until then (every
    replica learns it from the record the recorder writes)."""


class Recorder(Protocol):
    def record(self, outcome: Outcome) -> None:
        """Accept an outcome without blocking; it is written later."""

    def record_shadow(self, comparison: ShadowComparison) -> None:
        """Accept a shadow comparison without blocking; it is written later."""


class NullRecorder:
    def record(self, outcome: Outcome) -> None:
        return None

    def record_shadow(self, comparison: ShadowComparison) -> None:
        return None
