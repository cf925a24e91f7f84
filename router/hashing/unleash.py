"""Unleash's ``flexibleRollout`` and strategy variants (MurmurHash3), bit for bit."""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from typing import Final

from router.hashing.common import U32 as _U32

UNLEASH_VARIANT_SEED: Final = 86028157
_MURMUR_C1: Final = 0xCC9E2D51
_MURMUR_C2: Final = 0x1B873593


def _rotl32(value: int, shift: int) -> int:
    return ((value << shift) | (value >> (32 - shift))) & _U32


def _murmur_mix_k(k: int) -> int:
    return (_rotl32((k * _MURMUR_C1) & _U32, 15) * _MURMUR_C2) & _U32


def murmur3_x86_32(data: bytes, seed: int = 0) -> int:
    """MurmurHash3 x86 32-bit of ``data`` as an unsigned int (``mmh3.hash(..., signed=False)``)."""
    if not 0 <= seed <= _U32:
        raise ValueError(f"seed must be an unsigned 32-bit integer, got {seed!r}")
    h = seed
    body = len(data) - len(data) % 4
    for k in struct.unpack(f"<{body // 4}I", data[:body]):
        h = _rotl32(h ^ _murmur_mix_k(k), 13)
        h = (h * 5 + 0xE6546B64) & _U32
    tail = data[body:]
    if tail:
        h ^= _murmur_mix_k(int.from_bytes(tail, "little"))
    h ^= len(data) & _U32
    h = ((h ^ (h >> 16)) * 0x85EBCA6B) & _U32
    h = ((h ^ (h >> 13)) * 0xC2B2AE35) & _U32
    return h ^ (h >> 16)


def unleash_normalized_value(
    identifier: str, group_id: str, normalizer: int = 100, seed: int = 0
) -> int:
    """Unleash's bucket in ``1..normalizer``: ``murmur3("{group_id}:{identifier}") % n + 1``.

    The text is UTF-8 encoded strictly: a lone surrogate raises ``UnicodeEncodeError``. Unleash
    cannot hash one either (its Rust engine rejects the context, and ``mmh3.hash`` on such a
    ``str`` crashes the interpreter).
    """
    if normalizer < 1:
        raise ValueError(f"normalizer must be positive, got {normalizer!r}")
    data = f"{group_id}:{identifier}".encode()
    return murmur3_x86_32(data, seed) % normalizer + 1


def unleash_in_rollout(identifier: str, group_id: str, rollout: float) -> bool:
    """Unleash ``flexibleRollout`` inclusion for a percentage ``rollout`` (0 excludes everyone).

    Unleash's engine honours only integer percentages 0..100, and mis-reads a ``groupId`` that
    contains ``"`` or ends with ``\\``: such a strategy matches nobody (or hashes another group).
    Callers should reject those at config time rather than diverge from Unleash silently.
    """
    return rollout > 0 and unleash_normalized_value(identifier, group_id) <= rollout


def unleash_variant_index(identifier: str, group_id: str, weights: Sequence[int]) -> int | None:
    """Index of the Unleash variant assigned to ``identifier``, or ``None`` with no weight at all.

    ``identifier`` is the stickiness value (``userId`` by default), ``group_id`` the toggle name
    for toggle variants or the strategy's ``groupId`` for strategy variants. The target is
    ``unleash_normalized_value(..., sum(weights), 86028157)`` and the first variant whose running
    total reaches it wins, so zero weights are never chosen. Weights need not sum to 1000;
    Unleash's engine fails the lookup (and answers "disabled") when they sum to 0.
    """
    if any(weight < 0 for weight in weights):
        raise ValueError(f"variant weights must be non-negative, got {list(weights)!r}")
    total = sum(weights)
    if total <= 0:
        return None
    target = unleash_normalized_value(identifier, group_id, total, UNLEASH_VARIANT_SEED)
    running = 0
    for index, weight in enumerate(weights):
        running += weight
        if running >= target:
            return index
    raise AssertionError("unreachable: target <= sum(weights)")


UnleashRolloutPlan = tuple[int, tuple[int, ...]]
"""``(rollout percent, per-mille strategy variant weights)`` of a ``flexibleRollout``."""

_PERCENT_TOLERANCE: Final = 1e-6


def unleash_rollout_plan(treatment_percents: Sequence[float]) -> UnleashRolloutPlan:
    """The ``flexibleRollout`` that gives each treatment its percentage of all traffic.

    The rollout is the treatments' total, which must be a whole percent (Unleash's engine
    honours no other). With two or more treatments, each gets a strategy variant weighing
    ``1000 * percent / rollout``, in order: whole numbers summing to 1000, as Unleash's UI
    stores them (the variant hash is taken modulo that total, so the scale matters). A single
    treatment needs no variants (``()``), nor does a rollout of 0. Raises ``ValueError`` naming
    the first weight Unleash cannot express.
    """
    if any(not (math.isfinite(p) and p >= 0) for p in treatment_percents):
        raise ValueError(f"percentages must be finite and non-negative: {treatment_percents!r}")
    total = sum(treatment_percents)
    rollout = round(total)
    if abs(total - rollout) > _PERCENT_TOLERANCE or rollout > 100:
        raise ValueError(
            f"Unleash rolls out whole percentages 0..100 only; the treatments sum to {total:g}%"
        )
    if rollout == 0 or len(treatment_percents) < 2:
        return rollout, ()
    per_mille: list[int] = []
    for percent in treatment_percents:
        exact = 1000 * percent / rollout
        whole = round(exact)
        if abs(exact - whole) > _PERCENT_TOLERANCE:
            raise ValueError(
                f"Unleash strategy variants weigh whole per-mille shares of the rollout; "
                f"{percent:g}% of a {rollout}% rollout is {exact:.4g}/1000"
            )
        per_mille.append(whole)
    if sum(per_mille) != 1000:
        raise ValueError(f"Unleash strategy variant weights must sum to 1000, not {per_mille}")
    return rollout, tuple(per_mille)
