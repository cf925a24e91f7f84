"""``turnout drift EXPERIMENT``: each version's predictions against its reference, versions
against each other on mirrored requests, inputs with Evidently; verdicts to Redis.

Exit codes: 0 no drift, 3 drift found (so cron or CI can act on it), 1 refused (no data in the
reference window, Redis unreachable), 2 usage.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from router.cli.common import ExperimentName, JsonOption, console, err_console, fail
from router.cli.sources import (
    Records,
    card_of,
    date_range,
    experiment_named,
    on_redis,
    read_window,
    source_for,
    window_seconds,
)
from router.config.experiments import Experiment
from router.core.settings import Settings
from router.drift import checks, inputs
from router.drift.checks import CheckResult, Params, Reference
from router.drift.stats import Sample
from router.drift.store import DriftState, Verdict, write_state

app = typer.Typer()
DRIFT_FOUND = 3


def params_for(settings: Settings, interval: float) -> Params:
    return Params(
        alpha=settings.drift_alpha,
        horizon=settings.drift_horizon,
        interval=interval,
        psi_min=settings.drift_psi_min,
        distance_min=settings.drift_distance_min,
        min_samples=settings.drift_min_samples,
    )


def scores_by_version(records: Records) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for r in records.outcomes:
        version, score = r.get("version"), r.get("score")
        if version is not None and isinstance(score, int | float) and r.get("status", 200) < 400:
            out.setdefault(str(version), []).append(float(score))
    return out


def deltas_by_pair(records: Records) -> dict[tuple[str, str], list[float]]:
    out: dict[tuple[str, str], list[float]] = {}
    for r in records.comparisons:
        p, s = r.get("primary_score"), r.get("shadow_score")
        if r.get("error") or not isinstance(p, int | float) or not isinstance(s, int | float):
            continue
        pair = (str(r.get("primary_version")), str(r.get("shadow_version")))
        out.setdefault(pair, []).append(float(s) - float(p))
    return out


def training_reference(
    settings: Settings, experiment: Experiment, version: str
) -> tuple[Reference | None, float]:
    """A version's card reference and decision threshold (None: no card, or no reference)."""
    card = card_of(settings.models_dir, experiment.model, version)
    if card is None:
        return None, 0.5
    threshold = float(card.get("decision_threshold", 0.5))
    ref = card.get("reference")
    if not isinstance(ref, dict) or not ref.get("quantiles"):
        return None, threshold
    return Reference(Sample.of(ref["quantiles"], n=int(ref["rows"])), "training"), threshold


def run_drift(
    settings: Settings,
    experiment: Experiment,
    current: float,
    reference: str,
    interval: float,
    html: Path | None,
    now: float,
) -> dict[str, Any]:
    """One check of every version, pair and the inputs; the report as plain data."""
    params = params_for(settings, interval)
    since, until = now - current, now
    if reference == "training":
        ref_since, ref_until = since - current, since  # paired checks: the window before
    else:
        ref_since, ref_until = date_range(reference, "--reference")
    source = source_for(experiment)
    if ref_until == since:  # adjacent windows: one read, split by time
        now_records, past = read_window(settings, experiment, ref_since, until, source).split(since)
    else:
        now_records = read_window(settings, experiment, since, until, source)
        past = read_window(settings, experiment, ref_since, ref_until, source)
    if reference != "training" and not (past.outcomes or past.comparisons):
        raise fail(
            f"--reference {reference}: no {source.kind} data of {experiment.name} in that window; "
            "nothing was checked or written"
        )
    current_scores = scores_by_version(now_records)
    past_scores = scores_by_version(past)
    versions = sorted({experiment.version_of(v) for v in experiment.variants} | set(current_scores))
    results: list[CheckResult] = []
    for version in versions:
        ref, threshold = training_reference(settings, experiment, version)
        if reference != "training":
            past_version = past_scores.get(version)
            ref = Reference(Sample.of(past_version), "window") if past_version else None
        results.append(
            checks.prediction(version, current_scores.get(version, []), ref, threshold, params)
        )
    now_deltas, past_deltas = deltas_by_pair(now_records), deltas_by_pair(past)
    for primary, shadow in sorted(set(now_deltas) | set(past_deltas)):
        results.append(
            checks.paired(
                primary,
                shadow,
                now_deltas.get((primary, shadow), []),
                past_deltas.get((primary, shadow), []),
                params,
            )
        )
    notes: list[str] = []
    input_check = check_inputs(settings, experiment, now_records, past, reference, params, html)
    if input_check is not None and input_check.verdict == "skipped":
        notes.append(f"input drift: {input_check.reason}")
    drift = checks.any_drift(results) or bool(input_check and input_check.drift)
    return {
        "experiment": experiment.name,
        "checked_at": now,
        "drift": drift,
        "current": {"since": since, "until": until, "seconds": current},
        "reference": {
            "kind": "training" if reference == "training" else "window",
            "since": ref_since,
            "until": ref_until,
        },
        "source": source.describe(),
        "params": params.as_dict(),
        "checks": [r.as_dict() for r in results],
        "input": input_check.as_dict() if input_check else None,
        "html": input_check.html if input_check else None,
        "notes": notes,
    }


def check_inputs(
    settings: Settings,
    experiment: Experiment,
    now_records: Records,
    past: Records,
    reference: str,
    params: Params,
    html: Path | None,
) -> inputs.InputCheck | None:
    """Evidently on captured inputs; None when the experiment keeps no inputs."""
    if experiment.capture is None or not experiment.capture.inputs:
        return None
    if reference == "training":
        from model_workers.references import read_reference_inputs
        from model_workers.registry import version_dir

        control = experiment.version_of(experiment.control)
        folder = version_dir(settings.models_dir, experiment.model, control)
        ref_inputs = read_reference_inputs(folder)
        if ref_inputs is None:
            return inputs.InputCheck(
                "skipped", f"version {control} has no reference inputs (retrain it to keep some)"
            )
    else:
        ref_inputs = past.inputs()
    target = html or settings.state_dir / "drift" / experiment.name / "drift.html"
    try:
        return inputs.check_inputs(
            ref_inputs,
            now_records.inputs(),
            params.check_alpha,
            settings.drift_input_auc_min,
            params.min_samples,
            settings.drift_input_rows,
            target,
        )
    except inputs.EvidentlyMissing as exc:
        return inputs.InputCheck("skipped", str(exc))


def verdicts_of(report: dict[str, Any]) -> DriftState:
    verdicts = [
        Verdict(
            c["version"],
            c["check"],
            c["verdict"],
            c["reason"],
            {
                "distances": c["distances"],
                "reference_source": c["reference_source"],
                "positive_rate_current": c["positive_rate_current"],
                "positive_rate_reference": c["positive_rate_reference"],
            },
        )
        for c in report["checks"]
    ]
    if report["input"] is not None:
        i = report["input"]
        extra = {k: v for k, v in i.items() if k not in ("verdict", "reason", "drift")}
        verdicts.append(Verdict("all", "input", i["verdict"], i["reason"], extra))
    run = {k: report[k] for k in ("checked_at", "drift", "current", "reference", "html", "params")}
    return DriftState({**run, "source": report["source"]["kind"]}, verdicts)


@app.command("drift")
def drift_command(
    name: ExperimentName,
    current: Annotated[
        str, typer.Option("--current", help="The window checked, back from now (24h, 7d).")
    ] = "24h",
    reference: Annotated[
        str,
        typer.Option(
            "--reference",
            help="training (each version's validation scores, from its model card) or "
            "DATE..DATE (the traffic of that window).",
        ),
    ] = "training",
    html: Annotated[
        Path | None,
        typer.Option(
            "--html",
            help="Where Evidently's input drift report goes "
            "(default: <state_dir>/drift/<experiment>/drift.html).",
        ),
    ] = None,
    as_json: JsonOption = False,
    every: Annotated[
        str | None,
        typer.Option("--every", help="Check again at this interval until stopped (24h)."),
    ] = None,
) -> None:
    """Prediction, version-against-version and input drift; exits 3 when drift is found."""
    settings = Settings()
    seconds = window_seconds(current, "--current")
    interval = window_seconds(every, "--every") if every is not None else seconds
    if reference != "training":
        date_range(reference, "--reference")
    experiment_named(settings, name)
    if every is None:
        if check_once(settings, name, seconds, reference, interval, html, as_json):
            raise typer.Exit(DRIFT_FOUND)
        return
    stop = threading.Event()

    def stop_after_this_check(signum: int, frame: object) -> None:
        # A signal that raised inside a check could land in a lock held by the progress line
        # or a library; the first one only asks the loop to stop, a second one aborts.
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    handlers = {sig: signal.signal(sig, stop_after_this_check) for sig in STOP_SIGNALS}
    next_run = time.time()
    try:
        while not stop.is_set():
            try:
                check_once(settings, name, seconds, reference, interval, html, as_json)
            except typer.Exit as exc:
                if exc.exit_code == 2:
                    raise
            if not stop.is_set():
                err_console.print(f"the next check runs in {every}", highlight=False)
            next_run += interval
            stop.wait(max(0.0, next_run - time.time()))
    except KeyboardInterrupt:
        pass
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    err_console.print("stopped", highlight=False)


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
"""``--every`` finishes the check in progress, then stops (a second signal aborts it)."""


def check_once(
    settings: Settings,
    name: str,
    seconds: float,
    reference: str,
    interval: float,
    html: Path | None,
    as_json: bool,
) -> bool:
    """One run: check, write the verdicts, print; True when drift was found."""
    from router.cli.render import render_drift

    experiment = experiment_named(settings, name)
    # Reading a day of capture files and running Evidently can take a while: say so, on stderr.
    with err_console.status(f"checking drift of {name}: reading captures, testing each version"):
        report = run_drift(settings, experiment, seconds, reference, interval, html, time.time())
    state = verdicts_of(report)
    on_redis(
        settings,
        "the verdicts were not written",
        lambda client: write_state(client, experiment.name, state),
    )
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        render_drift(console, report)
    for note in report["notes"]:
        err_console.print(f"[yellow]note:[/yellow] {escape(note)}", highlight=False)
    return bool(report["drift"])
