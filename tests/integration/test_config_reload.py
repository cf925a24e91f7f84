"""Experiment files under abuse, against real gateway processes: a huge file does not stall
traffic or keep memory, a bad file costs only its own experiment (also after a restart), a
duplicate cannot take over, and a deleted file serves through a grace period."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest

from router.local.processes import poll_until
from tests.conftest import Gateway, GatewayFactory, WorkerFactory, canary_yaml, write_experiment


@pytest.fixture(scope="module")
def workers(start_worker: WorkerFactory) -> dict[str, str]:
    return {"v1": start_worker("v1").url}


def refused(gateway: Gateway) -> dict[str, str]:
    reply: dict[str, str] = httpx.get(f"{gateway.url}/experiments").json()["refused"]
    return reply


def events(gateway: Gateway, name: str) -> list[dict[str, object]]:
    lines = (json.loads(x) for x in gateway.process.output().splitlines() if x.startswith("{"))
    return [x for x in lines if x.get("event") == name]


def predict(gateway: Gateway, model: str = "profanity") -> httpx.Response:
    return httpx.post(f"{gateway.url}/models/{model}/predict", json={"text": "hi"}, timeout=30)


class Prober:
    """Requests one after another from a thread: how long each took, and its status."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.samples: list[tuple[int, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Prober:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(60)

    def _run(self) -> None:
        with httpx.Client(timeout=60) as client:
            while not self._stop.is_set():
                started = time.perf_counter()
                r = client.post(f"{self.gateway.url}/predict", json={"text": "probe"})
                self.samples.append((r.status_code, time.perf_counter() - started))
                time.sleep(0.05)


def junk_list(kilobytes: int) -> str:
    """A valid YAML document that is no experiment: slow to parse, big in memory."""
    rows = "".join(f"  - {{a: {i}, b: value{i}, c: [1, 2, 3]}}\n" for i in range(kilobytes * 30))
    return "items:\n" + rows


def test_a_huge_file_neither_stalls_traffic_nor_keeps_memory(
    start_gateway: GatewayFactory, workers: dict[str, str], tmp_path: Path
) -> None:
    write_experiment(tmp_path, canary_yaml(workers, {"v1": 100}))
    gw = start_gateway(tmp_path)
    process = psutil.Process(gw.process.pid)
    for _ in range(20):
        predict(gw)
    before = process.memory_info().rss
    with Prober(gw) as prober:
        write_experiment(tmp_path, junk_list(150), "junk.yaml")  # ~180 KB: seconds of parsing
        poll_until(lambda: any("junk.yaml" in f for f in refused(gw)), 120, what="the refusal")
        (tmp_path / "huge.yaml").write_bytes(b"# comment\n" * 1_100_000)  # 11 MB: over the cap
        poll_until(lambda: any("huge.yaml" in f for f in refused(gw)), 30, what="the size cap")
    statuses = {status for status, _ in prober.samples}
    slowest = max(seconds for _, seconds in prober.samples)
    after = process.memory_info().rss
    print(
        f"reload of a 180 KB file: {len(prober.samples)} probes, slowest {slowest * 1000:.0f} ms, "
        f"RSS {before / 2**20:.0f} -> {after / 2**20:.0f} MiB"
    )
    assert statuses == {200}
    assert slowest < 1.0
    assert after - before < 30 * 2**20
    assert "over the limit of 1048576 bytes" in refused(gw)[str(tmp_path / "huge.yaml")]


def test_a_bad_file_costs_its_own_experiment_only_also_after_a_restart(
    start_gateway: GatewayFactory, workers: dict[str, str], tmp_path: Path
) -> None:
    folder, state = tmp_path / "experiments", tmp_path / "state"
    write_experiment(folder, canary_yaml(workers, {"v1": 100}), "a.yaml")
    write_experiment(
        folder, canary_yaml(workers, {"v1": 100}, name="spam-exp", model="spam"), "b.yaml"
    )
    first = start_gateway(folder, TURNOUT_STATE_DIR=str(state))
    assert predict(first, "spam").status_code == 200
    first.process.stop()

    write_experiment(folder, "name: spam-exp\nmodel: spam\npolicy: [broken\n", "b.yaml")
    write_experiment(
        folder, canary_yaml(workers, {"v1": 100}, name="new-exp", model="new"), "c.yaml"
    )
    write_experiment(folder, "name: [\n", "d.yaml")  # bad, and never good: nothing to keep
    second = start_gateway(folder, TURNOUT_STATE_DIR=str(state))
    assert predict(second).status_code == 200
    assert predict(second, "new").status_code == 200
    served = predict(second, "spam")  # its last good version, kept in the state folder
    assert served.status_code == 200 and served.json()["experiment"] == "spam-exp"
    assert sorted(Path(f).name for f in refused(second)) == ["b.yaml", "d.yaml"]
    loud = events(second, "config_refused")
    assert {Path(str(e["file"])).name for e in loud} == {"b.yaml", "d.yaml"}
    assert all(e["level"] == "error" for e in loud)


def test_a_duplicate_file_cannot_take_over_and_a_cold_start_refuses_both(
    start_gateway: GatewayFactory, workers: dict[str, str], tmp_path: Path
) -> None:
    write_experiment(tmp_path, canary_yaml(workers, {"v1": 100}, name="live"), "b.yaml")
    gw = start_gateway(tmp_path)
    assert predict(gw).json()["experiment"] == "live"
    write_experiment(tmp_path, canary_yaml(workers, {"v1": 100}, name="usurper"), "a.yaml")
    poll_until(lambda: str(tmp_path / "a.yaml") in refused(gw), 15, what="the newcomer refused")
    assert "already served by live from b.yaml" in refused(gw)[str(tmp_path / "a.yaml")]
    assert str(tmp_path / "b.yaml") not in refused(gw)
    assert {predict(gw).json()["experiment"] for _ in range(10)} == {"live"}

    cold = start_gateway(tmp_path, wait_ready=False)
    r = predict(cold)
    assert r.status_code == 404 and r.json()["error"] == "conflicting_experiments"
    assert "a.yaml" in r.json()["detail"] and "b.yaml" in r.json()["detail"]
    assert sorted(Path(f).name for f in refused(cold)) == ["a.yaml", "b.yaml"]


def test_a_deleted_file_serves_through_the_grace_and_may_come_back(
    start_gateway: GatewayFactory, workers: dict[str, str], tmp_path: Path
) -> None:
    path = write_experiment(tmp_path, canary_yaml(workers, {"v1": 100}))
    content = path.read_text()
    gw = start_gateway(tmp_path, TURNOUT_EXPERIMENT_DELETE_GRACE="4")
    version = predict(gw).json()["config_version"]
    with Prober(gw) as prober:  # a deploy that removes, then copies
        path.unlink()
        poll_until(lambda: events(gw, "config_file_missing"), 10, what="the deletion seen")
        time.sleep(1.0)  # well within the grace: the experiment must still answer
        write_experiment(tmp_path, content)
        poll_until(lambda: events(gw, "config_file_back"), 10, what="the file seen back")
    assert {status for status, _ in prober.samples} == {200}
    assert predict(gw).json()["config_version"] == version
    path.unlink()
    gone_at = time.monotonic()
    poll_until(lambda: predict(gw).status_code == 404, 15, what="the removal after the grace")
    assert time.monotonic() - gone_at >= 3.5
    assert events(gw, "config_file_removed")
