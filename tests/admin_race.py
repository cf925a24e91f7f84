"""A promotion racing a hand edit of its file: the real promotion code on real files and a real
Redis, with an editor thread writing the file while the promotion runs (issue 24, finding 8).

An edit is lost when the editor wrote it and the file at the end does not hold it: the
promotion then replaced a file it had not read. The editor alternates the two ways editors
save: in place (truncate and write) and a temp file renamed over the original.
"""

from __future__ import annotations

import asyncio
import os
import random
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from router.admin.actions import redis_call
from router.admin.promotion import Promotions
from router.config.resolve import load_directory
from router.core.errors import Conflict
from router.core.metrics import GatewayMetrics
from router.core.settings import Settings
from router.flags.cache import FlagCache
from router.flags.store import FlagStore
from router.flags.values import FlagDefaults
from router.local.redis_server import RedisTopology
from router.routing.table import RouteTable
from router.storage.client import connect
from router.upstream.breaker import CircuitBreaker
from router.upstream.pool import UpstreamPool, UpstreamTimeouts
from tests.conftest import canary_yaml, write_experiment

NAME = "race-exp"


@dataclass
class RaceTally:
    trials: int = 0
    lost: int = 0
    promoted: int = 0
    refused: int = 0


def hand_edit(path: Path, text: str, in_place: bool) -> None:
    if in_place:
        with path.open("w", encoding="utf-8") as handle:
            handle.write(text)
        return
    tmp = path.with_name(f".editor-{threading.get_ident()}.swp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


async def promote_races(
    folder: Path, server: RedisTopology, workers: dict[str, str], trials: int, seed: int = 24
) -> RaceTally:
    """``trials`` promotions of v2, each raced by one hand edit at a random moment within it."""
    rng = random.Random(seed)
    settings = Settings(**server.settings)
    original = canary_yaml(workers, {"v1": 50, "v2": 50}, name=NAME)
    path = write_experiment(folder, original, "exp.yaml")
    pool = UpstreamPool(UpstreamTimeouts(1.0, 2.0, 4), lambda: CircuitBreaker(3, 5.0))
    table = RouteTable(folder, settings.allowed_hosts, pool, GatewayMetrics())
    table.install_initial(load_directory(folder, settings.allowed_hosts))
    store = FlagStore(connect(settings), FlagDefaults(), 1000)
    flags = FlagCache(store, FlagDefaults(), 60.0)
    promotions = Promotions(table, flags, settings.allowed_hosts, time.time, redis_call)
    tally = RaceTally()
    span = 0.01  # how long the last promotion took: the editor's moment falls within it
    try:
        for trial in range(trials):
            write_experiment(folder, original, "exp.yaml")
            await table.reload()
            edited = f"{original}# hand edit {trial}\n"
            delay = rng.uniform(0, span)

            def editor(text: str = edited, wait: float = delay, odd: bool = trial % 2 == 1) -> None:
                time.sleep(wait)  # a random moment of the promotion, not a synchronisation
                hand_edit(path, text, in_place=odd)

            thread = threading.Thread(target=editor)
            thread.start()
            started = time.perf_counter()
            try:
                await promotions.promote(table.require(NAME), "v2", "ops", "race")
                tally.promoted += 1
            except Conflict:
                tally.refused += 1
            span = 0.5 * span + 0.5 * (time.perf_counter() - started)
            await asyncio.to_thread(thread.join)
            tally.trials += 1
            if f"# hand edit {trial}\n" not in path.read_text(encoding="utf-8"):
                tally.lost += 1
    finally:
        await store.close()
        await pool.close()
    return tally
