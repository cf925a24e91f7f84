"""Worker throughput and latency per version, against real worker processes.

Prints requests/s and p50/p99 at concurrency 1 and 16 (load from a separate process), and
the in-process cost of one predict call.
"""

from __future__ import annotations

import argparse
import time

from benchmarks.harness import load, models_env, start_worker
from benchmarks.loadgen import TEXTS
from model_workers import registry
from router.core.settings import Settings


def in_process_ms(version: str, calls: int = 2000) -> float:
    model = registry.load(Settings().models_dir, "profanity", version)
    model.outputs(["warm"])
    started = time.perf_counter()
    for i in range(calls):
        model.outputs([TEXTS[i % len(TEXTS)]])
    return (time.perf_counter() - started) * 1000.0 / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--versions", default="v1,v2,v3")
    args = parser.parse_args()
    print(
        f"{'version':8} {'predict ms':>10} {'c=1 rps':>9} {'p50':>7} {'p99':>7} "
        f"{'c=16 rps':>9} {'p50':>7} {'p99':>7}"
    )
    for version in args.versions.split(","):
        worker = start_worker(version, models_env())
        try:
            url = f"{worker.url}/predict"
            load(url, concurrency=4, duration=1.0)
            one = load(url, concurrency=1, duration=args.duration)
            many = load(url, concurrency=16, duration=args.duration)
        finally:
            worker.process.stop()
        cost = in_process_ms(version)
        print(
            f"{version:8} {cost:10.3f} {one['rps']:9.1f} {one['p50_ms']:7.2f} "
            f"{one['p99_ms']:7.2f} {many['rps']:9.1f} {many['p50_ms']:7.2f} {many['p99_ms']:7.2f}"
        )
    print("latencies in ms; load from a separate process (wrk when installed, else aiohttp)")


if __name__ == "__main__":
    main()
