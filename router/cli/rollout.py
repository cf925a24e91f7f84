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


COMMANDS = {
    "pause": "Hold the current step (a failing gate still rolls back).",
    "resume": "Resume a paused rollout, or one halted by a sample ratio mismatch (counts afresh).",
    "abort": "Stop the rollout: all traffic back to the control.",
    "promote": "Promote the candidate now (rewrites the file: blue-green, candidate as control).",
}


def _register(command: str, summary: str) -> None:
    def run(
        name: ExperimentName,
        reason: ReasonOption = None,
        url: UrlOption = None,
        token: TokenOption = None,
        as_json: JsonOption = False,
    ) -> None:
        _command(command, name, reason, url, token, as_json)

    run.__doc__ = summary
    app.command(command)(run)


for _name, _summary in COMMANDS.items():
    _register(_name, _summary)
