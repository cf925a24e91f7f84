"""Outcome recording: what it costs, what a Redis outage costs, and Redis commands per request.

One run, real processes (worker, two gateways, redis-server), load from a separate process.
Legs are interleaved and repeated; medians are reported. Prints ratios, not pass/fail.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import httpx
import redis
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.harness import (
    Service,
    leg_arguments,
    load,
    median,
    models_env,
    start_gateway,
    start_worker,
    write_canary,
)
from router.local.processes import poll_until
from router.local.redis_server import EmbeddedRedis


def scrape(gateway: Service) -> dict[str, float]:
    """Recording counters and 5xx answers (``outcome="error"``) of one gateway."""
    out = {"5xx": 0.0, "produced": 0.0, "written": 0.0, "dropped": 0.0, "buffered": 0.0}
    text = httpx.get(f"{gateway.url}/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "turnout_requests_total" and s.labels.get("outcome") == "error":
                out["5xx"] += s.value
            elif s.name == "turnout_events_produced_total":
                out["produced"] = s.value
            elif s.name == "turnout_events_written_total":
                out["written"] = s.value
            elif s.name == "turnout_events_dropped_total":
                out["dropped"] += s.value
            elif s.name == "turnout_events_buffered":
                out["buffered"] = s.value
    return out


def commands(client: redis.Redis) -> dict[str, int]:
    stats = client.info("commandstats")
    return {k.removeprefix("cmdstat_"): v["calls"] for k, v in stats.items() if k != "cmdstat_info"}


def leg(gateway: Service, concurrency: int, duration: float) -> dict[str, float]:
    before = scrape(gateway)
    result = load(f"{gateway.url}/predict", concurrency=concurrency, duration=duration)
    after = scrape(gateway)
    return {"rps": result["rps"], "errors": result["errors"], "5xx": after["5xx"] - before["5xx"]}


def main() -> None:
    args = leg_arguments(__doc__)

    workdir = Path(tempfile.mkdtemp(prefix="turnout-bench-recording-"))
    server = EmbeddedRedis(workdir / "redis").start()
    env = models_env()
    worker = start_worker("v1", env)
    experiments = write_canary(workdir / "experiments", worker.url)
    off = start_gateway(experiments, env)
    on = start_gateway(experiments, {**env, "TURNOUT_REDIS_URL": server.url})
    client = redis.Redis.from_url(server.url, decode_responses=True)
    try:
        for gateway in (off, on):  # warm both paths
            load(f"{gateway.url}/predict", concurrency=args.concurrency, duration=1.0)
        legs: dict[str, list[dict[str, float]]] = {"off": [], "running": [], "stopped": []}
        issued = {"evalsha": 0, "all": 0}
        recorded_requests = 0

        def drained() -> None:
            poll_until(lambda: scrape(on)["buffered"] == 0, 120, 0.1, "the backlog to drain")

        for _ in range(args.repeats):
            legs["off"].append(leg(off, args.concurrency, args.duration))
            drained()
            before = commands(client)
            produced = scrape(on)["produced"]
            legs["running"].append(leg(on, args.concurrency, args.duration))
            drained()
            after = commands(client)
            recorded_requests += int(scrape(on)["produced"] - produced)
            issued["evalsha"] += after.get("evalsha", 0) - before.get("evalsha", 0)
            issued["all"] += sum(after.values()) - sum(before.values())
            server.stop()
            legs["stopped"].append(leg(on, args.concurrency, args.duration))
            server.start()
            drained()
        final = scrape(on)

        def rps(name: str) -> float:
            return median([r["rps"] for r in legs[name]])

        def total(name: str, field: str) -> int:
            return int(sum(r[field] for r in legs[name]))

        print(
            f"outcome recording (worker v1, canary, c={args.concurrency}, "
            f"{args.repeats} x {args.duration:g} s legs, medians)"
        )
        print(f"  recording off                 {rps('off'):9.1f} req/s")
        print(f"  recording on, Redis running   {rps('running'):9.1f} req/s")
        print(f"  recording on, Redis stopped   {rps('stopped'):9.1f} req/s")
        print(
            f"  ratio on / off                {rps('running') / rps('off'):9.3f}   (goal >= 0.95)"
        )
        ratio = rps("stopped") / rps("running")
        print(f"  ratio stopped / running       {ratio:9.3f}   (goal >= 0.95)")
        for field, title, goal in (
            ("5xx", "5xx (gateway)", "   (goal 0 while stopped)"),
            ("errors", "failed at the client", ""),
        ):
            counts = ", ".join(f"{name} {total(name, field)}" for name in legs)
            print(f"  {title:<29} {counts}{goal}")
        per = max(recorded_requests, 1)
        print(
            f"  Redis round trips / request   {issued['evalsha'] / per:9.4f}   "
            f"(one EVALSHA per batch; {issued['evalsha']} for {recorded_requests} requests)"
        )
        print(
            f"  commands run / request        {issued['all'] / per:9.2f}   "
            "(server side, including those inside the script)"
        )
        print(
            f"  events                        produced {final['produced']:.0f}, written "
            f"{final['written']:.0f}, dropped {final['dropped']:.0f}, buffered "
            f"{final['buffered']:.0f} (after the outages)"
        )
    finally:
        for service in (on, off, worker):
            service.process.stop()
        client.close()
        server.stop()


if __name__ == "__main__":
    main()
