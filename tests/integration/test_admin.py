"""The operators' surface on real gateway, worker and Redis processes: flags, auth, rollback
under load on two replicas, promotion, audit, and the CLI's exit codes."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import yaml
from typer.testing import CliRunner

from router.cli import app as cli
from router.config.loader import parse_experiment
from router.local.processes import poll_until
from router.local.redis_server import EmbeddedRedis, RedisTopology
from router.storage import keys
from tests.conftest import GatewayFactory, WorkerFactory, canary_yaml, write_experiment

NAME = "ops-exp"
DB = 11  # a database of its own on the shared test server
TOKENS = {"ops": "ops-token-0123456789", "ci": "ci-token-abcdefghij"}
FILE_TOKEN = ("alice", "alice-token-from-the-file")
runner = CliRunner()


@dataclass
class Cluster:
    a: str
    b: str
    experiments_dir: Path
    original: str
    redis: redis.Redis

    @property
    def path(self) -> Path:
        return self.experiments_dir / "exp.yaml"


@pytest.fixture(scope="module")
def workers(start_worker: WorkerFactory) -> dict[str, str]:
    return {v: start_worker(v).url for v in ("v1", "v2")}


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory,
    start_gateway: GatewayFactory,
    redis_server: RedisTopology,
    workers: dict[str, str],
) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("admin")
    original = canary_yaml(workers, {"v1": 50, "v2": 50}, name=NAME)
    write_experiment(root / "experiments", original, "exp.yaml")
    tokens_file = root / "tokens.yaml"
    tokens_file.write_text(f"{FILE_TOKEN[0]}: {FILE_TOKEN[1]}\n")
    server = redis_server.with_db(DB)
    env = {
        **server.env,
        "TURNOUT_ADMIN_TOKENS": json.dumps(TOKENS),
        "TURNOUT_ADMIN_TOKENS_FILE": str(tokens_file),
        "TURNOUT_FLAGS_REFRESH_INTERVAL": "30",  # changes must travel by pub/sub
        "TURNOUT_ACCESS_LOG": "false",
    }
    a = start_gateway(root / "experiments", **env)
    b = start_gateway(root / "experiments", **env)
    client = server.client()
    yield Cluster(a.url, b.url, root / "experiments", original, client)
    client.delete(keys.FLAGS, keys.AUDIT, keys.PROMOTIONS)
    client.close()


@pytest.fixture(autouse=True)
def reset(request: pytest.FixtureRequest) -> Iterator[None]:
    """Each test starts with no overrides and the original file, on both replicas."""
    yield
    if "cluster" not in request.fixturenames:
        return
    cluster: Cluster = request.getfixturevalue("cluster")
    cluster.redis.delete(keys.FLAGS, keys.PROMOTIONS)
    cluster.redis.publish(keys.FLAGS_CHANNEL, "reset")
    if cluster.path.read_text() != cluster.original:
        write_experiment(cluster.experiments_dir, cluster.original, "exp.yaml")
    version = parse_experiment(cluster.original, cluster.path).config_version
    for url in (cluster.a, cluster.b):
        poll_until(
            lambda u=url: (
                admin(u, "GET", "/admin/flags").json()["experiments"][NAME]["overrides"] == {}
                and config_version(u) == version
            ),
            15,
            what="reset",
        )


def admin(
    url: str,
    method: str,
    path: str,
    token: str | None = TOKENS["ops"],
    **kwargs: Any,
) -> httpx.Response:
    headers = kwargs.pop("headers", {})
    if "content" in kwargs:
        headers.setdefault("content-type", "application/json")
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    return httpx.request(method, f"{url}{path}", headers=headers, timeout=10, **kwargs)


def predict(url: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(
        f"{url}/predict", json={"text": "have a nice day"}, headers=headers, timeout=10
    )


def config_version(url: str) -> str:
    experiments = httpx.get(f"{url}/experiments", timeout=5).json()["experiments"]
    return str(next(e["config_version"] for e in experiments if e["name"] == NAME))


def all_forced(url: str, variant: str, forced_by: str, n: int = 20) -> bool:
    for _ in range(n):
        body = predict(url).json()
        if (body["variant"], body["forced_by"]) != (variant, forced_by):
            return False
    return True


def metric(url: str, name: str) -> float:
    for line in httpx.get(f"{url}/metrics", timeout=5).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def state(cluster: Cluster) -> tuple[object, ...]:
    r = cluster.redis
    return (r.hgetall(keys.FLAGS), r.xlen(keys.AUDIT), r.hgetall(keys.PROMOTIONS))


def cli_env(cluster: Cluster, token: str | None = TOKENS["ops"]) -> dict[str, str | None]:
    return {"TURNOUT_ADMIN_URL": cluster.a, "TURNOUT_ADMIN_TOKEN": token}


def test_kill_switch_sends_everything_to_control(cluster: Cluster) -> None:
    body = {"value": True, "reason": "incident"}
    r = admin(cluster.a, "PUT", f"/admin/flags/{NAME}/kill_switch", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["flags"]["kill_switch"] is True
    for url in (cluster.a, cluster.b):
        poll_until(lambda u=url: all_forced(u, "v1", "kill_switch"), 10, what="kill switch")
    listed = admin(cluster.b, "GET", "/admin/flags").json()
    assert listed["experiments"][NAME]["flags"]["kill_switch"] is True
    assert listed["source"] == "redis"


def test_forced_variant_flag(cluster: Cluster) -> None:
    body = {"experiment": NAME, "flag": "forced_variant", "value": "v2", "reason": "try v2"}
    r = admin(cluster.b, "POST", "/admin/flags", json=body)
    assert r.status_code == 200, r.text
    for url in (cluster.a, cluster.b):
        poll_until(lambda u=url: all_forced(u, "v2", "forced_variant"), 10, what="forced v2")
    body = predict(cluster.a).json()
    assert body["model_version"] == "v2" and body["forced"] is True


def test_header_needs_a_valid_admin_token(cluster: Cluster) -> None:
    ignored_before = metric(cluster.a, "turnout_forced_variant_ignored_total")
    for headers in (
        {"x-turnout-variant": "v2"},
        {"x-turnout-variant": "v2", "authorization": "Bearer not-a-token"},
        {"x-turnout-variant": "v2", "authorization": f"Basic {TOKENS['ops']}"},
    ):
        body = predict(cluster.a, headers).json()
        assert (body["forced"], body["forced_ignored"]) == (False, True)
    assert metric(cluster.a, "turnout_forced_variant_ignored_total") == ignored_before + 3
    for token in (TOKENS["ci"], FILE_TOKEN[1]):
        for _ in range(10):
            headers = {"x-turnout-variant": "v2", "authorization": f"Bearer {token}"}
            body = predict(cluster.a, headers).json()
            assert (body["variant"], body["forced_by"], body["forced_ignored"]) == (
                "v2",
                "header",
                False,
            )
    r = predict(cluster.a, {"x-turnout-variant": "v9", "authorization": f"Bearer {TOKENS['ci']}"})
    assert r.status_code == 422 and r.json()["error"] == "unknown_variant"
    plain = predict(cluster.a).json()
    assert (plain["forced"], plain["forced_by"], plain["forced_ignored"]) == (False, None, False)


ADMIN_CALLS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/admin/flags", None),
    ("GET", "/admin/flags/history", None),
    ("PUT", f"/admin/flags/{NAME}/kill_switch", {"value": True}),
    ("POST", "/admin/flags", {"experiment": NAME, "flag": "kill_switch", "value": True}),
    ("DELETE", f"/admin/flags/{NAME}/forced_variant", None),
    ("POST", "/admin/reload", None),
    ("POST", f"/admin/experiments/{NAME}/rollback", {"reason": "forged"}),
    ("DELETE", f"/admin/experiments/{NAME}/rollback", None),
    ("POST", f"/admin/experiments/{NAME}/promote", {"version": "v2", "reason": "forged"}),
    ("POST", f"/admin/experiments/{NAME}/promote/undo", {"reason": "forged"}),
    ("PUT", "/admin/flags/no-such-exp/kill_switch", {"value": True}),
]
FORGED = [
    None,
    "Bearer wrong-token",
    f"Bearer {TOKENS['ops'][:-1]}",
    f"Bearer {TOKENS['ops']}x",
    f"Basic {TOKENS['ops']}",
    f"{TOKENS['ops']}",
    "Bearer",
    f"Bearer {TOKENS['ops'].upper()}",
]


def test_forged_admin_calls_change_nothing(cluster: Cluster) -> None:
    # A real rollback first, so a forged "undo" would have something to undo.
    admin(cluster.a, "POST", f"/admin/experiments/{NAME}/rollback", json={"reason": "setup"})
    before = state(cluster)
    file_before = cluster.path.read_bytes()
    denied = metric(cluster.a, "turnout_admin_denied_total")
    calls = 0
    for method, path, body in ADMIN_CALLS:
        for auth in FORGED:
            headers = {} if auth is None else {"authorization": auth}
            r = admin(cluster.a, method, path, token=None, headers=headers, json=body)
            assert r.status_code == 401, (method, path, auth, r.text)
            assert r.json()["error"] == "unauthorized"
            assert TOKENS["ops"] not in r.text
            assert state(cluster) == before, (method, path, auth)
            assert cluster.path.read_bytes() == file_before, (method, path, auth)
            calls += 1
    assert metric(cluster.a, "turnout_admin_denied_total") == denied + calls


BAD_INPUTS: list[tuple[str, str, dict[str, Any], int, str]] = [
    ("PUT", "/admin/flags/nope/kill_switch", {"json": {"value": True}}, 404, "unknown_experiment"),
    ("DELETE", "/admin/flags/nope/kill_switch", {}, 404, "unknown_experiment"),
    (
        "POST",
        "/admin/experiments/nope/rollback",
        {"json": {"reason": "r"}},
        404,
        "unknown_experiment",
    ),
    (
        "POST",
        "/admin/experiments/nope/promote",
        {"json": {"version": "v2", "reason": "r"}},
        404,
        "unknown_experiment",
    ),
    (
        "POST",
        "/admin/experiments/nope/promote/undo",
        {"json": {"reason": "r"}},
        404,
        "unknown_experiment",
    ),
    (
        "PUT",
        f"/admin/flags/{NAME}/forced_variant",
        {"json": {"value": "v9"}},
        422,
        "unknown_variant",
    ),
    (
        "POST",
        f"/admin/experiments/{NAME}/rollback",
        {"json": {"to": "v9", "reason": "r"}},
        422,
        "unknown_variant",
    ),
    (
        "POST",
        f"/admin/experiments/{NAME}/promote",
        {"json": {"version": "v9", "reason": "r"}},
        422,
        "unknown_variant",
    ),
    ("PUT", f"/admin/flags/{NAME}/kill_swich", {"json": {"value": True}}, 422, "unknown_flag"),
    ("DELETE", f"/admin/flags/{NAME}/kill_swich", {}, 422, "unknown_flag"),
    ("PUT", f"/admin/flags/{NAME}/kill_switch", {"content": b'{"value": tru'}, 400, "invalid_json"),
    ("POST", "/admin/flags", {"content": b"{"}, 400, "invalid_json"),
    ("POST", f"/admin/experiments/{NAME}/rollback", {"content": b"[1,"}, 400, "invalid_json"),
    ("POST", f"/admin/experiments/{NAME}/promote", {"content": b"nope"}, 400, "invalid_json"),
    (
        "PUT",
        f"/admin/flags/{NAME}/kill_switch",
        {"content": b"{}", "headers": {"content-type": "text/plain"}},
        415,
        "unsupported_media_type",
    ),
    ("PUT", f"/admin/flags/{NAME}/kill_switch", {"json": {"value": "yes"}}, 422, "invalid_input"),
    ("PUT", f"/admin/flags/{NAME}/kill_switch", {"json": {"value": 1}}, 422, "invalid_input"),
    ("PUT", f"/admin/flags/{NAME}/kill_switch", {"json": {}}, 422, "invalid_input"),
    ("PUT", f"/admin/flags/{NAME}/kill_switch", {"json": [True]}, 422, "invalid_input"),
    (
        "PUT",
        f"/admin/flags/{NAME}/kill_switch",
        {"json": {"value": True, "reason": 3}},
        422,
        "invalid_input",
    ),
    ("PUT", f"/admin/flags/{NAME}/forced_variant", {"json": {"value": 2}}, 422, "invalid_input"),
    ("POST", "/admin/flags", {"json": {"experiment": NAME, "value": True}}, 422, "invalid_input"),
    (
        "POST",
        "/admin/flags",
        {"json": {"experiment": 1, "flag": "frozen", "value": True}},
        422,
        "invalid_input",
    ),
    ("POST", f"/admin/experiments/{NAME}/rollback", {"json": {}}, 422, "invalid_input"),
    (
        "POST",
        f"/admin/experiments/{NAME}/rollback",
        {"json": {"reason": "  "}},
        422,
        "invalid_input",
    ),
    (
        "POST",
        f"/admin/experiments/{NAME}/rollback",
        {"json": {"to": 5, "reason": "r"}},
        422,
        "invalid_input",
    ),
    (
        "POST",
        f"/admin/experiments/{NAME}/promote",
        {"json": {"version": ["v2"], "reason": "r"}},
        422,
        "invalid_input",
    ),
    (
        "POST",
        f"/admin/experiments/{NAME}/promote",
        {"json": {"version": "v2"}},
        422,
        "invalid_input",
    ),
    (
        "POST",
        f"/admin/experiments/{NAME}/promote",
        {"json": {"version": "v2", "reason": "x" * 501}},
        422,
        "invalid_input",
    ),
    (
        "POST",
        f"/admin/experiments/{NAME}/promote/undo",
        {"json": {"reason": "r"}},
        409,
        "nothing_to_undo",
    ),
    ("GET", "/admin/flags/history?limit=0", {}, 422, "invalid_input"),
    ("GET", "/admin/flags/history?limit=abc", {}, 422, "invalid_input"),
]


def test_bad_admin_inputs_are_refused_and_change_nothing(cluster: Cluster) -> None:
    before = state(cluster)
    file_before = cluster.path.read_bytes()
    for method, path, kwargs, status, code in BAD_INPUTS:
        r = admin(cluster.a, method, path, **kwargs)
        assert (r.status_code, r.json().get("error")) == (status, code), (method, path, r.text)
        assert r.json()["detail"]
        assert state(cluster) == before, (method, path)
    assert cluster.path.read_bytes() == file_before


def test_rollback_on_two_replicas_under_load(cluster: Cluster) -> None:
    results: list[tuple[float, str, int, str]] = []
    stop = threading.Event()

    def load(url: str) -> None:
        with httpx.Client(timeout=10) as client:
            while not stop.is_set():
                started = time.monotonic()
                try:
                    r = client.post(f"{url}/predict", json={"text": "steady load"})
                    variant = r.json().get("variant", "?") if r.status_code == 200 else r.text
                    results.append((started, url, r.status_code, variant))
                except httpx.HTTPError as exc:
                    results.append((started, url, -1, repr(exc)))

    def seen(url: str, since: float) -> int:
        return sum(1 for t, u, _, _ in list(results) if u == url and t >= since)

    threads = [
        threading.Thread(target=load, args=(url,), daemon=True)
        for url in (cluster.a, cluster.b)
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    try:
        poll_until(lambda: min(seen(cluster.a, 0), seen(cluster.b, 0)) >= 30, 20, what="load")
        t0 = time.monotonic()
        result = runner.invoke(
            cli, ["rollback", NAME, "--reason", "canary misbehaves"], env=cli_env(cluster)
        )
        assert result.exit_code == 0, result.output
        cutoff = t0 + 1.0
        poll_until(
            lambda: min(seen(cluster.a, cutoff), seen(cluster.b, cutoff)) >= 30,
            30,
            what="load after the rollback",
        )
    finally:
        stop.set()
        for thread in threads:
            thread.join(15)
    failed = [r for r in results if r[2] != 200]
    assert not failed, failed[:5]
    before = {v for t, _, _, v in results if t < t0}
    assert before == {"v1", "v2"}, before  # the split was live before the rollback
    for url in (cluster.a, cluster.b):
        late = [(round(t - t0, 3), v) for t, u, _, v in results if u == url and t >= cutoff]
        assert {v for _, v in late} == {"v1"}, [x for x in late if x[1] != "v1"][:5]
    undo = runner.invoke(cli, ["rollback", NAME, "--undo"], env=cli_env(cluster))
    assert undo.exit_code == 0, undo.output
    events = admin(cluster.a, "GET", f"/admin/flags/history?experiment={NAME}&limit=2").json()
    actions = [(e["action"], e["actor"], e["new"]) for e in events["events"]]
    assert actions == [("rollback_cleared", "ops", None), ("rollback", "ops", "v1")]


def test_promote_rewrites_the_file_atomically_and_routes(cluster: Cluster) -> None:
    inode = cluster.path.stat().st_ino
    torn: list[str] = []
    stop = threading.Event()

    def read_continuously() -> None:  # a reader must only ever see a whole file
        while not stop.is_set():
            text = cluster.path.read_text()
            try:
                parse_experiment(text, cluster.path)
            except Exception as exc:
                torn.append(f"{exc}")

    reader = threading.Thread(target=read_continuously, daemon=True)
    reader.start()
    try:
        result = runner.invoke(
            cli,
            ["promote", NAME, "v2", "--reason", "v2 wins the canary", "--json"],
            env=cli_env(cluster),
        )
    finally:
        stop.set()
        reader.join(10)
    assert result.exit_code == 0, result.output
    assert not torn, torn[:3]
    answer = json.loads(result.stdout)
    assert answer["loaded"] is True and answer["control"] == "v2"
    assert answer["weights"] == {"v2": 100.0}
    assert cluster.path.stat().st_ino != inode  # renamed into place, not written over
    assert sorted(p.name for p in cluster.experiments_dir.iterdir()) == ["exp.yaml"]
    data = yaml.safe_load(cluster.path.read_text())
    assert data["control"] == "v2"
    assert data["policy"] == {"kind": "blue_green", "active": "v2"}
    assert data["variants"] == yaml.safe_load(cluster.original)["variants"]
    for url in (cluster.a, cluster.b):  # a reloaded at once, b by its file watcher
        poll_until(lambda u=url: config_version(u) == answer["config_version"], 15, what="reload")
        bodies = [predict(url).json() for _ in range(20)]
        assert {(b["variant"], b["forced"]) for b in bodies} == {("v2", False)}
    again = runner.invoke(cli, ["promote", NAME, "v2", "--reason", "again"], env=cli_env(cluster))
    assert again.exit_code == 1 and "already the control" in again.output
    undo = runner.invoke(
        cli, ["promote", NAME, "--undo", "--reason", "back to the canary"], env=cli_env(cluster)
    )
    assert undo.exit_code == 0, undo.output
    assert cluster.path.read_text() == cluster.original
    history = admin(cluster.a, "GET", f"/admin/flags/history?experiment={NAME}&limit=2").json()
    assert [e["action"] for e in history["events"]] == ["promote_undone", "promote"]
    promoted = history["events"][1]
    assert promoted["old"]["control"] == "v1" and promoted["new"]["control"] == "v2"
    assert promoted["reason"] == "v2 wins the canary"


def test_promote_refuses_a_file_edited_since_load(cluster: Cluster) -> None:
    edited = cluster.original.replace("v1: 50, v2: 50", "v1: 60, v2: 40")
    write_experiment(cluster.experiments_dir, edited + "# edited\n", "exp.yaml")
    # Read between the edit and the reload: the gateway must not overwrite the edit.
    r = admin(
        cluster.a,
        "POST",
        f"/admin/experiments/{NAME}/promote",
        json={"version": "v2", "reason": "race"},
    )
    if r.status_code == 409:
        assert r.json()["error"] == "changed_since"
        assert "edited" in cluster.path.read_text()
    else:  # the watcher reloaded first: then the promotion is of the edited file
        assert r.status_code == 200, r.text
        assert yaml.safe_load(cluster.path.read_text())["control"] == "v2"


def test_audit_history_lists_each_change(cluster: Cluster) -> None:
    env = cli_env(cluster)
    steps = [
        (["flags", "set", NAME, "frozen", "true", "--reason", "pause learning"], TOKENS["ops"]),
        (["flags", "set", NAME, "shadow_enabled", "false"], FILE_TOKEN[1]),
        (["rollback", NAME, "--to", "v2", "--reason", "v1 is slow"], TOKENS["ci"]),
        (["flags", "clear", NAME, "frozen", "--reason", "resume"], TOKENS["ops"]),
    ]
    for args, token in steps:
        result = runner.invoke(cli, args, env={**env, "TURNOUT_ADMIN_TOKEN": token})
        assert result.exit_code == 0, result.output
    result = runner.invoke(cli, ["flags", "history", NAME, "--limit", "4", "--json"], env=env)
    assert result.exit_code == 0, result.output
    events = json.loads(result.stdout)["events"]
    assert [
        (e["actor"], e["action"], e["flag"], e["old"], e["new"], e["reason"]) for e in events
    ] == [
        ("ops", "clear", "frozen", True, False, "resume"),
        ("ci", "rollback", "forced_variant", None, "v2", "v1 is slow"),
        ("alice", "set", "shadow_enabled", True, False, ""),
        ("ops", "set", "frozen", False, True, "pause learning"),
    ]
    assert all(e["ts"] > 0 for e in events)
    table = runner.invoke(cli, ["flags", "history", NAME], env={**env, "COLUMNS": "200"})
    assert table.exit_code == 0 and "v1 is slow" in table.output
    for secret in [*TOKENS.values(), FILE_TOKEN[1]]:
        assert secret not in table.output
        assert secret not in str(cluster.redis.xrange(keys.AUDIT))


def test_status_and_flags_list(cluster: Cluster) -> None:
    env = cli_env(cluster)
    assert runner.invoke(cli, ["flags", "set", NAME, "kill_switch", "true"], env=env).exit_code == 0
    result = runner.invoke(cli, ["status", "--json"], env=env)
    assert result.exit_code == 0, result.output
    status = json.loads(result.stdout)
    (exp,) = [e for e in status["experiments"]["experiments"] if e["name"] == NAME]
    assert exp["policy"] == "canary" and exp["weights"] == {"v1": 50.0, "v2": 50.0}
    assert all(u["healthy"] for u in exp["upstreams"].values())
    assert status["flags"]["experiments"][NAME]["flags"]["kill_switch"] is True
    assert 1 <= len(status["audit"]) <= 5
    assert status["audit"][0]["flag"] == "kill_switch"
    table = runner.invoke(cli, ["status"], env={**env, "COLUMNS": "200"})
    assert table.exit_code == 0 and "KILL SWITCH" in table.output
    listed = runner.invoke(cli, ["flags", "list", "--json"], env=env)
    assert json.loads(listed.stdout)["experiments"][NAME]["overrides"] == {"kill_switch": True}
    anonymous = runner.invoke(cli, ["status"], env={**env, "TURNOUT_ADMIN_TOKEN": None})
    assert anonymous.exit_code == 0 and "admin token" in anonymous.output


def test_reload_endpoint(cluster: Cluster) -> None:
    r = admin(cluster.b, "POST", "/admin/reload")
    assert r.status_code == 200, r.text
    assert r.json()["experiments"] == {NAME: config_version(cluster.b)}
    assert r.json()["flags"]["redis"] == "up"


def test_cli_exit_codes(cluster: Cluster) -> None:
    env = cli_env(cluster)
    cases: list[tuple[list[str], dict[str, str | None], int, str]] = [
        (["flags", "list"], env, 0, NAME),
        (["flags", "list"], cli_env(cluster, "wrong-token"), 1, "401"),
        (["flags", "set", "nope", "frozen", "true"], env, 1, "unknown experiment"),
        (["flags", "set", NAME, "frozen", "maybe"], env, 1, "true or false"),
        (["rollback", NAME, "--to", "v9", "--reason", "r"], env, 1, "not a variant"),
        (["flags", "list", "--url", "http://127.0.0.1:9"], env, 1, "cannot reach"),
        (["flags", "list"], cli_env(cluster, None), 2, "no admin token"),
        (["flags", "set", NAME], env, 2, "Missing argument"),
        (["rollback", NAME], env, 2, "--reason is required"),
        (["promote", NAME, "--reason", "r"], env, 2, "either VERSION or --undo"),
        (["flags", "history", "--limit", "0"], env, 2, "Invalid value"),
        (["replay", "/no/such.csv"], env, 2, "does not exist"),
    ]
    for args, case_env, code, text in cases:
        result = runner.invoke(cli, args, env=case_env)
        assert result.exit_code == code, (args, result.output)
        assert text in result.output, (args, result.output)
    assert state(cluster)[0] == {}  # none of the refused commands set anything
    helped = runner.invoke(cli, ["--help"], env={"COLUMNS": "200"})
    for command in ("flags", "rollback", "promote", "status", "replay"):
        assert f" {command} " in helped.output


def test_replay_a_labelled_csv(cluster: Cluster, tmp_path: Path) -> None:
    rows = [("you are lovely", 2), ("shut up you idiot bitch", 1), ("nice game today", 2)]
    path = tmp_path / "sample.csv"
    path.write_text(",class,tweet\n" + "".join(f"{i},{c},{t}\n" for i, (t, c) in enumerate(rows)))
    args = ["replay", str(path), "--text-col", "tweet", "--label-col", "class"]
    args += ["--url", cluster.b, "--json"]
    result = runner.invoke(cli, [*args, "--label-map", "0=1,1=1,2=0", "--feedback"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["sent"], summary["failed"]) == (3, 0)
    assert sum(summary["by_version"].values()) == 3
    assert (summary["feedback_accepted"], summary["feedback_failed"]) == (3, 0)
    bad = runner.invoke(cli, [*args, "--label-map", "0=1"])
    assert bad.exit_code == 2 and "not in --label-map" in bad.output


@pytest.fixture(scope="module")
def lone_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("lone-redis")).start()
    yield server
    server.stop()


def test_no_tokens_admin_off_and_redis_down_keeps_flags(
    tmp_path: Path,
    start_gateway: GatewayFactory,
    workers: dict[str, str],
    lone_redis: EmbeddedRedis,
) -> None:
    exp_dir = tmp_path / "experiments"
    write_experiment(exp_dir, canary_yaml(workers, {"v1": 50, "v2": 50}, name=NAME), "exp.yaml")
    gateway = start_gateway(
        exp_dir,
        TURNOUT_REDIS_URL=lone_redis.url,
        TURNOUT_ADMIN_TOKENS="{}",
        TURNOUT_FLAGS_REFRESH_INTERVAL="30",
        TURNOUT_ACCESS_LOG="false",
    ).url
    for method, path in (("GET", "/admin/flags"), ("PUT", f"/admin/flags/{NAME}/kill_switch")):
        r = admin(gateway, method, path, json={"value": True})
        assert r.status_code == 404, r.text
    body = predict(gateway, {"x-turnout-variant": "v2", "authorization": "Bearer x"}).json()
    assert body["forced_ignored"] is True
    # Another replica's change, as it reaches Redis: override + publish.
    client = lone_redis.client()
    client.hset(keys.FLAGS, f"{NAME}/kill_switch", "true")
    client.publish(keys.FLAGS_CHANNEL, f"{NAME}/kill_switch")
    client.close()
    started = time.monotonic()
    poll_until(lambda: predict(gateway).json()["forced_by"] == "kill_switch", 5, what="pub/sub")
    assert time.monotonic() - started < 1.0
    lone_redis.stop()
    try:
        bodies = [predict(gateway) for _ in range(30)]
        assert {(r.status_code, r.json()["variant"]) for r in bodies} == {(200, "v1")}
    finally:
        lone_redis.start()


def test_an_alert_storm_acts_once_and_says_what_it_collapsed(cluster: Cluster) -> None:
    def alert(i: int, **extra: Any) -> dict[str, Any]:
        labels = {"alertname": f"Storm{i}", "experiment": NAME, "turnout_action": "rollback"}
        return {"status": "firing", "labels": labels, "startsAt": "2026-11-30T10:00:00Z", **extra}

    before = cluster.redis.xlen(keys.AUDIT)
    storm = [alert(i, fingerprint=f"fp{i:05d}") for i in range(3000)]
    r = admin(cluster.a, "POST", "/admin/alertmanager", json={"version": "4", "alerts": storm})
    assert r.status_code == 200, r.text
    assert cluster.redis.xlen(keys.AUDIT) - before == 1
    body = r.json()
    assert (body["alerts"], body["collapsed"]) == (3000, 2999)
    assert [(c["result"], c["alerts"]) for c in body["calls"]] == [("acted", 3000)]
    # A new alert with no fingerprint finds the experiment already rolled back: nothing changes,
    # and the answer says so.
    r = admin(cluster.a, "POST", "/admin/alertmanager", json={"alerts": [alert(-1)]})
    assert r.status_code == 200, r.text
    assert r.json()["calls"][0]["result"].startswith("unchanged: already rolled back"), r.text
    assert cluster.redis.xlen(keys.AUDIT) == before + 1
    cluster.redis.delete(keys.alerts_seen(NAME))
