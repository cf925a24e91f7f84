"""Operator commands: flags, rollback, promote and status, over the gateway's HTTP API."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape

from router.cli.client import GatewayClient
from router.cli.common import (
    JsonOption,
    ReasonOption,
    TokenOption,
    UrlOption,
    console,
    err_console,
    fail,
    print_json,
)
from router.cli.render import (
    events_table,
    flags_table,
    show,
    srm_problems,
    status_table,
    weights_text,
)
from router.flags.values import parse_value

flags_app = typer.Typer(help="Feature flags: list, set, clear, history.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add the operator commands to the ``turnout`` app."""
    app.add_typer(flags_app, name="flags")
    app.command()(rollback)
    app.command()(promote)
    app.command()(status)


def _admin(url: str | None, token: str | None) -> GatewayClient:
    return GatewayClient(url, token, need_token=True)


@flags_app.command("list")
def flags_list(
    url: UrlOption = None, token: TokenOption = None, as_json: JsonOption = False
) -> None:
    """List every experiment's flags (overrides marked)."""
    data = _admin(url, token).call("GET", "/admin/flags")
    if as_json:
        print_json(data)
        return
    console.print(flags_table(data))
    cache = data.get("cache", {})
    if data.get("source") != "redis":
        err_console.print(
            f"[yellow]Redis unreachable: cached flags ({escape(str(cache.get('error')))})"
        )


@flags_app.command("set")
def flags_set(
    experiment: Annotated[str, typer.Argument(help="Experiment name.")],
    flag: Annotated[str, typer.Argument(help="Flag name.")],
    value: Annotated[str, typer.Argument(help="Value as JSON (true, 3, null) or plain text.")],
    reason: ReasonOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Set one flag of an experiment (audited)."""
    body = {"value": parse_value(value), "reason": reason or ""}
    data = _admin(url, token).call("PUT", f"/admin/flags/{experiment}/{flag}", body=body)
    _print_change(data, as_json)


@flags_app.command("clear")
def flags_clear(
    experiment: Annotated[str, typer.Argument(help="Experiment name.")],
    flag: Annotated[str, typer.Argument(help="Flag name.")],
    reason: ReasonOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Remove a flag's override: back to its default (audited)."""
    params = {"reason": reason or ""}
    data = _admin(url, token).call("DELETE", f"/admin/flags/{experiment}/{flag}", params=params)
    _print_change(data, as_json)


@flags_app.command("history")
def flags_history(
    experiment: Annotated[str | None, typer.Argument(help="Only this experiment.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="Most events.")] = 20,
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show the audit history: who changed what, when, old and new value, why."""
    params: dict[str, Any] = {"limit": limit}
    if experiment:
        params["experiment"] = experiment
    data = _admin(url, token).call("GET", "/admin/flags/history", params=params)
    if as_json:
        print_json(data)
        return
    console.print(events_table(data["events"]))


def _print_change(data: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(data)
        return
    event = data.get("event") or {}
    console.print(
        escape(
            f"{event.get('experiment')}: {event.get('flag')} {show(event.get('old'))} -> "
            f"{show(event.get('new'))} ({event.get('action')} by {event.get('actor')})"
        ),
        highlight=False,
    )


def rollback(
    name: Annotated[str, typer.Argument(help="Experiment name.")],
    to: Annotated[
        str | None, typer.Option("--to", help="Variant or version (default: the control).")
    ] = None,
    reason: ReasonOption = None,
    undo: Annotated[bool, typer.Option("--undo", help="Clear the rollback.")] = False,
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Send an experiment's traffic to its control (or --to), by flag."""
    if undo and to:
        raise fail("--undo and --to do not go together", 2)
    if not undo and not reason:
        raise fail("--reason is required: it goes into the audit history", 2)
    gateway = _admin(url, token)
    if undo:
        data = gateway.call(
            "DELETE", f"/admin/experiments/{name}/rollback", params={"reason": reason or ""}
        )
    else:
        body: dict[str, Any] = {"reason": reason}
        if to:
            body["to"] = to
        data = gateway.call("POST", f"/admin/experiments/{name}/rollback", body=body)
    _print_change(data, as_json)


def promote(
    name: Annotated[str, typer.Argument(help="Experiment name.")],
    version: Annotated[str | None, typer.Argument(help="Variant or version to promote.")] = None,
    reason: ReasonOption = None,
    undo: Annotated[
        bool, typer.Option("--undo", help="Restore the file before the last promotion.")
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Promote even if the version fails its readiness check (audited)."
        ),
    ] = False,
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Make a version the control at 100% (rewrites YAML, reloads)."""
    if undo == (version is not None):
        raise fail("give either VERSION or --undo", 2)
    if not reason:
        raise fail("--reason is required: it goes into the audit history", 2)
    gateway = _admin(url, token)
    if undo:
        path = f"/admin/experiments/{name}/promote/undo"
        data = gateway.call("POST", path, body={"reason": reason})
    else:
        path = f"/admin/experiments/{name}/promote"
        body = {"version": version, "reason": reason, "force": force}
        data = gateway.call("POST", path, body=body)
    if as_json:
        print_json(data)
        return
    loaded = "loaded" if data["loaded"] else "[yellow]written, not loaded yet[/yellow]"
    console.print(
        f"{name}: control {data['control']}, weights {weights_text(data['weights'])}; "
        f"{escape(str(data['file']))} config_version {data['config_version']} ({loaded})"
    )
    if data.get("warning"):
        err_console.print(f"[yellow]warning:[/yellow] {escape(str(data['warning']))}")


def status(url: UrlOption = None, token: TokenOption = None, as_json: JsonOption = False) -> None:
    """Experiments, policies, weights, flags, health, recent changes."""
    gateway = GatewayClient(url, token)
    experiments = gateway.call("GET", "/experiments", admin=False)
    flags: dict[str, Any] | None = None
    events: list[dict[str, Any]] | None = None
    if gateway.token:
        flags = gateway.call("GET", "/admin/flags")
        events = gateway.call("GET", "/admin/flags/history", params={"limit": 5})["events"]
    if as_json:
        print_json({"experiments": experiments, "flags": flags, "audit": events})
        return
    console.print(status_table(experiments, flags))
    for line in srm_problems(experiments):
        err_console.print(f"[red]halted or warned[/red] {escape(line)}", highlight=False)
    for path, reason in experiments.get("refused", {}).items():
        err_console.print(
            f"[red]refused[/red] {escape(path)}: {escape(str(reason))}", highlight=False
        )
    if events is None:
        err_console.print("flags and audit history need an admin token (--token)")
    else:
        console.print(events_table(events, "last 5 changes"))
