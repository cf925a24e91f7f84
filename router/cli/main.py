"""``turnout``: the one command-line interface (typer)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from router.cli.operator import register as register_operator_commands
from router.core.errors import TurnoutError
from router.core.settings import Settings

app = typer.Typer(
    help="Turnout: route traffic between machine-learning model versions.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_show_locals=False,
)
models_app = typer.Typer(help="The model registry.", no_args_is_help=True)
app.add_typer(models_app, name="models")

console = Console()

ExperimentName = Annotated[str, typer.Argument(help="Experiment name.")]
JsonReport = Annotated[bool, typer.Option("--json", help="Print the report as JSON.")]
GatewayUrl = Annotated[
    str | None, typer.Option(help="Gateway URL (default: http://TURNOUT_HOST:TURNOUT_PORT).")
]
err_console = Console(stderr=True)


def fail(message: str, code: int = 1) -> typer.Exit:
    err_console.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(code)


@app.command()
def train(
    recipe: Annotated[str | None, typer.Option(help="Recipe name (v1, v2, v3).")] = None,
    version: Annotated[str | None, typer.Option(help="Version to write (default: recipe).")] = None,
    data: Annotated[Path | None, typer.Option(help="CSV to train on (TURNOUT_DATASET).")] = None,
    model: Annotated[str, typer.Option(help="Model name in the registry.")] = "profanity",
    all_recipes: Annotated[bool, typer.Option("--all", help="Train every recipe.")] = False,
    if_missing: Annotated[bool, typer.Option(help="Skip versions already trained.")] = False,
) -> None:
    """Train a recipe on the Davidson 2017 tweets and write artifact + model card."""
    from model_workers.recipes import RECIPES
    from model_workers.registry import CARD, version_dir
    from model_workers.train import load_dataset
    from model_workers.train import train as run_training

    settings = Settings()
    if all_recipes == (recipe is not None):
        raise fail("give either --recipe NAME or --all", 2)
    names = sorted(RECIPES) if all_recipes else [str(recipe)]
    unknown = [n for n in names if n not in RECIPES]
    if unknown:
        raise fail(f"unknown recipe {unknown[0]!r}; known: {', '.join(sorted(RECIPES))}", 2)
    jobs = [(n, version or n) for n in names]
    if if_missing:
        root = settings.models_dir
        jobs = [(n, v) for n, v in jobs if not (version_dir(root, model, v) / CARD).is_file()]
    if not jobs:
        console.print("all model versions are trained")
        return
    try:
        dataset = load_dataset(data or settings.dataset)
    except TurnoutError as exc:
        raise fail(exc.detail) from None
    for name, ver in jobs:
        with console.status(f"training {model} {ver} (recipe {name}) on {len(dataset.texts)} rows"):
            card = run_training(RECIPES[name], ver, dataset, settings.models_dir, model)
        m = card["metrics"]
        console.print(
            f"trained {model} {ver}: F1 {m['f1']:.4f}, ROC AUC {m['roc_auc']:.4f}, "
            f"accuracy {m['accuracy']:.4f} -> {settings.models_dir / model / ver}"
        )


@models_app.command("list")
def models_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List trained versions with their validation metrics."""
    import json

    from model_workers.registry import list_cards

    cards = list_cards(Settings().models_dir)
    if as_json:
        print(json.dumps(cards, indent=2))
        return
    table = Table("model", "version", "recipe", "F1", "ROC AUC", "accuracy", "trained at")
    for c in cards:
        m = c.get("metrics", {})
        table.add_row(
            c["model"],
            c["version"],
            str(c.get("recipe")),
            f"{m.get('f1', 0):.4f}",
            f"{m.get('roc_auc', 0):.4f}",
            f"{m.get('accuracy', 0):.4f}",
            str(c.get("trained_at")),
        )
    console.print(table)


@app.command()
def worker(
    version: Annotated[str, typer.Option(help="Version to serve.")],
    model: Annotated[str, typer.Option(help="Model name in the registry.")] = "profanity",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8101,
    host: Annotated[str | None, typer.Option(help="Interface (TURNOUT_HOST).")] = None,
) -> None:
    """Serve one model version (one process) behind the worker API."""
    import uvicorn

    from model_workers import registry
    from model_workers.service import create_app
    from router.core import logs

    settings = Settings()
    logs.configure(settings.log_level)
    try:
        registry.verify(settings.models_dir, model, version)
    except TurnoutError as exc:
        raise fail(exc.detail) from None
    api = create_app(settings, lambda: registry.load(settings.models_dir, model, version))
    uvicorn.run(
        api,
        host=host or settings.host,
        port=port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=30,
        # Longer than the gateway's client keep-alive (30 s), so the client side always closes
        # an idle connection first and never reuses one the server is closing.
        timeout_keep_alive=75,
    )


@app.command()
def gateway(
    port: Annotated[int | None, typer.Option(help="Port (TURNOUT_PORT).")] = None,
    host: Annotated[str | None, typer.Option(help="Interface (TURNOUT_HOST).")] = None,
) -> None:
    """Run one gateway replica (any number may share one Redis and experiments folder)."""
    import uvicorn

    from router.core import logs
    from router.gateway.app import create_app

    settings = Settings()
    logs.configure(settings.log_level)
    try:
        api = create_app(settings)
    except TurnoutError as exc:
        raise fail(exc.detail) from None
    uvicorn.run(
        api,
        host=host or settings.host,
        port=port if port is not None else settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=30,
        # Longer than the gateway's client keep-alive (30 s), so the client side always closes
        # an idle connection first and never reuses one the server is closing.
        timeout_keep_alive=75,
    )


@app.command()
def up() -> None:
    """Start the local stack: Redis, the workers the experiments name, and the gateway."""
    from router.local.stack import Stack

    settings = Settings()
    stack = Stack(settings)
    try:
        stack.start(lambda line: console.print(line, highlight=False))
        stack.watch(lambda line: console.print(line, highlight=False))
    except (TurnoutError, RuntimeError, TimeoutError) as exc:
        stack.stop()
        raise fail(exc.detail if isinstance(exc, TurnoutError) else str(exc)) from None
    except KeyboardInterrupt:
        pass
    console.print("stopping")
    stack.stop()


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

    from router.config.experiments import LoadedExperiment, load_directory, parse_experiment
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


register_operator_commands(app)


@app.command()
def report(
    name: ExperimentName,
    as_json: JsonReport = False,
    url: GatewayUrl = None,
) -> None:
    """Per-variant comparison of an experiment, computed by the gateway from Redis."""
    from router.reports.experiment import render_report

    body = fetch_report(name, "report", url)
    if as_json:
        print(json.dumps(body, indent=2))
        return
    render_report(console, body)


@app.command("shadow-report")
def shadow_report(
    name: ExperimentName,
    as_json: JsonReport = False,
    url: GatewayUrl = None,
) -> None:
    """Shadow versions against the primary they shadowed: agreement, McNemar, score deltas."""
    from router.reports.shadow import render_shadow_report

    body = fetch_report(name, "shadow", url)
    if as_json:
        print(json.dumps(body, indent=2))
        return
    render_shadow_report(console, body)


def fetch_report(name: str, kind: str, url: str | None) -> dict[str, Any]:
    """GET /experiments/{name}/{kind} from a gateway; exit 1 on refusal, 2 on a bad name."""
    import re

    import httpx

    from router.config.experiments import NAME

    if not re.match(NAME, name):
        raise fail(f"{name!r} is not an experiment name (expected {NAME})", 2)
    settings = Settings()
    base = (url or f"http://{settings.host}:{settings.port}").rstrip("/")
    try:
        response = httpx.get(f"{base}/experiments/{name}/{kind}", timeout=10.0)
    except httpx.HTTPError as exc:
        raise fail(f"gateway unreachable at {base}: {type(exc).__name__}: {exc}") from None
    try:
        body = response.json()
    except ValueError:
        raise fail(f"gateway at {base} answered {response.status_code} without JSON") from None
    if response.status_code != 200:
        detail = body.get("detail") if isinstance(body, dict) else None
        raise fail(f"{detail or body} (HTTP {response.status_code})")
    return dict(body)


def main() -> None:
    app()
