"""Anytime-valid statistics: golden values, closed forms, and coverage under continuous looks."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import special

from router.rollout.sequential import (
    Moments,
    cs_radius,
    difference_cs,
    exceedance_test,
    mean_cs,
    rho,
    srm_test,
)


def test_rho_and_radius_golden_values() -> None:
    # rho^2 = (-2 log a + log(-2 log a + 1)) / t* = (5.9914645471 + 1.9446900546) / 10,000
    assert rho(0.05, 10_000) == pytest.approx(math.sqrt(7.9361546017 / 10_000), rel=1e-9)
    assert cs_radius(10_000, 0.05, 10_000) == pytest.approx(0.030352, rel=1e-4)
    assert cs_radius(0, 0.05) == math.inf


def test_radius_is_wider_than_a_fixed_interval_and_shrinks() -> None:
    for t in (100, 1_000, 10_000, 100_000):
        assert cs_radius(t, 0.05) > 1.959964 / math.sqrt(t)
    radii = [cs_radius(t, 0.05) for t in (10, 100, 1_000, 10_000, 100_000)]
    assert radii == sorted(radii, reverse=True)


def test_difference_of_rates_closed_form() -> None:
    control, candidate = Moments.of_rate(10, 1000), Moments.of_rate(30, 1000)
    cs = difference_cs(control, candidate, 0.05, binary=True)
    assert cs is not None
    assert cs.estimate == pytest.approx(0.02)
    p_a, p_b = 10.5 / 1001, 30.5 / 1001  # the smoothed Bernoulli variances
    variance = p_a * (1 - p_a) / 1000 + p_b * (1 - p_b) / 1000
    half = math.sqrt(2000 * variance) * cs_radius(2000, 0.05)
    assert (cs.lower, cs.upper) == pytest.approx((0.02 - half, 0.02 + half))
    assert difference_cs(Moments(0, 0, 0), candidate, 0.05, binary=True) is None


def test_an_arm_without_variation_claims_no_certainty() -> None:
    cs = difference_cs(Moments.of_rate(0, 50), Moments.of_rate(0, 50), 0.05, binary=True)
    assert cs is not None and cs.upper > 0.01
    rewards = difference_cs(Moments(50, 50, 50), Moments(50, 50, 50), 0.05, binary=False)
    assert rewards is not None and rewards.upper > 0


def test_mean_cs_is_clipped_to_the_unit_interval() -> None:
    cs = mean_cs(Moments.of_rate(99, 100), 0.05, binary=True)
    assert cs is not None and cs.upper == 1.0 and 0.8 < cs.lower < 0.99


def test_false_rollbacks_under_continuous_looks_stay_below_alpha() -> None:
    """A/A: 400 streams of 0/1 outcomes, a look after every 50 requests up to 20,000."""
    rng = np.random.default_rng(3)
    runs, looks, batch, alpha = 400, 400, 50, 0.05
    harms = 0
    naive = 0
    for _ in range(runs):
        a = rng.binomial(batch, 0.1, size=looks).cumsum()
        b = rng.binomial(batch, 0.1, size=looks).cumsum()
        harmed = peeked = False
        for i in range(looks):
            n = batch * (i + 1)
            cs = difference_cs(Moments.of_rate(a[i], n), Moments.of_rate(b[i], n), alpha, True)
            assert cs is not None
            harmed = harmed or cs.lower > 0
            se = math.sqrt((a[i] / n) * (1 - a[i] / n) / n + (b[i] / n) * (1 - b[i] / n) / n)
            peeked = peeked or (b[i] - a[i]) / n > 1.644854 * se
        harms += harmed
        naive += peeked
    assert harms / runs <= alpha
    assert naive / runs > 2 * alpha  # the naive test peeked at every look is far worse


def test_srm_two_arms_matches_the_beta_binomial_closed_form() -> None:
    result = srm_test({"a": 620, "b": 380}, {"a": 50, "b": 50}, 0.001)
    prior = 50.0  # concentration 100 x 0.5
    expected = (
        special.betaln(prior + 620, prior + 380)
        - special.betaln(prior, prior)
        - 1000 * math.log(0.5)
    )
    assert result.log_bayes_factor == pytest.approx(expected, rel=1e-9)
    assert result.mismatch and result.p_value < 0.001


def test_srm_balanced_counts_give_no_alarm() -> None:
    result = srm_test({"a": 5012, "b": 4988}, {"a": 1, "b": 1}, 0.001)
    assert not result.mismatch and result.p_value == 1.0
    assert srm_test({"a": 10, "b": 3}, {"a": 100, "b": 0}, 0.001).mismatch
    with pytest.raises(ValueError, match="positive total"):
        srm_test({"a": 1}, {"a": 0}, 0.001)


def test_srm_false_alarms_under_continuous_checking_stay_below_p() -> None:
    rng = np.random.default_rng(5)
    alarms = 0
    for _ in range(300):
        counts = rng.binomial(100, 0.9, size=300).cumsum()
        for i, a in enumerate(counts):
            total = 100 * (i + 1)
            if srm_test({"a": int(a), "b": int(total - a)}, {"a": 90, "b": 10}, 0.01).mismatch:
                alarms += 1
                break
    assert alarms / 300 <= 0.01 + 0.01  # p plus simulation error (3 sd of 300 draws)


def test_exceedance_test_is_conservative_both_ways() -> None:
    buckets = [(10.0, 900.0), (20.0, 95.0), (50.0, 5.0), (math.inf, 0.0)]
    result = exceedance_test(buckets, threshold=15.0, tail=0.01, alpha=0.05)
    assert (result.above_surely, result.above_maybe) == (5, 100)
    assert result.upper > 0.01  # 100 requests may be above: no all-clear
    fine = exceedance_test([(10.0, 5000.0), (20.0, 3.0)], 15.0, 0.01, 0.05)
    assert fine.upper < 0.01 and fine.harm_p > 0.05
    slow = exceedance_test([(10.0, 900.0), (50.0, 100.0)], 10.0, 0.01, 0.05)
    assert slow.harm_p < 1e-6
