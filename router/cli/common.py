"""What every command shares: the consoles, the exit-code rule and the common options.

Exit codes: 0 ok, 1 refused (by the gateway, or it could not be reached), 2 usage.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from rich.console import Console

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
    """Print ``message`` as an error and return the exit to raise (``raise fail(...)``)."""
    err_console.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(code)


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=False) + "\n")
