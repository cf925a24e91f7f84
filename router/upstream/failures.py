"""Why an upstream call gave no usable answer, with a bounded label for metrics."""

from __future__ import annotations

BAD_ANSWER_REASONS = (
    "not_json",
    "not_object",
    "missing_field",
    "bad_score",
    "bad_label",
    "upstream_error",
    "id_mismatch",
    "redirect",
    "too_large",
    "too_deep",
    "bad_encoding",
    "undecodable",
    "refused",
)
"""Values of ``BadAnswer.kind``: the answer came, but could not be used."""


CALL_FAILURES = ("timeout", "slow", "connection", "error_status")
"""Values of ``UpstreamFailure.kind`` for calls made that got no answer at all."""
SKIPS = ("unhealthy", "breaker_open")
"""Values of ``UpstreamFailure.kind`` for calls not made: the upstream was known to be down."""

_WORDS = {
    "timeout": "timed out",
    "slow": "slower than the slow-call limit",
    "connection": "connection failed",
    "error_status": "answered with a server error",
    "unhealthy": "unhealthy",
    "breaker_open": "circuit breaker open",
}


class UpstreamFailure(Exception):
    """The upstream could not answer: connection error, timeout, 5xx, a bad answer, or known
    to be down. ``reason`` may name the upstream's address and the exception: logs only.
    ``kind`` is a bounded word, fit for a metric label; ``public`` is what a client may read."""

    def __init__(self, reason: str, kind: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind or _kind_of(reason)
        """``CALL_FAILURES``, ``SKIPS`` or ``BAD_ANSWER_REASONS``."""

    @property
    def skipped(self) -> bool:
        """No call was made (the upstream was already known to be down)."""
        return self.kind in SKIPS

    @property
    def public(self) -> str:
        """What a client may read: never an address or exception text. A bad answer's reason
        says what was wrong with the answer (its adapter wrote it for the client)."""
        if isinstance(self, BadAnswer):
            return self.reason
        return _WORDS.get(self.kind, self.kind.replace("_", " "))


def _kind_of(reason: str) -> str:
    if reason.startswith("upstream answered"):
        return "error_status"
    if "Timeout" in reason:
        return "timeout"
    return "connection"


class BadAnswer(UpstreamFailure):
    """The upstream answered, but not in a form its protocol adapter can decode."""

    def __init__(self, kind: str, detail: str) -> None:
        assert kind in BAD_ANSWER_REASONS, kind
        super().__init__(f"bad answer ({kind}): {detail}", kind)
        self.detail = detail
