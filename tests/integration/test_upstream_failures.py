"""Upstreams that fail: a failover order for a dead control, /readyz that says so, 503 details
without internals, slow calls that cannot hold requests, and skips counted apart from failures.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import aiohttp
import httpx
from prometheus_client.parser import text_string_to_metric_families

from router.local.processes import poll_until
from tests.conftest import Gateway, GatewayFactory, WorkerFactory, canary_yaml, write_experiment


def counters(gateway: Gateway, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Samples of one metric family, by their labels."""
    out: dict[tuple[tuple[str, str], ...], float] = defaultdict(float)
    for family in text_string_to_metric_families(httpx.get(f"{gateway.url}/metrics").text):
        for sample in family.samples:
            if sample.name == name:
                out[tuple(sorted(sample.labels.items()))] += sample.value
    return out


def total(gateway: Gateway, name: str, **labels: str) -> float:
    return sum(
        value
        for key, value in counters(gateway, name).items()
        if all((k, v) in key for k, v in labels.items())
    )


async def timed_posts(url: str, bodies: list[dict[str, Any]], concurrency: int) -> list[dict]:
    """Each answer with its status and the seconds the client waited for it."""
    results: list[dict] = [{} for _ in bodies]
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(len(bodies)):
        queue.put_nowait(i)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:

        async def one() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                started = time.perf_counter()
                async with session.post(f"{url}/predict", json=bodies[i]) as r:
                    body = await r.json()
                results[i] = {"status": r.status, "seconds": time.perf_counter() - started, **body}

        await asyncio.gather(*(one() for _ in range(concurrency)))
    return results


def test_a_dead_control_fails_over_in_order_and_readyz_says_when_nothing_can_answer(
    start_worker: WorkerFactory, start_gateway: GatewayFactory, tmp_path: Path
) -> None:
    control, spare = start_worker("v1"), start_worker("v2")
    workers = {"v1": control.url, "v2": spare.url}
    write_experiment(tmp_path, canary_yaml(workers, {"v1": 100, "v2": 0}, tail="fallback: [v2]"))
    gw = start_gateway(tmp_path, TURNOUT_BREAKER_FAILURES="2")
    control.process.kill()

    answers = [httpx.post(f"{gw.url}/predict", json={"text": f"t{i}"}) for i in range(20)]
    assert [a.status_code for a in answers] == [200] * 20, [a.text for a in answers]
    assert all(a.json()["variant"] == "v1" for a in answers)
    assert all(a.json()["model_version"] == "v2" and a.json()["fallback"] for a in answers)
    assert total(gw, "turnout_failovers_total", variant="v2") == 20
    assert total(gw, "turnout_fallbacks_total") == 0  # failovers are counted apart
    # The fallback can answer, so the gateway stays ready.
    poll_until(
        lambda: (
            httpx.get(f"{gw.url}/experiments").json()["experiments"][0]["upstreams"]["v1"][
                "healthy"
            ]
            is False
        ),
        10,
        what="the control to be seen down",
    )
    assert httpx.get(f"{gw.url}/readyz").status_code == 200

    spare.process.kill()
    poll_until(
        lambda: httpx.get(f"{gw.url}/readyz").status_code == 503, 10, what="readyz to turn false"
    )
    assert httpx.get(f"{gw.url}/readyz").json()["error"] == "not_ready"
    refused = httpx.post(f"{gw.url}/predict", json={"text": "anyone?"})
    assert refused.status_code == 503 and refused.json()["error"] == "no_upstream"
    detail = refused.json()["detail"]
    assert "v1 could not answer" in detail and "v2 could not answer" in detail
    for internal in ("127.0.0.1", "http://", "Error", "Errno", str(control.url.rsplit(":", 1)[1])):
        assert internal not in detail, detail


def test_readyz_is_false_when_only_a_canary_is_left(
    start_worker: WorkerFactory, start_gateway: GatewayFactory, tmp_path: Path
) -> None:
    control, canary = start_worker("v1"), start_worker("v2")
    write_experiment(
        tmp_path, canary_yaml({"v1": control.url, "v2": canary.url}, {"v1": 90, "v2": 10})
    )
    gw = start_gateway(tmp_path)
    control.process.kill()
    poll_until(
        lambda: httpx.get(f"{gw.url}/readyz").status_code == 503, 10, what="readyz to turn false"
    )
    assert "exp" in httpx.get(f"{gw.url}/readyz").json()["detail"]


def test_a_slow_canary_holds_no_request_past_the_slow_call_limit(
    start_worker: WorkerFactory,
    start_gateway: GatewayFactory,
    tmp_path: Path,
) -> None:
    control = start_worker("v1")
    slow = start_worker("v2", TURNOUT_WORKER_FAULT_DELAY_MS="5000")
    write_experiment(
        tmp_path, canary_yaml({"v1": control.url, "v2": slow.url}, {"v1": 50, "v2": 50})
    )
    gw = start_gateway(
        tmp_path,
        TURNOUT_UPSTREAM_SLOW_CALL_SECONDS="0.5",
        TURNOUT_BREAKER_FAILURES="3",
        TURNOUT_BREAKER_RESET_SECONDS="30",
    )
    concurrency = 8
    bodies = [{"text": f"slow canary {i}"} for i in range(120)]
    results = asyncio.run(timed_posts(gw.url, bodies, concurrency))
    waits = sorted(r["seconds"] for r in results)
    waited = [s for s in waits if s > 0.4]
    print(
        f"slow canary: {len(results)} requests, 2xx {sum(r['status'] == 200 for r in results)}, "
        f"waited > 0.4 s: {len(waited)}, longest {waits[-1]:.2f} s"
    )
    assert all(r["status"] == 200 for r in results)
    assert waits[-1] < 1.5, waits[-5:]  # the worker would have taken 5 s
    assert len(waited) <= concurrency + 3  # those in flight before the breaker opened
    to_canary = [r for r in results if r["variant"] == "v2"]
    assert to_canary and all(r["fallback"] and r["model_version"] == "v1" for r in to_canary)
    assert total(gw, "turnout_fallbacks_total", variant="v2", reason="slow") >= 3


def test_skipped_calls_are_not_counted_as_failures(
    start_worker: WorkerFactory, start_gateway: GatewayFactory, tmp_path: Path
) -> None:
    control, canary = start_worker("v1"), start_worker("v2")
    write_experiment(
        tmp_path, canary_yaml({"v1": control.url, "v2": canary.url}, {"v1": 50, "v2": 50})
    )
    gw = start_gateway(tmp_path, TURNOUT_BREAKER_FAILURES="3", TURNOUT_HEALTH_INTERVAL="30")
    canary.process.kill()
    results = asyncio.run(timed_posts(gw.url, [{"text": f"k{i}"} for i in range(200)], 4))
    assert all(r["status"] == 200 for r in results)
    assigned = sum(r["variant"] == "v2" for r in results)
    failed = total(gw, "turnout_upstream_failures_total", variant="v2")
    skipped = total(gw, "turnout_upstream_skipped_total", variant="v2", reason="breaker_open")
    print(f"dead canary: assigned {assigned}, real failures {failed}, skipped {skipped}")
    assert failed + skipped == assigned
    assert 3 <= failed <= 3 + 4  # until the breaker opened (requests in flight included)
