"""Policies: weighted shares, stickiness, determinism across processes, monotone canary ramps."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chisquare

from router.config.experiments import Experiment
from router.config.loader import parse_experiment
from router.routing.policies import build_policy, dry_run
from router.routing.policies.base import EMPTY_VIEW


def experiment(
    weights: dict[str, float], kind: str = "canary", sticky: str | None = "user_id"
) -> Experiment:
    lines = [
        "name: exp",
        "model: m",
        f"control: {next(iter(weights))}",
        "variants:",
        *[f"  {v}: {{url: 'http://127.0.0.1:{8100 + i}'}}" for i, v in enumerate(weights)],
        "policy:",
        f"  kind: {kind}",
        "  weights: {" + ", ".join(f"{v}: {w}" for v, w in weights.items()) + "}",
    ]
    if sticky:
        lines.append(f"  sticky: {sticky}")
    return parse_experiment("\n".join(lines), Path("exp.yaml")).experiment


def test_blue_green_sends_everything_to_active() -> None:
    text = (
        "name: bg\nmodel: m\ncontrol: blue\nvariants:\n  blue: {url: 'http://127.0.0.1:1'}\n"
        "  green: {url: 'http://127.0.0.1:2'}\npolicy: {kind: blue_green, active: green}\n"
    )
    policy = build_policy(parse_experiment(text, Path("bg.yaml")).experiment)
    rng = random.Random(1)
    assert {policy.choose(k, rng, EMPTY_VIEW).variant for k in ("a", "b", None)} == {"green"}


def test_sticky_keys_keep_their_variant_and_shares_match_weights() -> None:
    policy = build_policy(experiment({"v1": 70, "v2": 20, "v3": 10}))
    rng = random.Random(0)
    first = {f"u{i}": policy.choose(f"u{i}", rng, EMPTY_VIEW) for i in range(20_000)}
    again = {k: policy.choose(k, random.Random(99), EMPTY_VIEW) for k in first}
    assert all(d.sticky for d in first.values())
    assert {k: d.variant for k, d in first.items()} == {k: d.variant for k, d in again.items()}
    counts = [sum(d.variant == v for d in first.values()) for v in ("v1", "v2", "v3")]
    assert chisquare(counts, [14_000, 4_000, 2_000]).pvalue > 0.001


def test_requests_without_a_key_are_random_and_marked_not_sticky() -> None:
    policy = build_policy(experiment({"v1": 50, "v2": 50}))
    decisions = [policy.choose(None, random.Random(i), EMPTY_VIEW) for i in range(400)]
    assert not any(d.sticky for d in decisions)
    assert {d.variant for d in decisions} == {"v1", "v2"}
    assert all(d.probability == 0.5 for d in decisions)


def test_seeded_rng_is_reproducible() -> None:
    policy = build_policy(experiment({"v1": 50, "v2": 50}, sticky=None))
    runs = [
        [policy.choose(None, rng, EMPTY_VIEW).variant for _ in range(50)]
        for rng in (random.Random(7), random.Random(7))
    ]
    assert runs[0] == runs[1]


def test_salt_changes_the_assignment() -> None:
    a = build_policy(experiment({"v1": 50, "v2": 50}))
    b_exp = experiment({"v1": 50, "v2": 50}, sticky="{key: user_id, salt: other}")
    b = build_policy(b_exp)
    rng = random.Random(0)
    differ = sum(
        a.choose(f"u{i}", rng, EMPTY_VIEW).variant != b.choose(f"u{i}", rng, EMPTY_VIEW).variant
        for i in range(1000)
    )
    assert 350 < differ < 650


@settings(max_examples=200, deadline=None)
@given(
    start=st.integers(min_value=0, max_value=99),
    step=st.integers(min_value=1, max_value=100),
    other=st.integers(min_value=0, max_value=50),
)
def test_raising_the_canary_only_moves_users_from_control(
    start: int, step: int, other: int
) -> None:
    """Canary weight start -> start+step, taken from control; a third variant keeps `other`."""
    step = min(step, 100 - other - start)
    if step <= 0:
        return
    before_w = {"control": 100 - other - start, "canary": start, "third": other}
    after_w = {"control": 100 - other - start - step, "canary": start + step, "third": other}
    before = build_policy(experiment(before_w))
    after = build_policy(experiment(after_w))
    rng = random.Random(0)
    for i in range(300):
        old = before.choose(f"user-{i}", rng, EMPTY_VIEW).variant
        new = after.choose(f"user-{i}", rng, EMPTY_VIEW).variant
        assert old == new or (old, new) == ("control", "canary"), (old, new)


def test_same_variant_in_processes_with_different_hash_seeds() -> None:
    code = (
        "import json, random, sys\n"
        "from pathlib import Path\n"
        "from router.config.loader import parse_experiment\n"
        "from router.routing.policies import build_policy\n"
        "from router.routing.policies.base import EMPTY_VIEW\n"
        "exp = parse_experiment(sys.stdin.read(), Path('e.yaml')).experiment\n"
        "p = build_policy(exp)\n"
        "print(json.dumps([p.choose(f'user-{i}', random.Random(), EMPTY_VIEW).variant "
        "for i in range(500)]))\n"
    )
    text = (
        "name: exp\nmodel: m\ncontrol: v1\nvariants:\n  v1: {url: 'http://127.0.0.1:1'}\n"
        "  v2: {url: 'http://127.0.0.1:2'}\n  v3: {url: 'http://127.0.0.1:3'}\n"
        "policy: {kind: ab, weights: {v1: 34, v2: 33, v3: 33}, sticky: user_id}\n"
    )
    outputs = []
    for seed in ("1", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run(
            [sys.executable, "-c", code],
            input=text,
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        outputs.append(json.loads(done.stdout))
    assert outputs[0] == outputs[1]
    assert len(set(outputs[0])) == 3


def test_dry_run_reports_shares() -> None:
    shares = dry_run(experiment({"v1": 90, "v2": 10}), 5000)
    assert abs(shares["v1"] - 90) < 2.5
    assert abs(shares["v2"] - 10) < 2.5
