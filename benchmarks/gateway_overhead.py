"""Gateway overhead: the same load straight at a worker and through the gateway, one run.

Prints ratios, not pass/fail. Legs are interleaved and repeated; medians are reported.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from benchmarks.harness import (
    cpu_leg,
    leg_arguments,
    load,
    median,
    models_env,
    start_gateway,
    start_worker,
    write_canary,
)
from router.local.redis_server import EmbeddedRedis


def main() -> None:
    args = leg_arguments(__doc__)

    workdir = Path(tempfile.mkdtemp(prefix="turnout-bench-"))
    redis = EmbeddedRedis(workdir / "redis").start()
    env = {**models_env(), "TURNOUT_REDIS_URL": redis.url}
    worker = start_worker("v1", env)
    gateway = start_gateway(write_canary(workdir / "experiments", worker.url), env)
    direct_url, gateway_url = f"{worker.url}/predict", f"{gateway.url}/predict"
    try:
        load(direct_url, concurrency=args.concurrency, duration=1.0)  # warm both paths
        load(gateway_url, concurrency=args.concurrency, duration=1.0)
        direct, through = [], []
        for _ in range(args.repeats):
            direct.append(cpu_leg(direct_url, [worker], args.concurrency, args.duration))
            through.append(cpu_leg(gateway_url, [gateway, worker], args.concurrency, args.duration))
        d_rps = median([r["rps"] for r in direct])
        g_rps = median([r["rps"] for r in through])
        worker_cpu = median([r["cpu_ms_per_request"][0] for r in direct])
        gateway_cpu = median([r["cpu_ms_per_request"][0] for r in through])

        lat_direct, lat_gateway = [], []
        for _ in range(args.repeats):
            lat_direct.append(load(direct_url, concurrency=1, duration=args.duration))
            lat_gateway.append(load(gateway_url, concurrency=1, duration=args.duration))
        p50 = median([r["p50_ms"] for r in lat_gateway]) - median([r["p50_ms"] for r in lat_direct])
        p99 = median([r["p99_ms"] for r in lat_gateway]) - median([r["p99_ms"] for r in lat_direct])

        rate = round(d_rps / 2)
        fixed_direct = load(direct_url, rate=rate, duration=args.duration * 2)
        fixed_gateway = load(gateway_url, rate=rate, duration=args.duration * 2)
        errors = sum(r["errors"] for r in direct + through + lat_direct + lat_gateway)
        errors += fixed_direct["errors"] + fixed_gateway["errors"]

        print(f"gateway overhead (worker v1, canary policy, recording on, c={args.concurrency})")
        print(f"  direct throughput            {d_rps:9.1f} req/s")
        print(f"  gateway throughput           {g_rps:9.1f} req/s")
        print(f"  throughput ratio gw/direct   {g_rps / d_rps:9.3f}   (goal >= 0.85)")
        print(f"  worker CPU per request       {worker_cpu:9.3f} ms")
        print(f"  gateway CPU per request      {gateway_cpu:9.3f} ms")
        print(f"  CPU ratio gateway/worker     {gateway_cpu / worker_cpu:9.3f}   (goal <= 1.0)")
        print(f"  added p50 at c=1             {p50:9.3f} ms  (goal <= 0.5)")
        print(f"  added p99 at c=1             {p99:9.3f} ms  (goal <= 1.0)")
        delta = fixed_gateway["p99_ms"] - fixed_direct["p99_ms"]
        print(
            f"  p99 at {rate} req/s (fixed)   direct {fixed_direct['p99_ms']:.3f} ms, "
            f"gateway {fixed_gateway['p99_ms']:.3f} ms, delta {delta:.3f} ms  (goal <= 2)"
        )
        print(
            "  errors by leg                "
            f"closed {sum(r['errors'] for r in direct + through)}, "
            f"c=1 {sum(r['errors'] for r in lat_direct + lat_gateway)}, "
            f"fixed direct {fixed_direct['errors']}, fixed gateway {fixed_gateway['errors']}"
            f" (total {errors})"
        )
    finally:
        gateway.process.stop()
        worker.process.stop()
        redis.stop()


if __name__ == "__main__":
    main()
