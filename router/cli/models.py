"""Model registry commands: train recipes, list trained versions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from router.cli.common import console, fail
from router.core.errors import TurnoutError
from router.core.settings import Settings

app = typer.Typer()
models_app = typer.Typer(help="The model registry.", no_args_is_help=True)
app.add_typer(models_app, name="models")


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
