"""The Alertmanager receiver: a firing alert labelled ``experiment`` and ``turnout_action`` acts.

Alertmanager's webhook payload (version 4) carries a list of alerts. One labelled
``experiment=NAME`` and ``turnout_action=rollback|pause`` that is ``firing`` acts once: repeats of
the same alert (Alertmanager resends until it resolves) are remembered by fingerprint and start
time, and change nothing; ``resolved`` alerts change nothing; alerts without those labels are
ignored. However many distinct alerts of one call ask the same experiment for the same action,
it is done once and the rest are counted (``collapsed``). The answer says ``acted`` only when
something changed, else ``unchanged`` and why. The whole payload is checked before anything
acts, so a malformed one (400) or one naming an unknown experiment (404) changes nothing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

from router.admin.actions import AdminActions, check_reason, redis_call
from router.core.errors import BadRequest, Conflict, echo
from router.routing.table import Route

ACTIONS = ("rollback", "pause")
STATUSES = ("firing", "resolved")


@dataclass(frozen=True)
class AlertCall:
    """One alert that asks Turnout to act."""

    experiment: str
    action: str
    status: str
    identity: str
    """Fingerprint and start: the same alert resent has the same identity."""
    name: str
    summary: str


def _labels(alert: dict[str, Any], where: str) -> dict[str, str]:
    labels = alert.get("labels")
    if not isinstance(labels, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
    ):
        raise BadRequest(f"{where}.labels must be an object of strings", code="invalid_payload")
    return labels


def parse_payload(body: Any) -> list[AlertCall]:
    """The alerts that ask for an action; ``BadRequest`` (400) naming what is malformed."""
    if not isinstance(body, dict):
        raise BadRequest("the payload must be a JSON object", code="invalid_payload")
    alerts = body.get("alerts")
    if not isinstance(alerts, list):
        raise BadRequest(
            "'alerts' must be a list (Alertmanager webhook format)", code="invalid_payload"
        )
    calls = []
    for index, alert in enumerate(alerts):
        where = f"alerts[{index}]"
        if not isinstance(alert, dict):
            raise BadRequest(f"{where} must be an object", code="invalid_payload")
        status = alert.get("status")
        if status not in STATUSES:
            raise BadRequest(f"{where}.status must be firing or resolved", code="invalid_payload")
        labels = _labels(alert, where)
        if "experiment" not in labels or "turnout_action" not in labels:
            continue
        action = labels["turnout_action"]
        if action not in ACTIONS:
            raise BadRequest(
                f"{where}: turnout_action must be one of {', '.join(ACTIONS)}, got {echo(action)}",
                code="invalid_payload",
            )
        starts = alert.get("startsAt", "")
        fingerprint = alert.get("fingerprint")
        if not isinstance(starts, str) or (
            fingerprint is not None and not isinstance(fingerprint, str)
        ):
            raise BadRequest(
                f"{where}: startsAt and fingerprint must be strings", code="invalid_payload"
            )
        if not fingerprint:
            fingerprint = hashlib.sha256(
                orjson.dumps(labels, option=orjson.OPT_SORT_KEYS)
            ).hexdigest()[:16]
        annotations = alert.get("annotations") or {}
        summary = annotations.get("summary", "") if isinstance(annotations, dict) else ""
        calls.append(
            AlertCall(
                labels["experiment"],
                action,
                status,
                f"{fingerprint}|{starts}",
                labels.get("alertname", "alert"),
                summary if isinstance(summary, str) else "",
            )
        )
    return calls


async def receive(actions: AdminActions, body: Any, actor: str, memory: int) -> dict[str, Any]:
    """Act once per (experiment, action) of a call, however many distinct alerts ask for it:
    the rest are counted as collapsed, so one storm cannot write thousands of audit events."""
    calls = parse_payload(body)
    routes: dict[str, Route] = {c.experiment: actions.route(c.experiment) for c in calls}
    for call in calls:
        if call.action == "pause" and routes[call.experiment].experiment.rollout is None:
            raise Conflict(
                f"{call.experiment} has no rollout to pause (turnout_action=pause)",
                code="no_rollout",
            )
    store = actions.require_rollouts()
    groups: dict[tuple[str, str, str], list[AlertCall]] = {}
    for call in calls:
        groups.setdefault((call.experiment, call.action, call.status), []).append(call)
    results = []
    collapsed = 0
    for (experiment, action, status), group in groups.items():
        result: dict[str, Any] = {
            "experiment": experiment,
            "action": action,
            "alert": group[0].name,
            "alerts": len(group),
        }
        if status == "resolved":
            results.append({**result, "result": "resolved: nothing changes"})
            continue
        fresh = []
        for call in group:
            async with redis_call("nothing was changed"):
                if await store.first_sight(experiment, call.identity, actions.clock(), memory):
                    fresh.append(call)
        if not fresh:
            results.append({**result, "result": "repeat: already acted on"})
            continue
        collapsed += len(fresh) - 1
        first = fresh[0]
        reason = check_reason(f"Alertmanager: {first.name} {first.summary}".strip()[:400], True)
        outcome = await act(actions, routes[experiment], action, actor, reason)
        results.append({**result, "alert": first.name, "collapsed": len(fresh) - 1, **outcome})
    return {"alerts": len(body.get("alerts", [])), "collapsed": collapsed, "calls": results}


async def act(
    actions: AdminActions, route: Route, action: str, actor: str, reason: str
) -> dict[str, Any]:
    """Do what the alert asks; ``acted`` only when something changed, else why not."""
    state = await actions.rollout_state_of(route) if route.experiment.rollout else None
    rolling = state is not None and state.phase in ("running", "paused", "halted")
    if action == "rollback":
        control = route.experiment.control
        already = actions.flags.for_experiment(route.name).forced_variant == control
        if not already:
            await actions.rollback(route, None, actor, reason)
        if rolling:
            await actions.rollout_command(route, "rollback", actor, reason)
        if already and not rolling:
            return {"result": f"unchanged: already rolled back to {control}"}
        return {"result": "acted"}
    if state is not None and state.phase == "running":
        await actions.rollout_command(route, "pause", actor, reason)
        return {"result": "acted"}
    phase = state.phase if state is not None else "unknown"
    return {"result": f"unchanged: the rollout is {phase}, not running"}
