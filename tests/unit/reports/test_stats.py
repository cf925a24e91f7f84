"""router.stats against independent references: textbook values, scipy, closed forms, simulation."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, special
from scipy import stats as sps

from router.reports import stats
from router.routing.policies.bandit import floored

Z95 = 1.959963984540054


def _no_nan_json(value: object) -> str:
    return json.dumps(value, allow_nan=False)


# --- Wilson -------------------------------------------------------------------------------------


def test_wilson_textbook_value() -> None:
    interval = stats.wilson_interval(8, 10)
    assert interval == pytest.approx((0.4902, 0.9433), abs=1e-4)


def test_wilson_bounds_solve_the_score_equation() -> None:
    # The Wilson bounds are the two p with (phat - p)^2 = z^2 p (1 - p) / n.
    successes, n = 37, 120
    interval = stats.wilson_interval(successes, n)
    assert interval is not None
    phat = successes / n
    for p in interval:
        assert (phat - p) ** 2 == pytest.approx(Z95**2 * p * (1 - p) / n, rel=1e-9)


def test_wilson_edges() -> None:
    assert stats.wilson_interval(0, 0) is None
    all_successes = stats.wilson_interval(10, 10)
    assert all_successes is not None
    assert all_successes[1] == 1.0
    assert all_successes[0] == pytest.approx(10 / (10 + Z95**2))
    no_successes = stats.wilson_interval(0, 10)
    assert no_successes is not None
    assert no_successes[0] == 0.0
    wider = stats.wilson_interval(8, 10, confidence=0.99)
    assert wider is not None
    assert wider[0] < 0.4902 and wider[1] > 0.9433


@pytest.mark.parametrize(
    ("successes", "n", "confidence"), [(11, 10, 0.95), (-1, 10, 0.95), (5, 10, 1.0), (5, 10, 0.0)]
)
def test_wilson_rejects_impossible_arguments(successes: int, n: int, confidence: float) -> None:
    with pytest.raises(ValueError):
        stats.wilson_interval(successes, n, confidence)


@given(
    n=st.integers(min_value=1, max_value=10**6),
    fraction=st.floats(min_value=0, max_value=1),
    confidence=st.floats(min_value=0.5, max_value=0.999),
)
def test_wilson_contains_the_estimate(n: int, fraction: float, confidence: float) -> None:
    successes = round(fraction * n)
    interval = stats.wilson_interval(successes, n, confidence)
    assert interval is not None
    lo, hi = interval
    assert 0.0 <= lo <= successes / n <= hi <= 1.0


# --- mean interval ------------------------------------------------------------------------------


def test_mean_interval_matches_t_interval_on_raw_values() -> None:
    values = np.random.default_rng(3).uniform(0.3, 0.7, size=50)
    interval = stats.mean_interval(values.sum(), (values**2).sum(), values.size, stats.UNIT)
    half = sps.t.ppf(0.975, values.size - 1) * values.std(ddof=1) / math.sqrt(values.size)
    assert interval == pytest.approx((values.mean() - half, values.mean() + half), rel=1e-9)


def test_mean_interval_edges() -> None:
    assert stats.mean_interval(0, 0, 0, stats.UNIT) is None
    assert stats.mean_interval(0.7, 0.49, 1, stats.UNIT) is None
    assert stats.mean_interval(5 * 0.4, 5 * 0.16, 5, stats.UNIT) == pytest.approx((0.4, 0.4))
    clipped = stats.mean_interval(1.0, 1.0, 4, stats.UNIT)  # values 0, 0, 0, 1
    assert clipped is not None
    assert clipped == (0.0, 1.0)
    signed = stats.mean_interval(-1.0, 1.0, 4, stats.SIGNED_UNIT)  # values 0, 0, 0, -1
    assert signed is not None
    assert signed[0] == -1.0 and signed[1] > 0.0
    with pytest.raises(ValueError, match="bounds"):
        stats.mean_interval(1.0, 1.0, 4, (1.0, 0.0))


@given(
    st.sampled_from([stats.UNIT, stats.SIGNED_UNIT]),
    st.lists(st.floats(min_value=0, max_value=1), min_size=2, max_size=200),
)
def test_mean_interval_contains_the_mean(bounds: stats.Range, units: list[float]) -> None:
    low, high = bounds
    values = [low + u * (high - low) for u in units]
    total = math.fsum(values)
    interval = stats.mean_interval(total, math.fsum(v * v for v in values), len(values), bounds)
    assert interval is not None
    mean = total / len(values)
    assert interval[0] - 1e-12 <= mean <= interval[1] + 1e-12
    assert low <= interval[0] <= interval[1] <= high


# --- difference test ----------------------------------------------------------------------------


def test_difference_test_on_binary_data_is_the_unpooled_two_proportion_test() -> None:
    successes_a, n_a, successes_b, n_b = 450, 1000, 600, 1100
    result = stats.difference_test(successes_a, successes_a, n_a, successes_b, successes_b, n_b)
    pa, pb = successes_a / n_a, successes_b / n_b
    se = math.sqrt(pa * (1 - pa) / n_a + pb * (1 - pb) / n_b)
    assert result["difference"] == pytest.approx(pb - pa)
    assert result["interval"] == pytest.approx([pb - pa - Z95 * se, pb - pa + Z95 * se])
    assert result["p_value"] == pytest.approx(math.erfc(abs(pb - pa) / se / math.sqrt(2)))


def test_difference_test_on_fractional_rewards() -> None:
    rng = np.random.default_rng(11)
    a, b = rng.beta(2, 5, size=400), rng.beta(2.4, 5, size=300)
    result = stats.difference_test(
        a.sum(), (a**2).sum(), a.size, b.sum(), (b**2).sum(), b.size, confidence=0.9
    )
    se = math.sqrt(a.var() / a.size + b.var() / b.size)
    difference = b.mean() - a.mean()
    z90 = sps.norm.ppf(0.95)
    assert result["difference"] == pytest.approx(difference)
    assert result["interval"] == pytest.approx([difference - z90 * se, difference + z90 * se])
    assert result["p_value"] == pytest.approx(2 * sps.norm.sf(abs(difference) / se))


def test_difference_test_edges() -> None:
    assert stats.difference_test(0, 0, 0, 3, 3, 5) == {
        "difference": None,
        "interval": None,
        "p_value": None,
    }
    single = stats.difference_test(1, 1, 1, 3, 3, 5)
    assert single["difference"] == pytest.approx(-0.4)
    assert single["interval"] is None and single["p_value"] is None
    no_variance = stats.difference_test(10, 10, 10, 20, 20, 20)
    assert no_variance == {"difference": 0.0, "interval": None, "p_value": None}
    same = stats.difference_test(5, 5, 10, 10, 10, 20)
    assert same["p_value"] == pytest.approx(1.0)
    _no_nan_json([no_variance, single, same])


@given(
    n_a=st.integers(min_value=2, max_value=5000),
    n_b=st.integers(min_value=2, max_value=5000),
    fa=st.floats(min_value=0, max_value=1),
    fb=st.floats(min_value=0, max_value=1),
)
def test_difference_interval_contains_the_difference(
    n_a: int, n_b: int, fa: float, fb: float
) -> None:
    sa, sb = round(fa * n_a), round(fb * n_b)
    result = stats.difference_test(sa, sa, n_a, sb, sb, n_b)
    difference = result["difference"]
    assert difference is not None
    assert difference == pytest.approx(sb / n_b - sa / n_a)
    if result["interval"] is not None:
        assert result["p_value"] is not None and 0.0 <= result["p_value"] <= 1.0
        lo, hi = result["interval"]
        assert lo <= difference <= hi


# --- SRM ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("observed", "weights"),
    [
        ({"v1": 9050, "v2": 950}, {"v1": 90, "v2": 10}),
        ({"a": 331, "b": 333, "c": 390}, {"a": 1, "b": 1, "c": 1}),
        ({"a": 5000, "b": 5300}, {"a": 0.5, "b": 0.5}),
    ],
)
def test_srm_matches_scipy_chisquare(observed: dict[str, int], weights: dict[str, float]) -> None:
    result = stats.srm_check(observed, weights)
    names = sorted(observed)
    counts = np.array([observed[n] for n in names], dtype=float)
    share = np.array([weights[n] for n in names]) / sum(weights.values())
    reference = sps.chisquare(counts, counts.sum() * share)
    assert result["chi2"] == pytest.approx(reference.statistic)
    assert result["p_value"] == pytest.approx(reference.pvalue, rel=1e-9, abs=1e-300)
    assert result["df"] == len(names) - 1
    assert result["mismatch"] == (reference.pvalue < 0.001)


def test_srm_flags_a_real_mismatch_and_passes_a_fair_split() -> None:
    assert stats.srm_check({"a": 5000, "b": 5400}, {"a": 1, "b": 1})["mismatch"] is True
    assert stats.srm_check({"a": 5000, "b": 5050}, {"a": 1, "b": 1})["mismatch"] is False
    lenient = stats.srm_check({"a": 5000, "b": 5150}, {"a": 1, "b": 1}, alpha=0.2)
    assert lenient["mismatch"] is True


def test_srm_zero_weights_and_no_traffic() -> None:
    dropped = stats.srm_check({"v1": 900, "v2": 100, "v3": 0}, {"v1": 9, "v2": 1, "v3": 0})
    assert dropped["df"] == 1 and dropped["mismatch"] is False
    leaked = stats.srm_check({"v1": 900, "v2": 100, "v3": 1}, {"v1": 9, "v2": 1, "v3": 0})
    assert leaked == {"chi2": None, "df": 2, "p_value": 0.0, "mismatch": True}
    unknown = stats.srm_check({"v1": 10, "v9": 1}, {"v1": 1})
    assert unknown["mismatch"] is True and unknown["p_value"] == 0.0
    quiet = stats.srm_check({"v1": 0, "v2": 0}, {"v1": 1, "v2": 1})
    assert quiet == {"chi2": None, "df": 1, "p_value": None, "mismatch": False}
    assert stats.srm_check({}, {})["mismatch"] is False
    single = stats.srm_check({"v1": 42}, {"v1": 100})
    assert single == {"chi2": 0.0, "df": 0, "p_value": 1.0, "mismatch": False}
    _no_nan_json([dropped, leaked, unknown, quiet, single])
    with pytest.raises(ValueError):
        stats.srm_check({"v1": 1}, {"v1": -1})


# --- histogram quantiles ------------------------------------------------------------------------


def test_histogram_quantiles_by_hand() -> None:
    bounds = [0.1, 0.5, 1.0, math.inf]
    result = stats.quantiles_from_histogram(bounds, [10, 30, 40, 40], [0.25, 0.5, 0.9, 1.0])
    assert result == pytest.approx([0.1, 0.3, 0.8, 1.0])


def test_histogram_rank_in_inf_bucket_gives_highest_finite_bound() -> None:
    bounds = [0.1, 0.5, 1.0, math.inf]
    assert stats.quantiles_from_histogram(bounds, [10, 30, 40, 50], [0.95]) == [1.0]


def test_histogram_without_inf_bucket_and_non_positive_first_bound() -> None:
    assert stats.quantiles_from_histogram([1.0, 2.0], [5, 10], [0.5, 0.75]) == pytest.approx(
        [1.0, 1.5]
    )
    assert stats.quantiles_from_histogram([-1.0, 0.0, 1.0], [4, 4, 8], [0.25]) == [-1.0]


def test_histogram_q0_is_the_lower_edge_of_the_first_occupied_bucket() -> None:
    result = stats.quantiles_from_histogram([0.1, 0.2, 0.4, math.inf], [0, 0, 5, 5], [0.0, 1.0])
    assert result == pytest.approx([0.2, 0.4])


def test_histogram_empty_inputs() -> None:
    assert stats.quantiles_from_histogram([], [], [0.5, 0.99]) == [None, None]
    assert stats.quantiles_from_histogram([0.1, math.inf], [0, 0], [0.5]) == [None]
    assert stats.quantiles_from_histogram([math.inf], [7], [0.5]) == [None]
    assert stats.quantiles_from_histogram([0.1, math.inf], [3, 3], []) == []


def test_histogram_forces_monotonic_counts() -> None:
    bounds = [0.1, 0.5, 1.0, math.inf]
    dipped = stats.quantiles_from_histogram(bounds, [10, 9, 40, 40], [0.5])
    assert dipped == stats.quantiles_from_histogram(bounds, [10, 10, 40, 40], [0.5])


def test_histogram_rejects_malformed_buckets() -> None:
    with pytest.raises(ValueError):
        stats.quantiles_from_histogram([0.5, 0.1], [1, 2], [0.5])
    with pytest.raises(ValueError):
        stats.quantiles_from_histogram([math.inf, 1.0], [1, 2], [0.5])
    with pytest.raises(ValueError):
        stats.quantiles_from_histogram([0.1], [1, 2], [0.5])
    with pytest.raises(ValueError):
        stats.quantiles_from_histogram([0.1], [1], [1.5])


def test_histogram_quantiles_approach_exact_quantiles_with_fine_buckets() -> None:
    values = np.random.default_rng(7).uniform(0, 1, size=100_000)
    bounds = [*np.linspace(0.01, 1.0, 100).tolist(), math.inf]
    cumulative = [int(np.count_nonzero(values <= b)) for b in bounds]
    qs = [0.1, 0.5, 0.9, 0.99]
    estimated = stats.quantiles_from_histogram(bounds, cumulative, qs)
    assert estimated == pytest.approx(np.quantile(values, qs).tolist(), abs=0.005)


# --- exact quantiles ----------------------------------------------------------------------------


def test_quantiles_linear_by_hand() -> None:
    result = stats.quantiles([4.0, 1.0, 3.0, 2.0], [0.0, 0.25, 0.5, 1.0])
    assert result == pytest.approx([1.0, 1.75, 2.5, 4.0])
    assert stats.quantiles([5.0], [0.1, 0.9]) == [5.0, 5.0]


def test_quantiles_edges() -> None:
    assert stats.quantiles([], [0.5, 0.9]) == [None, None]
    assert stats.quantiles([math.nan], [0.5]) == [None]
    assert stats.quantiles([1.0, math.nan, 3.0], [0.5]) == [2.0]
    assert stats.quantiles([1.0], []) == []
    assert all(type(v) is float for v in stats.quantiles([1.0, 2.0], [0.5, 0.7]))


@given(
    st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=100),
    st.lists(st.floats(0, 1), min_size=1, max_size=10),
)
def test_quantiles_are_ordered_and_within_range(values: list[float], qs: list[float]) -> None:
    qs = sorted(qs)
    result = stats.quantiles(values, qs)
    assert all(v is not None for v in result)
    finite = [v for v in result if v is not None]
    assert finite == sorted(finite)
    assert min(values) - 1e-9 <= finite[0] and finite[-1] <= max(values) + 1e-9


# --- McNemar ------------------------------------------------------------------------------------


def test_mcnemar_exact_branch_matches_binomtest() -> None:
    for b in range(25):
        for c in range(25 - b):
            result = stats.mcnemar(b, c)
            assert result["method"] == "exact"
            expected = 1.0 if b + c == 0 else sps.binomtest(b, b + c, 0.5).pvalue
            assert result["p_value"] == pytest.approx(expected, rel=1e-9), (b, c)


def test_mcnemar_chi2_branch_by_hand() -> None:
    result = stats.mcnemar(30, 10)
    assert result["method"] == "chi2"
    assert result["statistic"] == pytest.approx(19**2 / 40)
    # A chi-square with one degree of freedom is a squared standard normal.
    assert result["p_value"] == pytest.approx(math.erfc(math.sqrt(19**2 / 40 / 2)))
    assert stats.mcnemar(12, 13)["method"] == "chi2"
    assert stats.mcnemar(12, 12)["method"] == "exact"
    balanced = stats.mcnemar(40, 40)
    assert balanced["statistic"] == 0.0 and balanced["p_value"] == 1.0


def test_mcnemar_no_discordant_pairs() -> None:
    result = stats.mcnemar(0, 0)
    assert result == {"b": 0, "c": 0, "statistic": 0.0, "p_value": 1.0, "method": "exact"}
    _no_nan_json(result)


# --- Beta posteriors ----------------------------------------------------------------------------


def test_beta_summary() -> None:
    uniform = stats.beta_summary(1, 1)
    assert uniform["mean"] == 0.5
    assert uniform["interval"] == pytest.approx([0.025, 0.975])
    posterior = stats.beta_summary(31, 71, confidence=0.9)
    assert posterior["mean"] == pytest.approx(31 / 102)
    lo, hi = posterior["interval"]
    assert special.betainc(31, 71, lo) == pytest.approx(0.05)
    assert special.betainc(31, 71, hi) == pytest.approx(0.95)
    assert lo < posterior["mean"] < hi
    _no_nan_json(posterior)
    with pytest.raises(ValueError):
        stats.beta_summary(0, 1)


def _monte_carlo_best(params: dict[str, tuple[float, float]], draws: int) -> dict[str, float]:
    rng = np.random.default_rng(2024)
    names = list(params)
    samples = np.column_stack([rng.beta(a, b, size=draws) for a, b in params.values()])
    wins = np.bincount(samples.argmax(axis=1), minlength=len(names))
    return {name: wins[i] / draws for i, name in enumerate(names)}


def test_prob_best_is_seeded_and_sums_to_one() -> None:
    params = {"v1": (30.0, 70.0), "v2": (35.0, 65.0), "v3": (3.0, 5.0)}
    first = stats.prob_best(params, rng=np.random.default_rng(1))
    assert first == stats.prob_best(params, rng=np.random.default_rng(1))
    assert stats.prob_best(params) == stats.prob_best(params)
    assert sum(first.values()) == pytest.approx(1.0)
    exact = stats.thompson_probabilities(params)
    for name in params:
        sd = math.sqrt(exact[name] * (1 - exact[name]) / 20000)
        assert abs(first[name] - exact[name]) < 5 * sd + 1e-12
    assert stats.prob_best({}) == {}
    assert stats.prob_best({"only": (2.0, 3.0)}, draws=10) == {"only": 1.0}
    assert stats.prob_best({"a": (900.0, 100.0), "b": (100.0, 900.0)})["a"] == 1.0


# --- Thompson propensities ----------------------------------------------------------------------


def _two_arm_closed_form(a: tuple[int, int], b: tuple[int, int]) -> float:
    """P(X_b > X_a) for integer alpha_b (Evan Miller's sum of Beta functions)."""
    (alpha_a, beta_a), (alpha_b, beta_b) = a, b
    return math.fsum(
        math.exp(
            special.betaln(alpha_a + i, beta_a + beta_b)
            - math.log(beta_b + i)
            - special.betaln(1 + i, beta_b)
            - special.betaln(alpha_a, beta_a)
        )
        for i in range(alpha_b)
    )


@pytest.mark.parametrize(
    ("a", "b"), [((1, 1), (2, 1)), ((31, 71), (40, 60)), ((5, 900), (1, 200)), ((700, 300), (3, 2))]
)
def test_two_arms_match_the_closed_form(a: tuple[int, int], b: tuple[int, int]) -> None:
    probs = stats.thompson_probabilities({"a": a, "b": b})
    assert probs["b"] == pytest.approx(_two_arm_closed_form(a, b), abs=1e-8)


def test_three_arms_match_direct_integration() -> None:
    params = {"a": (12.0, 30.0), "b": (40.0, 90.0), "c": (2.5, 4.0)}
    exact = stats.thompson_probabilities(params)
    for name, (alpha, beta) in params.items():
        rivals = [p for other, p in params.items() if other != name]

        def integrand(
            x: float, alpha: float, beta: float, rivals: list[tuple[float, float]]
        ) -> float:
            value = sps.beta.pdf(x, alpha, beta)
            for ra, rb in rivals:
                value *= sps.beta.cdf(x, ra, rb)
            return float(value)

        reference, _ = integrate.quad(
            integrand, 0, 1, args=(alpha, beta, rivals), points=[0.3, 0.4], limit=200
        )
        assert exact[name] == pytest.approx(reference, abs=1e-7)


@pytest.mark.parametrize(
    "params",
    [
        {"v1": (1.0, 1.0), "v2": (3.0, 2.0), "v3": (2.0, 3.0)},
        {"v1": (0.5, 0.5), "v2": (0.3, 2.0), "v3": (2.0, 0.2)},
        {"v1": (5000.0, 5000.0), "v2": (2.0, 2.0), "v3": (60.0, 55.0)},
        {"v1": (120.0, 30.0), "v2": (118.0, 32.0), "v3": (3.0, 1.0), "v4": (1e5, 1e5)},
    ],
)
def test_propensities_agree_with_a_200k_draw_monte_carlo(
    params: dict[str, tuple[float, float]],
) -> None:
    draws = 200_000
    simulated = _monte_carlo_best(params, draws)
    exact = stats.thompson_probabilities(params)
    assert sum(exact.values()) == pytest.approx(1.0, abs=1e-6)
    for name in params:
        sd = math.sqrt(max(exact[name] * (1 - exact[name]), 1e-12) / draws)
        assert abs(exact[name] - simulated[name]) < 5 * sd + 1e-6, name


def test_propensity_edges() -> None:
    assert stats.thompson_probabilities({}) == {}
    assert stats.thompson_probabilities({"only": (4.0, 9.0)}) == {"only": 1.0}
    twins = stats.thompson_probabilities({"a": (7.0, 3.0), "b": (7.0, 3.0), "c": (7.0, 3.0)})
    assert twins == pytest.approx({"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}, abs=1e-12)
    with pytest.raises(ValueError):
        stats.thompson_probabilities({"a": (0.0, 1.0)})


def test_floor_mixes_a_fixed_share_with_the_policy() -> None:
    params = {"v1": (90.0, 10.0), "v2": (10.0, 90.0), "v3": (50.0, 50.0)}
    raw = stats.thompson_probabilities(params)
    mixed = floored(raw, 0.05)
    assert sum(mixed.values()) == pytest.approx(1.0)
    for name in params:
        assert mixed[name] == pytest.approx(0.05 + 0.85 * raw[name])
        assert mixed[name] >= 0.05
    assert floored(raw, 0.0) == raw
    assert floored({}, 0.05) == {}


beta_params = st.tuples(
    st.floats(min_value=0.2, max_value=5000), st.floats(min_value=0.2, max_value=5000)
)


@settings(max_examples=40, deadline=None)
@given(st.dictionaries(st.sampled_from("abcdef"), beta_params, min_size=1, max_size=6))
def test_propensities_sum_to_one(params: dict[str, tuple[float, float]]) -> None:
    probs = stats.thompson_probabilities(params)
    assert set(probs) == set(params)
    assert all(0.0 <= p <= 1.0 for p in probs.values())
    assert math.fsum(probs.values()) == pytest.approx(1.0, abs=1e-6)
    mixed = floored(probs, 0.1 / len(params))
    assert math.fsum(mixed.values()) == pytest.approx(1.0, abs=1e-6)


# --- regret and off-policy estimates ------------------------------------------------------------


def test_expected_regret() -> None:
    params = {"good": (9.0, 1.0), "meh": (5.0, 5.0)}
    assert stats.expected_regret(params, {"good": 10, "meh": 20}) == pytest.approx(8.0)
    assert stats.expected_regret(params, {"good": 10}) == 0.0
    assert stats.expected_regret(params, {}) == 0.0
    assert stats.expected_regret({}, {}) == 0.0
    with pytest.raises(ValueError):
        stats.expected_regret(params, {"ghost": 1})


def test_ipw_and_snipw_by_hand() -> None:
    chosen = [(1.0, 0.5), (0.0, 0.25), (1.0, 0.2)]
    assert stats.ipw_mean(chosen, 10) == pytest.approx((2 + 0 + 5) / 10)
    assert stats.snipw_mean(chosen) == pytest.approx(7 / (2 + 4 + 5))
    assert stats.ipw_mean([], 10) == 0.0
    assert stats.ipw_mean([], 0) is None
    assert stats.snipw_mean([]) is None
    with pytest.raises(ValueError):
        stats.ipw_mean([(1.0, 0.0)], 5)
    with pytest.raises(ValueError):
        stats.ipw_mean([(1.0, 0.5), (1.0, 0.5)], 1)


def test_ipw_recovers_an_arms_mean_from_logged_decisions() -> None:
    rng = np.random.default_rng(99)
    decisions = 60_000
    propensity_a = rng.uniform(0.05, 0.6, size=decisions)
    picked_a = rng.random(decisions) < propensity_a
    # Reward depends on the context that also drives the propensity: naive averaging is biased.
    reward_a = (rng.random(decisions) < 0.2 + propensity_a).astype(float)
    true_mean = float(np.mean(0.2 + propensity_a))
    logged = list(zip(reward_a[picked_a].tolist(), propensity_a[picked_a].tolist(), strict=True))
    naive = float(reward_a[picked_a].mean())
    ipw = stats.ipw_mean(logged, decisions)
    snipw = stats.snipw_mean(logged)
    assert ipw is not None and snipw is not None
    assert abs(naive - true_mean) > 0.05
    assert ipw == pytest.approx(true_mean, abs=0.02)
    assert snipw == pytest.approx(true_mean, abs=0.02)


@given(
    st.lists(
        st.tuples(st.floats(0, 1), st.floats(min_value=0.01, max_value=1)), min_size=1, max_size=50
    )
)
def test_snipw_stays_within_the_reward_range(logged: list[tuple[float, float]]) -> None:
    value = stats.snipw_mean(logged)
    assert value is not None
    rewards = [r for r, _ in logged]
    assert min(rewards) - 1e-9 <= value <= max(rewards) + 1e-9
