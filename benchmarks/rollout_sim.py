"""Rollout gates on production-like traffic: Turnout's per-user analysis against today's
per-request analysis, both with the same decision code on the same traffic.

A simulated clock and synthetic traffic; no server, no Redis. Both methods are
``router.rollout.gates.decide`` on the experiment below: once as written (``sticky: user_id``:
the gates analyse by user, the unit of randomization: delta method, SRM on users, label-arrival
check) and once without ``sticky`` (every request its own unit). Both see the same requests,
users and outcomes; each keeps its own rollout state and windows. (The Flagger-style and naive
baselines of the previous version are gone: they doubled the cost and answer another question.)

Traffic, drawn per look interval with numpy:

- 200 requests per second from 200,000 users; each request picks a user with probability
  proportional to the user's activity, drawn from a Pareto with shape ``tail`` (1.05: a few batch
  clients send a large share of the traffic; 3.0: light tail); ``iid``: every request is a new
  user. A rollout sees tens of thousands of users per window.
- Sticky assignment: every user draws ``u`` once and is on the candidate while
  ``u < candidate percent``: ramps only move users from the control to the candidate.
- Correlated outcomes: every user has an error propensity (mean 1%), a reward propensity (mean
  0.9) and a label propensity (mean 0.5), each from a Beta with concentration 4; a request fails,
  earns reward 1 (else 0) and gets a label with its user's propensities. A worse candidate adds
  its effect to every user's own propensity; both arms share one uniform per request, so an A/A
  candidate sees identical outcomes.
- Late labels: a label arrives a lognormal delay after its request (median 1 min, mean about
  2 min, p99 about 16 min). As in the controller, a label is folded into the per-user reward
  sums (``reward_users``) once it has arrived and its request's slot is at most the reward
  gate's last slot (``matured``); ``feedback`` holds the same labels, lumped under that slot (the
  gates read no later slot, so labels on younger requests are left out).

Rollout choices, for a tractable run: steps start at 5% (at 200 req/s a 1% step sends 2 req/s
to the candidate and spends its whole ``max_interval`` waiting) and ``max_interval`` is 1 h; a
look every 60 s (the driver checks every 2 s; fewer looks give noise fewer chances), every 5 s in
the SRM cases (a 60 s look adds up to 11,000 users to a window, too coarse for "within 20,000
users"); a paused
rollout keeps being looked at (a failing gate still acts) until the 2 h horizon. A window starts
afresh at every step. The SRM test runs with ``action: halt``; after a halt the run goes on under
the same file with ``action: warn`` (the same test, no halt), so one run measures both the SRM
test and the gates. Gates, alpha, ``min_samples`` and label delay are the previous version's.

Cases (run ``i`` uses ``numpy.random.default_rng(i)``; the same seeds for every case and tail):

- A/A: false rollbacks (goal <= alpha) and SRM false halts (goal <= p) over the whole rollout.
- bad reward (-2 points), bad errors (+1 point): rolled back within 20,000 candidate users
  (distinct users ever on the candidate; the run stops there).
- real SRM: 1 point of users moved from the candidate to the control (4/96 at the 5% step, 49/51
  at the 50% step), the step held: halted within 20,000 users in the window?
- labels 20% rarer on the candidate (A/A otherwise): is the reward gate ever held because labels
  reach the arms unevenly? The per-request analysis has no such check (its run is not continued).

    python -m benchmarks.rollout_sim                 # 60 A/A runs, 30 per other case, per tail
    python -m benchmarks.rollout_sim --quick         # 4 runs, two tails: a smoke run (< 1 min)
    python -m benchmarks.rollout_sim --aa-runs 200 --runs 100 --workers 2
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

import numpy as np
import numpy.typing as npt

from router.config.experiments import Experiment
from router.config.loader import parse_experiment
from router.reports.units import UnitSums
from router.rollout.gates import Evaluation, Look, decide
from router.rollout.state import RolloutState, fingerprint, step_percent
from router.rollout.window import ArmWindow

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]

RATE = 200.0
"""Requests per second, both arms together."""
USERS = 200_000
LOOK = 60.0
"""Seconds between two looks."""
SRM_LOOK = 5.0
"""Seconds between two looks in the SRM cases (a look adds up to 11,000 users to a window)."""
SLOT = 10.0
"""The controller's request time slot (``rollout_slot_seconds``)."""
LABEL_DELAY = 300.0
"""The reward gate's ``label_delay`` (5m below)."""
HORIZON = 2 * 3600.0
"""A rollout still undecided after this long counts as neither rolled back nor promoted."""
USER_CAP = 20_000
CONTROL_ERRORS = 0.01
CONTROL_REWARD = 0.90
LABEL_SHARE = 0.5
CONCENTRATION = 4.0
"""Beta concentration of the per-user propensities (smaller: users differ more)."""
DELAY_MEDIAN = 60.0
DELAY_SIGMA = 1.2
IID_POOL = 100_000
"""iid: propensities of new users are drawn from this many draws of the Betas."""
TAILS: tuple[float | None, ...] = (1.05, 1.2, 1.5, 3.0, None)
"""Pareto shapes of user activity; None: every request a new user."""
CONTROL, CANDIDATE = "v1", "v2"
HELD = "labels reach the arms unevenly"

EXPERIMENT = """\
name: sim
model: m
control: v1
variants:
  v1: {url: "http://127.0.0.1:8101"}
  v2: {url: "http://127.0.0.1:8102"}
policy: {kind: canary, weights: {v1: 100, v2: 0}, sticky: user_id}
rollout:
  candidate: v2
  steps: [5, 25, 50, 100]
  interval: 10m
  max_interval: 1h
  min_samples: 500
  gates:
    - {metric: error_rate, max_increase: 0.005}
    - {metric: reward, max_decrease: 0.01, label_delay: 5m}
  alpha: 0.05
  on_fail: rollback
  on_inconclusive: pause
  on_success: promote
srm: {action: halt, p: 0.001}
"""


@dataclass(frozen=True)
class Method:
    name: str
    halting: Experiment
    watching: Experiment
    """The same experiment with ``srm: action: warn``: the gates' decision after a halt."""


@cache
def methods() -> tuple[Method, Method]:
    """Today's per-request analysis (no sticky key in the file), then Turnout's per user."""

    def parse(text: str) -> Experiment:
        return parse_experiment(text, Path("sim.yaml")).experiment

    def method(name: str, text: str) -> Method:
        return Method(name, parse(text), parse(text.replace("action: halt", "action: warn")))

    return (
        method("per request", EXPERIMENT.replace(", sticky: user_id", "")),
        method("per user", EXPERIMENT),
    )


@dataclass(frozen=True)
class Case:
    name: str
    errors: float = 0.0
    """Added to every user's error propensity on the candidate."""
    reward: float = 0.0
    """Added to every user's reward propensity on the candidate."""
    labels: float = 1.0
    """Factor on every user's label propensity on the candidate."""
    moved: float = 0.0
    """Percentage points of users the assignment moves from the candidate to the control."""
    step: int = 0
    """The step the rollout starts at."""
    look: float = LOOK
    """Seconds between two looks."""

    @property
    def srm_only(self) -> bool:
        return self.moved > 0

    @property
    def bad(self) -> bool:
        return self.errors > 0 or self.reward < 0


AA = Case("A/A")
BAD_REWARD = Case("bad reward (-2 points)", reward=-0.02)
BAD_ERRORS = Case("bad errors (+1 point)", errors=0.01)
SRM_5 = Case("real SRM at the 5% step (4/96)", moved=1.0, step=0, look=SRM_LOOK)
SRM_50 = Case("real SRM at the 50% step (49/51)", moved=1.0, step=2, look=SRM_LOOK)
RARE_LABELS = Case("labels 20% rarer on the candidate", labels=0.8)
CASES = (AA, BAD_REWARD, BAD_ERRORS, SRM_5, SRM_50, RARE_LABELS)


def _propensity(rng: np.random.Generator, mean: float, size: int) -> Floats:
    return rng.beta(CONCENTRATION * mean, CONCENTRATION * (1.0 - mean), size)


@dataclass(frozen=True)
class Batch:
    """One look interval's requests; each arm's outcomes come from the same uniforms."""

    slot: Ints
    users: Ints
    u: Floats
    failed: tuple[Bools, Bools]
    reward: tuple[Floats, Floats]
    labelled: tuple[Bools, Bools]
    arrival: Floats


class Population:
    """The run's users (or none: ``iid``) and the requests they send."""

    def __init__(self, rng: np.random.Generator, tail: float | None, case: Case) -> None:
        self.rng, self.case, self.iid = rng, case, tail is None
        size = IID_POOL if tail is None else USERS
        activity = rng.pareto(tail, size) + 1.0 if tail else np.ones(size)
        self.cdf = np.cumsum(activity) / activity.sum()
        self.u = rng.random(size)
        self.errors = _propensity(rng, CONTROL_ERRORS, size)
        self.rewards = _propensity(rng, CONTROL_REWARD, size)
        self.labels = _propensity(rng, LABEL_SHARE, size)
        self.next_user = 0

    def batch(self, start: float) -> Batch:
        """The requests of the look interval that starts at ``start``."""
        rng, case = self.rng, self.case
        n = int(rng.poisson(RATE * case.look))
        ts = start + rng.random(n) * case.look
        if self.iid:  # a new user per request, its propensities drawn from a pool (faster)
            users = np.arange(self.next_user, self.next_user + n, dtype=np.int64)
            self.next_user += n
            u, drawn = rng.random(n), rng.integers(0, IID_POOL, n)
            errors, rewards, labels = self.errors[drawn], self.rewards[drawn], self.labels[drawn]
        else:
            # sorted draws: a faster search, and requests grouped by user (order carries no meaning)
            users = np.minimum(np.searchsorted(self.cdf, np.sort(rng.random(n))), USERS - 1)
            u, errors = self.u[users], self.errors[users]
            rewards, labels = self.rewards[users], self.labels[users]
        draw = rng.random((3, n))
        failed = draw[0] < errors
        earned = draw[1] < rewards
        labelled = draw[2] < labels
        return Batch(
            slot=(ts // SLOT).astype(np.int64),
            users=users,
            u=u,
            failed=(failed, draw[0] < errors + case.errors if case.errors else failed),
            reward=(
                earned.astype(np.float64),
                (draw[1] < rewards + case.reward if case.reward else earned).astype(np.float64),
            ),
            labelled=(labelled, draw[2] < labels * case.labels if case.labels != 1 else labelled),
            arrival=ts + rng.lognormal(math.log(DELAY_MEDIAN), DELAY_SIGMA, n),
        )


def _pick(pair: tuple[npt.NDArray[np.generic], npt.NDArray[np.generic]], on: Bools) -> Floats:
    if pair[0] is pair[1]:
        return pair[0].astype(np.float64)
    return np.where(on, pair[1], pair[0]).astype(np.float64)


class UnitTally:
    """Each arm's ``UnitSums`` of one window, kept up to date as the users' (n_i, y_i) grow."""

    def __init__(self, iid: bool) -> None:
        self.sums = np.zeros((2, 6))
        self.iid = iid
        self.n = np.zeros(0 if iid else USERS)
        self.y = np.zeros(0 if iid else USERS)

    def add(self, users: Ints, on_candidate: Bools, y: Floats) -> None:
        """Observations (a request and its failure, or a label and its reward) of ``users``."""
        if self.iid:  # every observation is its own user
            ones = np.ones_like(y)
            rows, candidate = np.stack([ones, ones, y, ones, y * y, y]), on_candidate
        elif len(users) == 0:
            return
        else:
            if np.any(users[1:] < users[:-1]):
                order = np.argsort(users, kind="stable")
                users, on_candidate, y = users[order], on_candidate[order], y[order]
            starts = np.flatnonzero(np.concatenate([[True], users[1:] != users[:-1]]))
            unique = users[starts]
            candidate = on_candidate[starts]  # a user keeps its arm within a window
            dn = np.diff(np.append(starts, len(users))).astype(np.float64)
            dy = np.add.reduceat(y, starts)
            old_n, old_y = self.n[unique], self.y[unique]
            new_n, new_y = old_n + dn, old_y + dy
            self.n[unique], self.y[unique] = new_n, new_y
            rows = np.stack(
                [
                    (old_n == 0).astype(np.float64),
                    dn,
                    dy,
                    new_n * new_n - old_n * old_n,
                    new_y * new_y - old_y * old_y,
                    new_n * new_y - old_n * old_y,
                ]
            )
        on = rows @ candidate.astype(np.float64)
        self.sums[1] += on
        self.sums[0] += rows.sum(axis=1) - on

    def arm(self, index: int) -> UnitSums:
        k, n, y, nn, yy, ny = (float(v) for v in self.sums[index])
        return UnitSums(int(k), n, y, nn, yy, ny)

    @property
    def units(self) -> int:
        return int(self.sums[:, 0].sum())


@dataclass(frozen=True)
class Labels:
    """Labels on one window's requests."""

    slot: Ints
    arrival: Floats
    users: Ints
    on_candidate: Bools
    reward: Floats

    def take(self, keep: Ints | Bools) -> Labels:
        return Labels(
            self.slot[keep],
            self.arrival[keep],
            self.users[keep],
            self.on_candidate[keep],
            self.reward[keep],
        )


LABEL_FIELDS = ("slot", "arrival", "users", "on_candidate", "reward")
NO_LABELS = Labels(
    np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.int64), np.zeros(0, np.bool_), np.zeros(0)
)


def _look_index(times: Floats, look: float) -> Ints:
    """The first look (``now = k * look``) at or after each time."""
    return np.ceil(times / look).astype(np.int64)


class LabelQueue:
    """Labels waiting to be folded into the per-user reward sums, by the look that folds them:
    the first at which the label has arrived and its request's slot has matured."""

    def __init__(self, look: float) -> None:
        self.look = look
        self.due: dict[int, list[Labels]] = {}

    def push(self, labels: Labels) -> None:
        matures = (labels.slot + 1) * SLOT + LABEL_DELAY  # the reward gate's last slot reaches it
        due = _look_index(np.maximum(labels.arrival, matures), self.look)
        order = np.argsort(due, kind="stable")
        starts = np.flatnonzero(np.concatenate([[True], np.diff(due[order]) != 0]))
        for chunk in np.split(order, starts[1:]):
            if len(chunk):
                self.due.setdefault(int(due[chunk[0]]), []).append(labels.take(chunk))

    def pop(self, now: float, matured: int) -> Labels:
        """The labels folded at the look at ``now``."""
        look = round(now / self.look)
        ready = [NO_LABELS]
        for labels in self.due.pop(look, []):
            on_time = (labels.arrival <= now) & (labels.slot <= matured)
            ready.append(labels.take(on_time))
            if not on_time.all():  # rounding at a bucket's edge: the next look
                self.due.setdefault(look + 1, []).append(labels.take(~on_time))
        return Labels(
            *(np.concatenate([getattr(part, name) for part in ready]) for name in LABEL_FIELDS)
        )


def _by_arm(values: Floats, on_candidate: Bools) -> tuple[float, float]:
    candidate = float(values[on_candidate].sum())
    return float(values.sum()) - candidate, candidate


class Window:
    """One step's counters, as the recorder and the feedback path would have written them."""

    def __init__(self, share: float, iid: bool, look: float) -> None:
        self.share = share
        self.assigned = np.zeros(2)
        self.failed = np.zeros(2)
        self.users = UnitTally(iid)
        self.reward_users = UnitTally(iid)
        self.folded = np.zeros((2, 2))
        """Per arm: labels and reward sum on requests in matured slots (in ``reward_users``)."""
        self.queue = LabelQueue(look)

    def add(self, batch: Batch) -> Bools:
        """The look interval's requests; returns which went to the candidate."""
        on = batch.u < self.share
        failed = _pick(batch.failed, on)
        self.assigned += _by_arm(np.ones(len(on)), on)
        self.failed += _by_arm(failed, on)
        self.users.add(batch.users, on, failed)
        labelled = _pick(batch.labelled, on) > 0
        self.queue.push(
            Labels(
                batch.slot[labelled],
                batch.arrival[labelled],
                batch.users[labelled],
                on[labelled],
                _pick(batch.reward, on)[labelled],
            )
        )
        return on

    def look(self, now: float) -> tuple[dict[str, ArmWindow], int]:
        """The arms' windows at ``now`` and the matured slot (the reward gate's last slot).

        ``feedback`` holds the folded labels under the matured slot: the gates read no later
        slot, so labels that arrived on younger requests are left out."""
        matured = int((now - LABEL_DELAY) // SLOT) - 1
        labels = self.queue.pop(now, matured)
        on = labels.on_candidate
        self.reward_users.add(labels.users, on, labels.reward)
        self.folded[:, 0] += _by_arm(np.ones(len(on)), on)
        self.folded[:, 1] += _by_arm(labels.reward, on)
        arms = {}
        for index, name in enumerate((CONTROL, CANDIDATE)):
            count, total = self.folded[index]
            arms[name] = ArmWindow(
                assigned=int(self.assigned[index]),
                failed=int(self.failed[index]),
                feedback={matured: (int(count), float(total), float(total))},
                users=self.users.arm(index),
                reward_users=self.reward_users.arm(index),
            )
        return arms, matured


@dataclass
class Outcome:
    """What one method did in one run."""

    rolled_back: bool = False
    promoted: bool = False
    halted_users: int | None = None
    """Users in the window at the first SRM halt (None: never halted)."""
    held: bool = False
    """The reward gate was held at least once because labels reached the arms unevenly."""
    candidate_users: int = 0
    """Distinct users ever on the candidate."""
    candidate_requests: int = 0
    window_users: int = 0
    seconds: float = 0.0


def _held(evaluation: Evaluation) -> bool:
    return any(
        g.gate == "reward" and g.verdict == "inconclusive" and HELD in g.detail
        for g in evaluation.gates
    )


class Driver:
    """One method's rollout over the run's traffic: the controller's loop, without Redis."""

    def __init__(self, method: Method, case: Case, iid: bool) -> None:
        self.method, self.case, self.iid = method, case, iid
        fresh = RolloutState(fingerprint=fingerprint(method.halting), window=1)
        self.state = replace(fresh, step=case.step)
        self.window = Window(self._share(), iid, case.look)
        self.ever_candidate = np.zeros(0 if iid else USERS, dtype=np.bool_)
        self.outcome = Outcome()
        self.done = False

    def _share(self) -> float:
        percent = step_percent(self.method.halting, self.state.step)
        return max(0.0, percent - self.case.moved) / 100.0

    def observe(self, batch: Batch, now: float) -> None:
        on = self.window.add(batch)
        self._count_candidate(batch.users[on])
        arms, matured = self.window.look(now)
        look = Look(arms, now, SLOT, matured=matured)
        outcome = self.outcome
        outcome.seconds, outcome.window_users = now, self.window.users.units
        evaluation = decide(self.method.halting, self.state, look)
        if evaluation.action == "halt":
            if outcome.halted_users is None:
                outcome.halted_users = outcome.window_users
            evaluation = decide(self.method.watching, self.state, look)
        outcome.held = outcome.held or _held(evaluation)
        if not self.case.srm_only:  # an SRM case holds the step: only the SRM test counts
            self._act(evaluation, now)
        self.done = self._finished()

    def _count_candidate(self, users: Ints) -> None:
        self.outcome.candidate_requests += len(users)
        if self.iid:
            self.outcome.candidate_users += len(users)
            return
        fresh = np.unique(users[~self.ever_candidate[users]])
        self.outcome.candidate_users += len(fresh)
        self.ever_candidate[fresh] = True

    def _act(self, evaluation: Evaluation, now: float) -> None:
        action, state = evaluation.action, self.state
        if action == "rollback":
            self.outcome.rolled_back = True
        elif action in ("promote", "complete"):
            self.outcome.promoted = True
        elif action == "advance":
            self.state = replace(
                state, step=state.step + 1, step_started=now, window=state.window + 1
            )
            self.window = Window(self._share(), self.iid, self.case.look)
        elif action == "pause":
            self.state = replace(state, phase="paused")

    def _finished(self) -> bool:
        outcome, case = self.outcome, self.case
        if outcome.rolled_back or outcome.promoted:
            return True
        if case.srm_only:
            return outcome.halted_users is not None or outcome.window_users >= USER_CAP
        if case.bad:
            return outcome.candidate_users > USER_CAP
        if case.labels != 1.0:  # only the per-user analysis checks how labels arrive
            return outcome.held or self.method.halting.analysis_unit == "request"
        return False


def simulate(case: Case, tail: float | None, rng: np.random.Generator) -> tuple[Outcome, ...]:
    """One run: the same traffic to each method, until every method is done or ``HORIZON``."""
    population = Population(rng, tail, case)
    drivers = [Driver(method, case, population.iid) for method in methods()]
    now = 0.0
    while now < HORIZON and not all(d.done for d in drivers):
        batch = population.batch(now)
        now += case.look
        for driver in drivers:
            if not driver.done:
                driver.observe(batch, now)
    return tuple(d.outcome for d in drivers)


Job = tuple[int, float | None, int]
"""Case index, tail, seed (the run index)."""


def _job(job: Job) -> tuple[Job, tuple[Outcome, ...]]:
    case, tail, seed = job
    return job, simulate(CASES[case], tail, np.random.default_rng(seed))


Results = dict[tuple[str, float | None], list[tuple[Outcome, ...]]]


def jobs(aa_runs: int, runs: int, tails: Sequence[float | None]) -> list[Job]:
    """Every (case, tail, seed), the long A/A rollouts first."""
    return [
        (index, tail, seed)
        for index, case in enumerate(CASES)
        for tail in tails
        for seed in range(aa_runs if case is AA else runs)
    ]


def run_all(todo: list[Job], workers: int) -> Results:
    results: Results = {}
    started = time.perf_counter()
    with multiprocessing.Pool(workers) as pool:
        for done, ((case, tail, _), outcomes) in enumerate(pool.imap(_job, todo), 1):
            results.setdefault((CASES[case].name, tail), []).append(outcomes)
            if done % max(1, len(todo) // 20) == 0:
                elapsed = time.perf_counter() - started
                print(f"  {done}/{len(todo)} runs, {elapsed:.0f} s", file=sys.stderr, flush=True)
    return results


def share(hits: int, n: int) -> str:
    return f"{hits}/{n} = {hits / n:.3f}" if n else "-"


def median(values: Sequence[float]) -> str:
    return f"{statistics.median(values):,.0f}" if values else "-"


Cell = Callable[[list[Outcome], Method], str]


def false_rollback(outcomes: list[Outcome], _: Method) -> str:
    return share(sum(o.rolled_back for o in outcomes), len(outcomes))


def false_halt(outcomes: list[Outcome], _: Method) -> str:
    return share(sum(o.halted_users is not None for o in outcomes), len(outcomes))


def promoted(outcomes: list[Outcome], _: Method) -> str:
    hours = [o.seconds / 3600 for o in outcomes if o.promoted]
    done = share(len(hours), len(outcomes))
    return f"{done}; median {statistics.median(hours):.1f} h" if hours else done


def srm_detected(outcomes: list[Outcome], _: Method) -> str:
    users = [o.halted_users for o in outcomes if o.halted_users is not None]
    within = [u for u in users if u <= USER_CAP]
    return f"{share(len(within), len(outcomes))}; median {median(within)} users"


def caught(outcomes: list[Outcome], _: Method) -> str:
    hits = [o for o in outcomes if o.rolled_back and o.candidate_users <= USER_CAP]
    users = median([o.candidate_users for o in hits])
    requests = median([o.candidate_requests for o in hits])
    return f"{share(len(hits), len(outcomes))}; median {users} users, {requests} req"


def held(outcomes: list[Outcome], method: Method) -> str:
    hits = share(sum(o.held for o in outcomes), len(outcomes))
    return hits if method.halting.analysis_unit == "user" else f"{hits} (no such check)"


ROWS: tuple[tuple[str, Case, Cell, str], ...] = (
    ("A/A false rollback", AA, false_rollback, "<= 0.05"),
    ("A/A SRM false halt", AA, false_halt, "<= 0.001"),
    ("A/A reward gate held for label arrival (info)", AA, held, "-"),
    ("A/A promoted within the horizon (info)", AA, promoted, "-"),
    (f"{SRM_5.name}: halted within {USER_CAP:,} users", SRM_5, srm_detected, ">= 0.9"),
    (f"{SRM_50.name}: halted within {USER_CAP:,} users", SRM_50, srm_detected, ">= 0.9"),
    (
        f"{BAD_REWARD.name}: rolled back within {USER_CAP:,} cand. users",
        BAD_REWARD,
        caught,
        ">= 0.9",
    ),
    (
        f"{BAD_ERRORS.name}: rolled back within {USER_CAP:,} cand. users",
        BAD_ERRORS,
        caught,
        ">= 0.9",
    ),
    (f"{RARE_LABELS.name}: reward gate held", RARE_LABELS, held, ">= 0.9"),
)


def tail_name(tail: float | None) -> str:
    return "iid" if tail is None else f"Pareto {tail:g}"


def table(results: Results, tails: Sequence[float | None]) -> list[str]:
    both = methods()
    names = [m.name for m in both]
    lines = [
        f"| figure | tail | {names[0]} (today) | {names[1]} (Turnout) | goal |",
        "|---|---|---|---|---|",
    ]
    for figure, case, cell, goal in ROWS:
        for tail in tails:
            runs = results.get((case.name, tail), [])
            cells = [cell([r[i] for r in runs], method) for i, method in enumerate(both)]
            lines.append(f"| {figure} | {tail_name(tail)} | {cells[0]} | {cells[1]} | {goal} |")
    return lines


def parameters(aa_runs: int, runs: int, workers: int) -> str:
    experiment = methods()[1].halting
    rollout, srm = experiment.rollout, experiment.srm
    assert rollout is not None and srm is not None
    return (
        f"rollout simulation: {RATE:g} req/s from {USERS:,} users, a look every {LOOK:g} s "
        f"({SRM_LOOK:g} s in the SRM cases), "
        f"slots of {SLOT:g} s, horizon {HORIZON / 3600:g} h; control errors {CONTROL_ERRORS:g}, "
        f"reward {CONTROL_REWARD:g}, labels {LABEL_SHARE:g} (per-user Beta, concentration "
        f"{CONCENTRATION:g}); label delay lognormal (median {DELAY_MEDIAN:g} s, sigma "
        f"{DELAY_SIGMA:g}); steps {'-'.join(f'{p:g}' for p in rollout.steps)} %, interval "
        f"{rollout.interval:g} s, max_interval {rollout.max_interval or 0:g} s, min_samples "
        f"{rollout.min_samples}, alpha {rollout.alpha:g} "
        f"(gates: {', '.join(g.metric for g in rollout.gates)}), srm p {srm.p:g} ({srm.action})\n"
        f"runs: {aa_runs} A/A and {runs} per other case and tail; seeds 0..n-1 "
        f"(numpy.random.default_rng(run index)); {workers} worker processes"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: few runs, two tails")
    parser.add_argument("--aa-runs", type=int, default=60)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    tails: Sequence[float | None] = (1.2, None) if args.quick else TAILS
    aa_runs, runs = (4, 4) if args.quick else (args.aa_runs, args.runs)
    print(parameters(aa_runs, runs, args.workers))
    started = time.perf_counter()
    results = run_all(jobs(aa_runs, runs, tails), args.workers)
    print("\n".join(["", *table(results, tails), ""]))
    print(f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
