"""The console over real HTTP on a real stack: its bad inputs, its access rules, its audit trail
and the history buckets the recorder writes for it. (Drawing is tested in a real browser in
``tests/e2e/test_console_browser.py``.)"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import httpx
import pytest

from router.local.processes import poll_until
from router.storage import keys
from tests.console_stack import (
    ACTOR,
    OPS,
    ROLLOUT,
    TOKEN,
    ConsoleStack,
    history_total,
    start_console_stack,
    unescaped_script,
)

SCRIPT = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[ConsoleStack]:
    running = start_console_stack(tmp_path_factory.mktemp("console"), models_dir)
    running.traffic("profanity", 60)
    running.traffic("ops", 20)
    yield running
    running.stop()


@pytest.fixture(autouse=True)
def clean_flags(stack: ConsoleStack) -> Iterator[None]:
    yield
    stack.redis.delete(keys.FLAGS)
    stack.redis.publish(keys.FLAGS_CHANNEL, "reset")
    poll_until(lambda: stack.flags(OPS)["kill_switch"] is False, 10, what="flags reset")


def signed_in(stack: ConsoleStack) -> tuple[httpx.Client, str]:
    """A client holding a console session, and the CSRF token of its forms."""
    client = stack.client()
    reply = client.post("/ui/login", data={"token": TOKEN, "next": f"/ui/experiments/{OPS}"})
    assert reply.status_code == 303, reply.text
    page = client.get(f"/ui/experiments/{OPS}").text
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match, "the signed-in page carries a CSRF token in its forms"
    return client, match.group(1)


# --- history ----------------------------------------------------------------------------------
def test_the_recorder_writes_history_buckets_with_an_expiry(stack: ConsoleStack) -> None:
    before = history_total(stack.redis, OPS)
    sent = stack.traffic("ops", 25, feedback=0)
    poll_until(lambda: history_total(stack.redis, OPS) == before + sent, 10, what="buckets")
    pattern = keys.history(OPS, "m", 0).rsplit(":", 1)[0] + ":*"
    for key in stack.redis.scan_iter(match=pattern):
        assert 0 < stack.redis.ttl(key) <= 7 * 86_400 + 3600
    body = httpx.get(f"{stack.url}/ui/api/experiments/{OPS}?range=15m").json()
    assert body["history"]["tier"] == "minute"
    counted = body["charts"]["volume"]["series"]
    assert sum(v or 0 for s in counted[:-1] for _, v in s["data"]) == before + sent


# --- bad input --------------------------------------------------------------------------------
def test_an_unknown_experiment_is_a_404_page(stack: ConsoleStack) -> None:
    reply = httpx.get(f"{stack.url}/ui/experiments/nope")
    assert reply.status_code == 404
    assert reply.headers["content-type"].startswith("text/html")
    assert "no experiment named &#39;nope&#39; is loaded" in reply.text
    data = httpx.get(f"{stack.url}/ui/api/experiments/nope")
    assert data.status_code == 404
    assert data.json()["error"] == "unknown_experiment"


def test_html_in_an_experiment_name_is_escaped(stack: ConsoleStack) -> None:
    reply = httpx.get(f"{stack.url}/ui/experiments/%3Cscript%3Ealert(1)")
    assert reply.status_code == 404
    assert "&lt;script&gt;alert(1)" in reply.text
    assert not unescaped_script(reply.text)
    image = httpx.get(f"{stack.url}/ui/experiments/%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E")
    assert image.status_code == 404
    assert "&lt;img src=x onerror=alert(1)&gt;" in image.text
    assert "<img src=x" not in image.text


@pytest.mark.parametrize("span", ["3x", "1.5h", "yesterday", "0m", "400d"])
def test_a_range_that_does_not_parse_is_422_with_the_reason(stack: ConsoleStack, span: str) -> None:
    page = httpx.get(f"{stack.url}/ui/experiments/{ROLLOUT}", params={"range": span})
    assert page.status_code == 422
    assert "text/html" in page.headers["content-type"]
    data = httpx.get(f"{stack.url}/ui/api/experiments/{ROLLOUT}", params={"range": span})
    assert data.status_code == 422
    assert data.json()["error"] == "invalid_input"
    assert "range" in data.json()["detail"]
    end = httpx.get(f"{stack.url}/ui/api/experiments/{ROLLOUT}", params={"end": "soon"})
    assert end.status_code == 422
    assert "end 'soon' does not parse" in end.json()["detail"]


def test_signing_in_with_a_bad_token_is_401_and_opens_no_session(stack: ConsoleStack) -> None:
    with stack.client() as client:
        reply = client.post("/ui/login", data={"token": "not-the-token"})
        assert reply.status_code == 401
        assert "not valid" in reply.text
        assert "turnout_console" not in reply.headers.get("set-cookie", "")
        act = client.post(f"/ui/experiments/{OPS}/actions/kill", data={"reason": "x"})
        assert act.status_code == 401
    assert stack.flags(OPS)["kill_switch"] is False


def test_actions_without_a_token_are_401_and_change_nothing(stack: ConsoleStack) -> None:
    before = stack.audit(OPS)
    for action, form in [
        ("kill", {"reason": "no"}),
        ("flag-set", {"flag": "banner", "value": "x"}),
        ("rollback", {"reason": "no"}),
        ("promote", {"version": "v2", "reason": "no"}),
    ]:
        reply = httpx.post(f"{stack.url}/ui/experiments/{OPS}/actions/{action}", data=form)
        assert reply.status_code == 401, action
        assert "Sign in first" in reply.text
    assert stack.flags(OPS) == {
        "kill_switch": False,
        "forced_variant": None,
        "shadow_enabled": True,
        "frozen": False,
        "banner": "",
    }
    assert stack.audit(OPS) == before


def test_an_action_with_a_bad_token_is_401_and_changes_nothing(stack: ConsoleStack) -> None:
    before = stack.audit(OPS)
    for authorization in ("Bearer wrong-token", f"Bearer {TOKEN}x", "Basic " + TOKEN):
        bad = httpx.post(
            f"{stack.url}/ui/experiments/{OPS}/actions/kill",
            data={"reason": "no"},
            headers={"authorization": authorization},
        )
        assert bad.status_code == 401, authorization
        assert TOKEN not in bad.text
    assert stack.flags(OPS)["kill_switch"] is False
    assert stack.audit(OPS) == before


def test_a_forged_cross_site_form_post_is_refused(stack: ConsoleStack) -> None:
    client, csrf = signed_in(stack)
    url = f"/ui/experiments/{OPS}/actions/kill"
    with closing(client):
        for headers in (
            {"origin": "http://evil.example"},
            {"origin": "http://127.0.0.1:1"},
            {"sec-fetch-site": "same-site"},
        ):
            reply = client.post(url, data={"csrf": csrf, "reason": "forged"}, headers=headers)
            assert reply.status_code == 403, headers
        missing = client.post(url, data={"reason": "no csrf"})
        assert missing.status_code == 403
        assert "CSRF" in missing.text
    assert stack.flags(OPS)["kill_switch"] is False


def test_html_in_a_flag_value_and_reason_is_escaped(stack: ConsoleStack) -> None:
    client, csrf = signed_in(stack)
    with closing(client):
        reply = client.post(
            f"/ui/experiments/{OPS}/actions/flag-set",
            data={"csrf": csrf, "flag": "banner", "value": SCRIPT, "reason": SCRIPT},
        )
        assert reply.status_code == 303
        page = client.get(f"/ui/experiments/{OPS}").text
    assert stack.flags(OPS)["banner"] == SCRIPT
    assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in page
    assert not unescaped_script(page)
    assert "<img src=x" not in page
    data = httpx.get(f"{stack.url}/ui/api/experiments/{OPS}").json()
    for fragment in data["fragments"].values():
        assert not unescaped_script(fragment)
        assert "<img src=x" not in fragment


def test_console_actions_are_audited_like_the_cli(stack: ConsoleStack) -> None:
    client, csrf = signed_in(stack)
    with closing(client):
        reply = client.post(
            f"/ui/experiments/{OPS}/actions/kill",
            data={"csrf": csrf, "reason": "from the console"},
            headers={"accept": "application/json"},
        )
    assert reply.status_code == 200, reply.text
    from_console = stack.audit(OPS)[0]
    stack.admin("DELETE", f"/admin/flags/{OPS}/kill_switch")
    cli_way = stack.admin(
        "PUT", f"/admin/flags/{OPS}/kill_switch", json={"value": True, "reason": "from the cli"}
    )
    assert cli_way.status_code == 200
    from_cli = stack.audit(OPS)[0]
    same = ("actor", "action", "experiment", "flag", "new")
    assert {k: from_console[k] for k in same} == {k: from_cli[k] for k in same}
    assert from_console["actor"] == ACTOR
    assert from_console["reason"] == "from the console"


def test_the_token_stays_out_of_urls_and_logs(stack: ConsoleStack) -> None:
    client, csrf = signed_in(stack)
    with closing(client):
        reply = client.post("/ui/login", data={"token": TOKEN, "next": f"/ui/experiments/{OPS}"})
        assert TOKEN not in reply.headers["location"]
        cookie = reply.headers["set-cookie"]
        assert TOKEN not in cookie
        for attribute in ("HttpOnly", "SameSite=strict", "Path=/ui"):
            assert attribute.lower() in cookie.lower()
        client.post(f"/ui/experiments/{OPS}/actions/unkill", data={"csrf": csrf})
    assert TOKEN not in stack.gateway.output()


@pytest.mark.parametrize("mode", ["off", "token"])
def test_turnout_ui_off_and_token(
    tmp_path_factory: pytest.TempPathFactory, models_dir: Path, mode: str
) -> None:
    other = start_console_stack(tmp_path_factory.mktemp(f"ui-{mode}"), models_dir, TURNOUT_UI=mode)
    try:
        page = httpx.get(f"{other.url}/ui/")
        data = httpx.get(f"{other.url}/ui/api/overview")
        if mode == "off":
            assert page.status_code == 404
            assert page.json()["error"] == "not_found"
            assert data.status_code == 404
            return
        assert page.status_code == 303
        assert page.headers["location"].startswith("/ui/login?next=")
        assert data.status_code == 401
        with other.client() as client:
            assert client.post("/ui/login", data={"token": TOKEN}).status_code == 303
            assert client.get("/ui/").status_code == 200
            assert client.get("/ui/api/overview").status_code == 200
        header = {"authorization": f"Bearer {TOKEN}"}
        assert httpx.get(f"{other.url}/ui/api/overview", headers=header).status_code == 200
    finally:
        other.stop()


def test_report_watch_refreshes_from_the_gateway(stack: ConsoleStack) -> None:
    from typer.testing import CliRunner

    from router.cli import app as cli

    result = CliRunner().invoke(
        cli,
        ["report", OPS, "--watch", "--count", "2", "--interval", "0.2", "--url", stack.url],
        env={"COLUMNS": "80"},
    )
    assert result.exit_code == 0, result.output
    assert "traffic" in result.output
    assert "every 0.2 s" in result.output
    assert "…" not in result.output
    refused = CliRunner().invoke(cli, ["report", OPS, "--watch", "--json", "--url", stack.url])
    assert refused.exit_code == 2
