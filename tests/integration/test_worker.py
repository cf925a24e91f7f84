"""A real worker process over real HTTP: the contract, bad input, readiness, shutdown."""

from __future__ import annotations

import signal
import sys
import threading

import httpx
import pytest

from router.local.processes import ManagedProcess, free_port, poll_until
from tests.conftest import WorkerFactory
from tests.support import assert_streamed_oversize_refused


@pytest.fixture(scope="module")
def worker_url(start_worker: WorkerFactory) -> str:
    return start_worker("v2").url


def test_predict_contract(worker_url: str) -> None:
    r = httpx.post(f"{worker_url}/predict", json={"text": "you are a wonderful person"})
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"label", "score", "is_profane", "model", "version"}
    assert body["label"] in (0, 1)
    assert 0.0 <= body["score"] <= 1.0
    assert body["is_profane"] is bool(body["label"])
    assert (body["model"], body["version"]) == ("profanity", "v2")


def test_scores_separate_obvious_cases(worker_url: str) -> None:
    texts = ["fuck you bitch", "have a lovely sunday with your family"]
    r = httpx.post(f"{worker_url}/predict/batch", json={"texts": texts})
    assert r.status_code == 200
    rude, kind = r.json()["predictions"]
    assert rude["label"] == 1
    assert rude["score"] > kind["score"]


def test_batch_matches_single(worker_url: str) -> None:
    texts = ["one tweet", "another one, rt @someone lol", "ugh hoes"]
    batch = httpx.post(f"{worker_url}/predict/batch", json={"texts": texts}).json()["predictions"]
    singles = [httpx.post(f"{worker_url}/predict", json={"text": t}).json() for t in texts]
    assert batch == singles


BAD_INPUTS = [
    ("missing text", {"json": {}}, 422, "invalid_input"),
    ("text not a string", {"json": {"text": 42}}, 422, "invalid_input"),
    ("text is null", {"json": {"text": None}}, 422, "invalid_input"),
    ("empty text", {"json": {"text": ""}}, 422, "invalid_input"),
    ("whitespace text", {"json": {"text": " \t\n "}}, 422, "invalid_input"),
    ("text over the limit", {"json": {"text": "a" * 10_001}}, 422, "invalid_input"),
    ("body not an object", {"json": ["text"]}, 422, "invalid_input"),
    (
        "invalid json",
        {"content": b'{"text": ', "headers": {"content-type": "application/json"}},
        400,
        "invalid_json",
    ),
    (
        "invalid utf-8",
        {"content": b'{"text": "\xff\xfe"}', "headers": {"content-type": "application/json"}},
        400,
        "invalid_encoding",
    ),
    (
        "wrong content type",
        {"content": b'{"text": "hi"}', "headers": {"content-type": "text/plain"}},
        415,
        "unsupported_media_type",
    ),
    (
        "body over the byte limit",
        {"content": b"x" * 1_048_577, "headers": {"content-type": "application/json"}},
        413,
        "payload_too_large",
    ),
]


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [b[1:] for b in BAD_INPUTS],
    ids=[b[0] for b in BAD_INPUTS],
)
def test_bad_input_gets_a_clear_4xx(worker_url: str, kwargs: dict, status: int, code: str) -> None:
    r = httpx.post(f"{worker_url}/predict", **kwargs)
    assert r.status_code == status, r.text
    body = r.json()
    assert body["error"] == code
    assert body["detail"]


BAD_BATCHES = [
    ("texts missing", {}),
    ("texts empty", {"texts": []}),
    ("texts not a list", {"texts": "hello"}),
    ("a text not a string", {"texts": ["ok", 3]}),
    ("a blank text", {"texts": ["ok", "  "]}),
    ("batch over its limit", {"texts": ["x"] * 65}),
]


@pytest.mark.parametrize("body", [b[1] for b in BAD_BATCHES], ids=[b[0] for b in BAD_BATCHES])
def test_bad_batches_get_422(worker_url: str, body: dict) -> None:
    r = httpx.post(f"{worker_url}/predict/batch", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["error"] == "invalid_input"


def test_oversize_body_refused_before_read_whole(worker_url: str) -> None:
    """A chunked body with no Content-Length is answered 413 once it passes the limit."""
    assert_streamed_oversize_refused(worker_url, "/predict")


def test_unknown_route_and_method(worker_url: str) -> None:
    r = httpx.get(f"{worker_url}/nope")
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    r = httpx.get(f"{worker_url}/predict")
    assert r.status_code == 405 and r.json()["error"] == "method_not_allowed"


def test_info_is_the_card(worker_url: str) -> None:
    card = httpx.get(f"{worker_url}/info").json()
    assert card["model"] == "profanity" and card["version"] == "v2"
    assert {"accuracy", "precision", "recall", "f1", "roc_auc", "confusion_matrix"} <= set(
        card["metrics"]
    )


def test_metrics_count_requests_scores_and_labels(worker_url: str) -> None:
    def sample(name: str) -> float:
        for line in httpx.get(f"{worker_url}/metrics").text.splitlines():
            if line.startswith(name + " "):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    ok = 'turnout_worker_requests_total{route="/predict",status="200"}'
    refused = 'turnout_worker_requests_total{route="/predict",status="422"}'
    before = (sample(ok), sample(refused), sample("turnout_worker_score_count"))
    for _ in range(3):
        httpx.post(f"{worker_url}/predict", json={"text": "hello there"})
    httpx.post(f"{worker_url}/predict", json={"text": ""})
    after = (sample(ok), sample(refused), sample("turnout_worker_score_count"))
    assert [a - b for a, b in zip(after, before, strict=True)] == [3, 1, 3]
    text = httpx.get(f"{worker_url}/metrics").text
    assert 'turnout_worker_info{model="profanity",recipe="v2",version="v2"} 1.0' in text
    assert "turnout_worker_request_seconds_bucket" in text
    assert "turnout_worker_predictions_total" in text


def test_injected_fault_status(start_worker: WorkerFactory) -> None:
    worker = start_worker("v1", TURNOUT_WORKER_FAULT_STATUS="500")
    r = httpx.post(f"{worker.url}/predict", json={"text": "hi"})
    assert r.status_code == 500 and r.json()["error"] == "fault"


def test_readyz_is_503_until_loaded_and_refuses_tampered_artifact(models_dir, tmp_path) -> None:
    import shutil

    root = tmp_path / "models"
    shutil.copytree(models_dir, root)
    artifact = root / "profanity" / "v1" / "model.joblib"
    artifact.write_bytes(artifact.read_bytes()[:-100])  # truncated
    port = free_port()
    proc = ManagedProcess(
        "worker",
        [sys.executable, "-m", "router", "worker", "--version", "v1", "--port", str(port)],
        env={"TURNOUT_MODELS_DIR": str(root)},
        log_path=tmp_path / "w.log",
    ).start()
    poll_until(lambda: not proc.alive(), 30, what="worker refusing a tampered artifact")
    assert proc.proc is not None and proc.proc.returncode == 1
    assert "integrity check" in proc.output()


def test_graceful_shutdown_finishes_in_flight_requests(start_worker: WorkerFactory) -> None:
    worker = start_worker("v1", TURNOUT_WORKER_FAULT_DELAY_MS="1500")
    results: list[int] = []

    def call() -> None:
        r = httpx.post(f"{worker.url}/predict", json={"text": "slow"}, timeout=10)
        results.append(r.status_code)

    thread = threading.Thread(target=call)
    thread.start()
    poll_until(
        lambda: "turnout_worker_inflight 1.0" in httpx.get(f"{worker.url}/metrics").text,
        10,
        what="the request to be in flight",
    )
    worker.process.signal(signal.SIGTERM)
    thread.join(15)
    assert results == [200]
    poll_until(lambda: not worker.process.alive(), 10, what="worker exit")
