"""Model registry commands: train recipes, list trained versions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from router.cli.common import console, fail
from router.cli.render import models_table
from router.core.errors import TurnoutError
from router.core.settings import Settings

app = typer.Typer()
models_app = typer.Typer(help="The model registry.", no_args_is_help=True)
app.add_typer(models_app, name="models")


@app.command()
def train(
    recipe: Annotated[str | None, typer.Option(help="Recipe name (v1, v2, ...).")] = None,
    version: Annotated[str | None, typer.Option(help="Version to write (default: recipe).")] = None,
    data: Annotated[Path | None, typer.Option(help="CSV to train on (TURNOUT_DATASET).")] = None,
    model: Annotated[
        str | None,
        typer.Option(help="Model family: profanity (default) or wine; --all alone: both."),
    ] = None,
    all_recipes: Annotated[bool, typer.Option("--all", help="Train every recipe.")] = False,
    if_missing: Annotated[bool, typer.Option(help="Skip versions already trained.")] = False,
) -> None:
    """Train recipes into the registry: profanity (Davidson 2017 tweets) or wine (ships with
    scikit-learn), writing artifact + model card."""
    from model_workers.train import FAMILY_RECIPES

    settings = Settings()
    if all_recipes == (recipe is not None):
        raise fail("give either --recipe NAME or --all", 2)
    if model is not None and model not in FAMILY_RECIPES:
        raise fail(f"unknown model {model!r}; known: {', '.join(FAMILY_RECIPES)}", 2)
    if all_recipes and version is not None:
        raise fail("--version names one version: give it with --recipe", 2)
    families = [model] if model else (list(FAMILY_RECIPES) if all_recipes else ["profanity"])
    jobs: list[tuple[str, str, str]] = []
    for family in families:
        recipes = FAMILY_RECIPES[family]
        names = sorted(recipes) if all_recipes else [str(recipe)]
        unknown = [n for n in names if n not in recipes]
        if unknown:
            known = ", ".join(sorted(recipes))
            raise fail(f"unknown recipe {unknown[0]!r} of {family}; known: {known}", 2)
        jobs += [(family, n, version or n) for n in names]
    if if_missing:
        jobs = [j for j in jobs if not loadable(settings.models_dir, j[0], j[2])]
    if not jobs:
        console.print("all model versions are trained")
        return
    for family in dict.fromkeys(j[0] for j in jobs):
        train_family(settings, family, [j for j in jobs if j[0] == family], data)


def loadable(root: Path, family: str, version: str) -> bool:
    """Trained, and loads with this code: an artifact an older version of the code pickled
    can name a function that is gone, and is trained again rather than kept."""
    from model_workers.registry import CARD, load, version_dir

    if not (version_dir(root, family, version) / CARD).is_file():
        return False
    try:
        load(root, family, version)
    except Exception as exc:  # whatever unpickling raises
        console.print(
            escape(f"{family} {version} does not load ({type(exc).__name__}): training again")
        )
        return False
    return True


def train_family(
    settings: Settings, family: str, jobs: list[tuple[str, str, str]], data: Path | None
) -> None:
    from model_workers.train import FAMILY_RECIPES, load_dataset, load_wine_dataset
    from model_workers.train import train as run_training

    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )
    dataset: Any
    with progress:
        task = progress.add_task(f"reading the {family} data", total=len(jobs))
        try:
            dataset = (
                load_wine_dataset() if family == "wine" else load_dataset(data or settings.dataset)
            )
        except TurnoutError as exc:
            raise fail(exc.detail) from None
        rows = len(dataset.labels)
        for _, name, ver in jobs:
            doing = f"training {family} {ver} (recipe {name}), {rows} rows"
            progress.update(task, description=doing)
            recipe = FAMILY_RECIPES[family][name]
            card = run_training(recipe, ver, dataset, settings.models_dir, family)
            where = settings.models_dir / family / ver
            progress.console.print(trained_line(family, ver, card, where))
            progress.advance(task)
        progress.update(task, description=f"trained {family}")


def trained_line(family: str, version: str, card: dict[str, Any], where: Path) -> str:
    m = card["metrics"]
    if "macro_f1" in m:
        return (
            f"trained {family} {version}: accuracy {m['accuracy']:.4f}, macro F1 "
            f"{m['macro_f1']:.4f}, log loss {m['log_loss']:.4f} -> {where}"
        )
    return (
        f"trained {family} {version}: F1 {m['f1']:.4f}, ROC AUC {m['roc_auc']:.4f}, "
        f"accuracy {m['accuracy']:.4f} -> {where}"
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
    console.print(models_table(cards))
