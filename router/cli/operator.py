"""Operator commands: flags, rollback, promote, status and replay, over the gateway's HTTP API.

Exit codes: 0 ok, 1 refused (by the gateway, or it could not be reached), 2 usage.
"""

from __future__ import annotations

import asyncio
import csv
import json
import sys
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from router.core.settings import Settings

console = Console()
err_console = Console(stderr=True)
flags_app = typer.Typer(help="Feature flags: list, set, clear, history.", no_args_is_help=True)

UrlOption = Annotated[
    str | None, typer.Option("--url", help="Gateway URL (TURNOUT_ADMIN_URL).", show_default=False)
]
TokenOption = Annotated[
    str | None,
    typer.Option("--token", help="Admin token (TURNOUT_ADMIN_TOKEN).", show_default=False),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]
ReasonOption = Annotated[
    str | None, typer.Option("--reason", help="Why: recorded in the audit history.")
]


def register(app: typer.Typer) -> None:
    """Add the operator commands to the ``turnout`` app."""
    app.add_typer(flags_app, name="flags")
    app.command()(rollback)
    app.command()(promote)
    app.command()(status)
    app.command()(replay)


def fail(message: str, code: int = 1) -> typer.Exit:
    err_console.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(code)


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=False) + "\n")


class Gateway:
    """The gateway's HTTP API as the CLI uses it; every failure becomes a clear exit."""

    def __init__(self, url: str | None, token: str | None, need_token: bool = True) -> None:
        settings = Settings()
        self.url = (url or settings.admin_url).rstrip("/")
        secret = settings.admin_token.get_secret_value() if settings.admin_token else None
        self.token = token or secret
        if need_token and not self.token:
            raise fail("no admin token: pass --token or set TURNOUT_ADMIN_TOKEN", 2)
        self.client = httpx.Client(base_url=self.url, timeout=10.0)

    def call(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        admin: bool = True,
    ) -> Any:
        headers = {"authorization": f"Bearer {self.token}"} if admin and self.token else {}
        try:
            response = self.client.request(method, path, json=body, params=params, headers=headers)
        except httpx.HTTPError as exc:
            raise fail(f"cannot reach the gateway at {self.url}: {exc}") from None
        try:
            payload = response.json()
        except ValueError:
            payload = {"error": "http_error", "detail": response.text[:200]}
        if response.status_code >= 400:
            detail = payload.get("detail", "") if isinstance(payload, dict) else ""
            error = payload.get("error", "") if isinstance(payload, dict) else ""
            if response.status_code == 404 and error == "not_found" and path.startswith("/admin"):
                detail = "the admin API is off on this gateway (no admin tokens configured)"
            raise fail(f"refused ({response.status_code} {error}): {detail}")
        return payload


def _parse_value(text: str) -> Any:
    """JSON when it parses (true, 3, null, "x"), else the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _show(value: Any) -> str:
    return "null" if value is None else json.dumps(value) if not isinstance(value, str) else value


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _events_table(events: list[dict[str, Any]], title: str = "audit history") -> Table:
    table = Table("time (UTC)", "by", "action", "experiment", "flag", "old", "new", "reason")
    table.title = title
    for e in events:
        table.add_row(
            _when(float(e["ts"])),
            str(e["actor"]),
            str(e["action"]),
            str(e["experiment"]),
            str(e["flag"] or ""),
            _show(e["old"]),
            _show(e["new"]),
            str(e["reason"]),
        )
    return table


@flags_app.command("list")
def flags_list(
    url: UrlOption = None, token: TokenOption = None, as_json: JsonOption = False
) -> None:
    """List every experiment's flags (overrides marked)."""
    data = Gateway(url, token).call("GET", "/admin/flags")
    if as_json:
        print_json(data)
        return
    table = Table("experiment", "flag", "value", "source")
    for name, item in data["experiments"].items():
        for flag, value in item["flags"].items():
            source = "override" if flag in item["overrides"] else "default"
            style = "bold yellow" if source == "override" else None
            table.add_row(name, flag, _show(value), source, style=style)
    console.print(table)
    cache = data.get("cache", {})
    if data.get("source") != "redis":
        err_console.print(f"[yellow]Redis unreachable: cached flags ({cache.get('error')})")


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
    body = {"value": _parse_value(value), "reason": reason or ""}
    data = Gateway(url, token).call("PUT", f"/admin/flags/{experiment}/{flag}", body=body)
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
    data = Gateway(url, token).call("DELETE", f"/admin/flags/{experiment}/{flag}", params=params)
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
    data = Gateway(url, token).call("GET", "/admin/flags/history", params=params)
    if as_json:
        print_json(data)
        return
    console.print(_events_table(data["events"]))


def _print_change(data: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(data)
        return
    event = data.get("event") or {}
    console.print(
        f"{event.get('experiment')}: {event.get('flag')} {_show(event.get('old'))} -> "
        f"{_show(event.get('new'))} ({event.get('action')} by {event.get('actor')})",
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
    gateway = Gateway(url, token)
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
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Make a version the control at 100% (rewrites YAML, reloads)."""
    if undo == (version is not None):
        raise fail("give either VERSION or --undo", 2)
    if not reason:
        raise fail("--reason is required: it goes into the audit history", 2)
    gateway = Gateway(url, token)
    if undo:
        path = f"/admin/experiments/{name}/promote/undo"
        data = gateway.call("POST", path, body={"reason": reason})
    else:
        path = f"/admin/experiments/{name}/promote"
        data = gateway.call("POST", path, body={"version": version, "reason": reason})
    if as_json:
        print_json(data)
        return
    loaded = "loaded" if data["loaded"] else "[yellow]written, not loaded yet[/yellow]"
    console.print(
        f"{name}: control {data['control']}, weights {_weights(data['weights'])}; "
        f"{data['file']} config_version {data['config_version']} ({loaded})"
    )
    if data.get("warning"):
        err_console.print(f"[yellow]warning:[/yellow] {data['warning']}")


def _weights(weights: dict[str, float]) -> str:
    return ", ".join(f"{v} {w:g}%" for v, w in weights.items())


def status(url: UrlOption = None, token: TokenOption = None, as_json: JsonOption = False) -> None:
    """Experiments, policies, weights, flags, health, recent changes."""
    gateway = Gateway(url, token, need_token=False)
    experiments = gateway.call("GET", "/experiments", admin=False)
    flags: dict[str, Any] | None = None
    events: list[dict[str, Any]] | None = None
    if gateway.token:
        flags = gateway.call("GET", "/admin/flags")
        events = gateway.call("GET", "/admin/flags/history", params={"limit": 5})["events"]
    if as_json:
        print_json({"experiments": experiments, "flags": flags, "audit": events})
        return
    table = Table("experiment", "model", "policy", "weights", "flags", "upstreams", "config")
    for exp in experiments["experiments"]:
        health = " ".join(
            f"{v} {'[green]up[/green]' if u['healthy'] else '[red]down[/red]'}"
            + ("" if u["breaker"] == "closed" else f" ({u['breaker']})")
            for v, u in exp["upstreams"].items()
        )
        table.add_row(
            exp["name"],
            exp["model"],
            f"{exp['policy']} (control {exp['control']})",
            _weights(exp["weights"]),
            _flag_summary(flags, exp["name"]),
            health,
            exp["config_version"],
        )
    console.print(table)
    for path, reason in experiments.get("refused", {}).items():
        err_console.print(f"[red]refused[/red] {path}: {reason}", highlight=False)
    if events is None:
        err_console.print("flags and audit history need an admin token (--token)")
    else:
        console.print(_events_table(events, "last 5 changes"))


def _flag_summary(flags: dict[str, Any] | None, name: str) -> str:
    if flags is None:
        return "?"
    item = flags["experiments"].get(name)
    if item is None:
        return "?"
    values = item["flags"]
    parts = []
    if values.get("kill_switch"):
        parts.append("[bold red]KILL SWITCH[/bold red]")
    if values.get("forced_variant"):
        parts.append(f"[bold yellow]forced {values['forced_variant']}[/bold yellow]")
    if not values.get("shadow_enabled", True):
        parts.append("shadow off")
    if values.get("frozen"):
        parts.append("frozen")
    builtin = {"kill_switch", "forced_variant", "shadow_enabled", "frozen"}
    parts += [f"{k}={_show(v)}" for k, v in item["overrides"].items() if k not in builtin]
    return ", ".join(parts) or "-"


@dataclass(frozen=True)
class Row:
    text: str
    label: Any
    user: str | None


def parse_label_map(spec: str) -> dict[str, Any]:
    """``0=1,1=1,2=0`` -> {"0": 1, "1": 1, "2": 0} (targets parsed as JSON when they can be)."""
    mapping: dict[str, Any] = {}
    for part in spec.split(","):
        source, sep, target = part.partition("=")
        if not sep or not source.strip():
            raise ValueError(f"label map entry {part!r} is not SOURCE=TARGET")
        mapping[source.strip()] = _parse_value(target.strip())
    return mapping


def read_rows(
    path: Path,
    text_col: str,
    label_col: str | None,
    label_map: dict[str, Any] | None,
    user_col: str | None,
    limit: int | None,
) -> list[Row]:
    """Read and check the whole file before anything is sent; ``ValueError`` says what is wrong."""
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        for col in (text_col, label_col, user_col):
            if col is not None and col not in columns:
                raise ValueError(f"no column {col!r} in {path} (columns: {', '.join(columns)})")
        rows: list[Row] = []
        for line, record in enumerate(reader, start=2):
            if limit is not None and len(rows) >= limit:
                break
            text = record.get(text_col) or ""
            if not text.strip():
                continue
            label: Any = None
            if label_col is not None:
                raw = (record.get(label_col) or "").strip()
                if label_map is not None:
                    if raw not in label_map:
                        raise ValueError(f"{path}:{line}: label {raw!r} is not in --label-map")
                    label = label_map[raw]
                else:
                    label = _parse_value(raw)
            user = record.get(user_col) if user_col else None
            rows.append(Row(text, label, user or None))
    return rows


@dataclass
class ReplayTally:
    sent: int = 0
    failed: int = 0
    feedback_ok: int = 0
    feedback_failed: int = 0

    def __post_init__(self) -> None:
        self.by_version: Counter[str] = Counter()
        self.correct: Counter[str] = Counter()
        self.labelled: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()


async def _replay(
    base: str,
    rows: list[Row],
    feedback: bool,
    concurrency: int,
    model: str | None,
    progress: Progress,
) -> ReplayTally:
    tally = ReplayTally()
    task = progress.add_task("replaying", total=len(rows))
    queue: asyncio.Queue[Row] = asyncio.Queue()
    for row in rows:
        queue.put_nowait(row)
    predict_path = f"/models/{model}/predict" if model else "/predict"
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=30.0, limits=limits) as client:

        async def one(row: Row) -> None:
            body: dict[str, Any] = {"text": row.text}
            if row.user is not None:
                body["user_id"] = row.user
            tally.sent += 1
            try:
                response = await client.post(predict_path, json=body)
            except httpx.HTTPError as exc:
                tally.failed += 1
                tally.errors[type(exc).__name__] += 1
                return
            if response.status_code != 200:
                tally.failed += 1
                tally.errors[f"predict {response.status_code}"] += 1
                return
            answer = response.json()
            version = str(answer.get("model_version"))
            tally.by_version[version] += 1
            if row.label is not None:
                tally.labelled[version] += 1
                if answer.get("prediction", {}).get("label") == row.label:
                    tally.correct[version] += 1
                if feedback:
                    sent = {"request_id": answer["request_id"], "label": row.label}
                    try:
                        fb = await client.post("/feedback", json=sent)
                        ok = fb.status_code < 300
                        key = f"feedback {fb.status_code}"
                    except httpx.HTTPError as exc:
                        ok, key = False, f"feedback {type(exc).__name__}"
                    if ok:
                        tally.feedback_ok += 1
                    else:
                        tally.feedback_failed += 1
                        tally.errors[key] += 1

        async def worker() -> None:
            while not queue.empty():
                row = queue.get_nowait()
                await one(row)
                progress.advance(task)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return tally


def replay(
    file: Annotated[Path, typer.Argument(help="CSV file with a text column.")],
    text_col: Annotated[str, typer.Option(help="Column holding the text.")] = "text",
    label_col: Annotated[
        str | None, typer.Option(help="Column holding the true label.", show_default=False)
    ] = None,
    label_map: Annotated[
        str | None,
        typer.Option(
            help="Map CSV labels to model labels, e.g. 0=1,1=1,2=0 (Davidson).", show_default=False
        ),
    ] = None,
    user_col: Annotated[
        str | None, typer.Option(help="Column used as user_id (sticky).", show_default=False)
    ] = None,
    feedback: Annotated[
        bool, typer.Option("--feedback", help="POST each row's label to /feedback.")
    ] = False,
    limit: Annotated[int | None, typer.Option(min=1, help="Send at most this many rows.")] = None,
    concurrency: Annotated[int, typer.Option(min=1, max=256, help="Requests in flight.")] = 8,
    model: Annotated[
        str | None, typer.Option(help="Model name (POST /models/NAME/predict).", show_default=False)
    ] = None,
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Send a labelled CSV through the gateway, with feedback."""
    if feedback and label_col is None:
        raise fail("--feedback needs --label-col", 2)
    if not file.is_file():
        raise fail(f"{file} does not exist", 2)
    try:
        mapping = parse_label_map(label_map) if label_map else None
        rows = read_rows(file, text_col, label_col, mapping, user_col, limit)
    except (ValueError, UnicodeDecodeError, csv.Error) as exc:
        raise fail(str(exc), 2) from None
    if not rows:
        raise fail(f"{file} has no rows with text in column {text_col!r}", 2)
    base = (url or Settings().admin_url).rstrip("/")
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console,
        disable=as_json,
    )
    with progress:
        tally = asyncio.run(_replay(base, rows, feedback, concurrency, model, progress))
    accuracy = {v: tally.correct[v] / n for v, n in tally.labelled.items() if n}
    summary = {
        "rows": len(rows),
        "sent": tally.sent,
        "failed": tally.failed,
        "by_version": dict(tally.by_version),
        "accuracy": accuracy,
        "feedback_accepted": tally.feedback_ok,
        "feedback_failed": tally.feedback_failed,
        "errors": dict(tally.errors),
    }
    if as_json:
        print_json(summary)
    else:
        table = Table("version", "requests", "accuracy on the file's labels")
        for version, n in sorted(tally.by_version.items()):
            acc = accuracy.get(version)
            table.add_row(version, str(n), "-" if acc is None else f"{acc:.4f}")
        console.print(table)
        console.print(
            f"{tally.sent} sent, {tally.failed} failed"
            + (
                f"; feedback {tally.feedback_ok} accepted, {tally.feedback_failed} refused"
                if feedback
                else ""
            )
        )
        for error, n in tally.errors.items():
            err_console.print(f"[red]{n} x {error}[/red]")
    if tally.failed or tally.feedback_failed:
        raise typer.Exit(1)
