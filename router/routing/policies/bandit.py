"""Thompson-sampling bandit over cached Beta posteriors, with a floor, warmup and stickiness.

A decision is a draw from the Thompson table of the posteriors in the view (the probability
that each available arm has the largest Beta draw), mixed with the ``min_share`` floor:
arm i is drawn with ``f + (1 - f * k) * P_i`` among k available arms. That is Thompson
sampling in distribution, and the logged propensity is exactly the probability used. Tables
are memoised per posterior snapshot and set of available arms; the background refresher
builds the ones in use, so the hot path is a dict lookup, one ``rng.random()`` and a bisect.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from router.config.experiments import BanditPolicy, Experiment
from router.routing.policies.base import ArmStats, Decision, Policy, RoutingView
from router.routing.policies.thompson import thompson_table

UNIFORM_PRIOR = (1.0, 1.0)


@dataclass(frozen=True, slots=True)
class Table:
    """Probability of each arm among one set of available arms, ready to draw from."""

    arms: tuple[str, ...]
    probabilities: tuple[float, ...]
    cumulative: tuple[float, ...]

    @classmethod
    def build(cls, probabilities: Mapping[str, float]) -> Table:
        arms = tuple(probabilities)
        probs = tuple(probabilities[a] for a in arms)
        running, cumulative = 0.0, []
        for p in probs:
            running += p
            cumulative.append(running)
        return cls(arms, probs, tuple(cumulative))

    def draw(self, rng: random.Random) -> Decision:
        u = rng.random() * self.cumulative[-1]
        i = min(bisect.bisect_right(self.cumulative, u), len(self.arms) - 1)
        return Decision(self.arms[i], False, self.probabilities[i])

    def share(self) -> dict[str, float]:
        return dict(zip(self.arms, self.probabilities, strict=True))


def floored(probabilities: Mapping[str, float], min_share: float) -> dict[str, float]:
    """Mix with the floor: each arm gets ``min_share`` plus its part of the rest."""
    rest = 1.0 - min_share * len(probabilities)
    return {arm: min_share + rest * p for arm, p in probabilities.items()}


class Posteriors(Mapping[str, ArmStats]):
    """Arm posteriors of one refresh, with the tables derived from them (memoised).

    Immutable apart from the memo, so replicas' hot paths can share one across requests while
    the refresher builds the next.
    """

    def __init__(self, stats: Mapping[str, ArmStats]) -> None:
        self._stats = dict(stats)
        self.arm_set = frozenset(self._stats)
        self._tables: dict[tuple[tuple[str, ...], float], Table] = {}

    def __getitem__(self, arm: str) -> ArmStats:
        return self._stats[arm]

    def __iter__(self) -> Iterator[str]:
        return iter(self._stats)

    def __len__(self) -> int:
        return len(self._stats)

    def table(self, arms: tuple[str, ...], min_share: float) -> Table:
        """The floored Thompson table over ``arms`` (all must have stats); memoised."""
        key = (arms, min_share)
        table = self._tables.get(key)
        if table is None:
            params = {a: (self._stats[a].alpha, self._stats[a].beta) for a in arms}
            table = self._tables[key] = Table.build(floored(thompson_table(params), min_share))
        return table


class Bandit:
    def __init__(self, config: BanditPolicy) -> None:
        self.arms = tuple(config.arms)
        self._arm_set = frozenset(self.arms)
        self.min_share = config.min_share
        self.warmup = config.warmup
        self.prior = config.prior or UNIFORM_PRIOR
        self._last: tuple[Mapping[str, ArmStats], Posteriors] | None = None

    def available(self, view: RoutingView) -> tuple[str, ...]:
        """Arms not known to be down; all of them when none is up (fallback answers then)."""
        if not view.unavailable:
            return self.arms
        return tuple(a for a in self.arms if a not in view.unavailable) or self.arms

    def posteriors(self, stats: Mapping[str, ArmStats]) -> Posteriors:
        """``stats`` as ``Posteriors`` over every arm; an arm it lacks has the prior alone."""
        last = self._last
        if last is not None and last[0] is stats:
            return last[1]
        if isinstance(stats, Posteriors) and self._arm_set <= stats.arm_set:
            complete = stats
        else:
            prior = ArmStats(self.prior[0], self.prior[1], 0)
            complete = Posteriors({**{a: stats.get(a, prior) for a in self.arms}, **stats})
        self._last = (stats, complete)
        return complete

    def warming(self, stats: Mapping[str, ArmStats]) -> bool:
        if not self.warmup:
            return False
        for arm in self.arms:
            arm_stats = stats.get(arm)
            if arm_stats is None or arm_stats.rewards < self.warmup:
                return True
        return False

    def choose(self, key: str | None, rng: random.Random, view: RoutingView) -> Decision:
        available = self.available(view)
        held = view.held
        if held is not None and held.arm in available:
            return Decision(held.arm, True, held.propensity)
        if self.warming(view.arm_stats):
            arm = available[int(rng.random() * len(available))]
            return Decision(arm, False, 1 / len(available))
        return self.posteriors(view.arm_stats).table(available, self.min_share).draw(rng)

    def share(self, view: RoutingView) -> dict[str, float]:
        """Probability that the next fresh draw picks each arm, under ``view``."""
        available = self.available(view)
        if self.warming(view.arm_stats):
            chance = {a: 1 / len(available) for a in available}
        else:
            chance = self.posteriors(view.arm_stats).table(available, self.min_share).share()
        return {a: chance.get(a, 0.0) for a in self.arms}


def build(experiment: Experiment) -> Policy:
    assert isinstance(experiment.policy, BanditPolicy)
    return Bandit(experiment.policy)
