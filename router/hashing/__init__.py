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

import bisect
import hashlib
import math
import struct
from collections.abc import Sequence
from decimal import Decimal
from typing import Final, Literal

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

HashScheme = Literal["turnout", "growthbook", "unleash", "eppo"]
DEFAULT_HASH_SCHEME: Final[HashScheme] = "turnout"

_U32: Final = 0xFFFFFFFF
_LARGEST_BELOW_ONE: Final = math.nextafter(1.0, 0.0)

# ---------------------------------------------------------------------------------------------
# Turnout
# ---------------------------------------------------------------------------------------------


def turnout_unit(salt: str, key: str) -> float:
    """Uniform position of ``key`` in ``[0, 1)``, independent per ``salt``: Turnout's scheme.

    ``sha256(salt.encode() + b"\\x00" + key.encode("utf-8", "surrogatepass"))``, first 8 bytes
    read big-endian, divided by ``2**64``; the top 2**10 of the 2**64 values, which that division
    would round to 1.0, give the largest float below 1 instead. ``surrogatepass`` lets keys
    carrying lone surrogates (e.g. decoded from a JSON ``"\\ud800"`` escape) hash instead of
    raising. The salt is encoded strictly, and should not contain NUL: it is the separator.
    """
    data = salt.encode() + b"\x00" + key.encode("utf-8", "surrogatepass")
    return _unit_from_u64(int.from_bytes(hashlib.sha256(data).digest()[:8], "big"))


def _unit_from_u64(value: int) -> float:
    # n / 2**64 rounds to exactly 1.0 for n >= 2**64 - 2**10; keep the documented [0, 1).
    return min(value / 2**64, _LARGEST_BELOW_ONE)


def choose_by_ranges(u: float, weights: Sequence[float]) -> int:
    """Index ``i`` whose half-open range ``[w0+..+w(i-1), w0+..+wi)`` contains ``u * sum(w)``.

    Weights are non-negative with a positive, finite total (they need not sum to 1); zero-weight
    arms are never chosen. Growing a later arm at the expense of an earlier one only moves keys
    towards the later arm, which is what makes a canary ramp monotone when control comes first.
    """
    if not 0.0 <= u < 1.0:
        raise ValueError(f"u must be in [0, 1), got {u!r}")
    ends: list[float] = []
    total = 0.0
    for weight in weights:
        if not (weight >= 0.0 and math.isfinite(weight)):
            raise ValueError(f"weights must be finite and non-negative, got {weight!r}")
        total += weight
        ends.append(total)
    if not (total > 0.0 and math.isfinite(total)):
        raise ValueError(f"weights must have a positive finite total, got {list(weights)!r}")
    index = bisect.bisect_right(ends, u * total)
    if index == len(ends):
        # u * total < total always, except for totals so tiny (<= 2**-1022) that the product
        # rounds up to the total: that position belongs to the last arm with a non-empty range.
        index = bisect.bisect_left(ends, total)
    return index


# ---------------------------------------------------------------------------------------------
# GrowthBook
# ---------------------------------------------------------------------------------------------

_FNV_OFFSET: Final = 0x811C9DC5
_FNV_PRIME: Final = 0x01000193


def fnv1a32(text: str) -> int:
    """32-bit FNV-1a over the UTF-16 code units of ``text``, as GrowthBook hashes.

    This is what the JS reference does (``charCodeAt`` in a loop) and what the ``growthbook``
    Python SDK 4.x does: a non-BMP character such as an emoji counts as its two surrogate code
    units, and a lone surrogate as itself. Older releases of the Python SDK iterated over code
    points (``ord(c)``) instead, so they disagreed with JS on non-BMP characters; we follow JS.
    """
    hval = _FNV_OFFSET
    units: Sequence[int]
    if text.isascii():
        units = text.encode("ascii")
    else:
        raw = text.encode("utf-16-le", "surrogatepass")
        units = struct.unpack(f"<{len(raw) // 2}H", raw)
    for unit in units:
        hval = ((hval ^ unit) * _FNV_PRIME) & _U32
    return hval


def growthbook_hash(seed: str, value: str, version: int) -> float | None:
    """GrowthBook's bucketing hash in ``[0, 1)``; ``None`` for an unknown hash version.

    Version 1 has 1000 buckets, version 2 has 10000 and double-hashes to spread similar seeds.
    """
    if version == 2:
        return (fnv1a32(str(fnv1a32(seed + value))) % 10000) / 10000
    if version == 1:
        return (fnv1a32(value + seed) % 1000) / 1000
    return None


def _growthbook_weights_ok(weights: Sequence[float] | None, n: int) -> bool:
    # The Python SDK is stricter than JS (which checks only length and sum): it also rejects
    # booleans, NaN, infinities and negative weights, which JS would bucket on inverted ranges.
    if weights is None or len(weights) != n:
        return False
    for weight in weights:
        if isinstance(weight, bool) or not (math.isfinite(weight) and weight >= 0):
            return False
    # Built-in sum on purpose: it is what the SDK uses, and Python 3.12 made it compensated.
    return 0.99 <= sum(weights) <= 1.01


def growthbook_bucket_ranges(
    n: int, coverage: float, weights: list[float] | None
) -> list[tuple[float, float]]:
    """Half-open ``(start, end)`` per variation, as GrowthBook's ``getBucketRanges``.

    ``coverage`` is clamped to ``[0, 1]``; invalid ``weights`` (missing, wrong length, not summing
    to 1 within 0.01, negative or non-finite) fall back to equal weights. Each range starts where
    the previous *full* weight ended, so lowering coverage leaves gaps instead of shifting users.
    """
    if coverage < 0:
        coverage = 0.0
    if coverage > 1:
        coverage = 1.0
    if weights is None or not _growthbook_weights_ok(weights, n):
        weights = [1 / n for _ in range(n)] if n >= 1 else []
    ranges: list[tuple[float, float]] = []
    cumulative = 0.0
    for weight in weights:
        start = cumulative
        cumulative += weight
        ranges.append((start, start + coverage * weight))
    return ranges


def growthbook_weight(percent: float) -> float:
    """The fraction GrowthBook stores for a weight of ``percent``: the decimal shifted 2 places.

    ``float(Decimal(repr(percent)).scaleb(-2))``: the double nearest the decimal fraction, which
    is what GrowthBook's UI saves (``parseFloat((percent / 100).toFixed(4))``) for percentages
    with up to two decimals, and what a payload carrying that decimal parses to. ``percent / 100``
    is one ulp off for about a quarter of two-decimal percentages (``35.84 / 100`` gives
    ``0.35840000000000005``), which moves the users sitting on that range boundary.
    """
    return float(Decimal(repr(percent)).scaleb(-2))


def growthbook_choose_variation(n: float, ranges: Sequence[tuple[float, float]]) -> int:
    """Index of the first range with ``start <= n < end``, or -1 (not in the experiment)."""
    for index, (start, end) in enumerate(ranges):
        if start <= n < end:
            return index
    return -1


def growthbook_in_namespace(hash_value: str, namespace: tuple[str, float, float]) -> bool:
    """Whether ``hash_value`` falls in GrowthBook namespace ``(id, start, end)``, half-open."""
    namespace_id, start, end = namespace
    position = growthbook_hash("__" + namespace_id, hash_value, 1)
    return position is not None and start <= position < end


# ---------------------------------------------------------------------------------------------
# Unleash
# ---------------------------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------------------------
# Eppo
# ---------------------------------------------------------------------------------------------

EppoRange = tuple[int, int]
"""Half-open ``[start, end)`` shard range."""
EppoShard = tuple[str, Sequence[EppoRange]]
"""A ``(salt, ranges)`` shard of an Eppo split."""


def eppo_shard(text: str, total_shards: int) -> int:
    """First 8 hex digits (4 bytes, big-endian) of ``md5(text)``, modulo ``total_shards``.

    UTF-8, strict: Eppo's SDK raises ``UnicodeEncodeError`` on a lone surrogate too. Eppo's
    configuration caps ``totalShards`` below 2**32 and its engine panics on 0; we raise on 0.
    """
    if total_shards < 1:
        raise ValueError(f"total_shards must be positive, got {total_shards!r}")
    digest = hashlib.md5(text.encode(), usedforsecurity=False).digest()
    return int.from_bytes(digest[:4], "big") % total_shards


_SHARD_TOLERANCE: Final = 1e-3
EPPO_MAX_TOTAL_SHARDS: Final = _U32
"""Eppo stores ``totalShards`` as an unsigned 32-bit integer."""


def eppo_shard_ranges(percents: Sequence[float], total_shards: int) -> list[EppoRange]:
    """Contiguous half-open shard ranges, in order, giving each weight its share of the shards.

    Weight ``i`` (a percentage) owns ``[s, s + percents[i] * total_shards / 100)`` where ``s`` is
    where the previous range ended: the first range starts at 0 and the last ends at
    ``total_shards``. A zero weight gets an empty range. Every share must be a whole number of
    shards (Eppo's ranges are integers) and ``total_shards`` must be in ``1..2**32 - 1``;
    ``ValueError`` otherwise.
    """
    if not 1 <= total_shards <= EPPO_MAX_TOTAL_SHARDS:
        raise ValueError(f"Eppo total_shards must be in 1..2**32-1, got {total_shards!r}")
    ranges: list[EppoRange] = []
    start = 0
    for percent in percents:
        if not (math.isfinite(percent) and percent >= 0):
            raise ValueError(f"percentages must be finite and non-negative, got {percent!r}")
        exact = percent * total_shards / 100
        count = round(exact)
        if abs(exact - count) > _SHARD_TOLERANCE:
            raise ValueError(
                f"Eppo assigns whole shards; {percent:g}% of {total_shards} shards is "
                f"{exact:.6g} shards"
            )
        ranges.append((start, start + count))
        start += count
    if start != total_shards:
        raise ValueError(f"the weights cover {start} of {total_shards} Eppo shards, not all")
    return ranges


def eppo_matches_shard(
    subject_key: str, salt: str, ranges: Sequence[EppoRange], total_shards: int
) -> bool:
    """Whether the shard of ``"{salt}-{subject_key}"`` lies in any half-open range."""
    shard = eppo_shard(f"{salt}-{subject_key}", total_shards)
    return any(start <= shard < end for start, end in ranges)


def eppo_matches_split(subject_key: str, shards: Sequence[EppoShard], total_shards: int) -> bool:
    """A split matches when every one of its shards does (a split without shards matches all)."""
    return all(
        eppo_matches_shard(subject_key, salt, ranges, total_shards) for salt, ranges in shards
    )


def eppo_choose_split(
    subject_key: str, splits: Sequence[Sequence[EppoShard]], total_shards: int
) -> int:
    """Index of the first matching split of an allocation, or -1 (traffic exposure miss)."""
    for index, shards in enumerate(splits):
        if eppo_matches_split(subject_key, shards, total_shards):
            return index
    return -1
