"""A real gateway in front of real workers: routing, stickiness, reload, fallback, bad input."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
from scipy.stats import chisquare

from router.local.processes import poll_until
from tests.conftest import Gateway, GatewayFactory, WorkerFactory, canary_yaml, write_experiment
from tests.support import assert_streamed_oversize_refused


@pytest.fixture(scope="module")
def workers(start_worker: WorkerFactory) -> dict[str, str]:
    return {v: start_worker(v).url for v in ("v1", "v2", "v3")}


@pytest.fixture(scope="module")
def gateway(
    start_gateway: GatewayFactory, workers: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Gateway:
    folder = tmp_path_factory.mktemp("experiments")
    write_experiment(folder, canary_yaml(workers, {"v1": 80, "v2": 10, "v3": 10}, sticky="user_id"))
    return start_gateway(folder)


def predict(gateway: Gateway, **body: Any) -> httpx.Response:
    headers = body.pop("headers", {})
    return httpx.post(f"{gateway.url}/predict", json=body, headers=headers, timeout=10)


async def drive(url: str, bodies: list[dict[str, Any]], concurrency: int = 32) -> list[dict]:
    """Send every body; return (status, json) pairs in order."""
    results: list[dict] = [{}] * len(bodies)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(len(bodies)):
        queue.put_nowait(i)
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=concurrency),
        timeout=aiohttp.ClientTimeout(total=30),
    ) as session:

        async def one() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                async with session.post(f"{url}/predict", json=bodies[i]) as r:
                    results[i] = {"status": r.status, **(await r.json())}

        await asyncio.gather(*(one() for _ in range(concurrency)))
    return results


def config_version(gateway: Gateway) -> str:
    return httpx.get(f"{gateway.url}/experiments").json()["experiments"][0]["config_version"]


def test_predict_contract(gateway: Gateway) -> None:
    r = predict(gateway, text="what a day", user_id="alice")
    assert r.status_code == 200
    body = r.json()
    assert set(body["prediction"]) >= {"label", "score", "is_profane", "model", "version"}
    assert body["model"] == "profanity"
    assert body["experiment"] == "exp"
    assert body["variant"] in ("v1", "v2", "v3")
    assert body["model_version"] == body["prediction"]["version"]
    assert body["fallback"] is False
    assert body["sticky"] is True
    assert body["config_version"] == config_version(gateway)
    assert r.headers["x-request-id"] == body["request_id"]


def test_request_id_is_echoed_and_key_precedence(gateway: Gateway) -> None:
    r = predict(gateway, text="hi", headers={"X-Request-Id": "abc-123"})
    assert r.json()["request_id"] == "abc-123"
    assert r.headers["x-request-id"] == "abc-123"
    assert r.json()["sticky"] is False  # no key at all: random assignment
    by_header = predict(gateway, text="hi", headers={"X-User-Id": "bob"}).json()
    assert by_header["sticky"] is True
    # user_id in the body wins over the header
    body_wins = {
        predict(gateway, text="hi", user_id="carol", headers={"X-User-Id": f"h{i}"}).json()[
            "variant"
        ]
        for i in range(20)
    }
    assert len(body_wins) == 1


def test_model_route(gateway: Gateway) -> None:
    r = httpx.post(f"{gateway.url}/models/profanity/predict", json={"text": "hello"})
    assert r.status_code == 200
    assert r.json()["model"] == "profanity"


BAD = [
    ("missing text", {"json": {}}, 422, "invalid_input"),
    ("text not a string", {"json": {"text": ["a"]}}, 422, "invalid_input"),
    ("empty text", {"json": {"text": ""}}, 422, "invalid_input"),
    ("whitespace text", {"json": {"text": "   "}}, 422, "invalid_input"),
    ("text over the limit", {"json": {"text": "b" * 10_001}}, 422, "invalid_input"),
    ("user_id wrong type", {"json": {"text": "a", "user_id": {"x": 1}}}, 422, "invalid_input"),
    ("user_id blank", {"json": {"text": "a", "user_id": " "}}, 422, "invalid_input"),
    ("context not an object", {"json": {"text": "a", "context": 3}}, 422, "invalid_input"),
    (
        "bad request id",
        {"json": {"text": "a"}, "headers": {"X-Request-Id": "no spaces allowed"}},
        422,
        "invalid_input",
    ),
    (
        "invalid json",
        {"content": b"{", "headers": {"content-type": "application/json"}},
        400,
        "invalid_json",
    ),
    (
        "invalid utf-8",
        {"content": b'{"text": "\xc3\x28"}', "headers": {"content-type": "application/json"}},
        400,
        "invalid_encoding",
    ),
    (
        "wrong content type",
        {"content": b"text=hi", "headers": {"content-type": "application/x-www-form-urlencoded"}},
        415,
        "unsupported_media_type",
    ),
    (
        "body over the byte limit",
        {"content": b" " * 1_048_577, "headers": {"content-type": "application/json"}},
        413,
        "payload_too_large",
    ),
]


@pytest.mark.parametrize(
    ("kwargs", "status", "code"), [b[1:] for b in BAD], ids=[b[0] for b in BAD]
)
def test_bad_input_is_refused_and_never_forwarded(
    gateway: Gateway, workers: dict[str, str], kwargs: dict, status: int, code: str
) -> None:
    def forwarded() -> int:
        total = 0
        for url in workers.values():
            for line in httpx.get(f"{url}/metrics").text.splitlines():
                if line.startswith('turnout_worker_requests_total{route="/predict"'):
                    total += int(float(line.rsplit(" ", 1)[1]))
        return total

    before = forwarded()
    r = httpx.post(f"{gateway.url}/predict", **kwargs)
    assert r.status_code == status, r.text
    assert r.json()["error"] == code
    assert r.json()["detail"]
    assert forwarded() == before


def test_oversize_stream_refused_before_read_whole(gateway: Gateway) -> None:
    assert_streamed_oversize_refused(gateway.url, "/predict")


def test_unknown_model_and_model_without_experiment(gateway: Gateway, models_dir: Path) -> None:
    r = httpx.post(f"{gateway.url}/models/nosuch/predict", json={"text": "a"})
    assert r.status_code == 404
    assert r.json()["error"] == "unknown_model"
    (models_dir / "spam").mkdir(exist_ok=True)
    r = httpx.post(f"{gateway.url}/models/spam/predict", json={"text": "a"})
    assert r.status_code == 404
    assert r.json()["error"] == "no_experiment"
    assert "no active experiment" in r.json()["detail"]


def test_forced_variant_header_without_admin_rights_is_ignored_and_counted(
    gateway: Gateway,
) -> None:
    def ignored() -> float:
        for line in httpx.get(f"{gateway.url}/metrics").text.splitlines():
            if line.startswith("turnout_forced_variant_ignored_total"):
                return float(line.split()[-1])
        return 0.0

    before = ignored()
    variants = {
        predict(gateway, text="x", user_id="dave", headers={"X-Turnout-Variant": "v3"}).json()[
            "variant"
        ]
        for _ in range(5)
    }
    assert len(variants) == 1
    assert ignored() == before + 5


def test_shares_match_weights_and_users_keep_their_variant(gateway: Gateway) -> None:
    bodies = [{"text": f"tweet number {i}", "user_id": f"user-{i}"} for i in range(20_000)]
    results = asyncio.run(drive(gateway.url, bodies))
    assert all(r["status"] == 200 for r in results)
    counts = Counter(r["variant"] for r in results)
    observed = [counts["v1"], counts["v2"], counts["v3"]]
    assert chisquare(observed, [16_000, 2_000, 2_000]).pvalue > 0.001
    again = asyncio.run(drive(gateway.url, bodies[:2000]))
    assert [r["variant"] for r in again] == [r["variant"] for r in results[:2000]]


def test_worker_4xx_passes_through_without_fallback(
    start_worker: WorkerFactory, start_gateway: GatewayFactory, tmp_path: Path
) -> None:
    strict = start_worker("v1", TURNOUT_MAX_TEXT_CHARS="5")
    write_experiment(tmp_path, canary_yaml({"v1": strict.url}, {"v1": 100}))
    gw = start_gateway(tmp_path)
    r = predict(gw, text="longer than five")
    assert r.status_code == 422
    assert "limit is 5" in r.json()["detail"]


def test_hot_reload_applies_edits_and_refuses_bad_ones(
    gateway: Gateway, workers: dict[str, str]
) -> None:
    path = gateway.experiments_dir / "experiment.yaml"
    original = path.read_text()
    first = config_version(gateway)
    write_experiment(gateway.experiments_dir, canary_yaml(workers, {"v1": 0, "v2": 100, "v3": 0}))
    poll_until(lambda: config_version(gateway) != first, 10, what="the edit to apply")
    assert {predict(gateway, text="a", user_id=f"u{i}").json()["variant"] for i in range(30)} == {
        "v2"
    }
    second = config_version(gateway)
    assert predict(gateway, text="a").json()["config_version"] == second

    write_experiment(gateway.experiments_dir, "name: exp\nmodel: profanity\npolicy: [oops\n")
    poll_until(
        lambda: httpx.get(f"{gateway.url}/experiments").json()["refused"],
        10,
        what="the bad edit to be refused",
    )
    refused = httpx.get(f"{gateway.url}/experiments").json()["refused"]
    assert "experiment.yaml:" in next(iter(refused.values()))
    assert config_version(gateway) == second
    assert predict(gateway, text="still served", user_id="u1").json()["variant"] == "v2"
    metrics = httpx.get(f"{gateway.url}/metrics").text
    assert 'turnout_config_reloads_total{result="refused"}' in metrics
    assert "experiment.yaml" in gateway.process.output()

    write_experiment(gateway.experiments_dir, original)
    poll_until(lambda: config_version(gateway) == first, 10, what="the original to come back")


def test_dead_canary_turns_into_fallbacks_with_zero_5xx(
    start_worker: WorkerFactory,
    start_gateway: GatewayFactory,
    workers: dict[str, str],
    tmp_path: Path,
) -> None:
    canary = start_worker("v2")
    write_experiment(
        tmp_path, canary_yaml({"v1": workers["v1"], "v2": canary.url}, {"v1": 50, "v2": 50})
    )
    gw = start_gateway(tmp_path, TURNOUT_BREAKER_FAILURES="3")
    canary.process.kill()
    bodies = [{"text": f"t{i}", "user_id": f"k{i}"} for i in range(300)]
    results = asyncio.run(drive(gw.url, bodies, concurrency=8))
    assert all(r["status"] == 200 for r in results)
    to_canary = [r for r in results if r["variant"] == "v2"]
    assert to_canary
    assert all(r["fallback"] and r["model_version"] == "v1" for r in to_canary)
    assert not any(r["fallback"] for r in results if r["variant"] == "v1")
    upstream = httpx.get(f"{gw.url}/experiments").json()["experiments"][0]["upstreams"]["v2"]
    assert upstream["breaker"] == "open" or upstream["healthy"] is False
    assert 'turnout_fallbacks_total{experiment="exp"' in httpx.get(f"{gw.url}/metrics").text


def test_nothing_can_answer_is_a_503_with_a_reason(
    start_worker: WorkerFactory, start_gateway: GatewayFactory, tmp_path: Path
) -> None:
    failing = start_worker("v1", TURNOUT_WORKER_FAULT_STATUS="503")
    write_experiment(tmp_path, canary_yaml({"v1": failing.url}, {"v1": 100}))
    gw = start_gateway(tmp_path, wait_ready=False)
    r = predict(gw, text="anyone?")
    assert r.status_code == 503
    assert r.json()["error"] == "no_upstream"
    assert "v1" in r.json()["detail"]


def test_readyz_and_experiments(gateway: Gateway) -> None:
    assert httpx.get(f"{gateway.url}/readyz").status_code == 200
    assert httpx.get(f"{gateway.url}/healthz").json() == {"status": "ok"}
    [exp] = httpx.get(f"{gateway.url}/experiments").json()["experiments"]
    assert exp["policy"] == "canary"
    assert exp["control"] == "v1"
    assert exp["weights"] == {"v1": 80, "v2": 10, "v3": 10}
    assert all(u["healthy"] for u in exp["upstreams"].values())
    metrics = httpx.get(f"{gateway.url}/metrics").text
    for family in ("turnout_requests_total", "turnout_request_seconds", "turnout_breaker_state"):
        assert family in metrics
