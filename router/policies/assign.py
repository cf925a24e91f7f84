"""Weighted assignment shared by the weighted policies: sticky by key, random without one."""

from __future__ import annotations

import random
from dataclasses import dataclass

from router import hashing
from router.experiments import Experiment, StickyConfig
from router.policies.base import Decision


@dataclass(frozen=True)
class WeightedAssigner:
    """Variants in assignment order (control first) with their weights and a hash scheme."""

    names: tuple[str, ...]
    weights: tuple[float, ...]
    sticky: StickyConfig | None
    experiment: str
    control: str

    @classmethod
    def for_experiment(
        cls, experiment: Experiment, weights: dict[str, float], sticky: StickyConfig | None
    ) -> WeightedAssigner:
        # Control first and the rest in file order: raising a canary taken from control then
        # only moves users from control to it (the turnout scheme's ranges are cumulative).
        ordered = sorted(weights, key=lambda name: name != experiment.control)
        if sticky is not None and sticky.hash != "turnout":
            ordered = list(weights)  # vendor schemes index variations in the file's order
        return cls(
            tuple(ordered),
            tuple(weights[n] for n in ordered),
            sticky,
            experiment.name,
            experiment.control,
        )

    def share(self, variant: str) -> float:
        total = sum(self.weights)
        return self.weights[self.names.index(variant)] / total if variant in self.names else 0.0

    def choose(self, key: str | None, rng: random.Random) -> Decision:
        if self.sticky is None or key is None:
            name = self.names[hashing.choose_by_ranges(rng.random(), self.weights)]
            return Decision(name, False, self.share(name))
        name = self.sticky_variant(key, self.sticky)
        return Decision(name, True, self.share(name))

    def sticky_variant(self, key: str, sticky: StickyConfig) -> str:
        scheme = sticky.hash
        if scheme == "turnout":
            u = hashing.turnout_unit(sticky.salt or self.experiment, key)
            return self.names[hashing.choose_by_ranges(u, self.weights)]
        if scheme == "growthbook":
            return self._growthbook(key, sticky)
        if scheme == "unleash":
            return self._unleash(key, sticky)
        return self._eppo(key, sticky)

    def _growthbook(self, key: str, sticky: StickyConfig) -> str:
        n = hashing.growthbook_hash(sticky.seed or self.experiment, key, sticky.hash_version)
        if n is None:
            return self.control
        total = sum(self.weights)
        ranges = hashing.growthbook_bucket_ranges(
            len(self.names), sticky.coverage, [w / total for w in self.weights]
        )
        index = hashing.growthbook_choose_variation(n, ranges)
        return self.control if index < 0 else self.names[index]

    def _unleash(self, key: str, sticky: StickyConfig) -> str:
        group = sticky.group_id or self.experiment
        treatments = [(n, w) for n, w in zip(self.names, self.weights, strict=True)]
        treatments = [(n, w) for n, w in treatments if n != self.control]
        rollout = sum(w for _, w in treatments) * 100.0 / sum(self.weights)
        if not treatments or not hashing.unleash_in_rollout(key, group, rollout):
            return self.control
        if len(treatments) == 1:
            return treatments[0][0]
        index = hashing.unleash_variant_index(key, group, [round(w * 10) for _, w in treatments])
        return self.control if index is None else treatments[index][0]

    def _eppo(self, key: str, sticky: StickyConfig) -> str:
        shard = hashing.eppo_shard(f"{sticky.salt or self.experiment}-{key}", sticky.total_shards)
        return self.names[hashing.choose_by_ranges(shard / sticky.total_shards, self.weights)]


class WeightedPolicy:
    """The policy behind canary and A/B: they differ only in what their config requires."""

    def __init__(self, assigner: WeightedAssigner) -> None:
        self.assigner = assigner

    def choose(self, key: str | None, rng: random.Random, view: object) -> Decision:
        return self.assigner.choose(key, rng)
