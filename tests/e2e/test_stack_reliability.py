"""`turnout up` as an operator lives with it: a random salt kept in the state folder, a second
replica that joins the stack's Redis, Redis and workers killed and restarted with nothing lost,
and a child that keeps dying stops everything with a clear message."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import stat
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from router.local.processes import ManagedProcess, free_port, http_ok, poll_until
from router.storage import keys
from tests.conftest import canary_yaml, write_experiment
from tests.support import TOKEN, LocalStack


@pytest.fixture
def stack_factory(tmp_path: Path, models_dir: Path) -> Iterator[type[LocalStack]]:
    started: list[LocalStack] = []

    class Started(LocalStack):
        def __init__(self, **env: str) -> None:
            super().__init__(tmp_path / f"stack{len(started)}", models_dir, **env)
            started.append(self)

    yield Started
    for stack in started:
        stack.process.stop(30)


def predict(url: str, user: str) -> httpx.Response:
    return httpx.post(f"{url}/predict", json={"text": "hello", "user_id": user}, timeout=10)


def test_salt_join_and_restarts_lose_nothing(
    stack_factory: type[LocalStack], tmp_path: Path
) -> None:
    stack = stack_factory()
    stack.wait_ready()

    # A random salt, private to the state folder, that every replica of the stack uses.
    salt_file = stack.state / "salt"
    salt = salt_file.read_text().strip()
    assert len(salt) == 64 and salt != "turnout"
    assert stat.S_IMODE(salt_file.stat().st_mode) == 0o600

    # A second replica, started the way the README shows, joins the stack's Redis.
    port = free_port()
    replica = ManagedProcess(
        "replica",
        [sys.executable, "-m", "router", "gateway", "--port", str(port)],
        env={k: v for k, v in stack.env.items() if k != "TURNOUT_PORT"},
        log_path=tmp_path / "replica.log",
    ).start()
    other = f"http://127.0.0.1:{port}"
    try:
        poll_until(lambda: http_ok(f"{other}/readyz") or not replica.alive(), 60, what="replica")
        assert replica.alive(), replica.output()
        assert "joined_local_stack" in replica.output()
        served = predict(other, "joiner")
        assert served.status_code == 200
        rid = served.json()["request_id"]
        r = httpx.post(f"{stack.url}/feedback", json={"request_id": rid, "reward": 1}, timeout=10)
        assert r.status_code == 200, r.text  # the replica's outcome is in the stack's Redis
        entry = next(
            fields
            for _, fields in stack.redis().xrange(keys.events("exp"))
            if fields["request_id"] == rid
        )
        expected = hashlib.sha256(f"{salt}\x00joiner".encode()).hexdigest()[:16]
        assert entry["user_hash"] == expected

        # A rollback set on one replica holds on the other.
        r = httpx.post(
            f"{stack.url}/admin/experiments/exp/rollback",
            json={"reason": "drill"},
            headers={"authorization": f"Bearer {TOKEN}"},
        )
        assert r.status_code == 200, r.text
        poll_until(
            lambda: all(predict(other, f"u{i}").json()["variant"] == "v1" for i in range(20)),
            10,
            what="the rollback on the replica",
        )

        # Redis killed: restarted by the stack from its append-only file, flags and
        # attribution intact.
        time.sleep(1.2)  # everysec: what is older than a second is on disk
        old_redis = stack.child("redis-server")
        old_redis.kill()
        poll_until(lambda: "redis restarted" in stack.output(), 30, what="redis restarted")
        assert "redis exited" in stack.output()
        assert stack.child("redis-server").pid != old_redis.pid
        assert stack.redis().hget(keys.FLAGS, keys.flag_field("exp", "forced_variant")) == '"v1"'
        for url in (stack.url, other):
            assert {predict(url, f"k{i}").json()["variant"] for i in range(20)} == {"v1"}
        again = httpx.post(f"{other}/feedback", json={"request_id": rid, "reward": 0}, timeout=10)
        assert again.status_code == 409, again.text
        metrics = httpx.get(f"{stack.url}/metrics").text
        assert "turnout_redis_data_loss_total 0.0" in metrics

        # A worker killed: restarted, and the stack says so.
        worker = stack.child(f"--port {stack.ports['v2']}")
        worker.kill()
        poll_until(
            lambda: "worker profanity v2 restarted" in stack.output(), 60, what="v2 restarted"
        )
        assert "worker profanity v2 exited" in stack.output()
        assert http_ok(f"http://127.0.0.1:{stack.ports['v2']}/readyz")
    finally:
        replica.stop()

    stack.process.signal(signal.SIGINT)
    poll_until(lambda: not stack.process.alive(), 60, what="the stack to stop")
    assert not (stack.state / "stack.json").exists()
    assert (stack.state / "redis" / "appendonly.aof").exists()

    # Started again on the same state folder: the same salt.
    again_stack = stack_factory(TURNOUT_STATE_DIR=str(stack.state))
    again_stack.wait_ready()
    assert salt_file.read_text().strip() == salt


def test_a_child_that_keeps_exiting_stops_the_stack_with_a_clear_message(
    stack_factory: type[LocalStack],
) -> None:
    stack = stack_factory(TURNOUT_STACK_RESTART_LIMIT="0")
    stack.wait_ready()
    children = psutil.Process(stack.process.pid).children(recursive=True)
    stack.child(f"--port {stack.ports['v1']}").kill()
    poll_until(lambda: not stack.process.alive(), 60, what="the stack to give up")
    assert stack.process.proc is not None and stack.process.proc.returncode == 1
    assert "worker profanity v1 exited 1 times within 60s" in stack.output()
    poll_until(
        lambda: not any(c.is_running() and c.status() != "zombie" for c in children),
        30,
        what="every child to exit",
    )


def gateway_alone(tmp_path: Path, name: str, port: int, **env: str) -> ManagedProcess:
    """``turnout gateway`` with none of the test run's TURNOUT_* variables."""
    write_experiment(
        tmp_path / "experiments", canary_yaml({"v1": "http://127.0.0.1:1"}, {"v1": 100})
    )
    proc = ManagedProcess(
        name,
        [sys.executable, "-m", "router", "gateway", "--port", str(port)],
        log_path=tmp_path / f"{name}.log",
    )
    proc.env = {k: v for k, v in os.environ.items() if not k.startswith("TURNOUT_")}
    proc.env |= {
        "TURNOUT_EXPERIMENTS_DIR": str(tmp_path / "experiments"),
        "TURNOUT_STATE_DIR": str(tmp_path / "state"),
        **env,
    }
    return proc.start()


def exit_message(proc: ManagedProcess) -> str:
    poll_until(lambda: not proc.alive(), 60, what=f"{proc.name} to exit")
    assert proc.proc is not None and proc.proc.returncode == 1, proc.output()
    return " ".join(proc.output().split())


def test_a_replica_with_no_redis_to_join_refuses_to_start(tmp_path: Path) -> None:
    alone = gateway_alone(tmp_path, "no-stack", free_port())
    assert "no Redis: TURNOUT_REDIS_URL is not set and no local stack runs" in exit_message(alone)
    (tmp_path / "state").mkdir()
    dead = f"redis://127.0.0.1:{free_port()}/0"
    (tmp_path / "state" / "stack.json").write_text(json.dumps({"redis_url": dead}))
    stale = gateway_alone(tmp_path, "stale-stack", free_port())
    assert f"the local stack's Redis at {dead}" in exit_message(stale)


def test_the_public_default_salt_warns_and_is_refused_in_production(tmp_path: Path) -> None:
    production = gateway_alone(
        tmp_path,
        "production",
        free_port(),
        TURNOUT_NO_REDIS="true",
        TURNOUT_ENVIRONMENT="production",
    )
    assert "refusing to start in production" in exit_message(production)
    port = free_port()
    warned = gateway_alone(tmp_path, "development", port, TURNOUT_NO_REDIS="true")
    try:
        poll_until(
            lambda: http_ok(f"http://127.0.0.1:{port}/healthz") or not warned.alive(),
            60,
            what="the gateway",
        )
        lines = [json.loads(x) for x in warned.output().splitlines() if x.startswith("{")]
        salt = [x for x in lines if x.get("event") == "default_user_hash_salt"]
        assert salt and salt[0]["level"] == "warning"
        assert [x for x in lines if x.get("event") == "running_without_redis"]
    finally:
        warned.stop()
