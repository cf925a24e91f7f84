"""Soak: a gateway under steady load for minutes, with experiment reloads and Redis blips.

Real processes (two workers, a gateway, redis-server with its append-only file); load at a
fixed rate from a separate process. Every ``--reload-every`` seconds the experiment file is
rewritten (weights alternate); every ``--blip-every`` seconds Redis is frozen for two seconds,
or (every other time) stopped and started again. Prints the gateway's RSS over time and its
drift, and whether produced = written + dropped holds at the end (buffered back to 0).
Numbers, not pass/fail: ``python -m benchmarks.soak [--minutes 10]``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil

from benchmarks.harness import ROOT, models_env, start_gateway, start_worker
from benchmarks.recording import scrape
from router.local.processes import poll_until
from router.local.redis_server import EmbeddedRedis

EXPERIMENT = """\
name: soak
model: profanity
control: v1
variants:
  v1: {{url: "{v1}"}}
  v2: {{url: "{v2}"}}
policy:
  kind: canary
  weights: {{v1: {w1}, v2: {w2}}}
  sticky: user_id
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=150.0, help="requests per second")
    parser.add_argument("--reload-every", type=float, default=30.0)
    parser.add_argument("--blip-every", type=float, default=60.0)
    args = parser.parse_args()
    seconds = args.minutes * 60
    work = Path(tempfile.mkdtemp(prefix="turnout-soak-"))
    redis_server = EmbeddedRedis(work / "redis", appendonly=True).start()
    env = {**models_env(), "TURNOUT_REDIS_URL": redis_server.url, "TURNOUT_STATE_DIR": str(work)}
    workers = [start_worker(v, env) for v in ("v1", "v2")]
    folder = work / "experiments"
    folder.mkdir()
    path = folder / "soak.yaml"

    def write(w1: int) -> None:
        text = EXPERIMENT.format(v1=workers[0].url, v2=workers[1].url, w1=w1, w2=100 - w1)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(path)

    write(90)
    gateway = start_gateway(folder, env)
    rss = psutil.Process(gateway.process.pid)
    argv = [sys.executable, str(ROOT / "benchmarks" / "loadgen.py"), f"{gateway.url}/predict"]
    argv += ["--rate", str(args.rate), "--duration", str(seconds)]
    loadgen = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    started = time.monotonic()
    samples: list[tuple[float, float]] = []
    reloads = blips = 0
    next_reload, next_blip, next_sample = args.reload_every, args.blip_every, 0.0
    try:
        while loadgen.poll() is None:
            now = time.monotonic() - started
            if now >= next_sample:
                samples.append((now, rss.memory_info().rss / 2**20))
                next_sample += 10.0
            if now >= next_reload:
                reloads += 1
                write(90 if reloads % 2 == 0 else 80)
                next_reload += args.reload_every
            if now >= next_blip:
                blips += 1
                assert redis_server.process is not None
                if blips % 2:
                    os.kill(redis_server.process.pid, signal.SIGSTOP)
                    time.sleep(2.0)
                    os.kill(redis_server.process.pid, signal.SIGCONT)
                else:
                    redis_server.stop()
                    time.sleep(2.0)
                    redis_server.start()
                next_blip += args.blip_every
            time.sleep(0.2)
        out, _ = loadgen.communicate()
        result = json.loads(out)
        poll_until(lambda: scrape(gateway)["buffered"] == 0, 60, what="the buffer to drain")
        final = scrape(gateway)
    finally:
        loadgen.kill()
        gateway.process.stop()
        for worker in workers:
            worker.process.stop()
        redis_server.stop()
    report(args, result, final, samples, reloads, blips)


def report(
    args: argparse.Namespace,
    result: dict[str, float],
    final: dict[str, float],
    samples: list[tuple[float, float]],
    reloads: int,
    blips: int,
) -> None:
    warm = [(t, m) for t, m in samples if t >= 60.0] or samples
    times, mib = np.array([t for t, _ in warm]), np.array([m for _, m in warm])
    slope = float(np.polyfit(times / 60.0, mib, 1)[0]) if len(warm) > 2 else 0.0
    balanced = final["produced"] == final["written"] + final["dropped"] + final["buffered"]
    legs = f"{reloads} reloads, {blips} Redis blips"
    print(f"soak ({args.minutes:g} min at {args.rate:g} req/s, {legs})")
    print(
        f"  requests                   {result['requests']:.0f} ok, {result['errors']:.0f} failed"
        f" (p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms)"
    )
    print(f"  gateway 5xx                {final['5xx']:.0f}")
    print(
        f"  events                     produced {final['produced']:.0f} = written "
        f"{final['written']:.0f} + dropped {final['dropped']:.0f} + buffered "
        f"{final['buffered']:.0f}: {'holds' if balanced else 'DOES NOT HOLD'}"
    )
    print(
        f"  gateway RSS                {mib[0]:.1f} MiB after warm-up, {mib[-1]:.1f} MiB at the end"
        f" (drift {mib[-1] - mib[0]:+.1f} MiB, trend {slope:+.2f} MiB/min)"
    )
    print("  RSS samples (min: MiB)     " + ", ".join(f"{t / 60:.1f}: {m:.0f}" for t, m in samples))


if __name__ == "__main__":
    main()
