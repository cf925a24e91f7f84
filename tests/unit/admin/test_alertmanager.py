"""Parsing Alertmanager's webhook payload: what acts, what is ignored, what is refused (400)."""

from __future__ import annotations

from typing import Any

import pytest

from router.admin.alertmanager import parse_payload
from router.core.errors import BadRequest


def payload(*alerts: dict[str, Any]) -> dict[str, Any]:
    return {"version": "4", "status": "firing", "alerts": list(alerts)}


def alert(status: str = "firing", **labels: str) -> dict[str, Any]:
    return {"status": status, "labels": labels, "startsAt": "2026-11-30T10:00:00Z"}


def test_firing_and_resolved_alerts_with_the_labels_are_calls() -> None:
    calls = parse_payload(
        payload(
            alert(experiment="e", turnout_action="rollback", alertname="A"),
            alert("resolved", experiment="e", turnout_action="pause"),
            alert(alertname="Unrelated"),
        )
    )
    assert [(c.experiment, c.action, c.status, c.name) for c in calls] == [
        ("e", "rollback", "firing", "A"),
        ("e", "pause", "resolved", "alert"),
    ]


def test_the_same_alert_resent_has_the_same_identity() -> None:
    a = parse_payload(payload(alert(experiment="e", turnout_action="rollback")))
    b = parse_payload(payload(alert(experiment="e", turnout_action="rollback")))
    assert a[0].identity == b[0].identity
    later = alert(experiment="e", turnout_action="rollback")
    later["startsAt"] = "2026-11-30T11:00:00Z"
    assert parse_payload(payload(later))[0].identity != a[0].identity


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ([], "JSON object"),
        ({"alerts": {}}, "'alerts' must be a list"),
        (payload("x"), "alerts[0] must be an object"),  # type: ignore[arg-type]
        (payload({"status": "pending", "labels": {}}), "firing or resolved"),
        (payload({"status": "firing", "labels": {"a": 1}}), "labels must be an object"),
        (payload(alert(experiment="e", turnout_action="restart")), "turnout_action"),
        (payload({**alert(experiment="e", turnout_action="pause"), "startsAt": 5}), "strings"),
    ],
)
def test_malformed_payloads_are_refused_with_the_reason(body: Any, reason: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse_payload(body)
    assert reason in info.value.detail and info.value.status == 400
