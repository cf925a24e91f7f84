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


async def hammer(cluster: EmbeddedCluster, pipelines: bool) -> list[BaseException | None]:
    """Commands whose node connections are closed again and again while they connect, send
    and read, as a slot-map refresh does to the old nodes' connections."""
    client = connect(Settings(redis_cluster_nodes=cluster.addresses))
    assert isinstance(client, Cluster)
    await client.initialize()
    count, pending = 200, [200]

    async def one(i: int) -> None:
        try:
            if pipelines:
                async with client.pipeline(transaction=False) as pipe:
                    pipe.get(f"k{{t{i % 7}}}")
                    pipe.get(f"k{{u{i % 5}}}")
                    await pipe.execute()
            else:
                await client.get(f"k{i}")
        finally:
            pending[0] -= 1

    async def close_under_them() -> None:
        while pending[0]:
            for node in client.get_nodes():
                await node.disconnect()
            await asyncio.sleep(0)

    results = await asyncio.gather(
        *(one(i) for i in range(count)), close_under_them(), return_exceptions=True
    )
    await client.aclose()
    return [r if isinstance(r, BaseException) else None for r in results[:count]]


@pytest.mark.parametrize("pipelines", [False, True], ids=["commands", "pipelines"])
def test_connections_closed_mid_command_are_connection_errors(
    cluster: EmbeddedCluster, pipelines: bool
) -> None:
    outcomes = asyncio.run(hammer(cluster, pipelines))
    others = [o for o in outcomes if o is not None and not isinstance(o, RedisError)]
    assert not others, others[:3]
    assert any(o is not None for o in outcomes)  # connections did close under commands
