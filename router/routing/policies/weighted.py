"""Weighted assignment shared by the weighted policies: sticky by key, random without one.

A request without a key is drawn at random by weight. A keyed request is hashed by the scheme
``sticky.hash`` names. Each vendor scheme assigns what that vendor's SDK assigns for the
*equivalent* vendor configuration below: variations in the order the file lists ``weights``,
weights in percent, ``<name>`` the experiment's name.

``growthbook``
    ``Experiment(key=<name>, variations=[...], weights=[w% as a decimal fraction, ...],
    coverage=coverage, hashVersion=hash_version, seed=seed)`` run with
    ``attributes={"id": key}``. The fraction is the decimal shifted two places (35.84 ->
    0.3584, as GrowthBook's UI stores it; ``hashing.growthbook_weight``), not ``35.84 / 100``.
    GrowthBook's own ``seed or key`` rule applies: an empty or missing seed means the name.
``unleash``
    A ``flexibleRollout`` strategy: ``groupId`` is ``group_id`` verbatim (missing: the experiment
    name), ``stickiness: default``, ``rollout`` the non-control weights' total (a whole percent)
    and, with two or more non-control variants, strategy variants in order weighing
    ``1000 * w / rollout`` (``hashing.unleash_rollout_plan``). A user Unleash enables gets the
    treatment (the only one, or their strategy variant), anyone else the control.
``eppo``
    A flag with ``totalShards: total_shards`` and one allocation holding one split per variant,
    in order, each with the single shard ``{salt, ranges: [[start, end)]}`` from
    ``hashing.eppo_shard_ranges`` (contiguous whole-shard ranges from 0). ``salt`` is used
    verbatim (missing: the experiment name).

Users a vendor leaves out get the control, and the decision is still sticky: the same key
always lands there. That covers GrowthBook's users outside ``coverage`` and its empty key (its
``run`` never includes an empty id), and keys a vendor cannot hash at all: a lone surrogate
(Unleash's engine rejects the context and answers "disabled"; Eppo's SDK raises).
"""

from __future__ import annotations

import bisect
import random
from dataclasses import dataclass
from typing import Protocol

from router import hashing
from router.config.experiments import ABPolicy, CanaryPolicy, Experiment, StickyConfig
from router.routing.policies.base import Decision, Policy


class StickyScheme(Protocol):
    def variant(self, key: str) -> str: ...


@dataclass(frozen=True, slots=True)
class TurnoutScheme:
    salt: str
    names: tuple[str, ...]
    weights: tuple[float, ...]

    def variant(self, key: str) -> str:
        u = hashing.turnout_unit(self.salt, key)
        return self.names[hashing.choose_by_ranges(u, self.weights)]


@dataclass(frozen=True, slots=True)
class GrowthBookScheme:
    seed: str
    hash_version: int
    names: tuple[str, ...]
    ranges: tuple[tuple[float, float], ...]
    """GrowthBook's bucket ranges, computed once exactly as ``run`` computes them per call."""
    control: str

    def variant(self, key: str) -> str:
        if not key or len(self.names) < 2:  # GrowthBook includes neither
            return self.control
        n = hashing.growthbook_hash(self.seed, key, self.hash_version)
        index = -1 if n is None else hashing.growthbook_choose_variation(n, self.ranges)
        return self.control if index < 0 else self.names[index]


@dataclass(frozen=True, slots=True)
class UnleashScheme:
    group_id: str
    rollout: int
    treatments: tuple[str, ...]
    per_mille: tuple[int, ...]
    """Strategy variant weights; empty with fewer than two treatments."""
    control: str

    def variant(self, key: str) -> str:
        try:
            included = hashing.unleash_in_rollout(key, self.group_id, self.rollout)
        except UnicodeEncodeError:
            return self.control
        if not included:
            return self.control
        if not self.per_mille:
            return self.treatments[0]
        index = hashing.unleash_variant_index(key, self.group_id, self.per_mille)
        assert index is not None  # the weights sum to 1000
        return self.treatments[index]


@dataclass(frozen=True, slots=True)
class EppoScheme:
    salt: str
    total_shards: int
    names: tuple[str, ...]
    ends: tuple[int, ...]
    """Where each variant's shard range ends; it starts where the previous one ended."""
    control: str

    def variant(self, key: str) -> str:
        try:
            shard = hashing.eppo_shard(f"{self.salt}-{key}", self.total_shards)
        except UnicodeEncodeError:
            return self.control
        return self.names[bisect.bisect_right(self.ends, shard)]


def build_scheme(
    sticky: StickyConfig, experiment: str, control: str, weights: dict[str, float]
) -> StickyScheme:
    """The scheme for ``weights`` (percent, file order); ``ValueError`` if a vendor can't agree."""
    names = tuple(weights)
    if sticky.hash == "turnout":
        # Control first and the rest in file order: raising a canary taken from control then
        # only moves users from control to it (the ranges are cumulative).
        ordered = tuple(sorted(names, key=lambda name: name != control))
        return TurnoutScheme(sticky.salt or experiment, ordered, tuple(weights[n] for n in ordered))
    if sticky.hash == "growthbook":
        fractions = [hashing.growthbook_weight(w) for w in weights.values()]
        ranges = hashing.growthbook_bucket_ranges(len(names), sticky.coverage, fractions)
        seed = sticky.seed or experiment
        return GrowthBookScheme(seed, sticky.hash_version, names, tuple(ranges), control)
    if sticky.hash == "unleash":
        treatments = tuple(n for n in names if n != control)
        rollout, per_mille = hashing.unleash_rollout_plan([weights[n] for n in treatments])
        group_id = experiment if sticky.group_id is None else sticky.group_id
        return UnleashScheme(group_id, rollout, treatments, per_mille, control)
    shard_ranges = hashing.eppo_shard_ranges(list(weights.values()), sticky.total_shards)
    salt = experiment if sticky.salt is None else sticky.salt
    ends = tuple(end for _, end in shard_ranges)
    return EppoScheme(salt, sticky.total_shards, names, ends, control)


def sticky_shares(
    sticky: StickyConfig, control: str, weights: dict[str, float]
) -> dict[str, float]:
    """Share of keys each variant gets under ``sticky`` (nominal: before hash granularity)."""
    total = sum(weights.values())
    shares = {name: weight / total for name, weight in weights.items()}
    if sticky.hash == "growthbook":
        shares = {name: share * sticky.coverage for name, share in shares.items()}
        shares[control] = shares.get(control, 0.0) + (1.0 - sticky.coverage)
    return shares


@dataclass(frozen=True)
class WeightedAssigner:
    """Variants with their weights for random draws, and the sticky scheme for keyed ones."""

    names: tuple[str, ...]
    """Random-draw order: control first, then the file's order."""
    weights: tuple[float, ...]
    scheme: StickyScheme | None
    shares: dict[str, float]
    """Share of random draws per variant."""
    keyed_shares: dict[str, float]
    """Share of keys per variant under the scheme (GrowthBook coverage sends the rest to
    control); the propensity reported for sticky decisions."""

    @classmethod
    def for_experiment(
        cls, experiment: Experiment, weights: dict[str, float], sticky: StickyConfig | None
    ) -> WeightedAssigner:
        control = experiment.control
        ordered = tuple(sorted(weights, key=lambda name: name != control))
        total = sum(weights.values())
        shares = {name: weights[name] / total for name in ordered}
        if sticky is None:
            return cls(ordered, tuple(weights[n] for n in ordered), None, shares, shares)
        return cls(
            ordered,
            tuple(weights[n] for n in ordered),
            build_scheme(sticky, experiment.name, control, weights),
            shares,
            sticky_shares(sticky, control, weights),
        )

    def choose(self, key: str | None, rng: random.Random) -> Decision:
        if self.scheme is None or key is None:
            name = self.names[hashing.choose_by_ranges(rng.random(), self.weights)]
            return Decision(name, False, self.shares[name])
        name = self.scheme.variant(key)
        return Decision(name, True, self.keyed_shares.get(name, 0.0))


class WeightedPolicy:
    """The policy behind canary and A/B: they differ only in what their config requires."""

    def __init__(self, assigner: WeightedAssigner) -> None:
        self.assigner = assigner

    def choose(self, key: str | None, rng: random.Random, view: object) -> Decision:
        return self.assigner.choose(key, rng)


def build(experiment: Experiment) -> Policy:
    """Canary and A/B run the same policy; they differ only in what their config requires."""
    config = experiment.policy
    assert isinstance(config, CanaryPolicy | ABPolicy)
    return WeightedPolicy(
        WeightedAssigner.for_experiment(experiment, config.weights, config.sticky)
    )
