"""``turnout``: the one command-line interface (typer). Each command lives in its own module."""

from __future__ import annotations

import typer
from pydantic import ValidationError
from rich.markup import escape

from router.cli import (
    drift,
    migrate,
    models,
    operator,
    replay,
    reports,
    retrain,
    rollout,
    serve,
    validate,
)
from router.cli.common import err_console, settings_problem

app = typer.Typer(
    help="Turnout: route traffic between machine-learning model versions.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_show_locals=False,
)
for commands in (
    models.app,
    serve.app,
    validate.app,
    reports.app,
    migrate.app,
    drift.app,
    retrain.app,
):
    app.registered_commands += commands.registered_commands
    app.registered_groups += commands.registered_groups
operator.register(app)
app.add_typer(rollout.app, name="rollout")
app.command()(replay.replay)


def main() -> None:
    try:
        app()
    except ValidationError as exc:  # settings read by a command: one line, exit 2
        err_console.print(
            f"[red]error:[/red] {escape(settings_problem(exc))}", highlight=False, soft_wrap=True
        )
        raise SystemExit(2) from None
