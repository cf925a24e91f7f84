"""Thompson-sampling tables: the probability that one draw picks each Beta arm, fast enough to
recompute on every posterior refresh (well under 1 ms for three arms).

The bandit draws its arm from this table, so the propensity it logs is exact for the policy it
runs by construction; the table is within ~1e-5 of ``router.stats.thompson_probabilities``
(the slower reference quadrature), which the tests check.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from scipy import special

_STEPS = 64
_TAILS = np.array([1e-12, 1e-9, 1e-6, 1e-4, 1e-3])
LEVELS = np.unique(np.concatenate([np.linspace(0.0, 1.0, _STEPS + 1)[1:-1], _TAILS, 1 - _TAILS]))
"""Quantile levels of every arm that the common integration grid includes."""


def thompson_table(params: Mapping[str, tuple[float, float]]) -> dict[str, float]:
    """P(arm i has the largest draw) for independent Beta arms; sums to 1.

    P_i is the integral of prod_{j != i} F_j over dF_i. On a grid that holds every arm's
    quantiles at ``LEVELS`` each interval carries at most 1/64 of any arm's mass, so the
    trapezoid rule in the F_i measure resolves rivals that are far narrower or wider than i.
    """
    names = list(params)
    if len(names) <= 1:
        return dict.fromkeys(names, 1.0)
    a = np.array([float(params[n][0]) for n in names])[:, None]
    b = np.array([float(params[n][1]) for n in names])[:, None]
    quantiles = special.betaincinv(a, b, LEVELS[None, :])
    grid = np.unique(np.concatenate([[0.0, 1.0], quantiles[np.isfinite(quantiles)]]))
    cdf = special.betainc(a, b, grid[None, :])
    cdf[:, 0], cdf[:, -1] = 0.0, 1.0
    raw = np.empty(len(names))
    for i in range(len(names)):
        rivals = np.prod(np.delete(cdf, i, axis=0), axis=0)
        raw[i] = np.sum(np.diff(cdf[i]) * (rivals[1:] + rivals[:-1]) / 2.0)
    raw = np.clip(raw, 0.0, None)
    total = float(raw.sum())
    if total <= 0.0:
        return dict.fromkeys(names, 1.0 / len(names))
    return {name: float(p) / total for name, p in zip(names, raw, strict=True)}
