"""``turnout retrain EXPERIMENT --recipe R --as VERSION``: a new version from the base data and
the labelled traffic of a window, registered only if it earns it, and optionally deployed.

Exit codes: 0 registered (and deployed), 1 refused (not better, or no data to train on), 2 usage.
"""

from __future__ import annotations

import json
import re
import socket
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from router.cli.client import GatewayClient
from router.cli.common import (
    ExperimentName,
    JsonOption,
    ReasonOption,
    TokenOption,
    UrlOption,
    console,
    fail,
)
from router.cli.sources import (
    card_of,
    experiment_named,
    on_redis,
    read_window,
    source_for,
    window_seconds,
)
from router.config.experiments import NAME, Experiment
from router.core.errors import TurnoutError
from router.core.settings import Settings
from router.drift import reads
from router.local.processes import poll_until
from router.reports.evaluation import PairedEvaluation, compare, decide

app = typer.Typer()


class Deploy(StrEnum):
    shadow = "shadow"
    rollout = "rollout"


def recipe_of(experiment: Experiment, name: str) -> Any:
    from model_workers.train import FAMILY_RECIPES

    recipes = FAMILY_RECIPES.get(experiment.model)
    if recipes is None:
        raise fail(f"no recipes for model {experiment.model!r} ({', '.join(FAMILY_RECIPES)})", 2)
    if name not in recipes:
        raise fail(
            f"unknown recipe {name!r} for {experiment.model}; known: {', '.join(sorted(recipes))}",
            2,
        )
    return recipes[name]


def base_dataset(settings: Settings, parent: dict[str, Any], data: Path | None) -> Any:
    """The data the production version was trained on, checked by hash (its split is frozen)."""
    from model_workers.train import Dataset, TabularDataset, load_dataset, load_wine_dataset

    recorded = parent.get("dataset", {})
    dataset: Dataset | TabularDataset
    try:
        if "path" in recorded:
            dataset = load_dataset(data or settings.dataset, limit=int(recorded["rows"]))
        else:
            dataset = load_wine_dataset()
    except TurnoutError as exc:
        raise fail(exc.detail) from None
    if dataset.sha256 != recorded.get("sha256"):
        raise fail(
            f"the base data is not what {parent['version']} was trained on (sha256 "
            f"{dataset.sha256[:12]}, its card says {str(recorded.get('sha256'))[:12]}): its "
            "hold-out would not be frozen; point TURNOUT_DATASET or --data at that file"
        )
    return dataset


def recent_rows(
    settings: Settings, experiment: Experiment, window: float, now: float
) -> tuple[Any, dict[str, Any]]:
    """Captured inputs whose feedback label arrived in the window, joined by request id."""
    from model_workers.retrain import RecentRows

    capture = experiment.capture
    if capture is None or not capture.inputs:
        raise fail(
            f"retraining from feedback needs captured inputs: give {experiment.name} "
            "capture: {inputs: true} (personal data: see the README's Data capture)"
        )
    since = now - window
    labels = on_redis(
        settings,
        "the feedback labels cannot be read",
        lambda client: reads.read_feedback_labels(client, experiment.name, since, now),
    )
    source = source_for(experiment)
    captured = read_window(
        settings, experiment, since - settings.attribution_ttl, now, source
    ).outcomes
    inputs: list[Any] = []
    y: list[int] = []
    ids: list[str] = []
    skipped = {"no_label": 0, "label_not_binary": 0, "no_input": 0}
    seen: set[str] = set()
    for record in captured:
        rid = record["request_id"]
        if rid in seen:
            continue
        seen.add(rid)
        if rid not in labels:
            skipped["no_label"] += 1
            continue
        label = labels[rid]
        if label not in (0, 1) or isinstance(label, float):
            skipped["label_not_binary"] += 1
            continue
        item = record.get("input") or {}
        value = item.get("text", item.get("features"))
        if value is None:
            skipped["no_input"] += 1
            continue
        inputs.append(value)
        y.append(int(label))
        ids.append(rid)
    summary = {
        "since": since,
        "until": now,
        "seconds": window,
        "feedback_labels": len(labels),
        "captured": len(seen),
        "joined": len(ids),
        "skipped": skipped,
        "read": source.describe(),
    }
    return RecentRows(inputs, y, ids), summary


def next_worker_url(settings: Settings) -> str:
    """The next free local port after every local variant's (``turnout up`` starts it there)."""
    from router.local.stack import workers_needed

    ports = [spec.port for spec in workers_needed(settings)]
    port = max(ports) + 1 if ports else settings.worker_base_port
    while port < 65535:
        if port_is_free(port):
            return f"http://127.0.0.1:{port}"
        port += 1
    raise fail("no free local port for the new worker; pass --worker-url")


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def evaluate_both(
    labels: list[int], candidate: np.ndarray, production: np.ndarray, threshold: float
) -> PairedEvaluation:
    from model_workers.train import SEED

    return compare(labels, candidate, production, threshold, np.random.default_rng(SEED))


@app.command("retrain")
def retrain_command(
    name: ExperimentName,
    recipe: Annotated[str, typer.Option("--recipe", help="Training recipe (v1 .. v4).")],
    version: Annotated[str, typer.Option("--as", help="The new version's name (never reused).")],
    window: Annotated[
        str, typer.Option("--window", help="Feedback labels that arrived in this window (7d).")
    ] = "7d",
    deploy: Annotated[
        Deploy | None,
        typer.Option("--deploy", help="shadow: mirror traffic to it; rollout: start a rollout."),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Register even if refused (recorded in the card).")
    ] = False,
    margin: Annotated[
        float,
        typer.Option(help="How much lower the hold-out AUC interval may reach (non-inferiority)."),
    ] = 0.005,
    data: Annotated[
        Path | None, typer.Option(help="The base data (TURNOUT_DATASET), checked by hash.")
    ] = None,
    worker_url: Annotated[
        str | None,
        typer.Option(help="Where the new version's worker answers (default: the next local port)."),
    ] = None,
    wait: Annotated[
        float, typer.Option(help="Seconds to wait for the new worker to be ready when deploying.")
    ] = 120.0,
    reason: ReasonOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Retrain from captured, labelled traffic; register only a version that beats production."""
    from model_workers.registry import load, version_dir
    from model_workers.retrain import MIN_REFERENCE_ROWS, prepare
    from model_workers.train import (
        SEED,
        VALIDATION_SHARE,
        describe,
        evaluate,
        fit_timed,
        reference_rows,
        scores_of,
        write_version,
    )

    settings = Settings()
    seconds = window_seconds(window, "--window")
    experiment = experiment_named(settings, name)
    chosen = recipe_of(experiment, recipe)
    if not re.match(NAME, version):
        raise fail(f"--as: {version!r} is not a version name (expected {NAME})", 2)
    if version_dir(settings.models_dir, experiment.model, version).exists():
        raise fail(
            f"--as: {experiment.model} {version} exists already; the registry never "
            "overwrites a version: pick a new name",
            2,
        )
    if version in experiment.variants:
        raise fail(f"--as: {version!r} is already a variant of {name}", 2)
    if not 0.0 <= margin < 1.0:
        raise fail(f"--margin must be in [0, 1), got {margin}", 2)
    gateway = None
    if deploy is not None:
        gateway = GatewayClient(url, token, need_token=True)
    parent_version = experiment.version_of(experiment.control)
    parent = card_of(settings.models_dir, experiment.model, parent_version)
    if parent is None:
        raise fail(f"the production version {parent_version} has no model card to start from")
    if len(parent.get("classes", [0, 1])) != 2:
        raise fail(f"retraining evaluates binary models (ROC AUC); {experiment.model} is not")
    now = time.time()
    dataset = base_dataset(settings, parent, data)
    recent, window_summary = recent_rows(settings, experiment, seconds, now)
    try:
        prepared = prepare(dataset, recent)
    except ValueError as exc:
        raise fail(f"not enough labelled traffic in the window: {exc}") from None
    with console.status(f"training {version} (recipe {recipe})", spinner="dots"):
        x, y = prepared.training(dataset)
        candidate, fit_seconds = fit_timed(chosen, x, y)
    production = load(settings.models_dir, experiment.model, parent_version).estimator
    threshold = float(parent.get("decision_threshold", 0.5))
    hold_x, hold_y = prepared.base_holdout
    recent_x = prepared.recent_holdout_inputs(dataset)
    _, recent_y = prepared.recent_holdout
    holdout = evaluate_both(
        hold_y, scores_of(candidate, hold_x), scores_of(production, hold_x), threshold
    )
    recent_eval = evaluate_both(
        recent_y, scores_of(candidate, recent_x), scores_of(production, recent_x), threshold
    )
    decision = decide(recent_eval, holdout, margin)
    evaluation = {
        "production": parent_version,
        "margin": margin,
        "holdout": holdout.as_dict(),
        "recent": recent_eval.as_dict(),
        "accepted": decision.accepted,
        "reasons": decision.reasons,
        "forced": force and not decision.accepted,
    }
    result: dict[str, Any] = {"experiment": name, "version": version, "evaluation": evaluation}
    if not decision.accepted and not force:
        show(result, as_json)
        raise fail(
            f"{version} was not registered: "
            + "; ".join(decision.reasons)
            + " (--force registers it anyway)"
        )
    card = {
        **describe(chosen, experiment.model, version, candidate, fit_seconds),
        **evaluate(chosen, candidate, hold_x, hold_y),
        "input": parent.get("input", {"kind": "text"}),
        "dataset": {
            **dataset.card(),
            "train_rows": len(prepared.base_train[1]),
            "split_seed": SEED,
            "validation_share": VALIDATION_SHARE,
            "recent": {
                **window_summary,
                "experiment": name,
                "rows": len(recent.labels),
                "train_rows": len(prepared.recent_train[1]),
                "holdout_rows": len(recent_y),
                "sha256": recent.sha256(),
            },
        },
        "parent": {
            "version": parent_version,
            "artifact_sha256": parent.get("artifact_sha256"),
            "recipe": parent.get("recipe"),
        },
        "evaluation": evaluation,
    }
    reference_inputs: Any = reference_rows(dataset, hold_x)
    if len(recent_y) >= MIN_REFERENCE_ROWS:
        from model_workers.references import score_reference

        card["reference"] = score_reference(
            scores_of(candidate, recent_x), chosen.threshold, "recent_holdout"
        )
        reference_inputs = prepared.recent_holdout[0]
    try:
        write_version(
            settings.models_dir,
            experiment.model,
            version,
            candidate,
            card,
            reference_inputs,
            exclusive=True,
        )
    except TurnoutError as exc:
        raise fail(exc.detail) from None
    result["registered"] = str(version_dir(settings.models_dir, experiment.model, version))
    if gateway is not None and deploy is not None:
        target = worker_url or next_worker_url(settings)
        why = reason or f"retrained from {window} of feedback; beat {parent_version}"
        result["deploy"] = deploy_version(gateway, name, version, target, deploy, why, wait)
    show(result, as_json)


def deploy_version(
    gateway: GatewayClient,
    name: str,
    version: str,
    url: str,
    mode: Deploy,
    reason: str,
    wait: float,
) -> dict[str, Any]:
    """Bring the version in through the admin API; a rollout starts once its worker is ready."""
    path = f"/admin/experiments/{name}/deploy"
    first = "shadow" if mode is Deploy.shadow else "variant"
    body = {"version": version, "url": url, "as": first, "reason": reason}
    done = {first: gateway.call("POST", path, body=body)}
    try:
        poll_until(
            lambda: ready(gateway, name, version), wait, interval=0.5, what=f"{version}'s worker"
        )
    except TimeoutError:
        raise fail(
            f"{version} is registered and in {name} as a {first}, but its worker at {url} was "
            f"not ready within {wait:g}s (is `turnout up` running? it starts workers for "
            "new local variants)"
        ) from None
    if mode is Deploy.rollout:
        body = {**body, "as": "rollout"}
        done["rollout"] = gateway.call("POST", path, body=body)
    return {"url": url, "as": mode.value, "steps": done}


def ready(gateway: GatewayClient, name: str, variant: str) -> bool:
    experiments = gateway.call("GET", "/experiments", admin=False)
    for item in experiments.get("experiments", []):
        if item.get("name") == name:
            upstream = item.get("upstreams", {}).get(variant)
            return bool(upstream and upstream.get("ready"))
    return False


def show(result: dict[str, Any], as_json: bool) -> None:
    from router.cli.render import render_retrain

    if as_json:
        print(json.dumps(result, indent=2))
    else:
        render_retrain(console, result)
