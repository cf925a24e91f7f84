"""Drift alarms on a schedule, simulated: false alarms under no shift and detection of a real one,
Turnout's rule next to the usual fixed thresholds checked again and again.

A version's reference is its validation scores (4,461 rows, like the full data's hold-out),
drawn afresh for every simulated year; each day brings a window of live scores from the same
distribution (no shift), and a year is 365 daily checks. The score distribution is a mixture
like a profanity model's: 83% positives (logit ~ N(3, 1.5)), 17% negatives (logit ~ N(-2.5,
1.5)). Shift: from day 100 a share of the positives' words are replaced by new slang, so their
logits drop by 4 (the model no longer sees what made them positive).

Rules:
* turnout: KS p-value below alpha / 365 (Bonferroni over a year of daily checks, alpha 0.05)
  and a change that is not negligible, PSI >= 0.1 or Wasserstein >= 0.02 (the paired check:
  KS and Wasserstein of the deltas >= 0.02);
* ks_0.05: KS p < 0.05 at every check (Evidently's default test up to 1,000 rows);
* psi_0.1: PSI >= 0.1 at every check (the common rule of thumb, Evidently's PSI threshold);
* wasserstein_0.1: Wasserstein distance / reference std >= 0.1 (Evidently's default above
  1,000 rows).

Then the input check (Evidently's text domain classifier on real tweets): false alarms on
random splits with Turnout's threshold (the AUC significant at alpha / 365 for the held-out
sizes, at least 0.6) against Evidently's defaults.
"""

from __future__ import annotations

import argparse
import csv
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.stats import beta

from router.drift import stats
from router.drift.stats import Sample

ALPHA, CHECKS, REFERENCE_ROWS = 0.05, 365, 4461
LEVEL = ALPHA / CHECKS


@dataclass(frozen=True)
class Look:
    """One check's numbers, computed once for every rule."""

    ks_p: float
    psi: float
    wasserstein: float
    reference_std: float

    @classmethod
    def of(cls, ref: Sample, cur: Sample) -> Look:
        return cls(
            stats.ks(ref, cur)[1],
            stats.psi(ref, cur),
            stats.wasserstein(ref, cur),
            float(np.std(ref.points)),
        )


Rule = Callable[[Look], bool]
RULES: dict[str, Rule] = {
    "turnout": lambda x: x.ks_p < LEVEL and (x.psi >= 0.1 or x.wasserstein >= 0.02),
    "ks_0.05": lambda x: x.ks_p < 0.05,
    "psi_0.1": lambda x: x.psi >= 0.1,
    "wasserstein_0.1": lambda x: x.wasserstein / x.reference_std >= 0.1,
}


def scores(rng: np.random.Generator, n: int, slang: float = 0.0) -> np.ndarray:
    positive = rng.random(n) < 0.83
    logits = np.where(positive, rng.normal(3.0, 1.5, n), rng.normal(-2.5, 1.5, n))
    hit = positive & (rng.random(n) < slang)
    return 1.0 / (1.0 + np.exp(-(logits - 4.0 * hit)))


def interval(k: int, n: int) -> str:
    """k / n with its Clopper-Pearson 95% interval."""
    low = 0.0 if k == 0 else float(beta.ppf(0.025, k, n - k + 1))
    high = 1.0 if k == n else float(beta.ppf(0.975, k + 1, n - k))
    return f"{k / n:.2f} [{low:.2f}, {high:.2f}]"


def no_shift(years: int, size: int, seed: int) -> dict[str, tuple[int, float]]:
    """Per rule: years with at least one false alarm, false alarms per year."""
    rng = np.random.default_rng(seed)
    any_alarm = dict.fromkeys(RULES, 0)
    alarms = dict.fromkeys(RULES, 0)
    for _ in range(years):
        ref = Sample.of(scores(rng, REFERENCE_ROWS))
        seen = dict.fromkeys(RULES, False)
        for _ in range(CHECKS):
            look = Look.of(ref, Sample.of(scores(rng, size)))
            for name, rule in RULES.items():
                if rule(look):
                    alarms[name] += 1
                    seen[name] = True
        for name in RULES:
            any_alarm[name] += seen[name]
    return {n: (any_alarm[n], alarms[n] / years) for n in RULES}


def detection(runs: int, size: int, slang: float, seed: int) -> dict[str, tuple[float, float]]:
    """Per rule: P(detected within 7 daily checks of the shift), median checks to detect."""
    rng = np.random.default_rng(seed)
    within = dict.fromkeys(RULES, 0)
    delays: dict[str, list[int]] = {n: [] for n in RULES}
    for _ in range(runs):
        ref = Sample.of(scores(rng, REFERENCE_ROWS))
        found: dict[str, int] = {}
        for day in range(1, 31):
            look = Look.of(ref, Sample.of(scores(rng, size, slang)))
            for name, rule in RULES.items():
                if name not in found and rule(look):
                    found[name] = day
            if len(found) == len(RULES):
                break
        for name in RULES:
            day = found.get(name, 31)
            delays[name].append(day)
            within[name] += day <= 7
    return {n: (within[n] / runs, float(np.median(delays[n]))) for n in RULES}


def paired_no_shift(years: int, size: int, seed: int) -> dict[str, tuple[int, float]]:
    """Score deltas of two versions on the same requests, today's window against yesterday's."""
    rng = np.random.default_rng(seed)

    def deltas() -> Sample:
        agree = rng.random(size) < 0.9
        return Sample.of(np.where(agree, rng.normal(0, 0.02, size), rng.normal(0, 0.3, size)))

    rules: dict[str, Rule] = {
        "turnout": lambda x: x.ks_p < LEVEL and x.wasserstein >= 0.02,
        "ks_0.05": RULES["ks_0.05"],
    }
    any_alarm = dict.fromkeys(rules, 0)
    alarms = dict.fromkeys(rules, 0)
    for _ in range(years):
        previous = deltas()
        seen = dict.fromkeys(rules, False)
        for _ in range(CHECKS):
            today = deltas()
            look = Look.of(previous, today)
            for name, rule in rules.items():
                if rule(look):
                    alarms[name] += 1
                    seen[name] = True
            previous = today
        for name in rules:
            any_alarm[name] += seen[name]
    return {n: (any_alarm[n], alarms[n] / years) for n in rules}


def evidently_no_shift(runs: int, default_runs: int, size: int) -> None:
    from router.core.settings import Settings
    from router.drift.inputs import check_inputs, evidently_installed

    if not evidently_installed():
        print("  input drift: Evidently is not installed (pip install 'turnout[drift]')")
        return
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    with Settings().dataset.open(newline="", encoding="utf-8") as fh:
        texts = [row["tweet"] for row in csv.DictReader(fh)]
    rng = random.Random(7)
    ours = 0
    aucs = []
    for _ in range(runs):
        picked = rng.sample(texts, 2 * size)
        result = check_inputs(
            [{"text": t} for t in picked[:size]],
            [{"text": t} for t in picked[size:]],
            LEVEL,
            0.6,
            100,
            size,
            None,
        )
        ours += result.drift
        aucs.append(result.statistic or 0.0)
    print(
        f"  turnout (AUC > {result.threshold:.3f}, {size}+{size} tweets): {ours}/{runs} false "
        f"alarms; AUC mean {np.mean(aucs):.3f}, max {max(aucs):.3f}"
    )
    definition = DataDefinition(text_columns=["text"])
    defaults = 0
    started = time.perf_counter()
    for _ in range(default_runs):
        picked = rng.sample(texts, 2 * size)
        snapshot = Report([DataDriftPreset()]).run(
            current_data=Dataset.from_pandas(
                pd.DataFrame({"text": picked[size:]}), data_definition=definition
            ),
            reference_data=Dataset.from_pandas(
                pd.DataFrame({"text": picked[:size]}), data_definition=definition
            ),
        )
        count = snapshot.dict()["metrics"][0]["value"]["count"]
        defaults += count > 0
    print(
        f"  Evidently's default text test ({size}+{size}): {defaults}/{default_runs} false "
        f"alarms ({(time.perf_counter() - started) / max(1, default_runs):.1f} s a run)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer simulated years and runs")
    args = parser.parse_args()
    years = 20 if args.quick else 100
    runs = 100 if args.quick else 400
    started = time.perf_counter()
    header = (
        f"  {'per day':>8s} {'rule':16s} {'P(false alarm in a year) [95%]':>37s} {'per year':>9s}"
    )
    print(f"prediction drift, no shift: {years} simulated years of daily checks per size")
    print(header)
    for size in (200, 2000, 20000):
        for name, (k, per_year) in no_shift(years, size, seed=size).items():
            print(f"  {size:8,d} {name:16s} {interval(k, years):>37s} {per_year:9.2f}")
    print(f"prediction drift, slang replaces words in a share of positives ({runs} runs each)")
    print(
        f"  {'scores/day':>10s} {'share':>6s} {'rule':16s} {'P(found in 7 days)':>19s} "
        f"{'median days':>12s}"
    )
    for size in (200, 2000):
        for slang in (0.1, 0.3):
            for name, (p, median) in detection(runs, size, slang, seed=int(size * slang)).items():
                print(f"  {size:8,d} {slang:6.1f} {name:16s} {p:19.3f} {median:12.1f}")
    print(f"paired (score deltas on mirrored requests), no shift, {years} years of daily checks")
    print(header)
    for size in (500, 5000):
        for name, (k, per_year) in paired_no_shift(years, size, seed=size + 1).items():
            print(f"  {size:8,d} {name:16s} {interval(k, years):>37s} {per_year:9.2f}")
    print("input drift (Evidently's text domain classifier), random splits of real tweets")
    evidently_no_shift(20 if args.quick else 100, 3 if args.quick else 10, 500)
    print(f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
