"""Stepped rollouts end to end: real Redis, worker and gateway processes, fast settings.

- a good candidate on two replicas reaches 100% and is promoted, one transition per step;
- a candidate whose worker starts failing mid-rollout is rolled back automatically;
- a skewed assignment halts on SRM (no promotion; ``turnout status`` says why);
- restarting the gateway mid-rollout resumes at the same step;
- a firing Alertmanager payload rolls back, once.
"""

from __future__ import annotations

import json
import random
import shutil
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from router.cli import app as cli
from router.hashing.turnout import turnout_unit
from router.local.processes import ManagedProcess, free_port, http_ok, poll_until
from router.local.redis_server import RedisTopology
from router.rollout.sequential import srm_test
from router.storage import keys
from tests.config_refs import CONFIG
from tests.conftest import (
    Gateway,
    GatewayFactory,
    WorkerFactory,
    requires_ci_tool,
    write_experiment,
)

pytestmark = pytest.mark.slow

DB = 9  # a database of its own on the shared test server
NAMES = ("good", "failing", "skewed", "restart", "alerted", "alertmanager", "aa-heavy")
TOKEN = "rollout-token-0123456789"
FAST = {
    "TURNOUT_ROLLOUT_CHECK_INTERVAL": "0.2",
    "TURNOUT_ROLLOUT_REFRESH_INTERVAL": "0.2",
    "TURNOUT_ROLLOUT_LEASE_TTL": "2",
    "TURNOUT_ROLLOUT_SLOT_SECONDS": "1",
    "TURNOUT_RECORDING_FLUSH_INTERVAL": "0.05",
    "TURNOUT_ADMIN_TOKENS": json.dumps({"ops": TOKEN}),
    "TURNOUT_ACCESS_LOG": "false",
    "TURNOUT_BREAKER_RESET_SECONDS": "30",
}


@dataclass
class Env:
    redis_env: dict[str, str]
    redis: Any
    workers: dict[str, str]
    root: Path


@pytest.fixture(scope="module")
def env(
    start_worker: WorkerFactory,
    redis_server: RedisTopology,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Env]:
    server = redis_server.with_db(DB)
    client = server.client()
    for name in NAMES:  # what an earlier run left (one instance: a database of its own)
        for key in client.scan_iter(match=f"turnout:exp:{{{name}}}:*"):
            client.delete(key)
    workers = {v: start_worker(v).url for v in ("v1", "v2")}
    yield Env(server.env, client, workers, tmp_path_factory.mktemp("rollouts"))
    client.close()


def rollout_yaml(
    name: str,
    urls: dict[str, str],
    steps: list[int],
    *,
    interval: str = "1s",
    min_samples: int = 100,
    gates: str = "    - {metric: error_rate, max_increase: 0.2, hard_increase: 0.1}\n",
    extra: str = "",
) -> str:
    return (
        f"name: {name}\nmodel: m-{name}\ncontrol: v1\nvariants:\n"
        + "".join(f"  {v}: {{url: '{u}'}}\n" for v, u in urls.items())
        + "policy:\n  kind: canary\n  weights: {v1: 100, v2: 0}\n  sticky: user_id\n"
        + f"rollout:\n  candidate: v2\n  steps: {steps}\n  interval: {interval}\n"
        + f"  min_samples: {min_samples}\n  gates:\n{gates}"
        + extra
    )


def start(env: Env, start_gateway: GatewayFactory, name: str, text: str, **more: str) -> Gateway:
    folder = env.root / name
    write_experiment(folder, text, f"{name}.yaml")
    return start_gateway(folder, **env.redis_env, **FAST, **more)


class Traffic:
    """Requests (and optional feedback) from a background thread, bounded in count and time."""

    def __init__(self, urls: list[str], model: str, feedback: float | None = None) -> None:
        self.urls = urls
        self.model = model
        self.feedback = feedback
        self.stop = threading.Event()
        self.variants: Counter[str] = Counter()
        self.statuses: Counter[int] = Counter()
        self.users: list[str] | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Traffic:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(30)

    def _run(self) -> None:
        rng = random.Random(7)
        with httpx.Client(timeout=10) as client:
            for i in range(200_000):
                if self.stop.is_set():
                    return
                url = self.urls[i % len(self.urls)]
                user = rng.choice(self.users) if self.users else f"user-{rng.randrange(10**9)}"
                try:
                    r = client.post(
                        f"{url}/models/{self.model}/predict",
                        json={"text": "have a nice day", "user_id": user},
                    )
                except httpx.HTTPError:
                    continue
                self.statuses[r.status_code] += 1
                if r.status_code != 200:
                    continue
                body = r.json()
                self.variants[body["variant"]] += 1
                if self.feedback is not None:
                    client.post(
                        f"{url}/feedback",
                        json={"request_id": body["request_id"], "reward": self.feedback},
                    )


def rollout(url: str, name: str) -> dict[str, Any]:
    r = httpx.get(f"{url}/experiments/{name}/rollout", timeout=5)
    assert r.status_code == 200, r.text
    return dict(r.json())


def phase(url: str, name: str) -> str:
    return str(rollout(url, name)["phase"])


def admin(url: str, method: str, path: str, token: str | None = TOKEN, **kw: Any) -> httpx.Response:
    headers = kw.pop("headers", {})
    if token:
        headers["authorization"] = f"Bearer {token}"
    return httpx.request(method, f"{url}{path}", headers=headers, timeout=10, **kw)


def audit(env: Env, name: str) -> list[dict[str, str]]:
    return [f for _, f in env.redis.xrange(keys.AUDIT) if f.get("experiment") == name]


def test_good_candidate_on_two_replicas_is_promoted_with_one_transition_per_step(
    env: Env, start_gateway: GatewayFactory
) -> None:
    name = "good"
    gates = (
        "    - {metric: error_rate, max_increase: 0.2}\n"
        "    - {metric: reward, max_decrease: 0.2, label_delay: 1s}\n"
    )
    text = rollout_yaml(name, env.workers, [20, 50, 100], gates=gates)
    a = start(env, start_gateway, name, text)
    b = start_gateway(a.experiments_dir, **env.redis_env, **FAST)
    with Traffic([a.url, b.url], f"m-{name}", feedback=1.0):
        poll_until(lambda: phase(a.url, name) == "promoted", 120, what="promotion")
    data = rollout(b.url, name)
    actions = [item["action"] for item in data["history"]]
    assert actions == ["start", "advance", "advance", "promote"], actions
    seqs = [int(item["seq"]) for item in data["history"]]
    assert seqs == list(range(1, len(seqs) + 1))
    events = audit(env, name)
    assert [e["action"] for e in events if e["action"].startswith("rollout_")] == [
        "rollout_start",
        "rollout_advance",
        "rollout_advance",
        "rollout_promote",
    ]
    advance = json.loads(next(e["new"] for e in events if e["action"] == "rollout_advance"))
    error_gate = next(g for g in advance["gates"] if g["gate"] == "error_rate")
    assert error_gate["verdict"] == "pass" and error_gate["n"]["candidate"] >= 100
    assert len(error_gate["interval"]) == 2
    # The file is rewritten, reloaded and audited after the state says promoted: wait for it.
    poll_until(
        lambda: any(e["action"] == "promote" for e in audit(env, name)), 15, what="the promotion"
    )
    text_now = (a.experiments_dir / f"{name}.yaml").read_text()
    assert "blue_green" in text_now and "rollout" not in text_now.split("\n", 3)[-1]
    for url in (a.url, b.url):
        poll_until(
            lambda u=url: (
                httpx.get(f"{u}/experiments").json()["experiments"][0]["policy"] == "blue_green"
            ),
            10,
            what="the promoted file to be loaded",
        )


def test_candidate_failing_mid_rollout_is_rolled_back(
    env: Env, start_gateway: GatewayFactory, models_dir: Path, tmp_path: Path
) -> None:
    name = "failing"
    port = free_port()

    def worker(**extra: str) -> ManagedProcess:
        process = ManagedProcess(
            "worker-v2",
            [sys.executable, "-m", "router", "worker", "--version", "v2", "--port", str(port)],
            env={"TURNOUT_MODELS_DIR": str(models_dir), **extra},
            log_path=tmp_path / f"worker-{len(extra)}.log",
        ).start()
        poll_until(lambda: http_ok(f"http://127.0.0.1:{port}/readyz"), 30, what="worker v2")
        return process

    candidate = worker()
    urls = {"v1": env.workers["v1"], "v2": f"http://127.0.0.1:{port}"}
    text = rollout_yaml(name, urls, [20, 50, 100], interval="2s", min_samples=100)
    gateway = start(env, start_gateway, name, text)
    try:
        with Traffic([gateway.url], f"m-{name}"):
            poll_until(
                lambda: (rollout(gateway.url, name)["rollout"]["step"] or 0) >= 1,
                90,
                what="the first advance",
            )
            candidate.stop()  # the candidate starts failing: every prediction a 500
            candidate = worker(TURNOUT_WORKER_FAULT_STATUS="500")
            poll_until(lambda: phase(gateway.url, name) == "rolled_back", 60, what="rollback")
        data = rollout(gateway.url, name)
        assert data["weights"] == {"v1": 100.0, "v2": 0.0}
        last = data["history"][-1]
        assert last["action"] == "rollback" and last["from"]["step"] >= 1
        assert any(g["verdict"] == "fail" for g in last["gates"])
        flags = admin(gateway.url, "GET", "/admin/flags").json()
        assert flags["experiments"][name]["flags"]["forced_variant"] == "v1"
        events = [e["action"] for e in audit(env, name)]
        assert "rollout_rollback" in events and "rollback" in events
        for _ in range(20):
            r = httpx.post(
                f"{gateway.url}/models/m-{name}/predict", json={"text": "hi", "user_id": "x"}
            )
            assert r.json()["served_variant"] == "v1"
        verdict = httpx.get(f"{gateway.url}/experiments/{name}/verdict?http_status=true")
        assert verdict.status_code == 412 and verdict.json()["verdict"] == "fail"
    finally:
        candidate.stop()


def test_srm_counts_users_a_heavy_user_passes_lost_users_halt(
    env: Env, start_gateway: GatewayFactory
) -> None:
    name = "skewed"
    text = (
        f"name: {name}\nmodel: m-{name}\ncontrol: v1\nvariants:\n"
        + "".join(f"  {v}: {{url: '{u}'}}\n" for v, u in env.workers.items())
        + "policy:\n  kind: canary\n  weights: {v1: 50, v2: 50}\n  sticky: user_id\n"
        + "srm: {action: halt, p: 0.001}\n"
    )
    gateway = start(env, start_gateway, name, text)

    def halted() -> bool:
        listed = httpx.get(f"{gateway.url}/experiments").json()["experiments"][0]
        return bool(listed["rollout"]["srm"]["status"] == "halt")

    def checked_users() -> int:
        last = rollout(gateway.url, name)["srm"].get("last") or {}
        return sum(last.get("counts", {}).values())

    # One heavy user sends two thirds of the requests: they skew to its variant, but the
    # unit that was randomized is the user, and users split fairly: no mismatch.
    fair = Traffic([gateway.url], f"m-{name}")
    fair.users = ["heavy"] * 60 + [f"u{i}" for i in range(30)]
    with fair:
        poll_until(
            lambda: checked_users() == 31 and sum(fair.variants.values()) >= 400,
            60,
            what="400 requests of 31 users checked",
        )
    assert not halted() and max(fair.variants.values()) > 0.6 * sum(fair.variants.values())
    # Users lost on one arm (a client that drops most of the candidate's users): 160 users
    # land on v1 and 40 on v2, a real mismatch of users, halts.
    on = {"v1": [], "v2": []}  # type: dict[str, list[str]]
    for i in range(10_000):
        user = f"s{i}"
        on["v1" if turnout_unit(name, user) < 0.5 else "v2"].append(user)
    skewed = Traffic([gateway.url], f"m-{name}")
    skewed.users = on["v1"][:160] + on["v2"][:40]
    with skewed:
        poll_until(halted, 60, what="the SRM halt")
    report = rollout(gateway.url, name)
    assert report["srm"]["last"]["mismatch"] is True and report["srm"]["last"]["p_value"] < 0.001
    r = admin(
        gateway.url,
        "POST",
        f"/admin/experiments/{name}/promote",
        json={"version": "v2", "reason": "ship it"},
    )
    assert r.status_code == 409 and r.json()["error"] == "srm_halted"
    metrics = httpx.get(f"{gateway.url}/metrics").text
    assert f'turnout_srm_mismatch{{action="halt",experiment="{name}"}} 1.0' in metrics
    result = CliRunner().invoke(
        cli, ["status"], env={"TURNOUT_ADMIN_URL": gateway.url, "TURNOUT_ADMIN_TOKEN": TOKEN}
    )
    assert result.exit_code == 0, result.output
    assert "sample ratio mismatch" in result.output and "halt" in result.output
    assert any(e["action"] == "srm_halt" for e in audit(env, name))
    # A new config version counts afresh (the halt was about the old one's assignments).
    write_experiment(
        gateway.experiments_dir, text.replace("v2: 50}", "v2: 50}  # fixed"), f"{name}.yaml"
    )
    poll_until(lambda: not halted(), 20, what="the new config to count afresh")


def test_restarted_gateway_resumes_at_the_same_step(
    env: Env, start_gateway: GatewayFactory
) -> None:
    name = "restart"
    text = rollout_yaml(name, env.workers, [10, 30, 60, 100], min_samples=60)
    first = start(env, start_gateway, name, text)
    with Traffic([first.url], f"m-{name}"):
        poll_until(
            lambda: (rollout(first.url, name)["rollout"]["step"] or 0) >= 1, 90, what="step 2"
        )
    # Hold the step (the window may already hold enough samples to advance on its own).
    path = f"/admin/experiments/{name}/rollout/pause"
    assert admin(first.url, "POST", path, json={"reason": "restart"}).status_code == 200
    before = rollout(first.url, name)["rollout"]
    first.process.stop()
    second = start_gateway(first.experiments_dir, **env.redis_env, **FAST)
    after = rollout(second.url, name)
    assert (after["rollout"]["step"], after["rollout"]["phase"]) == (before["step"], "paused")
    percent = before["percent"]
    assert after["weights"] == {"v1": 100.0 - percent, "v2": percent}
    traffic = Traffic([second.url], f"m-{name}")
    traffic.users = [f"user-{i}" for i in range(400)]
    with traffic:
        poll_until(lambda: sum(traffic.variants.values()) >= 400, 60, what="traffic")
    share = traffic.variants["v2"] / sum(traffic.variants.values())
    assert abs(share - percent / 100.0) < 0.12, (share, percent)
    path = f"/admin/experiments/{name}/rollout/resume"
    assert admin(second.url, "POST", path, json={"reason": "back"}).status_code == 200
    seen: list[int] = []

    def advanced() -> bool:
        seen.append(int(rollout(second.url, name)["rollout"]["step"]))
        return seen[-1] > before["step"]

    with Traffic([second.url], f"m-{name}"):
        poll_until(advanced, 90, what="the next step after the restart")
    assert min(seen) >= before["step"]
    actions = [h["action"] for h in rollout(second.url, name)["history"]]
    pause = actions.index("pause")
    assert actions[pause + 1] == "resume" and set(actions[:pause]) == {"start", "advance"}
    assert actions.count("start") == 1  # the restarted replica did not start it afresh


def test_firing_alertmanager_payload_rolls_back_once(
    env: Env, start_gateway: GatewayFactory
) -> None:
    name = "alerted"
    text = rollout_yaml(name, env.workers, [10, 100], interval="1h", min_samples=100000)
    gateway = start(env, start_gateway, name, text)
    poll_until(lambda: phase(gateway.url, name) == "running", 20, what="the rollout to start")
    argo = httpx.get(f"{gateway.url}/experiments/{name}/verdict")  # Argo's web provider
    assert argo.status_code == 200 and argo.json()["verdict"] == "inconclusive"
    flagger = httpx.post(f"{gateway.url}/experiments/{name}/verdict?http_status=true", json={})
    assert flagger.status_code == 425 and flagger.json()["verdict"] == "inconclusive"
    assert httpx.get(f"{gateway.url}/experiments/nosuch/verdict").status_code == 404

    def alert(status: str, experiment: str = name, action: str = "rollback") -> dict[str, Any]:
        return {
            "version": "4",
            "status": status,
            "receiver": "turnout",
            "alerts": [
                {
                    "status": status,
                    "labels": {
                        "alertname": "TurnoutHighErrorRatio",
                        "experiment": experiment,
                        "turnout_action": action,
                    },
                    "annotations": {"summary": "errors"},
                    "startsAt": "2026-11-30T10:00:00Z",
                    "fingerprint": "abc123",
                }
            ],
        }

    def changes() -> tuple[object, ...]:
        return (len(audit(env, name)), env.redis.hget(keys.FLAGS, f"{name}/forced_variant"))

    before = changes()
    for body, status in [
        (alert("firing"), 401),
        ({"alerts": "nope"}, 400),
        ({"alerts": [{"status": "firing", "labels": {"experiment": name}, "x": 1}]}, 200),
        ({"alerts": [{"status": "maybe", "labels": {}}]}, 400),
        (alert("firing", action="explode"), 400),
        (alert("firing", experiment="nosuch"), 404),
        (alert("resolved"), 200),
    ]:
        token = None if status == 401 else TOKEN
        r = admin(gateway.url, "POST", "/admin/alertmanager", token=token, json=body)
        assert r.status_code == status, r.text
        assert changes() == before, body
    r = admin(
        gateway.url,
        "POST",
        "/admin/alertmanager",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 400 and r.json()["error"] == "invalid_json"
    assert changes() == before
    r = admin(gateway.url, "POST", "/admin/alertmanager", json=alert("firing"))
    assert r.status_code == 200 and r.json()["calls"][0]["result"] == "acted"
    assert phase(gateway.url, name) == "rolled_back"
    acted = changes()
    assert acted[1] == '"v1"'
    r = admin(gateway.url, "POST", "/admin/alertmanager", json=alert("firing"))
    assert r.json()["calls"][0]["result"].startswith("repeat")
    assert changes() == acted
    verdict = httpx.get(f"{gateway.url}/experiments/{name}/verdict").json()
    assert verdict["verdict"] == "fail" and verdict["weights"] == {"v1": 100.0, "v2": 0.0}


def test_a_real_alertmanager_rolls_back_through_the_sample_config(
    env: Env, start_gateway: GatewayFactory, tmp_path: Path
) -> None:
    """Debian's Alertmanager with config/alertmanager.yml (pointed at this gateway) delivers a
    firing alert to POST /admin/alertmanager, with the bearer token from its credentials file."""
    binary = shutil.which("prometheus-alertmanager")
    requires_ci_tool(binary is not None, "prometheus-alertmanager")
    assert binary is not None
    name = "alertmanager"
    text = rollout_yaml(name, env.workers, [10, 100], interval="1h", min_samples=100000)
    gateway = start(env, start_gateway, name, text)
    poll_until(lambda: phase(gateway.url, name) == "running", 20, what="the rollout to start")
    config = yaml.safe_load((CONFIG / "alertmanager.yml").read_text())
    (receiver,) = [r for r in config["receivers"] if r["name"] == "turnout"]
    hook = receiver["webhook_configs"][0]
    hook["url"] = f"{gateway.url}/admin/alertmanager"
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    hook["http_config"]["authorization"]["credentials_file"] = str(token_file)
    config["route"]["routes"][0]["group_wait"] = "0s"
    (tmp_path / "alertmanager.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    manager = ManagedProcess(
        "alertmanager",
        [
            binary,
            f"--config.file={tmp_path / 'alertmanager.yml'}",
            f"--storage.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        log_path=tmp_path / "alertmanager.log",
    ).start()
    try:
        api = f"http://127.0.0.1:{port}/api/v2"
        poll_until(lambda: http_ok(f"{api}/status"), 30, what="alertmanager")
        alert = [
            {
                "labels": {
                    "alertname": "TurnoutFallbackRate",
                    "experiment": name,
                    "variant": "v2",
                    "turnout_action": "rollback",
                    "severity": "warn",
                },
                "annotations": {"summary": "fallbacks"},
            }
        ]
        assert httpx.post(f"{api}/alerts", json=alert, timeout=5).status_code == 200
        poll_until(lambda: phase(gateway.url, name) == "rolled_back", 60, what="the rollback")
        events = audit(env, name)
        rollbacks = [e for e in events if e["action"] == "rollback"]
        assert len(rollbacks) == 1 and rollbacks[0]["actor"] == "ops"
        assert "TurnoutFallbackRate" in rollbacks[0]["reason"]
    finally:
        manager.stop()


def test_operator_commands_through_the_cli(env: Env, start_gateway: GatewayFactory) -> None:
    folder = env.root / "cli"
    slow = {"interval": "1h", "min_samples": 100000}
    write_experiment(folder, rollout_yaml("cli-a", env.workers, [10, 100], **slow), "a.yaml")  # type: ignore[arg-type]
    write_experiment(folder, rollout_yaml("cli-b", env.workers, [10, 100], **slow), "b.yaml")  # type: ignore[arg-type]
    gateway = start_gateway(folder, **env.redis_env, **FAST)
    for name in ("cli-a", "cli-b"):  # started, and looked at once (the gates have numbers)
        poll_until(
            lambda n=name: bool(rollout(gateway.url, n)["rollout"]["gates"]),
            20,
            what="the rollouts' first look",
        )
    runner = CliRunner()
    cli_env = {"TURNOUT_ADMIN_URL": gateway.url, "TURNOUT_ADMIN_TOKEN": TOKEN, "COLUMNS": "200"}

    def turnout(*args: str, token: str | None = TOKEN) -> Any:
        return runner.invoke(cli, ["rollout", *args], env={**cli_env, "TURNOUT_ADMIN_TOKEN": token})

    shown = turnout("status", "cli-a")
    assert shown.exit_code == 0, shown.output
    assert "candidate v2: running, step 1" in shown.output and "error_rate" in shown.output
    assert "next:" in shown.output
    as_json = json.loads(turnout("status", "cli-a", "--json").output)
    assert as_json["rollout"]["gates"][0]["gate"] == "error_rate"

    before = (len(audit(env, "cli-a")), phase(gateway.url, "cli-a"))
    assert turnout("pause", "cli-a").exit_code == 2  # --reason is required
    assert turnout("pause", "cli-a", "--reason", "x", token="wrong-token").exit_code == 1
    assert turnout("pause", "nosuch", "--reason", "x").exit_code == 1
    for path, body, status in [
        ("/admin/experiments/cli-a/rollout/pause", {"reason": "x"}, 401),
        ("/admin/experiments/nosuch/rollout/pause", {"reason": "x"}, 404),
        ("/admin/experiments/cli-a/rollout/explode", {"reason": "x"}, 422),
        ("/admin/experiments/cli-a/rollout/pause", {}, 422),
    ]:
        token = None if status == 401 else TOKEN
        assert admin(gateway.url, "POST", path, token=token, json=body).status_code == status
    assert (len(audit(env, "cli-a")), phase(gateway.url, "cli-a")) == before

    paused = turnout("pause", "cli-a", "--reason", "looking into latency")
    assert paused.exit_code == 0, paused.output
    assert phase(gateway.url, "cli-a") == "paused"
    again = turnout("pause", "cli-a", "--reason", "twice")
    assert again.exit_code == 1 and "rollout_state" in again.output
    poll_until(
        lambda: (
            'turnout_rollout_state{experiment="cli-a",state="paused"} 1.0'
            in httpx.get(f"{gateway.url}/metrics").text
        ),
        10,
        what="the paused state on /metrics",
    )
    metrics = httpx.get(f"{gateway.url}/metrics").text
    assert 'turnout_rollout_step{experiment="cli-a"} 1.0' in metrics
    assert (
        'turnout_rollout_gate{experiment="cli-a",gate="error_rate",verdict="waiting"} 1.0'
        in metrics
    )
    assert turnout("resume", "cli-a", "--reason", "fine").exit_code == 0
    assert phase(gateway.url, "cli-a") == "running"
    promoted = turnout("promote", "cli-a", "--reason", "ship it")
    assert promoted.exit_code == 0, promoted.output
    assert phase(gateway.url, "cli-a") == "promoted"
    assert "blue_green" in (folder / "a.yaml").read_text()

    aborted = turnout("abort", "cli-b", "--reason", "not today")
    assert aborted.exit_code == 0, aborted.output
    report = rollout(gateway.url, "cli-b")
    assert report["phase"] == "aborted" and report["weights"] == {"v1": 100.0, "v2": 0.0}
    assert turnout("promote", "cli-b", "--reason", "no").exit_code == 1
    actions = [e["action"] for e in audit(env, "cli-b")]
    assert actions == ["rollout_start", "rollout_abort"]
    abort_event = audit(env, "cli-b")[-1]
    assert abort_event["actor"] == "ops" and abort_event["reason"] == "not today"


def test_a_and_a_with_heavy_users_neither_halts_nor_rolls_back(
    env: Env, start_gateway: GatewayFactory
) -> None:
    """The candidate is the control's own worker. 2,000 light users and 10 heavy ones (300
    requests each, 60% of the traffic), rewards from a per-user propensity: analysed by user,
    the gates and the SRM test see one population, so nothing acts."""
    name = "aa-heavy"
    same = {"v1": env.workers["v1"], "v2": env.workers["v1"]}
    gates = (
        "    - {metric: error_rate, max_increase: 0.05}\n"
        "    - {metric: reward, max_decrease: 0.3, label_delay: 1s}\n"
    )
    text = rollout_yaml(
        name,
        same,
        [50, 100],
        interval="10m",
        min_samples=100,
        gates=gates,
        extra="srm: {action: halt, p: 0.001}\n",
    )
    gateway = start(env, start_gateway, name, text)
    poll_until(lambda: rollout(gateway.url, name)["rollout"]["percent"] == 50, 20, what="step 50")
    rng = random.Random(23)
    users = [f"light-{i}" for i in range(2_000)] + [f"heavy-{i}" for i in range(10)] * 300
    rng.shuffle(users)
    propensity = {u: rng.betavariate(2.0, 2.0) for u in set(users)}
    sent: Counter[str] = Counter()

    def send(part: list[str]) -> None:
        with httpx.Client(timeout=10) as client:
            for user in part:
                r = client.post(
                    f"{gateway.url}/models/m-{name}/predict",
                    json={"text": "have a nice day", "user_id": user},
                )
                assert r.status_code == 200, r.text
                sent[r.json()["variant"]] += 1
                reward = 1.0 if rng.random() < propensity[user] else 0.0
                client.post(
                    f"{gateway.url}/feedback",
                    json={"request_id": r.json()["request_id"], "reward": reward},
                )

    threads = [threading.Thread(target=send, args=(users[i::4],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(240)

    def looked_at_everyone() -> bool:
        report = rollout(gateway.url, name)
        error = next((g for g in report["rollout"]["gates"] if g["gate"] == "error_rate"), None)
        counted = error and error["n"].get("control_users", 0) + error["n"]["candidate_users"]
        return bool(
            counted == 2_010
            and sum((report["srm"]["last"] or {}).get("counts", {}).values()) == 2_010
        )

    poll_until(looked_at_everyone, 30, what="a look at all 2,010 users")
    report = rollout(gateway.url, name)
    gates = report["rollout"]["gates"]
    assert report["phase"] == "running", report
    assert not report["srm"]["last"]["mismatch"] and report["srm"]["status"] == "ok"
    assert "fail" not in {g["verdict"] for g in gates}, gates
    assert all("per user" in g["method"] for g in gates)
    assert sum(sent.values()) == 5_000
    # Counted by request, the same traffic is a glaring mismatch (3 heavy users of 10 on v1).
    assert srm_test(dict(sent), {"v1": 50, "v2": 50}, 0.001).p_value < 1e-20
    assert not [e for e in audit(env, name) if e["action"] in ("rollout_rollback", "srm_halt")]
