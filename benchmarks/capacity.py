"""Capacity plan: how much Redis one gateway request costs, so how many one Redis core carries.

Three gateway replicas (real processes) share one Redis, then a local Redis Cluster (three
primaries, three replicas), under closed-loop load from separate processes: three
experiments, each its own model, whose hash tags land on three different cluster primaries.
For each leg it reads, before and after, Redis's ``INFO cpu`` (main thread, user + sys) and
``INFO commandstats``, and the gateways' ``/metrics`` (events written, flushes). It prints:

- Redis CPU microseconds per gateway request, net of what the replicas cost Redis at rest
  (flag and bandit refreshes, measured over an idle period before the legs);
- Redis round trips per request: each flush is two (the locator pipeline, then one script
  call per experiment, side by side), divided by the requests it carried;
- the batch size: events per write-script call;
- the requests per second one Redis core carries: 1 s / CPU per request;
- on the cluster, the same per primary (each experiment's keys live on one of them).

Legs: the default flush interval (0.1 s) and a 0.5 s one (bigger batches). Run it alone:
it is a load benchmark. ``python -m benchmarks.capacity [--duration 10] [--concurrency 16]``.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import redis
from prometheus_client.parser import text_string_to_metric_families
from redis.crc import key_slot

from benchmarks.harness import Service, load, models_env, start_gateway, start_worker
from router.local.redis_server import EmbeddedCluster, EmbeddedRedis
from router.storage import keys

SLOT_RANGES = ((0, 5460), (5461, 10922), (10923, 16383))
"""How ``redis-cli --cluster create`` shares the slots among three primaries."""


def experiment_names() -> list[str]:
    """Three experiment names whose hash tags fall in the three primaries' slot ranges."""
    names: list[str] = []
    for low, high in SLOT_RANGES:
        n = 0
        while True:
            name = f"cap-{len(names)}-{n}"
            if low <= key_slot(keys.variants(name).encode()) <= high:
                names.append(name)
                break
            n += 1
    return names


def experiment_yaml(name: str, model: str, worker: str) -> str:
    return (
        f"name: {name}\nmodel: {model}\ncontrol: v1\nvariants:\n"
        f"  v1: {{url: '{worker}'}}\n  v2: {{url: '{worker}', version: v1}}\n"
        "policy:\n  kind: canary\n  weights: {v1: 90, v2: 10}\n  sticky: user_id\n"
    )


def redis_cpu(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user_main_thread"]) + float(info["used_cpu_sys_main_thread"])


def command_stats(client: redis.Redis) -> dict[str, tuple[int, int]]:
    stats = client.info("commandstats")
    return {
        k.removeprefix("cmdstat_"): (int(v["calls"]), int(v["usec"]))
        for k, v in stats.items()
        if k != "cmdstat_info"
    }


def gateway_counts(gateway: Service) -> dict[str, float]:
    out = {"written": 0.0, "flushes": 0.0, "dropped": 0.0, "requests": 0.0}
    text = httpx.get(f"{gateway.url}/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "turnout_events_written_total":
                out["written"] = s.value
            elif s.name == "turnout_flush_seconds_count":
                out["flushes"] = s.value
            elif s.name == "turnout_events_dropped_total":
                out["dropped"] += s.value
            elif s.name == "turnout_requests_total":
                out["requests"] += s.value
    return out


@dataclass
class Snapshot:
    cpu: list[float]
    commands: list[dict[str, tuple[int, int]]]
    gateways: list[dict[str, float]]


def snapshot(nodes: list[redis.Redis], gateways: list[Service]) -> Snapshot:
    return Snapshot(
        [redis_cpu(n) for n in nodes],
        [command_stats(n) for n in nodes],
        [gateway_counts(g) for g in gateways],
    )


def drained(gateways: list[Service]) -> None:
    from router.local.processes import poll_until

    def empty() -> bool:
        for gateway in gateways:
            text = httpx.get(f"{gateway.url}/metrics", timeout=10).text
            if "turnout_events_buffered 0.0" not in text:
                return False
        return True

    poll_until(empty, 120, 0.1, "the gateways' buffers to drain")


def leg(
    nodes: list[redis.Redis],
    gateways: list[Service],
    models: list[str],
    duration: float,
    concurrency: int,
    idle_cpu_per_s: list[float],
) -> dict[str, Any]:
    drained(gateways)
    before = snapshot(nodes, gateways)
    with ThreadPoolExecutor(len(gateways)) as pool:
        futures = [
            pool.submit(load, f"{g.url}/models/{m}/predict", concurrency, duration)
            for g, m in zip(gateways, models, strict=True)
        ]
        results = [f.result() for f in futures]
    drained(gateways)
    after = snapshot(nodes, gateways)
    seconds = max(r["seconds"] for r in results)
    pairs = list(zip(after.gateways, before.gateways, strict=True))
    requests = sum(a["written"] - b["written"] for a, b in pairs)
    flushes = sum(a["flushes"] - b["flushes"] for a, b in pairs)
    dropped = sum(a["dropped"] - b["dropped"] for a, b in pairs)
    # The drain after the load adds idle time: charge idle cost for the whole measured span.
    span = seconds + 0.5
    per_node_cpu = [
        max(0.0, (a - b) - idle * span)
        for a, b, idle in zip(after.cpu, before.cpu, idle_cpu_per_s, strict=True)
    ]
    calls: dict[str, list[int]] = {}
    for a, b in zip(after.commands, before.commands, strict=True):
        for name, (count, usec) in a.items():
            base = b.get(name, (0, 0))
            entry = calls.setdefault(name, [0, 0])
            entry[0] += count - base[0]
            entry[1] += usec - base[1]
    evalsha = calls.get("evalsha", [0, 0])[0]
    return {
        "rps": round(requests / seconds, 1),
        "requests": int(requests),
        "client_errors": sum(int(r["errors"]) for r in results),
        "dropped": int(dropped),
        "cpu_us_per_request": 1e6 * sum(per_node_cpu) / max(requests, 1),
        "per_node_cpu_us": [1e6 * c / max(requests, 1) for c in per_node_cpu],
        "round_trips_per_request": 2 * flushes / max(requests, 1),
        "events_per_script_call": requests / max(evalsha, 1),
        "commands": {
            name: (count / max(requests, 1), usec / max(requests, 1))
            for name, (count, usec) in sorted(calls.items(), key=lambda kv: -kv[1][1])
            if count
        },
    }


def idle_rate(nodes: list[redis.Redis], seconds: float = 5.0) -> list[float]:
    import time

    before = [redis_cpu(n) for n in nodes]
    time.sleep(seconds)
    return [(redis_cpu(n) - b) / seconds for n, b in zip(nodes, before, strict=True)]


def run_topology(
    title: str,
    redis_env: dict[str, str],
    nodes: list[redis.Redis],
    worker: Service,
    workdir: Path,
    args: argparse.Namespace,
) -> list[tuple[str, dict[str, Any]]]:
    names = experiment_names()
    models = [f"m{i}" for i in range(len(names))]
    folder = workdir / f"experiments-{title}"
    folder.mkdir(parents=True, exist_ok=True)
    for name, model in zip(names, models, strict=True):
        (folder / f"{name}.yaml").write_text(experiment_yaml(name, model, worker.url))
    results = []
    for interval in ("0.1", "0.5"):
        env = {**models_env(), **redis_env, "TURNOUT_RECORDING_FLUSH_INTERVAL": interval}
        gateways = [start_gateway(folder, env) for _ in range(3)]
        try:
            for gateway, model in zip(gateways, models, strict=True):  # warm up
                load(f"{gateway.url}/models/{model}/predict", args.concurrency, 1.0)
            idle = idle_rate(nodes)
            result = leg(nodes, gateways, models, args.duration, args.concurrency, idle)
            result["idle_cpu_us_per_s"] = [1e6 * i for i in idle]
            results.append((f"{title}, flush every {interval} s", result))
        finally:
            for gateway in gateways:
                gateway.process.stop()
    return results


def print_result(label: str, r: dict[str, Any], cluster: bool) -> None:
    print(f"{label}")
    print(
        f"  load: {r['rps']:.0f} req/s over 3 gateways ({r['requests']} requests, "
        f"{r['client_errors']} client errors, {r['dropped']} events dropped)"
    )
    print(f"  batch: {r['events_per_script_call']:.1f} events per write-script call")
    print(f"  Redis round trips per request: {r['round_trips_per_request']:.4f}")
    idle = ", ".join(f"{x:.0f}" for x in r["idle_cpu_us_per_s"])
    if not cluster:
        per_core = 1e6 / max(r["cpu_us_per_request"], 1e-9)
        print(
            f"  Redis CPU per request: {r['cpu_us_per_request']:.2f} us (main thread, net of "
            f"idle {idle} us/s)"
        )
        print(f"  requests/s one Redis core carries: {per_core:,.0f}")
    else:
        nodes = r["per_node_cpu_us"]
        primaries, replicas = nodes[:3], nodes[3:]
        print(
            f"  Redis CPU per request, all six nodes: {sum(nodes):.2f} us; per primary "
            f"{', '.join(f'{x:.2f}' for x in primaries)}, per replica "
            f"{', '.join(f'{x:.2f}' for x in replicas)} (main threads, net of idle {idle} us/s)"
        )
        print(
            f"  requests/s the three primaries carry before the busiest core is full: "
            f"{1e6 / max(max(primaries), 1e-9):,.0f} (this mix: three experiments, one per "
            "primary; one experiment's traffic is bounded by one primary's core)"
        )
    top = list(r["commands"].items())[:8]
    print(
        "  commandstats per request (calls, us; commands run inside scripts appear too): "
        + ", ".join(f"{n} {c:.2f}/{u:.2f}" for n, (c, u) in top)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per leg")
    parser.add_argument("--concurrency", type=int, default=16, help="connections per gateway")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="turnout-capacity-"))
    print(
        f"machine: {platform.processor() or platform.machine()}, {psutil.cpu_count()} cores, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB, Python {platform.python_version()}"
    )
    worker = start_worker("v1", models_env())
    try:
        single = EmbeddedRedis(workdir / "single").start()
        try:
            client = single.client()
            for label, result in run_topology(
                "one Redis", single.env, [client], worker, workdir, args
            ):
                print_result(label, result, cluster=False)
        finally:
            single.stop()
        cluster = EmbeddedCluster(workdir / "cluster").start()
        try:
            primaries = cluster.primaries()
            replicas = [n for n in cluster.nodes if n not in primaries]
            nodes = [n.client() for n in primaries + replicas]
            for label, result in run_topology(
                "Redis Cluster 3+3", cluster.env, nodes, worker, workdir, args
            ):
                print_result(label, result, cluster=True)
        finally:
            cluster.stop()
    finally:
        worker.process.stop()


if __name__ == "__main__":
    main()
