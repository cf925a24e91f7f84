"""Routing policies: one module each, a plain dict registry keyed by ``policy.kind``."""

from __future__ import annotations

import random

from router.config.experiments import Experiment
from router.routing.policies import bandit, blue_green, weighted
from router.routing.policies.base import EMPTY_VIEW, Decision, Policy, PolicyFactory, RoutingView

POLICIES: dict[str, PolicyFactory] = {
    "blue_green": blue_green.build,
    "canary": weighted.build,
    "ab": weighted.build,
    "bandit": bandit.build,
}


def build_policy(experiment: Experiment) -> Policy:
    kind = experiment.policy.kind
    if kind not in POLICIES:
        raise KeyError(f"no policy registered for kind {kind!r}")
    return POLICIES[kind](experiment)


def dry_run(experiment: Experiment, sample: int, seed: int = 0) -> dict[str, float]:
    """Share of ``sample`` synthetic keys (percent) that each variant would get."""
    policy = build_policy(experiment)
    rng = random.Random(seed)
    counts = dict.fromkeys(experiment.variants, 0)
    for i in range(sample):
        counts[policy.choose(f"user-{i}", rng, EMPTY_VIEW).variant] += 1
    return {v: round(100.0 * c / max(sample, 1), 2) for v, c in counts.items()}


__all__ = ["POLICIES", "Decision", "Policy", "RoutingView", "build_policy", "dry_run"]
