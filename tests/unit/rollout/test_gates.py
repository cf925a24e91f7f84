"""The driver's decision at one look, from plain counters (no Redis, no clock)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from router.config.experiments import Experiment
from router.config.loader import parse_experiment
from router.reports.units import UnitSums
from router.rollout.gates import Look, decide, gate_alpha, srm_p
from router.rollout.sequential import Moments
from router.rollout.state import ENTRY, RolloutState, fingerprint, weights_in_force
from router.rollout.window import ArmWindow, parse_window
from router.storage import keys

BASE = """\
name: exp
model: m
control: v1
variants:
  v1: {url: "http://127.0.0.1:8101"}
  v2: {url: "http://127.0.0.1:8102"}
policy: {kind: canary, weights: {v1: 100, v2: 0}, sticky: user_id}
"""


def experiment(rollout: str, extra: str = "") -> Experiment:
    return parse_experiment(BASE + rollout + extra, Path("exp.yaml")).experiment


def unsticky(rollout: str, extra: str = "") -> Experiment:
    """The same experiment without a sticky key: every request is its own unit."""
    text = BASE.replace(", sticky: user_id", "") + rollout + extra
    return parse_experiment(text, Path("exp.yaml")).experiment


ROLLOUT = """\
rollout:
  candidate: v2
  steps: [10, 50, 100]
  interval: 10m
  max_interval: 1h
  min_samples: 500
  gates:
    - {metric: error_rate, max_increase: 0.01}
"""


def state(exp: Experiment, **kw: object) -> RolloutState:
    values: dict[str, object] = {"fingerprint": fingerprint(exp), "window": 1, "step": 0}
    values.update(kw)
    return RolloutState(**values)  # type: ignore[arg-type]


def one_each(assigned: int, failed: int) -> ArmWindow:
    """Every user sent one request: per-user and per-request statistics coincide."""
    users = UnitSums(assigned, assigned, failed, assigned, failed, failed)
    return ArmWindow(assigned=assigned, failed=failed, users=users)


def arms(control: tuple[int, int], candidate: tuple[int, int]) -> dict[str, ArmWindow]:
    return {"v1": one_each(*control), "v2": one_each(*candidate)}


def look(window: dict[str, ArmWindow], now: float = 700.0, **kw: object) -> Look:
    return Look(window, now, 10.0, **kw)  # type: ignore[arg-type]


def test_alpha_is_split_over_every_gate_and_compared_step() -> None:
    exp = experiment(
        ROLLOUT.replace(
            "max_increase: 0.01}", "max_increase: 0.01}\n    - {metric: reward, max_decrease: 0.01}"
        )
    )
    assert exp.rollout is not None
    assert gate_alpha(exp.rollout) == pytest.approx(0.05 / (2 * 2))
    srm = experiment(ROLLOUT, "srm: {action: halt, p: 0.003}\n")
    assert srm_p(srm) == pytest.approx(0.001)


def test_waits_for_min_samples_then_advances_on_non_inferiority() -> None:
    exp = experiment(ROLLOUT)
    early = decide(exp, state(exp), look(arms((2000, 20), (200, 2))))
    assert early.action == "none" and early.gates[0].verdict == "waiting"
    assert "500 requests per arm" in early.next_action
    good = decide(exp, state(exp), look(arms((90_000, 900), (10_000, 95))))
    assert good.action == "advance" and good.gates[0].verdict == "pass"
    interval = good.gates[0].interval
    assert interval is not None and interval[1] < 0.01
    too_soon = decide(exp, state(exp), look(arms((90_000, 900), (10_000, 95)), now=60.0))
    assert too_soon.action == "none" and "more of the interval" in too_soon.next_action


def test_harm_rolls_back_and_a_hard_gate_acts_before_min_samples() -> None:
    exp = experiment(ROLLOUT)
    worse = decide(exp, state(exp), look(arms((50_000, 500), (5_000, 150))))
    assert worse.action == "rollback" and worse.gates[0].verdict == "fail"
    hard = decide(exp, state(exp), look(arms((300, 0), (100, 60))))
    assert hard.action == "rollback" and hard.gates[0].hard
    paused_config = experiment(ROLLOUT + "  on_fail: pause\n")
    assert (
        decide(paused_config, state(paused_config), look(arms((300, 0), (100, 60)))).action
        == "pause"
    )


def test_candidate_down_is_a_hard_failure() -> None:
    exp = experiment(ROLLOUT)
    down = decide(exp, state(exp), look(arms((10, 0), (1, 0)), candidate_down=True))
    assert down.action == "rollback" and down.gates[0].gate == "upstream"


def test_inconclusive_past_max_interval_takes_on_inconclusive() -> None:
    exp = experiment(ROLLOUT)
    window = arms((5_000, 50), (600, 9))
    assert decide(exp, state(exp), look(window)).action == "none"
    late = decide(exp, state(exp), look(window, now=3700.0))
    assert late.action == "pause" and "inconclusive" in late.reason
    advancing = experiment(ROLLOUT + "  on_inconclusive: advance\n")
    assert decide(advancing, state(advancing), look(window, now=3700.0)).action == "advance"


def test_paused_holds_but_still_rolls_back_and_halted_freezes() -> None:
    exp = experiment(ROLLOUT)
    good = arms((90_000, 900), (10_000, 95))
    assert decide(exp, state(exp, phase="paused"), look(good)).action == "none"
    bad = arms((50_000, 500), (5_000, 150))
    assert decide(exp, state(exp, phase="paused"), look(bad)).action == "rollback"
    assert decide(exp, state(exp, phase="halted"), look(bad)).action == "none"
    assert decide(exp, state(exp, phase="rolled_back"), look(bad)).action == "none"


def test_the_last_step_promotes_or_holds() -> None:
    exp = experiment(ROLLOUT)
    assert decide(exp, state(exp, step=2), look({})).action == "promote"
    held = experiment(ROLLOUT + "  on_success: hold\n")
    assert decide(held, state(held, step=2), look({})).action == "complete"


def test_srm_halts_the_window() -> None:
    exp = experiment(ROLLOUT, "srm: {action: halt, p: 0.001}\n")
    skewed = decide(exp, state(exp), look(arms((8_000, 80), (2_000, 20))))
    assert skewed.action == "halt" and skewed.srm is not None and skewed.srm.mismatch
    fair = decide(exp, state(exp), look(arms((9_010, 90), (990, 10))))
    assert fair.srm is not None and not fair.srm.mismatch and fair.action != "halt"
    warn = experiment(ROLLOUT, "srm: {action: warn}\n")
    assert decide(warn, state(warn), look(arms((8_000, 80), (2_000, 20)))).action != "halt"


def test_reward_gate_counts_only_requests_older_than_the_label_delay() -> None:
    exp = unsticky(
        ROLLOUT.replace(
            "max_increase: 0.01}",
            "max_increase: 0.5}\n    - {metric: reward, max_decrease: 0.05, label_delay: 30s}",
        ).replace("min_samples: 500", "min_samples: 100")
    )
    window = arms((1_000, 0), (1_000, 0))
    # slots of 10 s: at t = 700 with a 30 s delay only slots up to 66 (ending at 670) count.
    window["v1"].feedback = {60: (500, 450.0, 450.0), 68: (500, 0.0, 0.0)}
    window["v2"].feedback = {60: (500, 450.0, 450.0), 69: (500, 0.0, 0.0)}
    result = decide(exp, state(exp), look(window))
    reward = next(g for g in result.gates if g.gate == "reward")
    assert reward.n == {"control": 500, "candidate": 500} and reward.estimate == 0.0


def test_latency_gate_looks_once_per_step() -> None:
    exp = experiment(
        ROLLOUT.replace(
            "max_increase: 0.01}", "max_increase: 0.5}\n    - {metric: latency_p99, max_ratio: 1.5}"
        )
    )
    control = ArmWindow(assigned=5000, latency={5.0: 4900, 10.0: 100})
    slow = ArmWindow(assigned=1000, latency={5.0: 700, 25.0: 0, 50.0: 300})
    before = decide(exp, state(exp), look({"v1": control, "v2": slow}, now=100.0))
    assert next(g for g in before.gates if g.gate == "latency_p99").verdict == "waiting"
    after = decide(exp, state(exp), look({"v1": control, "v2": slow}))
    latency = next(g for g in after.gates if g.gate == "latency_p99")
    assert latency.verdict == "fail" and after.action == "rollback"
    kept = state(exp, gates=[latency.as_dict() | {"verdict": "pass"}])
    again = decide(exp, kept, look({"v1": control, "v2": slow}))
    assert next(g for g in again.gates if g.gate == "latency_p99").verdict == "pass"


def test_shadow_agreement_is_an_entry_gate() -> None:
    exp = experiment(
        ROLLOUT.replace(
            "max_increase: 0.01}", "max_increase: 0.01}\n    - {metric: shadow_agreement, min: 0.9}"
        ),
        "shadow: {targets: [v2]}\n",
    )
    assert weights_in_force(exp, None) == {"v1": 100.0, "v2": 0.0}
    entry = state(exp, step=ENTRY)
    agree = decide(exp, entry, look({}, shadow=Moments.of_rate(990, 1000)))
    assert agree.action == "advance" and [g.gate for g in agree.gates] == ["shadow_agreement"]
    disagree = decide(exp, entry, look({}, shadow=Moments.of_rate(700, 1000)))
    assert disagree.action == "rollback"


def test_weights_in_force_by_phase() -> None:
    exp = experiment(ROLLOUT)
    assert weights_in_force(exp, state(exp, step=1)) == {"v1": 50.0, "v2": 50.0}
    assert weights_in_force(exp, state(exp, phase="rolled_back", step=1)) == {
        "v1": 100.0,
        "v2": 0.0,
    }
    assert weights_in_force(exp, state(exp, phase="completed", step=2)) == {"v1": 0.0, "v2": 100.0}
    stale = state(exp, step=1, fingerprint="another")
    assert weights_in_force(exp, stale) == {"v1": 90.0, "v2": 10.0}


def test_window_hash_parses_into_arms() -> None:
    raw = {
        keys.window_field("v1", keys.WINDOW_ASSIGNED): "10",
        keys.window_field("v1", keys.WINDOW_FAILED): "2",
        keys.window_field("v1", keys.WINDOW_LATENCY + "5"): "7",
        keys.window_field("v1", keys.WINDOW_LATENCY + "+Inf"): "3",
        keys.window_field("v2", keys.WINDOW_FB_N, 7): "4",
        keys.window_field("v2", keys.WINDOW_FB_SUM, 7): "3.5",
        keys.window_field("v2", keys.WINDOW_FB_SUMSQ, 7): "3.25",
        "garbage": "x",
    }
    parsed = parse_window(raw)
    assert (parsed["v1"].assigned, parsed["v1"].failed) == (10, 2)
    assert parsed["v1"].latency == {5.0: 7, math.inf: 3}
    assert parsed["v2"].rewards(None) == Moments(4, 3.5, 3.25)
    assert parsed["v2"].rewards(6) == Moments(0, 0, 0)
