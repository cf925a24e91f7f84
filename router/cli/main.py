"""``turnout``: the one command-line interface (typer). Each command lives in its own module."""

from __future__ import annotations

import typer

from router.cli import models, operator, replay, reports, rollout, serve, validate

app = typer.Typer(
    help="Turnout: route traffic between machine-learning model versions.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_show_locals=False,
)
for commands in (models.app, serve.app, validate.app, reports.app):
    app.registered_commands += commands.registered_commands
    app.registered_groups += commands.registered_groups
operator.register(app)
app.add_typer(rollout.app, name="rollout")
app.command()(replay.replay)


def main() -> None:
    app()
