"""The bandit through real gateways, real workers and a real Redis.

Three replicas share one Redis and one folder of bandit experiments (one model each); a
feedback storm, the frozen flag, fallbacks, sticky users, a removed arm and a refused prior run
against them. A fourth gateway on a Redis of its own loses it mid-test. The end-to-end test
replays labelled tweets with feedback from their true labels.
"""

from __future__ import annotations

import asyncio
import csv
import json
import uuid
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from model_workers import registry
from model_workers.recipes import RECIPES, Recipe
from model_workers.train import load_dataset, train
from router.cli import app as cli
from router.core.settings import Settings
from router.local.processes import poll_until
from router.local.redis_server import EmbeddedRedis, RedisTopology
from router.storage import keys
from tests.conftest import SAMPLE_ROWS, Gateway, GatewayFactory, WorkerFactory
from tests.conftest import write_experiment as write

RUN = uuid.uuid4().hex[:6]
STORM, FROZEN, FALLBACK, STICKY, REMOVE = (
    f"{n}-{RUN}" for n in ("storm", "frozen", "fallback", "sticky", "remove")
)
TOKEN = "bandit-ops-token-0123456789"
REFRESH = 0.2
ENV = {
    "TURNOUT_RECORDING_FLUSH_INTERVAL": "0.05",
    "TURNOUT_ACCESS_LOG": "false",
    "TURNOUT_BANDIT_REFRESH_INTERVAL": str(REFRESH),
    # The fallback experiment's failing arm must stay "available" (a breaker would exclude it).
    "TURNOUT_BREAKER_FAILURES": "1000000",
    "TURNOUT_ADMIN_TOKENS": json.dumps({"ops": TOKEN}),
    "TURNOUT_SEED": "3",
}


def bandit_yaml(
    name: str, model: str, variants: dict[str, str], arms: list[str], extra: str = ""
) -> str:
    lines = [
        f"name: {name}",
        f"model: {model}",
        f"control: {next(iter(variants))}",
        "variants:",
        *[f"  {v}: {{url: '{u}'}}" for v, u in variants.items()],
        "policy:",
        "  kind: bandit",
        f"  arms: [{', '.join(arms)}]",
    ]
    return "\n".join(lines) + "\n" + extra


@pytest.fixture(scope="module")
def workers(start_worker: WorkerFactory) -> dict[str, str]:
    return {
        "v1": start_worker("v1").url,
        "v2": start_worker("v2").url,
        "v3": start_worker("v3").url,
        "broken": start_worker("v2", TURNOUT_WORKER_FAULT_STATUS="500").url,
    }


@pytest.fixture(scope="module")
def folder(workers: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("bandit-experiments")
    pair = {"v1": workers["v1"], "v2": workers["v2"]}
    write(folder, bandit_yaml(STORM, "storm", pair, ["v1", "v2"]), "storm.yaml")
    write(folder, bandit_yaml(FROZEN, "frozen", pair, ["v1", "v2"]), "frozen.yaml")
    failing = {"v1": workers["v1"], "v2": workers["broken"]}
    write(folder, bandit_yaml(FALLBACK, "fallback", failing, ["v1", "v2"]), "fallback.yaml")
    sticky = bandit_yaml(STICKY, "sticky", pair, ["v1", "v2"], "  sticky: user_id\n")
    write(folder, sticky, "sticky.yaml")
    write(folder, bandit_yaml(REMOVE, "remove", pair, ["v1", "v2"]), "remove.yaml")
    return folder


@pytest.fixture(scope="module")
def replicas(
    start_gateway: GatewayFactory, folder: Path, redis_server: RedisTopology
) -> list[Gateway]:
    env = {**redis_server.env, **ENV}
    return [start_gateway(folder, **env) for _ in range(3)]


# --- helpers ------------------------------------------------------------------------------


async def post_many(
    calls: list[tuple[str, dict[str, Any]]], concurrency: int = 32
) -> list[dict[str, Any]]:
    """POST each (url, body) with ``concurrency`` in flight; ``http`` holds the status."""
    results: list[dict[str, Any]] = [{} for _ in calls]
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(len(calls)):
        queue.put_nowait(i)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def one() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                url, body = calls[i]
                async with session.post(url, json=body) as response:
                    results[i] = {**(await response.json()), "http": response.status}

        await asyncio.gather(*(one() for _ in range(concurrency)))
    return results


def predict(
    gateways: list[Gateway], model: str, n: int, users: list[str] | None = None
) -> list[dict[str, Any]]:
    calls = []
    for i in range(n):
        body: dict[str, Any] = {"text": f"you are a lovely person number {i}"}
        if users is not None:
            body["user_id"] = users[i % len(users)]
        calls.append((f"{gateways[i % len(gateways)].url}/models/{model}/predict", body))
    answers = asyncio.run(post_many(calls))
    assert all(a["http"] == 200 for a in answers), Counter(a["http"] for a in answers)
    return answers


def buffered(gateway: Gateway) -> float:
    for family in text_string_to_metric_families(httpx.get(f"{gateway.url}/metrics").text):
        for sample in family.samples:
            if sample.name == "turnout_events_buffered":
                return sample.value
    raise AssertionError("no turnout_events_buffered")


def drained(gateways: list[Gateway]) -> None:
    poll_until(lambda: all(buffered(g) == 0 for g in gateways), 30, what="recording to drain")


def feedback(gateways: list[Gateway], pairs: list[tuple[str, float]]) -> list[dict[str, Any]]:
    calls = [
        (f"{gateways[i % len(gateways)].url}/feedback", {"request_id": rid, "reward": reward})
        for i, (rid, reward) in enumerate(pairs)
    ]
    return asyncio.run(post_many(calls, concurrency=48))


def evidence(redis_server: RedisTopology, experiment: str) -> dict[str, float]:
    return {k: float(v) for k, v in redis_server.client().hgetall(keys.bandit(experiment)).items()}


def report(gateway: Gateway, name: str) -> dict[str, Any]:
    r = httpx.get(f"{gateway.url}/experiments/{name}/report", timeout=10)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def arms_of(gateway: Gateway, name: str) -> dict[str, dict[str, Any]]:
    section = report(gateway, name)["bandit"]
    return {a["arm"]: a for a in section["arms"]}


# --- tests --------------------------------------------------------------------------------


def test_feedback_storm_over_three_replicas_counts_each_request_once(
    replicas: list[Gateway], redis_server: RedisTopology
) -> None:
    answers = predict(replicas, "storm", 2500)
    drained(replicas)
    rewards = [0.0, 1.0, 0.5, 0.25]
    unique = [(a["request_id"], rewards[i % 4]) for i, a in enumerate(answers)]
    # 10,000 feedbacks: every request id 4 times, each copy to another replica, all at once.
    storm = [unique[i % len(unique)] for i in range(10_000)]
    results = feedback(replicas, storm)
    statuses = Counter(r["http"] for r in results)
    assert statuses == {200: len(unique), 409: 10_000 - len(unique)}, statuses
    held = evidence(redis_server, STORM)
    counted = sum(v for k, v in held.items() if k.endswith(":n"))
    increments = sum(v for k, v in held.items() if k.endswith((":s", ":f")))
    assert counted == len(unique)
    assert increments == len(unique)  # alpha + beta grew by exactly one per unique feedback
    assert sum(v for k, v in held.items() if k.endswith(":s")) == sum(r for _, r in unique)
    credited = Counter(r["credited_variant"] for r in results if r["http"] == 200)
    for arm in ("v1", "v2"):
        assert held.get(f"{arm}:n", 0) == credited[arm]
    arms = arms_of(replicas[1], STORM)
    assert sum(a["rewards"] for a in arms.values()) == len(unique)
    assert {a["alpha"] + a["beta"] for a in arms.values()} == {
        2.0 + credited["v1"],
        2.0 + credited["v2"],
    }


def test_frozen_flag_stops_posterior_updates_but_not_serving(
    replicas: list[Gateway], redis_server: RedisTopology
) -> None:
    auth = {"authorization": f"Bearer {TOKEN}"}
    url = f"{replicas[0].url}/admin/flags/{FROZEN}/frozen"
    r = httpx.put(url, json={"value": True, "reason": "test"}, headers=auth)
    assert r.status_code == 200, r.text
    answers = predict(replicas, "frozen", 30)
    drained(replicas)
    results = feedback(replicas, [(a["request_id"], 1.0) for a in answers])
    assert {r["http"] for r in results} == {200}
    assert {r["bandit"] for r in results} == {"frozen"}
    assert evidence(redis_server, FROZEN) == {}
    assert report(replicas[2], FROZEN)["totals"]["feedback"] == 30  # still counted
    assert httpx.delete(url, headers=auth, params={"reason": "test"}).status_code == 200
    more = predict(replicas, "frozen", 10)
    drained(replicas)
    results = feedback(replicas, [(a["request_id"], 1.0) for a in more])
    assert {r["bandit"] for r in results} == {"updated"}
    assert sum(v for k, v in evidence(redis_server, FROZEN).items() if k.endswith(":n")) == 10


def test_fallback_is_credited_to_the_arm_that_answered(
    replicas: list[Gateway], redis_server: RedisTopology
) -> None:
    answers = predict(replicas, "fallback", 80)
    fallbacks = [a for a in answers if a["fallback"]]
    assert fallbacks, "the failing arm was never drawn"
    assert {(a["variant"], a["served_variant"]) for a in fallbacks} == {("v2", "v1")}
    drained(replicas)
    results = feedback(replicas, [(a["request_id"], 1.0) for a in answers])
    assert all(r["http"] == 200 and r["credited_variant"] == "v1" for r in results)
    held = evidence(redis_server, FALLBACK)
    assert held.get("v2:n", 0) == 0 and held.get("v2:s", 0) == 0
    assert held["v1:n"] == 80
    arms = arms_of(replicas[0], FALLBACK)
    assert arms["v2"]["ipw_feedback"] == 0  # v2 never produced a reward
    assert arms["v1"]["ipw_feedback"] == 80 - len(fallbacks)
    assert arms["v1"]["naive_mean"] == 1.0


def test_sticky_users_keep_their_arm_on_every_replica(replicas: list[Gateway]) -> None:
    users = [f"user-{RUN}-{i}" for i in range(30)]
    first = predict(replicas[:1], "sticky", 30, users)
    assert not any(a["sticky"] for a in first)
    drained(replicas)
    poll_until(
        lambda: all(
            report(g, STICKY)["bandit"]["posterior"]["sticky_users_cached"] >= 30 for g in replicas
        ),
        10,
        what="every replica to pull the sticky assignments",
    )
    again = predict(replicas, "sticky", 60, users)
    arm_of = {u: a["variant"] for u, a in zip(users, first, strict=True)}
    for i, answer in enumerate(again):
        assert answer["sticky"], answer
        assert answer["variant"] == arm_of[users[i % 30]]
    drained(replicas)
    section = report(replicas[2], STICKY)["bandit"]
    assert section["sticky_pulls"] == 60
    assert section["pulls"] == 90


def test_removed_arm_keeps_its_posterior_and_a_bad_prior_is_refused(
    replicas: list[Gateway], folder: Path, workers: dict[str, str], redis_server: RedisTopology
) -> None:
    answers = predict(replicas, "remove", 40)
    drained(replicas)
    feedback(replicas, [(a["request_id"], 1.0 if a["variant"] == "v2" else 0.0) for a in answers])
    before = arms_of(replicas[0], REMOVE)["v2"]
    assert before["rewards"] > 0
    pair = {"v1": workers["v1"], "v2": workers["v2"]}
    write(folder, bandit_yaml(REMOVE, "remove", pair, ["v1"]), "remove.yaml")

    def reloaded(gateway: Gateway) -> bool:
        arms = arms_of(gateway, REMOVE)
        return arms["v2"]["sampled"] is False

    poll_until(lambda: all(reloaded(g) for g in replicas), 15, what="the arm removal")
    after = arms_of(replicas[1], REMOVE)["v2"]
    assert (after["alpha"], after["beta"], after["rewards"]) == (
        before["alpha"],
        before["beta"],
        before["rewards"],
    )
    assert after["traffic_share"] is None and after["prob_best"] is None
    assert {a["variant"] for a in predict(replicas, "remove", 40)} == {"v1"}
    # An invalid prior is refused with file, line and reason; the last good file keeps serving.
    bad = bandit_yaml(REMOVE, "remove", pair, ["v1", "v2"], "  prior: [0, 1]\n")
    write(folder, bad, "remove.yaml")

    def refused() -> str:
        listing = httpx.get(f"{replicas[0].url}/experiments").json()
        return " ".join(listing["refused"].values())

    poll_until(lambda: "prior" in refused(), 15, what="the bad prior to be refused")
    assert "remove.yaml:10" in refused()
    assert {a["variant"] for a in predict(replicas[:1], "remove", 20)} == {"v1"}
    write(folder, bandit_yaml(REMOVE, "remove", pair, ["v1", "v2"]), "remove.yaml")
    poll_until(lambda: all(not reloaded(g) for g in replicas), 15, what="the arm to come back")
    assert arms_of(replicas[2], REMOVE)["v2"]["rewards"] == before["rewards"]


def gauges(gateway: Gateway, experiment: str) -> dict[str, float]:
    values = {}
    for family in text_string_to_metric_families(httpx.get(f"{gateway.url}/metrics").text):
        for s in family.samples:
            if s.name.startswith("turnout_bandit_") and s.labels.get("experiment") == experiment:
                values[f"{s.name}:{s.labels.get('arm', '')}"] = s.value
    return values


def test_redis_down_keeps_sampling_from_the_last_posterior(
    start_gateway: GatewayFactory,
    workers: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    server = EmbeddedRedis(tmp_path_factory.mktemp("bandit-redis")).start()
    try:
        client = server.client()
        name = f"down-{RUN}"
        skewed = {"v1:s": 5, "v1:f": 95, "v1:n": 100, "v2:s": 95, "v2:f": 5, "v2:n": 100}
        client.hset(keys.bandit(name), mapping=skewed)
        folder = tmp_path_factory.mktemp("bandit-down")
        pair = {"v1": workers["v1"], "v2": workers["v2"]}
        write(folder, bandit_yaml(name, "down", pair, ["v1", "v2"]), "down.yaml")
        env = {**ENV, "TURNOUT_REDIS_URL": server.url, "TURNOUT_REDIS_SOCKET_TIMEOUT": "0.3"}
        gateway = start_gateway(folder, **env)
        share = report(gateway, name)["bandit"]["arms"][1]["traffic_share"]
        assert share > 0.999
        before = gauges(gateway, name)
        server.stop()
        answers = predict([gateway], "down", 100)
        assert Counter(a["variant"] for a in answers)["v2"] >= 97
        poll_until(
            lambda: gauges(gateway, name)["turnout_bandit_posterior_age_seconds:"] > 5 * REFRESH,
            10,
            what="the posterior to age",
        )
        after = gauges(gateway, name)
        for arm in ("v1", "v2"):
            key = f"turnout_bandit_posterior_mean:{arm}"
            assert after[key] == before[key]
        answer = answers[0]
        r = httpx.post(
            f"{gateway.url}/feedback", json={"request_id": answer["request_id"], "reward": 1}
        )
        assert r.status_code == 202  # feedback waits in the buffer, as its outcome does
        assert r.json()["status"] == "queued"
        server.start()

        def applied() -> bool:
            text = httpx.get(f"{gateway.url}/metrics").text
            return 'turnout_feedback_deferred_total{result="applied"} 1.0' in text

        poll_until(applied, 15, what="the queued feedback to be applied")
        poll_until(
            lambda: gauges(gateway, name)["turnout_bandit_posterior_age_seconds:"] < 3 * REFRESH,
            15,
            what="the posterior to refresh again",
        )
        drained([gateway])
    finally:
        server.stop()


WEAK_ROWS = 60
"""The weak arm: the v3 recipe without its Platt calibration fitted on 60 tweets (about 0.67
accurate on unseen tweets, against about 0.89 for v1 fitted on 4,000). Calibrated, it needs 5
rows of each class for its folds (60 tweets hold 4 negatives) and would answer "offensive" to
everything: 0.82 accurate, too close to v1 for the bound below."""


def _uncalibrated_v3() -> Recipe:
    def build(params: dict[str, Any]) -> Any:
        pipeline = RECIPES["v3"].build(params)
        return pipeline.set_params(clf=pipeline.named_steps["clf"].estimator)

    return replace(RECIPES["v3"], build=build)


def test_replayed_tweets_move_traffic_to_the_most_accurate_version(
    start_gateway: GatewayFactory,
    start_worker: WorkerFactory,
    workers: dict[str, str],
    models_dir: Path,
    redis_server: RedisTopology,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Thompson sampling promises concentration on the best arm only where there is a best
    arm: v1 against v3 (0.88 vs 0.89 here) may go either way, so the replay pits v1 against a
    version that is really worse. With a gap of ~0.2 the weaker arm is pulled ~30 times in
    1,500 on average: in 20,000 simulated Bernoulli runs (0.889 vs 0.667, Beta(1, 1) priors,
    posteriors refreshed every 30 pulls) it was pulled more than 300 times in none, so the
    bound asserted (750) fails with a probability well below 1e-4."""
    weak_dir = tmp_path_factory.mktemp("weak-models")  # not the shared registry of the run
    train(_uncalibrated_v3(), "v0", load_dataset(Settings().dataset, limit=WEAK_ROWS), weak_dir)
    name = f"replay-{RUN}"
    folder = tmp_path_factory.mktemp("bandit-replay")
    weak = start_worker("v0", TURNOUT_MODELS_DIR=str(weak_dir))
    arms = {"v1": workers["v1"], "v0": weak.url}
    write(folder, bandit_yaml(name, "profanity", arms, ["v1", "v0"]), "replay.yaml")
    gateway = start_gateway(folder, **redis_server.env, **ENV)
    # Tweets the test models were not trained on (they saw the first SAMPLE_ROWS rows).
    rows = load_dataset(Settings().dataset, limit=SAMPLE_ROWS + 1500)
    path = tmp_path_factory.mktemp("tweets") / "tweets.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        out = csv.writer(handle)
        out.writerow(["text", "label"])
        out.writerows(zip(rows.texts[SAMPLE_ROWS:], rows.labels[SAMPLE_ROWS:], strict=True))
    args = ["replay", str(path), "--label-col", "label", "--feedback", "--json"]
    result = CliRunner().invoke(cli, [*args, "--url", gateway.url, "--concurrency", "16"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["feedback_accepted"] == 1500, summary
    section = report(gateway, name)
    texts, truth = rows.texts[SAMPLE_ROWS:], rows.labels[SAMPLE_ROWS:]
    offline = {}
    for version, root in (("v1", models_dir), ("v0", weak_dir)):
        answers = registry.load(root, "profanity", version).outputs(texts)
        offline[version] = sum(a["label"] == t for a, t in zip(answers, truth, strict=True)) / 1500
    arms_now = {a["arm"]: a for a in section["bandit"]["arms"]}
    pulls = {arm: arms_now[arm]["pulls"] for arm in arms_now}
    print(f"replay: accuracy on these tweets {offline}, pulls {pulls}")
    assert offline["v1"] - offline["v0"] > 0.15, offline  # the gap is real, not assumed
    assert arms_now["v1"]["pulls"] > 750, (offline, arms_now)
    assert arms_now["v1"]["traffic_share"] > 0.5, (offline, arms_now)
