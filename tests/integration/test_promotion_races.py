"""A promotion racing a hand edit never loses the edit (issue 24, finding 8): real promotion
code, real files, a real Redis and worker processes, an editor thread writing meanwhile."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from router.local.redis_server import EmbeddedRedis
from tests.admin_race import promote_races
from tests.conftest import WorkerFactory


@pytest.fixture(scope="module")
def lone_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("race-redis")).start()
    yield server
    server.stop()


def test_a_promotion_racing_a_hand_edit_loses_no_edit(
    tmp_path: Path, start_worker: WorkerFactory, lone_redis: EmbeddedRedis
) -> None:
    workers = {v: start_worker(v).url for v in ("v1", "v2")}
    tally = asyncio.run(promote_races(tmp_path / "experiments", lone_redis, workers, 100))
    assert tally.trials == 100
    assert tally.lost == 0, f"{tally.lost} of {tally.trials} hand edits lost ({tally})"
    assert tally.promoted > 0 and tally.refused > 0, tally  # both sides of the race were run
