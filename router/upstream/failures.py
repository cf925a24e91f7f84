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
    "refused",
)
"""Values of ``BadAnswer.kind``: the answer came, but could not be used."""


class UpstreamFailure(Exception):
    """The upstream could not answer: connection error, timeout, 5xx or an open breaker."""

    def __init__(self, reason: str, kind: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind
        """A bounded label (``BAD_ANSWER_REASONS`` for bad answers); None: derived from reason."""


class BadAnswer(UpstreamFailure):
    """The upstream answered, but not in a form its protocol adapter can decode."""

    def __init__(self, kind: str, detail: str) -> None:
        assert kind in BAD_ANSWER_REASONS, kind
        super().__init__(f"bad answer ({kind}): {detail}", kind)
        self.detail = detail
