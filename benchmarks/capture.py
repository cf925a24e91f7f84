"""Capture's cost: gateway throughput with capture at sample 1.0 and inputs kept, against capture
off, in one run (real worker, two gateways, one redis-server, load from a separate process).

Both gateways record outcomes to Redis; they differ only by the experiment's capture block.
Legs are interleaved and repeated; medians are reported.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.harness import (
    CANARY_EXPERIMENT,
    Service,
    leg_arguments,
    load,
    median,
    models_env,
    start_gateway,
    start_worker,
)
from router.capture import files
from router.local.processes import poll_until
from router.local.redis_server import EmbeddedRedis


def counters(gateway: Service) -> dict[str, float]:
    out = {"offered": 0.0, "written": 0.0, "dropped": 0.0, "queued": 0.0}
    text = httpx.get(f"{gateway.url}/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "turnout_capture_offered_total":
                out["offered"] += s.value
            elif s.name == "turnout_capture_written_total":
                out["written"] += s.value
            elif s.name == "turnout_capture_dropped_total":
                out["dropped"] += s.value
            elif s.name == "turnout_capture_queued":
                out["queued"] = s.value
    return out


def main() -> None:
    args = leg_arguments(__doc__)
    workdir = Path(tempfile.mkdtemp(prefix="turnout-bench-capture-"))
    server = EmbeddedRedis(workdir / "redis").start()
    env = {**models_env(), "TURNOUT_REDIS_URL": server.url}
    worker = start_worker("v1", env)
    plain = workdir / "off"
    plain.mkdir()
    (plain / "bench.yaml").write_text(CANARY_EXPERIMENT.format(url=worker.url))
    captured = workdir / "on"
    captured.mkdir()
    (captured / "bench.yaml").write_text(
        CANARY_EXPERIMENT.format(url=worker.url) + "capture: {sample: 1.0, inputs: true}\n"
    )
    state = workdir / "state"
    off = start_gateway(plain, {**env, "TURNOUT_STATE_DIR": str(workdir / "state-off")})
    on = start_gateway(captured, {**env, "TURNOUT_STATE_DIR": str(state)})
    try:
        for gateway in (off, on):
            load(f"{gateway.url}/predict", concurrency=args.concurrency, duration=1.0)
        legs: dict[str, list[float]] = {"off": [], "on": []}
        errors = {"off": 0, "on": 0}
        for _ in range(args.repeats):
            for name, gateway in (("off", off), ("on", on)):
                result = load(
                    f"{gateway.url}/predict", concurrency=args.concurrency, duration=args.duration
                )
                legs[name].append(result["rps"])
                errors[name] += int(result["errors"])
        poll_until(lambda: counters(on)["queued"] == 0, 60, 0.1, "the capture queue to drain")
        final = counters(on)
        on_disk = sum(f.size for f in files.listing(state / "capture" / "bench"))
        print(
            f"capture (worker v1, canary, recording on, c={args.concurrency}, "
            f"{args.repeats} x {args.duration:g} s legs, medians)"
        )
        print(f"  capture off                        {median(legs['off']):9.1f} req/s")
        print(f"  capture on (sample 1.0, inputs)    {median(legs['on']):9.1f} req/s")
        ratio = median(legs["on"]) / median(legs["off"])
        print(f"  ratio on / off                     {ratio:9.3f}   (goal >= 0.95)")
        print(
            f"  records                            offered {final['offered']:.0f}, written "
            f"{final['written']:.0f}, dropped {final['dropped']:.0f}, queued {final['queued']:.0f}"
        )
        per = on_disk / max(final["written"], 1)
        print(f"  bytes on disk                      {on_disk:,} ({per:.0f} per record)")
        print(f"  failed at the client               off {errors['off']}, on {errors['on']}")
    finally:
        for service in (on, off, worker):
            service.process.stop()
        server.stop()


if __name__ == "__main__":
    main()
