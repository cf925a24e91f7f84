"""Per-variant experiment reports, computed from the counters the recorder keeps in Redis.

``reads.read_recorded`` fetches the counters (one consistent MULTI snapshot); ``build_report`` is
pure, so every number can be recomputed from the same Redis data by anyone. Rows are per variant
(the unit of weights and of the control); each row names the model version the variant serves.
A quantity the data cannot define yet (a rate of nothing) is ``None``; counts start at zero.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from router.bandit.evidence import arm_stats, parse_evidence
from router.config.experiments import BanditPolicy, Experiment
from router.recording.events import LATENCY_BOUNDS_MS
from router.reports.reads import Recorded
from router.reports.stats import (
    UNIT,
    beta_summary,
    difference_test,
    mean_interval,
    quantiles_from_histogram,
    srm_check,
    thompson_probabilities,
    wilson_interval,
)
from router.reports.units import UnitSums, normal_interval, parse_unit_sums
from router.storage import keys

SRM_ALPHA = 0.001
QUANTILES = (0.5, 0.95, 0.99)
Z95 = 1.959963984540054
USER_METRICS = {"reward": "r_", "error_rate": "u_", "accuracy": "a_"}
"""Metrics the reports analyse per user in a sticky experiment, and their sums' prefix."""


@dataclass(frozen=True)
class UserView:
    """One variant's per-user sums under the configuration in force (sticky experiments)."""

    errors: UnitSums
    rewards: UnitSums
    accuracy: UnitSums
    keyless: int
    orphan_feedback: int
    partial: bool

    @classmethod
    def of(cls, recorded: Recorded, name: str) -> UserView:
        raw = recorded.units
        return cls(
            parse_unit_sums(raw, name, "u_"),
            parse_unit_sums(raw, name, "r_"),
            parse_unit_sums(raw, name, "a_"),
            _Hash(raw).int(f"{name}|{keys.WINDOW_NOKEY}"),
            _Hash(raw).int(f"{name}|{keys.WINDOW_ORPHAN_FEEDBACK}"),
            f"{name}|{keys.WINDOW_UNITS_FULL}" in raw,
        )

    def sums(self, metric: str) -> UnitSums:
        prefix = USER_METRICS[metric]
        return {"r_": self.rewards, "a_": self.accuracy}.get(prefix, self.errors)


def user_difference(control: UnitSums, candidate: UnitSums) -> dict[str, Any]:
    """``ratio(candidate) - ratio(control)`` with the delta-method variance of each arm: a
    two-sided z test and 95% interval in which the user, not the request, is the unit."""
    a, b = control.ratio, candidate.ratio
    if a is None or b is None:
        return {"difference": None, "interval": None, "p_value": None, "unit": "user"}
    va, vb = control.ratio_variance(), candidate.ratio_variance()
    difference = b - a
    se = math.sqrt((va or 0.0) + (vb or 0.0))
    if control.units < 2 or candidate.units < 2 or se == 0.0:
        return {"difference": difference, "interval": None, "p_value": None, "unit": "user"}
    p_value = min(1.0, 2.0 * 0.5 * math.erfc(abs(difference) / se / math.sqrt(2.0)))
    lo = max(-1.0, difference - Z95 * se)
    hi = min(1.0, difference + Z95 * se)
    return {"difference": difference, "interval": [lo, hi], "p_value": p_value, "unit": "user"}


def by_user(row: dict[str, Any], view: UserView) -> dict[str, Any]:
    """A variant row's per-user figures; its reward interval becomes the per-user one."""
    users = {
        "users": view.errors.units,
        "keyless": view.keyless,
        "orphan_feedback": view.orphan_feedback,
        "partial": view.partial,
        "error_rate": view.errors.ratio,
        "error_rate_interval": normal_interval(view.errors, Z95),
        "rewarded_users": view.rewards.units,
        "mean_reward": view.rewards.ratio,
        "reward_interval": normal_interval(view.rewards, Z95),
        "labelled_users": view.accuracy.units,
        "accuracy": view.accuracy.ratio,
        "accuracy_interval": normal_interval(view.accuracy, Z95),
    }
    if not view.partial:
        row["feedback"]["interval"] = users["reward_interval"]
        row["feedback"]["interval_method"] = "delta method, per user"
        row["feedback"]["accuracy_interval"] = users["accuracy_interval"]
    return users


@dataclass(frozen=True)
class BanditLive:
    """What the answering replica adds to a bandit report: the default prior and its cache."""

    default_prior: tuple[float, float]
    status: dict[str, Any]
    """``BanditRuntime.status``: posterior age, refresh interval, current traffic share."""


class _Hash:
    def __init__(self, raw: dict[str, str]) -> None:
        self.raw = raw

    def int(self, field: str) -> int:
        return int(self.raw.get(field, "0"))

    def float(self, field: str) -> float:
        return float(self.raw.get(field, "0"))


def _ratio(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def latency_buckets(raw: dict[str, str]) -> tuple[list[float], list[int]]:
    """Upper bounds (ms, ``inf`` last) and cumulative counts of a variant's latency buckets."""
    return dense_buckets(raw, keys.LATENCY_BUCKET, LATENCY_BOUNDS_MS)


def dense_buckets(
    raw: dict[str, str], prefix: str, bounds: Iterable[float]
) -> tuple[list[float], list[int]]:
    """Every bucket of ``bounds`` (and ``+Inf``), empty ones included: Redis keeps only the
    buckets that were hit, and interpolating from a sparse list would move quantiles."""
    counts = {
        float(field.removeprefix(prefix)): int(count)
        for field, count in raw.items()
        if field.startswith(prefix)
    }
    full = sorted({*bounds, math.inf, *counts})
    cumulative: list[int] = []
    for bound in full:
        cumulative.append(counts.get(bound, 0) + (cumulative[-1] if cumulative else 0))
    return full, cumulative


def variant_row(
    name: str, experiment: Experiment, raw: dict[str, str], total: int
) -> dict[str, Any]:
    h = _Hash(raw)
    assigned = h.int(keys.ASSIGNED)
    bounds, cumulative = latency_buckets(raw)
    p50, p95, p99 = quantiles_from_histogram(bounds, cumulative, QUANTILES)
    labelled = h.int(keys.LABELLED)
    scored = h.int(keys.SCORED)
    fb_n = h.int(keys.FEEDBACK_N)
    fb_sum = h.float(keys.FEEDBACK_SUM)
    binary = fb_n > 0 and h.int(keys.FEEDBACK_BINARY) == fb_n
    if binary:
        interval = wilson_interval(min(float(round(fb_sum)), fb_n), fb_n)
    else:
        interval = mean_interval(fb_sum, h.float(keys.FEEDBACK_SUMSQ), fb_n, UNIT)
    fb_labelled = h.int(keys.FEEDBACK_LABELLED)
    correct = h.int(keys.FEEDBACK_CORRECT)
    accuracy_interval = wilson_interval(correct, fb_labelled) if fb_labelled else None
    labels = {
        field.removeprefix(keys.LABEL): int(count)
        for field, count in sorted(raw.items())
        if field.startswith(keys.LABEL)
    }
    table = feedback_confusion(raw)
    return {
        "variant": name,
        "version": experiment.version_of(name) if name in experiment.variants else None,
        "control": name == experiment.control,
        "configured": name in experiment.variants,
        "weight_pct": experiment.configured_weights().get(name, 0.0),
        "assigned": assigned,
        "share_pct": 100.0 * assigned / total if total else 0.0,
        "served": h.int(keys.SERVED),
        "errors": h.int(keys.ERRORS),
        "error_rate": _ratio(h.int(keys.ERRORS), assigned),
        "fallbacks": h.int(keys.FALLBACKS),
        "fallback_rate": _ratio(h.int(keys.FALLBACKS), assigned),
        "failovers": h.int(keys.FAILOVERS),
        "rejected": h.int(keys.REJECTED),
        "latency_ms": {
            "mean": _ratio(h.float(keys.LATENCY_SUM), assigned),
            "p50": p50,
            "p95": p95,
            "p99": p99,
        },
        "predictions": h.int(keys.PREDICTIONS),
        "labelled": labelled,
        "positive": h.int(keys.POSITIVE),
        "positive_rate": _ratio(h.int(keys.POSITIVE), labelled),
        "labels": labels,
        "scored": scored,
        "mean_score": _ratio(h.float(keys.SCORE_SUM), scored),
        "feedback": {
            "count": fb_n,
            "mean_reward": _ratio(fb_sum, fb_n),
            "interval": list(interval) if interval else None,
            "interval_method": "wilson" if binary else "t",
            "labelled": fb_labelled,
            "correct": correct,
            "accuracy": _ratio(correct, fb_labelled),
            "accuracy_interval": list(accuracy_interval) if accuracy_interval else None,
            "confusion": table,
            "classes": per_class(table),
        },
    }


def feedback_confusion(raw: dict[str, str]) -> dict[str, dict[str, int]]:
    """Served label -> true label -> count, from labelled feedback (labels as JSON text)."""
    table: dict[str, dict[str, int]] = {}
    for field, count in raw.items():
        if field.startswith(keys.FEEDBACK_CONFUSION):
            served, truth = field.removeprefix(keys.FEEDBACK_CONFUSION).split("|", 1)
            table.setdefault(served, {})[truth] = int(count)
    return {p: dict(sorted(row.items())) for p, row in sorted(table.items())}


def per_class(table: dict[str, dict[str, int]]) -> dict[str, dict[str, Any]]:
    """Per label: how often served, how often true, precision and recall (None: no data)."""
    labels = sorted({*table, *(t for row in table.values() for t in row)})
    out: dict[str, dict[str, Any]] = {}
    for label in labels:
        served = sum(table.get(label, {}).values())
        actual = sum(row.get(label, 0) for row in table.values())
        correct = table.get(label, {}).get(label, 0)
        out[label] = {
            "served": served,
            "actual": actual,
            "correct": correct,
            "precision": _ratio(correct, served),
            "recall": _ratio(correct, actual),
        }
    return out


def _sums(raw: dict[str, str], metric: str) -> tuple[float, float, float]:
    """(sum, sum of squares, n) of a per-request metric, for ``difference_test``."""
    h = _Hash(raw)
    if metric == "reward":
        return h.float(keys.FEEDBACK_SUM), h.float(keys.FEEDBACK_SUMSQ), h.int(keys.FEEDBACK_N)
    part, whole = {
        "accuracy": (keys.FEEDBACK_CORRECT, keys.FEEDBACK_LABELLED),
        "positive_rate": (keys.POSITIVE, keys.LABELLED),
        "error_rate": (keys.ERRORS, keys.ASSIGNED),
    }[metric]
    count = h.int(part)
    return count, count, h.int(whole)  # 0/1 values: the sum of squares is the sum


COMPARED = ("reward", "accuracy", "positive_rate", "error_rate")


def build_report(
    experiment: Experiment,
    config_version: str,
    recorded: Recorded,
    generated_at: float,
    live: BanditLive | None = None,
) -> dict[str, Any]:
    configured = list(experiment.variants)
    others = sorted(set(recorded.counters) - set(configured))
    order = [experiment.control] + [v for v in configured if v != experiment.control] + others
    counters = {name: recorded.counters.get(name, {}) for name in order}
    total = sum(_Hash(raw).int(keys.ASSIGNED) for raw in counters.values())
    rows = [variant_row(name, experiment, counters[name], total) for name in order]
    unit = experiment.analysis_unit
    views = {name: UserView.of(recorded, name) for name in order} if unit == "user" else {}
    for row in rows:
        if views:
            row["by_user"] = by_user(row, views[row["variant"]])
    control = counters[experiment.control]
    comparisons = []
    for name in order[1:]:
        item: dict[str, Any] = {"variant": name, "control": experiment.control}
        for metric in COMPARED:
            if (
                views
                and metric in USER_METRICS
                and not (views[name].partial or views[experiment.control].partial)
            ):
                item[metric] = user_difference(
                    views[experiment.control].sums(metric), views[name].sums(metric)
                )
            else:
                test = difference_test(*_sums(control, metric), *_sums(counters[name], metric))
                item[metric] = {**test, "unit": "request"}
        comparisons.append(item)
    users = {name: view.errors.units for name, view in views.items()}
    assigned = users if views else recorded.assigned_now
    return {
        "unit": unit,
        "unit_scope": "per-user figures cover the configuration in force" if views else None,
        "experiment": experiment.name,
        "model": experiment.model,
        "policy": experiment.policy.kind,
        "control": experiment.control,
        "config_version": config_version,
        "generated_at": generated_at,
        "totals": {
            "assigned": total,
            "served": sum(r["served"] for r in rows),
            "errors": sum(r["errors"] for r in rows),
            "fallbacks": sum(r["fallbacks"] for r in rows),
            "failovers": sum(r["failovers"] for r in rows),
            "feedback": sum(r["feedback"]["count"] for r in rows),
        },
        "variants": rows,
        "srm": srm(experiment, config_version, assigned, unit),
        "comparisons": comparisons,
        "bandit": bandit_section(experiment, recorded, live),
    }


def bandit_section(
    experiment: Experiment, recorded: Recorded, live: BanditLive | None
) -> dict[str, Any] | None:
    """Posterior per arm from the evidence in Redis, with what the policy did with it.

    ``expected_regret`` is pulls x (best posterior mean - the arm's); ``ipw_mean`` is
    sum(reward / propensity) over feedback on requests the arm was chosen for and answered,
    divided by all such feedback (every arm); ``snipw_mean`` divides by sum(1 / propensity)
    instead. ``naive_mean`` is the plain mean of the feedback credited to the arm.
    """
    policy = experiment.policy
    if not isinstance(policy, BanditPolicy):
        return None
    prior = policy.prior or (live.default_prior if live else (1.0, 1.0))
    evidence = parse_evidence(recorded.bandit)
    posteriors = arm_stats(evidence, policy.arms, prior)
    params = {arm: (s.alpha, s.beta) for arm, s in posteriors.items()}
    best = thompson_probabilities({arm: params[arm] for arm in policy.arms})
    means = {arm: a / (a + b) for arm, (a, b) in params.items()}
    top = max(means[arm] for arm in policy.arms)
    counters = {arm: _Hash(recorded.counters.get(arm, {})) for arm in posteriors}
    ipw_total = sum(_Hash(raw).int(keys.IPW_N) for raw in recorded.counters.values())
    share = live.status["traffic_share"] if live else {}
    arms = []
    for arm, stats in posteriors.items():
        h = counters[arm]
        pulls = h.int(keys.ASSIGNED)
        ipw_sum, ipw_weight = h.float(keys.IPW_SUM), h.float(keys.IPW_WEIGHT)
        arms.append(
            {
                "arm": arm,
                "sampled": arm in policy.arms,
                **beta_summary(stats.alpha, stats.beta),
                "rewards": stats.rewards,
                "prob_best": best.get(arm),
                "traffic_share": share.get(arm),
                "pulls": pulls,
                "sticky_pulls": h.int(keys.STICKY),
                "expected_regret": pulls * max(0.0, top - means[arm]),
                "naive_mean": _ratio(h.float(keys.FEEDBACK_SUM), h.int(keys.FEEDBACK_N)),
                "ipw_mean": _ratio(ipw_sum, ipw_total),
                "snipw_mean": _ratio(ipw_sum, ipw_weight),
                "ipw_feedback": h.int(keys.IPW_N),
            }
        )
    posterior = None
    if live is not None:
        posterior = {k: v for k, v in live.status.items() if k != "traffic_share"}
    return {
        "prior": list(prior),
        "min_share": policy.min_share,
        "warmup": policy.warmup,
        "sticky": policy.sticky is not None,
        "arms": arms,
        "expected_regret": sum(a["expected_regret"] for a in arms),
        "pulls": sum(a["pulls"] for a in arms),
        "sticky_pulls": sum(a["sticky_pulls"] for a in arms),
        "posterior": posterior,
    }


def srm(
    experiment: Experiment, config_version: str, observed: dict[str, int], unit: str = "request"
) -> dict[str, Any]:
    """Chi-square of assignments under the configuration in force against its weights; with
    sticky assignment ``observed`` counts distinct users (the unit that was randomized)."""
    if isinstance(experiment.policy, BanditPolicy):
        return {
            "checked": False,
            "reason": "a bandit's traffic shares follow its rewards, not fixed weights",
        }
    weights = experiment.configured_weights()
    result = srm_check(observed, weights, alpha=SRM_ALPHA)
    return {
        "checked": True,
        "unit": unit,
        "config_version": config_version,
        "observed": {name: observed.get(name, 0) for name in sorted(set(weights) | set(observed))},
        "weights_pct": weights,
        "alpha": SRM_ALPHA,
        **result,
    }
