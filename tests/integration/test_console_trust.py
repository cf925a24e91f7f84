"""The console's trust boundaries over real HTTP, real gateways and a real Redis: the names the
operators' routes answer to (DNS rebinding), and sign-out ending a session on every replica."""

from __future__ import annotations

import json
import re
import time

import httpx
import pytest

from router.local.processes import poll_until
from router.local.redis_server import RedisTopology
from tests.conftest import Gateway, GatewayFactory

TOKEN = "trust-test-token-0123456789"
EVIL = "evil.example"


@pytest.fixture(scope="module")
def replicas(
    start_gateway: GatewayFactory,
    redis_server: RedisTopology,
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Gateway, Gateway]:
    folder = tmp_path_factory.mktemp("experiments")
    env = {
        **redis_server.env,
        "TURNOUT_ADMIN_TOKENS": json.dumps({"ops": TOKEN}),
        "TURNOUT_UI": "token",
    }
    return (
        start_gateway(folder, wait_ready=False, **env),
        start_gateway(folder, wait_ready=False, **env),
    )


def sign_in(gateway: Gateway) -> tuple[str, str]:
    """A fresh session on ``gateway``: its cookie value and the CSRF token of its forms."""
    with httpx.Client(base_url=gateway.url, timeout=10.0) as client:
        reply = client.post("/ui/login", data={"token": TOKEN, "next": "/ui/"})
        assert reply.status_code == 303, reply.text
        cookie = client.cookies["turnout_console"]
        page = client.get("/ui/").text
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match, "a signed-in page carries the sign-out form's CSRF token"
    return cookie, match.group(1)


def views(gateway: Gateway, cookie: str) -> int:
    reply = httpx.get(
        f"{gateway.url}/ui/api/overview", cookies={"turnout_console": cookie}, timeout=10.0
    )
    return reply.status_code


def sign_out(gateway: Gateway, cookie: str, csrf: str) -> httpx.Response:
    return httpx.post(
        f"{gateway.url}/ui/logout",
        data={"csrf": csrf},
        cookies={"turnout_console": cookie},
        timeout=10.0,
    )


# --- Host -------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/ui/", "/ui/login", "/ui/static/console.js", "/admin/flags"])
def test_the_operators_routes_refuse_an_untrusted_host_with_the_reason(
    replicas: tuple[Gateway, Gateway], path: str
) -> None:
    gateway, _ = replicas
    headers = {
        "host": f"{EVIL}:8000",
        "authorization": f"Bearer {TOKEN}",
        "accept": "application/json",
    }
    reply = httpx.get(gateway.url + path, headers=headers, timeout=10.0)
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"] == "untrusted_host"
    assert EVIL in reply.json()["detail"] and "TURNOUT_TRUSTED_HOSTS" in reply.json()["detail"]


def test_a_sign_in_from_an_untrusted_host_opens_no_session(
    replicas: tuple[Gateway, Gateway],
) -> None:
    gateway, _ = replicas
    reply = httpx.post(
        f"{gateway.url}/ui/login", data={"token": TOKEN}, headers={"host": EVIL}, timeout=10.0
    )
    assert reply.status_code == 400
    assert "turnout_console" not in reply.headers.get("set-cookie", "")


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost:1234", "[::1]:8000"])
def test_the_loopback_names_reach_the_operators_routes(
    replicas: tuple[Gateway, Gateway], host: str
) -> None:
    gateway, _ = replicas
    headers = {"host": host, "authorization": f"Bearer {TOKEN}"}
    assert httpx.get(f"{gateway.url}/admin/flags", headers=headers, timeout=10.0).status_code == 200


def test_the_public_routes_answer_any_host(replicas: tuple[Gateway, Gateway]) -> None:
    gateway, _ = replicas
    headers = {"host": EVIL}
    assert httpx.get(f"{gateway.url}/healthz", headers=headers, timeout=10.0).status_code == 200
    predict = httpx.post(
        f"{gateway.url}/predict", json={"text": "hi"}, headers=headers, timeout=10.0
    )
    assert predict.status_code != 400 or "untrusted_host" not in predict.text


# --- sign-out ---------------------------------------------------------------------------------
def test_a_signed_out_cookie_is_refused_on_this_replica_and_the_other(
    replicas: tuple[Gateway, Gateway],
) -> None:
    here, there = replicas
    cookie, csrf = sign_in(here)
    kept, kept_csrf = sign_in(here)  # another session of the same token
    assert views(here, cookie) == 200 and views(there, cookie) == 200
    assert sign_out(here, cookie, csrf).status_code == 303
    assert views(here, cookie) == 401, "the copied cookie still views on the same replica"
    assert sign_out(here, cookie, csrf).status_code == 401, "and still acts"
    started = time.monotonic()
    poll_until(lambda: views(there, cookie) == 401, 5, what="the other replica refusing it")
    print(f"other replica refused the signed-out cookie after {time.monotonic() - started:.3f} s")
    assert sign_out(there, cookie, csrf).status_code == 401
    assert views(here, kept) == 200 and views(there, kept) == 200, "only that session ended"
    assert sign_out(there, kept, kept_csrf).status_code == 303
