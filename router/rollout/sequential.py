"""Anytime-valid statistics for rollout gates and sample-ratio checks. Pure: numbers in, out.

Rate and mean gates use the asymptotic confidence sequence of Waudby-Smith, Arbour, Sinha,
Kennedy and Ramdas ("Time-uniform central limit theory and asymptotic confidence sequences",
2021; the method behind GrowthBook's sequential testing). At every sample size ``t`` it is

    mean_t +- sigma_t * sqrt(2 (t rho^2 + 1) / (t^2 rho^2) * log(sqrt(t rho^2 + 1) / alpha))

and it covers the true mean at *all* ``t`` at once with probability about ``1 - alpha``, so a
gate may look after every batch without inflating its error. We chose it over the mSPRT of
Johari et al. because it gives an interval (non-inferiority needs the lower bound, a rollback
the upper one, and operators read both), it needs no known variance (a plug-in ``sigma_t``),
and it treats error rates, rewards and agreement alike from counters (n, sum, sum of squares).
``rho`` sets where the sequence is tightest (``tuning`` observations).

The sample-ratio test is the sequential multinomial test of Lindon and Malek ("Anytime-valid
inference for multinomial count data", 2022): a Dirichlet-multinomial Bayes factor against the
configured weights, which is a test martingale under the null, so by Ville's inequality it ever
reaches ``1/p`` with probability at most ``p``, however often it is checked.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from scipy import special, stats

from router.reports.units import UnitSums

DEFAULT_TUNING = 10_000
"""Observations at which a confidence sequence is tightest (GrowthBook's default is 5,000)."""
SRM_CONCENTRATION = 100.0
"""Dirichlet prior of the SRM test: concentration x the configured weights."""


@dataclass(frozen=True, slots=True)
class Moments:
    """One arm's observations of a metric: count, sum and sum of squares (values in [0, 1])."""

    n: float
    total: float
    total_sq: float

    @classmethod
    def of_rate(cls, successes: float, n: float) -> Moments:
        return cls(n, successes, successes)

    @property
    def mean(self) -> float | None:
        return self.total / self.n if self.n > 0 else None


@dataclass(frozen=True, slots=True)
class Interval:
    estimate: float
    lower: float
    upper: float

    def as_list(self) -> list[float]:
        return [self.lower, self.upper]


def rho(alpha: float, tuning: float = DEFAULT_TUNING) -> float:
    """The mixing parameter that makes the sequence tightest at ``tuning`` observations."""
    _check_alpha(alpha)
    if tuning <= 0:
        raise ValueError(f"tuning must be > 0, got {tuning!r}")
    log_term = -2.0 * math.log(alpha)
    return math.sqrt((log_term + math.log(log_term + 1.0)) / tuning)


def cs_radius(t: float, alpha: float, tuning: float = DEFAULT_TUNING) -> float:
    """Half-width of the asymptotic confidence sequence for unit variance at ``t`` observations."""
    if t <= 0:
        return math.inf
    r2 = rho(alpha, tuning) ** 2
    return math.sqrt(
        2.0 * (t * r2 + 1.0) / (t * t * r2) * math.log(math.sqrt(t * r2 + 1.0) / alpha)
    )


def _variance(arm: Moments, binary: bool) -> float:
    """Plug-in variance, floored so that an arm with no variation yet claims no certainty.

    A rate uses the smoothed Bernoulli variance ``p(1 - p)`` with ``p = (s + 1/2) / (n + 1)``;
    other values in [0, 1] the plug-in variance, at least ``1 / (4 (n + 1))``.
    """
    mean = arm.total / arm.n
    plug_in = max(0.0, arm.total_sq / arm.n - mean * mean)
    if binary:
        smoothed = (arm.total + 0.5) / (arm.n + 1.0)
        return max(plug_in, smoothed * (1.0 - smoothed))
    return max(plug_in, 0.25 / (arm.n + 1.0))


@dataclass(frozen=True, slots=True)
class Estimate:
    """One arm's mean, the variance of that mean, and how many independent units it rests on."""

    mean: float
    variance: float
    units: float


def request_estimate(arm: Moments, binary: bool) -> Estimate | None:
    """Every request an independent draw: the unit is the request. ``None`` if empty."""
    if arm.n <= 0:
        return None
    return Estimate(arm.total / arm.n, _variance(arm, binary) / arm.n, arm.n)


def unit_estimate(sums: UnitSums, requests: Moments, binary: bool) -> Estimate | None:
    """The ratio metric over units (users), delta-method variance from per-unit sums.

    ``requests`` are the same observations counted per request; their floored plug-in variance
    is a floor here too, so with one request per unit this is ``request_estimate`` exactly.
    """
    variance = sums.ratio_variance()
    if variance is None or requests.n <= 0:
        return None
    floor = _variance(requests, binary) / requests.n
    return Estimate(sums.y / sums.n, max(variance, floor), float(sums.units))


def estimate_difference_cs(
    control: Estimate, candidate: Estimate, alpha: float, tuning: float = DEFAULT_TUNING
) -> Interval:
    """Confidence sequence for ``candidate.mean - control.mean``.

    The two arms' units form one stream of ``N`` units whose difference estimator has variance
    ``V``; the sequence is the one for a mean of ``N`` observations with per-observation
    variance ``N V``: the radius is counted in units (users when sticky), not requests.
    """
    _check_alpha(alpha)
    variance = control.variance + candidate.variance
    total = control.units + candidate.units
    estimate = candidate.mean - control.mean
    half = math.sqrt(total * variance) * cs_radius(total, alpha, tuning)
    return Interval(estimate, estimate - half, estimate + half)


def difference_cs(
    control: Moments,
    candidate: Moments,
    alpha: float,
    binary: bool,
    tuning: float = DEFAULT_TUNING,
) -> Interval | None:
    """Confidence sequence for ``mean(candidate) - mean(control)`` on the same window, every
    request an independent unit. ``None`` if an arm is empty."""
    _check_alpha(alpha)
    a, b = request_estimate(control, binary), request_estimate(candidate, binary)
    if a is None or b is None:
        return None
    return estimate_difference_cs(a, b, alpha, tuning)


def mean_cs(
    arm: Moments, alpha: float, binary: bool, tuning: float = DEFAULT_TUNING
) -> Interval | None:
    """Confidence sequence for one arm's mean (shadow agreement); ``None`` if it is empty."""
    _check_alpha(alpha)
    if arm.n <= 0:
        return None
    estimate = arm.total / arm.n
    half = math.sqrt(_variance(arm, binary)) * cs_radius(arm.n, alpha, tuning)
    return Interval(estimate, max(0.0, estimate - half), min(1.0, estimate + half))


# --- sample ratio -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SrmResult:
    log_bayes_factor: float
    p_value: float
    """Anytime-valid p-value at this look: ``min(1, 1 / Bayes factor)``."""
    mismatch: bool
    counts: dict[str, int]
    expected: dict[str, float]
    """Share of assignments each variant should get."""

    def as_dict(self) -> dict[str, object]:
        return {
            "log_bayes_factor": self.log_bayes_factor,
            "p_value": self.p_value,
            "mismatch": self.mismatch,
            "counts": self.counts,
            "expected": self.expected,
        }


def srm_test(
    counts: Mapping[str, int],
    weights: Mapping[str, float],
    p: float,
    concentration: float = SRM_CONCENTRATION,
) -> SrmResult:
    """Sequential multinomial test of assignment ``counts`` against ``weights`` (any scale).

    A variant with weight 0 that received assignments is a mismatch outright.
    """
    _check_alpha(p)
    total_weight = sum(w for w in weights.values() if w > 0)
    if total_weight <= 0:
        raise ValueError("weights must have a positive total")
    shares = {v: max(0.0, w) / total_weight for v, w in weights.items()}
    names = sorted(set(shares) | set(counts))
    observed = {v: int(counts.get(v, 0)) for v in names}
    expected = {v: shares.get(v, 0.0) for v in names}
    if any(observed[v] > 0 and expected[v] == 0 for v in names):
        return SrmResult(math.inf, 0.0, True, observed, expected)
    live = [v for v in names if expected[v] > 0]
    prior = [concentration * expected[v] for v in live]
    x = [observed[v] for v in live]
    n = sum(x)
    log_bf = (
        special.gammaln(sum(prior))
        - special.gammaln(sum(prior) + n)
        + sum(special.gammaln(a + k) - special.gammaln(a) for a, k in zip(prior, x, strict=True))
        - sum(k * math.log(expected[v]) for v, k in zip(live, x, strict=True))
    )
    log_bf = float(log_bf)
    p_value = 1.0 if log_bf <= 0 else min(1.0, math.exp(-log_bf))
    return SrmResult(log_bf, p_value, log_bf >= -math.log(p), observed, expected)


# --- fixed-horizon latency quantile -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExceedanceResult:
    threshold_ms: float
    """``max_ratio`` x the control's quantile: what the candidate's quantile must stay under."""
    n: int
    above_surely: int
    """Candidate requests in buckets wholly above the threshold."""
    above_maybe: int
    """Candidate requests in buckets that reach above the threshold."""
    harm_p: float
    """P(at least ``above_surely`` | the candidate's quantile is exactly at the threshold)."""
    upper: float
    """Clopper-Pearson upper bound (1 - alpha) of the share above the threshold."""


def exceedance_test(
    buckets: list[tuple[float, float]], threshold: float, tail: float, alpha: float
) -> ExceedanceResult:
    """Whether the candidate's ``1 - tail`` quantile is above or below ``threshold``.

    ``buckets`` are the candidate's non-cumulative (upper bound, count) pairs in increasing
    order; bucket edges make the test conservative both ways: harm counts only requests surely
    above the threshold, the all-clear also those that may be.
    """
    _check_alpha(alpha)
    n = int(sum(count for _, count in buckets))
    surely = maybe = 0
    lower = 0.0
    for upper, count in buckets:
        if lower >= threshold:
            surely += int(count)
        if upper > threshold:
            maybe += int(count)
        lower = upper
    harm_p = float(stats.binom.sf(surely - 1, n, tail)) if n else 1.0
    bound = (
        1.0 if n == 0 or maybe >= n else float(stats.beta.ppf(1.0 - alpha, maybe + 1, n - maybe))
    )
    return ExceedanceResult(threshold, n, surely, maybe, harm_p, bound)


def _check_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
