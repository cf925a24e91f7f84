"""Promotions that lose nothing (issue 24, findings 8 and 9): a promotion racing a hand edit
never loses the edit (real promotion code, real files, Redis and workers, an editor thread
writing meanwhile), and a promotion to a server that is down is refused unless forced."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from router.local.processes import free_port
from router.local.redis_server import EmbeddedRedis
from tests.admin_race import promote_races
from tests.conftest import GatewayFactory, WorkerFactory, canary_yaml, write_experiment

TOKEN = "safety-token-0123456789"


@pytest.fixture(scope="module")
def lone_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("race-redis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def workers(start_worker: WorkerFactory) -> dict[str, str]:
    return {v: start_worker(v).url for v in ("v1", "v2")}


def test_a_promotion_racing_a_hand_edit_loses_no_edit(
    tmp_path: Path, workers: dict[str, str], lone_redis: EmbeddedRedis
) -> None:
    tally = asyncio.run(promote_races(tmp_path / "experiments", lone_redis, workers, 100))
    assert tally.trials == 100
    assert tally.lost == 0, f"{tally.lost} of {tally.trials} hand edits lost ({tally})"
    assert tally.promoted > 0 and tally.refused > 0, tally  # both sides of the race were run


def test_a_promotion_to_a_server_that_is_down_is_refused_unless_forced(
    tmp_path: Path,
    workers: dict[str, str],
    start_gateway: GatewayFactory,
    lone_redis: EmbeddedRedis,
) -> None:
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    original = canary_yaml({"v1": workers["v1"], "v2": down}, {"v1": 100, "v2": 0})
    path = write_experiment(tmp_path / "experiments", original, "exp.yaml")
    gateway = start_gateway(
        tmp_path / "experiments",
        TURNOUT_REDIS_URL=lone_redis.url,
        TURNOUT_ADMIN_TOKENS=json.dumps({"ops": TOKEN}),
    ).url
    headers = {"authorization": f"Bearer {TOKEN}"}

    def promote(**extra: object) -> httpx.Response:
        body = {"version": "v2", "reason": "v2 wins", **extra}
        url = f"{gateway}/admin/experiments/exp/promote"
        return httpx.post(url, json=body, headers=headers, timeout=10)

    refused = promote()
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"] == "not_ready" and "v2" in refused.json()["detail"]
    assert path.read_text() == original
    assert httpx.get(f"{gateway}/readyz", timeout=5).status_code == 200
    assert promote(force="yes").status_code == 422
    forced = promote(force=True)
    assert forced.status_code == 200, forced.text
    assert forced.json()["event"]["new"]["forced"] is True
