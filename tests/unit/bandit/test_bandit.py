"""The bandit policy, its Thompson tables, sticky arms and the report's bandit section."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError
from rich.console import Console
from scipy.stats import chisquare

from router.bandit.evidence import MemoryBanditStore, arm_stats, evidence_commands, parse_evidence
from router.bandit.runtime import StickyArms
from router.cli.render import render_report
from router.config.experiments import Experiment
from router.config.loader import parse_experiment
from router.core.settings import Settings
from router.reports.experiment import BanditLive, bandit_section, build_report
from router.reports.reads import Recorded
from router.reports.stats import thompson_probabilities
from router.routing.policies import POLICIES, build_policy, dry_run
from router.routing.policies.bandit import Bandit, Posteriors
from router.routing.policies.base import ArmStats, HeldArm, RoutingView
from router.routing.policies.thompson import thompson_table
from router.storage import keys

ARMS = ("v1", "v2", "v3")


def bandit_experiment(extra: str = "", arms: tuple[str, ...] = ARMS) -> Experiment:
    lines = [
        "name: exp",
        "model: m",
        "control: v1",
        "variants:",
        *[f"  {v}: {{url: 'http://127.0.0.1:{8100 + i}'}}" for i, v in enumerate(ARMS)],
        "policy:",
        "  kind: bandit",
        f"  arms: [{', '.join(arms)}]",
    ]
    text = "\n".join(lines) + "\n" + extra
    return parse_experiment(text, Path("exp.yaml")).experiment


def policy_of(extra: str = "") -> Bandit:
    policy = build_policy(bandit_experiment(extra))
    assert isinstance(policy, Bandit)
    return policy


def posteriors(*params: tuple[float, float, int]) -> Posteriors:
    return Posteriors({arm: ArmStats(*p) for arm, p in zip(ARMS, params, strict=True)})


SKEWED = posteriors((30, 70, 98), (12, 88, 98), (5, 95, 98))
CLOSE = posteriors((12, 28, 38), (10, 30, 38), (8, 32, 38))


def test_registered() -> None:
    assert "bandit" in POLICIES


def test_table_matches_the_reference_quadrature() -> None:
    rng = np.random.default_rng(3)
    cases: list[dict[str, tuple[float, float]]] = [
        {"a": (1.0, 1.0), "b": (1.0, 1.0)},
        {"a": (5000.0, 95000.0), "b": (4000.0, 96000.0), "c": (3000.0, 97000.0)},
        {"a": (1.0, 1.0), "b": (5000.0, 95000.0), "c": (0.5, 0.5)},
    ]
    for _ in range(60):
        arms = {}
        for j in range(int(rng.integers(2, 5))):
            n, mean = 10 ** rng.uniform(-0.5, 5), rng.uniform(0.01, 0.99)
            arms[f"a{j}"] = (max(0.2, n * mean), max(0.2, n * (1 - mean)))
        cases.append(arms)
    for params in cases:
        fast, exact = thompson_table(params), thompson_probabilities(params)
        assert abs(sum(fast.values()) - 1.0) < 1e-12
        assert max(abs(fast[a] - exact[a]) for a in params) < 1e-4, params


def test_seeded_decisions_are_reproducible() -> None:
    policy = policy_of("  min_share: 0.05\n")
    view = RoutingView(arm_stats=SKEWED)
    runs = [[policy.choose(None, random.Random(11), view) for _ in range(1)] for _ in range(2)]
    assert runs[0] == runs[1]
    a, b = random.Random(5), random.Random(5)
    assert [policy.choose(None, a, view) for _ in range(300)] == [
        policy.choose(None, b, view) for _ in range(300)
    ]


def test_propensity_is_the_thompson_probability_and_matches_monte_carlo() -> None:
    policy = policy_of()
    view = RoutingView(arm_stats=CLOSE)
    rng = random.Random(1)
    n = 40_000
    decisions = [policy.choose(None, rng, view) for _ in range(n)]
    logged = {d.variant: d.probability for d in decisions}
    exact = thompson_probabilities({a: (CLOSE[a].alpha, CLOSE[a].beta) for a in ARMS})
    for arm in ARMS:
        assert logged[arm] == pytest.approx(exact[arm], abs=1e-4)
    # Monte Carlo Thompson sampling (argmax of Beta draws) picks arms with the same frequencies.
    draws = np.random.default_rng(2).beta(
        [CLOSE[a].alpha for a in ARMS], [CLOSE[a].beta for a in ARMS], size=(n, 3)
    )
    monte_carlo = np.bincount(np.argmax(draws, axis=1), minlength=3) / n
    counts = Counter(d.variant for d in decisions)
    for i, arm in enumerate(ARMS):
        assert abs(monte_carlo[i] - logged[arm]) < 4 * np.sqrt(logged[arm] / n) + 1e-3
    expected = [n * logged[a] for a in ARMS]
    assert chisquare([counts[a] for a in ARMS], expected).pvalue > 0.001


def test_floor_keeps_every_arm_above_min_share() -> None:
    policy = policy_of("  min_share: 0.1\n")
    crushed = posteriors((900, 100, 1000), (10, 990, 1000), (10, 990, 1000))
    share = policy.share(RoutingView(arm_stats=crushed))
    assert share["v2"] == pytest.approx(0.1, abs=1e-6)
    assert share["v3"] == pytest.approx(0.1, abs=1e-6)
    assert sum(share.values()) == pytest.approx(1.0)
    rng = random.Random(4)
    counts = Counter(
        policy.choose(None, rng, RoutingView(arm_stats=crushed)).variant for _ in range(20_000)
    )
    assert chisquare([counts[a] for a in ARMS], [20_000 * share[a] for a in ARMS]).pvalue > 0.001


def test_warmup_is_uniform_until_every_arm_has_enough_rewards() -> None:
    policy = policy_of("  warmup: 50\n")
    early = posteriors((40, 10, 48), (2, 50, 50), (2, 50, 50))
    rng = random.Random(9)
    decisions = [policy.choose(None, rng, RoutingView(arm_stats=early)) for _ in range(3000)]
    assert all(d.probability == pytest.approx(1 / 3) for d in decisions)
    counts = Counter(d.variant for d in decisions)
    assert chisquare([counts[a] for a in ARMS]).pvalue > 0.001
    done = posteriors((40, 12, 50), (2, 50, 50), (2, 50, 50))
    assert policy.choose(None, rng, RoutingView(arm_stats=done)).probability > 0.99


def test_unavailable_arms_are_never_drawn_and_propensity_covers_the_rest() -> None:
    policy = policy_of("  min_share: 0.05\n")
    view = RoutingView(unavailable=frozenset({"v1"}), arm_stats=SKEWED)
    rng = random.Random(2)
    decisions = [policy.choose(None, rng, view) for _ in range(2000)]
    assert {d.variant for d in decisions} == {"v2", "v3"}
    probs = {d.variant: d.probability for d in decisions}
    assert sum(probs.values()) == pytest.approx(1.0)
    pair = thompson_probabilities({a: (SKEWED[a].alpha, SKEWED[a].beta) for a in ("v2", "v3")})
    assert probs["v3"] == pytest.approx(0.05 + 0.9 * pair["v3"], abs=1e-4)
    nothing_up = RoutingView(unavailable=frozenset(ARMS), arm_stats=SKEWED)
    assert policy.choose(None, rng, nothing_up).variant in ARMS


def test_held_arm_is_kept_while_available() -> None:
    policy = policy_of("  sticky: user_id\n")
    held = RoutingView(arm_stats=SKEWED, held=HeldArm("v3", 0.02))
    decision = policy.choose("u", random.Random(0), held)
    assert (decision.variant, decision.sticky, decision.probability) == ("v3", True, 0.02)
    down = RoutingView(unavailable=frozenset({"v3"}), arm_stats=SKEWED, held=HeldArm("v3", 0.02))
    assert not policy.choose("u", random.Random(0), down).sticky


def test_missing_stats_fall_back_to_the_prior_and_dry_run_works() -> None:
    experiment = bandit_experiment("  prior: [2, 2]\n")
    shares = dry_run(experiment, 3000)
    assert set(shares) == set(ARMS)
    assert all(20 < share < 47 for share in shares.values())


def test_invalid_priors_are_refused() -> None:
    with pytest.raises(Exception, match="prior"):
        bandit_experiment("  prior: [1, -2]\n")
    with pytest.raises(ValidationError, match="bandit_prior"):
        Settings(bandit_prior=(0.0, 1.0))


def test_evidence_commands_round_trip_through_the_memory_store() -> None:
    store = MemoryBanditStore()
    for reward in (1.0, 0.0, 0.25, 0.5):
        store.apply(evidence_commands("exp", "v2", reward))
    read = asyncio.run(store.read(["exp"], {}, 10))
    evidence = parse_evidence(read.evidence["exp"])
    assert evidence["v2"].successes == 1.75
    assert evidence["v2"].failures == 2.25
    assert evidence["v2"].rewards == 4
    stats = arm_stats(evidence, ["v1", "v2"], (1.0, 1.0))
    assert stats["v1"] == ArmStats(1.0, 1.0, 0)
    assert stats["v2"] == ArmStats(2.75, 3.25, 4)


def test_sticky_arms_first_shared_entry_wins_and_expires() -> None:
    sticky = StickyArms(ttl=100.0, capacity=10)
    sticky.hold("e", "u1", "v2", 0.3, now=1000.0)  # this replica's own draw
    assert sticky.get("e", "u1", 1001.0) == HeldArm("v2", 0.3)
    # Another replica drew first: its entry comes first in the stream and replaces ours.
    sticky.merge("e", [("1-0", {"u": "u1", "v": "v1", "p": "0.5", "x": "1099.5"})])
    sticky.merge("e", [("2-0", {"u": "u1", "v": "v2", "p": "0.3", "x": "1100"})])
    assert sticky.get("e", "u1", 1050.0) == HeldArm("v1", 0.5)
    assert sticky.get("e", "u1", 1100.0) is None
    sticky.merge("e", [("3-0", {"u": "u1", "v": "v3", "p": "0.2", "x": "1300"})])
    assert sticky.get("e", "u1", 1250.0) == HeldArm("v3", 0.2)
    sticky.prune(1400.0)
    assert len(sticky) == 0
    for i in range(15):
        sticky.hold("e", f"u{i}", "v1", 1.0, now=2000.0)
    assert len(sticky) == 10
    assert sticky.get("e", "u0", 2001.0) is None


def test_report_section_from_redis_data() -> None:
    experiment = bandit_experiment("  prior: [1, 1]\n", arms=("v1", "v2"))
    evidence = {
        keys.bandit_field("v1", "s"): "30",
        keys.bandit_field("v1", "f"): "10",
        keys.bandit_field("v1", "n"): "40",
        keys.bandit_field("v2", "s"): "5",
        keys.bandit_field("v2", "f"): "15",
        keys.bandit_field("v2", "n"): "20",
        keys.bandit_field("v3", "s"): "1",  # an arm removed from the YAML: kept, not sampled
        keys.bandit_field("v3", "f"): "1",
        keys.bandit_field("v3", "n"): "2",
    }
    counters = {
        "v1": {keys.ASSIGNED: "50", keys.IPW_N: "40", keys.IPW_SUM: "60", keys.IPW_WEIGHT: "80"},
        "v2": {keys.ASSIGNED: "30", keys.IPW_N: "20", keys.IPW_SUM: "20", keys.IPW_WEIGHT: "80"},
    }
    live = BanditLive((1.0, 1.0), {"traffic_share": {"v1": 0.9, "v2": 0.1}, "age_seconds": 0.4})
    section = bandit_section(experiment, Recorded(counters, {}, evidence), live)
    assert section is not None
    arms = {a["arm"]: a for a in section["arms"]}
    assert (arms["v1"]["alpha"], arms["v1"]["beta"]) == (31.0, 11.0)
    assert arms["v3"]["sampled"] is False and arms["v3"]["prob_best"] is None
    assert arms["v1"]["prob_best"] + arms["v2"]["prob_best"] == pytest.approx(1.0)
    assert arms["v2"]["expected_regret"] == pytest.approx(30 * (31 / 42 - 6 / 22))
    assert arms["v1"]["ipw_mean"] == pytest.approx(60 / 60)
    assert arms["v1"]["snipw_mean"] == pytest.approx(60 / 80)
    assert arms["v1"]["traffic_share"] == 0.9
    assert section["posterior"] == {"age_seconds": 0.4}


def test_report_renders_the_bandit_table() -> None:
    experiment = bandit_experiment(arms=("v1", "v2"))
    evidence = {keys.bandit_field("v1", "n"): "3", keys.bandit_field("v1", "s"): "2"}
    evidence[keys.bandit_field("v1", "f")] = "1"
    recorded = Recorded({"v1": {keys.ASSIGNED: "4", keys.STICKY: "1"}}, {}, evidence)
    live = BanditLive(
        (1.0, 1.0), {"traffic_share": {"v1": 0.6, "v2": 0.4}, "age_seconds": 0.3, "redis": "up"}
    )
    report = build_report(experiment, "cv", recorded, 0.0, live)
    console = Console(record=True, width=200)
    render_report(console, report)
    text = console.export_text()
    assert "bandit posteriors" in text
    assert "1 of 4 assignments sticky" in text
