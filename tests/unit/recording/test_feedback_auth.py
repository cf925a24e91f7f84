"""The signed feedback token (pure): golden vectors, and every way a token is refused."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from router.recording.feedback_auth import (
    MAX_TOKEN_CHARS,
    Proof,
    UntrustedFeedback,
    demand,
    mint,
    refusal,
)

SECRET = b"golden-secret-0123456789"
GOLDEN = [
    (("req-1", "exp", "v2", 1_700_000_000), "1700000000.mEBiqpGU2M_o-FD9DvGnew"),
    (
        ("018f3a2b-7c4d-7e5f-8a9b-0c1d2e3f4a5b", "sentiment", "2024-06", 1_767_225_600),
        "1767225600.Q2FuJBIfuMgE-tAfHdVTFA",
    ),
]


@pytest.mark.parametrize(("claim", "token"), GOLDEN)
def test_golden_vectors_pin_the_format(claim: tuple[str, str, str, int], token: str) -> None:
    rid, experiment, version, expires = claim
    assert mint(SECRET, rid, experiment, version, expires) == token
    assert len(token) <= MAX_TOKEN_CHARS
    message = b"\x00".join(
        [
            b"turnout-feedback-token-v1",
            *(p.encode() for p in (rid, experiment, version)),
            str(expires).encode(),
        ]
    )
    mac = hmac.new(SECRET, message, hashlib.sha256).digest()[:16]
    assert token == f"{expires}." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
    assert refusal(SECRET, token, rid, experiment, version, expires) is None


def code(
    token: str,
    rid: str = "req-1",
    experiment: str = "exp",
    version: str = "v2",
    now: float = 1_699_999_000.0,
    secret: bytes = SECRET,
) -> str | None:
    found = refusal(secret, token, rid, experiment, version, now)
    return found[0] if found else None


GOOD = GOLDEN[0][1]


def test_a_token_credits_only_its_own_request_experiment_version_and_secret() -> None:
    assert code(GOOD) is None
    assert code(GOOD, rid="req-2") == "feedback_token_invalid"
    assert code(GOOD, experiment="other") == "feedback_token_invalid"
    assert code(GOOD, version="v1") == "feedback_token_invalid"  # credited to the other arm
    assert code(GOOD, secret=b"another-secret-0123456789") == "feedback_token_invalid"


def test_forged_tokens_are_refused() -> None:
    expires, mac = GOOD.split(".")
    later = str(int(expires) + 10**6)
    assert code(f"{later}.{mac}") == "feedback_token_invalid"  # a longer life, same signature
    flipped = ("A" if mac[0] != "A" else "B") + mac[1:]
    assert code(f"{expires}.{flipped}") == "feedback_token_invalid"
    for bad in (
        "",
        "x",
        f"{expires}",
        f"{expires}.{mac}=",
        f"-1.{mac}",
        f"{expires}.{mac}.x",
        "9" * 13 + "." + mac,
        "a" * 500,
    ):
        assert code(bad) == "feedback_token_malformed", bad


def test_an_expired_token_is_refused_after_its_expiry_only() -> None:
    expires = int(GOOD.split(".")[0])
    assert code(GOOD, now=expires) is None
    assert code(GOOD, now=expires + 0.5) == "feedback_token_expired"


def test_each_mode_demands_its_proof() -> None:
    args = ("req-1", "exp", "v2", 1_699_999_000.0)
    demand("open", Proof(), SECRET, *args)
    demand("signed", Proof(token=GOOD), SECRET, *args)
    demand("token", Proof(source="labeller"), SECRET, *args)
    cases = [
        ("signed", Proof(), SECRET, "feedback_token_missing"),
        ("signed", Proof(source="labeller"), SECRET, "feedback_token_missing"),
        ("signed", Proof(token=GOOD), None, "feedback_secret_unset"),
        ("token", Proof(token=GOOD), SECRET, "feedback_credential_missing"),
    ]
    for mode, proof, secret, expected in cases:
        with pytest.raises(UntrustedFeedback) as refused:
            demand(mode, proof, secret, *args)
        assert (refused.value.status, refused.value.code) == (401, expected)
