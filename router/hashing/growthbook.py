"""GrowthBook's bucketing, bit for bit as its official Python SDK computes it."""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from decimal import Decimal
from typing import Final

from router.hashing.common import U32 as _U32

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
