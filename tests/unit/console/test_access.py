"""Console access: the default mode, signed sessions, CSRF tokens and cross-site refusals."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from router.admin.auth import AdminTokens
from router.console.access import COOKIE, Access, Forbidden, resolve_mode
from router.console.routes import safe_next
from router.core.errors import Unauthorized

NOW = 1_800_000_000.0
TOKENS = AdminTokens({"alice": "alice-secret-token", "bob": "bob-secret-token"})


def request(cookie: str | None = None, host: str = "127.0.0.1:8000", **headers: str) -> Request:
    raw = [(b"host", host.encode())]
    if cookie is not None:
        raw.append((b"cookie", f"{COOKIE}={cookie}".encode()))
    raw += [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]
    scope = {
        "type": "http",
        "method": "POST",
        "scheme": "http",
        "path": "/ui/x",
        "query_string": b"",
        "headers": raw,
        "server": ("127.0.0.1", 8000),
    }
    return Request(scope)


@pytest.mark.parametrize(
    ("asked", "host", "mode"),
    [
        (None, "127.0.0.1", "open"),
        (None, "127.0.0.2", "open"),
        (None, "::1", "open"),
        (None, "localhost", "open"),
        (None, "0.0.0.0", "token"),
        (None, "10.1.2.3", "token"),
        (None, "gateway.internal", "token"),
        ("open", "0.0.0.0", "open"),
        ("token", "127.0.0.1", "token"),
        ("off", "127.0.0.1", "off"),
    ],
)
def test_the_mode_follows_the_bound_address_unless_set(
    asked: str | None, host: str, mode: str
) -> None:
    assert resolve_mode(asked, host) == mode  # type: ignore[arg-type]


def test_a_session_names_the_token_and_never_holds_it() -> None:
    access = Access(TOKENS, "token", 3600)
    cookie, session = access.issue("alice", NOW)
    assert "alice-secret-token" not in cookie
    found = access.session(request(cookie), NOW + 10)
    assert found is not None
    assert found.actor == "alice"
    assert found.csrf == session.csrf
    assert access.viewer(request(cookie), NOW) == "alice"


def test_tampered_expired_or_orphaned_sessions_are_refused() -> None:
    access = Access(TOKENS, "token", 3600)
    cookie, _ = access.issue("alice", NOW)
    payload, signature = cookie.split(".")
    bob_cookie, _ = access.issue("bob", NOW)
    forged = f"{bob_cookie.split('.')[0]}.{signature}"  # bob's payload, alice's signature
    assert access.session(request(forged), NOW) is None
    assert access.session(request(payload + ".AAAA"), NOW) is None
    assert access.session(request("garbage"), NOW) is None
    assert access.session(request(cookie), NOW + 3601) is None
    without_alice = Access(AdminTokens({"bob": "bob-secret-token"}), "token", 3600)
    assert without_alice.session(request(cookie), NOW) is None  # the token was removed


def test_actions_need_a_token_and_the_session_csrf() -> None:
    access = Access(TOKENS, "open", 3600)
    cookie, session = access.issue("alice", NOW)
    assert access.actor_for_action(request(cookie), session.csrf, NOW) == "alice"
    assert access.actor_for_action(request(cookie, x_csrf_token=session.csrf), None, NOW)
    with pytest.raises(Forbidden, match="CSRF"):
        access.actor_for_action(request(cookie), "", NOW)
    other_cookie, other = access.issue("alice", NOW)
    with pytest.raises(Forbidden, match="CSRF"):  # another session's token does not do
        access.actor_for_action(request(cookie), other.csrf, NOW)
    with pytest.raises(Unauthorized):
        access.actor_for_action(request(), None, NOW)
    header = request(authorization="Bearer bob-secret-token")
    assert access.actor_for_action(header, None, NOW) == "bob"
    with pytest.raises(Unauthorized, match="not valid"):
        access.actor_for_action(request(authorization="Bearer nope"), None, NOW)
    assert other_cookie != cookie


@pytest.mark.parametrize(
    "headers",
    [
        {"origin": "http://evil.example"},
        {"origin": "http://127.0.0.1:9999"},  # another port: same site, another origin
        {"sec_fetch_site": "cross-site"},
        {"sec_fetch_site": "same-site"},
    ],
)
def test_a_post_from_another_origin_is_refused_even_with_a_session(
    headers: dict[str, str],
) -> None:
    access = Access(TOKENS, "open", 3600)
    cookie, session = access.issue("alice", NOW)
    with pytest.raises(Forbidden):
        access.actor_for_action(request(cookie, **headers), session.csrf, NOW)


def test_a_same_origin_post_passes() -> None:
    access = Access(TOKENS, "open", 3600)
    cookie, session = access.issue("alice", NOW)
    same = request(cookie, origin="http://127.0.0.1:8000", sec_fetch_site="same-origin")
    assert access.actor_for_action(same, session.csrf, NOW) == "alice"


def test_views_are_open_only_in_open_mode() -> None:
    assert Access(TOKENS, "open", 60).may_view(request(), NOW)
    token_mode = Access(TOKENS, "token", 60)
    assert not token_mode.may_view(request(), NOW)
    assert token_mode.may_view(request(authorization="Bearer alice-secret-token"), NOW)


@pytest.mark.parametrize(
    ("asked", "followed"),
    [
        ("/ui/experiments/e?tab=flags", "/ui/experiments/e?tab=flags"),
        ("/ui/a/./b", "/ui/a/b"),
        ("/ui/../admin/flags", "/ui/"),
        ("/ui/%2e%2e/admin/flags", "/ui/"),
        ("/ui/x/../../admin", "/ui/"),
        ("/ui\\..\\admin", "/ui/"),
        ("//evil.example/ui/", "/ui/"),
        ("https://evil.example/ui/", "/ui/"),
        ("/uix/secret", "/ui/"),
        (None, "/ui/"),
    ],
)
def test_next_is_normalized_and_stays_in_the_console(asked: str | None, followed: str) -> None:
    assert safe_next(asked) == followed
