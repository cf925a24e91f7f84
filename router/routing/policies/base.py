"""What every routing policy is: a pure choice of variant from (request key, RNG, view)."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from router.config.experiments import Experiment


@dataclass(frozen=True, slots=True)
class Decision:
    variant: str
    sticky: bool
    """True when the variant follows from the request key, not from chance."""
    probability: float
    """Probability with which this variant was chosen (the propensity)."""


@dataclass(frozen=True, slots=True)
class ArmStats:
    alpha: float
    beta: float
    rewards: int


@dataclass(frozen=True, slots=True)
class HeldArm:
    """The arm a sticky bandit user was first drawn, and the probability of that draw."""

    arm: str
    propensity: float


@dataclass(frozen=True)
class RoutingView:
    """What a policy may know beyond the request: refreshed in the background, never fetched."""

    unavailable: frozenset[str] = frozenset()
    arm_stats: Mapping[str, ArmStats] = field(default_factory=dict)
    flags: Mapping[str, object] = field(default_factory=dict)
    held: HeldArm | None = None
    """The request key's live sticky bandit assignment, if it has one."""


EMPTY_VIEW = RoutingView()


class Policy(Protocol):
    def choose(self, key: str | None, rng: random.Random, view: RoutingView) -> Decision: ...


class PolicyFactory(Protocol):
    def __call__(self, experiment: Experiment) -> Policy: ...
