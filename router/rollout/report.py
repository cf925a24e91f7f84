"""A rollout as plain data: state, weights, gates, history, what comes next (for the API, the
CLI and the console's timeline). Pure."""

from __future__ import annotations

from typing import Any

from router.config.experiments import Experiment
from router.rollout.gates import gate_alpha, srm_p
from router.rollout.state import RolloutState, fingerprint, step_percent


def rollout_report(
    experiment: Experiment,
    state: RolloutState | None,
    history: list[dict[str, Any]],
    weights: dict[str, float],
    now: float,
) -> dict[str, Any]:
    rollout = experiment.rollout
    known = state is not None and state.known
    current = (
        rollout is not None
        and known
        and state is not None
        and state.fingerprint == fingerprint(experiment)
    )
    out: dict[str, Any] = {
        "experiment": experiment.name,
        "phase": state.phase if known and state else None,
        # the last rollout's phase, even once a promotion removed the rollout block
        "control": experiment.control,
        "weights": weights,
        "srm": None,
        "rollout": None,
    }
    if experiment.srm is not None:
        out["srm"] = {
            "action": experiment.srm.action,
            "p": experiment.srm.p,
            "p_per_window": srm_p(experiment),
            "status": state.srm_status if state else "ok",
            "last": state.srm if state else None,
        }
    if rollout is None:
        out["history"] = history
        return out
    assert state is not None or not current
    out["rollout"] = {
        "candidate": rollout.candidate,
        "steps": rollout.steps,
        "interval_s": rollout.interval,
        "max_interval_s": rollout.max_interval,
        "min_samples": rollout.min_samples,
        "alpha": rollout.alpha,
        "alpha_per_gate_and_step": gate_alpha(rollout),
        "on_fail": rollout.on_fail,
        "on_inconclusive": rollout.on_inconclusive,
        "on_success": rollout.on_success,
        "phase": state.phase if current and state else "starting",
        "step": state.step if current and state else None,
        "percent": step_percent(experiment, state.step) if current and state else None,
        "window": state.window if current and state else None,
        "step_started": state.step_started if current and state else None,
        "step_age_s": now - state.step_started if current and state else None,
        "reason": state.reason if current and state else "",
        "gates": state.gates if current and state else [],
        "checked_at": state.checked_at if current and state else None,
        "next": state.next_action if current and state else "the driver starts it at its next look",
    }
    out["history"] = history
    return out
