"""Capture through real gateway and worker processes: what lands in the files, what does not,
and the drift verdicts a gateway exports once ``turnout drift`` has written them."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import httpx
import orjson
import pytest

from router.capture import files
from router.capture.reader import read_records
from router.core.settings import Settings
from router.drift.store import DriftState, Verdict, write_state
from router.local.processes import poll_until
from router.local.redis_server import RedisTopology
from router.storage.client import connect
from tests.conftest import Gateway, GatewayFactory, WorkerFactory, write_experiment

FAST = {
    "TURNOUT_RECORDING_FLUSH_INTERVAL": "0.05",
    "TURNOUT_CAPTURE_FLUSH_INTERVAL": "0.1",
    "TURNOUT_DRIFT_REFRESH_INTERVAL": "0.2",
    "TURNOUT_ACCESS_LOG": "false",
}


def experiment(name: str, model: str, workers: dict[str, str], capture: str) -> str:
    return (
        f"name: {name}\nmodel: {model}\ncontrol: v1\nvariants:\n"
        f"  v1: {{url: '{workers['v1']}'}}\n  v3: {{url: '{workers['v3']}'}}\n"
        "policy: {kind: canary, weights: {v1: 100, v3: 0}, sticky: user_id}\n"
        "shadow: {targets: [v3], sample: 1.0}\n" + capture
    )


@pytest.fixture(scope="module")
def stack(
    start_gateway: GatewayFactory,
    start_worker: WorkerFactory,
    redis_server: RedisTopology,
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Gateway, Path, str]:
    workers = {"v1": start_worker("v1").url, "v3": start_worker("v3").url}
    run = uuid.uuid4().hex[:6]
    folder = tmp_path_factory.mktemp("experiments")
    write_experiment(
        folder,
        experiment(f"cap-{run}", "profanity", workers, "capture: {sample: 1.0, inputs: true}\n"),
        "inputs.yaml",
    )
    write_experiment(
        folder,
        experiment(f"nocap-{run}", f"other-{run}", workers, "capture: {sample: 1.0}\n"),
        "noinputs.yaml",
    )
    state = tmp_path_factory.mktemp("state")
    gateway = start_gateway(folder, TURNOUT_STATE_DIR=str(state), **redis_server.env, **FAST)
    return gateway, state / "capture", run


def send(gateway: Gateway, model: str, count: int) -> list[str]:
    ids = []
    with httpx.Client(base_url=gateway.url, timeout=10) as client:
        for i in range(count):
            body = {"text": f"have a nice day number {i}", "user_id": f"alice-{i}"}
            response = client.post(f"/models/{model}/predict", json=body)
            assert response.status_code == 200, response.text
            ids.append(response.json()["request_id"])
    return ids


def test_captured_outcomes_and_comparisons(stack: tuple[Gateway, Path, str]) -> None:
    gateway, root, run = stack
    name = f"cap-{run}"
    ids = send(gateway, "profanity", 25)

    def captured() -> list[dict[str, object]]:
        return list(read_records(root, name))

    poll_until(lambda: len(captured()) >= 50, 20, what="25 outcomes and 25 comparisons")
    records = captured()
    outcomes = [r for r in records if r["kind"] == "outcome"]
    shadows = [r for r in records if r["kind"] == "shadow"]
    assert sorted(r["request_id"] for r in outcomes) == sorted(ids)
    assert {r["request_id"] for r in shadows} == set(ids)
    assert all(r["version"] == "v1" and isinstance(r["score"], float) for r in outcomes)
    assert {r["input"]["text"] for r in outcomes} == {
        f"have a nice day number {i}" for i in range(25)
    }  # type: ignore[index]
    assert all(r["shadow_version"] == "v3" for r in shadows)
    raw = b"".join(f.path.read_bytes() for f in files.listing(root / name))
    assert b"alice" not in raw, "raw user ids never reach capture"
    listed = httpx.get(f"{gateway.url}/experiments").json()["experiments"]
    (described,) = [e for e in listed if e["name"] == name]
    assert described["capture"]["inputs"] is True and described["capture"]["sample"] == 1.0
    metrics = httpx.get(f"{gateway.url}/metrics").text
    assert f'turnout_capture_written_total{{experiment="{name}"}} 50.0' in metrics


def test_without_inputs_only_recorded_fields_are_kept(stack: tuple[Gateway, Path, str]) -> None:
    gateway, root, run = stack
    name = f"nocap-{run}"
    send(gateway, f"other-{run}", 5)
    poll_until(lambda: len(list(read_records(root, name))) >= 10, 20, what="captured records")
    raw = b"".join(f.path.read_bytes() for f in files.listing(root / name))
    assert b"have a nice day" not in raw and b"alice" not in raw
    assert all("input" not in orjson.loads(line) for line in raw.splitlines())


def test_drift_verdicts_are_served_and_exported(
    stack: tuple[Gateway, Path, str], redis_server: RedisTopology
) -> None:
    gateway, _, run = stack
    name = f"cap-{run}"
    missing = httpx.get(f"{gateway.url}/experiments/{name}/drift")
    assert missing.status_code == 404 and missing.json()["error"] == "no_drift_check"
    assert httpx.get(f"{gateway.url}/experiments/nope/drift").status_code == 404

    async def write() -> None:
        client = connect(Settings(**redis_server.settings))
        state = DriftState(
            {"checked_at": 1_700_000_000.0, "drift": True, "html": "/state/drift.html"},
            [
                Verdict("v1", "prediction", "drift", "KS and PSI", {"psi": 0.5}),
                Verdict("v3-vs-v1", "paired", "ok", "steady"),
                Verdict("all", "input", "insufficient", "too few"),
            ],
        )
        await write_state(client, name, state)
        await client.aclose()

    asyncio.run(write())
    body = httpx.get(f"{gateway.url}/experiments/{name}/drift").json()
    assert body["experiment"] == name and body["html"] == "/state/drift.html"
    assert [(v["version"], v["verdict"]) for v in body["verdicts"]] == [
        ("all", "insufficient"),
        ("v1", "drift"),
        ("v3-vs-v1", "ok"),
    ]

    def exported() -> bool:
        text = httpx.get(f"{gateway.url}/metrics").text
        return (
            f'turnout_drift{{check="prediction",experiment="{name}",version="v1"}} 1.0' in text
            and f'turnout_drift{{check="paired",experiment="{name}",version="v3-vs-v1"}} 0.0'
            in text
            and 'check="input"' not in text
        )

    poll_until(exported, 10, what="the drift gauges")


def test_files_are_closed_when_the_gateway_stops(stack: tuple[Gateway, Path, str]) -> None:
    gateway, root, run = stack
    gateway.process.stop()
    listed = files.listing(root / f"cap-{run}")
    assert listed and not any(f.open for f in listed)
