"""The console's costs: an experiment page over 30 days of per-minute history, and what writing
the history buckets costs the gateway's throughput.

1. Page time. Thirty days of per-minute history for three variants (and the hourly rollups the
   recorder writes beside them) are counted by the recorder's own encoder (``count_outcome``)
   into a Redis of the benchmark's own; a gateway (minute retention 31 days) then serves the
   experiment page. Server time is the page handler's ``Server-Timing``; the client's time on
   loopback is beside it. For contrast: summing the same 30 days from the minute tier alone.
2. Throughput. Two gateways on one worker and one Redis, recording on, history buckets off in
   one and on in the other; closed-loop legs interleaved, medians, gateway CPU per request.

Prints numbers and ratios, not pass/fail.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import redis
import redis.asyncio as aioredis

from benchmarks.harness import (
    Service,
    cpu_leg,
    load,
    median,
    models_env,
    start,
    start_gateway,
    start_worker,
    write_canary,
)
from router.local.processes import free_port
from router.local.redis_server import EmbeddedRedis
from router.recording.buffer import Pending
from router.recording.events import HistoryRetention, Outcome, Tally, count_outcome
from router.recording.recorder import encode_batch
from router.reports.history import Plan, history_report, parse_range
from router.reports.reads import read_history
from router.storage import keys

DAY = 86_400
VARIANTS = {"v1": 80.0, "v2": 10.0, "v3": 10.0}
PAGE = """\
name: bench
model: profanity
control: v1
variants:
  v1: {{url: "{url}"}}
  v2: {{url: "{url}", version: v1}}
  v3: {{url: "{url}", version: v1}}
policy: {{kind: canary, weights: {{v1: 80, v2: 10, v3: 10}}, sticky: user_id}}
"""


def fill(client: redis.Redis, days: int, now: float) -> int:
    """Per-minute history for every variant over ``days``, written as the recorder writes it;
    returns the requests counted."""
    rng = random.Random(1)
    retention = HistoryRetention((days + 1) * DAY, 90 * DAY)
    written = 0
    start = int(now // 60) * 60 - days * DAY
    for day in range(days):
        tally = Tally(retention)
        for minute in range(1440):
            ts = start + day * DAY + minute * 60 + 1.0
            for variant, weight in VARIANTS.items():
                for _ in range(1 + int(weight // 40)):
                    failed = rng.random() < 0.01
                    count_outcome(
                        tally,
                        Outcome(
                            f"b{written}",
                            "bench",
                            "cv",
                            variant,
                            None if failed else variant,
                            variant,
                            True,
                            weight / 100,
                            None,
                            503 if failed else 200,
                            rng.uniform(2.0, 9.0),
                            None,
                            None,
                            False,
                            ts,
                        ),
                    )
                    written += 1
        with client.pipeline(transaction=False) as pipe:
            for name, key, args in tally.commands():
                if ":history:" in key:
                    pipe.execute_command(name, key, *args)
            pipe.execute()
    return written


def server_ms(response: httpx.Response) -> float:
    timing = response.headers.get("server-timing", "page;dur=nan")
    return float(timing.split("dur=", 1)[1])


def time_page(url: str, repeats: int) -> tuple[float, float, float, int, int]:
    """Median server ms, p95 server ms, median client ms, bytes, points per series."""
    server, client = [], []
    with httpx.Client(timeout=30) as http:
        http.get(url)  # warm
        size = points = 0
        for _ in range(repeats):
            started = time.perf_counter()
            reply = http.get(url)
            client.append(1000 * (time.perf_counter() - started))
            reply.raise_for_status()
            server.append(server_ms(reply))
            size = len(reply.content)
            if "/api/" in url:
                points = len(reply.json()["charts"]["traffic"]["series"][0]["data"])
    server.sort()
    p95 = server[min(len(server) - 1, int(0.95 * len(server)))]
    return statistics.median(server), p95, statistics.median(client), size, points


async def minute_tier_only(redis_url: str, now: float, days: int) -> tuple[float, int]:
    """The naive read: every per-minute bucket of the range, summed in Python (ms, fields)."""
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        wanted = parse_range(f"{days}d", None, now, 90 * DAY)
        step = 10_800
        start = int(wanted.start // step) * step
        groups = list(range(int(wanted.start) // 3600, int(wanted.end) // 3600 + 1))
        plan = Plan(
            "m",
            60,
            step,
            start,
            int((wanted.end - start) // step) + 1,
            [keys.history("bench", "m", g) for g in groups],
            groups,
        )
        started = time.perf_counter()
        hashes = await read_history(client, plan.keys)
        history_report(plan, wanted, hashes, list(VARIANTS))
        spent = 1000 * (time.perf_counter() - started)
        return spent, sum(len(h) for h in hashes)
    finally:
        await client.aclose()


def page_time(args: argparse.Namespace, workdir: Path) -> None:
    server = EmbeddedRedis(workdir / "page-redis", port=free_port()).start()
    client = redis.Redis.from_url(server.url, decode_responses=True)
    env = models_env()
    folder = workdir / "page-experiments"
    folder.mkdir()
    (folder / "bench.yaml").write_text(PAGE.format(url="http://127.0.0.1:9"))
    gateway: Service | None = None
    try:
        now = time.time()
        started = time.perf_counter()
        counted = fill(client, args.days, now)
        filled = time.perf_counter() - started
        memory = client.info("memory")["used_memory"]
        port = free_port()
        gateway = start(  # no model server behind it: the page needs none
            "gateway",
            [sys.executable, "-m", "router", "gateway", "--port", str(port)],
            port,
            {
                **env,
                "TURNOUT_EXPERIMENTS_DIR": str(folder),
                "TURNOUT_REDIS_URL": server.url,
                "TURNOUT_HISTORY_MINUTE_RETENTION": str((args.days + 1) * DAY),
            },
            "/healthz",
        )
        print(
            f"experiment page, {args.days} days of per-minute history for {len(VARIANTS)} "
            f"variants ({counted:,} requests counted in {filled:.0f} s; Redis "
            f"{memory / 2**20:.0f} MiB), {args.page_repeats} requests each, server time from "
            "Server-Timing"
        )
        print(
            "  page                          server p50   server p95   client p50     bytes  points"
        )
        for label, path in (
            ("page 30d (HTML)", f"/ui/experiments/bench?range={args.days}d"),
            ("data 30d (JSON, live refresh)", f"/ui/api/experiments/bench?range={args.days}d"),
            ("data 7d", "/ui/api/experiments/bench?range=7d"),
            ("data 24h (minute tier)", "/ui/api/experiments/bench?range=24h"),
            ("data 1h (minute tier)", "/ui/api/experiments/bench?range=1h"),
        ):
            p50, p95, client_ms, size, points = time_page(gateway.url + path, args.page_repeats)
            shown = str(points) if points else "-"
            print(
                f"  {label:<30}{p50:8.1f} ms  {p95:8.1f} ms  {client_ms:8.1f} ms  "
                f"{size:8,d}  {shown:>6}"
            )
        spent, fields = asyncio.run(minute_tier_only(server.url, now, args.days))
        print(
            f"  for contrast: summing {args.days}d from the minute tier alone: {spent:.0f} ms "
            f"({fields:,} fields read)"
        )
        print("  goal: server time <= 300 ms for the 30-day page, points downsampled")
    finally:
        if gateway is not None:
            gateway.process.stop()
        client.close()
        server.stop()


def encode_cost(batches: int = 200, size: int = 500) -> dict[str, float]:
    """Microseconds of gateway CPU per event to encode a batch, history off and on (in-process,
    so the machine's other load does not blur it)."""
    rng = random.Random(2)
    now = time.time()
    events = [
        Pending(
            f"t:{i}",
            Outcome(
                f"r{i}",
                "bench",
                "cv",
                rng.choice(list(VARIANTS)),
                "v1",
                "v1",
                True,
                0.8,
                "u",
                200,
                rng.uniform(2, 9),
                1,
                0.7,
                False,
                now + i * 0.01,
            ),
        )
        for i in range(size)
    ]
    retention = HistoryRetention(7 * DAY, 90 * DAY)
    out = {}
    for name, history in (("off", None), ("on", retention)):
        best = math.inf
        for _ in range(5):
            started = time.perf_counter()
            for _ in range(batches // 5):
                encode_batch(events, 100_000, 86_400, history)
            best = min(best, time.perf_counter() - started)
        out[name] = 1e6 * best / (batches // 5 * size)
    return out


def evalsha(client: redis.Redis) -> tuple[int, int]:
    """Calls of the write script and the microseconds Redis spent in them so far."""
    stats = client.info("commandstats").get("cmdstat_evalsha", {})
    return int(stats.get("calls", 0)), int(stats.get("usec", 0))


def throughput(args: argparse.Namespace, workdir: Path) -> None:
    cost = encode_cost()
    server = EmbeddedRedis(workdir / "load-redis", port=free_port()).start()
    client = redis.Redis.from_url(server.url, decode_responses=True)
    env = {**models_env(), "TURNOUT_REDIS_URL": server.url}
    worker = start_worker("v1", env)
    experiments = write_canary(workdir / "load-experiments", worker.url)
    off = start_gateway(experiments, {**env, "TURNOUT_HISTORY": "false"})
    on = start_gateway(experiments, {**env, "TURNOUT_HISTORY": "true"})
    try:
        for gateway in (off, on):
            load(f"{gateway.url}/predict", concurrency=args.concurrency, duration=1.0)
        legs: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
        for i in range(args.repeats):
            order = (("off", off), ("on", on)) if i % 2 == 0 else (("on", on), ("off", off))
            for name, gateway in order:
                _, usec = evalsha(client)
                result = cpu_leg(
                    f"{gateway.url}/predict", [gateway], args.concurrency, args.duration
                )
                time.sleep(0.5)  # the last batches of the leg reach Redis
                _, after = evalsha(client)
                legs[name].append(
                    {
                        "rps": result["rps"],
                        "cpu": result["cpu_ms_per_request"][0],
                        "redis_us": (after - usec) / max(result["requests"], 1),
                        "errors": result["errors"],
                    }
                )
        rps = {n: median([leg["rps"] for leg in legs[n]]) for n in legs}
        cpu = {n: median([leg["cpu"] for leg in legs[n]]) for n in legs}
        errors = {n: int(sum(leg["errors"] for leg in legs[n])) for n in legs}
        print(
            f"gateway throughput, history buckets off vs on (worker v1, canary, recording on, "
            f"c={args.concurrency}, {args.repeats} x {args.duration:g} s legs interleaved, medians)"
        )
        for name in ("off", "on"):
            print(
                f"  history {name:<20}{rps[name]:9.1f} req/s   gateway CPU "
                f"{cpu[name]:.3f} ms/request"
            )
        pairs = [b["rps"] / a["rps"] for a, b in zip(legs["off"], legs["on"], strict=True)]
        print(f"  throughput ratio on / off   {rps['on'] / rps['off']:9.3f}   (goal >= 0.97)")
        print(
            f"  median of the {len(pairs)} paired legs' ratios {median(pairs):.3f} "
            f"(range {min(pairs):.3f} .. {max(pairs):.3f})"
        )
        print(f"  CPU ratio on / off          {cpu['on'] / cpu['off']:9.3f}")
        redis_us = {n: median([leg["redis_us"] for leg in legs[n]]) for n in legs}
        print(
            f"  Redis time in the write script  off {redis_us['off']:.1f} us/request, "
            f"on {redis_us['on']:.1f} us/request"
        )
        added = cost["on"] - cost["off"]
        print(
            f"  encoding a batch in the gateway off {cost['off']:.2f} us/event, on "
            f"{cost['on']:.2f} us/event (in-process, best of 5): history adds "
            f"{added:.2f} us, {100 * added / 1000 / cpu['off']:.2f}% of the gateway's CPU per "
            "request"
        )
        print(f"  legs rps off {[leg['rps'] for leg in legs['off']]}")
        print(f"  legs rps on  {[leg['rps'] for leg in legs['on']]}")
        print(f"  failed at the client        off {errors['off']}, on {errors['on']}")
    finally:
        for service in (on, off, worker):
            service.process.stop()
        client.close()
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=int, default=30, help="days of per-minute history")
    parser.add_argument("--page-repeats", type=int, default=20, help="requests per page")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per load leg")
    parser.add_argument("--repeats", type=int, default=6, help="legs per side, interleaved")
    parser.add_argument("--concurrency", type=int, default=32, help="closed-loop connections")
    parser.add_argument("--only", choices=("page", "throughput"), help="run one part")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="turnout-bench-console-"))
    if args.only in (None, "page"):
        page_time(args, workdir)
    if args.only in (None, "throughput"):
        throughput(args, workdir)


if __name__ == "__main__":
    main()
