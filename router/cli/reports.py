"""Report commands: an experiment's per-version comparison and its shadow comparison."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.text import Text

from router.cli.client import GatewayClient, GatewayError
from router.cli.common import ExperimentName, UrlOption, console, fail
from router.config.experiments import NAME

app = typer.Typer()
JsonReport = Annotated[bool, typer.Option("--json", help="Print the report as JSON.")]


@app.command()
def report(
    name: ExperimentName,
    as_json: JsonReport = False,
    url: UrlOption = None,
    watch: Annotated[bool, typer.Option("--watch", help="Refresh in place until Ctrl-C.")] = False,
    interval: Annotated[
        float, typer.Option(min=0.2, help="Seconds between refreshes with --watch.")
    ] = 2.0,
    count: Annotated[
        int | None,
        typer.Option(min=1, help="With --watch: stop after this many draws.", show_default=False),
    ] = None,
) -> None:
    """Per-variant comparison of an experiment, computed by the gateway from Redis."""
    from router.cli.render import render_report, report_view

    if watch and as_json:
        raise fail("--watch draws the report in place; it does not go with --json", 2)
    if watch:
        check_name(name)
        gateway = GatewayClient(url, None)
        path = f"/experiments/{name}/report"

        def view() -> RenderableType:
            return report_view(gateway.request("GET", path, admin=False))

        watch_in_place(console, view, interval, count)
        return
    body = fetch_report(name, "report", url)
    if as_json:
        print(json.dumps(body, indent=2))
        return
    render_report(console, body)


@app.command("shadow-report")
def shadow_report(
    name: ExperimentName,
    as_json: JsonReport = False,
    url: UrlOption = None,
) -> None:
    """Shadow versions against the primary they shadowed: agreement, McNemar, score deltas."""
    from router.cli.render import render_shadow_report

    body = fetch_report(name, "shadow", url)
    if as_json:
        print(json.dumps(body, indent=2))
        return
    render_shadow_report(console, body)


def check_name(name: str) -> None:
    if not re.match(NAME, name):
        raise fail(f"{name!r} is not an experiment name (expected {NAME})", 2)


def watch_in_place(
    out: Console,
    view: Callable[[], RenderableType],
    interval: float,
    count: int | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Draw ``view()`` and redraw it in place every ``interval`` seconds (``count`` times, or
    until Ctrl-C). A failed refresh keeps the last good view and says why under it."""

    def frame() -> RenderableType:
        stamp = datetime.now().strftime("%H:%M:%S")
        try:
            last[0] = view()
            note = f"[dim]updated {stamp}, every {interval:g} s (Ctrl-C to stop)[/dim]"
        except GatewayError as exc:
            note = f"[red]not updated at {stamp}:[/red] {escape(str(exc))}"
        return Group(last[0], Text.from_markup(note))

    last: list[RenderableType] = [Text("waiting for the first answer")]
    try:
        with Live(frame(), console=out, auto_refresh=False, transient=False) as live:
            shown = 1
            while count is None or shown < count:
                sleep(interval)
                shown += 1
                live.update(frame(), refresh=True)
    except KeyboardInterrupt:
        return


def fetch_report(name: str, kind: str, url: str | None) -> dict[str, Any]:
    """GET /experiments/{name}/{kind} from a gateway; exit 1 on refusal, 2 on a bad name."""
    check_name(name)
    body = GatewayClient(url, None).call("GET", f"/experiments/{name}/{kind}", admin=False)
    return dict(body)
