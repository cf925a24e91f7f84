"""POST /admin/experiments/{name}/deploy on a real gateway, worker and Redis: a registered
version brought in as a shadow or as a rollout's candidate by a safe rewrite of the file,
audited; every bad request refused with nothing changed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import yaml

from router.local.processes import free_port, poll_until
from router.local.redis_server import RedisTopology
from router.storage import keys
from tests.conftest import GatewayFactory, WorkerFactory, write_experiment

DB = 13
TOKEN = "deploy-token-0123456789"
WITH_SETTINGS = """\
name: {name}
model: {model}
control: v1
variants:
  v1: {{url: "{v1}"}}
policy: {{kind: blue_green, active: v1}}
retrain:
  rollout: {{steps: [50, 100], interval: 1h, min_samples: 100000}}
"""


@dataclass
class Setup:
    url: str
    folder: Path
    worker: str
    redis: redis.Redis | redis.RedisCluster

    def file(self, name: str) -> Path:
        return self.folder / f"{name}.yaml"


@pytest.fixture(scope="module")
def setup(
    tmp_path_factory: pytest.TempPathFactory,
    start_gateway: GatewayFactory,
    start_worker: WorkerFactory,
    redis_server: RedisTopology,
) -> Iterator[Setup]:
    v1 = start_worker("v1").url
    v3 = start_worker("v3").url
    folder = tmp_path_factory.mktemp("deploy")
    for name, model in (("shadowed", "m1"), ("rolled", "m2")):
        write_experiment(
            folder, WITH_SETTINGS.format(name=name, model=model, v1=v1), f"{name}.yaml"
        )
    bare = WITH_SETTINGS.format(name="bare", model="m3", v1=v1).split("retrain:")[0]
    write_experiment(folder, bare, "bare.yaml")
    server = redis_server.with_db(DB)
    client = server.client()
    client.delete(*(keys.rollout(n) for n in ("shadowed", "rolled", "bare")))
    gateway = start_gateway(
        folder,
        **server.env,
        TURNOUT_ADMIN_TOKENS=json.dumps({"ops": TOKEN}),
        TURNOUT_ROLLOUT_CHECK_INTERVAL="0.2",
        TURNOUT_ROLLOUT_REFRESH_INTERVAL="0.2",
        TURNOUT_ROLLOUT_LEASE_TTL="2",
    )
    yield Setup(gateway.url, folder, v3, client)
    client.close()


def deploy(setup: Setup, name: str, token: str | None = TOKEN, **body: Any) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return httpx.post(
        f"{setup.url}/admin/experiments/{name}/deploy", json=body, headers=headers, timeout=10
    )


def experiment(setup: Setup, name: str) -> dict[str, Any]:
    body = httpx.get(f"{setup.url}/experiments", timeout=5).json()
    return next(e for e in body["experiments"] if e["name"] == name)


def test_deploy_as_shadow(setup: Setup) -> None:
    response = deploy(
        setup, "shadowed", version="v3", url=setup.worker, reason="retrained", **{"as": "shadow"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["loaded"] and body["event"]["action"] == "deploy_shadow"
    data = yaml.safe_load(setup.file("shadowed").read_text())
    assert data["variants"]["v3"] == {"url": setup.worker, "version": "v3"}
    assert data["shadow"]["targets"] == ["v3"] and data["retrain"]["rollout"]["steps"] == [50, 100]
    assert setup.file("shadowed").read_text().startswith("# Deployed v3 as v3 (shadow) by ops")
    exp = experiment(setup, "shadowed")
    assert exp["shadow"]["targets"] == ["v3"]
    poll_until(lambda: experiment(setup, "shadowed")["upstreams"]["v3"]["ready"], 10, what="v3")
    audit = [f for _, f in setup.redis.xrange(keys.AUDIT) if f.get("experiment") == "shadowed"]
    assert audit[-1]["action"] == "deploy_shadow" and audit[-1]["reason"] == "retrained"


def test_deploy_as_rollout_starts_one_and_refuses_a_second(setup: Setup) -> None:
    first = deploy(setup, "rolled", version="v3", url=setup.worker, reason="r", **{"as": "rollout"})
    assert first.status_code == 200, first.text
    data = yaml.safe_load(setup.file("rolled").read_text())
    assert data["policy"] == {
        "kind": "canary",
        "sticky": "user_id",
        "weights": {"v1": 100, "v3": 0},
    }
    assert data["rollout"]["candidate"] == "v3"

    def phase() -> str | None:
        rollout = httpx.get(f"{setup.url}/experiments/rolled/rollout", timeout=5).json()
        return rollout.get("phase")

    poll_until(lambda: phase() == "running", 15, what="the rollout to start")
    before = setup.file("rolled").read_text()
    second = deploy(
        setup, "rolled", version="v4", url=setup.worker, reason="r", **{"as": "rollout"}
    )
    assert second.status_code == 409 and second.json()["error"] == "rollout_in_progress"
    assert setup.file("rolled").read_text() == before


GOOD = {"version": "v9", "url": "W", "as": "shadow", "reason": "x"}


def without(key: str) -> dict[str, str]:
    return {k: v for k, v in GOOD.items() if k != key}


@pytest.mark.parametrize(
    ("body", "token", "status", "error"),
    [
        (without("url"), TOKEN, 422, "invalid_input"),
        (without("reason"), TOKEN, 422, "invalid_input"),
        ({**GOOD, "as": "canary"}, TOKEN, 422, "invalid_input"),
        ({**GOOD, "version": "../v9"}, TOKEN, 422, "invalid_input"),
        ({**GOOD, "url": "http://evil.example:80"}, TOKEN, 422, "invalid_input"),
        ({**GOOD, "url": "ftp://127.0.0.1:21"}, TOKEN, 422, "invalid_input"),
        (GOOD, None, 401, "unauthorized"),
        (GOOD, "wrong", 401, "unauthorized"),
    ],
)
def test_bad_requests_change_nothing(
    setup: Setup, body: dict[str, Any], token: str | None, status: int, error: str
) -> None:
    body = {k: setup.worker if v == "W" else v for k, v in body.items()}
    before = setup.file("bare").read_text()
    response = deploy(setup, "bare", token, **body)
    assert response.status_code == status and response.json()["error"] == error, response.text
    assert setup.file("bare").read_text() == before


def test_a_rollout_needs_settings(setup: Setup) -> None:
    before = setup.file("bare").read_text()
    response = deploy(
        setup, "bare", version="v3", url=setup.worker, reason="x", **{"as": "rollout"}
    )
    assert response.status_code == 409 and response.json()["error"] == "no_rollout_settings"
    assert setup.file("bare").read_text() == before


def test_a_variant_name_taken_by_another_server(setup: Setup) -> None:
    before = setup.file("bare").read_text()
    other = f"http://127.0.0.1:{free_port()}"
    response = deploy(setup, "bare", version="v1", url=other, reason="x", **{"as": "shadow"})
    assert response.status_code == 409 and "another url or version" in response.json()["detail"]
    assert setup.file("bare").read_text() == before
    missing = deploy(setup, "nope", version="v1", url=other, reason="x", **{"as": "shadow"})
    assert missing.status_code == 404


def test_deploy_as_rollout_of_a_server_that_is_down_is_refused_unless_forced(
    setup: Setup,
) -> None:
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    text = WITH_SETTINGS.format(name="downed", model="m4", v1=setup.worker)
    write_experiment(setup.folder, text, "downed.yaml")
    poll_until(
        lambda: "downed" in httpx.get(f"{setup.url}/experiments", timeout=5).text,
        10,
        what="the new file",
    )
    refused = deploy(setup, "downed", version="v9", url=down, reason="r", **{"as": "rollout"})
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"] == "not_ready"
    assert "v9" not in setup.file("downed").read_text()
    forced = deploy(
        setup, "downed", version="v9", url=down, reason="r", force=True, **{"as": "rollout"}
    )
    assert forced.status_code == 200, forced.text
    assert forced.json()["event"]["new"]["forced"] is True
