"""The rollout store on a real Redis: one lease holder, fencing tokens, compare-and-set."""

from __future__ import annotations

import asyncio

from router.core.settings import Settings
from router.local.redis_server import RedisTopology
from router.rollout.store import OK, RolloutStore
from router.storage import keys
from router.storage.client import connect

DB = 10  # a database of its own on the shared test server


def run(redis_server: RedisTopology, scenario: object) -> None:
    async def main() -> None:
        client = connect(Settings(**redis_server.with_db(DB).settings))
        rollout = [keys.rollout, keys.rollout_history, keys.rollout_lease, keys.rollout_fence]
        await client.delete(*(key("e") for key in rollout), keys.alerts_seen("e"))
        try:
            await scenario(RolloutStore(client, 100))  # type: ignore[operator]
        finally:
            await client.aclose()

    asyncio.run(main())


def test_one_lease_holder_and_increasing_fencing_tokens(redis_server: RedisTopology) -> None:
    async def scenario(store: RolloutStore) -> None:
        a = await store.acquire("e", "replica-a", 0.3)
        assert a is not None and a.token == 1
        assert await store.acquire("e", "replica-b", 0.3) is None
        renewed = await store.acquire("e", "replica-a", 0.3)
        assert renewed == a
        await asyncio.sleep(0.4)  # a's lease lapses (a paused process)
        b = await store.acquire("e", "replica-b", 5)
        assert b is not None and b.token == 2
        # a, back from its pause, can no longer write: its lease is gone
        assert await store.write("e", a, 0, {"phase": "running"}, {"action": "x"}) == "lost_lease"
        assert await store.write("e", b, 0, {"phase": "running"}, {"action": "start"}) == OK
        await store.release(b)
        c = await store.acquire("e", "replica-c", 5)
        assert c is not None and c.token == 3

    run(redis_server, scenario)


def test_a_transition_is_written_once_whoever_decided_it(redis_server: RedisTopology) -> None:
    async def scenario(store: RolloutStore) -> None:
        lease = await store.acquire("e", "a", 5)
        assert lease is not None
        assert await store.write("e", lease, 0, {"step": "0"}, {"action": "start"}) == OK
        # two decisions taken on seq 1: the first lands, the second finds the state moved on
        assert await store.write("e", lease, 1, {"step": "1"}, {"action": "advance"}) == OK
        assert await store.write("e", lease, 1, {"step": "1"}, {"action": "advance"}) == "conflict"
        # an operator's change needs no lease but the same compare-and-set
        assert await store.write("e", None, 2, {"phase": "paused"}, {"action": "pause"}) == OK
        # a gate update (no history entry) does not move seq
        assert await store.write("e", lease, 3, {"gates": []}, None) == OK
        state = await store.state("e")
        assert (state.seq, state.step, state.phase) == (3, 1, "paused")
        history = await store.history("e")
        assert [h["action"] for h in history] == ["start", "advance", "pause"]
        assert [int(h["seq"]) for h in history] == [1, 2, 3]
        # a newer token has written: an older holder's token is fenced off even with the lease
        raw = store.redis
        await raw.hset(keys.rollout("e"), "fence", "99")
        assert await store.write("e", lease, 3, {"x": "1"}, None) == "fenced"

    run(redis_server, scenario)


def test_alerts_are_acted_on_once(redis_server: RedisTopology) -> None:
    async def scenario(store: RolloutStore) -> None:
        assert await store.first_sight("e", "fp|t0", 1.0, 60)
        assert not await store.first_sight("e", "fp|t0", 2.0, 60)
        assert await store.first_sight("e", "fp|t1", 3.0, 60)

    run(redis_server, scenario)
