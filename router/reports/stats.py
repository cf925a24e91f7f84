"""Pure statistics for the experiment, shadow and bandit reports.

Every function is pure (no I/O, no clock; randomness only through an injected generator) and
returns plain Python numbers, lists and dicts that serialise to JSON as they are. A quantity that
the data cannot define (an interval from no observations, a p-value with no variance) is ``None``,
never NaN or infinity. Arguments that no data could produce (a negative count, a confidence of
1.5, a Beta parameter of 0) raise ``ValueError``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Final, Literal, TypedDict

import numpy as np
from numpy.typing import NDArray
from scipy import special, stats

__all__ = [
    "SIGNED_UNIT",
    "UNIT",
    "BetaSummary",
    "DifferenceResult",
    "McNemarResult",
    "Range",
    "SrmResult",
    "beta_summary",
    "difference_test",
    "expected_regret",
    "ipw_mean",
    "mcnemar",
    "mean_interval",
    "prob_best",
    "quantiles",
    "quantiles_from_histogram",
    "snipw_mean",
    "srm_check",
    "thompson_probabilities",
    "wilson_interval",
]

BetaParams = Mapping[str, tuple[float, float]]

# Below this many discordant pairs the chi-square approximation is poor (the usual textbook cut).
MCNEMAR_EXACT_BELOW: Final = 25


class DifferenceResult(TypedDict):
    difference: float | None
    interval: list[float] | None
    p_value: float | None


class SrmResult(TypedDict):
    chi2: float | None
    df: int
    p_value: float | None
    mismatch: bool


class McNemarResult(TypedDict):
    b: int
    c: int
    statistic: float
    p_value: float
    method: Literal["exact", "chi2"]


class BowkerResult(TypedDict):
    statistic: float
    df: int
    p_value: float | None
    method: Literal["bowker"]


class BetaSummary(TypedDict):
    alpha: float
    beta: float
    mean: float
    interval: list[float]


def _z(confidence: float) -> float:
    _check_confidence(confidence)
    return float(stats.norm.ppf(0.5 + confidence / 2.0))


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")


def _check_count(name: str, value: float) -> None:
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def _clip_p(p: float) -> float:
    return min(1.0, max(0.0, float(p)))


def wilson_interval(
    successes: float, n: float, confidence: float = 0.95
) -> tuple[float, float] | None:
    """Wilson score interval for a proportion; ``None`` when ``n`` is 0."""
    _check_count("successes", successes)
    _check_count("n", n)
    if successes > n:
        raise ValueError(f"successes ({successes}) exceed n ({n})")
    z = _z(confidence)
    if n == 0:
        return None
    p = successes / n
    z2 = z * z
    denominator = 1.0 + z2 / n
    centre = (p + z2 / (2.0 * n)) / denominator
    half = z / denominator * math.sqrt(p * (1.0 - p) / n + z2 / (4.0 * n * n))
    # The exact bounds at p = 0 and p = 1 are 0 and 1; rounding would leave them a hair inside.
    lo = 0.0 if successes == 0 else min(p, centre - half)
    hi = 1.0 if successes == n else max(p, centre + half)
    return (max(0.0, lo), min(1.0, hi))


def _mean_and_variance(total: float, total_sq: float, n: float, ddof: int) -> tuple[float, float]:
    mean = total / n
    # Sum-of-squares arithmetic can leave a tiny negative residue when every value is equal.
    variance = max(0.0, (total_sq - n * mean * mean) / (n - ddof))
    return mean, variance


Range = tuple[float, float]
"""The values a statistic can take: an interval is clipped to it, never to another's."""

UNIT: Final[Range] = (0.0, 1.0)
"""Proportions, rewards, accuracies, scores."""
SIGNED_UNIT: Final[Range] = (-1.0, 1.0)
"""Differences of two quantities in [0, 1]: score deltas, differences of rates and rewards."""


def _clip(lo: float, hi: float, estimate: float, bounds: Range) -> tuple[float, float]:
    """Clip ``[lo, hi]`` to ``bounds``, widened if need be so that it contains ``estimate``."""
    low, high = bounds
    return (max(min(low, estimate), lo), min(max(high, estimate), hi))


def mean_interval(
    total: float, total_sq: float, n: float, bounds: Range, confidence: float = 0.95
) -> tuple[float, float] | None:
    """Student-t interval for the mean of values in ``bounds`` from their sum and sum of squares.

    ``None`` for ``n < 2`` (no variance estimate). The interval is clipped to ``bounds`` (the
    values' own range: ``UNIT`` for rewards, ``SIGNED_UNIT`` for score deltas), widened if need
    be so that it always contains the mean.
    """
    _check_count("n", n)
    _check_confidence(confidence)
    if not bounds[0] < bounds[1]:
        raise ValueError(f"bounds must be (low, high) with low < high, got {bounds!r}")
    if n < 2:
        return None
    mean, variance = _mean_and_variance(total, total_sq, n, ddof=1)
    half = float(stats.t.ppf(0.5 + confidence / 2.0, n - 1)) * math.sqrt(variance / n)
    return _clip(mean - half, mean + half, mean, bounds)


def difference_test(
    sum_a: float,
    sumsq_a: float,
    n_a: float,
    sum_b: float,
    sumsq_b: float,
    n_b: float,
    confidence: float = 0.95,
) -> DifferenceResult:
    """Welch-type z test and interval for ``mean_b - mean_a`` from sums and sums of squares.

    Each arm's variance is the plug-in ``E[x^2] - mean^2``, so for 0/1 rewards this is exactly
    the unpooled two-proportion z test (variance ``p(1 - p)``), and for fractional rewards the
    large-sample Welch test. Both means lie in [0, 1], so the interval is clipped to
    ``SIGNED_UNIT``. ``difference`` is ``None`` if either arm is empty; the interval and
    p-value are ``None`` if either arm has fewer than 2 values or neither arm varies.
    """
    _check_count("n_a", n_a)
    _check_count("n_b", n_b)
    z = _z(confidence)
    if n_a == 0 or n_b == 0:
        return {"difference": None, "interval": None, "p_value": None}
    mean_a, var_a = _mean_and_variance(sum_a, sumsq_a, n_a, ddof=0)
    mean_b, var_b = _mean_and_variance(sum_b, sumsq_b, n_b, ddof=0)
    difference = mean_b - mean_a
    se = math.sqrt(var_a / n_a + var_b / n_b)
    if n_a < 2 or n_b < 2 or se == 0.0:
        return {"difference": difference, "interval": None, "p_value": None}
    p_value = _clip_p(2.0 * float(stats.norm.sf(abs(difference) / se)))
    lo, hi = _clip(difference - z * se, difference + z * se, difference, SIGNED_UNIT)
    return {"difference": difference, "interval": [lo, hi], "p_value": p_value}


def srm_check(
    observed: Mapping[str, int], expected_weights: Mapping[str, float], alpha: float = 0.001
) -> SrmResult:
    """Sample-ratio-mismatch check: chi-square goodness of fit of counts against weights.

    Weights are relative (any positive total). A variant missing from ``expected_weights`` has
    weight 0. Variants with weight 0 and no traffic are left out; a variant with weight 0 that
    did receive traffic is a mismatch outright (p-value 0.0, ``chi2`` undefined).
    """
    for name, count in observed.items():
        _check_count(f"observed[{name!r}]", count)
    for name, weight in expected_weights.items():
        _check_count(f"expected_weights[{name!r}]", weight)
    names = sorted(set(observed) | set(expected_weights))
    counts = {name: observed.get(name, 0) for name in names}
    weights = {name: float(expected_weights.get(name, 0.0)) for name in names}
    kept = [name for name in names if weights[name] > 0 or counts[name] > 0]
    df = max(0, len(kept) - 1)
    total = sum(counts[name] for name in kept)
    if total == 0:
        return {"chi2": None, "df": df, "p_value": None, "mismatch": False}
    if any(weights[name] == 0 for name in kept):
        return {"chi2": None, "df": df, "p_value": 0.0, "mismatch": True}
    weight_total = sum(weights[name] for name in kept)
    chi2 = 0.0
    for name in kept:
        expected = total * weights[name] / weight_total
        chi2 += (counts[name] - expected) ** 2 / expected
    p_value = 1.0 if df == 0 else _clip_p(float(stats.chi2.sf(chi2, df)))
    return {"chi2": chi2, "df": df, "p_value": p_value, "mismatch": p_value < alpha}


def _check_qs(qs: Sequence[float]) -> None:
    for q in qs:
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile levels must be in [0, 1], got {q!r}")


def quantiles_from_histogram(
    bucket_upper_bounds: Sequence[float],
    cumulative_counts: Sequence[float],
    qs: Sequence[float],
) -> list[float | None]:
    """Quantiles of a cumulative histogram, interpolated as Prometheus' ``histogram_quantile``.

    Bounds must increase; only the last may be ``+inf``. The first bucket's lower edge is 0 (or,
    if its upper bound is <= 0, the quantile is that bound). A rank that falls in the ``+inf``
    bucket gives the highest finite bound. Without a ``+inf`` bucket the last bucket is taken to
    hold every observation. An empty histogram gives ``None`` for every level.
    """
    _check_qs(qs)
    if len(bucket_upper_bounds) != len(cumulative_counts):
        raise ValueError("bucket_upper_bounds and cumulative_counts differ in length")
    bounds = [float(b) for b in bucket_upper_bounds]
    for i, bound in enumerate(bounds):
        if math.isnan(bound) or (math.isinf(bound) and not (bound > 0 and i == len(bounds) - 1)):
            raise ValueError(f"bucket bound {bound!r} is not allowed (only the last may be +inf)")
        if i and bound <= bounds[i - 1]:
            raise ValueError("bucket_upper_bounds must be strictly increasing")
    # Counters scraped at slightly different moments can dip; Prometheus forces monotonicity too.
    cumulative: list[float] = []
    for count in cumulative_counts:
        _check_count("cumulative count", count)
        cumulative.append(max(float(count), cumulative[-1] if cumulative else 0.0))
    finite = [b for b in bounds if math.isfinite(b)]
    if not cumulative or cumulative[-1] == 0 or not finite:
        return [None for _ in qs]
    total = cumulative[-1]
    results: list[float | None] = []
    for q in qs:
        rank = q * total
        # "> 0" only matters for q = 0: the lower edge of the first bucket that holds anything.
        b = next(i for i, count in enumerate(cumulative) if count >= rank and count > 0)
        if math.isinf(bounds[b]):
            results.append(finite[-1])
            continue
        if b == 0 and bounds[0] <= 0:
            results.append(bounds[0])
            continue
        start = bounds[b - 1] if b else 0.0
        below = cumulative[b - 1] if b else 0.0
        results.append(start + (bounds[b] - start) * (rank - below) / (cumulative[b] - below))
    return results


def quantiles(values: Sequence[float], qs: Sequence[float]) -> list[float | None]:
    """Exact sample quantiles (numpy's "linear" method); non-finite values are ignored."""
    _check_qs(qs)
    data = np.asarray(values, dtype=float)
    data = data[np.isfinite(data)]
    if data.size == 0:
        return [None for _ in qs]
    if not qs:
        return []
    return [float(v) for v in np.quantile(data, np.asarray(qs, dtype=float), method="linear")]


def mcnemar(b: int, c: int) -> McNemarResult:
    """McNemar's test on the discordant pairs ``b`` and ``c`` of a paired comparison.

    Exact two-sided binomial test (``statistic`` = min(b, c)) when ``b + c < 25``, otherwise the
    chi-square statistic with continuity correction, one degree of freedom.
    """
    _check_count("b", b)
    _check_count("c", c)
    n = b + c
    if n < MCNEMAR_EXACT_BELOW:
        k = min(b, c)
        # Binomial(n, 1/2) is symmetric, so the two-sided p-value is twice the smaller tail.
        p_value = 1.0 if n == 0 else _clip_p(2.0 * float(stats.binom.cdf(k, n, 0.5)))
        return {"b": b, "c": c, "statistic": float(k), "p_value": p_value, "method": "exact"}
    # max(0, .) so that the correction never turns b == c into evidence of a difference.
    statistic = max(0.0, abs(b - c) - 1.0) ** 2 / n
    p_value = _clip_p(float(stats.chi2.sf(statistic, 1)))
    return {"b": b, "c": c, "statistic": statistic, "p_value": p_value, "method": "chi2"}


def bowker(table: Mapping[str, Mapping[str, int]]) -> BowkerResult:
    """Bowker's test of symmetry of a k x k paired table (McNemar's test for k classes).

    Sum over label pairs i < j of (n_ij - n_ji)^2 / (n_ij + n_ji), chi-square with one degree of
    freedom per pair that has any discordant count. No degree of freedom: ``p_value`` None.
    """
    labels = sorted({*table, *(s for row in table.values() for s in row)})
    statistic = 0.0
    df = 0
    for i, first in enumerate(labels):
        for second in labels[i + 1 :]:
            a = table.get(first, {}).get(second, 0)
            b = table.get(second, {}).get(first, 0)
            _check_count("n_ij", a)
            _check_count("n_ji", b)
            if a + b:
                statistic += (a - b) ** 2 / (a + b)
                df += 1
    p_value = _clip_p(float(stats.chi2.sf(statistic, df))) if df else None
    return {"statistic": statistic, "df": df, "p_value": p_value, "method": "bowker"}


def _check_beta(name: str, alpha: float, beta: float) -> None:
    if not (math.isfinite(alpha) and math.isfinite(beta) and alpha > 0 and beta > 0):
        raise ValueError(f"Beta parameters of {name!r} must be finite and > 0: {alpha}, {beta}")


def beta_summary(alpha: float, beta: float, confidence: float = 0.95) -> BetaSummary:
    """Mean and equal-tailed credible interval of a Beta(alpha, beta) posterior."""
    _check_beta("beta_summary", alpha, beta)
    _check_confidence(confidence)
    tail = (1.0 - confidence) / 2.0
    lo, hi = (float(v) for v in special.betaincinv(alpha, beta, [tail, 1.0 - tail]))
    return {
        "alpha": float(alpha),
        "beta": float(beta),
        "mean": alpha / (alpha + beta),
        "interval": [lo, hi],
    }


def _checked_params(params: BetaParams) -> dict[str, tuple[float, float]]:
    checked: dict[str, tuple[float, float]] = {}
    for name, (alpha, beta) in params.items():
        _check_beta(name, alpha, beta)
        checked[name] = (float(alpha), float(beta))
    return checked


def prob_best(
    params: BetaParams, draws: int = 20000, rng: np.random.Generator | None = None
) -> dict[str, float]:
    """Monte Carlo probability that each Beta arm has the highest mean.

    Deterministic for a given ``rng`` state; without one a fixed seed is used so that a report
    shows the same numbers every time it is rendered from the same posteriors.
    """
    arms = _checked_params(params)
    if draws < 1:
        raise ValueError(f"draws must be >= 1, got {draws}")
    if not arms:
        return {}
    generator = rng if rng is not None else np.random.default_rng(0)
    names = list(arms)
    samples = np.column_stack([generator.beta(a, b, size=draws) for a, b in arms.values()])
    wins = np.bincount(np.argmax(samples, axis=1), minlength=len(names))
    return {name: float(w) / draws for name, w in zip(names, wins, strict=True)}


# Fixed quadrature: Gauss-Legendre nodes on each panel of the probability scale of the arm.
_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(16)
_TAIL_LEVELS: Final = np.array([1e-15, 1e-12, 1e-9, 1e-7, 1e-5, 1e-4, 1e-3, 0.005])
_BASE_LEVELS: Final = np.concatenate(
    [[0.0], _TAIL_LEVELS, np.linspace(0.01, 0.99, 50), 1.0 - _TAIL_LEVELS[::-1], [1.0]]
)
_OTHER_TAIL: Final = np.array([1e-7, 1e-4, 1e-3, 0.01, 0.05])
_OTHER_LEVELS: Final = np.concatenate(
    [_OTHER_TAIL, np.linspace(0.1, 0.9, 9), 1.0 - _OTHER_TAIL[::-1]]
)


def _win_probability(mine: tuple[float, float], others: list[tuple[float, float]]) -> float:
    """P(X > Y_j for every j), X ~ Beta(mine), Y_j ~ Beta(others[j]), independent.

    Substituting x = F^-1(u) for X turns the integral of pdf(x) * prod F_j(x) dx into the
    integral over u in [0, 1] of prod F_j(F^-1(u)): bounded and monotone, with no pdf
    singularities at 0 or 1 when a parameter is below 1. Panel edges include the points where
    each rival's CDF moves, so a rival much narrower than this arm is still resolved.
    """
    if not others:
        return 1.0
    a, b = mine
    edges = [_BASE_LEVELS]
    for a_j, b_j in others:
        edges.append(special.betainc(a, b, special.betaincinv(a_j, b_j, _OTHER_LEVELS)))
    cuts = np.unique(np.clip(np.concatenate(edges), 0.0, 1.0))
    left, width = cuts[:-1], np.diff(cuts)
    keep = width > 0
    left, width = left[keep], width[keep]
    u: NDArray[np.float64] = left[:, None] + width[:, None] * (_GL_NODES[None, :] + 1.0) / 2.0
    x = special.betaincinv(a, b, u)
    # scipy's inverse returns NaN for some u within ~1e-17 of 0 or 1; the limit is the edge.
    x = np.where(np.isnan(x), np.where(u < 0.5, 0.0, 1.0), x)
    integrand = np.ones_like(x)
    for a_j, b_j in others:
        integrand *= special.betainc(a_j, b_j, x)
    return float(np.sum(width[:, None] / 2.0 * _GL_WEIGHTS[None, :] * integrand))


def thompson_probabilities(params: BetaParams) -> dict[str, float]:
    """Probability that one Thompson-sampling draw picks each arm (exact, by quadrature).

    Arms with identical parameters get identical probabilities; the result sums to 1. The cost is
    a few milliseconds for a handful of arms, so compute it when posteriors change, not per
    request.
    """
    arms = _checked_params(params)
    names = list(arms)
    raw = {
        name: _win_probability(arms[name], [arms[other] for other in names if other != name])
        for name in names
    }
    total = sum(raw.values())
    # Raw sums are within ~1e-11 of 1 for ordinary posteriors (~1e-6 when two arms pile up within
    # float resolution of 0 or 1); renormalising keeps the policy's distribution proper.
    return {name: min(1.0, max(0.0, p / total)) for name, p in raw.items()} if total > 0 else raw


def expected_regret(params: BetaParams, pulls: Mapping[str, int]) -> float:
    """Estimated regret so far: sum of pulls_i * (best posterior mean - posterior mean_i)."""
    arms = _checked_params(params)
    unknown = sorted(set(pulls) - set(arms))
    if unknown:
        raise ValueError(f"pulls for arms without parameters: {unknown}")
    if not arms:
        return 0.0
    means = {name: a / (a + b) for name, (a, b) in arms.items()}
    best = max(means.values())
    regret = 0.0
    for name, count in pulls.items():
        _check_count(f"pulls[{name!r}]", count)
        regret += count * (best - means[name])
    return regret


def _check_propensities(rewards_and_propensities: Sequence[tuple[float, float]]) -> None:
    for _, p in rewards_and_propensities:
        if not 0.0 < p <= 1.0:
            raise ValueError(f"a chosen arm's propensity must be in (0, 1], got {p!r}")


def ipw_mean(
    rewards_and_propensities: Sequence[tuple[float, float]], total_decisions: int
) -> float | None:
    """Inverse-propensity-weighted mean reward of one arm: sum(r / p) / total_decisions.

    ``rewards_and_propensities`` holds the (reward, propensity) of the decisions where the arm
    was chosen; ``total_decisions`` counts every decision, whichever arm it chose. Unbiased but
    unbounded; ``None`` when there were no decisions.
    """
    _check_count("total_decisions", total_decisions)
    _check_propensities(rewards_and_propensities)
    if total_decisions == 0:
        return None
    if len(rewards_and_propensities) > total_decisions:
        raise ValueError("more chosen decisions than total_decisions")
    return sum(r / p for r, p in rewards_and_propensities) / total_decisions


def snipw_mean(rewards_and_propensities: Sequence[tuple[float, float]]) -> float | None:
    """Self-normalised IPW mean: sum(r / p) / sum(1 / p) over the arm's decisions.

    Slightly biased but stays within the range of the rewards; ``None`` when the arm was never
    chosen.
    """
    _check_propensities(rewards_and_propensities)
    if not rewards_and_propensities:
        return None
    weights = sum(1.0 / p for _, p in rewards_and_propensities)
    return sum(r / p for r, p in rewards_and_propensities) / weights
