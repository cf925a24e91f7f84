"""Sign-out: ended sessions (pure), and how a session and an action read them."""

from __future__ import annotations

import asyncio
from typing import cast

import pytest

from router.console.access import Access
from router.console.signout import SignedOut, SignOuts
from router.core.errors import Unavailable
from router.storage.client import RedisClient
from tests.unit.console.test_access import NOW, TOKENS, request


def test_an_ended_session_is_forgotten_once_its_cookie_expires() -> None:
    ended = SignedOut()
    ended.add("a", NOW + 10)
    ended.add("b", NOW + 100)
    ended.prune(NOW + 50)
    assert "a" not in ended and "b" in ended


def test_a_refresh_keeps_the_sign_outs_redis_has_not_taken() -> None:
    ended = SignedOut()
    ended.add("local", NOW + 10)
    ended.replace([("elsewhere", NOW + 10)], kept={"waiting": NOW + 10})
    assert "elsewhere" in ended and "waiting" in ended and "local" not in ended


def test_signing_out_ends_that_session_only() -> None:
    access = Access(TOKENS, "token", 3600)
    cookie, session = access.issue("alice", NOW)
    other, _ = access.issue("alice", NOW)
    asyncio.run(access.signouts.sign_out(session.nonce, session.expires))
    assert access.session(request(cookie), NOW + 1) is None
    assert access.session(request(other), NOW + 1) is not None


def following(clock: list[float]) -> SignOuts:
    """SignOuts as if it followed a Redis (never called here): only its bookkeeping counts."""
    return SignOuts(cast(RedisClient, object()), 5.0, 3600, lambda: clock[0])


def test_without_a_recent_read_sessions_may_view_but_not_act() -> None:
    clock = [NOW]
    signouts = following(clock)
    access = Access(TOKENS, "token", 3600, signouts)
    cookie, session = access.issue("alice", NOW)
    acting = request(cookie, origin="http://127.0.0.1:8000")
    assert access.session(acting, NOW) is not None  # viewing goes on
    with pytest.raises(Unavailable, match="cannot be checked"):
        access.actor_for_action(acting, session.csrf, NOW)
    assert access.actor_for_action(acting, session.csrf, NOW, signing_out=True) == "alice"
    signouts.refreshed_at = NOW
    assert access.actor_for_action(acting, session.csrf, NOW) == "alice"
    clock[0] = NOW + 3 * 5.0 + 1  # three intervals without a read
    with pytest.raises(Unavailable):
        access.actor_for_action(acting, session.csrf, NOW)
    signouts.refreshed_at, signouts.redis_error = clock[0], "ConnectionError: down"
    with pytest.raises(Unavailable):
        access.actor_for_action(acting, session.csrf, NOW)


def test_a_bearer_token_acts_whatever_the_sign_outs_know() -> None:
    access = Access(TOKENS, "token", 3600, following([NOW]))
    header = request(authorization="Bearer alice-secret-token")
    assert access.actor_for_action(header, None, NOW) == "alice"
