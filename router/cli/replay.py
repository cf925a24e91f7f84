"""``turnout replay``: send a labelled CSV through the gateway, with feedback (a load generator)."""

from __future__ import annotations

import asyncio
import csv
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from router.cli.client import GatewayClient
from router.cli.common import JsonOption, UrlOption, console, err_console, fail, print_json
from router.cli.render import replay_table
from router.flags.values import parse_value


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
        mapping[source.strip()] = parse_value(target.strip())
    return mapping


def served_label(answer: dict[str, Any]) -> Any:
    """The label the gateway normalized from the served answer. ``prediction`` is the model
    server's own answer, in its own protocol's shape (only Turnout's workers put a ``label``
    there), so accuracy is read from the normalized field."""
    return answer.get("label")


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
                    label = parse_value(raw)
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
    gateway: GatewayClient,
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
    async with gateway.predictions(concurrency) as client:

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
                if served_label(answer) == row.label:
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
    gateway = GatewayClient(url, None)
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console,
        disable=as_json,
    )
    with progress:
        tally = asyncio.run(_replay(gateway, rows, feedback, concurrency, model, progress))
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
        console.print(replay_table(dict(tally.by_version), accuracy))
        console.print(
            f"{tally.sent} sent, {tally.failed} failed"
            + (
                f"; feedback {tally.feedback_ok} accepted, {tally.feedback_failed} refused"
                if feedback
                else ""
            )
        )
        for error, n in tally.errors.items():
            err_console.print(f"[red]{n} x {escape(error)}[/red]")
    if tally.failed or tally.feedback_failed:
        raise typer.Exit(1)
