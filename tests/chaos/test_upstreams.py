"""Upstreams that die, crawl, trickle or hang, under load: traffic falls back, never fails."""

from __future__ import annotations

from pathlib import Path

import httpx

from router.local.processes import free_port, poll_until
from tests.chaos.harness import Load, figure, metrics, p99_ms, share_2xx
from tests.chaos.servers import misbehaving
from tests.conftest import GatewayFactory, WorkerFactory, canary_yaml, write_experiment

QUIET = {"TURNOUT_ACCESS_LOG": "false"}


def test_canary_then_control_killed_under_load(
    start_worker: WorkerFactory, start_gateway: GatewayFactory, tmp_path: Path
) -> None:
    control, canary, spare = start_worker("v1"), start_worker("v2"), start_worker("v3")
    upstreams = {"v1": control.url, "v2": canary.url, "v3": spare.url}
    weights = {"v1": 70, "v2": 30, "v3": 0}
    write_experiment(tmp_path, canary_yaml(upstreams, weights, tail="fallback: [v3]"))
    gw = start_gateway(tmp_path, TURNOUT_BREAKER_FAILURES="3", **QUIET)
    with Load(gw.url, concurrency=4) as load:
        load.wait_for(100)
        canary.process.kill()
        load.wait_for(200)
        after_canary = len(load.samples)
        control.process.kill()
        load.wait_for(200)
        ready = httpx.get(f"{gw.url}/readyz").status_code
    m = metrics(gw)
    served = {s.body.get("model_version") for s in load.samples[after_canary + 50 :]}
    figure(
        "canary then control killed",
        load.samples,
        gw,
        failovers=f"{m['turnout_failovers_total']:.0f}",
        readyz=ready,
    )
    assert share_2xx(load.samples) == 1.0
    assert m["turnout_fallbacks_total"] > 0 and m["turnout_failovers_total"] > 0
    assert served == {"v3"}  # the fallback answers everything once both are down
    assert ready == 200  # the fallback can answer, so the gateway is ready


def test_slow_and_trickling_upstreams_hold_no_request_long(
    start_worker: WorkerFactory, start_gateway: GatewayFactory, tmp_path: Path
) -> None:
    control = start_worker("v1")
    slow = start_worker("v2", TURNOUT_WORKER_FAULT_DELAY_MS="5000")
    with misbehaving("trickle", interval=0.2) as trickle:
        upstreams = {"v1": control.url, "v2": slow.url, "v3": trickle}
        write_experiment(tmp_path, canary_yaml(upstreams, {"v1": 50, "v2": 25, "v3": 25}))
        gw = start_gateway(
            tmp_path,
            TURNOUT_UPSTREAM_SLOW_CALL_SECONDS="0.5",
            TURNOUT_BREAKER_FAILURES="3",
            TURNOUT_BREAKER_RESET_SECONDS="2",
            **QUIET,
        )
        concurrency = 8
        with Load(gw.url, concurrency=concurrency) as load:
            load.wait_for(400, timeout=60)
    longest = max(s.seconds for s in load.samples)
    waited = sum(s.seconds > 0.4 for s in load.samples)
    m = metrics(gw)
    figure(
        "slow and trickling upstreams",
        load.samples,
        gw,
        longest_s=f"{longest:.2f}",
        waited_over_0_4s=waited,
        slow_fallbacks=f"{m['turnout_fallbacks_total{slow}']:.0f}",
    )
    assert share_2xx(load.samples) == 1.0
    assert longest < 1.5  # the slow worker takes 5 s, the trickle ~14 s
    # Those in flight before each breaker opened, plus one probe per reset and upstream.
    assert waited <= 2 * concurrency + 2 * 15
    assert m["turnout_fallbacks_total{slow}"] >= 6


def test_dead_and_hanging_shadows_never_touch_the_primary(
    start_gateway: GatewayFactory, workers: dict[str, str], tmp_path: Path
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with misbehaving("hang") as hanging:
        primary = {"v1": workers["v1"]}
        plain = canary_yaml(primary, {"v1": 100}, name="plain", model="plain")
        mirrored = canary_yaml(
            {**primary, "dead": dead, "hang": hanging},
            {"v1": 100, "dead": 0, "hang": 0},
            name="mirrored",
            model="mirrored",
            tail="shadow: {targets: [dead, hang], sample: 1.0}",
        )
        write_experiment(tmp_path, plain, "plain.yaml")
        write_experiment(tmp_path, mirrored, "mirrored.yaml")
        gw = start_gateway(
            tmp_path, TURNOUT_SHADOW_TIMEOUT="0.5", TURNOUT_SHADOW_MAX_IN_FLIGHT="16", **QUIET
        )
        poll_until(lambda: httpx.get(f"{gw.url}/readyz").status_code == 200, 15, what="readiness")
        with Load(gw.url, concurrency=4, path="/models/plain/predict") as baseline:
            baseline.wait_for(300)
        with Load(gw.url, concurrency=4, path="/models/mirrored/predict") as load:
            load.wait_for(300)
    m = metrics(gw)
    figure(
        "dead and hanging shadows",
        load.samples,
        gw,
        baseline_p99_ms=f"{p99_ms(baseline.samples):.1f}",
        shadow_errors=f"{m['turnout_shadow_errors_total']:.0f}",
        shadow_dropped=f"{m['turnout_shadow_dropped_total']:.0f}",
    )
    assert share_2xx(load.samples) == 1.0
    assert all(s.body.get("model_version") == "v1" for s in load.samples)
    assert m["turnout_shadow_errors_total"] + m["turnout_shadow_dropped_total"] > 0
    assert p99_ms(load.samples) < p99_ms(baseline.samples) + 100
