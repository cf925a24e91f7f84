"""Labelled feedback meets the shadow's answer exactly once, whichever reaches Redis first, on
real gateway processes (two replicas sharing one real Redis) and real shadow workers."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from model_workers import registry
from model_workers.train import load_dataset
from router.core.metrics import GatewayMetrics
from router.core.settings import Settings
from router.local.processes import poll_until
from router.local.redis_server import RedisTopology
from router.recording.events import ShadowComparison
from router.recording.recorder import RedisRecorder
from tests.conftest import SAMPLE_ROWS, Gateway, GatewayFactory, WorkerFactory, write_experiment
from tests.integration.test_shadow import FAST, experiment, pair, post_all, shadow_report

N = 20
SHADOW_DELAY_MS = 4000
"""The late shadow answers this long after the primary: every feedback lands before it."""
SOON_DELAY_MS = 300
"""The soon shadow answers a moment after the primary, as a real model server does: feedback
sent right after the response meets it in flight."""


@pytest.fixture(scope="module")
def replicas(
    start_gateway: GatewayFactory,
    start_worker: WorkerFactory,
    redis_server: RedisTopology,
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Gateway, Gateway, str]:
    """Two gateway processes over the same experiments and the same Redis."""
    run = uuid.uuid4().hex[:6]
    v1 = start_worker("v1").url
    v3 = start_worker("v3", TURNOUT_WORKER_FAULT_DELAY_MS=str(SOON_DELAY_MS)).url
    late = start_worker("v3", TURNOUT_WORKER_FAULT_DELAY_MS=str(SHADOW_DELAY_MS)).url
    folder = tmp_path_factory.mktemp("experiments")
    shadow = "{targets: [v3], sample: 1.0}"
    for name, target in ((f"soon-{run}", v3), (f"late-{run}", late)):
        text = experiment(name, {"v1": v1, "v3": target}, {"v1": 100}, shadow)
        write_experiment(folder, text, f"{name}.yaml")
    env = {**redis_server.env, "TURNOUT_SHADOW_TIMEOUT": "20", **FAST}
    return start_gateway(folder, **env), start_gateway(folder, **env), run


def labelled_texts(start: int) -> tuple[list[str], list[Any]]:
    data = load_dataset(Settings().dataset, limit=SAMPLE_ROWS + start + N)
    return data.texts[SAMPLE_ROWS + start :], data.labels[SAMPLE_ROWS + start :]


def feedback(gw: Gateway, request_id: str, label: Any) -> int:
    r = httpx.post(
        f"{gw.url}/feedback", json={"request_id": request_id, "label": label}, timeout=10
    )
    assert r.status_code in (200, 202), r.text
    return r.status_code


def accuracy(models_dir: Path, version: str, texts: list[str], truth: list[Any]) -> float:
    outputs = registry.load(models_dir, "profanity", version).outputs(texts)
    return sum(o["label"] == t for o, t in zip(outputs, truth, strict=True)) / len(texts)


def scored(gw: Gateway, name: str) -> int:
    row = pair(shadow_report(gw, name))
    return int(row.get("labelled_feedback", {}).get("n", 0) or 0)


def wait_scored(gw: Gateway, name: str, expected: int, timeout: float) -> None:
    try:
        poll_until(lambda: scored(gw, name) == expected, timeout, what="shadow-scored feedback")
    except TimeoutError:
        pytest.fail(f"the shadow report scored {scored(gw, name)} feedbacks, not {expected}")


def assert_both_accuracies(
    gw: Gateway, name: str, models_dir: Path, texts: list[str], truth: list[Any]
) -> None:
    row = pair(shadow_report(gw, name))["labelled_feedback"]
    assert row["primary_accuracy"] == pytest.approx(accuracy(models_dir, "v1", texts, truth))
    assert row["shadow_accuracy"] == pytest.approx(accuracy(models_dir, "v3", texts, truth))


@pytest.mark.parametrize("on", ["same", "other"])
def test_feedback_right_after_each_response_scores_every_shadow(
    replicas: tuple[Gateway, Gateway, str], models_dir: Path, on: str
) -> None:
    a, b, run = replicas
    name = f"soon-{run}"
    before = scored(a, name)
    texts, truth = labelled_texts(0 if on == "same" else N)
    to = a if on == "same" else b
    with httpx.Client(timeout=10) as client:
        for i, (text, label) in enumerate(zip(texts, truth, strict=True)):
            body = {"text": text, "user_id": f"{on}{i}"}
            r = client.post(f"{a.url}/models/{name}/predict", json=body)
            assert r.status_code == 200, r.text
            feedback(to, r.json()["request_id"], label)
    poll_until(lambda: pair(shadow_report(a, name))["pairs"] >= before + N, 30, what="pairs")
    wait_scored(a, name, before + N, 10)
    if on == "same":
        assert_both_accuracies(a, name, models_dir, texts, truth)


@pytest.mark.parametrize("on", ["same", "other"])
def test_feedback_before_the_shadow_answers_is_scored_when_it_does(
    replicas: tuple[Gateway, Gateway, str],
    models_dir: Path,
    redis_server: RedisTopology,
    on: str,
) -> None:
    a, b, run = replicas
    name = f"late-{run}"
    before = scored(a, name)
    pairs_before = pair(shadow_report(a, name))["pairs"]
    texts, truth = labelled_texts(0 if on == "same" else N)
    to = a if on == "same" else b
    bodies = [{"text": t, "user_id": f"{on}{i}"} for i, t in enumerate(texts)]
    started = time.monotonic()
    served = asyncio.run(post_all(f"{a.url}/models/{name}/predict", bodies, concurrency=N))
    assert all(r["status"] == 200 for r in served)
    for r, label in zip(served, truth, strict=True):
        feedback(to, r["request_id"], label)
    # Every feedback is in before the first shadow answer can be: the order under test.
    assert time.monotonic() - started < SHADOW_DELAY_MS / 1000
    assert pair(shadow_report(a, name))["pairs"] == pairs_before
    wait_scored(a, name, before + N, 30)
    if on == "same":
        assert_both_accuracies(a, name, models_dir, texts, truth)

    # Exactly once: the same feedback again is a duplicate, a shadow answer recorded again
    # (another writer, another token) changes nothing.
    for r, label in zip(served, truth, strict=True):
        again = httpx.post(
            f"{to.url}/feedback", json={"request_id": r["request_id"], "label": label}
        )
        assert again.status_code == 409, again.text
    asyncio.run(rerecord(redis_server, name, [r["request_id"] for r in served], truth))
    assert scored(a, name) == before + N


async def rerecord(
    redis_server: RedisTopology, name: str, request_ids: list[str], labels: list[Any]
) -> None:
    recorder = RedisRecorder(Settings(**redis_server.settings), GatewayMetrics())
    try:
        for rid, label in zip(request_ids, labels, strict=True):
            recorder.record_shadow(
                ShadowComparison(rid, name, "cv", "v1", "v3", label, 0.5, 1.0, label, 0.5, 1.0)
            )
        await recorder.flush()
    finally:
        await recorder.redis.aclose()
