"""The verdict Argo Rollouts and Flagger read, from a rollout's state."""

from __future__ import annotations

from router.gateway.rollout_routes import VERDICT_STATUS, verdict_of
from router.rollout.state import RolloutState


def state(**kw: object) -> RolloutState:
    return RolloutState(fingerprint="f", **kw)  # type: ignore[arg-type]


def test_verdict_by_phase_and_gates() -> None:
    assert verdict_of(state(), False)[0] == "inconclusive"
    assert verdict_of(state(phase="rolled_back", reason="x"), True)[0] == "fail"
    assert verdict_of(state(phase="aborted"), True)[0] == "fail"
    assert verdict_of(state(phase="halted"), True)[0] == "fail"
    assert verdict_of(state(phase="promoted"), True)[0] == "pass"
    assert verdict_of(state(phase="completed"), True)[0] == "pass"
    passing = [{"gate": "error_rate", "verdict": "pass"}, {"gate": "reward", "verdict": "pass"}]
    assert verdict_of(state(gates=passing), True)[0] == "pass"
    waiting = [passing[0], {"gate": "reward", "verdict": "waiting"}]
    assert verdict_of(state(gates=waiting, next_action="wait"), True) == ("inconclusive", "wait")
    failing = [passing[0], {"gate": "reward", "verdict": "fail"}]
    assert verdict_of(state(gates=failing, phase="paused"), True)[0] == "fail"
    assert verdict_of(state(gates=[]), True)[0] == "inconclusive"


def test_flagger_status_codes() -> None:
    assert VERDICT_STATUS == {"pass": 200, "fail": 412, "inconclusive": 425}
    assert all(code < 300 for word, code in VERDICT_STATUS.items() if word == "pass")
    assert all(code > 202 for word, code in VERDICT_STATUS.items() if word != "pass")
