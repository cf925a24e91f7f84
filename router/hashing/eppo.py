"""Eppo's shard assignment (MD5 shards, contiguous split ranges), bit for bit."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import Final

from router.hashing.common import U32 as _U32

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
