"""Turnout's own scheme: SHA-256 of ``(salt, key)`` to a unit float, then cumulative weight
ranges (control first, so a canary ramp only moves users from the control to the canary)."""

from __future__ import annotations

import bisect
import hashlib
import math
from collections.abc import Sequence
from typing import Final

_LARGEST_BELOW_ONE: Final = math.nextafter(1.0, 0.0)


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
