"""Bandit regret: Turnout's Thompson sampler against baselines on Bernoulli arms.

"turnout" runs the gateway's own code: the bandit policy, ``BanditRuntime`` (posterior cache,
background refresh, Thompson tables) and the evidence commands the feedback script applies,
with Redis replaced by ``MemoryBanditStore`` (same interface, same keys). Feedback lands in the
store as it comes and the cache is refreshed every ``delay`` pulls (refresh interval x request
rate), so a decision samples from a posterior up to ``delay`` pulls old. The baselines are
textbook, vectorised over seeds: an ideal Beta(1, 1) Thompson sampler updated after every pull,
UCB1, epsilon-greedy (0.1) and a uniform split.

Regret is pseudo-regret, sum over pulls of (best p - pulled p); "best %" is the share of the
last 10% of pulls that went to the best arm. Prints numbers, not pass/fail.

    python -m benchmarks.bandit_regret            # 200 seeds, both settings, delay sweep
    python -m benchmarks.bandit_regret --quick    # 24 seeds
"""

from __future__ import annotations

import argparse
import asyncio
import math
import multiprocessing
import random
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from router.bandit.evidence import MemoryBanditStore, evidence_commands
from router.bandit.runtime import BanditRuntime
from router.config.loader import LoadedExperiment, parse_experiment
from router.core.settings import Settings
from router.flags.values import ExperimentFlags
from router.routing.policies import build_policy
from router.routing.table import Route

MAIN_DELAY = 100
"""The headline delay: a 1 s refresh at 100 requests per second."""
NAME = "sim"


@dataclass(frozen=True)
class Setting:
    name: str
    probs: tuple[float, ...]
    horizon: int
    delays: tuple[int, ...]


SETTINGS = (
    Setting("A", (0.10, 0.05, 0.03), 10_000, (25, 100, 400, 1000)),
    Setting("B", (0.05, 0.04, 0.03), 100_000, (100, 1000)),
)


@dataclass(frozen=True)
class Result:
    regret: float
    best_share: float
    """Share of the last 10% of pulls on the best arm."""


def sim_route(arms: int) -> Route:
    names = [f"a{i}" for i in range(arms)]
    text = "\n".join(
        [
            f"name: {NAME}",
            "model: sim",
            "control: a0",
            "variants:",
            *[f"  {n}: {{url: 'http://127.0.0.1:{9000 + i}'}}" for i, n in enumerate(names)],
            "policy:",
            "  kind: bandit",
            f"  arms: [{', '.join(names)}]",
        ]
    )
    experiment = parse_experiment(text, Path("sim.yaml")).experiment
    return Route(
        LoadedExperiment(experiment, Path("sim.yaml"), "sim"), build_policy(experiment), {}
    )


async def run_turnout(probs: tuple[float, ...], horizon: int, delay: int, seed: int) -> Result:
    route = sim_route(len(probs))
    store = MemoryBanditStore()
    runtime = BanditRuntime(
        store, lambda: {NAME: route}, lambda _: False, Settings(bandit_refresh_interval=1.0)
    )
    await runtime.refresh()
    flags = ExperimentFlags()
    index = {f"a{i}": i for i in range(len(probs))}
    best = max(probs)
    best_arm = probs.index(best)
    gaps = [best - p for p in probs]
    rng, env = random.Random(seed), random.Random(1_000_003 + seed)
    tail_from = horizon - horizon // 10
    regret, tail_best = 0.0, 0
    batch = [[0.0, 0] for _ in probs]
    for t in range(horizon):
        if t and t % delay == 0:
            # The window's feedback as the feedback script adds it (summed per arm), then
            # the refresh every replica runs.
            for i, (successes, rewards) in enumerate(batch):
                if rewards:
                    store.apply(evidence_commands(NAME, f"a{i}", successes, rewards))
            batch = [[0.0, 0] for _ in probs]
            await runtime.refresh()
        view = runtime.view(route, flags, None)
        assert view is not None
        i = index[route.policy.choose(None, rng, view).variant]
        if env.random() < probs[i]:
            batch[i][0] += 1.0
        batch[i][1] += 1
        regret += gaps[i]
        if t >= tail_from and i == best_arm:
            tail_best += 1
    return Result(regret, tail_best / (horizon - tail_from))


def turnout_task(args: tuple[Setting, int, list[int]]) -> tuple[str, list[Result]]:
    setting, delay, seeds = args

    async def all_seeds() -> list[Result]:
        return [await run_turnout(setting.probs, setting.horizon, delay, s) for s in seeds]

    return f"turnout@{delay}", asyncio.run(all_seeds())


# --- baselines, vectorised over seeds ---------------------------------------------------------


def _finish(chosen_best: np.ndarray, regret: np.ndarray, horizon: int) -> list[Result]:
    share = chosen_best / (horizon - (horizon - horizon // 10))
    return [Result(float(r), float(s)) for r, s in zip(regret, share, strict=True)]


def baseline(
    name: str, probs: tuple[float, ...], horizon: int, seeds: int, seed: int
) -> list[Result]:
    gen = np.random.default_rng(seed)
    p = np.array(probs)
    k, rows = len(probs), np.arange(seeds)
    gaps = p.max() - p
    best_arm = int(np.argmax(p))
    successes = np.zeros((seeds, k))
    pulls = np.zeros((seeds, k))
    regret = np.zeros(seeds)
    tail_best = np.zeros(seeds)
    tail_from = horizon - horizon // 10
    for t in range(horizon):
        if name == "ideal_ts":
            arm = np.argmax(gen.beta(1.0 + successes, 1.0 + pulls - successes), axis=1)
        elif name == "uniform":
            arm = gen.integers(0, k, seeds)
        elif t < k:
            arm = np.full(seeds, t)
        elif name == "ucb1":
            means = successes / pulls
            arm = np.argmax(means + np.sqrt(2.0 * math.log(t) / pulls), axis=1)
        else:  # epsilon-greedy 0.1, ties broken at random
            greedy = np.argmax(successes / pulls + gen.random((seeds, k)) * 1e-9, axis=1)
            explore = gen.random(seeds) < 0.1
            arm = np.where(explore, gen.integers(0, k, seeds), greedy)
        reward = gen.random(seeds) < p[arm]
        successes[rows, arm] += reward
        pulls[rows, arm] += 1
        regret += gaps[arm]
        if t >= tail_from:
            tail_best += arm == best_arm
    return _finish(tail_best, regret, horizon)


BASELINES = ("ideal_ts", "ucb1", "eps_greedy_0.1", "uniform")


def baseline_task(args: tuple[Setting, str, int]) -> tuple[str, list[Result]]:
    setting, name, seeds = args
    seed = 7 + BASELINES.index(name) + 100 * SETTINGS.index(setting)
    return name, baseline(name, setting.probs, setting.horizon, seeds, seed)


# --- driver -----------------------------------------------------------------------------------


def summary(results: list[Result]) -> tuple[float, float, float]:
    regret = np.array([r.regret for r in results])
    share = np.array([r.best_share for r in results])
    se = float(regret.std(ddof=1) / math.sqrt(len(regret))) if len(regret) > 1 else 0.0
    return float(regret.mean()), se, float(share.mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="24 seeds")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    seeds = 24 if args.quick else args.seeds
    chunk = max(1, math.ceil(seeds / 10))
    jobs: list[tuple[Setting, Callable[..., tuple[str, list[Result]]], tuple[object, ...]]] = []
    for setting in SETTINGS:
        for name in BASELINES:
            jobs.append((setting, baseline_task, (setting, name, seeds)))
        for delay in setting.delays:
            for start in range(0, seeds, chunk):
                ids = list(range(start, min(seeds, start + chunk)))
                jobs.append((setting, turnout_task, (setting, delay, ids)))
    # The longest jobs first, so the two cores finish together.
    jobs.sort(key=lambda j: -j[0].horizon)
    started = time.perf_counter()
    collected: dict[str, dict[str, list[Result]]] = defaultdict(lambda: defaultdict(list))
    with multiprocessing.Pool(args.workers) as pool:
        pending = [(s, pool.apply_async(f, (a,))) for s, f, a in jobs]
        for setting, job in pending:
            name, results = job.get()
            collected[setting.name][name].extend(results)
    elapsed = time.perf_counter() - started
    print(f"bandit regret: {seeds} seeds per row, {args.workers} processes, {elapsed:.0f} s")
    for setting in SETTINGS:
        rows = collected[setting.name]
        ideal = summary(rows["ideal_ts"])[0]
        print(f"\nsetting {setting.name}: p = {list(setting.probs)}, horizon {setting.horizon:,}")
        print(f"  {'policy':<22}{'regret':>10}{'+- se':>8}{'x ideal':>9}{'best % (last 10%)':>20}")
        names = [f"turnout@{d}" for d in setting.delays] + list(BASELINES)
        names.sort(key=lambda n: n != f"turnout@{MAIN_DELAY}")
        for name in names:
            mean, se, share = summary(rows[name])
            label = name.replace("turnout@", "turnout, delay ") if "@" in name else name
            print(f"  {label:<22}{mean:>10.1f}{se:>8.1f}{mean / ideal:>9.2f}{100 * share:>19.1f}%")
        ours = summary(rows[f"turnout@{MAIN_DELAY}"])[0]
        verdict = "meets" if ours <= 1.2 * ideal else "misses"
        print(f"  goal regret <= 1.2x ideal at delay {MAIN_DELAY}: {ours / ideal:.2f}x ({verdict})")


if __name__ == "__main__":
    main()
