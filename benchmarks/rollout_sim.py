"""Rollout decisions under continuous monitoring: Turnout's gates against the usual checks.

A simulated clock and synthetic outcome streams; no server, no Redis. Traffic arrives at
``RATE`` requests per second, split by the step's weights; every request may fail (error rate)
and earns a 0/1 reward whose label arrives ``LABEL_DELAY`` later. Every ``LOOK`` seconds each
method looks at the same streams:

- **turnout**: the gateway's own decision code (``router.rollout.gates.decide``) on the rollout
  below: anytime-valid confidence sequences, non-inferiority to advance, evidence of harm to
  roll back, ``alpha`` split over gates and steps.
- **flagger**: Flagger-style fixed thresholds on the candidate's own last-interval metrics
  (error rate <= control's nominal rate + margin, reward >= nominal - margin), rollback after
  5 failed checks, one step per 10 minutes when the last check passed.
- **naive**: the textbook fixed-n z-test (one-sided, 0.05) of candidate vs control on the step's
  window, repeated at every look: rollback on the first significant harm, advance after the
  interval with ``min_samples`` and no harm.

Prints numbers, not pass/fail:

    python -m benchmarks.rollout_sim            # 2,000 A/A rollouts, 500 per bad/good case
    python -m benchmarks.rollout_sim --quick    # 200 and 50
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from router.config.experiments import Experiment
from router.config.loader import parse_experiment
from router.rollout.gates import Look, decide
from router.rollout.state import RolloutState, fingerprint
from router.rollout.window import ArmWindow

RATE = 500.0
"""Requests per second, both arms together."""
LOOK = 60.0
"""Seconds between two looks (the driver's check interval, a Flagger analysis interval)."""
LABEL_DELAY = 300.0
HORIZON = 12 * 3600.0
"""A rollout still undecided after this long counts as neither rolled back nor promoted."""
CONTROL_ERRORS = 0.01
CONTROL_REWARD = 0.90

ROLLOUT = """\
name: sim
model: m
control: v1
variants:
  v1: {url: "http://127.0.0.1:8101"}
  v2: {url: "http://127.0.0.1:8102"}
policy: {kind: canary, weights: {v1: 100, v2: 0}}
rollout:
  candidate: v2
  steps: [1, 5, 25, 50, 100]
  interval: 10m
  max_interval: 2h
  min_samples: 500
  gates:
    - {metric: error_rate, max_increase: 0.005}
    - {metric: reward, max_decrease: 0.01, label_delay: 5m}
  alpha: 0.05
  on_fail: rollback
  on_inconclusive: pause
  on_success: promote
"""


@dataclass(frozen=True)
class Case:
    name: str
    errors: float
    reward: float


@dataclass(frozen=True)
class Outcome:
    rolled_back: bool
    promoted: bool
    seconds: float
    candidate_requests: int
    """Requests the candidate had received when the rollout ended (or at the horizon)."""


class Streams:
    """One run's traffic: per look, per arm, requests, errors and rewards (same for all methods)."""

    def __init__(self, case: Case, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.case = case

    def draw(self, percent: float) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
        n = int(self.rng.poisson(RATE * LOOK))
        candidate = int(self.rng.binomial(n, percent / 100.0))
        control = n - candidate
        rng, case = self.rng, self.case
        return (
            (
                control,
                int(rng.binomial(control, CONTROL_ERRORS)),
                int(rng.binomial(control, CONTROL_REWARD)),
            ),
            (
                candidate,
                int(rng.binomial(candidate, case.errors)),
                int(rng.binomial(candidate, case.reward)),
            ),
        )


class Window:
    """Counters of one step's window, with rewards visible only once their label arrived."""

    def __init__(self) -> None:
        self.assigned = [0, 0]
        self.failed = [0, 0]
        self.pending: list[tuple[float, int, int, int, int]] = []
        self.labelled = [0, 0]
        self.rewards = [0, 0]

    def add(self, now: float, looked: tuple[tuple[int, int, int], tuple[int, int, int]]) -> None:
        for arm, (n, errors, _) in enumerate(looked):
            self.assigned[arm] += n
            self.failed[arm] += errors
        (n0, _, r0), (n1, _, r1) = looked
        self.pending.append((now, n0, r0, n1, r1))

    def release(self, now: float) -> None:
        while self.pending and self.pending[0][0] + LABEL_DELAY <= now - LOOK:
            _, n0, r0, n1, r1 = self.pending.pop(0)
            self.labelled[0] += n0
            self.rewards[0] += r0
            self.labelled[1] += n1
            self.rewards[1] += r1

    def arms(self) -> dict[str, ArmWindow]:
        out = {}
        for arm, name in enumerate(("v1", "v2")):
            fb = {0: (self.labelled[arm], float(self.rewards[arm]), float(self.rewards[arm]))}
            out[name] = ArmWindow(self.assigned[arm], self.failed[arm], {}, fb)
        return out


def turnout(experiment: Experiment, case: Case, seed: int) -> Outcome:
    assert experiment.rollout is not None
    steps = experiment.rollout.steps
    streams = Streams(case, seed)
    state = RolloutState(fingerprint=fingerprint(experiment), window=1)
    window = Window()
    total = 0
    now = 0.0
    while now < HORIZON:
        looked = streams.draw(steps[state.step])
        now += LOOK
        window.add(now, looked)
        total += looked[1][0]
        window.release(now)
        evaluation = decide(experiment, state, Look(window.arms(), now, LOOK))
        if evaluation.action == "rollback":
            return Outcome(True, False, now, total)
        if evaluation.action == "promote":
            return Outcome(False, True, now, total)
        if evaluation.action == "advance":
            state = replace(state, step=state.step + 1, step_started=now, window=state.window + 1)
            window = Window()
        elif evaluation.action == "pause":
            state = replace(state, phase="paused")
        else:
            state = replace(state, gates=[g.as_dict() for g in evaluation.gates])
    return Outcome(False, False, now, total)


def flagger(experiment: Experiment, case: Case, seed: int) -> Outcome:
    assert experiment.rollout is not None
    steps = experiment.rollout.steps
    streams = Streams(case, seed)
    step, failed, since, total, now = 0, 0, 0.0, 0, 0.0
    while now < HORIZON:
        _, (n, errors, rewards) = streams.draw(steps[step])
        now += LOOK
        total += n
        if steps[step] >= 100:
            return Outcome(False, True, now, total)
        ok = n > 0 and errors / n <= CONTROL_ERRORS + 0.005 and rewards / n >= CONTROL_REWARD - 0.01
        if not ok:
            failed += 1
            if failed >= 5:
                return Outcome(True, False, now, total)
        elif now - since >= experiment.rollout.interval:
            step, since = step + 1, now
    return Outcome(False, False, now, total)


def _z_harm(bad_a: int, n_a: int, bad_b: int, n_b: int) -> bool:
    """One-sided two-proportion z-test at 0.05: is arm b's rate of "bad" higher?"""
    if n_a < 2 or n_b < 2:
        return False
    p_a, p_b = bad_a / n_a, bad_b / n_b
    se = math.sqrt(p_a * (1 - p_a) / n_a + p_b * (1 - p_b) / n_b)
    return se > 0 and (p_b - p_a) / se > 1.6448536


def naive(experiment: Experiment, case: Case, seed: int) -> Outcome:
    rollout = experiment.rollout
    assert rollout is not None
    streams = Streams(case, seed)
    step, since, total, now = 0, 0.0, 0, 0.0
    window = Window()
    while now < HORIZON:
        looked = streams.draw(rollout.steps[step])
        now += LOOK
        total += looked[1][0]
        if rollout.steps[step] >= 100:
            return Outcome(False, True, now, total)
        window.add(now, looked)
        window.release(now)
        a, f, lab, rew = window.assigned, window.failed, window.labelled, window.rewards
        harm = _z_harm(f[0], a[0], f[1], a[1]) or _z_harm(
            lab[0] - rew[0], lab[0], lab[1] - rew[1], lab[1]
        )
        if harm:
            return Outcome(True, False, now, total)
        if now - since >= rollout.interval and min(a) >= rollout.min_samples:
            step, since, window = step + 1, now, Window()
    return Outcome(False, False, now, total)


METHODS: dict[str, Callable[[Experiment, Case, int], Outcome]] = {
    "turnout": turnout,
    "flagger": flagger,
    "naive": naive,
}


def _job(args: tuple[str, Case, int]) -> Outcome:
    method, case, seed = args
    experiment = parse_experiment(ROLLOUT, Path("sim.yaml")).experiment
    return METHODS[method](experiment, case, seed)


def run(method: str, case: Case, runs: int, pool: multiprocessing.pool.Pool) -> list[Outcome]:
    return pool.map(_job, [(method, case, seed) for seed in range(runs)], chunksize=8)


def median(values: list[float]) -> str:
    return f"{statistics.median(values):,.0f}" if values else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    aa_runs, other_runs = (200, 50) if args.quick else (2000, 500)
    aa = Case("A/A", CONTROL_ERRORS, CONTROL_REWARD)
    bad_reward = Case("reward -2 points", CONTROL_ERRORS, CONTROL_REWARD - 0.02)
    bad_errors = Case("errors +1 point", CONTROL_ERRORS + 0.01, CONTROL_REWARD)
    good = Case("good (reward +1 point)", CONTROL_ERRORS, CONTROL_REWARD + 0.01)
    started = time.perf_counter()
    print(
        f"rollout simulation: {RATE:g} req/s, a look every {LOOK:g} s, label delay "
        f"{LABEL_DELAY:g} s, steps 1-5-25-50-100 %, interval 10 min, max_interval 2 h, "
        f"min_samples 500, alpha 0.05; control errors {CONTROL_ERRORS:g}, reward "
        f"{CONTROL_REWARD:g}; horizon {HORIZON / 3600:g} h"
    )
    with multiprocessing.Pool() as pool:
        print(f"\nA/A, {aa_runs} rollouts: false-rollback rate (goal for turnout <= 0.05)")
        for method in METHODS:
            outcomes = run(method, aa, aa_runs, pool)
            rate = sum(o.rolled_back for o in outcomes) / len(outcomes)
            promoted = sum(o.promoted for o in outcomes) / len(outcomes)
            se = math.sqrt(rate * (1 - rate) / len(outcomes))
            print(f"  {method:8s} {rate:6.3f} (+- {se:.3f})   promoted {promoted:.3f}")
        print(
            f"\nbad candidates, {other_runs} rollouts each: P(rolled back within 20,000 candidate "
            "requests) and median candidate requests to the rollback (goal >= 0.9)"
        )
        for case in (bad_reward, bad_errors):
            for method in METHODS:
                outcomes = run(method, case, other_runs, pool)
                caught = [o for o in outcomes if o.rolled_back]
                within = sum(o.candidate_requests <= 20_000 for o in caught) / len(outcomes)
                ever = len(caught) / len(outcomes)
                print(
                    f"  {case.name:18s} {method:8s} within 20k {within:6.3f}   ever {ever:6.3f}"
                    f"   median requests {median([o.candidate_requests for o in caught])}"
                )
        print(f"\ngood candidate, {other_runs} rollouts: time to 100% (promotion)")
        for method in METHODS:
            outcomes = run(method, good, other_runs, pool)
            done = [o.seconds / 60 for o in outcomes if o.promoted]
            rolled = sum(o.rolled_back for o in outcomes) / len(outcomes)
            print(
                f"  {method:8s} promoted {len(done) / len(outcomes):6.3f}   median "
                f"{statistics.median(done) if done else float('nan'):6.1f} min   p90 "
                f"{float(np.percentile(done, 90)) if done else float('nan'):6.1f} min   "
                f"rolled back {rolled:.3f}"
            )
    print(f"\n({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
