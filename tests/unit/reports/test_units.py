"""Per-unit sums and the delta method, pinned against a direct per-user computation."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from router.reports.units import EMPTY, UnitSums
from router.rollout.sequential import (
    Moments,
    difference_cs,
    estimate_difference_cs,
    request_estimate,
    unit_estimate,
)


def direct_delta_variance(n: np.ndarray, y: np.ndarray) -> float:
    """The textbook form (GrowthBook's statistics docs), from the per-user arrays."""
    k = len(n)
    mu_n, mu_y = n.mean(), y.mean()
    var_n, var_y = n.var(), y.var()
    cov = ((n - mu_n) * (y - mu_y)).mean()
    return float((var_y / mu_n**2 - 2 * cov * mu_y / mu_n**3 + mu_y**2 * var_n / mu_n**4) / k)


def test_golden_vector() -> None:
    sums = UnitSums.of_units([(1, 0), (3, 1), (10, 4), (2, 2)])
    assert (sums.units, sums.n, sums.y, sums.nn, sums.yy, sums.ny) == (4, 16, 7, 114, 21, 47)
    assert sums.ratio == 7 / 16
    # sum((y - R n)^2) / n^2 by hand: R = 0.4375
    residuals = [0 - 0.4375, 1 - 1.3125, 4 - 4.375, 2 - 0.875]
    assert math.isclose(sums.ratio_variance() or 0, sum(r * r for r in residuals) / 256)


def test_delta_variance_matches_the_direct_per_user_computation() -> None:
    rng = np.random.default_rng(7)
    for shape in (1.1, 1.5, 3.0):
        n = np.floor(rng.pareto(shape, 3_000) + 1).astype(float)
        p = rng.beta(2, 20, 3_000)
        y = rng.binomial(n.astype(int), p).astype(float)
        sums = UnitSums.of_units(list(zip(n.tolist(), y.tolist(), strict=True)))
        assert math.isclose(sums.ratio_variance() or 0, direct_delta_variance(n, y), rel_tol=1e-9)


def test_delta_variance_is_the_spread_of_the_ratio_over_repeated_draws() -> None:
    """Coverage in miniature: across 400 simulated populations of heavy-tailed, correlated
    users, the delta-method variance matches the ratio's actual variance; the request-level
    variance (requests treated as independent) understates it several times over."""
    rng = np.random.default_rng(11)
    ratios, delta, naive = [], [], []
    for _ in range(400):
        n = np.floor(rng.pareto(2.5, 2_000) * 3 + 1)
        y = rng.binomial(n.astype(int), rng.beta(0.2, 1.8, 2_000)).astype(float)
        sums = UnitSums.of_units(list(zip(n.tolist(), y.tolist(), strict=True)))
        ratios.append(sums.ratio)
        delta.append(sums.ratio_variance())
        moments = Moments.of_rate(sums.y, sums.n)
        estimate = request_estimate(moments, binary=True)
        assert estimate is not None
        naive.append(estimate.variance)
    actual = float(np.var(ratios))
    assert 0.8 < float(np.median(delta)) / actual < 1.25
    assert float(np.median(naive)) / actual < 0.5


def test_empty_and_plus() -> None:
    assert EMPTY.ratio is None and EMPTY.ratio_variance() is None
    a = UnitSums.of_units([(2, 1), (1, 0)])
    b = UnitSums.of_units([(5, 5)])
    assert a.plus(b) == UnitSums.of_units([(2, 1), (1, 0), (5, 5)])
    assert UnitSums.of_units([(0, 0)]) == EMPTY


def test_heavy_users_widen_the_interval_and_count_users() -> None:
    light = [(1.0, float(i % 10 == 0)) for i in range(2_000)]
    heavy = light[:1_900] + [(20.0, 20.0 * (i % 2)) for i in range(100)]
    for pairs in (light, heavy):
        sums = UnitSums.of_units(pairs)
        requests = Moments.of_rate(sums.y, sums.n)
        unit = unit_estimate(sums, requests, binary=True)
        req = request_estimate(requests, binary=True)
        assert unit is not None and req is not None
        assert unit.units == 2_000 and req.units == sums.n
        if pairs is heavy:
            assert unit.variance > 3 * req.variance


one_request_users = st.lists(st.booleans(), min_size=1, max_size=400)


@settings(max_examples=200, deadline=None)
@given(control=one_request_users, candidate=one_request_users, binary=st.booleans())
def test_request_and_user_level_agree_when_every_user_sends_one_request(
    control: list[bool], candidate: list[bool], binary: bool
) -> None:
    def both(outcomes: list[bool]) -> tuple[UnitSums, Moments]:
        sums = UnitSums.of_units([(1.0, float(o)) for o in outcomes])
        return sums, Moments.of_rate(sums.y, sums.n)

    (ua, ma), (ub, mb) = both(control), both(candidate)
    a, b = unit_estimate(ua, ma, binary), unit_estimate(ub, mb, binary)
    ra, rb = request_estimate(ma, binary), request_estimate(mb, binary)
    assert a is not None and b is not None and ra is not None and rb is not None
    assert math.isclose(a.mean, ra.mean) and a.units == ra.units
    assert math.isclose(a.variance, ra.variance, rel_tol=1e-9, abs_tol=1e-15)
    by_unit = estimate_difference_cs(a, b, 0.01)
    by_request = difference_cs(ma, mb, 0.01, binary)
    assert by_request is not None
    for x, y in zip(
        (by_unit.estimate, by_unit.lower, by_unit.upper),
        (by_request.estimate, by_request.lower, by_request.upper),
        strict=True,
    ):
        assert math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12)
