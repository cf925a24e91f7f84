"""Every interval the reports print: fitted to its statistic's range, and honest about coverage.

Built through the report builders themselves (``build_report``, ``pair_row``), so a report that
picks the wrong interval for a statistic fails here, not only a wrong formula in ``stats``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.config.experiments import Experiment
from router.reports.experiment import build_report
from router.reports.reads import Recorded
from router.reports.shadow import pair_row
from router.storage import keys

LARGE_N = 30
"""From here on an interval is wide enough to hold its estimate strictly inside."""

CANARY = Experiment.model_validate(
    {
        "name": "intervals",
        "model": "m",
        "control": "v1",
        "variants": {"v1": {"url": "http://127.0.0.1:1"}, "v2": {"url": "http://127.0.0.1:2"}},
        "policy": {"kind": "canary", "weights": {"v1": 50, "v2": 50}},
    }
)
BANDIT = Experiment.model_validate(
    {
        "name": "intervals-bandit",
        "model": "m",
        "control": "v1",
        "variants": {"v1": {"url": "http://127.0.0.1:1"}, "v2": {"url": "http://127.0.0.1:2"}},
        "policy": {"kind": "bandit", "arms": ["v1", "v2"], "prior": [1, 1]},
    }
)


# --- building counters the way the recorder and the feedback script do ---------------------


def variant_counters(
    rewards: list[float], correct: list[bool], positive: list[bool], errors: list[bool]
) -> dict[str, str]:
    """A variant's counter hash for these feedback rewards, labelled answers and requests."""
    binary = sum(r in (0.0, 1.0) for r in rewards)
    return {
        keys.ASSIGNED: str(len(errors)),
        keys.ERRORS: str(sum(errors)),
        keys.LABELLED: str(len(positive)),
        keys.POSITIVE: str(sum(positive)),
        keys.FEEDBACK_N: str(len(rewards)),
        keys.FEEDBACK_SUM: repr(math.fsum(rewards)),
        keys.FEEDBACK_SUMSQ: repr(math.fsum(r * r for r in rewards)),
        keys.FEEDBACK_BINARY: str(binary),
        keys.FEEDBACK_LABELLED: str(len(correct)),
        keys.FEEDBACK_CORRECT: str(sum(correct)),
    }


def shadow_counters(agree: list[bool], deltas: list[float]) -> dict[str, str]:
    return {
        keys.SHADOW_PAIRS: str(len(agree)),
        keys.SHADOW_AGREE: str(sum(agree)),
        keys.SHADOW_DELTA_N: str(len(deltas)),
        keys.SHADOW_DELTA_SUM: repr(math.fsum(deltas)),
        keys.SHADOW_DELTA_SUMSQ: repr(math.fsum(d * d for d in deltas)),
    }


def bandit_evidence(successes: dict[str, int], trials: dict[str, int]) -> dict[str, str]:
    raw: dict[str, str] = {}
    for arm, n in trials.items():
        raw[keys.bandit_field(arm, keys.BANDIT_SUCCESS)] = repr(float(successes[arm]))
        raw[keys.bandit_field(arm, keys.BANDIT_FAILURE)] = repr(float(n - successes[arm]))
        raw[keys.bandit_field(arm, keys.BANDIT_REWARDS)] = str(n)
    return raw


# --- every interval a report prints, with the estimate it is an interval for ----------------

ESTIMATES: dict[tuple[str, ...], str] = {
    ("variants", "feedback", "interval"): "mean_reward",
    ("variants", "feedback", "accuracy_interval"): "accuracy",
    ("comparisons", "*", "interval"): "difference",
    ("bandit", "arms", "interval"): "mean",
    ("pairs", "agreement_interval"): "agreement",
    ("pairs", "score_delta", "interval"): "mean",
}
"""Where each printed interval sits (list items and comparison metrics as one step) and the
sibling field holding its estimate. An interval found anywhere else fails the walk below."""


def printed_intervals(report: Any) -> Iterator[tuple[tuple[str, ...], float, list[float]]]:
    """(where, estimate, interval) of every interval in ``report``."""

    def walk(node: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], float, Any]]:
        if isinstance(node, list):
            for item in node:
                if isinstance(item, dict):
                    yield from walk(item, path)
            return
        if not isinstance(node, dict):
            return
        for key, value in node.items():
            if "interval" in key and (value is None or isinstance(value, list)):
                where = (*path, key)
                pattern = next((p for p in ESTIMATES if _matches(p, where)), None)
                assert pattern is not None, f"an interval the test does not know: {where}"
                if value is not None:
                    yield where, node[ESTIMATES[pattern]], value
            else:
                step = "*" if path[-1:] == ("comparisons",) else key
                yield from walk(value, (*path, step))

    return walk(report, ())


def _matches(pattern: tuple[str, ...], where: tuple[str, ...]) -> bool:
    if len(pattern) != len(where):
        return False
    return all(p in ("*", w) for p, w in zip(pattern, where, strict=True))


# --- the report: a negative mean delta ----------------------------------------------


def test_a_negative_score_delta_gets_an_interval_on_both_sides_of_its_mean() -> None:
    # 362 pairs, mean delta -0.1026, sd 0.141: the campaign's report showed [-0.1026, -0.0880].
    n, mean, sd = 362, -0.1026, 0.141
    raw = {
        keys.SHADOW_PAIRS: str(n),
        keys.SHADOW_AGREE: str(n - 40),
        keys.SHADOW_DELTA_N: str(n),
        keys.SHADOW_DELTA_SUM: repr(n * mean),
        keys.SHADOW_DELTA_SUMSQ: repr((n - 1) * sd * sd + n * mean * mean),
    }
    delta = pair_row("v1", "v3", raw)["score_delta"]
    lo, hi = delta["interval"]
    half = 1.9666 * sd / math.sqrt(n)
    assert lo == pytest.approx(mean - half, abs=1e-4)
    assert hi == pytest.approx(mean + half, abs=1e-4)
    assert lo < delta["mean"] < hi


# --- property: every printed interval holds its estimate strictly inside -------------------

unit = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
signed = st.floats(min_value=-1.0, max_value=1.0, allow_nan=False)


def varied(elements: st.SearchStrategy[Any]) -> st.SearchStrategy[list[Any]]:
    """At least LARGE_N values, not all equal (an interval of no variance is a point)."""
    return st.lists(elements, min_size=LARGE_N, max_size=3 * LARGE_N).filter(
        lambda xs: len(set(xs)) > 1
    )


arm_data = st.tuples(
    st.one_of(varied(st.sampled_from([0.0, 1.0])), varied(unit)),
    varied(st.booleans()),
    varied(st.booleans()),
    varied(st.booleans()),
)


@settings(max_examples=80, deadline=None)
@given(control=arm_data, treatment=arm_data)
def test_every_experiment_report_interval_holds_its_estimate_strictly_inside(
    control: tuple[list[float], list[bool], list[bool], list[bool]],
    treatment: tuple[list[float], list[bool], list[bool], list[bool]],
) -> None:
    counters = {"v1": variant_counters(*control), "v2": variant_counters(*treatment)}
    assigned = {v: int(counters[v][keys.ASSIGNED]) for v in counters}
    report = build_report(CANARY, "cv", Recorded(counters, assigned), 0.0)
    found = list(printed_intervals(report))
    assert len(found) == 2 * 2 + 4  # reward and accuracy per variant, four comparisons
    for where, estimate, (lo, hi) in found:
        assert lo < estimate < hi, (where, estimate, lo, hi)


@settings(max_examples=80, deadline=None)
@given(
    successes=st.tuples(st.integers(1, 10_000), st.integers(1, 10_000)),
    failures=st.tuples(st.integers(1, 10_000), st.integers(1, 10_000)),
)
def test_every_bandit_interval_holds_its_posterior_mean_strictly_inside(
    successes: tuple[int, int], failures: tuple[int, int]
) -> None:
    wins = dict(zip(("v1", "v2"), successes, strict=True))
    trials = {arm: wins[arm] + f for arm, f in zip(("v1", "v2"), failures, strict=True)}
    recorded = Recorded({}, {}, bandit_evidence(wins, trials))
    found = list(printed_intervals(build_report(BANDIT, "cv", recorded, 0.0)))
    assert len(found) == 2
    for where, estimate, (lo, hi) in found:
        assert lo < estimate < hi, (where, estimate, lo, hi)


@settings(max_examples=80, deadline=None)
@given(agree=varied(st.booleans()), deltas=varied(signed))
def test_every_shadow_report_interval_holds_its_estimate_strictly_inside(
    agree: list[bool], deltas: list[float]
) -> None:
    row = pair_row("v1", "v3", shadow_counters(agree, deltas))
    found = list(printed_intervals({"pairs": [row]}))
    assert len(found) == 2
    for where, estimate, (lo, hi) in found:
        assert lo < estimate < hi, (where, estimate, lo, hi)
        assert lo >= -1.0 and hi <= 1.0


# --- coverage: a 95% interval covers the truth about 95% of the time ------------------------

REPLICATES = 2000


def band(replicates: int = REPLICATES) -> tuple[float, float]:
    """95% +- 3.5 Monte Carlo standard errors (0.017 at 2,000 replicates): a 95% interval
    whose true coverage were 92% or 98% would fail."""
    half = 3.5 * math.sqrt(0.95 * 0.05 / replicates)
    return 0.95 - half, 0.95 + half


COVERAGE_BAND = band()


def coverage(
    trial: Callable[[np.random.Generator], bool], seed: int, replicates: int = REPLICATES
) -> float:
    rng = np.random.default_rng(seed)
    return sum(trial(rng) for _ in range(replicates)) / replicates


def covers(interval: list[float], truth: float) -> bool:
    return interval[0] <= truth <= interval[1]


def one_row(counters: dict[str, str]) -> dict[str, Any]:
    report = build_report(CANARY, "cv", Recorded({"v1": counters}, {}), 0.0)
    row: dict[str, Any] = report["variants"][0]
    return row


def test_coverage_of_the_binary_reward_and_accuracy_intervals() -> None:
    p, n = 0.83, 150

    def trial(rng: np.random.Generator) -> bool:
        right = [bool(x) for x in rng.random(n) < p]
        feedback = one_row(variant_counters([float(x) for x in right], right, [], []))["feedback"]
        assert feedback["interval_method"] == "wilson" and feedback["interval"] is not None
        assert feedback["accuracy_interval"] == feedback["interval"]
        return covers(feedback["interval"], p)

    got = coverage(trial, seed=1)
    print(f"wilson (reward, accuracy), p={p}, n={n}: coverage {got:.3f}")
    assert COVERAGE_BAND[0] <= got <= COVERAGE_BAND[1]


def test_coverage_of_the_fractional_reward_interval() -> None:
    a, b, n = 2.0, 5.0, 60  # skewed rewards in [0, 1], mean 2/7

    def trial(rng: np.random.Generator) -> bool:
        rewards = [float(x) for x in rng.beta(a, b, n)]
        feedback = one_row(variant_counters(rewards, [], [], []))["feedback"]
        assert feedback["interval_method"] == "t"
        return covers(feedback["interval"], a / (a + b))

    got = coverage(trial, seed=2)
    print(f"t interval of fractional rewards, Beta({a}, {b}), n={n}: coverage {got:.3f}")
    assert COVERAGE_BAND[0] <= got <= COVERAGE_BAND[1]


@pytest.mark.parametrize("mean", [-0.1, 0.0, 0.25])
def test_coverage_of_the_score_delta_interval(mean: float) -> None:
    n, sd = 362, 0.14

    def trial(rng: np.random.Generator) -> bool:
        # Clipping at +-1 is over 5 sd away: the true mean stays ``mean``.
        deltas = [float(x) for x in np.clip(rng.normal(mean, sd, n), -1.0, 1.0)]
        row = pair_row("v1", "v3", shadow_counters([True] * n, deltas))
        return covers(row["score_delta"]["interval"], mean)

    got = coverage(trial, seed=3)
    print(f"t interval of score deltas, mean {mean}, n={n}: coverage {got:.3f}")
    assert COVERAGE_BAND[0] <= got <= COVERAGE_BAND[1]


def test_coverage_of_the_agreement_interval() -> None:
    p, n = 0.9, 200

    def trial(rng: np.random.Generator) -> bool:
        agree = [bool(x) for x in rng.random(n) < p]
        row = pair_row("v1", "v3", shadow_counters(agree, []))
        return covers(row["agreement_interval"], p)

    got = coverage(trial, seed=4)
    print(f"wilson (agreement), p={p}, n={n}: coverage {got:.3f}")
    assert COVERAGE_BAND[0] <= got <= COVERAGE_BAND[1]


def test_coverage_of_every_comparison_interval() -> None:
    n = 400
    truth = {  # (control, treatment) rate of each compared statistic
        "reward": (0.55, 0.62),
        "accuracy": (0.85, 0.9),
        "positive_rate": (0.3, 0.25),
        "error_rate": (0.1, 0.15),
    }
    hits = dict.fromkeys(truth, 0)
    rng = np.random.default_rng(5)
    for _ in range(REPLICATES):
        counters = {}
        for i, variant in enumerate(("v1", "v2")):
            draw = {m: [bool(x) for x in rng.random(n) < rates[i]] for m, rates in truth.items()}
            counters[variant] = variant_counters(
                [float(x) for x in draw["reward"]],
                draw["accuracy"],
                draw["positive_rate"],
                draw["error_rate"],
            )
        [comparison] = build_report(CANARY, "cv", Recorded(counters, {}), 0.0)["comparisons"]
        for metric, (control, treatment) in truth.items():
            hits[metric] += covers(comparison[metric]["interval"], treatment - control)
    for metric, count in hits.items():
        got = count / REPLICATES
        print(f"difference interval ({metric}), n={n} per arm: coverage {got:.3f}")
        assert COVERAGE_BAND[0] <= got <= COVERAGE_BAND[1], metric


def test_coverage_of_the_bandit_credible_interval_under_its_prior() -> None:
    n = 120

    def trial(rng: np.random.Generator) -> bool:
        p = float(rng.beta(1.0, 1.0))  # the experiment's prior: Beta(1, 1)
        wins = int(rng.binomial(n, p))
        recorded = Recorded({}, {}, bandit_evidence({"v1": wins, "v2": 0}, {"v1": n, "v2": 0}))
        arm = build_report(BANDIT, "cv", recorded, 0.0)["bandit"]["arms"][0]
        return covers(arm["interval"], p)

    replicates = 1000  # each report computes Thompson probabilities by quadrature
    got = coverage(trial, seed=6, replicates=replicates)
    print(f"Beta credible interval, Beta(1, 1) prior, n={n}: coverage {got:.3f}")
    low, high = band(replicates)
    assert low <= got <= high
