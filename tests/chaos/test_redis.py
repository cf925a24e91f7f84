"""Redis frozen, then killed, under load; a gateway restarted gracefully under load."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx

from router.local.processes import poll_until
from router.local.redis_server import EmbeddedRedis
from router.storage import keys
from tests.chaos.harness import Load, figure, metrics, share_2xx
from tests.conftest import GatewayFactory, canary_yaml, write_experiment

FAST = {"TURNOUT_RECORDING_FLUSH_INTERVAL": "0.05", "TURNOUT_ACCESS_LOG": "false"}


def test_redis_frozen_then_killed_under_load_fails_nothing_and_loses_no_event(
    start_gateway: GatewayFactory, workers: dict[str, str], tmp_path: Path
) -> None:
    server = EmbeddedRedis(tmp_path / "redis", appendonly=True).start()
    try:
        write_experiment(tmp_path / "exp", canary_yaml(workers, {"v1": 80, "v2": 20}))
        gw = start_gateway(tmp_path / "exp", TURNOUT_REDIS_URL=server.url, **FAST)
        with Load(gw.url, concurrency=4) as load:
            load.wait_for(100)
            assert server.process is not None
            os.kill(server.process.pid, signal.SIGSTOP)  # frozen: every command times out
            poll_until(lambda: metrics(gw)["turnout_redis_up"] == 0, 15, what="Redis seen down")
            load.wait_for(100)
            frozen_backlog = metrics(gw)["turnout_events_buffered"]
            os.kill(server.process.pid, signal.SIGCONT)
            poll_until(lambda: metrics(gw)["turnout_events_buffered"] < 20, 30, what="catch-up")
            load.wait_for(100)
            kept_before = metrics(gw)["turnout_events_written_total"]
            time.sleep(1.5)  # appendfsync everysec: all written before now is on disk
            server.process.kill()  # killed: no goodbye, no final fsync
            load.wait_for(100)
            killed_backlog = metrics(gw)["turnout_events_buffered"]
            server.start()
            poll_until(lambda: metrics(gw)["turnout_redis_up"] == 1, 30, what="Redis back")
            load.wait_for(100)
        poll_until(lambda: metrics(gw)["turnout_events_buffered"] == 0, 30, what="the drain")
        final = metrics(gw)
        report = httpx.get(f"{gw.url}/experiments/exp/report", timeout=10).json()
        figure(
            "redis frozen then killed",
            load.samples,
            gw,
            backlog_frozen=f"{frozen_backlog:.0f}",
            backlog_killed=f"{killed_backlog:.0f}",
            redis_kept=f"{report['totals']['assigned']}/{final['turnout_events_written_total']:.0f}",
        )
        assert share_2xx(load.samples) == 1.0
        assert final["turnout_events_produced_total"] == load.sent()
        assert final["turnout_events_written_total"] == load.sent()
        assert final["turnout_events_dropped_total"] == 0
        assert frozen_backlog > 0 and killed_backlog > 0
        # Everything acknowledged over a second before the kill survived it (everysec).
        assert report["totals"]["assigned"] >= kept_before
    finally:
        server.stop()


def test_a_gateway_stopped_under_load_finishes_what_it_accepted_and_records_it(
    start_gateway: GatewayFactory,
    chaos_redis: EmbeddedRedis,
    workers: dict[str, str],
    tmp_path: Path,
) -> None:
    name = f"graceful-{os.getpid()}-{time.monotonic_ns() % 10**6}"
    write_experiment(tmp_path, canary_yaml(workers, {"v1": 50, "v2": 50}, name=name))
    gw = start_gateway(tmp_path, TURNOUT_REDIS_URL=chaos_redis.url, **FAST)
    with Load(gw.url, concurrency=6) as load:
        load.wait_for(150)
        gw.process.signal(signal.SIGTERM)
        poll_until(lambda: not gw.process.alive(), 60, what="the gateway to exit")
    code = gw.process.proc.returncode if gw.process.proc else None
    answered = [s for s in load.samples if s.status == 200]
    refused = [s for s in load.samples if s.status == 0]  # connections after the listener closed
    others = [s for s in load.samples if s.status not in (0, 200)]
    client = chaos_redis.client()
    recorded = {fields["request_id"] for _, fields in client.xrange(keys.events(name))}
    lost = [s for s in answered if s.body.get("request_id") not in recorded]
    figure(
        "graceful stop",
        answered,
        exit_code=code,
        refused_after_close=len(refused),
        recorded=f"{len(recorded)}/{len(answered)}",
    )
    assert code in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once it has shut down
    assert "lost_at_shutdown" not in gw.process.output()
    assert not others, [(s.status, s.body) for s in others[:5]]
    assert not lost  # every answer the clients got is in Redis
