"""A shared Cluster client whose connections another task closes mid-command: every caller
sees a Redis connection error (which it buffers, defers or answers 503 for), never a bare
RuntimeError or AttributeError that would become a 500."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.exceptions import RedisError

from router.core.settings import Settings
from router.local.redis_server import EmbeddedCluster
from router.storage.client import Cluster, connect


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedCluster]:
    server = EmbeddedCluster(Path(tmp_path_factory.mktemp("cluster-client")))
    server.start()
    yield server
    server.stop()


async def hammer(settings: Settings, pipelines: bool) -> tuple[int, list[BaseException]]:
    client = connect(settings)
    assert isinstance(client, Cluster)
    await client.initialize()

    async def one(i: int) -> None:
        if pipelines:
            async with client.pipeline(transaction=False) as pipe:
                pipe.get(f"k{{t{i % 7}}}")
                pipe.get(f"k{{u{i % 5}}}")
                await pipe.execute()
        else:
            await client.get(f"k{i}")

    async def close_under_them() -> None:
        await asyncio.sleep(0)
        for node in client.get_nodes():
            await node.disconnect()  # what a slot-map refresh does to the old nodes

    errors: list[BaseException] = []
    closed = 0
    for round in range(40):  # until connections did close under commands, a few rounds at least
        if round >= 5 and closed:
            break
        results = await asyncio.gather(
            *(one(i) for i in range(200)), close_under_them(), return_exceptions=True
        )
        errors += [r for r in results if isinstance(r, BaseException)]
        closed += sum(isinstance(r, RedisError) for r in results)
    await client.aclose()
    return closed, errors


@pytest.mark.parametrize("pipelines", [False, True], ids=["commands", "pipelines"])
def test_connections_closed_mid_command_are_connection_errors(
    cluster: EmbeddedCluster, pipelines: bool
) -> None:
    settings = Settings(redis_cluster_nodes=cluster.addresses)
    closed, errors = asyncio.run(hammer(settings, pipelines))
    others = [e for e in errors if not isinstance(e, RedisError)]
    assert not others, others[:3]
    assert closed > 0  # the scenario did close connections under commands
