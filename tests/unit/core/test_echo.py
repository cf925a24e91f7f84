"""A 4xx detail says what was refused without handing a client's value back whole."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.testclient import TestClient

from router.admin.alertmanager import parse_payload
from router.core.errors import ECHO_LIMIT, TurnoutError, cut, echo
from router.core.http import install_error_handlers
from router.core.inputs import check_features
from router.flags.values import FlagDefaults
from router.gateway.open_inference import requested_outputs
from router.recording.feedback import parse_feedback, require_label

HUGE = "x" * 100_000
RID = "0190b0c2-6b4e-7b1c-8d4e-0123456789ab"
DETAIL_BOUND = 2 * ECHO_LIMIT + 200
"""Two echoed values and the sentence around them."""


def test_a_short_value_is_echoed_whole() -> None:
    assert echo("v2") == "'v2'"
    assert cut("model a") == "model a"


def test_a_long_value_is_cut_and_says_so() -> None:
    shown = echo(HUGE)
    assert len(shown) < ECHO_LIMIT + 60
    assert shown.startswith("'xxx") and "cut" in shown and "100002 characters" in shown
    assert len(echo(HUGE, limit=64)) < 64 + 60


REFUSALS: list[tuple[str, Callable[[], object]]] = [
    ("feedback label", lambda: require_label(HUGE, frozenset({"0", "1"}), "version v1")),
    ("feedback unknown field", lambda: parse_feedback({"request_id": RID, HUGE: 1})),
    ("flag name", lambda: FlagDefaults().check(HUGE, True)),
    ("feature name", lambda: check_features({HUGE: 1.0}, ["a"], {"a": "number"}, 100)),
    ("open inference output", lambda: requested_outputs({"outputs": [{"name": HUGE}]})),
    (
        "alertmanager action",
        lambda: parse_payload(
            {
                "alerts": [
                    {"status": "firing", "labels": {"experiment": "e", "turnout_action": HUGE}}
                ]
            }
        ),
    ),
]


@pytest.mark.parametrize(("case", "refuse"), REFUSALS, ids=[c for c, _ in REFUSALS])
def test_a_refusal_of_a_huge_value_echoes_a_bounded_part(
    case: str, refuse: Callable[[], object]
) -> None:
    with pytest.raises(TurnoutError) as caught:
        refuse()
    assert 400 <= caught.value.status < 500, case
    detail = caught.value.detail
    assert len(detail) <= DETAIL_BOUND, (case, len(detail))
    assert "cut" in detail, case


def test_a_request_validation_error_cuts_the_clients_keys() -> None:
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/counts")
    async def counts(body: dict[str, int]) -> dict[str, int]:
        return body

    with TestClient(app) as client:
        r = client.post("/counts", json={HUGE: "not a count"})
    assert r.status_code == 422
    assert HUGE not in r.text and len(r.json()["detail"]) <= DETAIL_BOUND


def test_a_validation_error_lists_five_problems_and_counts_the_rest() -> None:
    errors = [{"loc": ("body", f"k{i}" * 500), "msg": "Field required"} for i in range(40)]
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/bad")
    async def bad() -> None:
        raise RequestValidationError(errors)

    with TestClient(app) as client:
        detail = client.get("/bad").json()["detail"]
    assert detail.count("Field required") == 5 and detail.endswith("; and 35 more")
    assert len(detail) <= 5 * (ECHO_LIMIT + 80) + 20
