"""Shadow mirroring: what mirroring costs the primary, and what a bad shadow costs it.

One run, real processes: a primary worker (v1), a shadow worker (v3), a slow and a dead shadow,
a gateway per case, Redis. On one 2-core machine the shadow competes for the same CPU, so the
primary's throughput at sample 1.0 is bounded by about C_p / (C_p + C_s) of the no-shadow
figure (C = CPU time per request of each worker); the script prints both.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from benchmarks.harness import (
    Service,
    cpu_leg,
    leg_arguments,
    load,
    median,
    models_env,
    start_gateway,
    start_worker,
)
from router.local.processes import free_port
from router.local.redis_server import EmbeddedRedis

EXPERIMENT = """\
name: bench
model: profanity
control: v1
variants:
  v1: {{url: "{primary}"}}
  v3: {{url: "{shadow}"}}
policy:
  kind: canary
  weights: {{v1: 100}}
shadow: {{targets: [v3], sample: {sample}}}
"""


def gateway_for(
    workdir: Path, name: str, primary: str, shadow: str, sample: float, env: dict[str, str]
) -> Service:
    folder = workdir / name
    folder.mkdir()
    (folder / "bench.yaml").write_text(
        EXPERIMENT.format(primary=primary, shadow=shadow, sample=sample)
    )
    return start_gateway(folder, {**env, "TURNOUT_SHADOW_MAX_IN_FLIGHT": "256"})


def cpu_per_request(service: Service, target: str, duration: float) -> float:
    return float(cpu_leg(target, [service], 16, duration)["cpu_ms_per_request"][0])


def main() -> None:
    args = leg_arguments(__doc__)

    workdir = Path(tempfile.mkdtemp(prefix="turnout-bench-shadow-"))
    redis = EmbeddedRedis(workdir / "redis").start()
    env = {**models_env(), "TURNOUT_REDIS_URL": redis.url}
    primary = start_worker("v1", env)
    shadow = start_worker("v3", env)
    slow = start_worker("v3", {**env, "TURNOUT_WORKER_FAULT_DELAY_MS": "5000"})
    dead = f"http://127.0.0.1:{free_port()}"
    services = [primary, shadow, slow]
    try:
        c_p = cpu_per_request(primary, f"{primary.url}/predict", args.duration)
        c_s = cpu_per_request(shadow, f"{shadow.url}/predict", args.duration)
        cases = {
            "sample 0": (shadow.url, 0.0),
            "sample 0.1": (shadow.url, 0.1),
            "sample 1.0": (shadow.url, 1.0),
            "sleeping shadow (5 s), 1.0": (slow.url, 1.0),
            "dead shadow, 1.0": (dead, 1.0),
        }
        gateways = {
            name: gateway_for(workdir, f"g{i}", primary.url, url, sample, env)
            for i, (name, (url, sample)) in enumerate(cases.items())
        }
        services += list(gateways.values())
        closed: dict[str, list[dict]] = {name: [] for name in cases}
        single: dict[str, list[dict]] = {name: [] for name in cases}
        for _ in range(args.repeats):
            for name, gw in gateways.items():
                url = f"{gw.url}/predict"
                closed[name].append(load(url, concurrency=args.concurrency, duration=args.duration))
                single[name].append(load(url, concurrency=1, duration=args.duration))

        base = median([r["rps"] for r in closed["sample 0"]])
        base_p99 = median([r["p99_ms"] for r in single["sample 0"]])
        limit = c_p / (c_p + c_s)
        print(
            f"shadow mirroring (primary v1, shadow v3, c={args.concurrency}, "
            f"median of {args.repeats})"
        )
        print(
            f"  CPU per request: primary worker {c_p:.3f} ms, shadow worker {c_s:.3f} ms; "
            f"predicted limit at sample 1.0 = {limit:.3f} of no-shadow throughput"
        )
        print(
            f"  {'case':28} {'req/s':>9} {'ratio':>7} {'p99 c=32':>9} {'p99 c=1':>8} "
            f"{'d p99 c=1':>9} {'errors':>6}"
        )
        for name in cases:
            rps = median([r["rps"] for r in closed[name]])
            p99 = median([r["p99_ms"] for r in closed[name]])
            p99_1 = median([r["p99_ms"] for r in single[name]])
            errors = sum(r["errors"] for r in closed[name] + single[name])
            print(
                f"  {name:28} {rps:9.1f} {rps / base:7.3f} {p99:9.2f} {p99_1:8.2f} "
                f"{p99_1 - base_p99:+9.3f} {errors:6d}"
            )
        full = median([r["rps"] for r in closed["sample 1.0"]]) / base
        print(f"  sample 1.0 reaches {full / limit:.3f} of the predicted limit (goal >= 0.9)")
    finally:
        for service in services:
            service.process.stop()
        redis.stop()


if __name__ == "__main__":
    main()
