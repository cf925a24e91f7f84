"""Deterministic traffic assignment: Turnout's own hash and three vendors' bit-exact schemes.

Every function is pure: no I/O, no clock, no randomness, and never Python's built-in ``hash()``,
whose value for ``str`` changes with ``PYTHONHASHSEED`` from one process to the next.

``turnout`` (the default scheme) maps ``(salt, key)`` to a uniform float in ``[0, 1)`` with
SHA-256 and then picks an arm by cumulative weight ranges (``choose_by_ranges``). The vendor
schemes reproduce, bit for bit, what the official Python SDKs assign, so that a model experiment
and a product experiment bucket the same user the same way:

* GrowthBook: ``fnv1a32``, ``growthbook_hash``, ``growthbook_bucket_ranges``,
  ``growthbook_choose_variation``, ``growthbook_in_namespace``; ``growthbook_weight`` turns a
  percentage into the decimal fraction GrowthBook stores.
* Unleash: ``murmur3_x86_32``, ``unleash_normalized_value``, ``unleash_in_rollout``,
  ``unleash_variant_index``; ``unleash_rollout_plan`` turns percentage weights into the
  equivalent ``flexibleRollout`` (whole-percent rollout, per-mille strategy variants).
* Eppo: ``eppo_shard``, ``eppo_matches_shard``, ``eppo_matches_split``, ``eppo_choose_split``;
  ``eppo_shard_ranges`` turns percentage weights into contiguous whole-shard ranges.

The two ``*_plan``/``*_ranges`` helpers raise ``ValueError`` for weights the vendor cannot
express exactly; config validation calls them so such experiments are refused, not approximated.
"""

from __future__ import annotations

from router.hashing.common import DEFAULT_HASH_SCHEME, HashScheme
from router.hashing.eppo import (
    EPPO_MAX_TOTAL_SHARDS,
    EppoRange,
    EppoShard,
    eppo_choose_split,
    eppo_matches_shard,
    eppo_matches_split,
    eppo_shard,
    eppo_shard_ranges,
)
from router.hashing.growthbook import (
    fnv1a32,
    growthbook_bucket_ranges,
    growthbook_choose_variation,
    growthbook_hash,
    growthbook_in_namespace,
    growthbook_weight,
)
from router.hashing.turnout import choose_by_ranges, turnout_unit
from router.hashing.unleash import (
    UNLEASH_VARIANT_SEED,
    UnleashRolloutPlan,
    murmur3_x86_32,
    unleash_in_rollout,
    unleash_normalized_value,
    unleash_rollout_plan,
    unleash_variant_index,
)

__all__ = [
    "DEFAULT_HASH_SCHEME",
    "EPPO_MAX_TOTAL_SHARDS",
    "UNLEASH_VARIANT_SEED",
    "EppoRange",
    "EppoShard",
    "HashScheme",
    "UnleashRolloutPlan",
    "choose_by_ranges",
    "eppo_choose_split",
    "eppo_matches_shard",
    "eppo_matches_split",
    "eppo_shard",
    "eppo_shard_ranges",
    "fnv1a32",
    "growthbook_bucket_ranges",
    "growthbook_choose_variation",
    "growthbook_hash",
    "growthbook_in_namespace",
    "growthbook_weight",
    "murmur3_x86_32",
    "turnout_unit",
    "unleash_in_rollout",
    "unleash_normalized_value",
    "unleash_rollout_plan",
    "unleash_variant_index",
]
