"""Does regression adjustment (CUPAC) earn its place in Turnout's rollout gates? A simulation of
the reward gate, per user, with and without a pre-routing covariate, on the same traffic.

The question (the issue): ship CUPAC only if it reaches a rollback decision with at least 20%
fewer candidate users at a false-alarm rate no higher than the plain analysis. Both analyses
use Turnout's own code for the decision: ``router.reports.units.UnitSums`` (delta-method
variance of a ratio of per-user sums), ``router.rollout.sequential.unit_estimate`` (with its
per-request floor) and ``estimate_difference_cs`` (the anytime-valid confidence sequence whose
radius counts users), at the reward gate's alpha (0.05 / 6: two gates, three compared steps).

Traffic (as in ``benchmarks/rollout_sim.py``, without its clock, ramps and SRM test):

- 200,000 users; a request picks a user with probability proportional to the user's activity,
  a Pareto with shape ``tail`` (1.2: a few users send much of the traffic; 3: light tail);
  ``iid``: every request is a new user. Sticky assignment: a user draws ``u`` once and is on the
  candidate while ``u < share`` (default 0.5, the 50% step: a population of 100,000 candidate
  users, enough for the 20,000-user budget and beyond).
- Every user has a reward propensity ``p`` (Beta, mean 0.9, concentration 4) and a label
  propensity (Beta, mean 0.5, concentration 4). The metric is the reward gate's: mean reward
  over labelled requests, a ratio of per-user sums ``sum(y_i) / sum(n_i)``. A worse candidate
  subtracts 2 points from every user's ``p``.
- Labels are folded at the look after they arrive. ``--label-delay 0`` (the default): at once,
  so the counts measure what the statistic needs; a delay (lognormal, sigma 1.2, at 200 req/s,
  the delays of rollout_sim) adds the same time to both analyses, hence the same users, and only
  dilutes the percentage. The gate's 5-minute maturity rule is left out for the same reason.

The covariate, per request, drawn before routing and identically for both arms. A latent
"difficulty" ``z = sqrt(w) a_user + sqrt(1 - w) b_request`` (standard normal) drives it:

- ``a_user`` correlates ``user_rho`` with the user's propensity (normal scores, negatively:
  users with hard requests earn less); ``w`` is the share of the covariate's variance that is
  per user;
- ``b_request`` correlates ``request_rho`` with the request's outcome through a Gaussian copula:
  the request earns reward 1 iff ``eps < Phi^-1(p)`` with ``eps = request_rho b + sqrt(1 -
  request_rho^2) e``. ``eps`` is standard normal whatever the covariate, so every user's
  propensity, and the candidate's 2-point loss, hold exactly.
- the candidate's outcome uses ``agreement eps + sqrt(1 - agreement^2) e'``: ``agreement < 1``
  is a candidate whose errors the control's score predicts less well (default 1: as well).

Three covariates, their parameters chosen for a request-level correlation in the issue's ranges
(the script prints the realized correlations; the one that matters for the variance is the
per-user one, between the residuals ``y_i - R n_i`` and ``x_i - xbar n_i``):

- input length: log tokens, ``log 300 + z`` (request_rho 0.4, user_rho 0.3, w 0.5): longer
  inputs fail a little more often; users have a typical length. Correlation about -0.2.
- the control's score with the candidate shadowed: a confidence ``Phi(2.31 - 1.5 z)`` (mean
  about 0.9; request_rho 0.9, user_rho 0.7, w 0.3): a strong predictor of a correct prediction.
  Correlation about 0.6. It exists only when the control also scores every candidate request.
  Its user part (``user_rho`` 0.7) is what helps with heavy users: a heavy user's mean score
  tracks the user's own propensity.
- the same score with no user part (request_rho 0.97, user_rho 0, w 0): it predicts a request's
  outcome given its user, not which users do well. Correlation about 0.5 (near the most a
  per-request covariate can reach here: a fifth of the reward's variance is between users).

CUPAC for a ratio metric (standard per-user regression adjustment of the numerator):
``y~_i = y_i - theta (x_i - xbar n_i)`` with ``xbar`` the pooled covariate mean per labelled
request over both arms and ``theta = sum_arms sum_i (y_i - R_arm n_i)(x_i - xbar n_i) /
sum_arms sum_i (x_i - xbar n_i)^2`` (pooled over the arms, residuals within each arm, so the
treatment effect does not leak into ``theta``). The adjusted arm is again a ``UnitSums`` (its
five sums follow from the covariate sums), so the delta method, the per-request floor (on the
adjusted per-request values) and the confidence sequence are the production ones, unchanged.
``theta`` and ``xbar`` are re-estimated at every look; the A/A runs show what that costs.

Measurements, per tail and covariate (run ``i`` uses ``numpy.random.default_rng(i)``; the same
traffic for both analyses):

- bad candidate (-2 points): distinct candidate users routed by the look at which the upper bound
  of (candidate - control) first drops below 0 (the gate's rollback), a look every 500 requests
  once both arms have 500 rewards (``min_samples``). Runs go on to twice the budget so that
  medians past it are measured; undecided runs count as infinite. (500, not 2,000: at 50% a
  2,000-request look adds about 1,000 candidate users, a fifth of a 5,000-user decision, and
  the medians would snap to that grid; the sequence is anytime-valid, so finer looks cost no
  false alarms. ``--look 2000`` for the coarser grid.)
  CUPAC/plain comes with a 90% bootstrap interval (runs resampled in pairs; seeded).
- A/A: whether the sequence excludes 0 at any look (a false decision either way) before the
  candidate has 20,000 users, at the gate's alpha and at 0.05 (more resolution).

Verdict per covariate: "ships" only if, in every tail, CUPAC's median is at least 20% below the
plain median and its A/A false-decision rate is no higher than the plain rate or than alpha
(alpha's share of the runs, rounded up to a whole run; at both alphas); the number reported is
the smallest reduction over the tails. A median past the horizon makes the ratio a bound
(taken at its value); a tail where neither median is within the horizon has no ratio: it is
listed, with both shares rolled back within the budget, and left out of the smallest. (With
few runs, as in ``--quick``, the A/A condition is mostly noise.)

    python -m benchmarks.cupac_sim                  # 200 runs per cell and case, 2 processes
    python -m benchmarks.cupac_sim --quick          # 16 runs, two tails (< 40 s)
    python -m benchmarks.cupac_sim --agreement 0.8  # the candidate's errors less predictable
    python -m benchmarks.cupac_sim --tails 1.2,iid --runs 50 --look 2000 --label-delay 60
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields

import numpy as np
import numpy.typing as npt
from scipy import special

from router.reports.units import UnitSums
from router.rollout.sequential import Estimate, Moments, estimate_difference_cs, unit_estimate

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]

USERS = 200_000
IID_POOL = 100_000
"""iid: a new user per request, its propensities drawn from this many users."""
REWARD = 0.90
LABEL_SHARE = 0.5
CONCENTRATION = 4.0
"""Beta concentration of the per-user propensities (as in rollout_sim)."""
RATE = 200.0
"""Requests per second: only converts a label delay into requests."""
DELAY_SIGMA = 1.2
TAILS: tuple[float | None, ...] = (1.2, 1.5, 3.0, None)
EFFECT = -0.02
"""The bad candidate's reward, added to every user's propensity."""
ALPHA = 0.05 / 6
"""The reward gate's alpha: 0.05 split over two gates and three compared steps."""
WIDE_ALPHA = 0.05
MIN_SAMPLES = 500
"""Rewards per arm before the gate decides (the rollout's ``min_samples``)."""
BAR = 0.20
"""CUPAC ships only with at least this many fewer candidate users."""


@dataclass(frozen=True)
class Covariate:
    """A per-request covariate known before routing, from a latent difficulty ``z``."""

    name: str
    request_rho: float
    """Gaussian-copula correlation of the request part of ``z`` with the request's outcome."""
    user_rho: float
    """Correlation of the user part of ``z`` with minus the user's propensity (normal scores)."""
    user_share: float
    """Share of the variance of ``z`` that is per user."""
    transform: Callable[[Floats], Floats]
    """From ``z`` to the logged covariate."""
    centre: float
    """Subtracted before summing (conditioning only: CUPAC is invariant to a shift of x)."""


def log_length(z: Floats) -> Floats:
    """Log input length in tokens: median 300, sd 1 on the log scale; longer is harder."""
    return math.log(300.0) + z


def control_score(z: Floats) -> Floats:
    """The control's confidence in its prediction (mean about 0.9); harder, less confident."""
    return np.asarray(special.ndtr(2.31 - 1.5 * z), dtype=np.float64)


COVARIATES = (
    Covariate("input length", 0.4, 0.3, 0.5, log_length, math.log(300.0)),
    Covariate("control score (shadow)", 0.9, 0.7, 0.3, control_score, 0.9),
    Covariate("control score, per request only", 0.97, 0.0, 0.0, control_score, 0.9),
)


@dataclass(frozen=True)
class Config:
    share: float = 0.5
    look: int = 500
    """Requests (both arms) between two looks."""
    budget: int = 20_000
    """Candidate users: the A/A horizon, and "decided within" for the bad candidate."""
    agreement: float = 1.0
    label_delay: float = 0.0
    """Median label delay in seconds (0: labels at once)."""
    horizon: float = 2.0
    """Bad-candidate runs go on to this many times the budget (medians past the budget)."""

    @property
    def last(self) -> int:
        """Candidate users at which a bad-candidate run stops."""
        return int(self.budget * self.horizon)


# --- the estimators: pure functions of one arm's sums ---------------------------------------------


@dataclass(frozen=True, slots=True)
class ArmSums:
    """One arm's sums of a ratio metric ``y / n`` with a covariate ``x``.

    Per user (``n_i`` labelled requests, ``y_i`` their rewards, ``x_i`` their covariate values):
    ``k`` users and the sums of n, y, x, n^2, y^2, x^2, n y, n x, x y. Per labelled request:
    ``m`` requests and the sums of y, y^2, x, x^2, x y (for ``unit_estimate``'s floor)."""

    k: float
    n: float
    y: float
    x: float
    nn: float
    yy: float
    xx: float
    ny: float
    nx: float
    xy: float
    m: float
    ry: float
    ryy: float
    rx: float
    rxx: float
    rxy: float

    @classmethod
    def of(cls, row: Sequence[float]) -> ArmSums:
        return cls(*(float(v) for v in row))


SUMS = len(fields(ArmSums))


def plain_sums(arm: ArmSums) -> tuple[UnitSums, Moments]:
    """The reward gate's inputs as today: per-user sums and per-request moments."""
    return UnitSums(int(arm.k), arm.n, arm.y, arm.nn, arm.yy, arm.ny), Moments(
        arm.m, arm.ry, arm.ryy
    )


def pooled_mean(control: ArmSums, candidate: ArmSums) -> float:
    """``xbar``: the covariate's mean per labelled request over both arms."""
    n = control.n + candidate.n
    return (control.x + candidate.x) / n if n > 0 else 0.0


def centred(arm: ArmSums, xbar: float) -> tuple[float, float, float]:
    """``sum d_i^2``, ``sum y_i d_i`` and ``sum n_i d_i`` with ``d_i = x_i - xbar n_i``."""
    dd = arm.xx - 2.0 * xbar * arm.nx + xbar * xbar * arm.nn
    return max(0.0, dd), arm.xy - xbar * arm.ny, arm.nx - xbar * arm.nn


def cupac_theta(control: ArmSums, candidate: ArmSums, xbar: float) -> float:
    """Regression of the per-user residuals ``y_i - R n_i`` on ``x_i - xbar n_i``, pooled."""
    covariance = variance = 0.0
    for arm in (control, candidate):
        if arm.n <= 0:
            continue
        dd, yd, nd = centred(arm, xbar)
        covariance += yd - arm.y / arm.n * nd
        variance += dd
    return covariance / variance if variance > 0 else 0.0


def adjusted_sums(arm: ArmSums, theta: float, xbar: float) -> UnitSums:
    """The arm's ``UnitSums`` of ``y~_i = y_i - theta (x_i - xbar n_i)`` over the same ``n_i``."""
    dd, yd, nd = centred(arm, xbar)
    y = arm.y - theta * (arm.x - xbar * arm.n)
    yy = arm.yy - 2.0 * theta * yd + theta * theta * dd
    return UnitSums(int(arm.k), arm.n, y, arm.nn, max(0.0, yy), arm.ny - theta * nd)


def adjusted_requests(arm: ArmSums, theta: float, xbar: float) -> Moments:
    """Per-request moments of ``y~_j = y_j - theta (x_j - xbar)`` (the floor's input)."""
    dd = max(0.0, arm.rxx - 2.0 * xbar * arm.rx + xbar * xbar * arm.m)
    yd = arm.rxy - xbar * arm.ry
    total = arm.ry - theta * (arm.rx - xbar * arm.m)
    return Moments(arm.m, total, max(0.0, arm.ryy - 2.0 * theta * yd + theta * theta * dd))


def arm_estimates(
    control: ArmSums, candidate: ArmSums, cupac: bool
) -> tuple[Estimate, Estimate] | None:
    """Both arms' estimates as the reward gate makes them (``binary=False``), or None."""
    if cupac:
        xbar = pooled_mean(control, candidate)
        theta = cupac_theta(control, candidate, xbar)
        a = unit_estimate(
            adjusted_sums(control, theta, xbar), adjusted_requests(control, theta, xbar), False
        )
        b = unit_estimate(
            adjusted_sums(candidate, theta, xbar), adjusted_requests(candidate, theta, xbar), False
        )
    else:
        a, b = (
            unit_estimate(*plain_sums(control), False),
            unit_estimate(*plain_sums(candidate), False),
        )
    return None if a is None or b is None else (a, b)


def residual_correlation(control: ArmSums, candidate: ArmSums) -> float:
    """Per-user correlation of ``y_i - R_arm n_i`` with ``x_i - xbar n_i``, pooled over arms:
    CUPAC's variance is about ``1 - this^2`` times the plain one."""
    xbar = pooled_mean(control, candidate)
    covariance = ee = dd_total = 0.0
    for arm in (control, candidate):
        if arm.n <= 0:
            continue
        r = arm.y / arm.n
        dd, yd, nd = centred(arm, xbar)
        covariance += yd - r * nd
        ee += arm.yy - 2.0 * r * arm.ny + r * r * arm.nn
        dd_total += dd
    return covariance / math.sqrt(ee * dd_total) if ee > 0 and dd_total > 0 else 0.0


def request_correlation(control: ArmSums, candidate: ArmSums) -> float:
    """Correlation of the covariate with the reward over labelled requests, both arms."""
    m = control.m + candidate.m
    if m <= 0:
        return 0.0
    y, yy = (control.ry + candidate.ry) / m, (control.ryy + candidate.ryy) / m
    x, xx = (control.rx + candidate.rx) / m, (control.rxx + candidate.rxx) / m
    xy = (control.rxy + candidate.rxy) / m
    spread = (yy - y * y) * (xx - x * x)
    return (xy - x * y) / math.sqrt(spread) if spread > 0 else 0.0


# --- traffic --------------------------------------------------------------------------------------


def _beta(rng: np.random.Generator, mean: float, size: int) -> Floats:
    return rng.beta(CONCENTRATION * mean, CONCENTRATION * (1.0 - mean), size)


def normal_scores(reward: Floats) -> Floats:
    """Each propensity's standard-normal score under its Beta distribution."""
    a, b = CONCENTRATION * REWARD, CONCENTRATION * (1.0 - REWARD)
    cdf = np.clip(np.asarray(special.betainc(a, b, reward), dtype=np.float64), 1e-12, 1 - 1e-12)
    return np.asarray(special.ndtri(cdf), dtype=np.float64)


def thresholds(reward: Floats) -> Floats:
    """``Phi^-1(p)``: a request earns reward 1 iff its standard-normal ``eps`` is below it."""
    return np.asarray(special.ndtri(np.clip(reward, 0.0, 1.0)), dtype=np.float64)


@dataclass(frozen=True)
class Batch:
    """One look's requests: who went to the candidate, and the labelled requests."""

    users: Ints
    on: Bools
    labelled: Bools
    reward: Floats
    covariate: Floats
    fold: Ints
    """The look at which each request's label is folded into the sums."""


class Population:
    """The run's users (``iid``: a pool of propensities) and the requests they send."""

    def __init__(
        self,
        rng: np.random.Generator,
        tail: float | None,
        covariate: Covariate,
        effect: float,
        config: Config,
    ) -> None:
        self.rng, self.covariate, self.config, self.iid = rng, covariate, config, tail is None
        self.size = IID_POOL if tail is None else USERS
        activity = rng.pareto(tail, self.size) + 1.0 if tail else np.ones(self.size)
        self.cdf = np.cumsum(activity) / activity.sum()
        self.u = rng.random(self.size)
        reward = _beta(rng, REWARD, self.size)
        self.labels = _beta(rng, LABEL_SHARE, self.size)
        rho = covariate.user_rho
        noise = rng.standard_normal(self.size)
        self.difficulty = -rho * normal_scores(reward) + math.sqrt(1.0 - rho * rho) * noise
        self.control_q = thresholds(reward)
        self.candidate_q = thresholds(reward + effect)
        self.next_user = 0

    def batch(self, look: int) -> Batch:
        rng, cov, config = self.rng, self.covariate, self.config
        n = config.look
        if self.iid:
            drawn = rng.integers(0, self.size, n)
            users = np.arange(self.next_user, self.next_user + n, dtype=np.int64)
            self.next_user += n
            on = rng.random(n) < config.share
        else:  # sorted draws: requests grouped by user (order within a look carries no meaning)
            drawn = np.minimum(np.searchsorted(self.cdf, np.sort(rng.random(n))), self.size - 1)
            users = drawn.astype(np.int64)
            on = self.u[drawn] < config.share
        b, e = rng.standard_normal(n), rng.standard_normal(n)
        w, rho = cov.user_share, cov.request_rho
        z = math.sqrt(w) * self.difficulty[drawn] + math.sqrt(1.0 - w) * b
        eps = rho * b + math.sqrt(1.0 - rho * rho) * e
        eps_candidate = eps
        if config.agreement < 1.0:
            fresh = rng.standard_normal(n)
            eps_candidate = config.agreement * eps + math.sqrt(1 - config.agreement**2) * fresh
        earned = np.where(on, eps_candidate < self.candidate_q[drawn], eps < self.control_q[drawn])
        labelled = rng.random(n) < self.labels[drawn]
        fold = np.full(n, look, dtype=np.int64)
        if config.label_delay > 0:
            seconds = config.look / RATE
            sent = (look + rng.random(n)) * seconds
            arrival = sent + rng.lognormal(math.log(config.label_delay), DELAY_SIGMA, n)
            fold = np.maximum(look, np.ceil(arrival / seconds).astype(np.int64) - 1)
        return Batch(
            users=users,
            on=on,
            labelled=labelled,
            reward=earned.astype(np.float64),
            covariate=cov.transform(z) - cov.centre,
            fold=fold,
        )


@dataclass(frozen=True)
class Labelled:
    """Labelled requests folded at the same look."""

    users: Ints
    on: Bools
    reward: Floats
    covariate: Floats


class Tally:
    """Both arms' ``ArmSums``, kept up to date as labels are folded (sticky: a user's arm is
    fixed; ``iid``: every labelled request its own user)."""

    def __init__(self, iid: bool, size: int) -> None:
        self.iid = iid
        self.sums = np.zeros((2, SUMS))
        self.n = np.zeros(0 if iid else size)
        self.y = np.zeros(0 if iid else size)
        self.x = np.zeros(0 if iid else size)

    def add(self, users: Ints, on: Bools, y: Floats, x: Floats) -> None:
        if len(users) == 0:
            return
        if self.iid:
            one = np.ones_like(y)
            rows = np.stack([one, one, y, x, one, y * y, x * x, y, x, x * y])
            rows = np.concatenate([rows, np.stack([one, y, y * y, x, x * x, x * y])])
            candidate = on
        else:
            order = np.argsort(users, kind="stable")
            users, on, y, x = users[order], on[order], y[order], x[order]
            starts = np.flatnonzero(np.concatenate([[True], users[1:] != users[:-1]]))
            unique, candidate = users[starts], on[starts]
            dn = np.diff(np.append(starts, len(users))).astype(np.float64)
            dy, dx = np.add.reduceat(y, starts), np.add.reduceat(x, starts)
            old_n, old_y, old_x = self.n[unique], self.y[unique], self.x[unique]
            n, yi, xi = old_n + dn, old_y + dy, old_x + dx
            self.n[unique], self.y[unique], self.x[unique] = n, yi, xi
            by_user = [
                (old_n == 0).astype(np.float64),
                dn,
                dy,
                dx,
                n * n - old_n * old_n,
                yi * yi - old_y * old_y,
                xi * xi - old_x * old_x,
                n * yi - old_n * old_y,
                n * xi - old_n * old_x,
                xi * yi - old_x * old_y,
            ]
            by_request = [np.add.reduceat(v, starts) for v in (y * y, x * x, x * y)]
            rows = np.stack([*by_user, dn, dy, by_request[0], dx, by_request[1], by_request[2]])
        on_candidate = rows @ candidate.astype(np.float64)
        self.sums[1] += on_candidate
        self.sums[0] += rows.sum(axis=1) - on_candidate

    def arms(self) -> tuple[ArmSums, ArmSums]:
        return ArmSums.of(self.sums[0].tolist()), ArmSums.of(self.sums[1].tolist())


class Exposure:
    """Distinct users ever routed to the candidate."""

    def __init__(self, iid: bool, size: int) -> None:
        self.iid = iid
        self.seen = np.zeros(0 if iid else size, dtype=np.bool_)
        self.users = 0

    def add(self, users: Ints, on: Bools) -> int:
        if self.iid:
            self.users += int(on.sum())
        else:
            fresh = np.unique(users[on][~self.seen[users[on]]])
            self.seen[fresh] = True
            self.users += len(fresh)
        return self.users


# --- one run --------------------------------------------------------------------------------------


@dataclass
class Run:
    """One run of one case: per method (plain, CUPAC)."""

    users: list[float]
    """Candidate users routed by the rollback look (inf: no rollback within the horizon)."""
    analysed: list[float]
    """Candidate users in the per-user sums at that look."""
    false_gate: list[bool]
    """A/A: the sequence excluded 0 at some look, at the gate's alpha."""
    false_wide: list[bool]
    """The same at alpha 0.05."""
    request_corr: float = 0.0
    user_corr: float = 0.0
    variance_ratio: float = 1.0
    """CUPAC's variance of the difference over the plain one, at the run's last look."""


Job = tuple[int, int, bool, int, Config]
"""Tail index, covariate index, bad candidate?, seed (the run index), config."""


def simulate(job: Job) -> tuple[Job, Run]:
    tail_index, covariate_index, bad, seed, config = job
    tail = TAILS[tail_index]
    rng = np.random.default_rng(seed)
    population = Population(rng, tail, COVARIATES[covariate_index], EFFECT if bad else 0.0, config)
    tally, exposure = Tally(population.iid, population.size), Exposure(population.iid, USERS)
    queue: dict[int, list[Labelled]] = {}
    horizon = config.last if bad else config.budget
    run = Run([math.inf] * 2, [math.inf] * 2, [False] * 2, [False] * 2)
    look = 0
    while True:
        batch = population.batch(look)
        exposed = exposure.add(batch.users, batch.on)
        if exposed > horizon:
            break
        _queue(queue, batch, look)
        for part in queue.pop(look, []):
            tally.add(part.users, part.on, part.reward, part.covariate)
        control, candidate = tally.arms()
        if min(control.m, candidate.m) >= MIN_SAMPLES:
            _look(run, control, candidate, bad, exposed)
        look += 1
        if bad and all(math.isfinite(u) for u in run.users):
            break
    return job, run


def _queue(queue: dict[int, list[Labelled]], batch: Batch, look: int) -> None:
    """The labelled requests, filed under the look that folds their label."""
    for due in np.unique(batch.fold[batch.labelled]):
        at = batch.labelled & (batch.fold == due)
        part = Labelled(batch.users[at], batch.on[at], batch.reward[at], batch.covariate[at])
        queue.setdefault(max(look, int(due)), []).append(part)


def _look(run: Run, control: ArmSums, candidate: ArmSums, bad: bool, exposed: int) -> None:
    variances = []
    for index, cupac in enumerate((False, True)):
        pair = arm_estimates(control, candidate, cupac)
        if pair is None:
            return
        variances.append(pair[0].variance + pair[1].variance)
        cs = estimate_difference_cs(*pair, ALPHA)
        if bad:
            if cs.upper < 0 and math.isinf(run.users[index]):
                run.users[index], run.analysed[index] = float(exposed), candidate.k
            continue
        run.false_gate[index] |= cs.lower > 0 or cs.upper < 0
        wide = estimate_difference_cs(*pair, WIDE_ALPHA)
        run.false_wide[index] |= wide.lower > 0 or wide.upper < 0
    if not bad:
        run.request_corr = request_correlation(control, candidate)
        run.user_corr = residual_correlation(control, candidate)
        run.variance_ratio = variances[1] / variances[0] if variances[0] > 0 else 1.0


# --- driver and report ----------------------------------------------------------------------------


Key = tuple[int, int, bool]
Results = dict[Key, list[Run]]


def jobs(runs: int, tails: Sequence[int], config: Config) -> list[Job]:
    return [
        (tail, covariate, bad, seed, config)
        for tail in tails
        for covariate in range(len(COVARIATES))
        for bad in (True, False)
        for seed in range(runs)
    ]


def run_all(todo: list[Job], workers: int) -> Results:
    results: Results = {}
    started = time.perf_counter()

    def collect(done: int, job: Job, run: Run) -> None:
        results.setdefault(job[:3], []).append(run)
        if done % max(1, len(todo) // 10) == 0:
            elapsed = time.perf_counter() - started
            print(f"  {done}/{len(todo)} runs, {elapsed:.0f} s", file=sys.stderr, flush=True)

    if workers <= 1:
        for done, job in enumerate(todo, 1):
            collect(done, *simulate(job))
        return results
    with multiprocessing.Pool(workers) as pool:
        for done, (job, run) in enumerate(pool.imap_unordered(simulate, todo), 1):
            collect(done, job, run)
    return results


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.inf


def users_text(value: float, horizon: int) -> str:
    return f"{value:,.0f}" if math.isfinite(value) else f">{horizon:,}"


def share_text(hits: int, n: int) -> str:
    return f"{hits}/{n} = {hits / n:.3f}" if n else "-"


def tail_name(tail: float | None) -> str:
    return "iid" if tail is None else f"Pareto {tail:g}"


@dataclass(frozen=True)
class Cell:
    """One (tail, covariate)'s figures."""

    medians: tuple[float, float]
    within: tuple[int, int]
    bad_runs: int
    false_gate: tuple[int, int]
    false_wide: tuple[int, int]
    aa_runs: int
    analysed: tuple[float, float]
    paired: float
    """Median over runs where both rolled back of CUPAC's users over plain's."""
    request_corr: float
    user_corr: float
    variance_ratio: float
    last: int
    """Candidate users at which a bad-candidate run stops: an infinite median is past it."""
    interval: tuple[float, float] | None
    """90% bootstrap interval of CUPAC's median over plain's (None: a median is past ``last``)."""

    def ratio(self) -> tuple[float, str] | None:
        """CUPAC's median over plain's, and "<" or ">" when a median is past ``last`` (then
        the ratio is a bound, with ``last`` for that median); None if both are."""
        plain, cupac = self.medians
        if math.isinf(plain) and math.isinf(cupac):
            return None
        if math.isinf(plain):
            return cupac / self.last, "<"
        if math.isinf(cupac):
            return self.last / plain, ">"
        return cupac / plain, ""

    def held(self) -> bool:
        """CUPAC's A/A false decisions no more than plain's, or than alpha's share of the runs
        (rounded up to a whole run)."""
        gate = self.false_gate[1] <= max(self.false_gate[0], math.ceil(ALPHA * self.aa_runs))
        wide = self.false_wide[1] <= max(self.false_wide[0], math.ceil(WIDE_ALPHA * self.aa_runs))
        return gate and wide


def bootstrap_ratio(
    plain: Sequence[float], cupac: Sequence[float], last: int, draws: int = 2_000
) -> tuple[float, float]:
    """90% interval of median(cupac) / median(plain) over runs resampled in pairs (seeded);
    a run past ``last`` counts as ``last``."""
    rng = np.random.default_rng(0)
    both = np.minimum(np.array([plain, cupac], dtype=np.float64), float(last))
    picks = rng.integers(0, both.shape[1], (draws, both.shape[1]))
    ratios = np.median(both[1][picks], axis=1) / np.median(both[0][picks], axis=1)
    low, high = np.quantile(ratios, [0.05, 0.95])
    return float(low), float(high)


def cell(bad: list[Run], aa: list[Run], config: Config) -> Cell:
    budget = config.budget
    plain, cupac = [r.users[0] for r in bad], [r.users[1] for r in bad]
    finite = bad and math.isfinite(median(plain)) and math.isfinite(median(cupac))

    def per_method(pick: Callable[[Run, int], float]) -> tuple[float, float]:
        return median([pick(r, 0) for r in bad]), median([pick(r, 1) for r in bad])

    both = [r.users[1] / r.users[0] for r in bad if all(math.isfinite(u) for u in r.users)]
    within = [sum(r.users[i] <= budget for r in bad) for i in (0, 1)]
    return Cell(
        medians=per_method(lambda r, i: r.users[i]),
        within=(within[0], within[1]),
        bad_runs=len(bad),
        false_gate=(sum(r.false_gate[0] for r in aa), sum(r.false_gate[1] for r in aa)),
        false_wide=(sum(r.false_wide[0] for r in aa), sum(r.false_wide[1] for r in aa)),
        aa_runs=len(aa),
        analysed=per_method(lambda r, i: r.analysed[i]),
        paired=median(both),
        request_corr=statistics.fmean(r.request_corr for r in aa) if aa else 0.0,
        user_corr=statistics.fmean(r.user_corr for r in aa) if aa else 0.0,
        variance_ratio=statistics.fmean(r.variance_ratio for r in aa) if aa else 1.0,
        last=config.last,
        interval=bootstrap_ratio(plain, cupac, config.last) if finite else None,
    )


def cells(results: Results, tails: Sequence[int], config: Config) -> dict[tuple[int, int], Cell]:
    return {
        (t, c): cell(results.get((t, c, True), []), results.get((t, c, False), []), config)
        for t in tails
        for c in range(len(COVARIATES))
    }


def ratio_text(cell: Cell) -> str:
    ratio = cell.ratio()
    if ratio is None:
        return "-"
    text = f"{ratio[1]}{ratio[0]:.2f}"
    return (
        text if cell.interval is None else f"{text} ({cell.interval[0]:.2f}-{cell.interval[1]:.2f})"
    )


def reduction_text(cell: Cell) -> str:
    ratio = cell.ratio()
    if ratio is None:
        plain, cupac = cell.within
        return f"n/a, rolled back within the budget {plain} vs {cupac} of {cell.bad_runs}"
    bound = {"<": ">=", ">": "<=", "": ""}[ratio[1]]
    return f"{bound}{1.0 - ratio[0]:.0%}"


def tables(figures: dict[tuple[int, int], Cell], config: Config) -> list[str]:
    horizon = config.last
    budget = f"{config.budget:,}"
    lines = [
        "| tail | covariate | corr request / user | median cand. users to rollback: plain | "
        f"CUPAC | CUPAC/plain (90% bootstrap) | rolled back within {budget}: plain | CUPAC | "
        "A/A false decisions (alpha 0.05/6): plain | CUPAC |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (t, c), f in figures.items():
        lines.append(
            f"| {tail_name(TAILS[t])} | {COVARIATES[c].name} | "
            f"{f.request_corr:+.2f} / {f.user_corr:+.2f} | "
            f"{users_text(f.medians[0], horizon)} | {users_text(f.medians[1], horizon)} | "
            f"{ratio_text(f)} | {share_text(f.within[0], f.bad_runs)} | "
            f"{share_text(f.within[1], f.bad_runs)} | {share_text(f.false_gate[0], f.aa_runs)} | "
            f"{share_text(f.false_gate[1], f.aa_runs)} |"
        )
    lines += [
        "",
        "| tail | covariate | variance CUPAC/plain (A/A, at the budget) | paired median "
        "CUPAC/plain | median cand. users in the sums: plain | CUPAC | "
        "A/A false decisions (alpha 0.05): plain | CUPAC |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (t, c), f in figures.items():
        lines.append(
            f"| {tail_name(TAILS[t])} | {COVARIATES[c].name} | {f.variance_ratio:.2f} | "
            f"{f.paired:.2f} | {users_text(f.analysed[0], horizon)} | "
            f"{users_text(f.analysed[1], horizon)} | {share_text(f.false_wide[0], f.aa_runs)} | "
            f"{share_text(f.false_wide[1], f.aa_runs)} |"
        )
    return lines


def verdicts(figures: dict[tuple[int, int], Cell], tails: Sequence[int]) -> list[str]:
    lines = []
    for c, covariate in enumerate(COVARIATES):
        own = [figures[(t, c)] for t in tails]
        ratios = [r[0] for r in (f.ratio() for f in own) if r is not None]
        worst = 1.0 - max(ratios) if ratios else 0.0  # a bound counts as its value
        spread = ", ".join(
            f"{tail_name(TAILS[t])} {reduction_text(f)}" for t, f in zip(tails, own, strict=True)
        )
        held = all(f.held() for f in own)
        if worst >= BAR and held:
            verdict = f"ships: {worst:.0%} fewer users ({spread})"
        else:
            why = "" if held else "; CUPAC's A/A false decisions above plain's and alpha's"
            verdict = f"does not earn its place: {worst:.0%} ({spread}{why})"
        lines.append(f"verdict, {covariate.name}: {verdict}")
    return lines


def parameters(runs: int, workers: int, config: Config) -> str:
    covariates = "; ".join(
        f"{c.name}: request_rho {c.request_rho:g}, user_rho {c.user_rho:g}, "
        f"per-user share {c.user_share:g}"
        for c in COVARIATES
    )
    delay = (
        f"lognormal, median {config.label_delay:g} s, sigma {DELAY_SIGMA:g}, at {RATE:g} req/s"
        if config.label_delay > 0
        else "none (folded at the look)"
    )
    return (
        f"CUPAC simulation: {USERS:,} users (iid: a new user per request), candidate share "
        f"{config.share:g}, reward {REWARD:g} (Beta, concentration {CONCENTRATION:g}), labels "
        f"{LABEL_SHARE:g} per user (Beta); bad candidate {EFFECT * 100:+g} points; a look every "
        f"{config.look:,} requests once both arms have {MIN_SAMPLES} rewards; alpha "
        f"{ALPHA:.5f} (0.05/6); budget {config.budget:,} candidate users (A/A horizon), bad runs "
        f"to {config.last:,}; label delay {delay}; agreement "
        f"{config.agreement:g}\ncovariates: {covariates}\n"
        f"runs: {runs} bad and {runs} A/A per tail and covariate; seeds 0..{runs - 1} "
        f"(numpy.random.default_rng(run index)); {workers} worker process(es)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="16 runs, two tails (< 40 s)")
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--share", type=float, default=Config.share)
    parser.add_argument("--look", type=int, default=Config.look)
    parser.add_argument("--budget", type=int, default=Config.budget)
    parser.add_argument("--agreement", type=float, default=Config.agreement)
    parser.add_argument("--label-delay", type=float, default=Config.label_delay)
    parser.add_argument("--horizon", type=float, default=Config.horizon)
    parser.add_argument("--tails", help="comma-separated Pareto shapes and/or iid, e.g. 1.2,iid")
    args = parser.parse_args()
    config = Config(
        args.share, args.look, args.budget, args.agreement, args.label_delay, args.horizon
    )
    if args.tails:
        tails = [TAILS.index(None if t == "iid" else float(t)) for t in args.tails.split(",")]
    elif args.quick:
        tails = [TAILS.index(1.5), TAILS.index(None)]
    else:
        tails = list(range(len(TAILS)))
    runs, workers = (16, 1) if args.quick else (args.runs, args.workers)
    print(parameters(runs, workers, config))
    started = time.perf_counter()
    figures = cells(run_all(jobs(runs, tails, config), workers), tails, config)
    print("\n".join(["", *tables(figures, config), "", *verdicts(figures, tails)]))
    print(f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
