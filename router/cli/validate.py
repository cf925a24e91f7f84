"""``turnout validate``: check experiment files with the gateway's own loader, dry-run routing."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

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
    probe: Annotated[
        bool,
        typer.Option(
            "--probe",
            help="Send each experiment's sample_input through every variant and print the "
            "normalized label and score (exit 1 if a variant cannot answer).",
        ),
    ] = False,
    timeout: Annotated[float, typer.Option(help="Seconds per probe call.")] = 5.0,
) -> None:
    """Check experiment files with the gateway's loader and dry-run their routing."""
    import json

    from router.cli.probe import Probed
    from router.cli.probe import probe as run_probe
    from router.config.loader import LoadedExperiment, parse_experiment
    from router.config.resolve import load_directory
    from router.routing.policies import dry_run

    settings = Settings()
    target = path or settings.experiments_dir
    loaded: list[LoadedExperiment] = []
    errors: list[str] = []
    if target.is_dir():
        report = load_directory(target, settings.allowed_hosts, settings.experiment_max_bytes)
        loaded = list(report.experiments.values())
        errors = [e.detail for e in report.errors.values()]
    elif target.is_file():
        try:
            loaded = [parse_experiment(target.read_text(), target, settings.allowed_hosts)]
        except TurnoutError as exc:
            errors = [exc.detail]
    else:
        raise fail(f"{target} does not exist", 2)
    results: list[dict[str, Any]] = [
        {
            "file": str(item.path),
            "name": item.experiment.name,
            "model": item.experiment.model,
            "policy": item.experiment.policy.kind,
            "config_version": item.config_version,
            "configured": item.experiment.configured_weights(),
            "dry_run_share": dry_run(item.experiment, sample),
            "warnings": item.experiment.warnings(),
        }
        for item in loaded
    ]
    probes: dict[str, list[Probed] | None] = {}
    if probe:
        for item, result in zip(loaded, results, strict=True):
            exp = item.experiment
            found = run_probe(exp, timeout, settings.max_text_chars) if exp.sample_input else None
            probes[exp.name] = found
            result["probe"] = None if found is None else [vars(p) | {"ok": p.ok} for p in found]
    for result in results:
        # The verdict printed is the one the exit code gives: a failed probe fails the file.
        found = probes.get(result["name"]) or []
        result["verdict"] = "ok" if all(p.ok for p in found) else "probe_failed"
    passed = [r for r in results if r["verdict"] == "ok"]
    failed = [r for r in results if r["verdict"] != "ok"]
    if as_json:
        verdicts = {"ok": passed, "failed": failed, "errors": errors}
        print(json.dumps(verdicts, indent=2, default=str))
    for item, result in zip(loaded, results, strict=True):
        if as_json:
            break
        exp = item.experiment
        shares: dict[str, float] = result["dry_run_share"]
        verdict = "[green]ok[/green]" if result["verdict"] == "ok" else "[red]failed[/red]"
        console.print(
            f"{verdict} {escape(str(item.path))}: {exp.name} ({exp.policy.kind}, "
            f"model {exp.model}, config {item.config_version})",
            highlight=False,
        )
        for warning in result["warnings"]:
            console.print(f"    [yellow]warning[/yellow] {escape(warning)}", highlight=False)
        configured = exp.configured_weights()
        for variant, share in shares.items():
            console.print(
                f"    {variant}: {share:6.2f}% of {sample} sample keys "
                f"(configured {configured.get(variant, 0.0):g}%)",
                highlight=False,
            )
        if probe:
            render_probe(probes.get(exp.name))
    for error in errors:
        err_console.print(f"[red]refused[/red] {escape(error)}", highlight=False, soft_wrap=True)
    if errors or failed:
        raise typer.Exit(1)


def render_probe(found: list[Any] | None) -> None:
    if found is None:
        console.print("    probe: no sample_input in the file, nothing sent", highlight=False)
        return
    for p in found:
        where = f"    probe {p.variant} ({p.protocol}, version {p.version})"
        ready = {True: "ready", False: "NOT READY", None: "passive health"}[p.ready]
        if p.ok:
            console.print(
                f"{where}: label {json_text(p.label)}, score {json_text(p.score)} ({ready})",
                highlight=False,
            )
        else:
            console.print(
                f"{where}: [red]failed[/red] {escape(p.error)} ({ready})", highlight=False
            )


def json_text(value: object) -> str:
    import json

    return json.dumps(value)
