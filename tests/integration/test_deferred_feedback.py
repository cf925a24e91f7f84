"""Feedback while Redis is unreachable: queued (202), then applied exactly once when it is back.

In-process gateway (so the test reads the replica's own metrics and pauses its recorder), real
worker processes, a real redis-server that the test stops and starts.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest

from router.core.errors import Conflict
from router.core.metrics import DEFERRED_RESULTS, GatewayMetrics
from router.core.settings import Settings
from router.local.processes import free_port
from router.local.redis_server import EmbeddedRedis, RedisTopology
from router.recording.feedback import AppliedBefore, FeedbackInput, FeedbackWriter
from router.recording.feedback_service import BEHIND, UNREACHABLE
from router.recording.recorder import RedisRecorder
from router.storage import keys
from tests.conftest import WorkerFactory, canary_yaml, write_experiment
from tests.integration.test_recording import QUIET, gateway, make_outcome, sample, send, until


@pytest.fixture(scope="module")
def workers(start_worker: WorkerFactory) -> dict[str, str]:
    return {v: start_worker(v).url for v in ("v1", "v2")}


def make_settings(
    tmp_path: Path, workers: dict[str, str], models_dir: Path, yaml: str, **kw: Any
) -> Settings:
    write_experiment(tmp_path / "experiments", yaml)
    base: dict[str, Any] = {
        "experiments_dir": tmp_path / "experiments",
        "models_dir": models_dir,
        **QUIET,
        "bandit_refresh_interval": 0.2,
    }
    return Settings(**{**base, **kw})


def bandit_yaml(name: str, workers: dict[str, str]) -> str:
    lines = [
        f"name: {name}",
        "model: profanity",
        "control: v1",
        "variants:",
        *[f"  {v}: {{url: '{u}'}}" for v, u in workers.items()],
        "policy:",
        "  kind: bandit",
        "  arms: [v1, v2]",
    ]
    return "\n".join(lines) + "\n"


def deferred(metrics: GatewayMetrics) -> dict[str, float]:
    """``turnout_feedback_deferred_total`` by result; asserts that every queued one is settled
    or still queued."""
    name = "turnout_feedback_deferred_total"
    got = {r: sample(metrics, name, result=r) for r in DEFERRED_RESULTS}
    settled = sum(v for r, v in got.items() if r not in ("queued", "refused_full"))
    assert got["queued"] == settled + sample(metrics, "turnout_feedback_queued"), got
    return got


def test_feedback_while_redis_is_down_is_queued_then_applied_exactly_once(
    tmp_path: Path, workers: dict[str, str], models_dir: Path
) -> None:
    server = EmbeddedRedis(tmp_path / "redis", appendonly=True).start()
    name = f"deferred-{uuid.uuid4().hex[:8]}"
    settings = make_settings(
        tmp_path, workers, models_dir, bandit_yaml(name, workers), redis_url=server.url
    )

    async def scenario() -> None:
        metrics = GatewayMetrics()
        recorder = RedisRecorder(settings, metrics)
        async with gateway(settings, recorder) as client:
            before = await send(client, 4)
            await until(lambda: len(recorder.buffer) == 0, 20, "the outcomes to be written")
            await asyncio.to_thread(server.stop)
            during = await send(client, 4)  # predictions keep working; outcomes wait
            assert all(recorder.buffer.holds(rid) for rid in during)
            rewards = {rid: float(i % 2) for i, rid in enumerate(before + during)}
            bodies = [{"request_id": rid, "reward": r} for rid, r in rewards.items()]
            # Two duplicates (the first sent must win), and an id no one served.
            bodies += [
                {"request_id": before[0], "reward": 1 - rewards[before[0]]},
                {"request_id": during[1], "reward": 1 - rewards[during[1]]},
                {"request_id": f"never-served-{name}", "reward": 1},
            ]
            answers = [await client.post("/feedback", json=body) for body in bodies]
            assert [a.status_code for a in answers] == [202] * len(bodies), answers[-1].text
            assert answers[0].json() == {
                "status": "queued",
                "request_id": before[0],
                "detail": UNREACHABLE,
            }
            assert answers[4].json()["detail"] == UNREACHABLE  # its outcome is still buffered
            assert answers[8].json()["detail"] == BEHIND
            assert deferred(metrics)["queued"] == 11
            assert sample(metrics, "turnout_feedback_queued") == 11
            assert sample(metrics, "turnout_redis_up") == 0

            # Paused, so only the deferred feedback itself can get its request's outcome written.
            recorder.pause()
            await asyncio.to_thread(server.start)
            await until(
                lambda: sample(metrics, "turnout_feedback_queued") == 0, 20, "the queue to drain"
            )
            assert deferred(metrics) == {
                **dict.fromkeys(DEFERRED_RESULTS, 0.0),
                "queued": 11,
                "applied": 8,
                "duplicate": 2,
                "unknown": 1,
            }
            credited = sum(
                s.value
                for m in metrics.registry.collect()
                if m.name == "turnout_feedback"
                for s in m.samples
                if s.name == "turnout_feedback_total"
            )
            assert credited == 8

            report = (await client.get(f"/experiments/{name}/report")).json()
            assert report["totals"]["feedback"] == 8
            direct = server.client()
            assert direct.xlen(keys.feedback(name)) == 8
            evidence = {k: float(v) for k, v in direct.hgetall(keys.bandit(name)).items()}
            part = {p: sum(v for k, v in evidence.items() if k.endswith(f":{p}")) for p in "nsf"}
            # Each request's first reward went into the posterior, once; the duplicates did not.
            assert part == {"n": 8, "s": sum(rewards.values()), "f": 8 - sum(rewards.values())}
            for rid, reward in rewards.items():
                assert direct.hget(keys.attribution(name, rid), keys.FEEDBACK_REWARD) == repr(
                    reward
                )

            again = await client.post("/feedback", json=bodies[0])
            assert again.status_code == 409  # exactly once, also against the direct path
            recorder.resume()
            await until(lambda: len(recorder.buffer) == 0, 20, "the buffer to drain")

    try:
        asyncio.run(scenario())
    finally:
        server.stop()


def test_a_full_queue_answers_503_and_shutdown_counts_what_is_left(
    tmp_path: Path, workers: dict[str, str], models_dir: Path
) -> None:
    settings = make_settings(
        tmp_path,
        workers,
        models_dir,
        canary_yaml(workers, {"v1": 50, "v2": 50}, name=f"full-{uuid.uuid4().hex[:8]}"),
        redis_url=f"redis://127.0.0.1:{free_port()}/0",  # never started
        feedback_queue_size=3,
        recording_shutdown_timeout=0.3,
    )
    metrics = GatewayMetrics()

    async def scenario() -> None:
        recorder = RedisRecorder(settings, metrics)
        async with gateway(settings, recorder) as client:
            ids = await send(client, 4)
            for rid in ids[:3]:
                r = await client.post("/feedback", json={"request_id": rid, "reward": 1})
                assert r.status_code == 202, r.text
            full = await client.post("/feedback", json={"request_id": ids[3], "reward": 1})
            assert full.status_code == 503
            assert full.json()["error"] == "feedback_queue_full"
            assert "TURNOUT_FEEDBACK_QUEUE_SIZE" in full.json()["detail"]
            bad = await client.post("/feedback", json={"request_id": ids[3], "reward": 2})
            assert bad.status_code == 422  # refused by the rules before any queueing
            got = deferred(metrics)
            assert (got["queued"], got["refused_full"]) == (3, 1)

    asyncio.run(scenario())
    # Redis never came: the shutdown drain gave up and counted the three it still held.
    assert deferred(metrics)["shutdown"] == 3
    assert sample(metrics, "turnout_feedback_queued") == 0


def test_a_retry_after_a_lost_reply_knows_it_was_applied(
    redis_server: RedisTopology, tmp_path: Path
) -> None:
    settings = Settings(**redis_server.settings, experiments_dir=tmp_path)
    name = f"lost-{uuid.uuid4().hex[:8]}"

    async def scenario() -> None:
        recorder = RedisRecorder(settings, GatewayMetrics())
        recorder.record(make_outcome(f"{name}-1", name))
        assert await recorder.flush()
        writer = FeedbackWriter(recorder.redis, 100)
        feedback = FeedbackInput(f"{name}-1", 1.0, None)
        await writer.accept(feedback, 2.0, "replica:1")
        with pytest.raises(AppliedBefore) as replayed:  # the same feedback, retried
            await writer.accept(feedback, 2.0, "replica:1")
        assert (replayed.value.experiment, replayed.value.version) == (name, "v1")
        for token in ("replica:2", None):  # another feedback for the request: a duplicate
            with pytest.raises(Conflict) as refused:
                await writer.accept(feedback, 3.0, token)
            assert not isinstance(refused.value, AppliedBefore)
        await recorder.close()

    asyncio.run(scenario())
    assert redis_server.client().hget(keys.counters(name, "v1"), keys.FEEDBACK_N) == "1"
