"""What every command shares: the consoles, the exit-code rule and the common options.

Exit codes: 0 ok, 1 refused (by the gateway, or it could not be reached), 2 usage.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from router.core.settings import Settings

console = Console()
err_console = Console(stderr=True)

UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url",
        help="Gateway URL (TURNOUT_ADMIN_URL, else http://TURNOUT_HOST:TURNOUT_PORT).",
        show_default=False,
    ),
]
TokenOption = Annotated[
    str | None,
    typer.Option("--token", help="Admin token (TURNOUT_ADMIN_TOKEN).", show_default=False),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]
ReasonOption = Annotated[
    str | None, typer.Option("--reason", help="Why: recorded in the audit history.")
]
ExperimentName = Annotated[str, typer.Argument(help="Experiment name.")]


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``message`` (plain text: a file name's brackets are not markup) as an error and
    return the exit to raise (``raise fail(...)``)."""
    err_console.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=False) + "\n")


def settings_problem(exc: ValidationError) -> str:
    """A refused setting in one line, named as its environment variable."""
    parts = []
    for error in exc.errors():
        where = "_".join(str(part) for part in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        parts.append(f"TURNOUT_{where.upper()}: {message}" if where else message)
    return "invalid settings: " + "; ".join(parts)


def load_settings() -> Settings:
    """The process's Settings, or exit 2 with what is wrong (never a traceback)."""
    try:
        return Settings()
    except ValidationError as exc:
        raise fail(settings_problem(exc), 2) from None
