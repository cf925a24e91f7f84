"""Report commands: an experiment's per-version comparison and its shadow comparison."""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

import typer

from router.cli.client import GatewayClient
from router.cli.common import ExperimentName, UrlOption, console, fail
from router.config.experiments import NAME

app = typer.Typer()
JsonReport = Annotated[bool, typer.Option("--json", help="Print the report as JSON.")]


@app.command()
def report(
    name: ExperimentName,
    as_json: JsonReport = False,
    url: UrlOption = None,
) -> None:
    """Per-variant comparison of an experiment, computed by the gateway from Redis."""
    from router.cli.render import render_report

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


def fetch_report(name: str, kind: str, url: str | None) -> dict[str, Any]:
    """GET /experiments/{name}/{kind} from a gateway; exit 1 on refusal, 2 on a bad name."""
    if not re.match(NAME, name):
        raise fail(f"{name!r} is not an experiment name (expected {NAME})", 2)
    body = GatewayClient(url, None).call("GET", f"/experiments/{name}/{kind}", admin=False)
    return dict(body)
