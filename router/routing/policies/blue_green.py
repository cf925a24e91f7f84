"""Blue-green: every request goes to the one active variant."""

from __future__ import annotations

import random

from router.config.experiments import BlueGreenPolicy, Experiment
from router.routing.policies.base import Decision, Policy, RoutingView


class BlueGreen:
    def __init__(self, active: str) -> None:
        self.decision = Decision(active, True, 1.0)

    def choose(self, key: str | None, rng: random.Random, view: RoutingView) -> Decision:
        return self.decision


def build(experiment: Experiment) -> Policy:
    assert isinstance(experiment.policy, BlueGreenPolicy)
    return BlueGreen(experiment.policy.active)
