"""The chaos suite: the adversarial campaign of issue 14, kept as tests (``make chaos``).

Every test here is marked ``chaos``; ``make test`` leaves them out (``-m "not chaos"`` in the
project's pytest options) and CI runs them as a step of their own. Each scenario runs real
processes under bounded load, prints one ``[chaos]`` line of figures and asserts what must hold.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from router.local.redis_server import EmbeddedRedis
from tests.conftest import WorkerFactory

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.chaos)


@pytest.fixture(scope="module")
def workers(start_worker: WorkerFactory) -> dict[str, str]:
    return {v: start_worker(v).url for v in ("v1", "v2")}


@pytest.fixture(scope="session")
def chaos_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    """One Redis instance of the suite's own (append-only, like the local stack's): the
    scenarios are about faults, and the shared test Redis runs on two topologies."""
    server = EmbeddedRedis(tmp_path_factory.mktemp("chaos-redis"), appendonly=True).start()
    yield server
    server.stop()
