"""Gates of a sticky experiment count users, not requests (delta method, SRM on users), wait
rather than decide on partial per-user sums, and hold the reward gate when labels reach the arms
unevenly."""

from __future__ import annotations

from router.reports.units import UnitSums
from router.rollout.gates import decide
from router.rollout.window import ArmWindow
from tests.unit.rollout.test_gates import ROLLOUT, arms, experiment, look, state, unsticky

REWARD = ROLLOUT.replace(
    "max_increase: 0.01}",
    "max_increase: 0.5}\n    - {metric: reward, max_decrease: 0.05, label_delay: 30s}",
).replace("min_samples: 500", "min_samples: 100")


def heavy_arm(light_users: int, heavy_failures: int, seed: int) -> ArmWindow:
    """``light_users`` users with one request and a 1% error rate, plus one batch client
    with 2,000 requests of which ``heavy_failures`` failed (its own, correlated, errors)."""
    pairs = [(1.0, 1.0 if (i + seed) % 100 == 0 else 0.0) for i in range(light_users)]
    pairs.append((2_000.0, float(heavy_failures)))
    users = UnitSums.of_units(pairs)
    return ArmWindow(assigned=int(users.n), failed=int(users.y), users=users)


def test_one_heavy_user_does_not_roll_back_a_healthy_candidate() -> None:
    """The candidate's one batch client had a bad hour: per request that is 'proof' of harm,
    per user it is one user of 5,001."""
    window = {"v1": heavy_arm(45_000, 20, 0), "v2": heavy_arm(5_000, 200, 1)}
    sticky = decide(experiment(ROLLOUT), state(experiment(ROLLOUT)), look(window))
    assert sticky.gates[0].verdict != "fail" and sticky.action != "rollback"
    assert "per user" in sticky.gates[0].method
    assert sticky.gates[0].n["candidate_users"] == 5_001
    plain = unsticky(ROLLOUT)
    by_request = decide(plain, state(plain), look(window))
    assert by_request.gates[0].verdict == "fail" and by_request.action == "rollback"
    assert "per request" in by_request.gates[0].method


def test_partial_or_lost_per_user_sums_make_the_gate_wait() -> None:
    exp = experiment(ROLLOUT)
    window = arms((9_000, 90), (1_000, 40))
    lost = {"v1": window["v1"], "v2": ArmWindow(assigned=1_000, failed=40)}  # sums gone
    waited = decide(exp, state(exp), look(lost))
    assert waited.gates[0].verdict == "waiting" and waited.action != "rollback"
    assert "do not cover every request" in waited.gates[0].detail
    full = dict(window)
    full["v2"] = ArmWindow(assigned=1_000, failed=40, users=window["v2"].users, units_full=True)
    bounded = decide(exp, state(exp), look(full))
    assert bounded.gates[0].verdict == "waiting" and "per-user bound" in bounded.gates[0].detail
    assert decide(exp, state(exp), look(window)).action == "rollback"  # complete sums decide


def test_keyless_requests_are_counted_apart_and_left_out_of_the_sums() -> None:
    exp = experiment(ROLLOUT)
    window = arms((9_000, 90), (1_000, 10))
    control = window["v1"]
    window["v1"] = ArmWindow(
        assigned=control.assigned + 300,
        failed=control.failed + 300,
        users=control.users,
        keyless=300,
    )
    result = decide(exp, state(exp), look(window))
    gate = result.gates[0]
    assert gate.n["keyless"] == 300 and gate.verdict != "waiting"
    assert gate.estimate is not None and abs(gate.estimate) < 1e-9  # 1% against 1%


def test_srm_counts_users_when_sticky() -> None:
    exp = experiment(ROLLOUT, "srm: {action: halt, p: 0.001}\n")
    # 10% of users on the candidate, as configured, but one of them sends half its requests.
    window = {"v1": heavy_arm(9_000, 0, 0), "v2": heavy_arm(999, 0, 0)}
    window["v2"].assigned += 8_000
    window["v2"].users = UnitSums.of_units([(1.0, 0.0)] * 999 + [(10_000.0, 0.0)])
    window["v2"].assigned = int(window["v2"].users.n)
    fair = decide(exp, state(exp), look(window))
    assert fair.srm is not None and not fair.srm.mismatch and fair.action != "halt"
    assert fair.srm.counts == {"v1": 9_001, "v2": 1_000}
    skewed = {"v1": heavy_arm(8_000, 0, 0), "v2": heavy_arm(2_000, 0, 0)}
    assert decide(exp, state(exp), look(skewed)).action == "halt"


def rewards_by_user(users: int, reward: float, labelled_share: float = 1.0) -> ArmWindow:
    labelled = int(users * labelled_share)
    sums = UnitSums.of_units([(1.0, reward)] * labelled)
    arm = ArmWindow(assigned=users, users=UnitSums(users, users, 0, users, 0, 0), reward_users=sums)
    arm.feedback = {60: (labelled, sums.y, sums.yy)}
    return arm


def test_reward_gate_by_user_waits_for_folded_sums_then_decides() -> None:
    exp = experiment(REWARD)
    window = {"v1": rewards_by_user(2_000, 0.9), "v2": rewards_by_user(2_000, 0.5)}
    unfolded = decide(exp, state(exp), look(window))
    reward = next(g for g in unfolded.gates if g.gate == "reward")
    assert reward.verdict == "waiting" and "folding" in reward.detail
    folded = decide(exp, state(exp, step=1), look(window, matured=66))
    reward = next(g for g in folded.gates if g.gate == "reward")
    assert reward.verdict == "fail" and reward.n["candidate_users"] == 2_000


def test_uneven_label_arrival_holds_the_reward_gate() -> None:
    exp = experiment(REWARD)
    # step 1 = 50/50; the candidate's answers get labels 20% less often, and look worse.
    window = {"v1": rewards_by_user(5_000, 0.9), "v2": rewards_by_user(5_000, 0.5, 0.8)}
    held = decide(exp, state(exp, step=1), look(window, matured=66))
    reward = next(g for g in held.gates if g.gate == "reward")
    assert reward.verdict == "inconclusive" and "labels reach the arms unevenly" in reward.detail
    even = {"v1": rewards_by_user(5_000, 0.9), "v2": rewards_by_user(5_000, 0.5)}
    acted = decide(exp, state(exp, step=1), look(even, matured=66))
    assert next(g for g in acted.gates if g.gate == "reward").verdict == "fail"


def test_per_user_state_may_not_expire_before_the_attribution_it_serves() -> None:
    import pytest
    from pydantic import ValidationError

    from router.core.settings import Settings

    with pytest.raises(ValidationError) as refused:
        Settings(rollout_units_ttl=3_600, attribution_ttl=86_400)
    assert "rollout_units_ttl (3600 s) must be at least attribution_ttl (86400 s)" in str(
        refused.value
    )
    assert Settings(rollout_units_ttl=86_400, attribution_ttl=86_400).rollout_units_ttl == 86_400
