"""`turnout up` brings up Redis, the workers and the gateway, and Ctrl-C stops them all."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import psutil

from router.local.processes import ManagedProcess, free_port, poll_until
from tests.conftest import canary_yaml, write_experiment


def turnout_up(
    models_dir: Path, tmp_path: Path, *args: str, **env: str
) -> tuple[ManagedProcess, int]:
    """``turnout up`` on the test's experiments folder, free ports and a state folder of its own;
    returns the process and the gateway's port."""
    gateway_port = free_port()
    stack = ManagedProcess(
        "turnout up",
        [sys.executable, "-m", "router", "up", *args],
        env={
            "TURNOUT_MODELS_DIR": str(models_dir),
            "TURNOUT_EXPERIMENTS_DIR": str(tmp_path / "experiments"),
            "TURNOUT_STATE_DIR": str(tmp_path / "state"),
            "TURNOUT_PORT": str(gateway_port),
            "TURNOUT_REDIS_PORT": str(free_port()),
            "COLUMNS": "200",
            **env,
        },
        log_path=tmp_path / "up.log",
    ).start()
    return stack, gateway_port


def turnout_cli(
    tmp_path: Path, gateway_port: int, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    """A ``turnout`` command as a user runs it next to that stack: same state folder and port,
    no token of its own unless ``env`` gives one."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TURNOUT_")}
    clean |= {
        "TURNOUT_STATE_DIR": str(tmp_path / "state"),
        "TURNOUT_PORT": str(gateway_port),
        "COLUMNS": "200",
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "router", *args],
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_up_serves_the_experiment_and_ctrl_c_stops_everything(
    models_dir: Path, tmp_path: Path
) -> None:
    ports = {v: free_port() for v in ("v1", "v2", "v3")}
    workers = {v: f"http://127.0.0.1:{p}" for v, p in ports.items()}
    write_experiment(
        tmp_path / "experiments",
        canary_yaml(workers, {"v1": 90, "v2": 10, "v3": 0}, sticky="user_id"),
    )
    stack, gateway_port = turnout_up(models_dir, tmp_path)
    try:
        ready = f"gateway ready at http://127.0.0.1:{gateway_port}"
        poll_until(
            lambda: ready in stack.output() or not stack.alive(), 120, what="the stack to start"
        )
        assert stack.alive(), stack.output()
        children = psutil.Process(stack.pid).children(recursive=True)
        names = " ".join(" ".join(c.cmdline()) for c in children)
        assert "redis-server" in names
        assert names.count(" worker ") == 3
        assert " gateway " in names

        r = httpx.post(
            f"http://127.0.0.1:{gateway_port}/predict", json={"text": "hello", "user_id": "u1"}
        )
        assert r.status_code == 200
        assert r.json()["model_version"] in ("v1", "v2")

        # No configured token: one was made, kept 0600 in the state folder, printed once next
        # to "gateway ready at", and the CLI finds it for this gateway with no other step.
        token_file = tmp_path / "state" / "admin-token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        token = json.loads(token_file.read_text())["token"]
        out = stack.output()
        assert out.count(token) == 1
        assert out.index(ready) < out.index(token)
        done = turnout_cli(
            tmp_path, gateway_port, "flags", "set", "exp", "kill_switch", "true", "--reason", "t"
        )
        assert done.returncode == 0, done.stdout + done.stderr
        flags = httpx.get(
            f"http://127.0.0.1:{gateway_port}/admin/flags",
            headers={"authorization": f"Bearer {token}"},
        ).json()
        assert flags["experiments"]["exp"]["flags"]["kill_switch"] is True, flags
        history = turnout_cli(tmp_path, gateway_port, "flags", "history", "--json")
        assert json.loads(history.stdout)["events"][0]["actor"] == "local"
        assert token not in (tmp_path / "state" / "logs" / "gateway.log").read_text()

        stack.signal(signal.SIGINT)
        poll_until(lambda: not stack.alive(), 60, what="the stack to stop")
        poll_until(
            lambda: not any(c.is_running() and c.status() != "zombie" for c in children),
            30,
            what="every child to exit",
        )
        assert not token_file.exists()  # the token lived as long as its stack
    finally:
        stack.stop()


def test_up_starts_turnout_workers_only_and_says_which_servers_are_not_ready(
    models_dir: Path, tmp_path: Path
) -> None:
    worker, dead, passive = free_port(), free_port(), free_port()
    write_experiment(
        tmp_path / "experiments",
        "name: mixed\nmodel: profanity\ncontrol: v1\nvariants:\n"
        f"  v1: {{url: 'http://127.0.0.1:{worker}'}}\n"
        f"  bento: {{url: 'http://127.0.0.1:{dead}', protocol: bentoml}}\n"
        f"  seed: {{url: 'http://127.0.0.1:{passive}', protocol: http_json, health: none}}\n"
        "policy: {kind: canary, weights: {v1: 80, bento: 10, seed: 10}}\n",
    )
    configured = "configured-token-0123456789"
    stack, gateway_port = turnout_up(
        models_dir,
        tmp_path,
        TURNOUT_UP_READY_TIMEOUT="3",
        TURNOUT_ADMIN_TOKENS=json.dumps({"ops": configured}),
    )
    try:
        ready = f"gateway ready at http://127.0.0.1:{gateway_port}"
        poll_until(
            lambda: ready in stack.output() or not stack.alive(), 120, what="the stack to start"
        )
        out = stack.output()
        assert stack.alive(), out
        assert f"bentoml model server bento of mixed at http://127.0.0.1:{dead}: NOT READY" in out
        assert (
            f"http_json model server seed of mixed at http://127.0.0.1:{passive}: ready (passive"
            in out
        )
        children = psutil.Process(stack.pid).children(recursive=True)
        names = " ".join(" ".join(c.cmdline()) for c in children)
        assert names.count(" worker ") == 1 and f"--port {worker}" in names

        # A configured token wins: no local one is made, and the configured one works.
        assert "admin token" not in out
        assert not (tmp_path / "state" / "admin-token").exists()
        refused = turnout_cli(tmp_path, gateway_port, "flags", "set", "mixed", "frozen", "true")
        assert refused.returncode == 2 and "no admin token" in refused.stderr + refused.stdout
        done = turnout_cli(
            tmp_path,
            gateway_port,
            "flags",
            "set",
            "mixed",
            "frozen",
            "true",
            TURNOUT_ADMIN_TOKEN=configured,
        )
        assert done.returncode == 0, done.stdout + done.stderr
    finally:
        stack.stop()


def test_up_with_traffic_shows_live_traffic_in_the_printed_console(
    models_dir: Path, tmp_path: Path
) -> None:
    """What ``make run`` does: the printed console URL shows traffic with no other step."""
    ports = {v: free_port() for v in ("v1", "v2")}
    workers = {v: f"http://127.0.0.1:{p}" for v, p in ports.items()}
    write_experiment(tmp_path / "experiments", canary_yaml(workers, {"v1": 70, "v2": 30}))
    stack, gateway_port = turnout_up(models_dir, tmp_path, "--traffic", "20")
    try:
        console = f"console at http://127.0.0.1:{gateway_port}/ui/"
        poll_until(
            lambda: console in stack.output() or not stack.alive(), 120, what="the console URL"
        )
        assert stack.alive(), stack.output()
        url = stack.output().split("console at ", 1)[1].split()[0]
        assert httpx.get(url).status_code == 200

        def traffic() -> int:
            body = httpx.get(f"{url}api/experiments/exp?range=15m").json()
            volume = body["charts"]["volume"]["series"][:-1]
            return int(sum(v for s in volume for _, v in s["data"] if v))

        poll_until(lambda: traffic() >= 40, 30, what="demo traffic in the console")
        seen = traffic()
        poll_until(lambda: traffic() > seen, 15, what="more traffic: it is live")
    finally:
        stack.stop()
