"""``turnout rollout status|pause|resume|abort|promote NAME``: a rollout, over the gateway's API."""

from __future__ import annotations

from typing import Any

import typer

from router.cli.client import GatewayClient
from router.cli.common import (
    ExperimentName,
    JsonOption,
    ReasonOption,
    TokenOption,
    UrlOption,
    console,
    fail,
    print_json,
)
from router.cli.render import render_rollout

app = typer.Typer(
    help="Stepped rollouts: status, pause, resume, abort, promote.", no_args_is_help=True
)


def _show(data: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(data)
    else:
        render_rollout(console, data)


@app.command("status")
def status(name: ExperimentName, url: UrlOption = None, as_json: JsonOption = False) -> None:
    """Current step, each gate's estimate and interval, and what would happen next."""
    _show(
        GatewayClient(url, None).call("GET", f"/experiments/{name}/rollout", admin=False), as_json
    )


def _command(
    command: str, name: str, reason: str | None, url: str | None, token: str | None, as_json: bool
) -> None:
    if not reason:
        raise fail("--reason is required: it goes into the audit history", 2)
    gateway = GatewayClient(url, token, need_token=True)
    data = gateway.call(
        "POST", f"/admin/experiments/{name}/rollout/{command}", body={"reason": reason}
    )
    _show(data, as_json)


@app.command("pause")
def pause(
    name: ExperimentName,
    reason: ReasonOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Hold the current step (a failing gate still rolls back)."""
    _command("pause", name, reason, url, token, as_json)


@app.command("resume")
def resume(
    name: ExperimentName,
    reason: ReasonOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Resume a paused rollout, or one halted by a sample ratio mismatch (counting afresh)."""
    _command("resume", name, reason, url, token, as_json)


@app.command("abort")
def abort(
    name: ExperimentName,
    reason: ReasonOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Stop the rollout: all traffic back to the control."""
    _command("abort", name, reason, url, token, as_json)


@app.command("promote")
def promote(
    name: ExperimentName,
    reason: ReasonOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Promote the candidate now (the file is rewritten: blue-green, candidate as control)."""
    _command("promote", name, reason, url, token, as_json)
