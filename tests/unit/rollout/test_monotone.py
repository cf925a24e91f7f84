"""Rollout weights move monotonically: a sticky user only ever moves control -> candidate."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from router.config.loader import parse_experiment
from router.rollout.runtime import build_policy
from router.routing.policies.base import EMPTY_VIEW

TEMPLATE = """\
name: exp
model: m
control: v1
variants:
  v1: {{url: "http://127.0.0.1:8101"}}
  v2: {{url: "http://127.0.0.1:8102"}}
policy: {{kind: ab, weights: {{v1: 100, v2: 0}}, sticky: {{key: user_id, hash: {scheme}}}}}
rollout: {{candidate: v2, steps: [1, 5, 25, 50, 100], interval: 10m}}
"""


@pytest.mark.parametrize("scheme", ["turnout", "growthbook", "unleash", "eppo"])
def test_users_move_only_from_control_to_candidate(scheme: str) -> None:
    exp = parse_experiment(TEMPLATE.format(scheme=scheme), Path("e.yaml")).experiment
    assert exp.rollout is not None
    users = [f"user-{i}" for i in range(5000)]
    rng = random.Random(0)
    before = dict.fromkeys(users, "v1")
    for percent in exp.rollout.steps:
        policy = build_policy(exp, exp.step_weights(percent))
        now = {u: policy.choose(u, rng, EMPTY_VIEW).variant for u in users}
        moved = [(before[u], now[u]) for u in users if before[u] != now[u]]
        assert all(pair == ("v1", "v2") for pair in moved), (scheme, percent, moved[:3])
        share = sum(v == "v2" for v in now.values()) / len(users)
        assert abs(share - percent / 100) < 0.03, (scheme, percent, share)
        before = now
