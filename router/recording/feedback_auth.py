"""Feedback no one can forge: the signed feedback token and each ``feedback.auth`` mode's demand.

Pure: no I/O, no clock of its own. A token is ``<expiry>.<mac>``: the expiry in Unix seconds,
and the first 16 bytes of HMAC-SHA256, under the gateway's ``TURNOUT_FEEDBACK_SECRET``, of the
request id, the experiment, the served version and that expiry (base64url, no padding). So a
token credits one request of one experiment, to the version that really answered it, until it
expires; exactly once, because a request takes one feedback (``FeedbackWriter``).
"""

from __future__ import annotations

import base64
import hmac
import re
from dataclasses import dataclass

from router.core.errors import InvalidInput
from router.core.settings import Settings

PROOF_HEADER = "x-turnout-feedback-token"
PROOF_FIELD = "feedback_token"
MAX_TOKEN_CHARS = 64
_SHAPE = re.compile(r"^([0-9]{1,12})\.([A-Za-z0-9_-]{22})$")
_DOMAIN = b"turnout-feedback-token-v1"
_MAC_BYTES = 16


class UntrustedFeedback(InvalidInput):
    """Feedback without the proof its experiment's ``feedback.auth`` demands (401).

    An ``InvalidInput`` so that feedback answered 202 earlier (held or queued) and refused when
    applied ends as ``invalid`` like any other refused feedback."""

    status = 401
    code = "untrusted_feedback"


def feedback_secret(settings: Settings) -> bytes | None:
    secret = settings.feedback_secret
    return secret.get_secret_value().encode() if secret is not None else None


def _mac(secret: bytes, request_id: str, experiment: str, version: str, expires: int) -> str:
    message = b"\x00".join(
        (_DOMAIN, request_id.encode(), experiment.encode(), version.encode(), str(expires).encode())
    )
    digest = hmac.new(secret, message, "sha256").digest()[:_MAC_BYTES]
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def mint(secret: bytes, request_id: str, experiment: str, version: str, expires: int) -> str:
    """The token a response carries: valid for this request's feedback until ``expires``."""
    return f"{expires}.{_mac(secret, request_id, experiment, version, expires)}"


def refusal(
    secret: bytes, token: str, request_id: str, experiment: str, version: str, now: float
) -> tuple[str, str] | None:
    """Why ``token`` does not credit this request (code, reason), or None when it does."""
    shape = _SHAPE.match(token)
    if shape is None:
        return "feedback_token_malformed", "the feedback token is not one this gateway makes"
    expires = int(shape.group(1))
    expected = _mac(secret, request_id, experiment, version, expires)
    # The signature first, so an attacker cannot learn expiries apart from signatures.
    if not hmac.compare_digest(shape.group(2).encode(), expected.encode()):
        return (
            "feedback_token_invalid",
            "the feedback token was not made for this request (or was altered)",
        )
    if now > expires:
        return "feedback_token_expired", f"the feedback token expired at {expires} (Unix time)"
    return None


@dataclass(frozen=True, slots=True)
class Proof:
    """What a feedback brought to show it may be credited."""

    token: str | None = None
    """The signed feedback token of its response (``feedback.auth: signed``)."""
    source: str | None = None
    """The name of the label source's credential the gateway checked (``feedback.auth: token``)."""


NO_PROOF = Proof()


def demand(
    mode: str,
    proof: Proof,
    secret: bytes | None,
    request_id: str,
    experiment: str,
    version: str,
    now: float,
) -> None:
    """Raise ``UntrustedFeedback`` unless ``proof`` satisfies ``mode`` for this request."""
    if mode == "signed":
        if secret is None:
            raise UntrustedFeedback(
                f"experiment {experiment!r} takes signed feedback only and this gateway has no "
                "TURNOUT_FEEDBACK_SECRET to check it",
                code="feedback_secret_unset",
            )
        if proof.token is None:
            raise UntrustedFeedback(
                f"experiment {experiment!r} takes signed feedback only: send the response's "
                f"feedback token as '{PROOF_FIELD}' (or the X-Turnout-Feedback-Token header)",
                code="feedback_token_missing",
            )
        refused = refusal(secret, proof.token, request_id, experiment, version, now)
        if refused is not None:
            raise UntrustedFeedback(refused[1], code=refused[0])
    elif mode == "token" and proof.source is None:
        raise UntrustedFeedback(
            f"experiment {experiment!r} takes feedback from label sources only: send "
            "Authorization: Bearer <feedback token> (TURNOUT_FEEDBACK_TOKENS)",
            code="feedback_credential_missing",
        )
