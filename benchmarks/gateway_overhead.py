"""Gateway overhead: the v1 worker called directly, through a bare proxy, and through Turnout.

One run, real processes: Redis, the v1 worker (primary), the v3 worker (shadow), the bare
raw-ASGI + aiohttp proxy (``benchmarks/reference_proxy.py``), and three gateways on the
benchmarks' canary (both variants on the v1 worker): as configured by default (recording,
metrics and access log on), with recording and the access log off, and with 100% of traffic
mirrored to v3. Load comes from wrk (closed loops at concurrency 32 and 1) and ``hey -q``
(a fixed rate of half the direct capacity), each in its own process. Legs are interleaved and
repeated; each figure is the median of the repetitions, with their spread (min..max). CPU per
request is each process's CPU time during a leg over the requests answered in it.

Prints figures and ratios beside their goals, not pass/fail. ``--quick`` is a short smoke run.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.harness import (
    Service,
    hey_leg,
    leg_arguments,
    models_env,
    start_gateway,
    start_reference_proxy,
    start_worker,
    with_cpu,
    write_canary,
    wrk_leg,
)
from router.local.redis_server import EmbeddedRedis

SHADOW = "shadow: {targets: [v3], sample: 1.0}\n"
Results = dict[str, list[dict[str, Any]]]


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--fixed-duration", type=float, default=10.0, help="seconds, hey leg")
    parser.add_argument("--hey-workers", type=int, default=16, help="hey -c at the fixed rate")
    parser.add_argument(
        "--rss-requests", type=int, default=100_000, help="RSS leg: N, then N more (0: skip)"
    )
    parser.add_argument("--quick", action="store_true", help="1 s legs, 1 repeat, 5k RSS")


def shadow_canary(folder: Path, primary: str, shadow: str) -> Path:
    write_canary(folder, primary)
    experiment = folder / "bench.yaml"
    text = experiment.read_text().replace("variants:\n", f'variants:\n  v3: {{url: "{shadow}"}}\n')
    experiment.write_text(text + SHADOW)
    return folder


class Figures:
    """Medians and spreads of the repeated legs."""

    def __init__(self, legs: Results) -> None:
        self.legs = legs

    def values(self, leg: str, field: str, index: int | None = None) -> list[float]:
        rows = self.legs[leg]
        if index is None:
            return [float(r[field]) for r in rows]
        return [float(r[field][index]) for r in rows]

    def median(self, leg: str, field: str, index: int | None = None) -> float:
        return float(statistics.median(self.values(leg, field, index)))

    def spread(self, leg: str, field: str, index: int | None = None) -> str:
        values = self.values(leg, field, index)
        return f"[{min(values):.3g}..{max(values):.3g}]"

    def both(self, leg: str, field: str, index: int | None = None) -> str:
        return f"{self.median(leg, field, index):.3f} {self.spread(leg, field, index)}"

    def errors(self) -> int:
        return sum(int(r["errors"]) for rows in self.legs.values() for r in rows)


def verdict(value: float, goal: float, at_least: bool) -> str:
    met = value >= goal if at_least else value <= goal
    return f"{'>=' if at_least else '<='} {goal:g}  {'met' if met else 'NOT MET'}"


def row(title: str, proxy: str, turnout: str, goal: str = "") -> None:
    print(f"  {title:44} {proxy:>22} {turnout:>22}   {goal}")


def main() -> None:
    args = leg_arguments(__doc__, options)
    if args.quick:
        args.duration, args.fixed_duration, args.repeats = 1.0, 2.0, 1
        args.rss_requests = min(args.rss_requests, 5000)

    workdir = Path(tempfile.mkdtemp(prefix="turnout-bench-overhead-"))
    redis = EmbeddedRedis(workdir / "redis").start()
    env = {**models_env(), "TURNOUT_REDIS_URL": redis.url}
    worker = start_worker("v1", env)
    shadow_worker = start_worker("v3", env)
    services = [worker, shadow_worker]
    try:
        services.append(proxy := start_reference_proxy(worker.url, env))
        canary = write_canary(workdir / "canary", worker.url)

        def gateway(name: str, folder: Path, extra: dict[str, str]) -> Service:
            state = {"TURNOUT_STATE_DIR": str(workdir / f"state-{name}")}
            service = start_gateway(folder, {**env, **state, **extra})
            services.append(service)
            return service

        turnout = gateway("turnout", canary, {"TURNOUT_ACCESS_LOG": "true"})
        quiet = {k: v for k, v in env.items() if k != "TURNOUT_REDIS_URL"}
        off = start_gateway(
            canary,
            {
                **quiet,
                "TURNOUT_NO_REDIS": "true",
                "TURNOUT_ACCESS_LOG": "false",
                "TURNOUT_STATE_DIR": str(workdir / "state-off"),
            },
        )
        services.append(off)
        folder = shadow_canary(workdir / "shadow", worker.url, shadow_worker.url)
        shadowed = gateway("shadow", folder, {"TURNOUT_ACCESS_LOG": "true"})
        run(args, worker, shadow_worker, proxy, turnout, off, shadowed)
    finally:
        for service in reversed(services):
            service.process.stop()
        redis.stop()


def run(
    args: argparse.Namespace,
    worker: Service,
    shadow_worker: Service,
    proxy: Service,
    turnout: Service,
    off: Service,
    shadowed: Service,
) -> None:
    fronts = {"direct": worker, "proxy": proxy, "turnout": turnout}
    targets = {name: f"{s.url}/predict" for name, s in fronts.items()}
    targets |= {"off": f"{off.url}/predict", "shadow": f"{shadowed.url}/predict"}
    targets["direct v3"] = f"{shadow_worker.url}/predict"
    measured: dict[str, list[Service]] = {
        "direct": [worker],
        "proxy": [proxy, worker],
        "turnout": [turnout, worker],
        "off": [off, worker],
        "shadow": [shadowed, worker, shadow_worker],
        "direct v3": [shadow_worker],
    }
    c = args.concurrency
    for url in targets.values():  # warm every path (pools, caches, JIT-free but lazy imports)
        wrk_leg(url, c, 1.0)
    capacity = wrk_leg(targets["direct"], c, max(args.duration, 2.0))["rps"]
    rate = round(capacity / 2)

    closed: Results = {name: [] for name in targets}
    single: Results = {name: [] for name in fronts}
    fixed: Results = {name: [] for name in fronts}
    for _ in range(args.repeats):
        for name, url in targets.items():
            closed[name].append(
                with_cpu(measured[name], lambda u=url: wrk_leg(u, c, args.duration))
            )
        for name in fronts:
            single[name].append(wrk_leg(targets[name], 1, args.duration))
        for name in fronts:
            fixed[name].append(
                hey_leg(targets[name], args.hey_workers, args.fixed_duration, rate=rate)
            )
    report(args, capacity, rate, Figures(closed), Figures(single), Figures(fixed))
    if args.rss_requests:
        rss_leg(shadowed, targets["shadow"], args.rss_requests, c)


def report(
    args: argparse.Namespace,
    capacity: float,
    rate: int,
    closed: Figures,
    single: Figures,
    fixed: Figures,
) -> None:
    c = args.concurrency
    print(
        f"gateway overhead: worker v1, canary 90/10 (both variants on v1), median of "
        f"{args.repeats} interleaved repetitions [min..max]; closed loops {args.duration:g} s "
        f"(wrk -t1), fixed rate {args.fixed_duration:g} s (hey -c {args.hey_workers} -q)"
    )
    print(f"  direct capacity (calibration, c={c}): {capacity:.0f} req/s; fixed rate {rate} req/s")
    row("figure", "bare proxy", "Turnout", "goal (Turnout)")
    d_rps = closed.median("direct", "rps")
    print(
        f"  {'throughput c=' + str(c) + ', direct (req/s)':44} {closed.both('direct', 'rps'):>22}"
    )
    ratios = {n: closed.median(n, "rps") / d_rps for n in ("proxy", "turnout")}
    row(
        f"throughput c={c} (req/s)",
        closed.both("proxy", "rps"),
        closed.both("turnout", "rps"),
    )
    row(
        f"throughput c={c} / direct",
        f"{ratios['proxy']:.3f}",
        f"{ratios['turnout']:.3f}",
        verdict(ratios["turnout"], 0.95, True),
    )
    w_cpu = closed.median("direct", "cpu_ms_per_request", 0)
    print(
        f"  {'v1 worker CPU per request, direct (ms)':44} "
        f"{closed.both('direct', 'cpu_ms_per_request', 0):>22}"
    )
    cpu = {n: closed.median(n, "cpu_ms_per_request", 0) for n in ("proxy", "turnout")}
    row(
        "front process CPU per request (ms)",
        closed.both("proxy", "cpu_ms_per_request", 0),
        closed.both("turnout", "cpu_ms_per_request", 0),
    )
    worker_in_leg = {n: closed.median(n, "cpu_ms_per_request", 1) for n in ("proxy", "turnout")}
    row(
        "v1 worker CPU per request in that leg (ms)",
        f"{worker_in_leg['proxy']:.3f}",
        f"{worker_in_leg['turnout']:.3f}",
    )
    ratio = cpu["turnout"] / worker_in_leg["turnout"]
    row(
        "front CPU / worker CPU per request",
        f"{cpu['proxy'] / worker_in_leg['proxy']:.3f}",
        f"{ratio:.3f}",
        verdict(ratio, 0.5, False),
    )
    row("front CPU per request / bare proxy's", "1.000", f"{cpu['turnout'] / cpu['proxy']:.3f}")
    print(f"  (direct leg: worker {w_cpu:.3f} ms per request)")

    def added(figures: Figures, field: str) -> dict[str, float]:
        base = figures.median("direct", field)
        return {n: figures.median(n, field) - base for n in ("proxy", "turnout")}

    print(f"  {'c=1 latency, direct p50 (ms)':44} {single.both('direct', 'p50_ms'):>22}")
    print(f"  {'c=1 latency, direct p99 (ms)':44} {single.both('direct', 'p99_ms'):>22}")
    for field, goal in (("p50_ms", 0.5), ("p99_ms", 1.0)):
        plus = added(single, field)
        row(
            f"added {field[:3]} at c=1 (ms)",
            f"{plus['proxy']:+.3f}",
            f"{plus['turnout']:+.3f}",
            verdict(plus["turnout"], goal, False),
        )
        row(
            f"  (through it, {field[:3]})",
            single.both("proxy", field),
            single.both("turnout", field),
        )
    p50 = added(single, "p50_ms")
    share = p50["turnout"] / p50["proxy"] if p50["proxy"] > 0 else float("inf")
    row("Turnout added p50 / bare proxy added p50", "", f"{share:.2f}", verdict(share, 1.5, False))
    print(
        f"  {'p99 at ' + str(rate) + ' req/s, direct (ms)':44} {fixed.both('direct', 'p99_ms'):>22}"
    )
    row(f"p99 at {rate} req/s (ms)", fixed.both("proxy", "p99_ms"), fixed.both("turnout", "p99_ms"))
    delta = added(fixed, "p99_ms")
    row(
        f"p99 delta at {rate} req/s (ms)",
        f"{delta['proxy']:+.3f}",
        f"{delta['turnout']:+.3f}",
        verdict(delta["turnout"], 2.0, False),
    )

    print("  100% shadow (v3 mirrored every request; its CPU competes with the primary's):")
    c_p = closed.median("direct", "cpu_ms_per_request", 0)
    c_s = closed.median("direct v3", "cpu_ms_per_request", 0)
    limit = c_p / (c_p + c_s)
    s_rps = closed.median("shadow", "rps")
    primary = s_rps / d_rps
    print(
        f"    C_p {c_p:.3f} ms, C_s {c_s:.3f} ms: limit C_p/(C_p+C_s) = {limit:.3f} of direct; "
        f"primary {closed.both('shadow', 'rps')} req/s = {primary:.3f} of direct "
        f"({s_rps / closed.median('turnout', 'rps'):.3f} of Turnout without shadow)"
    )
    reach = primary / limit
    print(f"    primary throughput / limit {reach:.3f}   {verdict(reach, 0.9, True)}")

    off_rps = closed.median("off", "rps")
    on_off = closed.median("turnout", "rps") / off_rps
    print(
        f"  recording + access log on / off: {closed.median('turnout', 'rps'):.0f} / "
        f"{off_rps:.0f} {closed.spread('off', 'rps')} req/s = {on_off:.3f}   "
        f"{verdict(on_off, 0.97, True)}  (metrics have no off switch: on in both)"
    )
    print(f"  errors: closed {closed.errors()}, c=1 {single.errors()}, fixed {fixed.errors()}")


def rss_leg(gateway: Service, url: str, requests: int, concurrency: int) -> None:
    figures = []
    for _ in range(2):
        result = hey_leg(url, concurrency, requests=requests)
        figures.append((result, gateway.rss_mb()))
    (first, rss1), (second, rss2) = figures
    growth = 100.0 * (rss2 - rss1) / rss1
    print(
        f"  RSS, 100% shadow + recording: {rss1:.1f} MiB after {requests} requests, "
        f"{rss2:.1f} MiB after {2 * requests}: growth {growth:+.2f}%   "
        f"{verdict(growth, 5.0, False)}  (errors {first['errors'] + second['errors']})"
    )


if __name__ == "__main__":
    main()
