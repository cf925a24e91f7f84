"""``turnout validate``: check experiment files with the gateway's own loader, dry-run routing."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from router.cli.common import console, err_console, fail
from router.core.errors import TurnoutError
from router.core.settings import Settings

app = typer.Typer()


@app.command()
def validate(
    path: Annotated[
        Path | None, typer.Argument(help="File or folder (default: experiments).")
    ] = None,
    sample: Annotated[int, typer.Option(help="Keys in the dry run.")] = 10_000,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Check experiment files with the gateway's loader and dry-run their routing."""
    import json

    from router.config.loader import LoadedExperiment, load_directory, parse_experiment
    from router.routing.policies import dry_run

    settings = Settings()
    target = path or settings.experiments_dir
    loaded: list[LoadedExperiment] = []
    errors: list[str] = []
    if target.is_dir():
        report = load_directory(target, settings.allowed_hosts)
        loaded = list(report.experiments.values())
        errors = [e.detail for e in report.errors.values()]
    elif target.is_file():
        try:
            loaded = [parse_experiment(target.read_text(), target, settings.allowed_hosts)]
        except TurnoutError as exc:
            errors = [exc.detail]
    else:
        raise fail(f"{target} does not exist", 2)
    results = [
        {
            "file": str(item.path),
            "name": item.experiment.name,
            "model": item.experiment.model,
            "policy": item.experiment.policy.kind,
            "config_version": item.config_version,
            "configured": item.experiment.configured_weights(),
            "dry_run_share": dry_run(item.experiment, sample),
        }
        for item in loaded
    ]
    if as_json:
        print(json.dumps({"ok": results, "errors": errors}, indent=2))
    for item, result in zip(loaded, results, strict=True):
        if as_json:
            break
        exp = item.experiment
        shares: dict[str, float] = result["dry_run_share"]  # type: ignore[assignment]
        console.print(
            f"[green]ok[/green] {item.path}: {exp.name} ({exp.policy.kind}, model {exp.model}, "
            f"config {item.config_version})",
            highlight=False,
        )
        configured = exp.configured_weights()
        for variant, share in shares.items():
            console.print(
                f"    {variant}: {share:6.2f}% of {sample} sample keys "
                f"(configured {configured.get(variant, 0.0):g}%)",
                highlight=False,
            )
    for error in errors:
        err_console.print(f"[red]refused[/red] {error}", highlight=False)
    if errors:
        raise typer.Exit(1)
