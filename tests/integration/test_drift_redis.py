"""Drift's Redis I/O on a real server: verdicts replaced whole; streams read by time window."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from router.core.metrics import GatewayMetrics
from router.core.settings import Settings
from router.drift import reads
from router.drift.store import DriftState, Verdict, read_state, read_states, write_state
from router.local.redis_server import RedisTopology
from router.recording.events import ShadowComparison
from router.recording.feedback import FeedbackInput, FeedbackWriter
from router.recording.recorder import RedisRecorder
from router.storage import keys
from router.storage.client import RedisClient, connect
from tests.loop_support import scored_outcome as outcome

DB = 11  # a database of its own on the shared test server


KEYS = (keys.drift, keys.events, keys.shadow_events, keys.feedback)


def run(
    redis_server: RedisTopology, scenario: Callable[[RedisClient, Settings], Awaitable[None]]
) -> None:
    async def main() -> None:
        settings = Settings(**redis_server.with_db(DB).settings)
        client = connect(settings)
        for key in (k(e) for e in ("exp", "other") for k in KEYS):
            await client.delete(key)
        try:
            await scenario(client, settings)
        finally:
            await client.aclose()

    asyncio.run(main())


def test_verdicts_are_replaced_whole(redis_server: RedisTopology) -> None:
    async def scenario(client: RedisClient, _: Settings) -> None:
        first = DriftState(
            {"checked_at": 1.0, "drift": True, "html": "/tmp/drift.html"},
            [
                Verdict("v1", "prediction", "drift", "KS ...", {"psi": 0.4}),
                Verdict("v2", "prediction", "ok", "fine"),
            ],
        )
        await write_state(client, "exp", first)
        state = await read_state(client, "exp")
        assert state is not None and state.run["html"] == "/tmp/drift.html"
        assert [(v.version, v.verdict) for v in state.verdicts] == [("v1", "drift"), ("v2", "ok")]
        assert state.verdicts[0].data == {"psi": 0.4}
        assert state.as_dict()["verdicts"][0]["psi"] == 0.4
        await write_state(
            client,
            "exp",
            DriftState(
                {"checked_at": 2.0, "drift": False}, [Verdict("v1", "prediction", "ok", "")]
            ),
        )
        again = await read_state(client, "exp")
        assert again is not None and [v.version for v in again.verdicts] == ["v1"]
        assert await read_state(client, "other") is None
        assert set(await read_states(client, ["exp", "other"])) == {"exp"}

    run(redis_server, scenario)


def test_streams_read_back_by_window(redis_server: RedisTopology) -> None:
    async def scenario(client: RedisClient, settings: Settings) -> None:
        recorder = RedisRecorder(settings, GatewayMetrics())
        now = time.time()
        for i in range(30):
            recorder.record(outcome(f"{i:032x}", now - 30 + i, "v1", i / 30))
        recorder.record_shadow(
            ShadowComparison(
                f"{29:032x}", "exp", "cv", "v1", "v2", 1, 0.9, 1.0, 0, 0.2, 1.0, ts=now - 1
            )
        )
        assert await recorder.flush()
        got = await reads.read_outcomes(client, "exp", now - 10, now)
        assert len(got) == 10 and all(now - 10 <= r["ts"] < now for r in got)
        assert got[0]["version"] == "v1" and got[0]["score"] == 20 / 30 and got[0]["label"] == 1
        (pair,) = await reads.read_comparisons(client, "exp", now - 10, now)
        assert (pair["primary"], pair["shadow"], pair["shadow_score"]) == ("v1", "v2", 0.2)
        writer = FeedbackWriter(client, 1000)
        for i in (25, 26):
            await writer.accept(FeedbackInput(f"{i:032x}", None, 1), now=time.time())
        await writer.accept(FeedbackInput(f"{27:032x}", 0.5, None), now=time.time())
        labels = await reads.read_feedback_labels(client, "exp", now - 60, time.time() + 1)
        assert labels == {f"{25:032x}": 1, f"{26:032x}": 1}
        assert await reads.read_feedback_labels(client, "exp", now - 600, now - 300) == {}
        await recorder.redis.aclose()

    run(redis_server, scenario)
