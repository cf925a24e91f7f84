"""A real gateway across Redis restarts: stale pooled connections cost nothing, and a Redis that
comes back without its data is detected and cannot lift a rollback."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from pathlib import Path

import aiohttp
import httpx
import pytest

from router.local.processes import poll_until
from router.local.redis_server import EmbeddedRedis
from router.storage import keys
from tests.conftest import Gateway, GatewayFactory, WorkerFactory, canary_yaml, write_experiment

TOKEN = "restart-ops-token-0123456789"
FAST = {
    "TURNOUT_RECORDING_FLUSH_INTERVAL": "0.05",
    "TURNOUT_FLAGS_REFRESH_INTERVAL": "0.5",
    "TURNOUT_ADMIN_TOKENS": json.dumps({"ops": TOKEN}),
}


@pytest.fixture(scope="module")
def workers(start_worker: WorkerFactory) -> dict[str, str]:
    return {v: start_worker(v).url for v in ("v1", "v2")}


def served(gateway: Gateway, count: int) -> list[str]:
    ids = []
    for i in range(count):
        r = httpx.post(f"{gateway.url}/predict", json={"text": f"t{i}", "user_id": f"u{i}"})
        assert r.status_code == 200
        ids.append(r.json()["request_id"])
    return ids


def metric(gateway: Gateway, name: str) -> float:
    for line in httpx.get(f"{gateway.url}/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not exported")


def test_stale_pooled_connections_after_a_redis_restart_still_answer_200_and_409(
    start_gateway: GatewayFactory, workers: dict[str, str], tmp_path: Path
) -> None:
    server = EmbeddedRedis(tmp_path / "redis", appendonly=True).start()
    try:
        write_experiment(tmp_path / "exp", canary_yaml(workers, {"v1": 50, "v2": 50}))
        gw = start_gateway(tmp_path / "exp", TURNOUT_REDIS_URL=server.url, **FAST)
        ids = served(gw, 30)
        poll_until(lambda: metric(gw, "turnout_events_buffered") == 0, 10, what="the flush")

        async def concurrent(batch: list[str]) -> list[int]:
            async with aiohttp.ClientSession() as session:

                async def one(rid: str) -> int:
                    body = {"request_id": rid, "reward": 1}
                    async with session.post(f"{gw.url}/feedback", json=body) as r:
                        return r.status

                return await asyncio.gather(*(one(rid) for rid in batch))

        # Many feedbacks at once: the gateway's pool now holds many connections.
        assert asyncio.run(concurrent(ids[:12])) == [200] * 12
        time.sleep(1.2)  # everysec: what is older than a second is on disk
        server.stop()
        server.start()
        statuses = [
            httpx.post(f"{gw.url}/feedback", json={"request_id": rid, "reward": 1}).status_code
            for rid in ids[12:]
        ]
        statuses += asyncio.run(concurrent(ids[:4]))  # already credited before the restart
        print(f"after the restart: {Counter(statuses)}")
        assert statuses == [200] * 18 + [409] * 4
        assert metric(gw, "turnout_redis_data_loss_total") == 0
    finally:
        server.stop()


class Prober:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.variants: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Prober:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        i = 0
        with httpx.Client(timeout=30) as client:
            while not self._stop.is_set():
                i += 1
                body = {"text": "probe", "user_id": f"p{i}"}
                r = client.post(f"{self.gateway.url}/predict", json=body)
                self.variants[r.json().get("variant", str(r.status_code))] += 1


def test_a_redis_that_lost_its_data_is_detected_and_a_rollback_stays(
    start_gateway: GatewayFactory, workers: dict[str, str], tmp_path: Path
) -> None:
    server = EmbeddedRedis(tmp_path / "redis", appendonly=False).start()  # keeps nothing
    state = tmp_path / "state"
    try:
        write_experiment(tmp_path / "exp", canary_yaml(workers, {"v1": 50, "v2": 50}))
        env = {"TURNOUT_REDIS_URL": server.url, "TURNOUT_STATE_DIR": str(state), **FAST}
        gw = start_gateway(tmp_path / "exp", **env)
        r = httpx.post(
            f"{gw.url}/admin/experiments/exp/rollback",
            json={"reason": "canary is bad"},
            headers={"authorization": f"Bearer {TOKEN}"},
        )
        assert r.status_code == 200, r.text
        poll_until(lambda: (state / "flags.json").exists(), 10, what="the flags saved")
        with Prober(gw) as prober:
            server.stop()
            server.start()  # empty
            poll_until(
                lambda: metric(gw, "turnout_redis_data_loss_total") == 1, 15, what="the loss seen"
            )
            time.sleep(1.0)
        print(f"across the data loss: {dict(prober.variants)}")
        assert set(prober.variants) == {"v1"}  # the canary never got a request
        client = server.client()
        assert client.hget(keys.FLAGS, keys.flag_field("exp", "forced_variant")) == '"v1"'
        lines = [json.loads(x) for x in gw.process.output().splitlines() if x.startswith("{")]
        [lost] = [x for x in lines if x.get("event") == "redis_data_lost"]
        assert lost["level"] == "error" and lost["flags_restored"] == ["exp/forced_variant"]
        history = httpx.get(
            f"{gw.url}/admin/flags/history",
            headers={"authorization": f"Bearer {TOKEN}"},
        ).json()
        assert history["events"][0]["action"] == "restore"

        # Lost again while no gateway runs: the next one restores from the state folder.
        gw.process.stop()
        server.stop()
        server.start()
        fresh = start_gateway(tmp_path / "exp", **env)
        assert metric(fresh, "turnout_redis_data_loss_total") == 1
        assert {
            httpx.post(f"{fresh.url}/predict", json={"text": "x", "user_id": f"q{i}"}).json()[
                "variant"
            ]
            for i in range(30)
        } == {"v1"}
    finally:
        server.stop()
