"""Per-unit sums and the delta method: a per-request metric analysed by the unit that was
randomized. Pure: numbers in, numbers out.

With sticky assignment the user is the unit. A per-request metric (error rate, mean reward) is
then a ratio of per-user sums, ``R = sum(y_i) / sum(n_i)``, and its variance comes from the
spread of the users' sums, not of the requests (a heavy user's requests are not independent
draws). The delta method gives it from five streaming sums per arm:

    Var(R) ~= sum((y_i - R n_i)^2) / (K^2 nbar^2)
           = (Syy - 2 R Sny + R^2 Snn) / (K^2 nbar^2),   nbar = Sn / K

the formula GrowthBook uses for ratio metrics "when the unit of analysis is not the unit of
randomization" (population moments; with one request per user it is the request-level plug-in
variance exactly).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

UNIT_USER = "user"
UNIT_REQUEST = "request"
SUM_PARTS = ("k", "n", "y", "nn", "yy", "ny")
"""Field suffixes of one arm's sums: units, then sums of n, y, n^2, y^2, n*y."""


@dataclass(frozen=True, slots=True)
class UnitSums:
    """One arm's per-unit sums of a ratio metric over ``units`` units."""

    units: int
    """K: distinct units (users) with at least one observation."""
    n: float
    """Sum of n_i: observations (requests, or labelled requests)."""
    y: float
    """Sum of y_i: the metric summed per unit (errors, rewards)."""
    nn: float
    """Sum of n_i squared."""
    yy: float
    """Sum of y_i squared."""
    ny: float
    """Sum of n_i * y_i."""

    @classmethod
    def of_units(cls, pairs: list[tuple[float, float]]) -> UnitSums:
        """From explicit per-unit (n_i, y_i) pairs (tests, simulations)."""
        live = [(n, y) for n, y in pairs if n > 0]
        return cls(
            len(live),
            sum(n for n, _ in live),
            sum(y for _, y in live),
            sum(n * n for n, _ in live),
            sum(y * y for _, y in live),
            sum(n * y for n, y in live),
        )

    def plus(self, other: UnitSums) -> UnitSums:
        """The sums of two disjoint sets of units."""
        return UnitSums(
            self.units + other.units,
            self.n + other.n,
            self.y + other.y,
            self.nn + other.nn,
            self.yy + other.yy,
            self.ny + other.ny,
        )

    @property
    def ratio(self) -> float | None:
        return self.y / self.n if self.n > 0 else None

    def ratio_variance(self) -> float | None:
        """Delta-method variance of ``ratio`` (None without units or observations)."""
        if self.units <= 0 or self.n <= 0:
            return None
        r = self.y / self.n
        spread = max(0.0, self.yy - 2.0 * r * self.ny + r * r * self.nn)
        return spread / (self.n * self.n)


EMPTY = UnitSums(0, 0.0, 0.0, 0.0, 0.0, 0.0)


def unit_sum_fields(variant: str, prefix: str) -> list[str]:
    """The hash fields of one arm's per-user sums (``prefix``: ``u_`` or ``r_``)."""
    return [f"{variant}|{prefix}{part}" for part in SUM_PARTS]


def parse_unit_sums(raw: Mapping[str, str], variant: str, prefix: str) -> UnitSums:
    """One arm's per-user sums from a units hash (missing fields count as zero)."""
    values = []
    for field in unit_sum_fields(variant, prefix):
        try:
            values.append(float(raw.get(field, 0.0)))
        except ValueError:
            values.append(0.0)
    k, n, y, nn, yy, ny = values
    return UnitSums(int(k), n, y, nn, yy, ny)


def normal_interval(
    sums: UnitSums, z: float, bounds: tuple[float, float] = (0.0, 1.0)
) -> list[float] | None:
    """``ratio +- z sd`` with the delta-method variance, clipped to ``bounds`` (None with fewer
    than two units)."""
    variance = sums.ratio_variance()
    if sums.units < 2 or variance is None or sums.ratio is None:
        return None
    half = z * math.sqrt(variance)
    return [max(bounds[0], sums.ratio - half), min(bounds[1], sums.ratio + half)]
