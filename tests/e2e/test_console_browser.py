"""The console in a real browser (Debian's chromium, driven by Playwright) against a real stack
with traffic: every chart's series, live refresh, actions with and without the token, escaping,
no JavaScript errors, at 1280 and 390 pixels wide. Screenshots go to ``TURNOUT_SCREENSHOTS``
(the README's come from ``TURNOUT_SCREENSHOTS=docs/console``)."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from router.local.processes import free_port, poll_until
from tests.conftest import requires_ci_tool
from tests.console_stack import (
    ACTOR,
    BANDIT,
    OPS,
    ROLLOUT,
    TOKEN,
    ConsoleStack,
    start_console_stack,
)

CHROMIUM = next(
    (found for name in ("chromium", "google-chrome") if (found := shutil.which(name))),
    "/usr/bin/chromium",
)
"""Debian's chromium (``.ci/run`` installs it), or the Chrome a hosted CI runner has."""
FLAGS = [
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WIDTHS = [1280, 390]
SCRIPT = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'
SERIES_JS = """id => {
  const chart = window.turnoutCharts[id];
  if (!chart) return null;
  return chart.getOption().series.map(s => ({
    name: s.name,
    points: (s.data || []).length,
    values: (s.data || []).filter(d => {
      const v = Array.isArray(d) ? d : (d !== null && typeof d === 'object' ? d.value : d);
      return Array.isArray(v) ? v.slice(1).some(x => x !== null && x !== '-' && x !== undefined)
                              : v !== null && v !== '-' && v !== undefined;
    }).length,
  }));
}"""


@pytest.fixture(scope="module")
def playwright_browser() -> Iterator[Any]:
    found = os.path.exists(CHROMIUM) and importlib.util.find_spec("playwright") is not None
    requires_ci_tool(found, "chromium and playwright")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[ConsoleStack]:
    running = start_console_stack(tmp_path_factory.mktemp("console-ui"), models_dir, 6)
    running.traffic("profanity", 150)
    running.traffic("arms", 120, seed=1)
    running.traffic("ops", 40, seed=2)
    poll_until(lambda: gates_have_numbers(running), 30, what="gate estimates")
    yield running
    running.stop()


def gates_have_numbers(stack: ConsoleStack) -> bool:
    body = httpx.get(f"{stack.url}/experiments/{ROLLOUT}/rollout", timeout=5).json()
    estimates = {g.get("gate"): g.get("estimate") for g in body["rollout"]["gates"]}
    # The page draws both gates' series: wait until each has a number (reward needs feedback).
    return all(estimates.get(m) is not None for m in ("error_rate", "reward"))


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = os.environ.get("TURNOUT_SCREENSHOTS")
    path = Path(folder) if folder else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass
class Tab:
    page: Any
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    allowed: set[int] = field(default_factory=set)
    """HTTP statuses a test expects (a 401 page logs a failed load in the console)."""

    def problems(self) -> list[str]:
        def expected(message: str) -> bool:
            match = re.search(r"status of (\d{3})", message)
            return match is not None and int(match.group(1)) in self.allowed

        return [e for e in self.errors if not expected(e)]

    def series(self, chart: str) -> list[dict[str, Any]]:
        return list(self.page.evaluate(SERIES_JS, chart) or [])

    def names(self, chart: str) -> list[str]:
        return [s["name"] for s in self.series(chart)]


@pytest.fixture
def open_tab(playwright_browser: Any) -> Iterator[Callable[[int], Tab]]:
    """New browser contexts (no session) whose JavaScript errors fail the test."""
    tabs: list[tuple[Any, Tab]] = []

    def open_one(width: int) -> Tab:
        context = playwright_browser.new_context(viewport={"width": width, "height": 900})
        page = context.new_page()
        tab = Tab(page)
        page.on("console", lambda m: tab.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: tab.errors.append(f"uncaught: {e}"))
        page.on("request", lambda r: tab.requests.append(r.url))
        page.on("dialog", lambda d: (tab.errors.append(f"dialog: {d.message}"), d.dismiss()))
        tabs.append((context, tab))
        return tab

    yield open_one
    for context, tab in tabs:
        context.close()
        assert tab.problems() == [], "JavaScript console errors"


def wait_for_charts(tab: Tab, count: int) -> None:
    tab.page.wait_for_function(
        "n => Object.keys(window.turnoutCharts || {}).length >= n", arg=count, timeout=15_000
    )


def fits(tab: Tab, width: int) -> None:
    """Nothing wider than the window; every chart drawn at a usable size."""
    page = tab.page
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    sizes = page.evaluate(
        "Object.values(window.turnoutCharts).map(c => [c.getWidth(), c.getHeight()])"
    )
    assert sizes
    for w, h in sizes:
        assert 0 < w <= width and h > 40


def sign_in(tab: Tab, stack: ConsoleStack, path: str) -> None:
    tab.page.goto(f"{stack.url}/ui/login?next={path}")
    tab.page.fill("input[name=token]", TOKEN)
    tab.page.click("#form-login button[type=submit]")
    tab.page.wait_for_url(f"**{path}")
    assert f"signed in as {ACTOR}" in tab.page.inner_text("header.top")


# --- pages and charts -------------------------------------------------------------------------
@pytest.mark.parametrize("width", WIDTHS)
def test_overview_shows_every_experiment(
    stack: ConsoleStack, open_tab: Callable[[int], Tab], shots: Path, width: int
) -> None:
    tab = open_tab(width)
    tab.page.goto(f"{stack.url}/ui/")
    wait_for_charts(tab, 3)
    cards = tab.page.locator(".exp-card")
    assert cards.count() == 3
    text = tab.page.inner_text(".cards")
    for name in (ROLLOUT, BANDIT, OPS):
        assert name in text
        spark = tab.series(f"chart-spark-{name}")
        assert [s["name"] for s in spark] == ["requests"]
        assert spark[0]["values"] > 0
    assert "v2 running, step 1 of 3" in text
    fits(tab, width)
    tab.page.screenshot(path=str(shots / f"overview-{width}.png"), full_page=True)


@pytest.mark.parametrize("width", WIDTHS)
def test_rollout_experiment_page_draws_every_chart(
    stack: ConsoleStack, open_tab: Callable[[int], Tab], shots: Path, width: int
) -> None:
    tab = open_tab(width)
    tab.page.goto(f"{stack.url}/ui/experiments/{ROLLOUT}?range=6h")
    wait_for_charts(tab, 10)
    expected = {
        "chart-traffic": ["v1 share", "v1 weight", "v2 share", "v2 weight", "v3 share"],
        "chart-volume": ["v1 requests", "v2 requests", "v3 requests", "errors"],
        "chart-latency": ["v1 mean latency", "v2 mean latency", "v3 mean latency"],
        "chart-forest": ["difference", "95% interval"],
        "chart-shadow-confusion-0": ["v1 → v3"],
        "chart-shadow-delta-0": ["v1 → v3 score delta"],
        "chart-rollout-steps": ["v2 weight"],
        "chart-gate-error_rate": ["error_rate estimate", "error_rate interval"],
        "chart-gate-reward": ["reward estimate", "reward interval"],
    }
    for chart, names in expected.items():
        series = tab.series(chart)
        assert [s["name"] for s in series] == names, chart
        for s in series:
            if not s["name"].startswith("v3 "):  # a shadow takes no live traffic
                assert s["values"] > 0, (chart, s)
    assert "v1 → v3 agreement" in tab.names("chart-agreement")
    forest = tab.series("chart-forest")
    assert forest[0]["points"] == 8  # v2 and v3 against v1, four metrics each
    traffic = {s["name"]: s for s in tab.series("chart-traffic")}
    assert traffic["v1 share"]["values"] >= 170  # six hours of minutes, summed by two
    assert traffic["v1 share"]["points"] <= 241
    assert "Rollout of v2: running" in tab.page.inner_text("#rollout")
    assert "error_rate" in tab.page.inner_text("#rollout table")
    fits(tab, width)
    tab.page.screenshot(path=str(shots / f"experiment-{width}.png"), full_page=True)


@pytest.mark.parametrize("width", WIDTHS)
def test_bandit_page_draws_posteriors_and_shares(
    stack: ConsoleStack, open_tab: Callable[[int], Tab], shots: Path, width: int
) -> None:
    tab = open_tab(width)
    tab.page.goto(f"{stack.url}/ui/experiments/{BANDIT}")
    wait_for_charts(tab, 6)
    posteriors = tab.series("chart-posteriors")
    assert [s["name"] for s in posteriors] == ["v1 posterior", "v2 posterior", "v3 posterior"]
    assert all(s["points"] == 161 and s["values"] > 100 for s in posteriors)
    shares = tab.series("chart-bandit-shares")
    assert [s["name"] for s in shares] == ["traffic share", "P(best)"]
    assert all(s["values"] == 3 for s in shares)
    fits(tab, width)
    tab.page.screenshot(path=str(shots / f"bandit-{width}.png"), full_page=True)


def test_pages_refresh_live_without_a_reload(
    stack: ConsoleStack, open_tab: Callable[[int], Tab]
) -> None:
    tab = open_tab(1280)
    tab.page.goto(f"{stack.url}/ui/experiments/{OPS}?range=15m")
    wait_for_charts(tab, 4)
    total = "() => window.turnoutCharts['chart-volume'].getOption().series.slice(0, -1)" + (
        ".flatMap(s => s.data).reduce((n, d) => n + (Number(d[1]) || 0), 0)"  # '-', null: 0
    )
    before = tab.page.evaluate(total)
    tab.page.evaluate("window.__still_here = 'yes'")
    sent = stack.traffic("ops", 30, feedback=0, seed=5)
    # Up to a minute and more: a count may show once its minute's bucket rolls over.
    try:
        tab.page.wait_for_function(f"n => ({total})() >= n", arg=before + sent, timeout=75_000)
    except Exception as exc:  # say what the page saw, so a failure under load can be explained
        seen = tab.page.evaluate(
            f"() => [({total})(), window.turnoutConsole.refreshes, window.turnoutConsole.failures,"
            " document.hidden, document.getElementById('live-status').textContent]"
        )
        raise AssertionError(
            f"chart total, refreshes, failures, hidden, status = {seen}; before {before}, "
            f"sent {sent}, errors {tab.errors}"
        ) from exc
    assert tab.page.evaluate("window.__still_here") == "yes"
    assert tab.page.evaluate("performance.getEntriesByType('navigation').length") == 1
    assert tab.page.evaluate("window.turnoutConsole.refreshes") >= 1
    assert "live · updated" in tab.page.inner_text("#live-status")


# --- actions ------------------------------------------------------------------------------------
def test_actions_are_refused_without_the_token_and_change_nothing(
    stack: ConsoleStack, open_tab: Callable[[int], Tab]
) -> None:
    tab = open_tab(1280)
    tab.allowed = {401}
    before = (stack.flags(OPS), stack.audit(OPS))
    tab.page.goto(f"{stack.url}/ui/experiments/{OPS}")
    tab.page.fill("#form-kill input[name=reason]", "no token")
    tab.page.click("#form-kill button[type=submit]")
    tab.page.wait_for_selector(".error-page")
    assert tab.page.get_attribute(".error-page", "data-status") == "401"
    tab.page.goto(f"{stack.url}/ui/experiments/{OPS}")
    tab.page.fill("#form-rollback input[name=reason]", "no token")
    tab.page.click("#form-rollback button[type=submit]")
    tab.page.wait_for_selector(".error-page")
    assert (stack.flags(OPS), stack.audit(OPS)) == before


def test_actions_with_the_token_work_and_are_audited(
    stack: ConsoleStack, open_tab: Callable[[int], Tab], shots: Path
) -> None:
    tab = open_tab(1280)
    page = tab.page
    sign_in(tab, stack, f"/ui/experiments/{OPS}")

    def act(form: str, button: str = "button[type=submit]", **fields: str) -> None:
        for name, value in fields.items():
            selector = f"{form} [name={name}]"
            if page.locator(selector).evaluate("e => e.tagName") == "SELECT":
                page.select_option(selector, value)
            else:
                page.fill(selector, value)
        page.click(f"{form} {button}")
        page.wait_for_selector(".notice.ok")

    act("#form-kill", reason="drill")
    assert stack.flags(OPS)["kill_switch"] is True
    assert "kill_switch = true" in page.inner_text("[data-fragment=summary]")
    act("#form-kill", reason="drill over")
    assert stack.flags(OPS)["kill_switch"] is False
    act("#form-rollback", to="v1", reason="v2 looks wrong")
    assert stack.flags(OPS)["forced_variant"] == "v1"
    act("#form-undo-rollback", reason="false alarm")
    assert stack.flags(OPS)["forced_variant"] is None
    act("#form-flag-set", flag="shadow_enabled", value="false", reason="quiet")
    assert stack.flags(OPS)["shadow_enabled"] is False
    act("#form-flag-clear", flag="shadow_enabled", reason="back")
    assert stack.flags(OPS)["shadow_enabled"] is True
    audit = stack.audit(OPS)
    assert [e["action"] for e in audit[:6]] == [
        "clear",
        "set",
        "rollback_cleared",
        "rollback",
        "clear",
        "set",
    ]
    assert {e["actor"] for e in audit[:6]} == {ACTOR}
    assert "v2 looks wrong" in page.inner_text("#audit")
    page.screenshot(path=str(shots / "actions-1280.png"), full_page=False)
    act("#form-promote", version="v2", reason="v2 is better")
    poll_until(
        lambda: any(
            e["name"] == OPS and e["control"] == "v2" and e["policy"] == "blue_green"
            for e in httpx.get(f"{stack.url}/experiments").json()["experiments"]
        ),
        10,
        what="promotion",
    )
    assert stack.audit(OPS)[0]["action"] == "promote"
    assert not any(TOKEN in url for url in tab.requests)
    assert TOKEN not in page.url


def test_rollout_pause_resume_abort(stack: ConsoleStack, open_tab: Callable[[int], Tab]) -> None:
    tab = open_tab(1280)
    page = tab.page
    sign_in(tab, stack, f"/ui/experiments/{ROLLOUT}")

    def phase() -> str:
        body = httpx.get(f"{stack.url}/experiments/{ROLLOUT}/rollout").json()
        return str(body["rollout"]["phase"])

    for button, done, expected in [
        ("Pause", "rollout paused", "paused"),
        ("Resume", "rollout resumed", "running"),
        ("Abort", "rollout aborted", "aborted"),
    ]:
        page.fill("#form-rollout input[name=reason]", f"{button.lower()} from the console")
        page.click(f"#form-rollout button:has-text('{button}')")
        page.wait_for_selector(".notice.ok")
        assert done in page.inner_text(".notice.ok")
        assert phase() == expected
    actions = [e["action"] for e in stack.audit(ROLLOUT)[:3]]
    assert actions == ["rollout_abort", "rollout_resume", "rollout_pause"]


def test_a_script_in_a_flag_value_or_reason_never_runs(
    stack: ConsoleStack, open_tab: Callable[[int], Tab]
) -> None:
    tab = open_tab(1280)
    page = tab.page
    sign_in(tab, stack, f"/ui/experiments/{BANDIT}")
    page.select_option("#form-flag-set [name=flag]", "banner")
    page.fill("#form-flag-set [name=value]", SCRIPT)
    page.fill("#form-flag-set [name=reason]", SCRIPT)
    page.click("#form-flag-set button[type=submit]")
    page.wait_for_selector(".notice.ok")
    assert stack.flags(BANDIT)["banner"] == SCRIPT
    page.reload()
    wait_for_charts(tab, 6)
    page.evaluate("window.turnoutConsole.refresh()")  # the fragments, redrawn live
    assert SCRIPT in page.inner_text("[data-fragment=summary]")
    assert SCRIPT in page.inner_text("#audit")
    assert page.evaluate("window.__pwned === undefined")


def test_a_forged_cross_site_form_is_refused(
    stack: ConsoleStack, open_tab: Callable[[int], Tab]
) -> None:
    tab = open_tab(1280)
    tab.allowed = {401, 403}
    sign_in(tab, stack, f"/ui/experiments/{BANDIT}")
    target = f"{stack.url}/ui/experiments/{BANDIT}/actions/kill"
    html = (
        '<!doctype html><html><head><link rel="icon" href="data:,"></head><body>'
        f'<form id="f" method="post" action="{target}">'
        '<input name="reason" value="forged"></form>'
        '<script>document.getElementById("f").submit()</script></body></html>'
    ).encode()

    class Evil(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-type", "text/html")
            self.end_headers()
            self.wfile.write(html)

        def log_message(self, *args: object) -> None:
            return None

    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), Evil)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        for host in ("127.0.0.1", "localhost"):  # the same site on another port, another site
            tab.page.goto(f"http://{host}:{port}/")
            tab.page.wait_for_selector(".error-page")
            assert tab.page.get_attribute(".error-page", "data-status") in ("401", "403")
            assert stack.flags(BANDIT)["kill_switch"] is False
    finally:
        server.shutdown()
        server.server_close()
