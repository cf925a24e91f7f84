"""Graceful drain: SIGTERM on a gateway process under load loses nothing it accepted.

A real gateway (events held in its buffer: the flush interval is longer than the test), a
slow real worker (so requests are in flight when the signal comes), and 32 clients sending
without pause. After SIGTERM the gateway stops accepting, lets the requests in flight finish,
writes its buffer to Redis and exits 0; every request it answered is in Redis.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp

from router.local.redis_server import RedisTopology
from router.storage import keys
from tests.conftest import GatewayFactory, WorkerFactory, canary_yaml, write_experiment

CLIENTS = 32


async def hammer(url: str, stop_at: float) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def client() -> None:
            while time.monotonic() < stop_at:
                rid = uuid.uuid4().hex
                call: dict[str, Any] = {"rid": rid, "start": time.monotonic(), "status": None}
                try:
                    async with session.post(
                        f"{url}/predict", json={"text": "hello"}, headers={"x-request-id": rid}
                    ) as r:
                        await r.read()
                        call["status"] = r.status
                except (aiohttp.ClientError, TimeoutError) as exc:
                    call["error"] = type(exc).__name__
                    await asyncio.sleep(0.01)
                call["end"] = time.monotonic()
                calls.append(call)

        await asyncio.gather(*(client() for _ in range(CLIENTS)))
    return calls


def test_sigterm_under_load_finishes_in_flight_requests_and_flushes_every_event(
    start_worker: WorkerFactory,
    start_gateway: GatewayFactory,
    redis_server: RedisTopology,
    tmp_path: Path,
) -> None:
    name = f"drain-{uuid.uuid4().hex[:6]}"
    worker = start_worker("v1", TURNOUT_WORKER_FAULT_DELAY_MS="200")
    folder = tmp_path / "experiments"
    write_experiment(folder, canary_yaml({"v1": worker.url}, {"v1": 100}, name=name))
    gateway = start_gateway(
        folder,
        **redis_server.env,
        TURNOUT_RECORDING_FLUSH_INTERVAL="60",  # everything waits in the buffer until the end
        TURNOUT_RECORDING_BATCH_SIZE="5000",
        TURNOUT_ACCESS_LOG="false",
        TURNOUT_DRAIN_TIMEOUT="20",
    )
    process = gateway.process

    async def scenario() -> tuple[list[dict[str, Any]], float]:
        load = asyncio.create_task(hammer(gateway.url, time.monotonic() + 6.0))
        await asyncio.sleep(2.0)
        signalled = time.monotonic()
        process.signal(signal.SIGTERM)
        return await load, signalled

    calls, signalled = asyncio.run(scenario())
    assert process.proc is not None
    assert process.proc.wait(30) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal it handled
    log = process.output()
    assert "Traceback" not in log and "recording_lost_at_shutdown" not in log, log

    answered = {c["rid"] for c in calls if c["status"] == 200}
    assert {c["status"] for c in calls} <= {200, None}, "a request got an error answer"
    in_flight = [c for c in calls if c["start"] < signalled < c["end"] and c["status"] == 200]
    assert len(in_flight) >= CLIENTS // 2, "requests in flight at SIGTERM must finish"
    assert any(c["start"] > signalled and c["status"] is None for c in calls)  # stopped accepting
    recorded = [f["request_id"] for _, f in redis_server.client().xrange(keys.events(name))]
    assert len(recorded) == len(set(recorded))
    lost = answered - set(recorded)
    assert not lost, f"{len(lost)} answered requests lost at shutdown"
    assert set(recorded) <= {c["rid"] for c in calls}
    assert len(answered) >= 100
